//! The real registry (CNCF distribution, Debian's `docker-registry`) on a
//! loopback port it picks itself, with its own config and temp storage, killed
//! when the guard drops; a throttling TCP proxy for interrupting pulls; skopeo.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A registry process and its storage; stopped on drop.
pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// A loopback port that refuses connections for as long as the guard lives:
/// a TCP socket bound to it and never listening holds it, so no other program
/// can take it meanwhile (a port found free and released could be).
pub struct ClosedPort {
    _socket: std::os::fd::OwnedFd,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_in of the length given, for both calls.
    unsafe {
        let p = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
        assert_eq!(
            libc::bind(socket.as_raw_fd(), p, len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::getsockname(socket.as_raw_fd(), p, &mut len), 0);
    }
    ClosedPort {
        _socket: socket,
        port: u16::from_be(addr.sin_port),
    }
}

/// The TCP port process `pid` listens on, read from its own sockets (its file
/// descriptors' inodes matched in its network namespace's socket table).
pub fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local address, state (0A: LISTEN), inode
        let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
        if *state != "0A" || !inodes.iter().any(|i| i == inode) {
            return None;
        }
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: run scripts/install-deps.sh (packages docker-registry, skopeo, umoci, apache2-utils)"
    );
}

/// One HTTP GET on loopback (accepting OCI manifests): (status, headers + body as text).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out))
}

impl Registry {
    /// Starts a registry with no auth.
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// Starts a registry; `extra` is YAML appended to the config (an `auth:` section).
    pub fn start_with(extra: &str) -> Registry {
        require("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("twinbox-registry")
            .tempdir_in("/var/tmp")
            .unwrap();
        // port 0: the registry binds a port of the kernel's choosing, read back
        // below (a port found free here and bound later could be taken between)
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:0\n{extra}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry {
            child,
            dir,
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if reg.port == 0 {
                reg.port = listening_port(reg.child.id()).unwrap_or(0);
            }
            if reg.port != 0 {
                if let Some((status, _)) = http_get(reg.port, "/v2/") {
                    if status == 200 || status == 401 {
                        break;
                    }
                }
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on /v2/ within 20 s: {}",
                reg.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo with a permissive policy and plain HTTP to loopback registries.
pub fn skopeo(args: &[&str]) -> (i32, String, String) {
    require("skopeo");
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies an image with skopeo; panics with its stderr on failure.
pub fn skopeo_copy(extra: &[&str], from: &str, to: &str) {
    let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(from);
    args.push(to);
    let (code, _, err) = skopeo(&args);
    assert_eq!(code, 0, "skopeo copy {from} {to}: {err}");
}

/// A TCP proxy on loopback that forwards to `upstream`, slowing answers down to
/// `bytes_per_sec` while `throttled` is set. It stops when dropped.
pub struct SlowProxy {
    pub port: u16,
    pub throttled: Arc<AtomicBool>,
    pub forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    pub fn start(upstream: u16, bytes_per_sec: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let throttled = Arc::new(AtomicBool::new(true));
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, f, s) = (throttled.clone(), forwarded.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        thread::spawn(move || pipe(c2, s2, None, None, None));
                        let (t, f, s) = (t.clone(), f.clone(), s.clone());
                        thread::spawn(move || {
                            pipe(server, client, Some((t, bytes_per_sec)), Some(f), Some(s))
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SlowProxy {
            port,
            throttled,
            forwarded,
            stop,
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    throttle: Option<(Arc<AtomicBool>, u64)>,
    counter: Option<Arc<AtomicU64>>,
    stop: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(c) = &counter {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some((on, rate)) = &throttle {
            if on.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_secs_f64(n as f64 / *rate as f64));
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Every file under `dir`, relative, sorted (to compare a store before and after).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Standard (or URL-safe, unpadded) base64, enough for JWTs and basic auth.
pub fn base64(data: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url_safe {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request the token server answered: its scopes and whether it carried
/// the right basic credentials.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    pub authenticated: bool,
}

/// A bearer-token server as Docker Hub's auth.docker.io behaves: anonymous
/// callers get pull, `user:password` get pull and push, a wrong password gets 401.
/// Tokens are JWTs signed (RS256, via openssl) with a self-signed certificate the
/// registry trusts (`auth: token: rootcertbundle`).
pub struct TokenServer {
    pub port: u16,
    pub requests: Arc<std::sync::Mutex<Vec<TokenRequest>>>,
    pub cert: PathBuf,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

pub const TOKEN_SERVICE: &str = "twinbox-test-registry";
pub const TOKEN_ISSUER: &str = "twinbox-test-issuer";

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let st = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=twinbox-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64(&der, false);
        let expected_auth = format!(
            "Basic {}",
            base64(format!("{user}:{password}").as_bytes(), false)
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, s, key2, user) = (
            requests.clone(),
            stop.clone(),
            key.clone(),
            user.to_string(),
        );
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n")
                    && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false)
                {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Authorization: ")
                            .or(l.strip_prefix("authorization: "))
                    })
                    .map(str::trim)
                    .map(str::to_string);
                let scopes: Vec<String> = target
                    .split_once('?')
                    .map(|(_, q)| q)
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .map(percent_decode)
                    .collect();
                let authenticated = auth.as_deref() == Some(expected_auth.as_str());
                reqs.lock().unwrap().push(TokenRequest {
                    scopes: scopes.clone(),
                    authenticated,
                });
                let response = if auth.is_some() && !authenticated {
                    let body = r#"{"details":"incorrect username or password"}"#;
                    format!("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                } else {
                    let subject = if authenticated { user.as_str() } else { "" };
                    let token = jwt(&key2, &x5c, subject, &scopes, authenticated);
                    let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                let _ = conn.write_all(response.as_bytes());
            }
        });
        TokenServer {
            port,
            requests,
            cert,
            stop,
            _dir: dir,
        }
    }

    /// The `auth:` section of a registry config that trusts this server.
    pub fn registry_auth_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.cert.display()
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A registry token: JWT with the access the scopes ask for (push only when authenticated).
fn jwt(key: &Path, x5c: &str, subject: &str, scopes: &[String], authenticated: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (typ, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| authenticated || *a == "pull")
                .collect();
            Some(serde_json::json!({"type": typ, "name": name, "actions": actions}))
        })
        .collect();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": subject, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", scopes.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true)
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", base64(&sig, true))
}
