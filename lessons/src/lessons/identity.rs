//! identity: the kernel has no "container" object. It knows processes, the
//! namespaces they are in and the cgroups they are charged to; a container
//! engine's id is its own bookkeeping on top. A "container" made by hand with
//! `unshare` and `chroot` is the same thing to the kernel, and invisible to
//! the engine.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::Container;
use twinbox_engine::util::id::random_hex;

use super::{three_acts, Lesson};
use crate::context::{sh, Context, BUSYBOX};
use crate::report::{Cell, LessonReport, Measured, Side, Table, Unit};
use crate::LessonError;

pub struct Identity;

/// The namespaces a container engine sets up, as `/proc/PID/ns/` names them.
const NAMESPACES: [&str; 6] = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];

impl Lesson for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn title(&self) -> &'static str {
        "the kernel knows namespaces and cgroups, not containers"
    }

    fn summary(&self) -> &'static str {
        "/proc/PID/ns and /proc/PID/cgroup of a container, and a hand-made one twinbox cannot list"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Ask the Linux kernel for a list of containers and it has none to give: there is \
             no container object, no container system call, no container id in the kernel. \
             What the kernel has are processes, and for each process the namespaces it lives \
             in (its view of mounts, process ids, host name, IPC, network, cgroups) and the \
             cgroups its resource use is charged to. Each namespace is a kernel object with an \
             inode number, visible as a link under /proc/PID/ns/.",
            "A container engine such as twinbox or Docker makes a new set of namespaces and a \
             cgroup, starts a process in them, and writes down in its own files which id it \
             gave that group. `twinbox ps` reads those files, not the kernel. So a \"container\" \
             made by hand with `unshare` (new namespaces) and `chroot` (another root \
             directory) is, to the kernel, the same kind of thing; twinbox simply has no \
             record of it.",
            "This lesson starts one container with twinbox and one by hand, and reads both \
             from the kernel's side.",
        ]
    }

    fn uses_vm(&self) -> bool {
        false
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the kernel says about one process.
#[derive(Debug, Clone, Serialize)]
struct KernelView {
    pid: i32,
    /// Namespace name → its kernel object, e.g. `pid:[4026532301]`.
    namespaces: BTreeMap<String, String>,
    /// The namespaces that differ from the host's.
    own_namespaces: Vec<String>,
    /// `/proc/PID/cgroup`, one line per hierarchy.
    cgroups: Vec<String>,
}

struct Measurements {
    host: BTreeMap<String, String>,
    tag: String,
    container_id: String,
    container: Measured<KernelView>,
    handmade: Measured<KernelView>,
    handmade_cgroup: Measured<String>,
    /// Host pids of processes that are in a PID namespace other than the host's.
    kernel_list: Vec<i32>,
    /// Init pids of the containers `twinbox ps` lists.
    twinbox_list: Vec<(String, Option<i32>)>,
}

/// Act one: a twinbox container and a hand-made one, both asleep, read from
/// /proc while they run; then both are stopped.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let tag = format!("identity-{}", random_hex(4));
    // this program's own namespaces are the host's (PID 1's may be out of
    // reach when the lesson itself runs inside a sandbox)
    let host = namespaces_of(std::process::id() as i32);
    ctx.host_step(
        report,
        "ls -l /proc/self/ns   # the host's namespaces, as a host shell sees them",
        &describe_ns(&host),
    );

    ctx.say.heading("a container made by twinbox");
    let opts = crate::context::cmd_opts(sh("echo ready; exec sleep 120"));
    let mut d = ctx.detached(report, BUSYBOX, &opts)?;
    let ready = d.wait_for_output("ready", Duration::from_secs(30), &mut std::io::stdout());
    let container_id = d.container.id.clone();
    let container = match d.state()?.pid.filter(|_| ready) {
        Some(pid) => Measured::Value(kernel_view(pid, &host)),
        None => Measured::failed("the container did not start"),
    };
    if let Some(v) = container.value() {
        ctx.host_step(
            report,
            &format!(
                "ls -l /proc/{0}/ns; cat /proc/{0}/cgroup   # {0}: the container's PID 1, seen from the host",
                v.pid
            ),
            &format!("{}{}\n", describe_ns(&v.namespaces), v.cgroups.join("\n")),
        );
    }

    ctx.say.heading("a container made by hand");
    let layers = image.lower_dirs(&ctx.store);
    let mut handmade_cgroup: Measured<String> = Measured::failed("no hand-made container");
    let (handmade, child) = match layers.as_slice() {
        [root] => {
            let script = format!("hostname {tag}; echo ready; exec sleep 120");
            let command = format!(
                "unshare --mount --uts --ipc --net --pid --fork chroot {} /bin/sh -c '{script}' &",
                root.display()
            );
            ctx.show(crate::report::Side::Host, &command);
            match start_handmade(root, &script) {
                Ok((child, pid)) => {
                    ctx.say.output("ready\n");
                    report.steps.push(crate::report::Step {
                        side: crate::report::Side::Host,
                        command,
                        output: "ready\n".into(),
                        exit_code: None,
                        error: None,
                        duration_ms: None,
                    });
                    handmade_cgroup = Measured::from_result(own_cgroup(pid, &tag));
                    if let Some(path) = handmade_cgroup.value() {
                        ctx.host_step(
                            report,
                            &format!("mkdir {path}; echo {pid} > {path}/cgroup.procs   # a cgroup by hand too"),
                            "",
                        );
                    }
                    let v = kernel_view(pid, &host);
                    ctx.host_step(
                        report,
                        &format!("ls -l /proc/{pid}/ns; cat /proc/{pid}/cgroup   # the hand-made one"),
                        &format!("{}{}\n", describe_ns(&v.namespaces), v.cgroups.join("\n")),
                    );
                    (Measured::Value(v), Some(child))
                }
                Err(why) => {
                    ctx.say.failure(&format!("failed: {why}"));
                    (Measured::Failed(why), None)
                }
            }
        }
        _ => (
            Measured::failed(format!(
                "the {BUSYBOX} image has {} layers; the hand-made container needs a one-layer root to chroot into",
                layers.len()
            )),
            None,
        ),
    };

    // the kernel's list and twinbox's list, taken at the same moment
    let kernel_list = other_pid_namespaces(&host);
    let twinbox_list: Vec<(String, Option<i32>)> = Container::list(&ctx.store)?
        .into_iter()
        .map(|c| {
            let pid = c.state().ok().and_then(|s| s.pid);
            (c.id, pid)
        })
        .collect();
    ctx.host_step(
        report,
        "for p in /proc/[0-9]*; do [ \"$(readlink $p/ns/pid)\" != \"$(readlink /proc/self/ns/pid)\" ] && echo ${p#/proc/}; done   # every process in a PID namespace other than the host's",
        &kernel_list
            .iter()
            .map(|p| format!("{p}\n"))
            .collect::<String>(),
    );
    ctx.show(crate::report::Side::Host, "twinbox ps");
    let ps: String = twinbox_list
        .iter()
        .map(|(id, pid)| {
            format!(
                "{}  pid {}\n",
                &id[..id.len().min(12)],
                pid.map_or("-".into(), |p| p.to_string())
            )
        })
        .collect();
    ctx.say.output(&ps);
    report.steps.push(crate::report::Step {
        side: crate::report::Side::Host,
        command: "twinbox ps".into(),
        output: ps,
        exit_code: Some(0),
        error: None,
        duration_ms: None,
    });

    if let Some(mut child) = child {
        stop_handmade(&mut child);
    }
    if let Some(path) = handmade_cgroup.value() {
        remove_cgroup(path);
    }
    d.stop()?;
    d.remove()?;
    for (what, m) in [
        ("the twinbox container", &container),
        ("the hand-made container", &handmade),
    ] {
        report.check(what, m);
    }
    Ok(Measurements {
        host,
        tag,
        container_id,
        container,
        handmade,
        handmade_cgroup,
        kernel_list,
        twinbox_list,
    })
}

