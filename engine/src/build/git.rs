//! `ADD <git repository> <dir>`: the repository is checked out with the
//! `git` binary as BuildKit's git source does: at the `#ref` (branch, tag
//! or commit; the remote's HEAD without one), submodules included, only the
//! `#ref:subdir` part when given, and without `.git` unless `--keep-git-dir`.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// A git source split into the URL, the ref and the subdirectory.
#[derive(Debug, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

impl GitSource {
    /// Splits `URL#REF:SUBDIR` (both parts optional).
    pub fn parse(src: &str) -> GitSource {
        let (url, fragment) = match src.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (src, None),
        };
        let (reference, subdir) = match fragment {
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (f, None),
            },
            None => ("", None),
        };
        GitSource {
            url: url.to_string(),
            reference: (!reference.is_empty()).then(|| reference.to_string()),
            subdir: subdir
                .filter(|d| !d.is_empty() && *d != "/")
                .map(str::to_string),
        }
    }
}

/// A checked-out repository: the directory to copy and the commit it is.
pub struct Checkout {
    pub dir: PathBuf,
    pub commit: String,
}

/// Checks `src` out into `dir` (which must not exist) and returns the
/// directory to copy (`dir` or its subdirectory) with the commit, which keys
/// the cache as in BuildKit. `checksum` is the commit the ref must resolve
/// to (a full or abbreviated hex id).
pub fn checkout(
    src: &str,
    dir: &Path,
    keep_git_dir: bool,
    checksum: Option<&str>,
) -> Result<Checkout, String> {
    let source = GitSource::parse(src);
    let subdir = match &source.subdir {
        Some(d) => {
            let rel = Path::new(d.trim_start_matches('/'));
            if rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(format!(
                    "{src}: the subdirectory {d:?} leaves the repository"
                ));
            }
            Some(rel.to_path_buf())
        }
        None => None,
    };
    let reference = source.reference.as_deref().unwrap_or("HEAD");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    git(dir, &["init", "--quiet"])?;
    // a shallow fetch of the ref; a server that refuses one (a commit id over
    // the old protocol) gets a full fetch and the ref is looked up locally
    let fetched = git(
        dir,
        &[
            "fetch",
            "--quiet",
            "--depth=1",
            "--",
            &source.url,
            reference,
        ],
    );
    let target = match fetched {
        Ok(()) => "FETCH_HEAD".to_string(),
        Err(shallow) => {
            git(
                dir,
                &[
                    "fetch",
                    "--quiet",
                    "--tags",
                    "--",
                    &source.url,
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
            )
            .map_err(|_| shallow.clone())?;
            let found = [reference.to_string(), format!("origin/{reference}")]
                .into_iter()
                .find(|r| {
                    git(
                        dir,
                        &[
                            "rev-parse",
                            "--verify",
                            "--quiet",
                            &format!("{r}^{{commit}}"),
                        ],
                    )
                    .is_ok()
                });
            found.ok_or(shallow)?
        }
    };
    git(dir, &["checkout", "--quiet", "--detach", &target])?;
    let head = git_output(dir, &["rev-parse", "HEAD"])?;
    if let Some(want) = checksum {
        let want = want.trim().to_ascii_lowercase();
        if want.len() < 7 || !head.starts_with(&want) {
            return Err(format!(
                "{src}: --checksum={want} does not match the commit {head}"
            ));
        }
    }
    if dir.join(".gitmodules").exists() {
        git(
            dir,
            &[
                "submodule",
                "update",
                "--quiet",
                "--init",
                "--recursive",
                "--depth=1",
            ],
        )?;
    }
    if !keep_git_dir {
        let dot_git = dir.join(".git");
        std::fs::remove_dir_all(&dot_git).map_err(|e| format!("{}: {e}", dot_git.display()))?;
    }
    let out = match subdir {
        Some(rel) => dir.join(rel),
        None => dir.to_path_buf(),
    };
    // the subdirectory must be a directory of the checkout, not a link out of it
    match out.symlink_metadata() {
        Ok(md) if md.is_dir() => Ok(Checkout {
            dir: out,
            commit: head,
        }),
        _ => Err(format!(
            "{src}: no directory {} in the repository",
            source.subdir.unwrap_or_default()
        )),
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    git_output(dir, args).map(|_| ())
}

/// Runs git in `dir` without a terminal prompt or the user's config, killed
/// after GIT_TIMEOUT; returns its trimmed stdout or its last stderr line.
fn git_output(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "advice.detachedHead=false"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running git (is it installed?): {e}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let out = std::thread::spawn(move || read_all(stdout));
    let err = std::thread::spawn(move || read_all(stderr));
    let deadline = Instant::now() + GIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "git {}: no answer in {}s",
                    args[0],
                    GIT_TIMEOUT.as_secs()
                ));
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status.success() {
        return Ok(stdout.trim().to_string());
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim()
        .to_string();
    Err(format!("git {}: {last}", args[0]))
}

fn read_all<R: std::io::Read>(r: Option<R>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_give_the_ref_and_subdirectory() {
        let p = GitSource::parse("https://github.com/moby/buildkit.git#v0.10.1:docs");
        assert_eq!(p.url, "https://github.com/moby/buildkit.git");
        assert_eq!(p.reference.as_deref(), Some("v0.10.1"));
        assert_eq!(p.subdir.as_deref(), Some("docs"));
        let p = GitSource::parse("git@github.com:moby/buildkit.git");
        assert_eq!(
            (p.url.as_str(), p.reference, p.subdir),
            ("git@github.com:moby/buildkit.git", None, None)
        );
        let p = GitSource::parse("git://h/r.git#:sub");
        assert_eq!((p.reference, p.subdir.as_deref()), (None, Some("sub")));
    }
}
