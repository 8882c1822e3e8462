//! isolation: what a container and a VM each see from the inside, and what
//! the host can still see of them from the outside.

use std::io;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{three_acts, Lesson};
use crate::context::{cmd_opts, Context, BUSYBOX, RUN_TIMEOUT, VM_MEMORY_MIB};
use crate::report::{Cell, LessonReport, Measured, Side, Step, Table};
use crate::LessonError;

pub struct Isolation;

const SCRIPT: &str = "echo \"hostname: $(hostname)\"
echo 'processes I can see:'
ps -o pid,args
echo \"network interfaces: $(ls /sys/class/net | tr '\\n' ' ')\"
echo \"root file system: $(awk '$2 == \"/\" { print $3 }' /proc/mounts | tail -n 1)\"
echo \"user: $(id)\"
echo ready
sleep 3
echo bye";

/// The same question asked of a container with a user namespace.
const USERNS_SCRIPT: &str = "echo \"user: $(id)\"
echo \"uid_map: $(cat /proc/self/uid_map)\"
echo ready
sleep 1
echo bye";

impl Lesson for Isolation {
    fn name(&self) -> &'static str {
        "isolation"
    }

    fn title(&self) -> &'static str {
        "what each isolates, and what the host can still see"
    }

    fn summary(&self) -> &'static str {
        "processes, host name, network, root file system and user inside; host's view of each"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A container's isolation is made of namespaces: the host kernel shows the \
             container's processes their own list of processes (PID namespace), their own \
             host name (UTS), their own network interfaces (network), their own root file \
             system (mount). The processes themselves are still host processes: the host \
             can list them, signal them and read their memory, and without a user namespace \
             the container's root is the host's root.",
            "With a user namespace (`--userns=auto`) root inside is an ordinary, \
             unprivileged user id on the host: the kernel maps the container's ids 0-65535 \
             onto a range of host ids no one else holds (its /proc/self/uid_map says which), \
             and the image's files, owned by root on disk, are shown to it as its own \
             through idmapped mounts (where the kernel cannot idmap the store's file \
             system, through a copy of the image's layers chowned into that range).",
            "A VM's isolation is the hardware boundary: the guest kernel has its own \
             processes, network stack and file systems that the host kernel knows nothing \
             about. From the host, a VM is one process (the VMM); the programs inside it \
             are invisible.",
            "The same script runs both ways and reports what it sees; while it runs, the \
             lesson looks from the host for the script's own process.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the host, the container and the VM each saw, and what the host saw
/// of them while they ran.
struct Measurements {
    host: HostView,
    c_inside: Inside,
    /// The container's script among the host's processes.
    c_host_sees: Vec<HostProcess>,
    c_pids: Vec<i32>,
    userns: UsernsView,
    v_inside: Measured<Inside>,
    /// The VM's script among the host's processes (none expected).
    v_host_sees: Vec<HostProcess>,
    vmm: Vec<HostProcess>,
}