/// Act two: the namespaces of both, side by side with the host's.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new(
        "namespaces, as the kernel names them (/proc/PID/ns/*)",
        &["namespace", "host", "twinbox container", "hand-made"],
    );
    let ns = |v: &Measured<KernelView>, n: &str| -> Cell {
        match v {
            Measured::Value(k) => {
                let id = k.namespaces.get(n).cloned().unwrap_or_else(|| "?".into());
                if k.own_namespaces.iter().any(|o| o == n) {
                    format!("{id} (its own)").into()
                } else {
                    format!("{id} (the host's)").into()
                }
            }
            Measured::Failed(why) => Cell::Failed {
                failed: why.clone(),
            },
        }
    };
    for n in NAMESPACES {
        t.row(vec![
            n.into(),
            m.host.get(n).cloned().unwrap_or_else(|| "?".into()).into(),
            ns(&m.container, n),
            ns(&m.handmade, n),
        ]);
    }
    report.tables.push(t);
    let own = |v: &Measured<KernelView>| v.as_ref().map(|k| k.own_namespaces.len() as f64);
    report.charts.push(crate::charts::growth(
        &format!(
            "namespaces of its own, of the {} an engine sets up",
            NAMESPACES.len()
        ),
        Unit::Count,
        &[
            (
                "twinbox container".into(),
                Side::Container,
                own(&m.container),
            ),
            (
                "hand-made (unshare)".into(),
                Side::Container,
                own(&m.handmade),
            ),
        ],
        None,
    ));
    report.charts.push(crate::charts::growth(
        "who can list them",
        Unit::Count,
        &[
            (
                "the kernel: processes in a PID namespace not the host's".into(),
                Side::Host,
                Measured::Value(m.kernel_list.len() as f64),
            ),
            (
                "twinbox ps: containers".into(),
                Side::Container,
                Measured::Value(m.twinbox_list.len() as f64),
            ),
        ],
        None,
    ));

    let listed =
        |pid: Option<i32>| pid.is_some_and(|p| m.twinbox_list.iter().any(|(_, q)| *q == Some(p)));
    let in_kernel = |pid: Option<i32>| pid.is_some_and(|p| m.kernel_list.contains(&p));
    let c_pid = m.container.value().map(|v| v.pid);
    let h_pid = m.handmade.value().map(|v| v.pid);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut t = Table::new(
        "who knows about which",
        &["", "twinbox container", "hand-made"],
    );
    t.row(vec![
        "host pid of its PID 1".into(),
        c_pid.map_or("-".into(), |p| p.to_string()).into(),
        h_pid.map_or("-".into(), |p| p.to_string()).into(),
    ]);
    t.row(vec![
        "in a PID namespace of its own (kernel)".into(),
        yes(in_kernel(c_pid)).into(),
        yes(in_kernel(h_pid)).into(),
    ]);
    t.row(vec![
        "listed by `twinbox ps`".into(),
        yes(listed(c_pid)).into(),
        yes(listed(h_pid)).into(),
    ]);
    t.row(vec![
        "its cgroup".into(),
        format!("twinbox/{}", m.container_id).into(),
        m.handmade_cgroup.clone().into(),
    ]);
    t.row(vec![
        "an id".into(),
        format!(
            "{} (twinbox's own record)",
            &m.container_id[..12.min(m.container_id.len())]
        )
        .into(),
        "none: only the namespace inodes".into(),
    ]);
    report.tables.push(t);
}

