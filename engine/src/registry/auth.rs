//! Authentication: the `WWW-Authenticate` challenge a registry answers with,
//! the bearer-token request (Docker Hub's flow: ask the realm for a token for
//! `repository:NAME:pull,push`, with basic credentials if we have them), and the
//! credentials `twinbox login` keeps in `auth.json` (mode 0600).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{RegistryError, Result};

/// A user name and password (or access token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the password, not even in debug logs
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

impl Credentials {
    /// The `Authorization` header value for HTTP basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// How a registry asked to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="https://auth.example/token",service="x",scope="a:b:pull,push"`
    /// (quoted values may hold commas) or `Basic realm="..."`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic {
                realm: params.get("realm").cloned(),
            }),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key=value` or `key="value, with \"quotes\""` pairs separated by commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key, value);
    }
    out
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL to ask a bearer realm for a token covering `scopes`.
pub fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut url = realm.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    if let Some(s) = service {
        url.push_str(&format!("{sep}service={}", encode_query(s)));
        sep = '&';
    }
    for s in scopes {
        url.push_str(&format!("{sep}scope={}", encode_query(s)));
        sep = '&';
    }
    url
}

/// The scope string for a repository, e.g. `repository:library/busybox:pull,push`.
pub fn repository_scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

/// A token server's answer: Docker Hub says `token`, OAuth2 servers `access_token`.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

/// The name credentials are kept under: Docker Hub has several host names.
pub fn auth_key(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_string(),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuthEntry {
    /// base64 of `user:password`, as Docker's config.json keeps it
    auth: String,
}

/// The credentials file: `{"auths": {"host:port": {"auth": "base64(user:pass)"}}}`.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    /// The credentials file of a store: `<store>/auth.json`, beside the images it
    /// pulls, so a private `--root` has private logins.
    pub fn for_store(root: &Path) -> AuthFile {
        AuthFile {
            path: root.join("auth.json"),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> AuthFile {
        AuthFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::AuthFile {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    fn read(&self) -> Result<AuthJson> {
        match fs::read(&self.path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| self.error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthJson::default()),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// Writes with mode 0600 through a temp file and rename: never half a file,
    /// never readable by others for a moment.
    fn write(&self, json: &AuthJson) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.error(e.to_string()))?;
        let tmp = dir.join(format!(".auth.json.tmp-{}", crate::util::id::random_hex(4)));
        let data = serde_json::to_vec_pretty(json).expect("auth json serialises");
        let result = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            crate::store::atomic::sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| self.error(e.to_string()))
    }

    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let json = self.read()?;
        let Some(entry) = json.auths.get(&auth_key(registry)) else {
            return Ok(None);
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .map_err(|e| self.error(format!("entry for {registry}: {e}")))?;
        let raw = String::from_utf8(raw)
            .map_err(|_| self.error(format!("entry for {registry} is not utf-8")))?;
        let (username, password) = raw
            .split_once(':')
            .ok_or_else(|| self.error(format!("entry for {registry} is not user:password")))?;
        Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }

    pub fn set(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut json = self.read()?;
        let raw = format!("{}:{}", creds.username, creds.password);
        json.auths.insert(
            auth_key(registry),
            AuthEntry {
                auth: base64::engine::general_purpose::STANDARD.encode(raw),
            },
        );
        self.write(&json)
    }

    /// Forgets a registry's credentials; false when there were none.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut json = self.read()?;
        let found = json.auths.remove(&auth_key(registry)).is_some();
        if found {
            self.write(&json)?;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            }
        );
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            c,
            Challenge::Basic {
                realm: Some("Registry Realm".into())
            }
        );
        // unquoted values, odd spacing, escaped quotes
        let c = Challenge::parse(r#"bearer realm=http://127.0.0.1:1/t , service="a\"b""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("a\"b".into()),
                scope: None,
            }
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }

    #[test]
    fn builds_token_request() {
        let url = token_url(
            "https://auth.docker.io/token",
            Some("registry.docker.io"),
            &[
                repository_scope("library/busybox", true),
                repository_scope("team/base", false),
            ],
        );
        assert_eq!(
            url,
            "https://auth.docker.io/token?service=registry.docker.io\
             &scope=repository%3Alibrary%2Fbusybox%3Apull%2Cpush\
             &scope=repository%3Ateam%2Fbase%3Apull"
        );
        assert_eq!(
            token_url("http://h/t?x=1", None, &["s".into()]),
            "http://h/t?x=1&scope=s"
        );
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"abc"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("abc"));
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"t1","access_token":"t2","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("t1"));
    }

    #[test]
    fn basic_header() {
        let c = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        assert_eq!(c.basic_header(), "Basic dXNlcjpwYXNz");
        assert!(!format!("{c:?}").contains("pass\""));
    }

    #[test]
    fn auth_file_round_trip_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = AuthFile::for_store(dir.path());
        assert_eq!(file.get("127.0.0.1:5000").unwrap(), None);
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        file.set("127.0.0.1:5000", &c).unwrap();
        file.set("index.docker.io", &c).unwrap();
        let mode = fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(file.get("127.0.0.1:5000").unwrap(), Some(c.clone()));
        assert_eq!(file.get("docker.io").unwrap(), Some(c));
        assert!(file.remove("127.0.0.1:5000").unwrap());
        assert!(!file.remove("127.0.0.1:5000").unwrap());
        assert_eq!(file.get("127.0.0.1:5000").unwrap(), None);
    }
}
