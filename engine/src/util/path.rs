//! Finding programs the way a shell does.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(super::find_in_path("sh").is_some());
        assert!(super::find_in_path("no-such-program-twinbox").is_none());
    }
}