/// Act one: the same script in a container and a VM, each looked at from
/// the host while it waits.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let tag = format!("isolation-{}", twinbox_engine::util::id::random_hex(4));
    let opts = cmd_opts(vec!["sh".into(), "-c".into(), SCRIPT.into(), tag.clone()]);
    let host = HostView::now();

    // container: started detached, looked at from the host while it sleeps
    let mut d = ctx.detached(report, BUSYBOX, &opts)?;
    let mut out = io::stdout();
    let c_ready = d.wait_for_output("ready", Duration::from_secs(30), &mut out);
    let c_host_sees = if c_ready {
        find_tagged(&tag)
    } else {
        Vec::new()
    };
    let c_pids = d.pids();
    let end = ctx.finish_detached(report, d, RUN_TIMEOUT)?;
    let c_inside = Inside::parse(&end.output);
    let c_listing = listing(&c_host_sees, "(none)");
    ctx.host_step(
        report,
        &format!("ps -eo pid,user,args | grep {tag}   # while the container runs"),
        &c_listing,
    );

    // the same question with a user namespace: who is root inside, on the host?
    let u_tag = format!("{tag}-userns");
    let mut u_opts = cmd_opts(vec![
        "sh".into(),
        "-c".into(),
        USERNS_SCRIPT.into(),
        u_tag.clone(),
    ]);
    u_opts.userns = twinbox_engine::container::userns::UsernsMode::Auto;
    // a kernel or store that cannot give it (no idmapped mounts on the store's
    // file system) costs this part of the lesson, not the lesson
    let userns = match ctx.detached(report, BUSYBOX, &u_opts) {
        Ok(mut d) => {
            let u_ready = d.wait_for_output("ready", Duration::from_secs(30), &mut out);
            let u_host_sees = if u_ready {
                find_tagged(&u_tag)
            } else {
                Vec::new()
            };
            let end = ctx.finish_detached(report, d, RUN_TIMEOUT)?;
            ctx.host_step(
                report,
                &format!("ps -eo pid,user,args | grep {u_tag}   # while the --userns=auto container runs"),
                &listing(&u_host_sees, "(none)"),
            );
            UsernsView::parse(&end.output, u_host_sees)
        }
        Err(why) => {
            // the command was shown; record it with its error, as a student saw it
            report.steps.push(Step {
                side: Side::Container,
                command: crate::shell::container_run(BUSYBOX, &u_opts, true),
                output: String::new(),
                exit_code: None,
                error: Some(why.to_string()),
                duration_ms: None,
            });
            UsernsView::unavailable(why.to_string())
        }
    };

    // VM: boots in a thread; the host looks once the script says ready
    let req = ctx.vm_request(BUSYBOX, &image, &opts, VM_MEMORY_MIB);
    let mut v_host_sees: Vec<HostProcess> = Vec::new();
    let mut vmm: Vec<HostProcess> = Vec::new();
    let v_run = ctx.prepare_vm(&req).and_then(|_| {
        ctx.vm_run_watching(report, &req, "ready", &mut || {
            v_host_sees = find_tagged(&tag);
            vmm = find_vmm();
        })
    });
    let v_inside: Measured<Inside> = match &v_run {
        Ok(run) if run.failure.is_none() => Measured::Value(Inside::parse(&run.output)),
        Ok(run) => Measured::failed(run.failure.clone().unwrap_or_default()),
        Err(why) => Measured::failed(why.clone()),
    };
    report.check("VM's view", &v_inside);
    if v_inside.value().is_some() {
        ctx.host_step(
            report,
            &format!("ps -eo pid,user,args | grep {tag}   # while the VM runs"),
            &listing(
                &v_host_sees,
                "(none: the host cannot see the VM's processes)",
            ),
        );
        ctx.host_step(
            report,
            "ps -eo pid,user,args | grep -e qemu -e twinbox   # the VMM",
            &listing(&vmm, "(none found)"),
        );
    }

    Ok(Measurements {
        host,
        c_inside,
        c_host_sees,
        c_pids,
        userns,
        v_inside,
        v_host_sees,
        vmm,
    })
}

