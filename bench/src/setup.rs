//! What every bench that drives the twinbox binary checks before measuring.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The release binary a bench measures unless `--twinbox` names another.
pub const DEFAULT_TWINBOX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/twinbox");

/// Root (`why` says what needs it), the twinbox binary to measure, and a
/// scratch directory under `tmp` for its store; errors are the bench's one line.
pub fn prepare(
    why: &str,
    twinbox: Option<&Path>,
    tmp: &Path,
    prefix: &str,
) -> Result<(PathBuf, TempDir), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!("run as root: {why}"));
    }
    let bin = twinbox.map_or_else(|| PathBuf::from(DEFAULT_TWINBOX), Path::to_path_buf);
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release` first or pass --twinbox",
            bin.display()
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(tmp)
        .map_err(|e| format!("scratch dir in {}: {e}", tmp.display()))?;
    Ok((bin, dir))
}
