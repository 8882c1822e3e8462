//! `--format` Go templates and `ps` filters, checked on their own and against
//! Docker's own CLI and dockerd given the same containers.

mod common;

use common::dockerd::Dockerd;
use common::*;

/// Three containers, the same in both tools: running with labels, exited with 3,
/// created with a quoted argument; plus a named volume.
fn populate(run: &dyn Fn(&[&str]) -> Run) {
    for args in [
        &[
            "run",
            "-d",
            "--name",
            "fmt-a",
            "--network",
            "none",
            "-l",
            "app=web",
            "-l",
            "tier=1",
            "busybox",
            "sleep",
            "100",
        ][..],
        &[
            "run",
            "--name",
            "fmt-b",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ],
        &[
            "create",
            "--name",
            "fmt-c",
            "--network",
            "none",
            "busybox",
            "echo",
            "hello world",
        ],
        &["volume", "create", "fmt-vol"],
    ] {
        let r = run(args);
        let want = if args[1] == "--name" && args[2] == "fmt-b" {
            3
        } else {
            0
        };
        assert_eq!(r.code, want, "{args:?}: {}", r.stderr);
    }
}

/// Commands whose output holds no ids or times, so both tools must print the same.
const SAME_OUTPUT: &[&[&str]] = &[
    &["ps", "-a", "--format", "{{.Names}}"],
    &["ps", "-a", "--format", "{{.Image}}|{{.Command}}|{{.State}}|{{.Networks}}|{{.Ports}}|{{.Mounts}}|{{.LocalVolumes}}"],
    &["ps", "-a", "--format", "table {{.Names}}\\t{{.State}}\\t{{.Label \"tier\"}}"],
    &["ps", "-a", "--format", "table {{.Names}}\t{{.Image}}"],
    &["ps", "-a", "--format", "{{json .Names}} {{upper .Names}} {{len .Names}} {{.Label \"app\"}}"],
    &["ps", "-a", "--format", "{{if eq .State \"exited\"}}{{truncate .Status 10}}{{else}}-{{end}}"],
    &["ps", "--format", "{{.Names}} {{.Status | printf \"%.2s\"}}"],
    &["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"],
    &["ps", "--filter", "status=created", "--filter", "status=exited", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "label=app", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "label=app=web", "--filter", "name=fmt", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "label=app=nope", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "name=^fmt-[ab]$", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "ancestor=busybox", "--filter", "status=running", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "before=fmt-c", "--format", "{{.Names}}"],
    &["ps", "-a", "--filter", "since=fmt-a", "--format", "{{.Names}}"],
    &["ps", "-n", "2", "--format", "{{.Names}}"],
    &["ps", "-l", "--format", "{{.Names}}"],
    &["inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.Config.Image}}", "fmt-a", "fmt-b", "fmt-c"],
    &["inspect", "--format", "{{json .Config.Cmd}} {{.Path}} {{json .Args}} {{.HostConfig.NetworkMode}}", "fmt-a", "fmt-c"],
    &["inspect", "-f", "{{.Config.Labels.app}} {{index .Config.Labels \"tier\"}} {{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "fmt-a"],
    &["inspect", "-f", "{{.State.Restarting}} {{.State.Paused}} {{.State.OOMKilled}} {{.HostConfig.RestartPolicy.Name}}", "fmt-b"],
    &["image", "inspect", "-f", "{{json .Config.Cmd}} {{.Id}} {{.Os}} {{json .RepoTags}} {{len .RootFS.Layers}}", "busybox"],
    &["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
    &["images", "--format", "table {{.Repository}}\\t{{.Tag}}"],
    &["volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"],
    &["volume", "ls"],
    &["volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "fmt-vol"],
];

/// Commands both tools refuse (non-zero exit, nothing on stdout).
const REFUSED: &[&[&str]] = &[
    &["ps", "--format", "{{.Nope}}"],
    &["ps", "--format", "{{.Names"],
    &["ps", "--format", "{{nope .Names}}"],
    &["ps", "--format", "{{.Names | truncate 2}}"],
    &["ps", "--filter", "bogus=1"],
    &["ps", "--filter", "status=sleeping"],
    &["inspect", "-f", "{{.State.Nope}}", "fmt-a"],
];

#[test]
fn ps_filters_and_formats() {
    let Some(lab) = lab() else { return };
    populate(&|a| lab.tb(a));
    let out = |args: &[&str]| {
        let r = lab.tb(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r.stdout
    };
    // newest first; the default hides stopped containers
    assert_eq!(
        out(&["ps", "-a", "--format", "{{.Names}}"]),
        "fmt-c\nfmt-b\nfmt-a\n"
    );
    assert_eq!(out(&["ps", "--format", "{{.Names}}"]), "fmt-a\n");
    for bad in ["{{.Names", "{{.Nope}}"] {
        let r = lab.tb(&["ps", "--format", bad]);
        assert_eq!(r.code, 1, "{bad}: a bad template exits 1 as in Docker");
        assert!(r.stderr.contains("template"), "{}", r.stderr);
    }
    // network ls --format: Docker's fields, table and json
    assert_eq!(
        out(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}"
        ]),
        "bridge bridge local\nhost host local\nnone null local\n"
    );
    let table = out(&[
        "network",
        "ls",
        "--format",
        "table {{.Name}}\\t{{.Internal}}",
    ]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "INTERNAL"]
    );
    let json = out(&["network", "ls", "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["Name"].as_str(), first["IPv6"].as_str()),
        (Some("bridge"), Some("false"))
    );
    assert_eq!(lab.tb(&["network", "ls", "--format", "{{.Name"]).code, 1);
    assert_eq!(
        out(&["ps", "-a", "--format", "{{.Command}}", "-f", "name=fmt-c"]),
        "\"echo 'hello world'\"\n"
    );
    assert_eq!(
        out(&[
            "ps",
            "-a",
            "--format",
            "table {{.Names}}\\t{{.State}}",
            "-f",
            "status=exited"
        ]),
        "NAMES     STATE\nfmt-b     exited\n"
    );
    assert_eq!(
        out(&["ps", "-f", "label=tier=1", "--format", "{{.Label \"app\"}}"]),
        "web\n"
    );
    let ids = out(&["ps", "-a", "-q"]);
    assert_eq!(ids.lines().count(), 3);
    assert!(ids.lines().all(|l| l.len() == 12), "{ids}");
    let full = out(&["ps", "-a", "-q", "--no-trunc", "-f", "name=fmt-a"]);
    assert_eq!(full.trim().len(), 64);
    assert_eq!(
        out(&[
            "ps",
            "-a",
            "-f",
            &format!("id={}", &full[..8]),
            "--format",
            "{{.Names}}"
        ]),
        "fmt-a\n"
    );
    // default table and -s
    let table = out(&["ps", "-a", "-s"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("CONTAINER ID   IMAGE     COMMAND"),
        "{table}"
    );
    assert!(header.ends_with("NAMES     SIZE"), "{table}");
    assert!(table.contains("(virtual "), "{table}");
    // json: one object a line, every field a string
    for line in out(&["ps", "-a", "--format", "json"]).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for k in [
            "ID",
            "Names",
            "Image",
            "Command",
            "State",
            "Status",
            "Labels",
            "CreatedAt",
        ] {
            assert!(v[k].is_string(), "{k} in {line}");
        }
    }
    // inspect: containers, images and volumes by name; a missing one fails the command
    assert_eq!(
        out(&["inspect", "-f", "{{.State.Status}}", "fmt-a", "fmt-b"]),
        "running\nexited\n"
    );
    assert!(out(&["inspect", "-f", "{{.Id}}", "busybox"]).starts_with("sha256:"));
    assert_eq!(out(&["inspect", "-f", "{{.Name}}", "fmt-vol"]), "fmt-vol\n");
    let r = lab.tb(&["inspect", "-f", "{{.Name}}", "fmt-a", "no-such-thing"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "/fmt-a\n");
    assert!(
        r.stderr.contains("no such object: no-such-thing"),
        "{}",
        r.stderr
    );
    for args in REFUSED {
        let r = lab.tb(args);
        assert_ne!(r.code, 0, "{args:?} was accepted: {}", r.stdout);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panic"), "{}", r.stderr);
    }
    assert_eq!(lab.tb(&["rm", "-f", "fmt-a"]).code, 0);
}

#[test]
fn formats_print_what_docker_prints() {
    let Some(lab) = lab() else { return };
    let Some(dockerd) = Dockerd::with_busybox(&lab) else {
        return;
    };
    populate(&|a| dockerd.docker(a));
    populate(&|a| lab.tb(a));
    for args in SAME_OUTPUT {
        let theirs = dockerd.docker(args);
        let ours = lab.tb(args);
        assert_eq!(theirs.code, 0, "docker {args:?}: {}", theirs.stderr);
        assert_eq!(ours.code, 0, "twinbox {args:?}: {}", ours.stderr);
        assert_eq!(ours.stdout, theirs.stdout, "{args:?}");
    }
    for args in REFUSED {
        let theirs = dockerd.docker(args);
        let ours = lab.tb(args);
        assert_ne!(theirs.code, 0, "docker {args:?}");
        assert_ne!(ours.code, 0, "twinbox {args:?}");
        // a bad template (the CLI's own error) and a filter the daemon
        // refuses both exit 1 in Docker
        assert_eq!(ours.code, theirs.code, "{args:?}: {}", ours.stderr);
        // (docker inspect writes an empty line before failing)
        assert_eq!(ours.stdout.trim(), theirs.stdout.trim(), "{args:?}");
    }
    for name in ["fmt-a", "fmt-b", "fmt-c"] {
        dockerd.docker(&["rm", "-f", name]);
    }
    assert_eq!(lab.tb(&["rm", "-f", "fmt-a"]).code, 0);
}

/// `inspect`'s Config is the image's config with the run options over it (Env
/// merged, the image's Cmd, ExposedPorts with the published ones), and the
/// published ports read as Docker's maps: `{{.Config.Cmd}}`,
/// `{{index .HostConfig.PortBindings "80/tcp"}}` in tutorials print the same.
#[test]
fn inspect_config_and_port_maps_are_dockers() {
    let Some(lab) = lab() else { return };
    let Some(dockerd) = Dockerd::with_busybox(&lab) else {
        return;
    };
    let (tcp, udp) = (common::net::free_port(), common::net::free_port());
    let tcp_map = format!("127.0.0.1:{tcp}:80");
    let udp_map = format!("{udp}:53/udp");
    let make: &[&[&str]] = &[
        &[
            "create",
            "--name",
            "cfg-a",
            "-e",
            "A=1",
            "-e",
            "PATH=/bin",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "-p",
            &tcp_map,
            "-p",
            &udp_map,
            "busybox",
        ],
        &[
            "create",
            "--name",
            "cfg-b",
            "--entrypoint",
            "echo",
            "busybox",
        ],
    ];
    let show = ["inspect", "-f", "{{json .Config.Env}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}} {{.Config.User}} {{json .Config.ExposedPorts}} {{json .HostConfig.PortBindings}} {{json .NetworkSettings.Ports}}", "cfg-a", "cfg-b"];
    for args in make {
        assert_eq!(dockerd.docker(args).code, 0, "docker {args:?}");
        let r = lab.tb(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let theirs = dockerd.docker(&show);
    let ours = lab.tb(&show);
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    assert!(
        ours.stdout.contains(&format!("\"HostPort\":\"{tcp}\"")),
        "{}",
        ours.stdout
    );
    assert_eq!(ours.stdout, theirs.stdout);
    for name in ["cfg-a", "cfg-b"] {
        dockerd.docker(&["rm", "-f", name]);
    }

    // running (twinbox's bridge; this dockerd has none): NetworkSettings.Ports
    // maps each port to its bindings, and `port NAME PORT[/PROTO]` prints them
    assert_eq!(lab.tb(&["rm", "-f", "cfg-a"]).code, 0);
    let r = lab.tb(&[
        "run", "-d", "--name", "cfg-a", "-p", &tcp_map, "-p", &udp_map, "busybox", "sleep", "60",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "cfg-a"]);
    assert_eq!(
        r.stdout.trim(),
        format!("{{\"53/udp\":[{{\"HostIp\":\"0.0.0.0\",\"HostPort\":\"{udp}\"}}],\"80/tcp\":[{{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"{tcp}\"}}]}}"),
        "{}",
        r.stderr
    );
    for (args, want) in [
        (&["port", "cfg-a", "80"][..], format!("127.0.0.1:{tcp}\n")),
        (&["port", "cfg-a", "80/tcp"], format!("127.0.0.1:{tcp}\n")),
        (&["port", "cfg-a", "53/udp"], format!("0.0.0.0:{udp}\n")),
    ] {
        let r = lab.tb(args);
        assert_eq!((r.code, r.stdout), (0, want), "{args:?}: {}", r.stderr);
    }
    let r = lab.tb(&["port", "cfg-a", "53"]);
    assert_ne!(r.code, 0);
    assert_eq!(
        r.stderr.trim(),
        "twinbox: no public port '53/tcp' published for cfg-a"
    );
    assert_eq!(lab.tb(&["rm", "-f", "cfg-a"]).code, 0);

    // network inspect takes a template too (a network's config only: no device)
    let r = lab.tb(&["network", "create", "--subnet", "10.213.7.0/24", "fmt-net"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
        "fmt-net",
    ]);
    assert_eq!(r.stdout, "fmt-net bridge 10.213.7.0/24\n", "{}", r.stderr);
    assert_eq!(lab.tb(&["network", "rm", "fmt-net"]).code, 0);
}

/// `--add-host`, `--dns`, `--dns-search`, `--dns-option` and `--expose` as
/// Docker's dockerd keeps and applies them: the same inspect fields (and the
/// empty forms without them), and the same resolv.conf and hosts lines inside
/// (`--network none`: this dockerd has no bridge); `network ls` and `network
/// inspect` print host and none as it does.
#[test]
fn network_flags_inspect_and_files_are_dockers() {
    let Some(lab) = lab() else { return };
    let Some(dockerd) = Dockerd::with_busybox(&lab) else {
        return;
    };
    let flags = [
        "--network",
        "none",
        "--add-host",
        "foo:1.2.3.4",
        "--add-host",
        "six:2001:db8::1",
        "--dns",
        "9.9.9.9",
        "--dns",
        "1.0.0.1",
        "--dns-search",
        "example.com",
        "--dns-option",
        "ndots:3",
        "--dns-opt",
        "rotate",
        "--expose",
        "7000-7001/udp",
        "--expose",
        "80",
    ];
    let mut with: Vec<&str> = vec!["create", "--name", "nf-a"];
    with.extend(flags);
    with.push("busybox");
    let plain: &[&str] = &["create", "--name", "nf-b", "--network", "none", "busybox"];
    for args in [&with[..], plain] {
        assert_eq!(dockerd.docker(args).code, 0, "docker {args:?}");
        let r = lab.tb(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    // Docker leaves ExposedPorts out when empty: a template naming it fails
    let host_config = "{{json .HostConfig.ExtraHosts}} {{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}}";
    let with_ports = format!("{host_config} {{{{json .Config.ExposedPorts}}}}");
    for (template, name) in [(&with_ports[..], "nf-a"), (host_config, "nf-b")] {
        let show = ["inspect", "-f", template, name];
        let theirs = dockerd.docker(&show);
        let ours = lab.tb(&show);
        assert_eq!(ours.code, 0, "{}", ours.stderr);
        assert_eq!(ours.stdout, theirs.stdout, "{name}: {}", theirs.stderr);
    }
    // inside: the same resolv.conf, and the same added lines in /etc/hosts
    let mut run: Vec<&str> = vec!["run", "--rm"];
    run.extend(flags);
    run.extend([
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; echo ---; cat /etc/hosts",
    ]);
    let theirs = dockerd.docker(&run);
    let ours = lab.tb(&run);
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    let (their_resolv, their_hosts) = theirs.stdout.split_once("---\n").unwrap();
    let (our_resolv, our_hosts) = ours.stdout.split_once("---\n").unwrap();
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(lines(our_resolv), lines(their_resolv));
    for line in ["1.2.3.4\tfoo", "2001:db8::1\tsix"] {
        assert!(their_hosts.contains(line), "docker: {their_hosts}");
        assert!(our_hosts.contains(line), "twinbox: {our_hosts}");
    }
    for name in ["nf-a", "nf-b"] {
        dockerd.docker(&["rm", "-f", name]);
        lab.tb(&["rm", "-f", name]);
    }
    // network ls and inspect of the modes (this dockerd has no bridge network)
    let first_line = |r: Run| r.stdout.lines().next().unwrap_or_default().to_string();
    assert_eq!(
        first_line(lab.tb(&["network", "ls"])),
        first_line(dockerd.docker(&["network", "ls"]))
    );
    for args in [
        &["network", "ls", "-f", "driver=null", "-f", "driver=host", "--format", "{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.IPv6}}"][..],
        &["network", "inspect", "none", "host", "-f", "{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Attachable}} {{.IPAM.Driver}} {{json .IPAM.Config}} {{json .Containers}}"],
    ] {
        let (ours, theirs) = (lab.tb(args), dockerd.docker(args));
        assert_eq!(ours.code, 0, "{args:?}: {}", ours.stderr);
        assert_eq!(ours.stdout, theirs.stdout, "{args:?}: {}", theirs.stderr);
    }
    let id = |r: Run| r.stdout.trim().to_string();
    let none_id = id(lab.tb(&["network", "ls", "-q", "-f", "driver=null"]));
    let their_none = id(dockerd.docker(&["network", "ls", "-q", "-f", "driver=null"]));
    assert_eq!((none_id.len(), their_none.len()), (12, 12));
}