/// Act two: the view from inside and the view from the host.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new(
        "the view from inside",
        &["", "host", "container", "microVM"],
    );
    let v = |f: fn(&Inside) -> String| -> Cell { m.v_inside.as_ref().map(f).into() };
    t.row(vec![
        "host name".into(),
        m.host.hostname.clone().into(),
        m.c_inside.hostname.clone().into(),
        v(|i| i.hostname.clone()),
    ]);
    t.row(vec![
        "processes visible".into(),
        m.host.processes.to_string().into(),
        format!("{} (its own)", m.c_inside.processes.len()).into(),
        v(|i| format!("{} (its own, kernel threads included)", i.processes.len())),
    ]);
    t.row(vec![
        "PID 1".into(),
        m.host.pid1.clone().into(),
        m.c_inside.pid1().into(),
        v(|i| i.pid1()),
    ]);
    t.row(vec![
        "network interfaces".into(),
        m.host.interfaces.clone().into(),
        m.c_inside.interfaces.clone().into(),
        v(|i| i.interfaces.clone()),
    ]);
    t.row(vec![
        "root file system".into(),
        m.host.rootfs.clone().into(),
        m.c_inside.rootfs.clone().into(),
        v(|i| i.rootfs.clone()),
    ]);
    t.row(vec![
        "user".into(),
        "-".into(),
        m.c_inside.user.clone().into(),
        v(|i| i.user.clone()),
    ]);
    t.row(vec![
        "user with --userns=auto".into(),
        "-".into(),
        format!("{} (uid_map {})", m.userns.user, m.userns.uid_map).into(),
        "-".into(),
    ]);
    report.tables.push(t);

    let mut h = Table::new("the view from the host", &["", "container", "microVM"]);
    h.row(vec![
        "the script's process, seen from the host".into(),
        if m.c_host_sees.is_empty() {
            "not found".into()
        } else {
            m.c_host_sees
                .iter()
                .map(|p| format!("pid {} ({})", p.pid, p.user))
                .collect::<Vec<_>>()
                .join(", ")
                .into()
        },
        match &m.v_inside {
            Measured::Value(_) if m.v_host_sees.is_empty() => {
                "not found: it lives in the guest kernel".into()
            }
            Measured::Value(_) => format!("found {} (unexpected)", m.v_host_sees.len()).into(),
            Measured::Failed(w) => Cell::Failed { failed: w.clone() },
        },
    ]);
    h.row(vec![
        "root of a --userns=auto container, seen from the host".into(),
        match m.userns.host_uid {
            Some(uid) => format!("uid {uid}, an unprivileged user").into(),
            None => "not found".into(),
        },
        "-".into(),
    ]);
    h.row(vec![
        "what the host sees instead".into(),
        format!("{} process(es) in the container's cgroup", m.c_pids.len()).into(),
        if m.vmm.is_empty() {
            "the VMM process".to_string().into()
        } else {
            m.vmm
                .iter()
                .map(|p| format!("pid {}: {}", p.pid, short(&p.args, 40)))
                .collect::<Vec<_>>()
                .join("; ")
                .into()
        },
    ]);
    report.tables.push(h);
}

