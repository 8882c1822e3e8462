use std::fs;
use std::os::unix::fs::symlink;

use super::*;
use crate::runtime::security::testutil::{in_child, is_root, private_mount_namespace};

type Resolver = fn(&OwnedFd, &Path) -> io::Result<OwnedFd>;

/// Both resolutions: the kernel's (openat2) and the fallback walk.
const RESOLVERS: [(&str, Resolver); 2] = [("openat2", openat2_in_root), ("walk", walk_in_root)];

/// root/ with real/, links that point up, absolute, and to a host directory
/// by its absolute path; outside/ next to it, holding a marker.
fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir_all(root.join("real/sub")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("marker"), b"host").unwrap();
    symlink("/etc", root.join("abs")).unwrap();
    symlink("/etc", root.join("real/sub/abs")).unwrap();
    symlink("../../../..", root.join("up")).unwrap();
    symlink("real/sub/../../../..", root.join("updeep")).unwrap();
    symlink(&outside, root.join("host")).unwrap();
    symlink("/proc/self/root", root.join("magic")).unwrap();
    (dir, root, outside)
}

#[test]
fn resolution_stays_inside_the_root() {
    let (_dir, root, _outside) = layout();
    let inroot = InRoot::open(&root).unwrap();
    let real = fs::canonicalize(&root).unwrap();
    for (name, resolve) in RESOLVERS {
        let at = |p: &str| {
            let fd =
                resolve(&inroot.fd, Path::new(p)).unwrap_or_else(|e| panic!("{name}: {p}: {e}"));
            fd_path(&fd).unwrap()
        };
        assert_eq!(at("abs"), real.join("etc"), "{name}");
        assert_eq!(at("real/sub/abs"), real.join("etc"), "{name}");
        assert_eq!(at("up"), real, "{name}");
        assert_eq!(at("updeep"), real, "{name}");
        assert_eq!(at("up/etc"), real.join("etc"), "{name}");
        assert_eq!(at("real/../etc"), real.join("etc"), "{name}");
        assert_eq!(at(""), real, "{name}");
        // a link to a host directory is taken inside the root, where it is missing
        let err = resolve(&inroot.fd, Path::new("host")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{name}: host link");
        let err = resolve(&inroot.fd, Path::new("host/marker")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{name}: host link");
    }
    // /proc/self/root inside the root is the root's own proc/... (missing), for both
    for (name, resolve) in RESOLVERS {
        assert!(
            resolve(&inroot.fd, Path::new("magic/etc")).is_err(),
            "{name}"
        );
    }
    // the public entry: an absolute destination with `..` above the root
    let fd = inroot.open_path(Path::new("/../../abs")).unwrap();
    assert_eq!(fd_path(&fd).unwrap(), real.join("etc"));
}

#[test]
fn more_links_than_the_kernel_follows_is_eloop() {
    let (_dir, root, outside) = layout();
    for i in 0..41 {
        symlink(format!("l{}", i + 1), root.join(format!("l{i}"))).unwrap();
    }
    symlink(&outside, root.join("l41")).unwrap();
    let inroot = InRoot::open(&root).unwrap();
    for (name, resolve) in RESOLVERS {
        let err = resolve(&inroot.fd, Path::new("l0")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{name}");
    }
}

#[test]
fn a_descriptor_outside_the_root_is_refused() {
    let (_dir, root, outside) = layout();
    let inroot = InRoot::open(&root).unwrap();
    let host = nix::fcntl::open(&outside, OFlag::O_PATH, Mode::empty()).unwrap();
    match inroot.check(Path::new("/x"), &host) {
        Err(InRootError::Escaped { found, .. }) => {
            assert_eq!(found, fs::canonicalize(&outside).unwrap())
        }
        other => panic!("{other:?}"),
    }
    // a sibling whose name starts with the root's is not beneath it
    let sibling = root.with_file_name("rootx");
    fs::create_dir(&sibling).unwrap();
    let fd = nix::fcntl::open(&sibling, OFlag::O_PATH, Mode::empty()).unwrap();
    assert!(inroot.check(Path::new("/x"), &fd).is_err());
}

#[test]
fn mkdir_and_create_through_links_stay_inside() {
    let (_dir, root, outside) = layout();
    let inroot = InRoot::open(&root).unwrap();
    let real = fs::canonicalize(&root).unwrap();
    let fd = inroot.mkdir_all(Path::new("/host/a/b")).unwrap();
    let inside = real.join(outside.strip_prefix("/").unwrap()).join("a/b");
    assert_eq!(fd_path(&fd).unwrap(), inside);
    let fd = inroot.create_file(Path::new("/up/host/f")).unwrap();
    assert_eq!(
        fd_path(&fd).unwrap(),
        real.join(outside.strip_prefix("/").unwrap()).join("f")
    );
    let left: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["marker"]);
    // an existing file is neither truncated nor refused
    fs::write(real.join("etc/keep"), b"x").unwrap();
    inroot.create_file(Path::new("/abs/keep")).unwrap();
    assert_eq!(fs::read(real.join("etc/keep")).unwrap(), b"x");
    // a dangling link inside the root is followed there (`/var/run -> /run`)
    symlink("/run", real.join("varrun")).unwrap();
    let fd = inroot.mkdir_all(Path::new("/varrun/x")).unwrap();
    assert_eq!(fd_path(&fd).unwrap(), real.join("run/x"));
    symlink("../etc/made", real.join("real/file")).unwrap();
    let fd = inroot.create_file(Path::new("/real/file")).unwrap();
    assert_eq!(fd_path(&fd).unwrap(), real.join("etc/made"));
    // a file where a directory is needed is an error, not a mount point
    assert!(inroot.mkdir_all(Path::new("/etc/keep")).is_err());
}

/// The race itself, done by hand: the destination is opened, then its parent
/// is renamed away and replaced by a link to a host directory, then mounted
/// on. Mounting on the descriptor lands where it was opened; mounting on the
/// path would land on the host. Root, in a forked child's private mount
/// namespace.
#[test]
fn a_mount_on_the_descriptor_survives_a_swapped_path() {
    if !is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let (_dir, root, outside) = layout();
    let src = root.with_file_name("src");
    fs::create_dir_all(root.join("vol/dest")).unwrap();
    fs::create_dir_all(outside.join("dest")).unwrap();
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("mounted"), b"").unwrap();
    let code = in_child(|| {
        if !private_mount_namespace() {
            return 10;
        }
        let Ok(inroot) = InRoot::open(&root) else {
            return 11;
        };
        let Ok(fd) = inroot.open_path(Path::new("/vol/dest")) else {
            return 12;
        };
        // the other container's move
        if fs::rename(root.join("vol"), root.join("vol.old")).is_err()
            || symlink(&outside, root.join("vol")).is_err()
        {
            return 13;
        }
        if nix::mount::mount(
            Some(&src),
            &proc_path(&fd),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .is_err()
        {
            return 14;
        }
        if outside.join("dest/mounted").exists() {
            return 15; // landed on the host
        }
        if !root.join("vol.old/dest/mounted").exists() {
            return 16;
        }
        // the mount is found again where the descriptor was, not by the old path
        match inroot.after_mount(Path::new("/vol.old/dest"), &fd) {
            Ok(top) if fd_path(&top).ok() == fd_path(&fd).ok() => {}
            _ => return 17,
        }
        0
    });
    assert_eq!(code, 0, "child failed at step {code}");
}