/// Act three: what this shows, with the inode numbers and pids it measured.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let c_pid = m.container.value().map(|v| v.pid);
    let h_pid = m.handmade.value().map(|v| v.pid);
    let handmade_in_kernel = h_pid.is_some_and(|p| m.kernel_list.contains(&p));
    let handmade_in_ps = h_pid.is_some_and(|p| m.twinbox_list.iter().any(|(_, q)| *q == Some(p)));
    let container_in_ps = c_pid.is_some_and(|p| m.twinbox_list.iter().any(|(_, q)| *q == Some(p)));
    let cgroup_names_id = m
        .container
        .value()
        .is_some_and(|v| v.cgroups.iter().any(|l| l.contains(&m.container_id)));
    if let (Some(c), Some(h)) = (m.container.value(), m.handmade.value()) {
        report.findings.push(format!(
            "The kernel put the twinbox container's PID 1 (host pid {}) in {} namespaces of its own ({}) and the hand-made one (host pid {}) in {} ({}). Both show up when the kernel is asked which processes live in a PID namespace other than the host's; `twinbox ps` lists {} of them: {}.",
            c.pid,
            c.own_namespaces.len(),
            c.own_namespaces.join(", "),
            h.pid,
            h.own_namespaces.len(),
            h.own_namespaces.join(", "),
            if handmade_in_ps { "both" } else { "only one" },
            if handmade_in_ps {
                "this run did not show the difference the lesson expects; look at the steps".to_string()
            } else {
                "the one twinbox wrote down when it made it".to_string()
            }
        ));
    }
    if cgroup_names_id {
        report.findings.push(format!(
            "The only place twinbox's id {} appears on the kernel's side is a directory name it chose: the container's cgroup is twinbox/{}. The kernel does not know that this name is an id; to the kernel it is a cgroup like the hand-made {} (the hand-made container's).",
            &m.container_id[..12.min(m.container_id.len())],
            m.container_id,
            m.handmade_cgroup.value().map_or("(none made)".to_string(), |p| p.clone())
        ));
    }
    report.caveats.push(
        "The hand-made container chroots into the busybox image's unpacked layer read-only and has no pivot_root, no masked /proc paths, no dropped capabilities and no seccomp filter: it shows what the kernel provides, not a safe container."
            .into(),
    );
    report.caveats.push(
        "Without a user namespace (twinbox does not make one yet), root inside both is root on the host: the user namespace column would read \"the host's\" for both."
            .into(),
    );
    report.fact("tag", &m.tag);
    report.fact("host_namespaces", &m.host);
    report.fact(
        "container",
        json!({
            "id": m.container_id,
            "kernel": m.container,
            "in_twinbox_ps": container_in_ps,
            "in_kernel_pid_namespaces": c_pid.is_some_and(|p| m.kernel_list.contains(&p)),
            "cgroup_names_id": cgroup_names_id,
        }),
    );
    report.fact(
        "handmade",
        json!({
            "kernel": m.handmade,
            "cgroup": m.handmade_cgroup,
            "in_twinbox_ps": handmade_in_ps,
            "in_kernel_pid_namespaces": handmade_in_kernel,
        }),
    );
    report.fact("kernel_pid_namespace_processes", &m.kernel_list);
}