/// Act three: isolated by the host kernel, not from it; caveat and facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let sees_lesson = m.c_inside.processes.iter().any(|p| p.contains("twinbox"));
    report.findings.push(format!(
        "Inside the container `ps` listed {} process(es), its own, where the host has {}; its PID 1 was `{}`, not the host's. The host name was {:?} and the network had only {}: the PID, UTS and network namespaces at work.",
        m.c_inside.processes.len(),
        m.host.processes,
        m.c_inside.pid1(),
        m.c_inside.hostname,
        if m.c_inside.interfaces.trim().is_empty() { "nothing".to_string() } else { m.c_inside.interfaces.trim().to_string() }
    ));
    if m.c_host_sees.is_empty() {
        report.findings.push("Unexpected on this run: the host did not find the container's script among its processes.".into());
    } else {
        report.findings.push(format!(
            "Yet the host saw the container's script as an ordinary process (host pid {}, user {}): a container is isolated by the host kernel, not from it. {}",
            m.c_host_sees[0].pid,
            m.c_host_sees[0].user,
            if m.c_host_sees[0].user == "root" { "It runs as the host's root, because the container has no user namespace (Docker's default)." } else { "" }
        ));
    }
    match m.userns.host_uid {
        Some(uid) => report.findings.push(format!(
            "Run with --userns=auto, the same busybox said `{}` inside, yet the host saw its process as uid {uid}: its uid_map `{}` maps root inside onto that unprivileged host user. Escaping such a container gives an attacker nobody's rights on the host.",
            m.userns.user, m.userns.uid_map
        )),
        None => match &m.userns.unavailable {
            Some(why) => report.findings.push(format!(
                "A --userns=auto container could not start on this host ({why}), so this run cannot show root inside mapped to an unprivileged host user."
            )),
            None => report.findings.push(
                "Unexpected on this run: the host did not find the --userns=auto container's script.".into(),
            ),
        },
    }
    if let Some(i) = m.v_inside.value() {
        report.findings.push(format!(
            "The VM's `ps` listed {} processes, among them its own kernel's threads; its PID 1 was `{}`. {}",
            i.processes.len(),
            i.pid1(),
            if m.v_host_sees.is_empty() {
                "The host found none of them: what runs in a VM is only visible to the guest kernel, and the host sees the VMM process."
            } else {
                "Unexpected on this run: the host found a process with the script's tag."
            }
        ));
    }
    report.caveats.push("By default twinbox runs containers without a user namespace (as Docker does): root inside is root outside, held back by dropped capabilities, seccomp and the namespaces; `--userns=auto` gives each container a range of host ids of its own, as Podman's does.".into());
    report.fact(
        "host",
        json!({"hostname": m.host.hostname, "processes": m.host.processes, "pid1": m.host.pid1}),
    );
    report.fact(
        "container",
        json!({
            "inside": m.c_inside,
            "visible_processes": m.c_inside.processes.len(),
            "sees_lesson_process": sees_lesson,
            "host_sees_workload": !m.c_host_sees.is_empty(),
            "host_view": m.c_host_sees,
            "cgroup_pids": m.c_pids,
        }),
    );
    report.fact(
        "container_userns",
        json!({
            "inside_user": m.userns.user,
            "uid_map": m.userns.uid_map,
            "host_uid": m.userns.host_uid,
            "host_view": m.userns.host_sees,
            "unavailable": m.userns.unavailable,
        }),
    );
    report.fact(
        "vm",
        json!({
            "inside": serde_json::to_value(&m.v_inside).unwrap_or_default(),
            "visible_processes": m.v_inside.value().map(|i| i.processes.len()),
            "host_sees_workload": m.v_inside.value().map(|_| !m.v_host_sees.is_empty()),
            "vmm": m.vmm,
        }),
    );
}

/// What the script reported.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inside {
    pub hostname: String,
    /// `ps` lines: "PID ARGS".
    pub processes: Vec<String>,
    pub interfaces: String,
    pub rootfs: String,
    pub user: String,
}

impl Inside {
    fn parse(output: &str) -> Inside {
        let text = output.replace("\r\n", "\n");
        let field = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let mut processes = Vec::new();
        let mut in_ps = false;
        for l in text.lines() {
            if l.starts_with("processes I can see:") {
                in_ps = true;
                continue;
            }
            if l.starts_with("network interfaces:") {
                break;
            }
            if in_ps && !l.trim_start().starts_with("PID") && !l.trim().is_empty() {
                processes.push(l.trim().to_string());
            }
        }
        Inside {
            hostname: field("hostname:"),
            processes,
            interfaces: field("network interfaces:"),
            rootfs: field("root file system:"),
            user: field("user:"),
        }
    }

    fn pid1(&self) -> String {
        self.processes
            .iter()
            .find_map(|p| {
                let mut w = p.splitn(2, ' ');
                (w.next()? == "1").then(|| {
                    let args = w.next().unwrap_or("").trim();
                    if args.starts_with("sh -c ") {
                        "sh -c … (this script)".to_string()
                    } else {
                        short(args, 40)
                    }
                })
            })
            .unwrap_or_else(|| "(not listed)".into())
    }
}

fn short(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() > n {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    } else {
        one_line
    }
}

/// The `--userns=auto` container: who it is inside, and on the host.
struct UsernsView {
    user: String,
    /// The first line of its /proc/self/uid_map, spaces squeezed.
    uid_map: String,
    host_sees: Vec<HostProcess>,
    /// The uid the host saw its script run as.
    host_uid: Option<u32>,
    /// Why such a container could not start here, if it could not.
    unavailable: Option<String>,
}

