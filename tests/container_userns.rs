//! `run --userns=auto`: root in the container is an unprivileged id range on
//! the host, the image's files still belong to root inside (idmapped layers),
//! host files the range does not own stay out of reach, and `--userns=host`
//! is what it always was.

mod common;

use common::lab;

/// (container id, host id, size) of the first line of a uid_map.
fn first_map(text: &str) -> (u64, u64, u64) {
    let f: Vec<u64> = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

fn host_uid(pid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let ids: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{line}");
    ids[0]
}

#[test]
fn auto_maps_root_to_a_range_of_its_own_that_rm_frees() {
    let Some(lab) = lab() else { return };
    let start = |name: &str| {
        let r = lab.tb(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--userns=auto",
            "busybox",
            "sleep",
            "60",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let pid = lab.inspect(name)["State"]["Pid"].as_i64().unwrap();
        let map = lab.tb(&["exec", name, "cat", "/proc/self/uid_map"]);
        assert_eq!(map.code, 0, "{}", map.stderr);
        (pid, first_map(&map.stdout))
    };
    let (pid_a, (inside, base_a, size)) = start("ua");
    assert_eq!((inside, size), (0, 65536), "root and 65535 more ids mapped");
    assert!(
        base_a >= 65536,
        "root inside is not a host system id: {base_a}"
    );
    assert_eq!(
        host_uid(pid_a),
        base_a,
        "the host sees the range's first id"
    );
    let host_config = &lab.inspect("ua")["HostConfig"];
    assert_eq!(host_config["UsernsMode"], "auto");
    assert_eq!(
        host_config["IDMappings"]["UidMap"][0],
        format!("0:{base_a}:65536")
    );
    let (pid_b, (_, base_b, _)) = start("ub");
    assert_eq!(host_uid(pid_b), base_b);
    assert!(
        base_b >= base_a + 65536 || base_a >= base_b + 65536,
        "ranges overlap: {base_a} and {base_b}"
    );

    // inside: root, and the image's files are root's; its own root dir is writable
    let r = lab.tb(&[
        "exec",
        "ua",
        "sh",
        "-c",
        "id -u; stat -c '%u:%g' /bin/busybox /etc/passwd /; touch /made && stat -c %u /made",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "0:0", "0:0", "0:0", "0"]
    );
    // the file it made is the range's on the host, in the writable layer
    let id = lab.inspect("ua")["Id"].as_str().unwrap().to_string();
    let made = lab.containers_dir().join(&id).join("upper/made");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&made).unwrap().uid() as u64, base_a);

    // rm frees the range: the next container may take it again
    assert_eq!(lab.tb(&["rm", "-f", "ua"]).code, 0);
    let (_, (_, base_c, _)) = start("uc");
    assert_eq!(base_c, base_a, "the freed range is handed out again");
    assert_eq!(lab.tb(&["rm", "-f", "ub", "uc"]).code, 0);
}

#[test]
fn a_root_owned_bind_mount_is_out_of_reach_under_auto_and_writable_under_host() {
    let Some(lab) = lab() else { return };
    let dir = lab.root().join("hostdir");
    std::fs::create_dir(&dir).unwrap();
    let vol = format!("{}:/data", dir.display());
    let try_write = |userns: &str| {
        lab.tb(&[
            "run",
            "--rm",
            "--network",
            "none",
            userns,
            "-v",
            &vol,
            "busybox",
            "sh",
            "-c",
            "stat -c %u /data; touch /data/f",
        ])
    };
    let r = try_write("--userns=auto");
    assert_ne!(
        r.code, 0,
        "root of a user namespace wrote a host root's directory"
    );
    assert_eq!(r.stdout.trim(), "65534", "the host's root is nobody inside");
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(!dir.join("f").exists());
    let r = try_write("--userns=host");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "0");
    assert!(dir.join("f").exists());
}

#[test]
fn host_is_unchanged_and_the_default() {
    let Some(lab) = lab() else { return };
    for args in [&["--userns=host"][..], &[]] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        a.extend(["busybox", "cat", "/proc/self/uid_map"]);
        let r = lab.tb(&a);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(first_map(&r.stdout), (0, 0, 4294967295), "{args:?}");
    }
}

