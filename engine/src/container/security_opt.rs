//! `--security-opt`, in Docker's spellings (`KEY=VALUE` or the older `KEY:VALUE`):
//! `seccomp=unconfined`, `seccomp=FILE.json` (Docker's profile format) and
//! `no-new-privileges[=true|false]`.

use super::{ContainerError, Result};

/// What the `--security-opt` flags of one `run`/`create` ask for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecurityOpts {
    pub seccomp_unconfined: bool,
    /// The profile's text, read now so that restarts do not need the file.
    pub seccomp_profile: Option<String>,
    /// Off unless asked, as Docker: setuid programs and file capabilities work
    /// inside the container (`ping` as a user, `sudo`).
    pub no_new_privileges: bool,
}

/// Parses every `--security-opt` in order (a later one wins).
pub fn parse(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => {
                out.seccomp_unconfined = true;
                out.seccomp_profile = None;
            }
            ("seccomp", Some(file)) if !file.is_empty() => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    ContainerError::BadOption(format!(
                        "cannot read seccomp profile {file}: {e}: give a Docker JSON profile file"
                    ))
                })?;
                out.seccomp_unconfined = false;
                out.seccomp_profile = Some(text);
            }
            ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
            _ => {
                return Err(ContainerError::BadOption(format!(
                    "unsupported --security-opt {opt:?}: use seccomp=unconfined, seccomp=FILE.json or no-new-privileges[=true|false]"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> Result<SecurityOpts> {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_new_privileges_is_off_unless_asked() {
        assert!(!p(&[]).unwrap().no_new_privileges);
        for on in [
            "no-new-privileges",
            "no-new-privileges=true",
            "no-new-privileges:true",
        ] {
            assert!(p(&[on]).unwrap().no_new_privileges, "{on}");
        }
        let off = p(&["no-new-privileges", "no-new-privileges=false"]).unwrap();
        assert!(!off.no_new_privileges);
    }

    #[test]
    fn seccomp_forms() {
        assert!(p(&["seccomp=unconfined"]).unwrap().seccomp_unconfined);
        assert!(p(&["seccomp:unconfined"]).unwrap().seccomp_unconfined);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{}").unwrap();
        let o = p(&[&format!("seccomp={}", file.display())]).unwrap();
        assert_eq!(o.seccomp_profile.as_deref(), Some("{}"));
        let err = p(&["seccomp=/nonexistent/p.json"]).unwrap_err().to_string();
        assert!(err.contains("cannot read seccomp profile"), "{err}");
    }

    #[test]
    fn unknown_options_are_refused_with_the_choices() {
        for bad in [
            "apparmor=x",
            "no-new-privileges=maybe",
            "seccomp=",
            "label:disable",
        ] {
            let err = p(&[bad]).unwrap_err().to_string();
            assert!(err.contains("unsupported --security-opt"), "{bad}: {err}");
        }
    }
}
