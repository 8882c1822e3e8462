//! `RUN --mount` options as BuildKit reads them (root, real runtime): cache
//! mounts with mode, owner, read-only, seeded `from` a stage, and `sharing`
//! (locked waits, private gets its own while the cache is in use); bind mounts
//! from a stage or an image, and `rw` writes that never reach the context or
//! the layer; secrets as files (mode, owner) and as env vars for one RUN,
//! never stored; tmpfs size; bad options refused with one line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{lab, Lab, Run};

fn context(lab: &Lab, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = lab.root().join("ctx").join(name);
    for (file, text) in files {
        let p = dir.join(file);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn build(lab: &Lab, args: &[&str]) -> Run {
    let mut all = vec!["build", "--network", "none", "--progress", "plain"];
    all.extend_from_slice(args);
    lab.tb(&all)
}

fn spawn_build(lab: &Lab, args: &[&str]) -> Child {
    let mut all = vec!["build", "--network", "none", "--progress", "plain"];
    all.extend_from_slice(args);
    lab.cmd(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn cat(lab: &Lab, image: &str, path: &str) -> String {
    let r = lab.tb(&["run", "--rm", "--network", "none", image, "cat", path]);
    assert_eq!(r.code, 0, "cat {path} in {image}: {}", r.stderr);
    r.stdout
}

/// Scratch left in the store's tmp/ (leases belong to live processes).
fn scratch(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("lease-"))
        .collect()
}

#[test]
fn cache_mount_options_and_binds_from_stages_and_images() {
    let Some(lab) = lab() else { return };
    // an image to bind from
    let seed = context(
        &lab,
        "seed",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir /seed && echo from-image > /seed/file\n",
        )],
    );
    let r = build(&lab, &["-t", "seedimg", seed.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let ctx = context(
        &lab,
        "opts",
        &[
            (
                "Dockerfile",
                "FROM busybox AS stage\n\
                 RUN mkdir /seed && echo from-stage > /seed/file\n\
                 FROM busybox\n\
                 RUN --mount=type=cache,target=/c,id=owned,mode=0710,uid=1000,gid=1001 stat -c '%a %u %g' /c > /cache-stat\n\
                 RUN --mount=type=cache,target=/s,id=seeded,from=stage,source=/seed cat /s/file > /seeded\n\
                 RUN --mount=type=cache,target=/r,id=owned,ro sh -c 'touch /r/x 2>/dev/null && echo writable || echo read-only' > /cache-ro\n\
                 RUN --mount=type=bind,from=stage,source=/seed,target=/m cat /m/file > /bind-stage\n\
                 RUN --mount=type=bind,from=seedimg,source=/seed,target=/m cat /m/file > /bind-image\n\
                 RUN --mount=type=bind,source=data,target=/d,rw sh -c 'echo scribble > /d/new && ls /d' > /bind-rw\n",
            ),
            ("data/file", "ctx\n"),
        ],
    );
    let r = build(&lab, &["-t", "opts:1", ctx.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(cat(&lab, "opts:1", "/cache-stat"), "710 1000 1001\n");
    assert_eq!(cat(&lab, "opts:1", "/seeded"), "from-stage\n");
    assert_eq!(cat(&lab, "opts:1", "/cache-ro"), "read-only\n");
    assert_eq!(cat(&lab, "opts:1", "/bind-stage"), "from-stage\n");
    assert_eq!(cat(&lab, "opts:1", "/bind-image"), "from-image\n");
    assert_eq!(cat(&lab, "opts:1", "/bind-rw"), "file\nnew\n");
    assert!(
        !ctx.join("data/new").exists(),
        "an rw bind's writes stay out of the context"
    );
    let ls = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "opts:1",
        "ls",
        "/c",
        "/s",
        "/m",
        "/d",
    ]);
    assert!(
        ls.stdout.trim().is_empty(),
        "mount targets leave nothing in the layer: {}",
        ls.stdout
    );
    // the seeded cache persists and is not seeded again
    let again = context(
        &lab,
        "again",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,target=/s,id=seeded cat /s/file > /seen\n",
        )],
    );
    let r = build(&lab, &["-t", "again:1", again.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(cat(&lab, "again:1", "/seen"), "from-stage\n");
    assert!(scratch(lab.root()).is_empty(), "{:?}", scratch(lab.root()));

    // bad options: one clear line, nothing built
    for (mount, says) in [
        ("type=cache,target=/c,sharing=sometimes", "sharing"),
        ("type=cache,target=/c,uid=me", "uid"),
        ("type=ssh", "type=ssh is not supported"),
    ] {
        let bad = context(
            &lab,
            "bad",
            &[(
                "Dockerfile",
                &format!("FROM busybox\nRUN --mount={mount} true\n"),
            )],
        );
        let r = build(&lab, &["-t", "bad:1", bad.to_str().unwrap()]);
        assert_ne!(r.code, 0, "{mount}");
        assert!(r.stderr.contains(says), "{mount}: {}", r.stderr);
        assert_ne!(lab.tb(&["image", "inspect", "bad:1"]).code, 0);
    }
}

#[test]
fn cache_sharing_locked_waits_and_private_gets_its_own() {
    let Some(lab) = lab() else { return };
    // locked: the second build's step waits for the first; a step that finds
    // the cache busy fails, so both succeeding means they never overlapped
    let locked = context(
        &lab,
        "locked",
        &[(
            "Dockerfile",
            "FROM busybox\nARG N\nRUN --mount=type=cache,target=/c,id=lk,sharing=locked sh -c 'test ! -e /c/busy || exit 3; touch /c/busy; sleep 1; rm /c/busy; echo $N'\n",
        )],
    );
    let l = locked.to_str().unwrap();
    let builds: Vec<Child> = (0..2)
        .map(|i| {
            spawn_build(
                &lab,
                &[
                    "--build-arg",
                    &format!("N={i}"),
                    "-t",
                    &format!("lk:{i}"),
                    l,
                ],
            )
        })
        .collect();
    for b in builds {
        let out = b.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a locked cache step overlapped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // private: a step that finds the cache in use gets a fresh one, so each
    // build reads back what it wrote
    let private = context(
        &lab,
        "private",
        &[(
            "Dockerfile",
            "FROM busybox\nARG WHO\nRUN --mount=type=cache,target=/c,id=pv,sharing=private sh -c 'echo $WHO > /c/who; sleep 2; cat /c/who > /mine'\n",
        )],
    );
    let p = private.to_str().unwrap();
    let first = spawn_build(&lab, &["--build-arg", "WHO=a", "-t", "pv:a", p]);
    std::thread::sleep(Duration::from_millis(500));
    let second = spawn_build(&lab, &["--build-arg", "WHO=b", "-t", "pv:b", p]);
    for b in [first, second] {
        let out = b.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(cat(&lab, "pv:a", "/mine"), "a\n");
    assert_eq!(cat(&lab, "pv:b", "/mine"), "b\n");
    assert!(scratch(lab.root()).is_empty(), "{:?}", scratch(lab.root()));
}

/// Every file under `dir` (gzip blobs read decompressed) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    use std::io::Read;
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(md) = p.symlink_metadata() else {
            continue;
        };
        if md.is_dir() {
            found.extend(files_holding(&p, needle));
        } else if md.is_file() {
            let mut data = fs::read(&p).unwrap_or_default();
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                if flate2::read::GzDecoder::new(&data[..])
                    .read_to_end(&mut out)
                    .is_ok()
                {
                    data = out;
                }
            }
            if data.windows(needle.len()).any(|w| w == needle) {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn secrets_as_env_and_files_tmpfs_size_and_required() {
    let Some(lab) = lab() else { return };
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("token");
    fs::write(&secret, "s3cret-value").unwrap();
    let src = format!("id=tok,src={}", secret.display());
    let ctx = context(
        &lab,
        "secrets",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=secret,id=tok,env=TOK sh -c '[ \"$TOK\" = \"$(echo czNjcmV0LXZhbHVl | base64 -d)\" ] && echo match; test -e /run/secrets/tok && echo file || echo no-file' > /env-only\n\
             RUN --mount=type=secret,id=tok,env=TOK2,target=/etc/tok,mode=0440,uid=7,gid=8 sh -c '[ \"$TOK2\" = \"$(cat /etc/tok)\" ] && echo same; stat -c \"%a %u %g\" /etc/tok' > /env-and-file\n\
             RUN --mount=type=secret,id=tok sh -c 'stat -c \"%a %u %g %s\" /run/secrets/tok' > /file-default\n\
             RUN --mount=type=secret,id=absent,env=ABSENT sh -c 'test -e /run/secrets/absent && echo file; echo \"[${ABSENT-unset}]\"' > /optional\n\
             RUN echo \"[${TOK-unset}]\" > /after\n\
             RUN --mount=type=tmpfs,target=/t,size=1m sh -c 'df -k /t | tail -1 | awk \"{print \\$2}\"; dd if=/dev/zero of=/t/big bs=1k count=2048 2>/dev/null && echo fit || echo full' > /tmpfs\n",
        )],
    );
    let r = build(
        &lab,
        &["--secret", &src, "-t", "sec:1", ctx.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        cat(&lab, "sec:1", "/env-only"),
        "match\nno-file\n",
        "env= alone: the variable, and no file"
    );
    assert_eq!(cat(&lab, "sec:1", "/env-and-file"), "same\n440 7 8\n");
    assert_eq!(cat(&lab, "sec:1", "/file-default"), "400 0 0 12\n");
    assert_eq!(
        cat(&lab, "sec:1", "/optional"),
        "[unset]\n",
        "an absent optional secret is neither a file nor a variable"
    );
    assert_eq!(
        cat(&lab, "sec:1", "/after"),
        "[unset]\n",
        "for that RUN only"
    );
    assert_eq!(
        cat(&lab, "sec:1", "/tmpfs"),
        "1024\nfull\n",
        "size= applies"
    );
    let ls = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "sec:1",
        "ls",
        "-a",
        "/etc/tok",
        "/t",
        "/run",
    ]);
    assert!(
        !ls.stdout.contains("tok") && !ls.stdout.contains("secrets"),
        "mount points are not in the image: {}",
        ls.stdout
    );
    // nowhere in the store: not a layer, a blob, the history or the config
    let holding = files_holding(lab.root(), b"s3cret-value");
    assert!(holding.is_empty(), "the secret is in {holding:?}");
    let history = lab.tb(&["history", "--no-trunc", "sec:1"]);
    assert!(history.stdout.contains("RUN") && !history.stdout.contains("s3cret"));
    assert!(scratch(lab.root()).is_empty(), "{:?}", scratch(lab.root()));

    // the secret from the builder's environment (env=, and id alone)
    let env_ctx = context(
        &lab,
        "secret-env",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=API_TOKEN,env=T sh -c 'echo ${#T}' > /len\n",
        )],
    );
    for arg in ["id=API_TOKEN,env=MY_TOKEN_VAR", "id=API_TOKEN"] {
        let r: Run = lab
            .cmd(&[
                "build",
                "--network",
                "none",
                "--no-cache",
                "--secret",
                arg,
                "-t",
                "sec:2",
                env_ctx.to_str().unwrap(),
            ])
            .env("MY_TOKEN_VAR", "from-env-var")
            .env("API_TOKEN", "twelve-chars")
            .output()
            .unwrap()
            .into();
        assert_eq!(r.code, 0, "{arg}: {}", r.stderr);
        assert_eq!(cat(&lab, "sec:2", "/len"), "12\n", "{arg}");
    }

    // required: missing is an error naming the secret; nothing tagged
    let req = context(
        &lab,
        "required",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=needed,required=true true\n",
        )],
    );
    let r = build(&lab, &["-t", "req:1", req.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("Dockerfile:2") && r.stderr.contains("secret \"needed\" is required"),
        "{}",
        r.stderr
    );
    assert_ne!(lab.tb(&["image", "inspect", "req:1"]).code, 0);
    // bad --secret and bad mount options: one line each
    for (args, says) in [
        (vec!["--secret", "src=/etc/hostname"], "an id is required"),
        (vec!["--secret", "id=x,env=TWINBOX_NO_SUCH_VAR"], "not set"),
        (vec!["--secret", "id=x,src=/nonexistent"], "is not a file"),
    ] {
        let mut all = args.clone();
        all.extend(["-t", "req:2", req.to_str().unwrap()]);
        let r = build(&lab, &all);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
    for (mount, says) in [
        ("type=tmpfs,target=/t,size=huge", "size"),
        (
            "type=bind,target=/b,env=X",
            "env is not an option of type=bind",
        ),
        ("type=cache,target=/c,required", "required is not an option"),
    ] {
        let bad = context(
            &lab,
            "bad-opt",
            &[(
                "Dockerfile",
                &format!("FROM busybox\nRUN --mount={mount} true\n"),
            )],
        );
        let r = build(&lab, &["-t", "req:3", bad.to_str().unwrap()]);
        assert_ne!(r.code, 0, "{mount}");
        assert!(r.stderr.contains(says), "{mount}: {}", r.stderr);
    }
}

/// A stage whose bind source is a chain of more symlinks than a lookup follows,
/// the last one naming a host directory: the source must not come out as a
/// link that the bind mount then follows on the host (the RUN wrote into the
/// host directory through it). COPY --from the same path is refused as well.
#[test]
fn bind_source_past_forty_links_never_reaches_the_host() {
    let Some(lab) = lab() else { return };
    let outside = lab.root().join("host-outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "host\n").unwrap();
    let ctx = context(
        &lab,
        "links",
        &[(
            "Dockerfile",
            "FROM busybox AS evil\n\
             COPY d /d\n\
             FROM busybox\n\
             RUN --mount=type=bind,from=evil,source=/d/l0,target=/mnt,rw touch /mnt/escaped\n",
        )],
    );
    let d = ctx.join("d");
    fs::create_dir_all(&d).unwrap();
    for i in 0..40 {
        std::os::unix::fs::symlink(format!("l{}", i + 1), d.join(format!("l{i}"))).unwrap();
    }
    std::os::unix::fs::symlink(&outside, d.join("l40")).unwrap();
    let r = build(&lab, &["-t", "links:1", ctx.to_str().unwrap()]);
    assert!(
        !outside.join("escaped").exists(),
        "the RUN wrote into the host directory: {}",
        r.stderr
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("more than 40 symbolic links"),
        "{}",
        r.stderr
    );

    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS evil\nCOPY d /d\nFROM busybox\nCOPY --from=evil /d/l0/secret /stolen\n",
    )
    .unwrap();
    let r = build(&lab, &["-t", "links:2", ctx.to_str().unwrap()]);
    assert_ne!(r.code, 0, "COPY --from took the host's file: {}", r.stdout);
    assert!(
        r.stderr.contains("more than 40 symbolic links"),
        "{}",
        r.stderr
    );
    assert!(scratch(lab.root()).is_empty(), "{:?}", scratch(lab.root()));
}