fn namespaces_of(pid: i32) -> BTreeMap<String, String> {
    NAMESPACES
        .iter()
        .filter_map(|n| {
            let link = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).ok()?;
            Some((n.to_string(), link.to_string_lossy().into_owned()))
        })
        .collect()
}

fn kernel_view(pid: i32, host: &BTreeMap<String, String>) -> KernelView {
    let namespaces = namespaces_of(pid);
    let own_namespaces = namespaces
        .iter()
        .filter(|(n, id)| host.get(*n) != Some(id))
        .map(|(n, _)| n.clone())
        .collect();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    KernelView {
        pid,
        namespaces,
        own_namespaces,
        cgroups,
    }
}

fn describe_ns(ns: &BTreeMap<String, String>) -> String {
    ns.iter().map(|(n, id)| format!("{n} -> {id}\n")).collect()
}

/// Every process whose PID namespace is not the host's.
fn other_pid_namespaces(host: &BTreeMap<String, String>) -> Vec<i32> {
    let Some(host_pid_ns) = host.get("pid") else {
        return Vec::new();
    };
    let mut out: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                        .is_ok_and(|l| l.to_string_lossy() != *host_pid_ns)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Starts `unshare ... chroot ROOT /bin/sh -c SCRIPT` and returns it with the
/// host pid of the process inside (unshare's forked child), once it has set
/// its host name.
fn start_handmade(root: &std::path::Path, script: &str) -> Result<(Child, i32), String> {
    let mut child = Command::new("unshare")
        .args([
            "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "chroot",
        ])
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
    let unshare_pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("unshare exited with {status}: {}", err.trim()));
        }
        // the forked child, once it runs `sleep` (after hostname and echo)
        if let Some(pid) = children_of(unshare_pid).into_iter().next() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                return Ok((child, pid));
            }
        }
        if Instant::now() >= deadline {
            stop_handmade(&mut child);
            return Err("the hand-made container did not start within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Killing unshare's child (PID 1 of the new PID namespace) ends everything
/// in it; then unshare exits.
fn stop_handmade(child: &mut Child) {
    for pid in children_of(child.id() as i32) {
        // SAFETY: kill(2) on a pid read from unshare's children list just now;
        // unshare has not reaped it (it waits for it), so the pid is still its.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A cgroup made by hand for the hand-made container (pids controller under
/// cgroup v1, the unified tree under v2), with the process moved into it.
fn own_cgroup(pid: i32, tag: &str) -> Result<String, String> {
    let base = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup".to_string()
    } else {
        "/sys/fs/cgroup/pids".to_string()
    };
    let path = format!("{base}/{tag}");
    std::fs::create_dir(&path).map_err(|e| format!("mkdir {path}: {e}"))?;
    if let Err(e) = std::fs::write(format!("{path}/cgroup.procs"), pid.to_string()) {
        let _ = std::fs::remove_dir(&path);
        return Err(format!("moving {pid} into {path}: {e}"));
    }
    Ok(path)
}

/// rmdir of a cgroup whose last process has just exited can fail with EBUSY
/// for a moment.
fn remove_cgroup(path: &str) {
    for _ in 0..100 {
        if std::fs::remove_dir(path).is_ok() || !std::path::Path::new(path).exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
