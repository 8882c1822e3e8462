//! `twinbox vm` on this host: what it says about the host's KVM and kernels,
//! bad input, and the VM records (`ps`, `stop`, `rm`, `logs`) of VMs whose
//! VMM really runs. Real Linux guests boot in the nested environment
//! (tests/nested.rs); on a PVM host like the CI machines a stock kernel cannot
//! boot, and these tests check that twinbox says so instead of hanging.

mod common;

use common::{lab, Lab};

fn kvm_kind() -> String {
    let r = std::process::Command::new(common::bin())
        .args(["vm", "kernels", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    v["kvm"]["kind"].as_str().unwrap_or("").to_string()
}

/// Every file below `dir` (none when it does not exist), relative.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

fn vm_count(lab: &Lab) -> usize {
    let r = lab.tb(&["vm", "ps", "-a", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().count()
}

#[test]
fn kernels_are_listed_with_a_verdict_for_this_host() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["vm", "kernels", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let kind = v["kvm"]["kind"].as_str().unwrap();
    let kernels = v["kernels"].as_array().unwrap();
    let installed = common::newest_kernel().expect("CI installs linux-image-amd64");
    assert!(
        kernels.iter().any(|k| k["path"] == installed.as_str()),
        "{installed} not listed: {kernels:?}"
    );
    for k in kernels {
        let bootable = k["bootable_here"].as_bool().unwrap();
        assert_eq!(bootable, matches!(kind, "vtx" | "amdv" | "unknown"), "{k}");
        assert!(k["version"].as_str().unwrap().contains('.'));
    }
    let table = lab.tb(&["vm", "kernels"]);
    assert!(
        table.stdout.contains("KVM on this host"),
        "{}",
        table.stdout
    );
}

#[test]
fn vm_run_boots_or_says_why_this_host_cannot() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["vm", "run", "--rm", "busybox", "uname", "-r"]);
    match kvm_kind().as_str() {
        "pvm" => {
            assert_eq!(r.code, 125, "{}", r.stderr);
            let line = r.stderr.trim();
            assert_eq!(line.lines().count(), 1, "one line: {line}");
            assert!(line.contains("PVM") && line.contains("--kernel"), "{line}");
            assert!(line.contains("VT-x/AMD-V"), "{line}");
            // refused before booting: no guest disk or initramfs was even made
            assert_eq!(
                files_under(&lab.root().join("cache")),
                Vec::<String>::new(),
                "refused before preparing a boot"
            );
            assert_eq!(vm_count(&lab), 0, "a refused run leaves no VM");
        }
        "absent" => {
            assert_eq!(r.code, 125);
            assert!(r.stderr.contains("no usable KVM"), "{}", r.stderr);
        }
        _ => {
            assert_eq!(r.code, 0, "{}", r.stderr);
            let host = common::host("uname", &["-r"]);
            assert!(!r.stdout.trim().is_empty());
            assert_eq!(
                r.stdout.trim(),
                common::newest_kernel()
                    .unwrap()
                    .rsplit("vmlinuz-")
                    .next()
                    .unwrap()
            );
            let _ = host;
        }
    }
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let Some(lab) = lab() else { return };
    let kernel = common::newest_kernel().unwrap();
    for (args, needle) in [
        (
            vec!["vm", "run", "--memory", "4", "busybox", "true"],
            "at least 16",
        ),
        (
            vec!["vm", "run", "--kernel", "/etc/hostname", "busybox", "true"],
            "not a bzImage or ELF",
        ),
        (
            vec![
                "vm", "run", "--kernel", &kernel, "--cpus", "0", "busybox", "true",
            ],
            "--cpus",
        ),
        (
            vec!["vm", "run", "--kernel", &kernel, "no/such-image", "true"],
            "no/such-image",
        ),
        (vec!["vm", "rm", "no-such-vm"], "no such VM"),
        (vec!["vm", "stop", "no-such-vm"], "no such VM"),
        (vec!["vm", "logs", "no-such-vm"], "no such VM"),
    ] {
        let r = lab.tb(&args);
        assert_ne!(r.code, 0, "{args:?} succeeded");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        let lines = r
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .count();
        assert_eq!(lines, 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!(vm_count(&lab), 0, "failed runs leave no VM");
}

/// On a PVM host a stock kernel never reaches its init: the boot timeout ends
/// it, the record says so, and `rm` cleans up. Elsewhere it boots.
#[test]
fn a_kernel_that_cannot_boot_here_hits_the_boot_timeout() {
    let Some(lab) = lab() else { return };
    if kvm_kind() != "pvm" {
        eprintln!("skipping: this host's KVM can boot stock kernels (the nested tests cover it)");
        return;
    }
    let kernel = common::newest_kernel().unwrap();
    let r = lab.tb(&[
        "vm",
        "run",
        "--name",
        "slow",
        "--kernel",
        &kernel,
        "--boot-timeout",
        "2",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("did not reach its init within 2 s"),
        "{}",
        r.stderr
    );
    let ps = lab.tb(&["vm", "ps", "-a"]);
    assert!(
        ps.stdout.contains("slow") && ps.stdout.contains("boot timeout"),
        "{}",
        ps.stdout
    );
    let again = lab.tb(&[
        "vm", "run", "--name", "slow", "--kernel", &kernel, "busybox", "true",
    ]);
    assert!(again.stderr.contains("already in use"), "{}", again.stderr);
    let inspect = lab.tb(&["vm", "inspect", "slow"]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v[0]["state"]["status"], "exited");
    assert_eq!(v[0]["state"]["end"]["kind"], "boot_timeout");
    assert_eq!(lab.tb(&["vm", "rm", "slow"]).code, 0);
    assert_eq!(vm_count(&lab), 0);
}

/// A detached VM's VMM runs in the background: `ps` shows it running, `stop`
/// ends it, `rm` removes it. (On PVM the guest kernel crawls, which is fine:
/// the VMM process and its record are what this tests.)
#[test]
fn detached_vm_runs_stops_and_is_removed() {
    let Some(lab) = lab() else { return };
    let kernel = common::newest_kernel().unwrap();
    let r = lab.tb(&[
        "vm",
        "run",
        "-d",
        "--name",
        "bg",
        "--kernel",
        &kernel,
        "--boot-timeout",
        "120",
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "prints the id: {id}");
    let ps = lab.tb(&["vm", "ps"]);
    assert!(
        ps.stdout.contains("bg") && ps.stdout.contains("Running"),
        "{}",
        ps.stdout
    );
    let rm = lab.tb(&["vm", "rm", "bg"]);
    assert_ne!(rm.code, 0, "a running VM is not removed without -f");
    assert!(rm.stderr.contains("is running"), "{}", rm.stderr);
    let stop = lab.tb(&["vm", "stop", "-t", "5", "bg"]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let ps = lab.tb(&["vm", "ps", "-a"]);
    assert!(ps.stdout.contains("Stopped"), "{}", ps.stdout);
    assert!(
        !lab.tb(&["vm", "ps"]).stdout.contains("bg"),
        "not listed as running"
    );
    assert_eq!(lab.tb(&["vm", "logs", "bg"]).code, 0);
    assert_eq!(lab.tb(&["vm", "rm", &id[..12]]).code, 0);
    assert_eq!(vm_count(&lab), 0);
}

/// `--backend qemu` boots the same guest under QEMU on any host (software
/// emulation where KVM cannot boot a stock kernel): the guest's own kernel
/// answers, the exit code comes back, and the VM has a record like any.
#[test]
fn the_qemu_backend_runs_the_same_guest_anywhere() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "vm",
        "run",
        "--backend",
        "qemu",
        "--timings",
        // software emulation on a busy host can take minutes to reach the
        // init: the bound only stops a hang (the 60 s default failed at load 18)
        "--boot-timeout",
        "300",
        "busybox",
        "sh",
        "-c",
        "uname -r; echo from-the-guest >&2; exit 4",
    ]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let guest_kernel = common::newest_kernel().unwrap();
    // The guest's stdout and stderr share its serial console.
    let first = r.stdout.lines().next().unwrap_or_default();
    assert_eq!(first, guest_kernel.rsplit("vmlinuz-").next().unwrap());
    assert_ne!(
        first,
        common::host("uname", &["-r"]),
        "not the host's kernel"
    );
    assert!(r.stdout.contains("from-the-guest"), "{}", r.stdout);
    assert!(r.stderr.contains("start to workload"), "{}", r.stderr);
    let ps = lab.tb(&["vm", "ps", "-a"]);
    assert!(ps.stdout.contains("Exited (4)"), "{}", ps.stdout);
    assert_eq!(vm_count(&lab), 1, "a QEMU run keeps its record as any VM");
    let id = lab.tb(&["vm", "ps", "-a", "-q"]).stdout.trim().to_string();
    let inspect = lab.tb(&["vm", "inspect", &id]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v[0]["backend"], "qemu", "{}", inspect.stdout);
}

/// The `VmCacheList` entries of `system df --format json` under `disks/`.
fn df_disks(lab: &Lab) -> Vec<(String, u64)> {
    let r = lab.tb(&["system", "df", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["VmCacheList"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let name = c["Name"].as_str()?;
            name.starts_with("disks/")
                .then(|| (name.to_string(), c["Size"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// `vm run --rootfs disk` builds the image's disk once into the store's
/// cache; `system df` counts it, it stays while any name of the image does,
/// `rmi` of the last one removes it, and `image prune` collects a disk whose
/// image is gone. On a PVM host the stock kernel cannot boot, but the disk is
/// made before the boot starts, so a 2 s boot timeout is enough.
#[test]
fn an_images_vm_disk_is_counted_and_removed_with_the_image() {
    let Some(lab) = lab() else { return };
    if kvm_kind() == "absent" {
        eprintln!("skipping: no usable KVM here, and `vm run` refuses before building a disk");
        return;
    }
    if std::process::Command::new("mke2fs")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipping: no mke2fs (e2fsprogs) to build image disks");
        return;
    }
    assert_eq!(df_disks(&lab), Vec::new(), "no disk before a VM ran");
    let kernel = common::newest_kernel().unwrap();
    // a disk-root VM that may not boot: 0 where the kernel boots, 125 (boot
    // timeout) on PVM; the disk is made either way
    let run_briefly = || {
        let r = lab.tb(&[
            "vm",
            "run",
            "--rm",
            "--rootfs",
            "disk",
            "--kernel",
            &kernel,
            "--boot-timeout",
            "2",
            "busybox",
            "true",
        ]);
        assert!(r.code == 0 || r.code == 125, "{}: {}", r.code, r.stderr);
    };
    run_briefly();
    let disks_dir = lab.root().join("cache/disks");
    let files = files_under(&disks_dir);
    assert_eq!(files.len(), 1, "one disk for the image: {files:?}");
    let file = files[0].clone();
    let hex = file.split('.').next().unwrap();
    assert!(
        lab.root().join("blobs/sha256").join(hex).is_file(),
        "named after a stored manifest: {file}"
    );
    let listed = df_disks(&lab);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, format!("disks/{file}"));
    // blocks allocated, at least busybox's binary
    assert!(listed[0].1 > 500_000, "{listed:?}");
    let table = lab.tb(&["system", "df"]);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("VM Disks/Initramfs"))
        .unwrap_or_else(|| panic!("{}", table.stdout))
        .to_string();
    let total: usize = row
        .trim_start_matches("VM Disks/Initramfs")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // the disk, plus any initramfs parts the run left
    assert!(total >= 1, "{row}");

    // a second run reuses the cached disk (same file, same inode)
    let ino =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(&disks_dir.join(&file));
    run_briefly();
    assert_eq!(
        ino(&disks_dir.join(&file)),
        before,
        "rebuilt instead of reused"
    );

    // a disk left behind by an image that is gone (as after a crash between
    // removing the image and its cache): collected by the next prune
    let orphan = format!("{}.ext4", "ab".repeat(32));
    std::fs::copy(disks_dir.join(&file), disks_dir.join(&orphan)).unwrap();
    assert_eq!(df_disks(&lab).len(), 2);
    let check = lab.tb(&["system", "check"]);
    assert_ne!(check.code, 0, "{}", check.stdout);
    assert!(check.stdout.contains(&orphan), "{}", check.stdout);
    let r = lab.tb(&["image", "prune"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        files_under(&disks_dir),
        vec![file.clone()],
        "orphan collected, image's kept"
    );

    // another name of the same image keeps the disk; removing the last removes it
    assert_eq!(lab.tb(&["tag", "busybox", "course/other:1"]).code, 0);
    let r = lab.tb(&["rmi", "busybox"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        files_under(&disks_dir),
        vec![file.clone()],
        "image still named"
    );
    let r = lab.tb(&["rmi", "course/other:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        files_under(&disks_dir),
        Vec::<String>::new(),
        "removed with the image"
    );
    assert_eq!(df_disks(&lab), Vec::new());
    assert_eq!(vm_count(&lab), 0, "--rm runs leave no VM");
}
