//! `system prune`: Docker's question and refusal, what goes and what stays.

mod common;

use common::*;

#[test]
fn system_prune_asks_refuses_and_removes() {
    let Some(lab) = lab() else { return };
    assert_eq!(
        lab.tb(&[
            "run",
            "--name",
            "sp-done",
            "--network",
            "none",
            "-v",
            "/anon",
            "busybox",
            "true"
        ])
        .code,
        0
    );
    assert_eq!(
        lab.tb(&[
            "run",
            "-d",
            "--name",
            "sp-up",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100"
        ])
        .code,
        0
    );
    assert_eq!(lab.tb(&["volume", "create", "sp-named"]).code, 0);
    assert_eq!(lab.tb(&["tag", "busybox", "sp-copy:1"]).code, 0);

    // no terminal and no -f: a clear refusal, nothing removed
    let r = lab.tb(&["system", "prune"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout
            .starts_with("WARNING! This will remove:\n  - all stopped containers\n"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("give -f"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    // "n" keeps everything
    let r = lab.piped(&["system", "prune"], b"n\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("Deleted"), "{}", r.stdout);
    assert_eq!(lab.tb(&["ps", "-aq"]).stdout.lines().count(), 2);

    // "y": the stopped container goes, the running one, images and volumes stay
    let r = lab.piped(&["system", "prune"], b"y\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Deleted Containers:\n"), "{}", r.stdout);
    assert!(r.stdout.contains("Total reclaimed space: "), "{}", r.stdout);
    assert_eq!(
        lab.tb(&["ps", "-a", "--format", "{{.Names}}"]).stdout,
        "sp-up\n"
    );
    assert_eq!(
        lab.tb(&["volume", "ls", "-q"]).stdout.lines().count(),
        2,
        "volumes stay without --volumes"
    );
    assert_eq!(lab.tb(&["images", "-q"]).stdout.lines().count(), 1);

    // --volumes: the unused anonymous volume goes, the named one stays
    let r = lab.tb(&["system", "prune", "-f", "--volumes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Deleted Volumes:\n"), "{}", r.stdout);
    assert_eq!(lab.tb(&["volume", "ls", "-q"]).stdout, "sp-named\n");

    // -a: images without a container go; the running container keeps busybox
    assert_eq!(lab.tb(&["rm", "-f", "sp-up"]).code, 0);
    assert_eq!(
        lab.tb(&[
            "run",
            "-d",
            "--name",
            "sp-up2",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100"
        ])
        .code,
        0
    );
    let r = lab.tb(&["system", "prune", "-a", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // busybox and sp-copy:1 are one image, used by sp-up2: nothing to delete
    assert!(!r.stdout.contains("deleted: sha256:"), "{}", r.stdout);
    assert_eq!(lab.tb(&["rm", "-f", "sp-up2"]).code, 0);
    let r = lab.tb(&["system", "prune", "-a", "-f"]);
    assert!(
        r.stdout.contains("Deleted Images:\nuntagged: "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("deleted: sha256:"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("Total reclaimed space: 0B"),
        "{}",
        r.stdout
    );
    assert_eq!(lab.tb(&["images", "-q"]).stdout, "");
}

/// The question is Docker's, word for word (its CLI asks before it talks to a daemon).
#[test]
fn system_prune_warning_is_dockers() {
    let Some(lab) = lab() else { return };
    let docker = ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(docker) = docker else {
        eprintln!("skipping: no docker CLI");
        return;
    };
    for flags in [&[][..], &["-a"], &["--volumes"], &["-a", "--volumes"]] {
        let mut args = vec!["system", "prune"];
        args.extend_from_slice(flags);
        let ours = lab.piped(&args, b"n\n");
        let mut cmd = std::process::Command::new(docker);
        cmd.args(&args)
            .env("DOCKER_HOST", "unix:///nonexistent/twinbox-test.sock");
        let theirs: Run = process::output_with_input(&mut cmd, b"n\n").into();
        // Debian's docker 20.10 words it differently: compare with the newer CLI only
        if !theirs.stdout.contains("unused build cache")
            && !theirs.stdout.contains("all build cache")
        {
            eprintln!("skipping: {docker} is an older CLI");
            return;
        }
        assert_eq!(ours.stdout, theirs.stdout, "{flags:?}");
        assert_eq!(ours.code, 0);
    }
}

/// `image prune` removes unnamed (dangling) images no container uses, `-a`
/// every image no container uses, as Docker's: `untagged:`/`deleted:` lines
/// under `Deleted Images:`; an image a container uses stays.
#[test]
fn image_prune_removes_dangling_then_unused_images() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--name",
        "ip-src",
        "--network",
        "none",
        "busybox",
        "touch",
        "/x",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dangling = lab.tb(&["commit", "ip-src"]).stdout.trim().to_string();
    assert!(dangling.starts_with("sha256:"), "{dangling}");
    assert_eq!(lab.tb(&["commit", "ip-src", "ip-named:1"]).code, 0);
    let images = || {
        let out = lab
            .tb(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .stdout;
        let mut v: Vec<String> = out.lines().map(String::from).collect();
        v.sort();
        v.join(" ")
    };
    assert_eq!(images(), "<none>:<none> busybox:latest ip-named:1");

    let r = lab.tb(&["image", "prune", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("Deleted Images:\ndeleted: {dangling}\n")),
        "{}",
        r.stdout
    );
    assert_eq!(images(), "busybox:latest ip-named:1");

    // busybox is used by ip-src (stopped): it stays
    let r = lab.tb(&["image", "prune", "-a", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("untagged: ip-named:1\ndeleted: sha256:"),
        "{}",
        r.stdout
    );
    assert_eq!(images(), "busybox:latest");
}
