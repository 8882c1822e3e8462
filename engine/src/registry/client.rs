//! One registry, spoken to over the OCI distribution API v2: ping (`/v2/`),
//! manifests by tag or digest, blobs (GET following redirects, HEAD), uploads
//! (POST, then a streamed PATCH or a monolithic PUT), cross-repository mounts and
//! manifest PUT. Authentication is settled once at [`Client::connect`] and
//! refreshed when a request is answered 401.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use ureq::http::{self, Response};
use ureq::{Agent, Body, SendBody};

use super::auth::{encode_query, token_url, Challenge, Credentials, TokenResponse};
use super::{RegistryError, Result};
use crate::store::Digest;

/// Docker Hub's name in references, and where its API really lives.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Manifests are small documents; anything bigger is not one.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Allow plain HTTP (and HTTPS without certificate checks) for this registry.
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    pub connect_timeout: Duration,
    /// Longest silence while waiting for a response or reading a body.
    pub read_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            insecure: false,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A registry's error document: `{"errors":[{"code":"...","message":"..."}]}`.
#[derive(Debug, Deserialize)]
struct ErrorDoc {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The first error a registry reported, as (code, message); the body text when
/// it is not the registry error format.
fn registry_error(body: &[u8]) -> (Option<String>, String) {
    if let Ok(doc) = serde_json::from_slice::<ErrorDoc>(body) {
        if let Some(e) = doc.errors.first() {
            let code = (!e.code.is_empty()).then(|| e.code.clone());
            let message = if e.message.is_empty() {
                e.code.to_ascii_lowercase().replace('_', " ")
            } else {
                e.message.clone()
            };
            return (code, message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    (None, line.chars().take(200).collect())
}

/// Is this registry on the loopback interface (plain HTTP allowed, as Docker does)?
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// A request body: replayable ones can be sent again after a 401.
enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read),
}

/// A response with its body read (for small answers: manifests, errors).
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A blob being downloaded: its size as announced and a stream of its bytes.
pub struct BlobStream {
    pub length: Option<u64>,
    pub reader: ureq::BodyReader<'static>,
}

/// The outcome of asking for a cross-repository mount.
pub enum Mount {
    Mounted,
    /// The registry opened an ordinary upload at this location instead.
    Upload(String),
}

struct Inner {
    agent: Agent,
    registry: String,
    base: String,
    credentials: Option<Credentials>,
    scopes: Vec<String>,
    challenge: Mutex<Option<Challenge>>,
    authorization: Mutex<Option<String>>,
}

/// A connection to one registry, shared by the download threads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn agent(options: &ConnectOptions, verify_tls: bool, loopback: bool) -> Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!verify_tls)
        .build();
    let mut config = Agent::config_builder();
    if loopback {
        // an HTTP(S)_PROXY from the environment cannot reach our loopback
        config = config.proxy(None);
    }
    config
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .user_agent(concat!("twinbox/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .new_agent()
}

impl Client {
    /// Pings the registry and settles authentication for `scopes`
    /// (e.g. `repository:library/busybox:pull`).
    pub fn connect(
        registry: &str,
        scopes: Vec<String>,
        options: &ConnectOptions,
    ) -> Result<Client> {
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        // Loopback registries speak plain HTTP, as Docker assumes. An --insecure
        // one is tried with unchecked HTTPS first, then plain HTTP.
        let candidates: Vec<(String, Agent)> = if is_loopback(registry) {
            vec![(format!("http://{host}"), agent(options, true, true))]
        } else if options.insecure {
            vec![
                (format!("https://{host}"), agent(options, false, false)),
                (format!("http://{host}"), agent(options, true, false)),
            ]
        } else {
            vec![(format!("https://{host}"), agent(options, true, false))]
        };
        let mut last_error = None;
        for (base, agent) in candidates {
            let client = Client {
                inner: Arc::new(Inner {
                    agent,
                    registry: registry.to_string(),
                    base,
                    credentials: options.credentials.clone(),
                    scopes: scopes.clone(),
                    challenge: Mutex::new(None),
                    authorization: Mutex::new(None),
                }),
            };
            match client.ping() {
                Ok(()) => return Ok(client),
                Err(e @ (RegistryError::Unreachable { .. } | RegistryError::Timeout { .. })) => {
                    last_error = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.expect("at least one candidate"))
    }

    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// `scheme://host` of the API.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// GET /v2/: learns the auth scheme, then authenticates.
    fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.inner.base);
        let answer = self.send_raw("GET", &url, &[], Payload::None, None)?;
        let answer = read_answer(answer, 64 * 1024, &self.inner.registry)?;
        match answer.status {
            200..=299 => Ok(()),
            401 => {
                let challenge = answer
                    .header("www-authenticate")
                    .and_then(Challenge::parse)
                    .ok_or_else(|| RegistryError::AuthRefused {
                        registry: self.inner.registry.clone(),
                        message: "it asked for an authentication scheme twinbox does not know"
                            .into(),
                    })?;
                *self.inner.challenge.lock().unwrap() = Some(challenge);
                self.authenticate()
            }
            404 => Err(RegistryError::BadResponse {
                what: self.inner.registry.clone(),
                message: "no registry API at /v2/ (is this an OCI/Docker registry?)".into(),
            }),
            status => {
                let (code, message) = registry_error(&answer.body);
                Err(RegistryError::Remote {
                    what: format!("registry {}", self.inner.registry),
                    status,
                    code,
                    message: format!("http {status}: {message}"),
                })
            }
        }
    }

    /// Gets an Authorization value for the challenge the registry gave.
    fn authenticate(&self) -> Result<()> {
        let challenge = self.inner.challenge.lock().unwrap().clone();
        let header = match challenge {
            None => return Ok(()),
            Some(Challenge::Basic { .. }) => {
                let creds = self
                    .inner
                    .credentials
                    .as_ref()
                    .ok_or_else(|| self.login_needed("authentication required"))?;
                let header = creds.basic_header();
                // check the credentials now, so a wrong password is one clear error
                let url = format!("{}/v2/", self.inner.base);
                let answer = self.send_raw("GET", &url, &[], Payload::None, Some(&header))?;
                let answer = read_answer(answer, 64 * 1024, &self.inner.registry)?;
                if answer.status == 401 || answer.status == 403 {
                    let (_, message) = registry_error(&answer.body);
                    return Err(self.login_needed(&message));
                }
                header
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let url = token_url(&realm, service.as_deref(), &self.inner.scopes);
                tracing::debug!(%url, "requesting a bearer token");
                let basic = self
                    .inner
                    .credentials
                    .as_ref()
                    .map(Credentials::basic_header);
                let answer = self.send_raw("GET", &url, &[], Payload::None, basic.as_deref())?;
                let answer = read_answer(answer, 1 << 20, &self.inner.registry)?;
                match answer.status {
                    200..=299 => {}
                    401 | 403 => {
                        let (_, message) = registry_error(&answer.body);
                        return Err(self.login_needed(&format!("token server said: {message}")));
                    }
                    status => {
                        let (code, message) = registry_error(&answer.body);
                        return Err(RegistryError::Remote {
                            what: format!("token server {realm}"),
                            status,
                            code,
                            message: format!("http {status}: {message}"),
                        });
                    }
                }
                let token = serde_json::from_slice::<TokenResponse>(&answer.body)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .ok_or_else(|| RegistryError::BadResponse {
                        what: format!("token server {realm}"),
                        message: "the answer holds no token".into(),
                    })?;
                format!("Bearer {token}")
            }
        };
        *self.inner.authorization.lock().unwrap() = Some(header);
        Ok(())
    }

    fn login_needed(&self, message: &str) -> RegistryError {
        let hint = if self.inner.credentials.is_some() {
            "check the user name and password (`twinbox login`)"
        } else {
            "log in first with `twinbox login`"
        };
        RegistryError::AuthRefused {
            registry: self.inner.registry.clone(),
            message: format!("{message} ({hint} {})", self.inner.registry),
        }
    }

    fn transport_error(&self, e: ureq::Error) -> RegistryError {
        let registry = self.inner.registry.clone();
        match e {
            ureq::Error::Timeout(t) => RegistryError::Timeout {
                registry,
                what: t.to_string(),
            },
            ureq::Error::Io(io) => {
                let message = match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused (is the address right and the registry running?)"
                            .to_string()
                    }
                    std::io::ErrorKind::TimedOut => {
                        return RegistryError::Timeout {
                            registry,
                            what: io.to_string(),
                        }
                    }
                    // rustls reports a plain-http answer as a corrupt message
                    _ if self.inner.base.starts_with("https://") => {
                        format!("{io} (if it speaks plain http, use --insecure)")
                    }
                    _ => io.to_string(),
                };
                RegistryError::Unreachable { registry, message }
            }
            ureq::Error::HostNotFound => RegistryError::Unreachable {
                registry,
                message: "host name not found".into(),
            },
            e @ (ureq::Error::Tls(_) | ureq::Error::Rustls(_)) => RegistryError::Unreachable {
                registry,
                message: format!("tls: {e} (for a registry without valid https use --insecure)"),
            },
            e @ ureq::Error::Protocol(_) => RegistryError::Unreachable {
                registry,
                message: format!("{e} (if it speaks plain http, use --insecure)"),
            },
            other => RegistryError::Unreachable {
                registry,
                message: other.to_string(),
            },
        }
    }

    /// One request, with an explicit Authorization value (or none).
    fn send_raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
        authorization: Option<&str>,
    ) -> Result<Response<Body>> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        let bad = |e: http::Error| RegistryError::BadResponse {
            what: url.to_string(),
            message: format!("cannot build request: {e}"),
        };
        let result = match payload {
            Payload::None if matches!(method, "GET" | "HEAD") => {
                self.inner.agent.run(builder.body(()).map_err(bad)?)
            }
            Payload::None => self.inner.agent.run(builder.body(&[][..]).map_err(bad)?),
            Payload::Bytes(b) => self.inner.agent.run(builder.body(b).map_err(bad)?),
            Payload::Stream(r) => {
                let body: SendBody<'_> = SendBody::from_reader(r);
                self.inner.agent.run(builder.body(body).map_err(bad)?)
            }
        };
        result.map_err(|e| self.transport_error(e))
    }

    /// A request with our authorization; a 401 (expired token) re-authenticates
    /// and retries once when the body can be sent again.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<Response<Body>> {
        let auth = self.inner.authorization.lock().unwrap().clone();
        let replay = match &payload {
            Payload::None => Some(None),
            Payload::Bytes(b) => Some(Some(*b)),
            Payload::Stream(_) => None,
        };
        let response = self.send_raw(method, url, headers, payload, auth.as_deref())?;
        if response.status() != 401 {
            return Ok(response);
        }
        let Some(body) = replay else {
            return Ok(response);
        };
        if let Some(c) = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
        {
            *self.inner.challenge.lock().unwrap() = Some(c);
        }
        self.authenticate()?;
        let auth = self.inner.authorization.lock().unwrap().clone();
        let payload = body.map_or(Payload::None, Payload::Bytes);
        self.send_raw(method, url, headers, payload, auth.as_deref())
    }

    fn url(&self, repository: &str, tail: &str) -> String {
        format!("{}/v2/{repository}/{tail}", self.inner.base)
    }

    /// Turns a non-success answer into the error naming `what`.
    fn refused(&self, what: &str, answer: &Answer) -> RegistryError {
        let (code, message) = registry_error(&answer.body);
        match answer.status {
            401 | 403 => self.login_needed(&if message.is_empty() {
                format!("http {}", answer.status)
            } else {
                message
            }),
            404 => RegistryError::NotFound {
                what: what.to_string(),
                message: if message.is_empty() {
                    "http 404".into()
                } else {
                    message
                },
            },
            status => RegistryError::Remote {
                what: what.to_string(),
                status,
                code,
                message: format!("http {status}: {message}"),
            },
        }
    }

    /// GETs a manifest by tag or digest: (bytes, content type).
    pub fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let response = self.send(
            "GET",
            &url,
            &[("Accept", super::media::MANIFEST_ACCEPT)],
            Payload::None,
        )?;
        let answer = read_answer(response, MANIFEST_LIMIT, what)?;
        if !(200..300).contains(&answer.status) {
            return Err(self.refused(what, &answer));
        }
        let content_type = answer.header("content-type").map(str::to_string);
        Ok((answer.body, content_type))
    }

    /// GETs a small blob (a config) whole, checking its size and digest.
    pub fn get_small_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        if size > MANIFEST_LIMIT * 4 {
            return Err(RegistryError::BadResponse {
                what: what.to_string(),
                message: format!("{size} bytes is too big for an image config"),
            });
        }
        let mut blob = self.get_blob(repository, digest, what)?;
        let mut data = Vec::with_capacity(size as usize);
        (&mut blob.reader)
            .take(size + 1)
            .read_to_end(&mut data)
            .map_err(|e| RegistryError::BadResponse {
                what: what.to_string(),
                message: format!("reading: {e}"),
            })?;
        if data.len() as u64 != size {
            return Err(RegistryError::Truncated {
                what: what.to_string(),
                expected: size,
                actual: data.len() as u64,
            });
        }
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// GETs a blob as a stream (following redirects to blob storage).
    pub fn get_blob(&self, repository: &str, digest: &Digest, what: &str) -> Result<BlobStream> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let response = self.send("GET", &url, &[], Payload::None)?;
        if !(200..300).contains(&response.status().as_u16()) {
            let answer = read_answer(response, 64 * 1024, what)?;
            return Err(self.refused(what, &answer));
        }
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(BlobStream {
            length,
            reader: response.into_body().into_reader(),
        })
    }

    /// HEAD: is the blob in this repository? Its size when it is.
    pub fn has_blob(&self, repository: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let response = self.send("HEAD", &url, &[], Payload::None)?;
        let what = format!("{}/{repository} blob {digest}", self.inner.registry);
        match response.status().as_u16() {
            200..=299 => Ok(Some(
                response
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => {
                let answer = read_answer(response, 64 * 1024, &what)?;
                Err(self.refused(&what, &answer))
            }
        }
    }

    fn location(&self, answer: &Answer, what: &str) -> Result<String> {
        let loc = answer
            .header("location")
            .ok_or_else(|| RegistryError::BadResponse {
                what: what.to_string(),
                message: "the registry gave no upload location".into(),
            })?;
        Ok(self.absolute(loc))
    }

    /// Upload locations may be relative to the API's base.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.inner.base)
        } else {
            format!("{}/{location}", self.inner.base)
        }
    }

    /// POST: opens an upload session, or mounts `digest` from `from` when given.
    fn post_upload(
        &self,
        repository: &str,
        mount: Option<(&Digest, &str)>,
        what: &str,
    ) -> Result<Answer> {
        let mut url = self.url(repository, "blobs/uploads/");
        if let Some((digest, from)) = mount {
            url.push_str(&format!(
                "?mount={}&from={}",
                encode_query(digest.as_str()),
                encode_query(from)
            ));
        }
        let response = self.send("POST", &url, &[], Payload::None)?;
        let answer = read_answer(response, 64 * 1024, what)?;
        if !(200..300).contains(&answer.status) {
            return Err(self.refused(what, &answer));
        }
        Ok(answer)
    }

    /// Asks the registry to link a blob it already holds in `from` into `repository`.
    pub fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
        what: &str,
    ) -> Result<Mount> {
        let answer = self.post_upload(repository, Some((digest, from)), what)?;
        if answer.status == 201 {
            return Ok(Mount::Mounted);
        }
        Ok(Mount::Upload(self.location(&answer, what)?))
    }

    /// Opens an upload session; returns its location.
    pub fn start_upload(&self, repository: &str, what: &str) -> Result<String> {
        let answer = self.post_upload(repository, None, what)?;
        self.location(&answer, what)
    }

    fn with_digest(location: &str, digest: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={}", encode_query(digest.as_str()))
    }

    fn expect_created(&self, response: Response<Body>, what: &str) -> Result<Answer> {
        let answer = read_answer(response, 64 * 1024, what)?;
        if !(200..300).contains(&answer.status) {
            return Err(self.refused(what, &answer));
        }
        Ok(answer)
    }

    /// Monolithic upload: one PUT carrying the whole blob (configs, small blobs).
    pub fn upload_bytes(
        &self,
        location: &str,
        digest: &Digest,
        data: &[u8],
        what: &str,
    ) -> Result<()> {
        let url = Self::with_digest(location, digest);
        let headers = [("Content-Type", "application/octet-stream")];
        let response = self.send("PUT", &url, &headers, Payload::Bytes(data))?;
        self.expect_created(response, what).map(|_| ())
    }

    /// Streamed upload: one PATCH with the bytes as they are read, then a PUT
    /// that names the digest (the registry checks it).
    pub fn upload_stream(
        &self,
        location: &str,
        digest: &Digest,
        reader: &mut dyn Read,
        what: &str,
    ) -> Result<()> {
        let headers = [("Content-Type", "application/octet-stream")];
        let response = self.send("PATCH", location, &headers, Payload::Stream(reader))?;
        let answer = self.expect_created(response, what)?;
        let next = match answer.header("location") {
            Some(l) => self.absolute(l),
            None => location.to_string(),
        };
        let url = Self::with_digest(&next, digest);
        let response = self.send("PUT", &url, &[], Payload::None)?;
        self.expect_created(response, what).map(|_| ())
    }

    /// PUTs a manifest under a tag or digest; returns the digest the registry computed.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
        what: &str,
    ) -> Result<Option<String>> {
        let url = self.url(repository, &format!("manifests/{reference}"));
        let response = self.send(
            "PUT",
            &url,
            &[("Content-Type", media_type)],
            Payload::Bytes(data),
        )?;
        let answer = self.expect_created(response, what)?;
        Ok(answer.header("docker-content-digest").map(str::to_string))
    }
}

