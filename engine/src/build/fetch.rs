//! `ADD https://...`: the file is downloaded (and checked against `--checksum`
//! when given) before it is staged like any other source.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Downloads `url` into `dir`, returning the file. The name is the URL's last
/// path segment (or `index.html`); the mode is 0600 as Docker gives it.
pub fn download(url: &str, dir: &Path, checksum: Option<&str>) -> Result<PathBuf, String> {
    let want = match checksum {
        Some(c) => Some(
            c.strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("--checksum={c}: give sha256:<64 hex digits>"))?
                .to_ascii_lowercase(),
        ),
        None => None,
    };
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or("index.html")
        .to_string();
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(&name);
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(300)))
        .build()
        .new_agent();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("downloading {url}: {e}"))?;
    let mut reader = response.body_mut().as_reader();
    let mut file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("downloading {url}: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let got = hex::encode(hasher.finalize());
    if let Some(want) = want {
        if got != want {
            return Err(format!(
                "{url}: checksum mismatch: expected sha256:{want}, got sha256:{got}"
            ));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
