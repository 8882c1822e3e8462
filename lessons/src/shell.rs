//! Commands as a student would type them: `twinbox run ...` lines built from
//! the same options the lesson passes to the engine, quoted for a POSIX shell.

use twinbox_engine::container::RunOptions;
use twinbox_engine::network::{NetworkMode, DEFAULT_NETWORK};

/// Quotes one word for sh: bare when it is safe, else in single quotes.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

pub fn join(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Docker-style size for a flag: 64m, 1g, or bytes.
fn size_flag(bytes: u64) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    const K: u64 = 1 << 10;
    if bytes.is_multiple_of(G) {
        format!("{}g", bytes / G)
    } else if bytes.is_multiple_of(M) {
        format!("{}m", bytes / M)
    } else if bytes.is_multiple_of(K) {
        format!("{}k", bytes / K)
    } else {
        bytes.to_string()
    }
}

/// The `twinbox run` line that does what `opts` asks for.
pub fn container_run(image: &str, opts: &RunOptions, detach: bool) -> String {
    let mut w: Vec<String> = vec!["twinbox".into(), "run".into()];
    if detach {
        w.push("-d".into());
    }
    if opts.auto_remove {
        w.push("--rm".into());
    }
    if let Some(n) = &opts.name {
        w.extend(["--name".into(), n.clone()]);
    }
    if let Some(h) = &opts.hostname {
        w.extend(["--hostname".into(), h.clone()]);
    }
    for e in &opts.env {
        w.extend(["-e".into(), e.clone()]);
    }
    if let Some(m) = opts.memory_bytes {
        w.extend(["--memory".into(), size_flag(m)]);
    }
    if let Some(c) = opts.cpus {
        w.extend(["--cpus".into(), c.to_string()]);
    }
    if let Some(p) = opts.pids_limit {
        w.extend(["--pids-limit".into(), p.to_string()]);
    }
    if opts.userns == twinbox_engine::container::userns::UsernsMode::Auto {
        w.push("--userns=auto".into());
    }
    // the library's default network is none, the CLI's is the bridge: say
    // which, so the printed command does what the lesson did
    match &opts.network {
        NetworkMode::None => w.extend(["--network".into(), "none".into()]),
        NetworkMode::Host => w.extend(["--network".into(), "host".into()]),
        NetworkMode::Cni(n) if n != DEFAULT_NETWORK => w.extend(["--network".into(), n.clone()]),
        NetworkMode::Cni(_) => {}
        NetworkMode::Container(c) => w.extend(["--network".into(), format!("container:{c}")]),
    }
    for v in &opts.volumes {
        // a named volume by its name, a bind mount by its host path, an
        // anonymous one by its container path alone
        let source = match (&v.name, v.source.as_os_str().is_empty()) {
            (Some(name), _) => Some(name.clone()),
            (None, false) => Some(v.source.display().to_string()),
            (None, true) => None,
        };
        let mut spec = match source {
            Some(s) => format!("{s}:{}", v.destination.display()),
            None => v.destination.display().to_string(),
        };
        if v.read_only {
            spec.push_str(":ro");
        }
        w.extend(["-v".into(), spec]);
    }
    if let Some(e) = &opts.entrypoint {
        w.extend(["--entrypoint".into(), e.clone()]);
    }
    if opts.privileged {
        w.push("--privileged".into());
    }
    for p in &opts.ports {
        let host = match p.host_ip {
            Some(ip) => format!("{ip}:{}", p.host_port),
            None => p.host_port.to_string(),
        };
        w.extend(["-p".into(), format!("{host}:{}", p.container_port)]);
    }
    w.push(image.into());
    w.extend(opts.cmd.iter().cloned());
    join(&w)
}

/// The `twinbox vm run` line for the same workload in a microVM.
pub fn vm_run(image: &str, opts: &RunOptions, memory_mib: u64, vcpus: u8) -> String {
    let mut w: Vec<String> = vec!["twinbox".into(), "vm".into(), "run".into(), "--rm".into()];
    w.extend(["--memory".into(), memory_mib.to_string()]);
    if vcpus != 1 {
        w.extend(["--cpus".into(), vcpus.to_string()]);
    }
    if let Some(h) = &opts.hostname {
        w.extend(["--hostname".into(), h.clone()]);
    }
    for e in &opts.env {
        w.extend(["-e".into(), e.clone()]);
    }
    // a network card is shown when the lesson gives the VM one
    match &opts.network {
        NetworkMode::Cni(n) => w.extend(["--network".into(), n.clone()]),
        NetworkMode::None | NetworkMode::Host | NetworkMode::Container(_) => {}
    }
    for p in &opts.ports {
        let host = match p.host_ip {
            Some(ip) => format!("{ip}:{}", p.host_port),
            None => p.host_port.to_string(),
        };
        w.extend(["-p".into(), format!("{host}:{}", p.container_port)]);
    }
    w.push(image.into());
    w.extend(opts.cmd.iter().cloned());
    join(&w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("uname"), "uname");
        assert_eq!(quote("-r"), "-r");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn run_lines() {
        let opts = RunOptions {
            auto_remove: true,
            memory_bytes: Some(16 << 20),
            pids_limit: Some(20),
            cmd: vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
            ..Default::default()
        };
        assert_eq!(
            container_run("busybox", &opts, false),
            "twinbox run --rm --memory 16m --pids-limit 20 --network none busybox sh -c 'echo hi; exit 3'"
        );
        assert_eq!(
            vm_run("busybox", &opts, 256, 1),
            "twinbox vm run --rm --memory 256 busybox sh -c 'echo hi; exit 3'"
        );
    }
}
