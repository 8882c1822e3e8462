//! Volumes: named ones created on first use and filled from the image, data
//! that outlives containers, read-only mounts, anonymous volumes and `rm -v`,
//! and removal refused while a container uses a volume.

mod common;

use common::*;

fn volume_names(lab: &Lab) -> Vec<String> {
    let r = lab.tb(&["volume", "ls", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

#[test]
fn named_volumes_are_filled_from_the_image_and_outlive_containers() {
    let Some(lab) = lab() else { return };
    // new and empty: the image's /bin is copied up, with its symlinks as links
    let r = lab.tb(&[
        "run",
        "--name",
        "v-first",
        "-v",
        "binvol:/bin",
        "busybox",
        "sh",
        "-c",
        "ls /bin | wc -l; echo kept > /bin/note",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let copied: usize = r.stdout.trim().parse().unwrap();
    assert!(copied > 50, "image content not copied up: {}", r.stdout);
    let data = lab.root().join("volumes/binvol/_data");
    assert!(data.join("sh").symlink_metadata().is_ok());

    // in use: refused with a clear line; after rm the data is still there
    let r = lab.tb(&["volume", "rm", "binvol"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("volume binvol is in use by container v-first"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.tb(&["rm", "v-first"]).code, 0);
    let r = lab.tb(&[
        "run",
        "--rm",
        "-v",
        "binvol:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/note; echo x > /data/other",
    ]);
    assert_eq!(r.stdout, "kept\n");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert!(!data.join("other").exists());

    // an existing non-empty volume is not refilled
    let r = lab.tb(&[
        "run",
        "--rm",
        "-v",
        "binvol:/etc",
        "busybox",
        "sh",
        "-c",
        "test -e /etc/note && test ! -e /etc/passwd && echo untouched",
    ]);
    assert_eq!(r.stdout, "untouched\n", "{}", r.stderr);

    let r = lab.tb(&["volume", "inspect", "binvol"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["Mountpoint"], data.display().to_string());
    assert_eq!(lab.tb(&["volume", "rm", "binvol"]).code, 0);
    assert!(!data.exists());
    assert!(volume_names(&lab).is_empty());

    let r = lab.tb(&["run", "--rm", "-v", "bad name:/x", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("volume name"), "{}", r.stderr);
    let r = lab.tb(&["volume", "rm", "nothing-here"]);
    assert!(
        r.stderr.contains("no such volume: nothing-here"),
        "{}",
        r.stderr
    );
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_rm_flag() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--name",
        "v-anon",
        "-v",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo a > /scratch/f",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names = volume_names(&lab);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(names[0].len(), 64);
    let inspect = lab.inspect("v-anon");
    assert_eq!(inspect["Mounts"][0]["Type"], "volume");
    assert_eq!(inspect["Mounts"][0]["Destination"], "/scratch");

    // plain rm keeps it (and prune then takes it), rm -v removes it
    assert_eq!(lab.tb(&["rm", "v-anon"]).code, 0);
    assert_eq!(volume_names(&lab).len(), 1);
    let r = lab.tb(&["volume", "prune", "-f"]);
    assert!(
        r.stdout.contains("Total reclaimed volumes: 1"),
        "{}",
        r.stdout
    );
    assert!(volume_names(&lab).is_empty());

    let r = lab.tb(&[
        "run",
        "--name",
        "v-anon2",
        "-v",
        "/scratch",
        "-v",
        "keep:/keep",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(volume_names(&lab).len(), 2);
    assert_eq!(lab.tb(&["rm", "-v", "v-anon2"]).code, 0);
    assert_eq!(volume_names(&lab), vec!["keep"]);

    let r = lab.tb(&["run", "--rm", "-v", "/scratch", "busybox", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(volume_names(&lab), vec!["keep"]);
    // prune leaves named volumes unless --all
    lab.tb(&["volume", "prune", "-f"]);
    assert_eq!(volume_names(&lab), vec!["keep"]);
    lab.tb(&["volume", "prune", "-f", "--all"]);
    assert!(volume_names(&lab).is_empty());
}

#[test]
fn mount_tmpfs_shm_size_and_volumes_from() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--rm",
        "--tmpfs",
        "/run:size=1m",
        "--mount",
        "type=tmpfs,target=/t2,tmpfs-size=2m",
        "--shm-size",
        "8m",
        "busybox",
        "sh",
        "-c",
        "grep -E ' (/run|/t2|/dev/shm) ' /proc/mounts",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (path, size) in [
        ("/run", "size=1024k"),
        ("/t2", "size=2048k"),
        ("/dev/shm", "size=8192k"),
    ] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(path))
            .unwrap_or("");
        assert!(
            line.starts_with("tmpfs ") || line.starts_with("shm "),
            "{path}: {}",
            r.stdout
        );
        assert!(
            line.contains(size) && line.contains("noexec"),
            "{path}: {line}"
        );
    }
    // Docker's default /dev/shm is 64 MiB
    let r = lab.sh("grep ' /dev/shm ' /proc/mounts");
    assert!(r.stdout.contains("size=65536k"), "{}", r.stdout);

    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let bind = format!("type=bind,source={},target=/hostdir", host.path().display());
    let r = lab.tb(&[
        "run",
        "--name",
        "vf-src",
        "--mount",
        "type=volume,source=shared,target=/shared",
        "--mount",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo hi > /shared/x; echo b > /hostdir/b",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(host.path().join("b")).unwrap(),
        "b\n"
    );
    let r = lab.tb(&[
        "run",
        "--name",
        "vf-user",
        "--volumes-from",
        "vf-src:ro",
        "busybox",
        "sh",
        "-c",
        "cat /shared/x /hostdir/b; echo y > /shared/y",
    ]);
    assert_eq!(r.stdout, "hi\nb\n");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    // both containers use the volume now
    assert_eq!(lab.tb(&["rm", "vf-src"]).code, 0);
    let r = lab.tb(&["volume", "rm", "shared"]);
    assert!(
        r.stderr.contains("in use by container vf-user"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.tb(&["rm", "vf-user"]).code, 0);
    assert_eq!(lab.tb(&["volume", "rm", "shared"]).code, 0);

    let r = lab.tb(&[
        "run",
        "--rm",
        "--mount",
        "type=nfs,target=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("unknown type"), "{}", r.stderr);
    let r = lab.tb(&[
        "run",
        "--rm",
        "--volumes-from",
        "nobody-here",
        "busybox",
        "true",
    ]);
    assert!(
        r.stderr.contains("no such container: nobody-here"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.container_count(), 0);
}