/// Reads a response whole, refusing bodies over `limit`.
fn read_answer(response: Response<Body>, limit: u64, what: &str) -> Result<Answer> {
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let mut data = Vec::new();
    body.into_with_config()
        .limit(limit)
        .reader()
        .read_to_end(&mut data)
        .map_err(|e| RegistryError::BadResponse {
            what: what.to_string(),
            message: format!("reading the answer: {e}"),
        })?;
    Ok(Answer {
        status,
        headers: parts.headers,
        body: data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example:5000",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn registry_error_documents() {
        let (code, msg) = registry_error(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#);
        assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(msg, "manifest unknown");
        let (code, msg) = registry_error(br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#);
        assert_eq!(code.as_deref(), Some("NAME_UNKNOWN"));
        assert_eq!(msg, "name unknown");
        let (code, msg) = registry_error(b"\n<html>bad gateway</html>\n");
        assert_eq!(code, None);
        assert_eq!(msg, "<html>bad gateway</html>");
    }

    #[test]
    fn unreachable_registry_is_one_quick_error() {
        // a port nobody listens on: bind, learn the port, close
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let start = std::time::Instant::now();
        let err = Client::connect(
            &format!("127.0.0.1:{port}"),
            vec![],
            &ConnectOptions::default(),
        )
        .err()
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(
            msg.contains("cannot reach registry 127.0.0.1:") && msg.contains("connection refused"),
            "{msg}"
        );
    }
}
