//! Finding programs the way a shell does, and the host's static busybox
//! (the base image and the VM initramfs are made from it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `root/rel` when every directory on the way is a real directory of `root`
/// (lstat, no link followed), so the path cannot lead out of `root` through a
/// link that lives in it; the last component may be anything, a link included.
/// None for `..`, an absolute part, or anything but a directory on the way.
pub fn beneath(root: &Path, rel: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = root.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => continue,
            _ => return None,
        }
        if parts.peek().is_some() && !std::fs::symlink_metadata(&out).ok()?.is_dir() {
            return None;
        }
    }
    Some(out)
}

/// The first executable file called `name` in `$PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Where the static busybox lives on Debian (busybox-static) and elsewhere.
pub fn find_busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// True when the file is a statically linked ELF (no PT_INTERP program header).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let off = phoff + i * phentsize;
        off + 4 > data.len() || u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) != 3
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_detection() {
        if let Some(bb) = find_busybox() {
            assert!(is_static_elf(&bb));
        }
        assert!(!is_static_elf(Path::new("/bin/ls")));
    }

    #[test]
    fn beneath_refuses_links_and_climbs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/", root.join("link")).unwrap();
        let b = |rel: &str| beneath(root, Path::new(rel));
        assert_eq!(b("real/sub/x"), Some(root.join("real/sub/x")));
        assert_eq!(b("link"), Some(root.join("link")));
        assert_eq!(b("link/etc"), None);
        assert_eq!(b("real/../link/etc"), None);
        assert_eq!(b("/etc"), None);
        assert_eq!(b("missing/x"), None);
    }

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-twinbox").is_none());
    }
}
