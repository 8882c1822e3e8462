//! `diff` and `commit` on real containers: the changes read from the overlay upper
//! dir, and a committed image that runs with them, its config and history as
//! `docker commit` writes them. Needs root.

mod common;

use common::{lab, Lab, Run};

fn ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
}

fn run_out(lab: &Lab, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend_from_slice(args);
    let r = lab.tb(&all);
    ok(&r, &format!("run {args:?}"));
    r.stdout.trim().to_string()
}

#[test]
fn diff_lists_added_changed_and_deleted_paths() {
    let Some(lab) = lab() else { return };
    ok(
        &lab.tb(&[
            "run",
            "--name",
            "changer",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo hi > /new.txt && rm /bin/ls && mkdir -p /etc/course",
        ]),
        "run",
    );
    let d = lab.tb(&["diff", "changer"]);
    ok(&d, "diff");
    let lines: Vec<&str> = d.stdout.lines().collect();
    for want in [
        "A /new.txt",
        "D /bin/ls",
        "C /etc",
        "A /etc/course",
        "C /bin",
    ] {
        assert!(
            lines.contains(&want),
            "{want:?} missing from diff:\n{}",
            d.stdout
        );
    }
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l[2..].to_string());
    assert_eq!(lines, sorted, "sorted by path");
    // the runtime's own mount points (/etc/hosts, /etc/resolv.conf,
    // /etc/hostname) are not changes, as in Docker
    ok(
        &lab.tb(&["run", "--name", "quiet", "busybox", "true"]),
        "run",
    );
    let d = lab.tb(&["diff", "quiet"]);
    ok(&d, "diff");
    assert_eq!(d.stdout, "", "a container that changed nothing");
    let missing = lab.tb(&["diff", "no-such-container"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no such container"),
        "{}",
        missing.stderr
    );
}

#[test]
fn committed_image_carries_the_changes_config_and_history() {
    let Some(lab) = lab() else { return };
    ok(
        &lab.tb(&[
            "run",
            "--name",
            "src",
            "--network",
            "none",
            "-e",
            "FROM_RUN=yes",
            "busybox",
            "sh",
            "-c",
            "echo hi > /new.txt && rm /bin/ls",
        ]),
        "run",
    );
    let c = lab.tb(&[
        "commit",
        "-m",
        "course step 1",
        "-a",
        "Ada <ada@example.org>",
        "-c",
        "CMD [\"cat\", \"/new.txt\"]",
        "-c",
        "ENV COURSE=vms",
        "-c",
        "EXPOSE 8080",
        "src",
        "course/committed:v1",
    ]);
    ok(&c, "commit");
    let id = c.stdout.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "an image id: {id}"
    );

    assert_eq!(
        run_out(&lab, &["course/committed:v1"]),
        "hi",
        "CMD from --change, file from the layer"
    );
    let gone = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "course/committed:v1",
        "ls",
        "/bin/ls",
    ]);
    assert_ne!(
        gone.code, 0,
        "a deleted file stays deleted: {}",
        gone.stdout
    );
    assert_eq!(
        run_out(
            &lab,
            &["course/committed:v1", "sh", "-c", "echo $COURSE $FROM_RUN"]
        ),
        "vms yes",
        "ENV from --change and -e from the run"
    );

    let inspect = lab.tb(&["image", "inspect", "course/committed:v1"]);
    ok(&inspect, "image inspect");
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let img = &v[0];
    assert_eq!(img["Author"], "Ada <ada@example.org>", "{img}");
    assert!(
        img["Config"]["ExposedPorts"].get("8080/tcp").is_some(),
        "{img}"
    );
    let base_layers = lab.tb(&["image", "inspect", "busybox"]);
    let base: serde_json::Value = serde_json::from_str(&base_layers.stdout).unwrap();
    let n = |v: &serde_json::Value| v["RootFS"]["Layers"].as_array().map_or(0, Vec::len);
    assert_eq!(n(img), n(&base[0]) + 1, "one layer on top of the image's");

    let history = lab.tb(&["history", "--no-trunc", "course/committed:v1"]);
    ok(&history, "history");
    assert!(
        history.stdout.contains("course step 1"),
        "{}",
        history.stdout
    );
    ok(&lab.tb(&["system", "check"]), "system check");
}

#[test]
fn commit_of_a_running_container_leaves_it_running() {
    let Some(lab) = lab() else { return };
    ok(
        &lab.tb(&[
            "run",
            "-d",
            "--name",
            "live",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo live > /state && sleep 30",
        ]),
        "run -d",
    );
    // the file appears once the shell ran (a busy host may take a while)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lab.tb(&["diff", "live"]).stdout.contains("A /state") {
        assert!(
            std::time::Instant::now() < deadline,
            "the container's shell did not write /state within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ok(
        &lab.tb(&["commit", "live", "course/live:v1"]),
        "commit running",
    );
    let ps = lab.tb(&["ps"]);
    let line = ps.stdout.lines().find(|l| l.contains("live")).unwrap_or("");
    assert!(
        line.contains("Up") && !line.contains("Paused"),
        "still running, thawed: {line}"
    );
    assert_eq!(run_out(&lab, &["course/live:v1", "cat", "/state"]), "live");
    ok(&lab.tb(&["rm", "-f", "live"]), "rm");
}

#[test]
fn bad_change_is_one_line_and_makes_no_image() {
    let Some(lab) = lab() else { return };
    ok(
        &lab.tb(&[
            "run",
            "--name",
            "plain",
            "--network",
            "none",
            "busybox",
            "true",
        ]),
        "run",
    );
    let before = lab.tb(&["images", "-q"]).stdout;
    let r = lab.tb(&["commit", "-c", "RUN rm -rf /", "plain", "course/bad:v1"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("--change") && r.stderr.contains("CMD"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.tb(&["images", "-q"]).stdout, before, "no image made");
    let imp = lab.tb(&["import", "-c", "COPY a b", "/dev/null", "course/bad:v2"]);
    assert_ne!(imp.code, 0, "import refuses it too");
    assert!(imp.stderr.contains("--change"), "{}", imp.stderr);
}
