//! pull, push, login against the real registry (CNCF distribution) on loopback,
//! with skopeo as the peer: round trips, shared layers, mounts, digests, indexes
//! and platforms, basic auth, corrupted blobs and a pull killed mid-download.

mod common;
#[path = "registry/harness.rs"]
mod harness;
#[path = "registry/layout.rs"]
mod layout;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{is_root, lab, Lab, Run};
use harness::{skopeo, skopeo_copy, tree, Registry, SlowProxy};
use layout::{busybox_entries, noise, Entry, Layout, OCI_INDEX, OCI_MANIFEST};

/// A store with nothing in it (no bootstrapped busybox), for pulls from scratch.
fn empty_lab() -> Option<Lab> {
    if !is_root() {
        eprintln!("skipping: integration tests need root");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("twinbox-test")
        .tempdir_in("/var/tmp")
        .unwrap();
    Some(Lab { dir })
}

fn ok(r: &Run, what: &str) {
    assert_eq!(
        r.code, 0,
        "{what} failed\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}

/// A failure reported as twinbox's own: exit 125 and exactly one line.
fn one_line_error(r: &Run, what: &str) -> String {
    assert_eq!(
        r.code, 125,
        "{what}: expected exit 125\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one error line: {}", r.stderr);
    assert!(lines[0].starts_with("twinbox: "), "{}", lines[0]);
    lines[0].to_string()
}

/// The digest `twinbox push` printed: `TAG: digest: sha256:... size: N`.
fn pushed_digest(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in push output: {}", r.stdout))
        .to_string()
}

/// Lines of the output that mention this status.
fn count(out: &str, status: &str) -> usize {
    out.lines().filter(|l| l.contains(status)).count()
}

/// Pushes the bootstrapped busybox as `REG/name`; returns the digest.
fn push_busybox(lab: &Lab, reg: &Registry, name: &str) -> String {
    let target = format!("{}/{name}", reg.host());
    ok(&lab.tb(&["tag", "busybox", &target]), "tag");
    let r = lab.tb(&["push", &target]);
    ok(&r, "push");
    pushed_digest(&r)
}

fn store_snapshot(lab: &Lab) -> Vec<String> {
    let mut t: Vec<String> = tree(lab.root())
        .into_iter()
        .filter(|p| p.starts_with("blobs") || p.starts_with("layers"))
        .collect();
    t.push(std::fs::read_to_string(lab.root().join("index.json")).unwrap_or_default());
    t
}

#[test]
fn push_then_pull_into_fresh_store_and_run() {
    let Some(lab) = lab() else { return };
    let reg = Registry::start();
    let target = format!("{}/test/busybox:v1", reg.host());
    ok(&lab.tb(&["tag", "busybox", &target]), "tag");
    let first = lab.tb(&["push", &target]);
    ok(&first, "push");
    assert_eq!(
        count(&first.stdout, ": pushed"),
        2,
        "layer + config uploaded: {}",
        first.stdout
    );
    let digest = pushed_digest(&first);
    // the registry now serves that manifest
    let (status, _) =
        harness::http_get(reg.port, &format!("/v2/test/busybox/manifests/{digest}")).unwrap();
    assert_eq!(status, 200);

    // pushing again moves nothing
    let again = lab.tb(&["push", &target]);
    ok(&again, "second push");
    assert_eq!(
        count(&again.stdout, "already exists"),
        2,
        "{}",
        again.stdout
    );
    assert_eq!(count(&again.stdout, ": pushed"), 0, "{}", again.stdout);
    assert_eq!(pushed_digest(&again), digest);

    let fresh = empty_lab().unwrap();
    let pull = fresh.tb(&["pull", &target]);
    ok(&pull, "pull");
    assert!(pull.stdout.contains("pull complete"), "{}", pull.stdout);
    assert!(
        pull.stdout.contains(&format!("Digest: {digest}")),
        "{}",
        pull.stdout
    );
    let run = fresh.tb(&[
        "run",
        "--rm",
        &target,
        "sh",
        "-c",
        "echo pulled-and-running",
    ]);
    ok(&run, "run");
    assert_eq!(run.stdout, "pulled-and-running\n");
    let images = fresh.tb(&["images"]);
    assert!(
        images
            .stdout
            .contains(&format!("{}/test/busybox", reg.host())),
        "{}",
        images.stdout
    );

    // a second pull finds everything in place
    let up = fresh.tb(&["pull", &target]);
    ok(&up, "pull again");
    assert!(up.stdout.contains("already exists"), "{}", up.stdout);
    assert!(up.stdout.contains("Image is up to date"), "{}", up.stdout);
}

#[test]
fn pull_by_digest_and_unknown_names() {
    let Some(lab) = lab() else { return };
    let reg = Registry::start();
    let digest = push_busybox(&lab, &reg, "bydigest/busybox:v1");
    let fresh = empty_lab().unwrap();
    let by_digest = format!("{}/bydigest/busybox@{digest}", reg.host());
    ok(&fresh.tb(&["pull", &by_digest]), "pull by digest");
    let run = fresh.tb(&["run", "--rm", &by_digest, "echo", "by-digest"]);
    ok(&run, "run by digest");
    assert_eq!(run.stdout, "by-digest\n");

    let before = store_snapshot(&fresh);
    let unknown_tag = fresh.tb(&["pull", &format!("{}/bydigest/busybox:nope", reg.host())]);
    let line = one_line_error(&unknown_tag, "unknown tag");
    assert!(
        line.contains("bydigest/busybox:nope") && line.contains("manifest unknown"),
        "{line}"
    );
    let unknown_repo = fresh.tb(&["pull", &format!("{}/nobody/here:v1", reg.host())]);
    let line = one_line_error(&unknown_repo, "unknown repository");
    assert!(
        line.contains("nobody/here") && line.contains("not found"),
        "{line}"
    );
    let missing_digest = format!("{}/bydigest/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let line = one_line_error(&fresh.tb(&["pull", &missing_digest]), "unknown digest");
    assert!(line.contains("not found"), "{line}");
    assert_eq!(
        store_snapshot(&fresh),
        before,
        "failed pulls change nothing"
    );
}

#[test]
fn unreachable_registry_fails_fast() {
    let Some(lab) = empty_lab() else { return };
    // held closed for the whole test; a refused connection ends the pull (the
    // client retries nothing on transport errors), and the error says it was
    // refused, not timed out (how fast it fails belongs in bench/)
    let closed = harness::closed_port();
    let port = closed.port;
    let r = lab.tb(&["pull", &format!("127.0.0.1:{port}/app:v1")]);
    let line = one_line_error(&r, "closed port");
    assert!(
        line.contains(&format!("cannot reach registry 127.0.0.1:{port}"))
            && line.contains("connection refused"),
        "{line}"
    );
    let r = lab.tb(&["pull", "--platform", "linux", "127.0.0.1:1/app"]);
    assert!(
        one_line_error(&r, "bad platform").contains("os/arch"),
        "{}",
        r.stderr
    );
}

/// Two images sharing a busybox base, pushed by skopeo from an OCI layout.
fn push_shared_layout(reg: &Registry, dir: &std::path::Path) -> (String, String) {
    let layout = Layout::create(dir);
    let base = layout.layer(&busybox_entries());
    let a = layout.layer(&[Entry::File("app-a".into(), b"a\n".to_vec(), 0o644)]);
    let b = layout.layer(&[Entry::File("app-b".into(), b"b\n".to_vec(), 0o644)]);
    let ma = layout.image("amd64", &[&base, &a], &["cat", "/app-a"]);
    let mb = layout.image("amd64", &[&base, &b], &["cat", "/app-b"]);
    layout.name(&[(&ma, OCI_MANIFEST, "a"), (&mb, OCI_MANIFEST, "b")]);
    let (ra, rb) = (
        format!("{}/shared/a:v1", reg.host()),
        format!("{}/shared/b:v1", reg.host()),
    );
    skopeo_copy(
        &[],
        &format!("oci:{}:a", dir.display()),
        &format!("docker://{ra}"),
    );
    skopeo_copy(
        &[],
        &format!("oci:{}:b", dir.display()),
        &format!("docker://{rb}"),
    );
    (ra, rb)
}

#[test]
fn shared_layers_are_stored_once_and_pushes_skip_or_mount() {
    let Some(lab) = empty_lab() else { return };
    let reg = Registry::start();
    let (ra, rb) = push_shared_layout(&reg, &lab.root().join("layout"));

    let pa = lab.tb(&["pull", &ra]);
    ok(&pa, "pull a");
    assert_eq!(count(&pa.stdout, "pull complete"), 2, "{}", pa.stdout);
    let pb = lab.tb(&["pull", &rb]);
    ok(&pb, "pull b");
    assert_eq!(
        count(&pb.stdout, "already exists"),
        1,
        "the base is shared: {}",
        pb.stdout
    );
    assert_eq!(count(&pb.stdout, "pull complete"), 1, "{}", pb.stdout);
    let layers = std::fs::read_dir(lab.root().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 3, "base + a + b, the base once");
    let run = lab.tb(&["run", "--rm", &rb]);
    ok(&run, "run b");
    assert_eq!(run.stdout, "b\n");

    // to another repository of the same registry: the layers are mounted, not uploaded
    let mine_a = format!("{}/mine/app:a", reg.host());
    ok(&lab.tb(&["tag", &ra, &mine_a]), "tag");
    let push_a = lab.tb(&["push", &mine_a]);
    ok(&push_a, "push a");
    assert_eq!(
        count(&push_a.stdout, "mounted from shared/a"),
        3,
        "{}",
        push_a.stdout
    );
    assert_eq!(count(&push_a.stdout, ": pushed"), 0, "{}", push_a.stdout);
    // b into the same repository: the base is already there, the rest mounted
    let mine_b = format!("{}/mine/app:b", reg.host());
    ok(&lab.tb(&["tag", &rb, &mine_b]), "tag");
    let push_b = lab.tb(&["push", &mine_b]);
    ok(&push_b, "push b");
    assert_eq!(
        count(&push_b.stdout, "layer already exists"),
        1,
        "{}",
        push_b.stdout
    );
    assert_eq!(
        count(&push_b.stdout, "mounted from shared/b"),
        2,
        "{}",
        push_b.stdout
    );
    assert_eq!(count(&push_b.stdout, ": pushed"), 0, "{}", push_b.stdout);

    // the registry's own view, through skopeo
    let (code, out, err) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{mine_b}"),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), pushed_digest(&push_b));
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
}

#[test]
fn index_picks_the_platform() {
    let Some(lab) = empty_lab() else { return };
    let reg = Registry::start();
    let dir = lab.root().join("layout");
    let layout = Layout::create(&dir);
    let base = layout.layer(&busybox_entries());
    let amd = layout.layer(&[Entry::File("platform".into(), b"amd64\n".to_vec(), 0o644)]);
    let arm = layout.layer(&[Entry::File("platform".into(), b"arm64\n".to_vec(), 0o644)]);
    let m_amd = layout.image("amd64", &[&base, &amd], &["cat", "/platform"]);
    let m_arm = layout.image("arm64", &[&base, &arm], &["cat", "/platform"]);
    let index = layout.platform_index(&[(&m_arm, "arm64"), (&m_amd, "amd64")]);
    layout.name(&[(&index, OCI_INDEX, "multi")]);
    let name = format!("{}/multi/app:v1", reg.host());
    skopeo_copy(
        &["--all"],
        &format!("oci:{}:multi", dir.display()),
        &format!("docker://{name}"),
    );

    let r = lab.tb(&["pull", &name]);
    ok(&r, "pull index");
    assert!(
        r.stdout.contains(&format!("Digest: {}", m_amd.digest)),
        "amd64 chosen: {}",
        r.stdout
    );
    let run = lab.tb(&["run", "--rm", &name]);
    ok(&run, "run");
    assert_eq!(run.stdout, "amd64\n");

    let other = empty_lab().unwrap();
    let r = other.tb(&["pull", "--platform", "linux/arm64", &name]);
    ok(&r, "pull arm64");
    assert!(
        r.stdout.contains(&format!("Digest: {}", m_arm.digest)),
        "arm64 chosen: {}",
        r.stdout
    );
    let arm_chain = tree(&other.root().join("layers"))
        .into_iter()
        .filter(|p| p.ends_with("/platform"))
        .map(|p| std::fs::read_to_string(other.root().join("layers").join(p)).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(arm_chain, vec!["arm64\n"]);

    let before = store_snapshot(&other);
    let r = other.tb(&["pull", "--platform", "linux/s390x", &name]);
    let line = one_line_error(&r, "missing platform");
    assert!(
        line.contains("linux/s390x") && line.contains("linux/arm64, linux/amd64"),
        "{line}"
    );
    assert_eq!(store_snapshot(&other), before);
}

#[test]
fn skopeo_interop_both_ways() {
    let Some(lab) = lab() else { return };
    let reg = Registry::start();
    // what twinbox pushes, skopeo inspects and copies
    let name = format!("{}/interop/busybox:v1", reg.host());
    let digest = push_busybox(&lab, &reg, "interop/busybox:v1");
    let (code, out, err) = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), digest);
    assert_eq!(v["Architecture"], "amd64");
    let oci = lab.root().join("skopeo-copy");
    skopeo_copy(
        &[],
        &format!("docker://{name}"),
        &format!("oci:{}:copied", oci.display()),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str().unwrap(),
        digest,
        "same bytes, same digest"
    );

    // what skopeo pushes (converted to Docker media types), twinbox pulls and runs
    let dir = lab.root().join("layout");
    let layout = Layout::create(&dir);
    let base = layout.layer(&busybox_entries());
    let app = layout.layer(&[Entry::File(
        "hello.txt".into(),
        b"hello from skopeo\n".to_vec(),
        0o644,
    )]);
    let m = layout.image("amd64", &[&base, &app], &["cat", "/hello.txt"]);
    layout.name(&[(&m, OCI_MANIFEST, "app")]);
    let theirs = format!("{}/skopeo/app:v2s2", reg.host());
    skopeo_copy(
        &["--format", "v2s2"],
        &format!("oci:{}:app", dir.display()),
        &format!("docker://{theirs}"),
    );
    let fresh = empty_lab().unwrap();
    let r = fresh.tb(&["pull", &theirs]);
    ok(&r, "pull skopeo's push");
    let run = fresh.tb(&["run", "--rm", &theirs]);
    ok(&run, "run");
    assert_eq!(run.stdout, "hello from skopeo\n");
    let inspect = fresh.tb(&["image", "inspect", &theirs]);
    ok(&inspect, "inspect");
    // the Docker manifest was kept as it came: the digest is the registry's
    let (_, out, _) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{theirs}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        r.stdout.contains(v["Digest"].as_str().unwrap()),
        "{}",
        r.stdout
    );
}

#[test]
fn corrupted_or_truncated_blob_is_refused() {
    let Some(lab) = lab() else { return };
    let reg = Registry::start();
    let name = format!("{}/corrupt/busybox:v1", reg.host());
    push_busybox(&lab, &reg, "corrupt/busybox:v1");
    let layer = lab.tb(&["image", "inspect", "busybox"]);
    ok(&layer, "inspect");
    let manifest: serde_json::Value = {
        let (s, body) = harness::http_get(reg.port, "/v2/corrupt/busybox/manifests/v1").unwrap();
        assert_eq!(s, 200);
        let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str(json).unwrap()
    };
    let blob = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let data_path = reg.blob_data(&blob);
    let original = std::fs::read(&data_path).unwrap();

    let fresh = empty_lab().unwrap();
    ok(&fresh.tb(&["images"]), "open store");
    let before = store_snapshot(&fresh);

    // same size, one byte flipped in the middle
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&data_path, &flipped).unwrap();
    let r = fresh.tb(&["pull", &name]);
    let line = one_line_error(&r, "corrupted blob");
    assert!(
        line.contains(&blob) && (line.contains("mismatch") || line.contains("corrupt")),
        "{line}"
    );
    assert_eq!(store_snapshot(&fresh), before, "nothing kept");

    // cut short
    std::fs::write(&data_path, &original[..original.len() / 3]).unwrap();
    let r = fresh.tb(&["pull", &name]);
    let line = one_line_error(&r, "truncated blob");
    assert!(line.contains(&blob) && line.contains("truncated"), "{line}");
    assert_eq!(store_snapshot(&fresh), before, "nothing kept");

    // repaired, the same pull works
    std::fs::write(&data_path, &original).unwrap();
    ok(&fresh.tb(&["pull", &name]), "pull after repair");
    ok(&fresh.tb(&["run", "--rm", &name, "true"]), "run");
}

fn login(lab: &Lab, registry: &str, user: &str, password: &str) -> Run {
    let mut child = lab
        .cmd(&["login", "-u", user, "--password-stdin", registry])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap().into()
}

#[test]
fn basic_auth_needs_login() {
    let Some(lab) = lab() else { return };
    harness::require("htpasswd");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "student", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let reg = Registry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: twinbox-test\n    path: {}\n",
        htpasswd.display()
    ));
    let name = format!("{}/private/busybox:v1", reg.host());
    ok(&lab.tb(&["tag", "busybox", &name]), "tag");

    let refused = lab.tb(&["push", &name]);
    let line = one_line_error(&refused, "push without login");
    assert!(
        line.contains("authentication") && line.contains("twinbox login"),
        "{line}"
    );

    let wrong = login(&lab, &reg.host(), "student", "wrong");
    let line = one_line_error(&wrong, "wrong password");
    assert!(line.contains("refused"), "{line}");
    assert!(
        !lab.root().join("auth.json").exists(),
        "a failed login keeps nothing"
    );

    let good = login(&lab, &reg.host(), "student", "s3cret");
    ok(&good, "login");
    assert!(good.stdout.contains("Login Succeeded"), "{}", good.stdout);
    let mode = std::fs::metadata(lab.root().join("auth.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let auth = std::fs::read_to_string(lab.root().join("auth.json")).unwrap();
    assert!(
        !auth.contains("s3cret"),
        "the password is not kept in clear text"
    );

    ok(&lab.tb(&["push", &name]), "push after login");
    let fresh = empty_lab().unwrap();
    let line = one_line_error(&fresh.tb(&["pull", &name]), "pull without login");
    assert!(line.contains("authentication"), "{line}");
    ok(&login(&fresh, &reg.host(), "student", "s3cret"), "login");
    ok(&fresh.tb(&["pull", &name]), "pull after login");
    ok(&fresh.tb(&["run", "--rm", &name, "true"]), "run");

    let out = fresh.tb(&["logout", &reg.host()]);
    ok(&out, "logout");
    let line = one_line_error(&fresh.tb(&["pull", &name]), "pull after logout");
    assert!(line.contains("authentication"), "{line}");
}

#[test]
fn pull_killed_mid_download_then_pulled_again() {
    let Some(lab) = empty_lab() else { return };
    let reg = Registry::start();
    let dir = lab.root().join("layout");
    let layout = Layout::create(&dir);
    let base = layout.layer(&busybox_entries());
    let big = layout.layer(&[Entry::File("big.bin".into(), noise(24 << 20, 7), 0o644)]);
    let m = layout.image("amd64", &[&base, &big], &["sh", "-c", "wc -c < /big.bin"]);
    layout.name(&[(&m, OCI_MANIFEST, "big")]);
    skopeo_copy(
        &[],
        &format!("oci:{}:big", dir.display()),
        &format!("docker://{}/big/app:v1", reg.host()),
    );

    // through a proxy at 2 MB/s: the big layer takes ~12 s, time enough to kill
    let proxy = SlowProxy::start(reg.port, 2 << 20);
    let name = format!("127.0.0.1:{}/big/app:v1", proxy.port);
    let mut child = lab
        .cmd(&["pull", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed) < (4 << 20) {
        assert!(Instant::now() < deadline, "the pull did not get going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let big_chain_diff = big.diff_id.trim_start_matches("sha256:").to_string();
    let images = lab.tb(&["images", "-q"]);
    assert_eq!(images.stdout.trim(), "", "no image after a killed pull");
    assert!(!lab
        .root()
        .join("blobs/sha256")
        .join(big.blob.digest.trim_start_matches("sha256:"))
        .exists());
    let layer_dirs = tree(&lab.root().join("layers"));
    assert!(
        !layer_dirs.iter().any(|p| p.ends_with("big.bin")),
        "no half layer in layers/: {layer_dirs:?}"
    );
    assert!(!big_chain_diff.is_empty());

    proxy
        .throttled
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let r = lab.tb(&["pull", &name]);
    ok(&r, "pull after kill");
    let run = lab.tb(&["run", "--rm", &name]);
    ok(&run, "run");
    assert_eq!(run.stdout.trim(), (24u64 << 20).to_string());
}

#[test]
fn bearer_token_flow_as_docker_hub() {
    let Some(lab) = lab() else { return };
    let tokens = harness::TokenServer::start("student", "s3cret");
    let reg = Registry::start_with(&tokens.registry_auth_config());
    let name = format!("{}/tok/busybox:v1", reg.host());
    ok(&lab.tb(&["tag", "busybox", &name]), "tag");

    // anonymous: the token server grants pull only, so the push is refused
    let refused = lab.tb(&["push", &name]);
    let line = one_line_error(&refused, "anonymous push");
    assert!(
        line.contains("authentication") && line.contains("twinbox login"),
        "{line}"
    );
    {
        let seen = tokens.requests.lock().unwrap();
        let first = seen.first().expect("the token server was asked");
        assert_eq!(first.scopes, vec!["repository:tok/busybox:pull,push"]);
        assert!(!first.authenticated);
    }

    let line = one_line_error(
        &login(&lab, &reg.host(), "student", "nope"),
        "wrong password",
    );
    assert!(
        line.contains("incorrect username or password"),
        "the token server's words: {line}"
    );
    ok(&login(&lab, &reg.host(), "student", "s3cret"), "login");
    let pushed = lab.tb(&["push", &name]);
    ok(&pushed, "push with a token");
    assert!(
        tokens
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.authenticated && r.scopes == ["repository:tok/busybox:pull,push"]),
        "the token was asked for with the credentials"
    );

    // anonymous pull is allowed, as on Docker Hub
    let fresh = empty_lab().unwrap();
    ok(&fresh.tb(&["pull", &name]), "anonymous pull");
    ok(&fresh.tb(&["run", "--rm", &name, "true"]), "run");
    let last = tokens.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.scopes, vec!["repository:tok/busybox:pull"]);
}

#[test]
fn plain_http_needs_insecure_for_other_names() {
    let Some(lab) = lab() else { return };
    // the machine's own name, when it resolves to loopback only (it often does)
    let host = common::host("hostname", &[]);
    let reg = Registry::start();
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = match (host.as_str(), reg.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => Vec::new(),
    };
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        eprintln!("skipping: host name {host:?} does not resolve to loopback only");
        return;
    }
    let name = format!(
        "{host}:{}/insecure/busybox:v1",
        reg.host().split(':').nth(1).unwrap()
    );
    ok(&lab.tb(&["tag", "busybox", &name]), "tag");
    let line = one_line_error(&lab.tb(&["push", &name]), "https to a plain http registry");
    assert!(line.contains("--insecure"), "{line}");
    ok(&lab.tb(&["push", "--insecure", &name]), "push --insecure");
    let fresh = empty_lab().unwrap();
    ok(&fresh.tb(&["pull", "--insecure", &name]), "pull --insecure");
    ok(&fresh.tb(&["run", "--rm", &name, "true"]), "run");
}

/// Four pulls of one image into one store at once: each succeeds, the layers are
/// stored once, and the store checks clean and runs the image.
#[test]
fn parallel_pulls_of_the_same_image_share_one_copy() {
    let Some(lab) = lab() else { return };
    let reg = Registry::start();
    push_busybox(&lab, &reg, "par/busybox:v1");
    let Some(fresh) = empty_lab() else { return };
    let target = format!("{}/par/busybox:v1", reg.host());
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            fresh
                .cmd(&["pull", &target])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in pulls {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a parallel pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let check = fresh.tb(&["system", "check"]);
    ok(&check, "system check after parallel pulls");
    let layers: Vec<String> = tree(&fresh.root().join("layers"))
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(
        layers.len(),
        1,
        "one busybox layer, stored once: {layers:?}"
    );
    let r = fresh.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        &target,
        "echo",
        "pulled",
    ]);
    ok(&r, "run after parallel pulls");
    assert_eq!(r.stdout.trim(), "pulled");
}
