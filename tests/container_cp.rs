//! `cp`: both directions, running and stopped containers, and symlinks inside
//! the container resolved in its root: a link pointing at a host path copies
//! within the container and writes nothing on the host.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn cp_both_ways_with_symlinks_resolved_in_the_container() {
    let Some(lab) = lab() else { return };
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let bait = host.path().join("bait"); // a host dir a container link points at
    std::fs::create_dir(&bait).unwrap();
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file.txt"), "from the host\n").unwrap();
    std::os::unix::fs::symlink("file.txt", src.join("sub/link")).unwrap();
    std::os::unix::fs::chown(src.join("sub/file.txt"), Some(1234), Some(4321)).unwrap();

    let script = format!(
        "mkdir -p {b} /data && echo inside > {b}/in.txt && ln -s {b} /data/out && \
         ln -s / /data/up && sleep 1000",
        b = bait.display()
    );
    let r = lab.tb(&[
        "run", "-d", "--name", "cp-a", "busybox", "sh", "-c", &script,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ready = || lab.tb(&["exec", "cp-a", "test", "-L", "/data/up"]).code == 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "container not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // into the container through a link that names a host path: lands inside
    let r = lab.tb(&["cp", src.to_str().unwrap(), "cp-a:/data/out/"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        listing(&bait).is_empty(),
        "wrote on the host: {:?}",
        listing(&bait)
    );
    let r = lab.tb(&[
        "exec",
        "cp-a",
        "sh",
        "-c",
        &format!(
        "cat {b}/src/sub/file.txt; readlink {b}/src/sub/link; stat -c %u:%g {b}/src/sub/file.txt",
        b = bait.display()
    ),
    ]);
    assert_eq!(r.stdout, "from the host\nfile.txt\n0:0\n", "{}", r.stderr);
    // -a keeps owners
    let r = lab.tb(&[
        "cp",
        "-a",
        src.join("sub/file.txt").to_str().unwrap(),
        "cp-a:/data/owned",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["exec", "cp-a", "stat", "-c", "%u:%g", "/data/owned"]);
    assert_eq!(r.stdout, "1234:4321\n");

    // out of the container: a link is copied as a link, never followed on the host
    let out = host.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = lab.tb(&["cp", "cp-a:/data/out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_link(out.join("out")).unwrap(), bait);
    // "/." copies the contents, the link on the way resolved in the container
    let contents = host.path().join("contents");
    let r = lab.tb(&["cp", "cp-a:/data/out/.", contents.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(listing(&contents), vec!["in.txt", "src"]);
    // ".." and "/" links cannot climb out of the container's root
    let pw = host.path().join("passwd");
    let r = lab.tb(&[
        "cp",
        "cp-a:/data/up/../../../etc/passwd",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inside = lab.tb(&["exec", "cp-a", "cat", "/etc/passwd"]).stdout;
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), inside);
    assert_eq!(listing(&bait), Vec::<String>::new());

    // a stopped container: same rules, through its own filesystem
    assert_eq!(lab.tb(&["stop", "-t", "0", "cp-a"]).code, 0);
    let r = lab.tb(&[
        "cp",
        src.join("sub/file.txt").to_str().unwrap(),
        "cp-a:/data/out/stopped.txt",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        listing(&bait).is_empty(),
        "wrote on the host: {:?}",
        listing(&bait)
    );
    let back = host.path().join("back");
    let r = lab.tb(&[
        "cp",
        &format!("cp-a:{}", bait.display()),
        back.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(listing(&back), vec!["in.txt", "src", "stopped.txt"]);
    assert_eq!(
        std::fs::metadata(back.join("stopped.txt")).unwrap().uid(),
        0
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(lab.root().to_str().unwrap()),
        "a cp mount stayed"
    );

    // bad input: one clear line
    let r = lab.tb(&["cp", "cp-a:/no/such", out.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no such"), "{}", r.stderr);
    let r = lab.tb(&["cp", "/etc/hostname", "/tmp/x"]);
    assert!(r.stderr.contains("CONTAINER:PATH"), "{}", r.stderr);
}