#[test]
fn auto_works_on_a_cni_network_and_a_bad_mode_is_refused() {
    let Some(lab) = lab() else { return };
    // the network namespace belongs to the host's user namespace: joined by the runtime
    let r = lab.tb(&[
        "run",
        "--rm",
        "--userns=auto",
        "busybox",
        "sh",
        "-c",
        "id -u; ip -o -4 addr show eth0 | grep -c inet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "1"]);

    let r = lab.tb(&["run", "--rm", "--userns=keep-id", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("--userns \"keep-id\": use auto"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.container_count(), 0, "nothing left behind");
}

/// `twinbox` with the chown fallback forced (as on a kernel that cannot
/// idmap the store's file system).
fn chowned(lab: &common::Lab, args: &[&str]) -> common::Run {
    lab.cmd(args)
        .env("TWINBOX_USERNS_FORCE_CHOWN", "1")
        .output()
        .unwrap()
        .into()
}

fn build_stdin(lab: &common::Lab, tag: &str, dockerfile: &str) {
    let out = lab.piped(
        &["build", "-q", "--network", "none", "-t", tag, "-"],
        dockerfile.as_bytes(),
    );
    assert_eq!(out.code, 0, "build: {}", out.stderr);
}

#[test]
fn without_idmapped_mounts_the_layers_are_chowned_copies_that_go_with_the_image() {
    use std::os::unix::fs::MetadataExt;
    let Some(lab) = lab() else { return };
    // three layers: owners other than root, setuid, a hard link, a file the
    // next layer deletes (whiteout) and a directory it replaces (opaque)
    build_stdin(
        &lab,
        "owners",
        "FROM busybox\n\
         RUN mkdir -p /data/sub /o && echo hi > /data/sub/f && ln /data/sub/f /data/link \
             && chown -R 1000:1001 /data && chmod 4755 /data/sub/f && touch /o/old /data/gone\n\
         RUN rm -rf /o /data/gone && mkdir /o && touch /o/new\n",
    );
    let script = "id -u; stat -c '%u:%g %a' / /bin/busybox /data /data/sub/f; \
                  stat -c %i /data/sub/f /data/link; ls /o; ls /data; touch /made";
    let r = chowned(
        &lab,
        &[
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "none",
            "--userns=auto",
            "owners",
            "sh",
            "-c",
            &format!("{script}; sleep 60"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c1 = lab.inspect("c1");
    assert_eq!(c1["Twinbox"]["UsernsLayers"], "chowned");
    let shifted: Vec<std::path::PathBuf> = c1["Twinbox"]["ShiftedLowerDirs"]
        .as_array()
        .expect("the record names its chowned copies")
        .iter()
        .map(|p| p.as_str().unwrap().into())
        .collect();
    assert_eq!(shifted.len(), 3, "one copy per layer");
    let base = c1["HostConfig"]["IDMappings"]["UidMap"][0]
        .as_str()
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .parse::<u32>()
        .unwrap();
    // inside: the image's owners and modes, as with idmapped mounts
    let mut out = String::new();
    for _ in 0..100 {
        out = lab.tb(&["logs", "c1"]).stdout;
        if out.lines().count() >= 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        ["0", "0:0 755", "0:0 755", "1000:1001 755", "1000:1001 4755"],
        "{out}"
    );
    assert_eq!(lines[5], lines[6], "hard links stay one file: {out}");
    assert_eq!(lines[7], "new", "the replaced directory is opaque: {out}");
    assert_eq!(
        lines[8..],
        ["link", "sub"],
        "the deleted file is whited out: {out}"
    );
    // on the host: the copies carry the shifted ids, the image's layers do not
    let top = &shifted[0];
    let md = std::fs::metadata(shifted[1].join("data/sub/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (base + 1000, base + 1001));
    assert_eq!(md.mode() & 0o7777, 0o4755);
    let bottom = shifted.last().unwrap();
    assert_eq!(
        std::fs::metadata(bottom.join("bin/busybox")).unwrap().uid(),
        base
    );
    let image_layer = &c1["Twinbox"]["LowerDirs"][2];
    let image_layer = std::path::Path::new(image_layer.as_str().unwrap());
    assert_eq!(
        std::fs::metadata(image_layer.join("bin/busybox"))
            .unwrap()
            .uid(),
        0
    );
    let id = c1["Id"].as_str().unwrap().to_string();
    let made = lab.containers_dir().join(&id).join("upper/made");
    for _ in 0..50 {
        if made.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), base);

    // a second container on another range gets copies of its own; the first's stay
    let r = chowned(
        &lab,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--userns=auto",
            "owners",
            "stat",
            "-c",
            "%u",
            "/data",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "1000");
    let copies =
        |layer: &std::path::Path| std::fs::read_dir(layer.parent().unwrap()).unwrap().count();
    assert_eq!(copies(top), 2, "a copy per (layer, range)");

    // system df counts the copies with their layer
    let df = lab.tb(&["system", "df", "--format", "json"]);
    assert_eq!(df.code, 0, "{}", df.stderr);
    let df: serde_json::Value = serde_json::from_str(&df.stdout).unwrap();
    let copied: u64 = df["LayerList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ShiftedSize"].as_u64().unwrap())
        .sum();
    assert!(copied > 0, "no shifted copies counted: {df}");

    // copies whose layer is gone (a crash between rmi's two removals) are
    // found by system check and removed by --repair
    let stray = lab.root().join("layers-shifted").join("f".repeat(64));
    std::fs::create_dir_all(stray.join("0-0-65536/etc")).unwrap();
    let check = lab.tb(&["system", "check"]);
    assert_ne!(check.code, 0, "{}", check.stdout);
    assert!(check.stdout.contains(&"f".repeat(64)), "{}", check.stdout);
    let repair = lab.tb(&["system", "check", "--repair"]);
    assert!(!stray.exists(), "{}{}", repair.stdout, repair.stderr);
    let check = lab.tb(&["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    // the copies are kept while the image is, and go with it
    assert_eq!(lab.tb(&["rm", "-f", "c1"]).code, 0);
    assert!(top.exists(), "kept for the next container of that range");
    let r = lab.tb(&["rmi", "owners"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for dir in &shifted[..2] {
        assert!(
            !dir.parent().unwrap().exists(),
            "{} outlived its layer",
            dir.display()
        );
    }
    assert!(
        bottom.exists(),
        "busybox's layer (still an image) keeps its copies"
    );
    assert_eq!(lab.tb(&["rmi", "busybox"]).code, 0);
    assert!(!bottom.exists());
}

#[test]
fn a_chowned_copy_gives_file_capabilities_to_the_range_root() {
    let Some(lab) = lab() else { return };
    // a rootfs of busybox and a copy of it carrying cap_net_raw (a v2
    // capability, as setcap writes on the host). Checked on the host, then
    // from inside: a user's exec of the copy gains the capability, unless
    // `--security-opt no-new-privileges` (off by default, as Docker)
    let busybox = std::fs::read_dir(lab.root().join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/busybox"))
        .find(|p| p.exists())
        .unwrap();
    let data = std::fs::read(&busybox).unwrap();
    let tar_path = lab.root().join("caps.tar");
    let cap: Vec<u8>;
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        let file = |b: &mut tar::Builder<std::fs::File>, name: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        };
        file(&mut b, "bin/busybox");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_link(&mut h, "bin/sh", "busybox").unwrap();
        let mut cap_v2 = 0x0200_0001u32.to_le_bytes().to_vec(); // v2, effective
        cap_v2.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: cap_net_raw
        cap_v2.extend_from_slice(&[0; 12]);
        b.append_pax_extensions([("SCHILY.xattr.security.capability", cap_v2.as_slice())])
            .unwrap();
        file(&mut b, "cap/grep");
        cap = cap_v2;
        b.finish().unwrap();
    }
    let r = lab.tb(&["import", tar_path.to_str().unwrap(), "caps"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = chowned(
        &lab,
        &[
            "create",
            "--name",
            "capk",
            "--network",
            "none",
            "--userns=auto",
            "caps",
            "/cap/grep",
            "x",
            "/",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let k = lab.inspect("capk");
    let base = k["HostConfig"]["IDMappings"]["UidMap"][0]
        .as_str()
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .parse::<u32>()
        .unwrap();
    let xattr = |dir: &serde_json::Value| -> Vec<u8> {
        let path = std::path::Path::new(dir.as_str().unwrap()).join("cap/grep");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut buf = vec![0u8; 64];
        // SAFETY: lgetxattr into a buffer of the length we pass.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                c"security.capability".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert!(
            n > 0,
            "{}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        buf.truncate(n as usize);
        buf
    };
    let le = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap());
    let image = xattr(&k["Twinbox"]["LowerDirs"][0]);
    assert_eq!(image, cap, "the image's layer keeps its v2 capability");
    // v2 names no root: in a user namespace only v3 naming its root counts
    // (what an idmapped mount shows the same v2 capability as)
    let copy = xattr(&k["Twinbox"]["ShiftedLowerDirs"][0]);
    assert_eq!(copy.len(), 24, "{copy:?}");
    assert_eq!(le(&copy), 0x0300_0001, "v3, effective");
    assert_eq!(&copy[4..20], &cap[4..20], "the same capability sets");
    assert_eq!(le(&copy[20..]), base, "owned by the container's root");
    assert_eq!(lab.tb(&["rm", "capk"]).code, 0);

    let effective = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--rm",
            "--network",
            "none",
            "--userns=auto",
            "-u",
            "1000",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["caps", "/cap/grep", "CapEff", "/proc/self/status"]);
        let r = chowned(&lab, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_string()
    };
    assert_eq!(
        effective(&[]),
        "CapEff:\t0000000000002000",
        "cap_net_raw from the file"
    );
    assert_eq!(
        effective(&["--security-opt", "no-new-privileges"]),
        "CapEff:\t0000000000000000",
        "no_new_privs ignores file capabilities"
    );
}

#[test]
fn a_store_others_cannot_search_is_refused_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let Some(lab) = lab() else { return };
    let root = lab.root();
    let run = [
        "run",
        "--rm",
        "--network",
        "none",
        "--userns=auto",
        "busybox",
        "true",
    ];
    let mode = std::fs::metadata(root).unwrap().permissions().mode();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = lab.tb(&run);
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode)).unwrap();
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot reach") && r.stderr.contains("chmod o+x"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert_eq!(lab.container_count(), 0, "nothing left behind");
    // searchable again: it runs
    let r = lab.tb(&run);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