impl UsernsView {
    fn parse(output: &str, host_sees: Vec<HostProcess>) -> UsernsView {
        let text = output.replace("\r\n", "\n");
        let field = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let host_uid = host_sees.first().map(|p| p.uid);
        UsernsView {
            user: field("user:"),
            uid_map: field("uid_map:"),
            host_sees,
            host_uid,
            unavailable: None,
        }
    }

    fn unavailable(why: String) -> UsernsView {
        UsernsView {
            user: String::new(),
            uid_map: String::new(),
            host_sees: Vec::new(),
            host_uid: None,
            unavailable: Some(why),
        }
    }
}

/// The host's own view, for the table.
struct HostView {
    hostname: String,
    processes: usize,
    pid1: String,
    interfaces: String,
    rootfs: String,
}

impl HostView {
    fn now() -> HostView {
        let interfaces = std::fs::read_dir("/sys/class/net")
            .map(|rd| {
                let mut v: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v.join(" ")
            })
            .unwrap_or_default();
        let rootfs = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .rfind(|l| l.split_whitespace().nth(1) == Some("/"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .unwrap_or_default();
        HostView {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string(),
            processes: all_pids().len(),
            pid1: short(&twinbox_engine::util::procfs::cmdline(1), 40),
            interfaces,
            rootfs,
        }
    }
}

/// A process as the host lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HostProcess {
    pub pid: i32,
    pub uid: u32,
    pub user: String,
    pub args: String,
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn host_process(pid: i32) -> Option<HostProcess> {
    let args = twinbox_engine::util::procfs::cmdline(pid);
    if args.is_empty() {
        return None;
    }
    let (uid, _) = twinbox_engine::util::procfs::owner_and_parent(pid)?;
    Some(HostProcess {
        pid,
        uid,
        user: if uid == 0 {
            "root".into()
        } else {
            uid.to_string()
        },
        args,
    })
}

/// Host processes whose command line carries `tag` (never this process).
fn find_tagged(tag: &str) -> Vec<HostProcess> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter_map(host_process)
        .filter(|p| p.args.contains(tag))
        .collect()
}

/// The processes running VMs for this lesson: QEMU children of this process,
/// or this process itself when twinbox's own VMM runs in it.
fn find_vmm() -> Vec<HostProcess> {
    let me = std::process::id() as i32;
    let children: Vec<HostProcess> = all_pids()
        .into_iter()
        .filter(|p| {
            twinbox_engine::util::procfs::owner_and_parent(*p).map(|(_, pp)| pp) == Some(me)
        })
        .filter_map(host_process)
        .filter(|p| p.args.contains("qemu-system"))
        .collect();
    if children.is_empty() {
        host_process(me).into_iter().collect()
    } else {
        children
    }
}

fn listing(procs: &[HostProcess], empty: &str) -> String {
    if procs.is_empty() {
        return format!("{empty}\n");
    }
    let mut s = String::from("  PID USER     ARGS\n");
    for p in procs {
        s.push_str(&format!(
            "{:>5} {:<8} {}\n",
            p.pid,
            p.user,
            short(&p.args, 100)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_output() {
        let out = "hostname: abc\r\nprocesses I can see:\r\nPID   COMMAND\r\n    1 sh -c echo x\r\n    7 ps -o pid,args\r\nnetwork interfaces: lo \r\nroot file system: overlay\r\nuser: uid=0(root) gid=0(root)\r\nready\r\n";
        let i = Inside::parse(out);
        assert_eq!(i.hostname, "abc");
        assert_eq!(i.processes.len(), 2);
        assert_eq!(i.pid1(), "sh -c … (this script)");
        assert_eq!(i.interfaces, "lo");
        assert_eq!(i.rootfs, "overlay");
        assert!(i.user.starts_with("uid=0"));
    }

    #[test]
    fn finds_tagged_processes_but_not_itself() {
        let tag = format!("tag-{}", std::process::id());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5; true", &tag])
            .spawn()
            .expect("start sh");
        std::thread::sleep(Duration::from_millis(100));
        let found = find_tagged(&tag);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, child.id() as i32);
    }
}
