//! Finding programs the way a shell does, and the host's static busybox
//! (the base image and the VM initramfs are made from it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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
    fn finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-twinbox").is_none());
    }
}
