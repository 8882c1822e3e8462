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
    // "LINK/" and -L copy what the link points at, resolved in the container and
    // named after the link, as Docker does (not a host link to the host's bait)
    for (args, name) in [(&["cp"][..], "slash"), (&["cp", "-L"], "follow")] {
        let dest = host.path().join(name);
        let from = if name == "slash" {
            "cp-a:/data/out/"
        } else {
            "cp-a:/data/out"
        };
        let r = lab.tb(&[args, &[from, dest.to_str().unwrap()]].concat());
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(
            std::fs::symlink_metadata(&dest).unwrap().is_dir(),
            "{args:?}"
        );
        assert_eq!(listing(&dest), vec!["in.txt", "src"], "{args:?}");
    }
    let r = lab.tb(&["exec", "cp-a", "ln", "-s", "/data/loop", "/data/loop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&[
        "cp",
        "-L",
        "cp-a:/data/loop",
        host.path().join("loop").to_str().unwrap(),
    ]);
    assert!(
        r.stderr.contains("too many levels of symbolic links"),
        "{}",
        r.stderr
    );
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

/// A tar entry written byte by byte, so a test can hold names the tar crate
/// refuses to write (`../x`).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o640
    });
    h.set_uid(1234);
    h.set_gid(4321);
    h.set_mtime(1_000_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        raw_entry(&mut out, name, *kind, link, data);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn cp_dash_streams_tar_archives_and_refuses_hostile_ones() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let Some(lab) = lab() else { return };
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let bait = host.path().join("bait"); // a host dir a container link points at
    std::fs::create_dir(&bait).unwrap();
    let script = format!(
        "mkdir -p {b} /data/in && echo inside > /data/in.txt && ln -s {b} /data/out && \
         dd if=/dev/zero of=/data/big bs=1024 count=1024 2>/dev/null && touch /data/ready && \
         sleep 1000",
        b = bait.display()
    );
    let r = lab.tb(&[
        "run", "-d", "--name", "cp-t", "busybox", "sh", "-c", &script,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab.tb(&["exec", "cp-t", "test", "-e", "/data/ready"]).code != 0 {
        assert!(std::time::Instant::now() < deadline, "container not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let in_container = |cmd: &str| lab.tb(&["exec", "cp-t", "sh", "-c", cmd]);

    // out: a tar archive on stdout, named after the path, links kept as links
    let out = lab.cmd(&["cp", "cp-t:/data", "-"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut seen = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        match name.as_str() {
            "data/in.txt" => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                assert_eq!(s, "inside\n");
            }
            "data/out" => {
                assert_eq!(e.header().entry_type(), Symlink);
                assert_eq!(e.link_name().unwrap().unwrap(), bait);
            }
            "data/big" => assert_eq!(e.header().size().unwrap(), 1 << 20),
            _ => {}
        }
        seen.push(name);
    }
    for want in ["data", "data/in", "data/in.txt", "data/out", "data/big"] {
        assert!(seen.iter().any(|s| s == want), "{want} missing: {seen:?}");
    }

    // in: directories, a file, a symlink and a hard link; an entry through the
    // container's link to a host path lands in the container
    let good = tar_of(&[
        ("new/", Directory, "", b""),
        ("new/f.txt", Regular, "", b"from the archive\n"),
        ("new/l", Symlink, "f.txt", b""),
        ("new/h", Link, "new/f.txt", b""),
        ("/deep/er/x.txt", Regular, "", b"x\n"),
        ("out/through.txt", Regular, "", b"through\n"),
    ]);
    let r = lab.piped(&["cp", "-", "cp-t:/data/in"], &good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = in_container(&format!(
        "cd /data/in && cat new/f.txt && readlink new/l && stat -c %u:%g:%a new/f.txt && \
         [ $(stat -c %i new/h) = $(stat -c %i new/f.txt) ] && echo linked && cat deep/er/x.txt && \
         stat -c %Y new/f.txt new && ls {b}",
        b = bait.display()
    ));
    assert_eq!(
        r.stdout, "from the archive\nf.txt\n0:0:640\nlinked\nx\n1000000000\n1000000000\n",
        "{}",
        r.stderr
    );
    let r = lab.piped(&["cp", "-", "cp-t:/data/out"], &good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = in_container(&format!("cat {}/new/f.txt", bait.display()));
    assert_eq!(r.stdout, "from the archive\n", "{}", r.stderr);
    assert!(
        listing(&bait).is_empty(),
        "wrote on the host: {:?}",
        listing(&bait)
    );
    // -a keeps the archive's owners; gzip is read as Docker's cp reads it
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &good).unwrap();
    let r = lab.piped(&["cp", "-a", "-", "cp-t:/data/in"], &gz.finish().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = in_container("stat -c %u:%g /data/in/new/f.txt");
    assert_eq!(r.stdout, "1234:4321\n", "{}", r.stderr);

    // hostile archives: one line, exit 1, nothing written (not even the good first entry)
    let hostile: [(&str, Vec<u8>); 5] = [
        (
            "../",
            tar_of(&[
                ("first.txt", Regular, "", b"1"),
                ("../escape.txt", Regular, "", b"x"),
            ]),
        ),
        (
            "../",
            tar_of(&[
                ("first.txt", Regular, "", b"1"),
                ("a/../../escape.txt", Regular, "", b"x"),
            ]),
        ),
        (
            "symlink",
            tar_of(&[
                ("first.txt", Regular, "", b"1"),
                ("up", Symlink, "../../../etc", b""),
            ]),
        ),
        (
            "hard link",
            tar_of(&[
                ("first.txt", Regular, "", b"1"),
                ("pw", Link, "/etc/passwd", b""),
            ]),
        ),
        (
            "hard link",
            tar_of(&[
                ("first.txt", Regular, "", b"1"),
                ("pw", Link, "../in.txt", b""),
            ]),
        ),
    ];
    for (what, tar) in &hostile {
        let r = lab.piped(&["cp", "-", "cp-t:/data/in"], tar);
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(what) && r.stderr.contains("refusing"),
            "{}",
            r.stderr
        );
        let r = in_container(
            "ls /data/in/first.txt /data/escape.txt /escape.txt /data/in/up /data/in/pw",
        );
        assert_eq!(r.stdout, "", "written: {}", r.stdout);
    }
    // an absolute link the archive makes is the container's path, never the host's
    let abs = bait.display().to_string();
    let sneaky = tar_of(&[
        ("evil", Symlink, &abs, b""),
        ("evil/pwned.txt", Regular, "", b"p"),
    ]);
    let r = lab.piped(&["cp", "-", "cp-t:/data/in"], &sneaky);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = in_container(&format!("cat {abs}/pwned.txt"));
    assert_eq!(r.stdout, "p");
    assert!(
        listing(&bait).is_empty(),
        "wrote on the host: {:?}",
        listing(&bait)
    );

    // bad input: one clear line each
    for (input, args, want) in [
        (&b""[..], ["cp", "-", "cp-t:/data"], "empty"),
        (
            &b"not a tar archive at all"[..],
            ["cp", "-", "cp-t:/data"],
            "not a tar archive",
        ),
        (&good[..], ["cp", "-", "cp-t:/no/such"], "no such directory"),
        (
            &good[..],
            ["cp", "-", "cp-t:/data/in.txt"],
            "not a directory",
        ),
        (&good[..], ["cp", "-", "-"], "CONTAINER:PATH"),
    ] {
        let r = lab.piped(&args, input);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(want) && r.stderr.lines().count() == 1,
            "{}",
            r.stderr
        );
    }

    // a reader that goes away: twinbox ends quietly, no panic
    let mut child = lab
        .cmd(&["cp", "cp-t:/data", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 512];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    // a stopped container: the same, through its own filesystem; nothing left behind
    assert_eq!(lab.tb(&["stop", "-t", "0", "cp-t"]).code, 0);
    let r = lab.piped(&["cp", "-", "cp-t:/data/in"], &good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = lab
        .cmd(&["cp", "cp-t:/data/in/new/f.txt", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut e = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().to_str(), Some("f.txt"));
    let mut s = String::new();
    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
    assert_eq!(s, "from the archive\n");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(lab.root().to_str().unwrap()),
        "a cp mount stayed"
    );
    let tmp: Vec<_> = std::fs::read_dir(lab.root().join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "left in the store's tmp: {tmp:?}");
}
