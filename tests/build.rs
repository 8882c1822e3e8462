//! `twinbox build` end to end (root, real runtime): the course's Flask-style
//! Dockerfile on the offline busybox base, then run; multi-stage with --target
//! and COPY --from; the cache (unchanged rebuild, one edited file, rmi/prune);
//! a failing RUN leaves nothing behind; context escapes and broken files are
//! refused with file:line; RUN mounts and secrets; ONBUILD; ADD archives;
//! COPY --parents/--exclude/--link, ADD --unpack, ADD of a git repository
//! (from a git daemon on loopback), symbolic --chmod.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use common::dockerd::Dockerd;
use common::{lab, Lab, Run};
use serde_json::Value;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
}

fn context(lab: &Lab, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = lab.root().join("ctx").join(name);
    fs::create_dir_all(&dir).unwrap();
    write(&dir, files);
    dir
}

fn build(lab: &Lab, args: &[&str]) -> Run {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    lab.tb(&all)
}

fn image_config(lab: &Lab, name: &str) -> Value {
    let r = lab.tb(&["image", "inspect", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v[0].clone()
}

/// The raw image config blob of `name` (what `save`/`push` carry).
fn raw_config(lab: &Lab, name: &str) -> Value {
    let id = image_config(lab, name)["Id"].as_str().unwrap().to_string();
    let hex = id.trim_start_matches("sha256:");
    serde_json::from_slice(&fs::read(lab.root().join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// Build leftovers: temp dirs, overlay mounts of the store, build cgroups.
fn leftovers(lab: &Lab) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(lab.root().join("tmp")).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("lease-") {
            out.push(format!("tmp/{n}"));
        }
    }
    let root = lab.root().display().to_string();
    for line in fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        if line.contains(&root) {
            out.push(format!("mount: {line}"));
        }
    }
    for hier in ["memory", "pids", "cpu,cpuacct", "unified"] {
        if let Ok(rd) = fs::read_dir(format!("/sys/fs/cgroup/{hier}/twinbox")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if dead_build_step(&n) {
                    out.push(format!("cgroup {hier}/{n}"));
                }
            }
        }
    }
    // host-local leases (one file per address, the owner's id first) taken
    // since this lab began: older ones may be other runs' (killed builds)
    let since = fs::metadata(lab.root()).and_then(|m| m.created());
    for net in fs::read_dir("/run/twinbox/ipam")
        .into_iter()
        .flatten()
        .flatten()
    {
        for lease in fs::read_dir(net.path()).into_iter().flatten().flatten() {
            let recent = match (&since, lease.metadata().and_then(|m| m.modified())) {
                (Ok(since), Ok(at)) => at >= *since,
                _ => false,
            };
            let owner = fs::read_to_string(lease.path()).unwrap_or_default();
            if recent && dead_build_step(owner.lines().next().unwrap_or("")) {
                out.push(format!("lease {} of {owner:?}", lease.path().display()));
            }
        }
    }
    out
}

/// build-<pid>-<hex> (a RUN step's id) of a builder that is gone: a leftover
/// (other tests' builds may be running meanwhile).
fn dead_build_step(id: &str) -> bool {
    id.strip_prefix("build-")
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

const FLASK_STYLE: &str = r#"# the course's example, on an offline base
FROM busybox
LABEL course="containers vs VMs"
EXPOSE 5000
ENV FLASK_APP=app.py \
    GREETING="hello from the image"
WORKDIR /app
# a dependency step before the code, so editing code keeps it cached
COPY requirements.txt .
RUN echo "installing $(cat requirements.txt)" && mkdir -p /opt/deps && cp requirements.txt /opt/deps/installed
COPY . .
RUN rm -f scratch.tmp && echo "$GREETING" > /app/greeting.txt
CMD ["sh", "-c", "cat /app/greeting.txt; cat /app/app.py; ls /app"]
"#;

fn flask_context(lab: &Lab) -> std::path::PathBuf {
    context(
        lab,
        "flask",
        &[
            ("Dockerfile", FLASK_STYLE),
            ("requirements.txt", "flask\n"),
            ("app.py", "print('v1')\n"),
            ("scratch.tmp", "deleted by RUN\n"),
            ("notes/secret.key", "never in the image\n"),
            (".dockerignore", "notes/*.key\n*.log\n"),
            ("debug.log", "ignored\n"),
        ],
    )
}

#[test]
fn flask_style_dockerfile_builds_runs_and_looks_like_docker() {
    let Some(lab) = lab() else { return };
    let ctx = flask_context(&lab);
    let iid = lab.root().join("iid");
    let r = build(
        &lab,
        &[
            "-t",
            "course/app:v1",
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("[2/6] WORKDIR /app"), "{}", r.stderr);
    assert!(
        r.stderr.contains("installing flask"),
        "RUN output is streamed: {}",
        r.stderr
    );

    let run = lab.tb(&["run", "--rm", "course/app:v1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "hello from the image");
    assert_eq!(lines[1], "print('v1')");
    let listed: Vec<&str> = lines[2..].to_vec();
    assert!(
        listed.contains(&"app.py") && listed.contains(&"notes"),
        "{listed:?}"
    );
    for gone in ["scratch.tmp", "debug.log"] {
        assert!(
            !listed.contains(&gone),
            "{gone} must not be in /app: {listed:?}"
        );
    }
    let key = lab.tb(&["run", "--rm", "course/app:v1", "ls", "/app/notes"]);
    assert_eq!(
        key.stdout.trim(),
        "",
        ".dockerignore'd files never reach a step"
    );

    // config and history as Docker writes them
    let raw = raw_config(&lab, "course/app:v1");
    let cfg = &raw["config"];
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"5000/tcp": {}}));
    assert_eq!(cfg["Labels"]["course"], "containers vs VMs");
    assert_eq!(
        cfg["Cmd"],
        serde_json::json!([
            "sh",
            "-c",
            "cat /app/greeting.txt; cat /app/app.py; ls /app"
        ])
    );
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello from the image"), "{env:?}");
    let history = raw["history"].as_array().unwrap();
    let by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert!(by.contains(&"EXPOSE map[5000/tcp:{}]"), "{by:?}");
    assert!(by.contains(&"WORKDIR /app"), "{by:?}");
    assert!(by.contains(&"COPY . . # buildkit"), "{by:?}");
    assert!(
        by.contains(&r#"CMD ["sh" "-c" "cat /app/greeting.txt; cat /app/app.py; ls /app"]"#),
        "{by:?}"
    );
    let empty = history.iter().filter(|h| h["empty_layer"] == true).count();
    let layers = raw["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(history.len() - empty, layers, "one history entry per layer");
    let metadata_only = history
        .iter()
        .filter(|h| {
            let by = h["created_by"].as_str().unwrap();
            by.starts_with("LABEL")
                || by.starts_with("EXPOSE")
                || by.starts_with("ENV")
                || by.starts_with("CMD")
        })
        .all(|h| h["empty_layer"] == true);
    assert!(metadata_only, "metadata steps add no layer: {history:?}");
    let id = fs::read_to_string(&iid).unwrap();
    assert_eq!(
        id,
        image_config(&lab, "course/app:v1")["Id"].as_str().unwrap()
    );

    // an ordinary image: history, save work on it
    let h = lab.tb(&["history", "course/app:v1"]);
    assert!(h.stdout.contains("WORKDIR /app"), "{}", h.stdout);
    let saved = lab.root().join("app.tar");
    let s = lab.tb(&["save", "-o", saved.to_str().unwrap(), "course/app:v1"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert!(leftovers(&lab).is_empty(), "{:?}", leftovers(&lab));
}

#[test]
fn cache_hits_on_unchanged_rebuild_and_reruns_only_after_an_edit() {
    let Some(lab) = lab() else { return };
    let ctx = flask_context(&lab);
    let c = ctx.to_str().unwrap();
    let first = build(&lab, &["-t", "app:1", c]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let id1 = image_config(&lab, "app:1")["Id"].clone();

    // same inputs, new mtimes: every step cached, the same image id
    let now = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(ctx.join("app.py"))
        .unwrap()
        .set_modified(now)
        .unwrap();
    let again = build(&lab, &["-t", "app:2", c]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.stderr.matches(" CACHED").count(),
        5,
        "{}",
        again.stderr
    );
    assert!(
        !again.stderr.contains("installing flask"),
        "{}",
        again.stderr
    );
    assert_eq!(image_config(&lab, "app:2")["Id"], id1);

    // one edited file: its COPY and what follows run again, nothing before it
    write(&ctx, &[("app.py", "print('v2')\n")]);
    let edited = build(&lab, &["-t", "app:3", c]);
    assert_eq!(edited.code, 0, "{}", edited.stderr);
    let step = |label: &str| {
        let line = edited
            .stderr
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("{label}: {}", edited.stderr));
        line.split_whitespace().next().unwrap().to_string()
    };
    let cached = |label: &str| edited.stderr.contains(&format!("{} CACHED", step(label)));
    assert!(cached("WORKDIR /app"));
    assert!(cached("COPY requirements.txt"));
    assert!(cached("RUN echo \"installing"));
    assert!(!cached("COPY . ."));
    assert!(!cached("RUN rm -f scratch.tmp"));
    let run = lab.tb(&["run", "--rm", "app:3", "cat", "/app/app.py"]);
    assert_eq!(run.stdout, "print('v2')\n");

    // --no-cache runs everything
    let fresh = build(&lab, &["--no-cache", "-t", "app:4", c]);
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert!(!fresh.stderr.contains("CACHED"), "{}", fresh.stderr);
    assert!(fresh.stderr.contains("installing flask"));

    // the cache follows the store: after rmi + prune of everything it pointed at,
    // the steps run again instead of naming layers that are gone
    for t in ["app:1", "app:2", "app:3", "app:4"] {
        assert_eq!(lab.tb(&["rmi", t]).code, 0);
    }
    assert_eq!(lab.tb(&["image", "prune"]).code, 0);
    let rebuilt = build(&lab, &["-t", "app:5", c]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    assert!(
        rebuilt.stderr.contains("installing flask"),
        "{}",
        rebuilt.stderr
    );
    let run = lab.tb(&["run", "--rm", "app:5", "cat", "/opt/deps/installed"]);
    assert_eq!(run.stdout, "flask\n");
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let Some(lab) = lab() else { return };
    let ctx = context(
        &lab,
        "multi",
        &[(
            "Dockerfile",
            r#"ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /src
RUN mkdir -p /out && echo artifact > /out/app.bin && chmod 0750 /out/app.bin
FROM busybox AS never
RUN echo this stage is not needed && exit 9
FROM $BASE AS final
COPY --from=build /out/app.bin /usr/local/bin/
COPY --from=build --chown=1234 /out /data
COPY --from=0 /src /src-copy
ENTRYPOINT ["cat"]
CMD ["/usr/local/bin/app.bin"]
"#,
        )],
    );
    let c = ctx.to_str().unwrap();
    let r = build(&lab, &["-t", "multi:final", c]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains("not needed"),
        "the unused stage ran: {}",
        r.stderr
    );
    assert!(r.stderr.contains("[build 3/3] RUN mkdir"), "{}", r.stderr);
    let run = lab.tb(&["run", "--rm", "multi:final"]);
    assert_eq!(run.stdout, "artifact\n", "{}", run.stderr);
    let ls = lab.tb(&[
        "run",
        "--rm",
        "--entrypoint",
        "",
        "multi:final",
        "ls",
        "-ln",
        "/data/app.bin",
        "/usr/local/bin/app.bin",
    ]);
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert!(
        lines[0].starts_with("-rwxr-x---") && lines[0].contains(" 1234 "),
        "{}",
        ls.stdout
    );
    assert!(lines[1].contains(" 0 "), "{}", ls.stdout);
    let cfg = raw_config(&lab, "multi:final");
    assert_eq!(cfg["config"]["Entrypoint"], serde_json::json!(["cat"]));

    let t = build(&lab, &["--target", "build", "-t", "multi:build", c]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    let cfg = raw_config(&lab, "multi:build");
    assert_eq!(cfg["config"]["WorkingDir"], "/src");
    assert!(
        t.stderr.contains("CACHED"),
        "the build stage comes from the cache: {}",
        t.stderr
    );

    let bad = build(&lab, &["--target", "nope", c]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("nope") && bad.stderr.contains("build, never, final"),
        "{}",
        bad.stderr
    );

    // ENTRYPOINT after an inherited CMD drops it (Docker's rule)
    let ep = context(
        &lab,
        "ep",
        &[("Dockerfile", "FROM busybox\nENTRYPOINT [\"echo\"]\n")],
    );
    assert_eq!(build(&lab, &["-t", "ep", ep.to_str().unwrap()]).code, 0);
    assert!(raw_config(&lab, "ep")["config"]["Cmd"].is_null());
}

#[test]
fn a_failing_run_reports_file_line_and_output_and_leaves_nothing() {
    let Some(lab) = lab() else { return };
    let ctx = context(
        &lab,
        "fail",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo fine > /fine\n\nRUN echo compiling; \\\n    echo 'error: missing semicolon' >&2; exit 3\nRUN echo never\n",
        )],
    );
    let before = lab.tb(&["images", "-q"]).stdout;
    let r = build(&lab, &["-t", "broken:1", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let last = r
        .stderr
        .lines()
        .rfind(|l| l.starts_with("twinbox:"))
        .unwrap();
    assert!(
        last.contains("Dockerfile:4") && last.contains("exit") && last.contains('3'),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("  error: missing semicolon"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("never"), "{}", r.stderr);
    assert_eq!(lab.tb(&["images", "-q"]).stdout, before, "nothing tagged");
    assert_eq!(lab.container_count(), 0);
    assert!(leftovers(&lab).is_empty(), "{:?}", leftovers(&lab));
}

#[test]
fn bad_input_is_refused_with_one_clear_line() {
    let Some(lab) = lab() else { return };
    let outside = lab.root().join("ctx/outside.txt");
    fs::create_dir_all(outside.parent().unwrap()).unwrap();
    fs::write(&outside, "not yours").unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "dotdot",
            "FROM busybox\nCOPY ../outside.txt /x\n",
            "outside the build context",
        ),
        (
            "symlink",
            "FROM busybox\nCOPY link /x\n",
            "outside the build context",
        ),
        ("missing", "FROM busybox\nCOPY nothere /x\n", "not found"),
        (
            "stage",
            "FROM busybox\nCOPY --from=nosuch /a /b\n",
            "nosuch",
        ),
        (
            "base",
            "FROM not-in-store:1.0\nRUN true\n",
            "twinbox image bootstrap",
        ),
        (
            "unknown",
            "FROM busybox\nRUN true\nFROB x\n",
            "Dockerfile:3",
        ),
        (
            "chmod",
            "FROM busybox\nCOPY --chmod=rwx Dockerfile /x\n",
            "--chmod",
        ),
    ];
    for (name, text, want) in cases {
        let ctx = context(&lab, name, &[("Dockerfile", text)]);
        if *name == "symlink" {
            std::os::unix::fs::symlink("/etc/shadow", ctx.join("link")).unwrap();
        }
        let r = build(&lab, &["-t", "refused", ctx.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        let err: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("twinbox:"))
            .collect();
        assert_eq!(err.len(), 1, "{name}: {}", r.stderr);
        assert!(err[0].contains(want), "{name}: {}", err[0]);
        assert!(
            err[0].contains("Dockerfile:"),
            "{name}: names the line: {}",
            err[0]
        );
    }
    assert!(
        lab.tb(&["image", "inspect", "refused"]).code != 0,
        "nothing tagged"
    );
    assert!(leftovers(&lab).is_empty(), "{:?}", leftovers(&lab));
}

#[test]
fn check_reports_problems_with_line_numbers() {
    let Some(lab) = lab() else { return };
    let broken = context(
        &lab,
        "check-broken",
        &[(
            "Dockerfile",
            "FROM busybox AS Base\nENV A=1 B\nCMD echo hi\nCOPY --frm=x a b\n",
        )],
    );
    let r = build(&lab, &["--check", broken.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for want in [
        "Dockerfile:1: warning StageNameCasing",
        "Dockerfile:2: error",
        "Dockerfile:3: warning JSONArgsRecommended",
        "Dockerfile:4: error: unknown flag --frm",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    let syntax = context(
        &lab,
        "check-syntax",
        &[("Dockerfile", "FROM busybox\n\nNOPE x\n")],
    );
    let r = build(&lab, &["--check", syntax.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Dockerfile:3"), "{}", r.stderr);
    let good = context(&lab, "check-good", &[("Dockerfile", FLASK_STYLE)]);
    let r = build(&lab, &["--check", good.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("no warnings"), "{}", r.stdout);
    assert!(
        lab.tb(&["images", "-q"]).stdout.lines().count() == 1,
        "--check builds nothing"
    );
}

#[test]
fn stdin_dockerfile_quiet_mode_mounts_secrets_and_onbuild() {
    let Some(lab) = lab() else { return };
    // a Dockerfile on stdin, no context, -q prints the id only
    let out = lab.piped(
        &["build", "-q", "-t", "piped", "-"],
        b"FROM busybox\nRUN echo from-stdin > /hello\nONBUILD RUN echo triggered > /onbuild\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.trim().starts_with("sha256:") && out.stdout.lines().count() == 1,
        "{}",
        out.stdout
    );
    assert_eq!(
        lab.tb(&["run", "--rm", "piped", "cat", "/hello"]).stdout,
        "from-stdin\n"
    );

    let secret = lab.root().join("token");
    fs::write(&secret, "s3cret-value").unwrap();
    let ctx = context(
        &lab,
        "mounts",
        &[
            (
                "Dockerfile",
                "FROM piped\nRUN --mount=type=cache,target=/cache,id=demo echo run >> /cache/log && wc -l < /cache/log > /cache-count\nRUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-len\nRUN --mount=type=bind,source=data,target=/mnt cat /mnt/file > /from-bind\nRUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs-seen\nCOPY <<EOF /etc/greeting\nhi there\nEOF\nADD files.tar /unpacked/\n",
            ),
            ("data/file", "bound\n"),
        ],
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, "inner/x.txt", &b"xyz"[..]).unwrap();
    fs::write(ctx.join("files.tar"), tar.into_inner().unwrap()).unwrap();
    let c = ctx.to_str().unwrap();
    let secret_arg = format!("id=token,src={}", secret.display());
    let r = build(
        &lab,
        &["--no-cache", "--secret", &secret_arg, "-t", "mounts:1", c],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cat = |img: &str, path: &str| lab.tb(&["run", "--rm", img, "cat", path]).stdout;
    assert_eq!(
        cat("mounts:1", "/onbuild"),
        "triggered\n",
        "ONBUILD ran in the child"
    );
    assert_eq!(cat("mounts:1", "/cache-count"), "1\n");
    assert_eq!(cat("mounts:1", "/secret-len"), "12\n");
    assert_eq!(cat("mounts:1", "/from-bind"), "bound\n");
    assert_eq!(cat("mounts:1", "/tmpfs-seen"), "x\n");
    assert_eq!(cat("mounts:1", "/etc/greeting"), "hi there\n");
    assert_eq!(cat("mounts:1", "/unpacked/inner/x.txt"), "xyz");
    let ls = lab.tb(&[
        "run",
        "--rm",
        "mounts:1",
        "sh",
        "-c",
        "ls /cache /scratch /run/secrets /mnt 2>&1; echo end",
    ]);
    assert!(
        !ls.stdout.contains("log") && !ls.stdout.contains("token"),
        "mounts are not in the image: {}",
        ls.stdout
    );
    let raw = raw_config(&lab, "mounts:1");
    assert!(raw["config"]["OnBuild"].is_null(), "triggers are consumed");
    assert!(
        !raw.to_string().contains("s3cret"),
        "the secret is not in the config or history"
    );
    // the cache mount persists across builds
    let r = build(
        &lab,
        &["--no-cache", "--secret", &secret_arg, "-t", "mounts:2", c],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(cat("mounts:2", "/cache-count"), "2\n");
    // a required secret that is missing is an error
    let r = build(&lab, &["--no-cache", "-t", "mounts:3", c]);
    assert!(
        r.code == 0,
        "an optional secret may be absent: {}",
        r.stderr
    );
}

// ---------- differential: the same Dockerfiles through Docker's BuildKit ----------

/// One file of a flattened image: kind, mode, owner, and content digest or link target.
type Tree = std::collections::BTreeMap<String, (char, u32, u64, u64, String)>;

/// Applies the layers of a `save` archive (Docker manifest.json) in order,
/// whiteouts included, into one tree.
fn flatten(archive: &Path) -> Tree {
    use sha2::Digest as _;
    use std::io::Read;
    let mut files = std::collections::HashMap::new();
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(name, data);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let mut tree = Tree::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let raw = &files[layer.as_str().unwrap()];
        let plain = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw.clone()
        };
        let mut added = Vec::new();
        let mut t = tar::Archive::new(&plain[..]);
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let path = path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            let (dir, base) = path
                .rsplit_once('/')
                .map(|(d, b)| (format!("{d}/"), b.to_string()))
                .unwrap_or((String::new(), path.clone()));
            if base == ".wh..wh..opq" {
                tree.retain(|k, _| !k.starts_with(&dir) || added.contains(k));
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let gone = format!("{dir}{gone}");
                tree.retain(|k, _| k != &gone && !k.starts_with(&format!("{gone}/")));
                continue;
            }
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => 'f',
            };
            let detail = match kind {
                'l' | 'h' => e.link_name().unwrap().unwrap().display().to_string(),
                'f' => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    sha2::Sha256::digest(&data)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                }
                _ => String::new(),
            };
            let entry = (
                kind,
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                detail,
            );
            if kind != 'd' {
                tree.retain(|k, _| !k.starts_with(&format!("{path}/")));
            }
            added.push(path.clone());
            tree.insert(path, entry);
        }
    }
    // a hard link is the file it names
    let snapshot = tree.clone();
    for v in tree.values_mut() {
        if v.0 == 'h' {
            if let Some(target) = snapshot.get(v.4.trim_start_matches("./")) {
                *v = target.clone();
            }
        }
    }
    tree
}

const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        other => other.clone(),
    }
}

#[test]
fn the_same_dockerfiles_give_what_docker_buildkit_gives() {
    let Some(lab) = lab() else { return };
    let Some(dockerd) = Dockerd::with_busybox(&lab) else {
        return;
    };

    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("pkg/bin/tool", &b"#!/bin/sh\necho tool\n"[..], 0o755),
        ("pkg/README", &b"readme\n"[..], 0o640),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        tar.append_data(&mut h, name, data).unwrap();
    }
    let tar_bytes = tar.into_inner().unwrap();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "flask",
            vec![
                ("Dockerfile", FLASK_STYLE),
                ("requirements.txt", "flask\n"),
                ("app.py", "print('v1')\n"),
                ("scratch.tmp", "deleted by RUN\n"),
                ("notes/secret.key", "never in the image\n"),
                ("notes/keep.txt", "kept\n"),
                (".dockerignore", "notes/*.key\n*.log\n"),
                ("debug.log", "ignored\n"),
            ],
        ),
        (
            "stages",
            vec![
                (
                    "Dockerfile",
                    r#"FROM busybox AS build
ARG VERSION=1.2
WORKDIR src
RUN mkdir -p /out/lib && echo "v$VERSION" > /out/version && ln -s version /out/current && chmod 0700 /out/lib
FROM busybox
ENV PATH=/opt/tools/bin:$PATH HOME=/home/app
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group && rm /bin/vi && mkdir -p /opt/tools /home/app
COPY --from=build /out /opt/tools/
COPY --from=build --chown=1234:1234 /out/version /home/app/
ADD pkg.tar /opt/
COPY files/ /srv/files/
USER app
WORKDIR /home/app
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- http://localhost:5000/ || exit 1
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello"]
ONBUILD RUN echo child
"#,
                ),
                ("files/a.txt", "a\n"),
                ("files/sub/b.txt", "b\n"),
            ],
        ),
        (
            // RUN mounts: what each step saw, and that none of it stays
            "mounts",
            vec![
                (
                    "Dockerfile",
                    r#"FROM busybox AS seed
RUN mkdir -p /seed && echo seeded > /seed/file && chmod 0640 /seed/file
FROM busybox
RUN --mount=type=cache,target=/tmp/cache,id=diff-owned,mode=0710,uid=1000,gid=1001 sh -c 'stat -c "%a %u %g" /tmp/cache; echo x > /tmp/cache/x' > /cache-stat
RUN --mount=type=cache,target=/tmp/seeded,id=diff-seeded,from=seed,source=/seed sh -c 'cat /tmp/seeded/file; stat -c "%a" /tmp/seeded/file' > /cache-seeded
RUN --mount=type=cache,target=/tmp/ro,id=diff-owned,ro sh -c 'touch /tmp/ro/y 2>/dev/null && echo writable || echo read-only' > /cache-ro
RUN --mount=type=bind,source=files,target=/tmp/files sh -c 'cd /tmp/files && find . | sort && cat a.txt' > /bind-context
RUN --mount=type=bind,from=seed,source=/seed,target=/tmp/s,rw sh -c 'echo more > /tmp/s/more && ls /tmp/s' > /bind-stage
RUN --mount=type=tmpfs,target=/tmp/scratch sh -c 'echo t > /tmp/scratch/t && ls /tmp/scratch' > /tmpfs-ls
RUN --mount=type=secret,id=tok sh -c 'stat -c "%a %u %g %s" /run/secrets/tok' > /secret-stat
RUN --mount=type=secret,id=tok,target=/tmp/tok,mode=0440,uid=7,gid=8,required=true sh -c 'stat -c "%a %u %g %s" /tmp/tok' > /secret-target
RUN --mount=type=secret,id=absent sh -c 'test -e /run/secrets/absent && echo there || echo absent' > /secret-optional
"#,
                ),
                ("files/a.txt", "a\n"),
                ("files/sub/b.txt", "b\n"),
            ],
        ),
    ];
    let secret = lab.root().join("diff-secret");
    fs::write(&secret, "twelve-bytes").unwrap();
    let secret_arg = format!("id=tok,src={}", secret.display());
    let mut differences = Vec::new();
    for (name, files) in &cases {
        let ctx = context(&lab, &format!("diff-{name}"), files);
        fs::write(ctx.join("pkg.tar"), &tar_bytes).unwrap();
        let tag = format!("diff/{name}:1");
        let args = [
            "--network",
            "none",
            "--secret",
            &secret_arg,
            "-t",
            &tag,
            ctx.to_str().unwrap(),
        ];
        let ours = build(&lab, &args);
        assert_eq!(ours.code, 0, "{name}: {}", ours.stderr);
        let theirs = dockerd.docker(&[&["build"][..], &args].concat());
        assert_eq!(theirs.code, 0, "{name}: docker: {}", theirs.stderr);

        let our_cfg = raw_config(&lab, &tag)["config"].clone();
        let inspect = dockerd.docker(&["image", "inspect", &tag]);
        let their_cfg =
            serde_json::from_str::<Value>(&inspect.stdout).unwrap()[0]["Config"].clone();
        for field in CONFIG_FIELDS {
            let (a, b) = (normalized(&our_cfg[field]), normalized(&their_cfg[field]));
            if a != b {
                differences.push(format!("{name}: config {field}: twinbox {a} docker {b}"));
            }
        }
        let (ours_tar, theirs_tar) = (
            lab.root().join(format!("{name}-ours.tar")),
            lab.root().join(format!("{name}-docker.tar")),
        );
        assert_eq!(
            lab.tb(&["save", "-o", ours_tar.to_str().unwrap(), &tag])
                .code,
            0
        );
        let saved = dockerd.docker(&["save", "-o", theirs_tar.to_str().unwrap(), &tag]);
        assert_eq!(saved.code, 0, "{}", saved.stderr);
        let (a, b) = (flatten(&ours_tar), flatten(&theirs_tar));
        // the comparison sees real trees: a few known entries, whiteouts applied
        let expect: &[(&str, char, u64)] = match *name {
            "flask" => &[
                ("app/app.py", 'f', 0),
                ("app/greeting.txt", 'f', 0),
                ("opt/deps/installed", 'f', 0),
            ],
            "mounts" => &[
                ("cache-stat", 'f', 0),
                ("bind-context", 'f', 0),
                ("secret-target", 'f', 0),
            ],
            _ => &[
                ("home/app/version", 'f', 1234),
                ("opt/pkg/bin/tool", 'f', 1000),
                ("opt/tools/current", 'l', 0),
                ("srv/files/sub/b.txt", 'f', 0),
            ],
        };
        for (path, kind, uid) in expect {
            let e = a.get(*path).unwrap_or_else(|| {
                panic!(
                    "{name}: /{path} missing: {:?}",
                    a.keys().collect::<Vec<_>>()
                )
            });
            assert_eq!((e.0, e.2), (*kind, *uid), "{name}: /{path}");
        }
        assert!(!a.contains_key("app/scratch.tmp") && a.contains_key("bin/sh"));
        assert_eq!(
            a.contains_key("bin/vi"),
            *name != "stages",
            "RUN rm is a whiteout"
        );
        assert!(name != &"stages" || !normalized(&our_cfg["Healthcheck"]).is_null());
        for (path, entry) in &a {
            match b.get(path) {
                None => differences.push(format!("{name}: only twinbox has /{path} {entry:?}")),
                Some(other) if other != entry => differences.push(format!(
                    "{name}: /{path}: twinbox {entry:?} docker {other:?}"
                )),
                _ => {}
            }
        }
        // the BuildKit inside Docker 20.10 leaves the empty directories it
        // made as mount points in the RUN layer; current BuildKit removes
        // these mount stubs, as twinbox does, so they are not a difference
        let stubs: &[&str] = if *name == "mounts" {
            &[
                "run",
                "run/secrets",
                "tmp/cache",
                "tmp/files",
                "tmp/ro",
                "tmp/s",
                "tmp/scratch",
                "tmp/seeded",
            ]
        } else {
            &[]
        };
        for (path, entry) in &b {
            if stubs.contains(&path.as_str()) && entry.0 == 'd' {
                continue;
            }
            if !a.contains_key(path) {
                differences.push(format!("{name}: only docker has /{path} {entry:?}"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Serves `body` to every request on a loopback port until the test ends.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn add_from_a_url_checks_its_checksum_and_platform_args_exist() {
    let Some(lab) = lab() else { return };
    let port = serve(b"downloaded content\n");
    // sha256 of "downloaded content\n"
    use sha2::Digest as _;
    let sum: String = sha2::Sha256::digest(b"downloaded content\n")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let good = format!(
        "FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nADD --checksum=sha256:{sum} http://127.0.0.1:{port}/files/data.txt /dl/\nRUN echo $TARGETARCH > /arch\n"
    );
    let ctx = context(&lab, "url-good", &[("Dockerfile", &good)]);
    let r = build(&lab, &["-t", "url:1", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = lab.tb(&[
        "run",
        "--rm",
        "url:1",
        "sh",
        "-c",
        "cat /dl/data.txt /arch; stat -c %a /dl/data.txt",
    ]);
    assert_eq!(
        out.stdout, "downloaded content\namd64\n600\n",
        "{}",
        out.stderr
    );
    let bad = format!(
        "FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/x /x\n",
        "0".repeat(64)
    );
    let ctx = context(&lab, "url-bad", &[("Dockerfile", &bad)]);
    let r = build(&lab, &["-t", "url:2", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("checksum mismatch") && r.stderr.contains("Dockerfile:2"),
        "{}",
        r.stderr
    );
    assert!(leftovers(&lab).is_empty(), "{:?}", leftovers(&lab));
}

/// The course's own example on a real Python: a Debian base bootstrapped with
/// python3-flask (offline from then on: the Dockerfile's RUN stands in for
/// `pip install flask`), built, run detached, and its page fetched.
#[test]
fn course_flask_app_on_debian_serves_its_page() {
    let Some(lab) = lab() else { return };
    if !Path::new("/usr/bin/mmdebstrap").exists() {
        eprintln!("skipping: mmdebstrap is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let r = lab.tb(&[
        "image",
        "bootstrap",
        "debian:bookworm",
        "--packages",
        "python3-flask",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctx = context(
        &lab,
        "course",
        &[
            (
                "Dockerfile",
                "# the course's Dockerfile, with the base made offline\nFROM debian:bookworm\nEXPOSE 5000\nWORKDIR /app\nRUN python3 -c 'import flask; print(\"flask\", flask.__version__)'\nCOPY . .\nCMD [\"flask\", \"run\", \"--host\", \"0.0.0.0\"]\n",
            ),
            (
                "app.py",
                "from flask import Flask\napp = Flask(__name__)\n\n@app.route('/')\ndef hello():\n    return 'Hello from an image twinbox built!\\n'\n",
            ),
        ],
    );
    let r = build(&lab, &["-t", "course/flask:v1", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("flask "), "{}", r.stderr);
    let name = format!("flask-{}", std::process::id());
    let port_env = format!("FLASK_RUN_PORT={port}");
    let run = lab.tb(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        &port_env,
        "course/flask:v1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut page = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read;
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let _ = s.read_to_string(&mut page);
            if !page.is_empty() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let logs = lab.tb(&["logs", &name]);
    let _ = lab.tb(&["rm", "-f", &name]);
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{page}\nlogs: {}{}",
        logs.stdout,
        logs.stderr
    );
    assert!(
        page.ends_with("Hello from an image twinbox built!\n"),
        "{page}"
    );
}

#[test]
fn run_steps_are_on_the_default_bridge_unless_told_otherwise() {
    let Some(lab) = lab() else { return };
    let ctx = context(
        &lab,
        "nets",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN ls /sys/class/net > /nets && ip route > /routes || true\n",
        )],
    );
    let r = build(&lab, &["-t", "nets:bridge", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let nets = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "nets:bridge",
        "cat",
        "/nets",
    ]);
    assert!(
        nets.stdout.contains("eth0"),
        "a RUN step on the bridge has eth0: {}",
        nets.stdout
    );
    let r = build(
        &lab,
        &[
            "--network",
            "none",
            "-t",
            "nets:none",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let nets = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "nets:none",
        "cat",
        "/nets",
    ]);
    assert_eq!(nets.stdout.trim(), "lo", "--network none gives only lo");
    // the steps' network state went with them: no namespace, no lease left
    assert!(leftovers(&lab).is_empty(), "{:?}", leftovers(&lab));
}

#[test]
fn copy_parents_exclude_link_and_add_flags() {
    let Some(lab) = lab() else { return };
    let ctx = context(
        &lab,
        "copyflags",
        &[
            ("x/a.txt", "xa\n"),
            ("y/a.txt", "ya\n"),
            ("x/y/b.txt", "xyb\n"),
            ("src/a.txt", "sa\n"),
            ("src/x/b.txt", "sxb\n"),
            ("src/x/y/c.txt", "sxyc\n"),
            ("src/x/y/d.md", "not matched\n"),
            ("hom1.txt", "h1\n"),
            ("hom2.md", "h2\n"),
            ("home.bin", "hb\n"),
            ("dir1/file-101.png", "2"),
            ("dir1/file-102.txt", "3"),
            ("dir3/file-301.mp3", "9"),
            ("dir3/file-302.mpeg", "10"),
        ],
    );
    fs::set_permissions(ctx.join("src/x"), fs::Permissions::from_mode(0o750)).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, "inner.txt", &b"in\n"[..]).unwrap();
    fs::write(ctx.join("files.tar"), tar.into_inner().unwrap()).unwrap();
    let dockerfile = "FROM busybox\n\
         ARG V=1\n\
         RUN echo $V > /v && ln -s /tmp /linked\n\
         COPY --parents ./x/a.txt ./y/a.txt /parents/\n\
         COPY --parents ./x/./y/*.txt /pivot/\n\
         COPY --parents ./src/**/*.txt /deep/\n\
         COPY --exclude=*/*.png --exclude=Dockerfile --exclude=files.tar . /all/\n\
         COPY --exclude=*.txt hom* /hom/\n\
         ADD --exclude=*.mp3 dir3/ /3/\n\
         COPY hom1.txt /linked/followed.txt\n\
         COPY --link hom1.txt /linked/linked.txt\n\
         ADD --unpack=false files.tar /packed/\n\
         ADD files.tar /unpacked/\n";
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let c = ctx.to_str().unwrap();
    let r = build(&lab, &["--network", "none", "-t", "flags:1", c]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let find = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "flags:1",
        "sh",
        "-c",
        "cd / && find parents pivot deep all hom 3 packed unpacked linked/ tmp -type f | sort; stat -c '%n %a' deep/src/x; test -L linked && echo link || echo dir",
    ]);
    assert_eq!(find.code, 0, "{}", find.stderr);
    let mut expected = [
        "3/file-302.mpeg",
        "all/dir1/file-102.txt",
        "all/dir3/file-301.mp3",
        "all/dir3/file-302.mpeg",
        "all/home.bin",
        "all/hom1.txt",
        "all/hom2.md",
        "all/src/a.txt",
        "all/src/x/b.txt",
        "all/src/x/y/c.txt",
        "all/src/x/y/d.md",
        "all/x/a.txt",
        "all/x/y/b.txt",
        "all/y/a.txt",
        "deep/src/a.txt",
        "deep/src/x/b.txt",
        "deep/src/x/y/c.txt",
        "hom/hom2.md",
        "hom/home.bin",
        "linked/linked.txt",
        "packed/files.tar",
        "parents/x/a.txt",
        "parents/y/a.txt",
        "pivot/y/b.txt",
        "tmp/followed.txt",
        "unpacked/inner.txt",
    ];
    expected.sort();
    let mut files: Vec<&str> = find
        .stdout
        .lines()
        .filter(|l| !l.contains(' ') && l.contains('/'))
        .collect();
    files.sort();
    assert_eq!(files, expected, "{}", find.stdout);
    assert!(
        find.stdout.contains("deep/src/x 750"),
        "--parents keeps the directories' own modes: {}",
        find.stdout
    );
    assert!(
        find.stdout.ends_with("dir\n"),
        "--link does not follow the stage's symlink: {}",
        find.stdout
    );
    // --link's cache does not depend on the steps before it
    let r = build(
        &lab,
        &[
            "--network",
            "none",
            "--build-arg",
            "V=2",
            "-t",
            "flags:2",
            c,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id_of = |label: &str| {
        r.stderr
            .lines()
            .find(|l| l.contains(label))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{label}: {}", r.stderr))
            .to_string()
    };
    let cached = |label: &str| r.stderr.contains(&format!("{} CACHED", id_of(label)));
    assert!(
        !cached("COPY hom1.txt /linked/followed.txt"),
        "{}",
        r.stderr
    );
    assert!(cached("COPY --link hom1.txt"), "{}", r.stderr);
    assert_eq!(
        lab.tb(&[
            "run",
            "--rm",
            "--network",
            "none",
            "flags:2",
            "cat",
            "/linked/linked.txt",
            "/v"
        ])
        .stdout,
        "h1\n2\n"
    );

    // refused with one line naming the thing
    for (line, says) in [
        ("ADD --keep-git-dir=true hom1.txt /k/", "--keep-git-dir"),
        ("COPY --chmod=u+q hom1.txt /k/", "--chmod=u+q"),
        ("COPY --parents=maybe hom1.txt /k/", "true or false"),
        ("COPY --unpack=true files.tar /k/", "unknown flag --unpack"),
    ] {
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox\n{line}\n")).unwrap();
        let r = build(&lab, &["--network", "none", "-t", "flags:bad", c]);
        assert_ne!(r.code, 0, "{line}");
        assert!(r.stderr.contains(says), "{line}: {}", r.stderr);
        assert_ne!(lab.tb(&["image", "inspect", "flags:bad"]).code, 0);
    }
}

/// A `git daemon` serving `base` on a loopback port, killed when dropped.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // `git daemon` runs git-daemon as its child: a group of their own
            // lets drop end both
            .process_group(0)
            .spawn()
            .expect("git daemon");
        let d = GitDaemon { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        d
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // SAFETY: a signal to the process group this test made for the daemon
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn add_a_git_repository_and_symbolic_chmod() {
    let Some(lab) = lab() else { return };
    // a repository with a tag v1 and a later commit on main, served bare
    let work = lab.root().join("gitwork");
    fs::create_dir_all(work.join("bin")).unwrap();
    fs::create_dir_all(work.join("docs")).unwrap();
    git(&work, &["init", "--quiet", "-b", "main"]);
    fs::write(work.join("README"), "v1\n").unwrap();
    fs::write(work.join("bin/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(work.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(work.join("docs/guide.txt"), "guide\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    let v1 = git(&work, &["rev-parse", "HEAD"]);
    fs::write(work.join("README"), "v2\n").unwrap();
    git(&work, &["commit", "--quiet", "-am", "two"]);
    let served = lab.root().join("gitserved");
    fs::create_dir_all(&served).unwrap();
    git(
        &served,
        &[
            "clone",
            "--quiet",
            "--bare",
            work.to_str().unwrap(),
            "repo.git",
        ],
    );
    let daemon = GitDaemon::start(&served);
    let repo = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    let ctx = context(
        &lab,
        "gitadd",
        &[
            ("hello.txt", "hello\n"),
            ("dir/f", "f\n"),
            ("dir/sub/g", "g\n"),
        ],
    );
    fs::set_permissions(ctx.join("hello.txt"), fs::Permissions::from_mode(0o664)).unwrap();
    fs::set_permissions(ctx.join("dir/f"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(ctx.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(ctx.join("dir/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    let dockerfile = format!(
        "FROM busybox\n\
         ADD {repo} /src\n\
         ADD --checksum={v1} {repo}#v1 /v1\n\
         ADD --keep-git-dir=true {repo}#main /kept\n\
         ADD {repo}#v1:docs /docs\n\
         ADD --chown=7:8 --chmod=go-rwx {repo}#v1:bin /bin2\n\
         COPY --chmod=u+x,g-w,a+r hello.txt /h/\n\
         COPY --chmod=a=rX dir/ /d/\n"
    );
    fs::write(ctx.join("Dockerfile"), &dockerfile).unwrap();
    let c = ctx.to_str().unwrap();
    let first = build(&lab, &["--network", "none", "-q", "-t", "gitadd:1", c]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let seen = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "gitadd:1",
        "sh",
        "-c",
        "cat /src/README /v1/README; test -e /src/.git || echo no-git; \
         test -d /kept/.git && echo kept-git; ls /docs; \
         stat -c '%a %u %g %n' /src/bin/run.sh /src/README /bin2/run.sh /h/hello.txt /d /d/f /d/sub",
    ]);
    assert_eq!(seen.code, 0, "{}", seen.stderr);
    assert_eq!(
        seen.stdout,
        "v2\nv1\nno-git\nkept-git\nguide.txt\n\
         755 0 0 /src/bin/run.sh\n\
         644 0 0 /src/README\n\
         700 7 8 /bin2/run.sh\n\
         744 0 0 /h/hello.txt\n\
         755 0 0 /d\n\
         444 0 0 /d/f\n\
         555 0 0 /d/sub\n"
    );
    // unchanged repository and context: every step from the cache
    let again = build(&lab, &["--network", "none", "-q", "-t", "gitadd:2", c]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, first.stdout, "a rebuild reuses the cache");

    // refused with one line, nothing tagged, nothing left
    for (line, says) in [
        (format!("ADD {repo}#no-such-ref /x"), "no-such-ref"),
        (
            format!("ADD --checksum=0000000 {repo}#v1 /x"),
            "does not match",
        ),
        (format!("ADD {repo}#v1:../.. /x"), "leaves the repository"),
        (format!("ADD {repo}#v1:nothere /x"), "no directory nothere"),
    ] {
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox\n{line}\n")).unwrap();
        let r = build(&lab, &["--network", "none", "-t", "gitadd:bad", c]);
        assert_ne!(r.code, 0, "{line}");
        assert!(r.stderr.contains(says), "{line}: {}", r.stderr);
        assert_ne!(lab.tb(&["image", "inspect", "gitadd:bad"]).code, 0);
    }
    assert!(leftovers(&lab).is_empty(), "{:?}", leftovers(&lab));
}
