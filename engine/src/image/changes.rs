//! `--change` of `commit` and `import`: a Dockerfile instruction that only touches
//! the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
//! VOLUME, WORKDIR: the list `docker commit --change` accepts), applied to the
//! config's `config` object. The instruction is read by the Dockerfile parser, so
//! its forms (JSON or shell, `ENV a=b c=d`, quoting) are the Dockerfile's.

use serde_json::{json, Map, Value};

use super::{ImageError, Result};
use crate::dockerfile::{self, expand, CommandForm, Instr};

const ALLOWED: &str =
    "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR";

/// Applies one change to `config` (an image config's `config` object).
pub fn apply(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let bad = |why: String| ImageError::BadChange {
        change: change.to_string(),
        why,
    };
    let text = format!("FROM scratch\n{}\n", change.trim());
    let file = dockerfile::parse(&text).map_err(|problems| {
        bad(problems
            .first()
            .map(|p| p.message.clone())
            .unwrap_or_else(|| "not a Dockerfile instruction".into()))
    })?;
    let steps = file
        .stages
        .first()
        .map(|s| s.steps.as_slice())
        .unwrap_or(&[]);
    let [step] = steps else {
        return Err(bad(format!("give exactly one instruction: {ALLOWED}")));
    };
    let command = |form: &CommandForm| match form {
        CommandForm::Exec(v) => json!(v),
        CommandForm::Shell(s) => json!(["/bin/sh", "-c", s]),
    };
    let object = |config: &mut Map<String, Value>, key: &str| -> Map<String, Value> {
        config
            .get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    // quotes and $VARIABLES as a Dockerfile has them, against the image's ENV
    let env = env_of(config);
    let word = |w: &str| expand::word(w, &env, '\\').map_err(|e| bad(e.to_string()));
    let pairs = |pairs: &[(String, String)]| -> Result<Vec<(String, String)>> {
        pairs
            .iter()
            .map(|(k, v)| Ok((word(k)?, word(v)?)))
            .collect()
    };
    match &step.instr {
        Instr::Cmd(form) => {
            config.insert("Cmd".into(), command(form));
        }
        Instr::Entrypoint(form) => {
            config.insert("Entrypoint".into(), command(form));
        }
        Instr::Env(given) => {
            for (k, v) in pairs(given)? {
                set_env(config, &format!("{k}={v}"));
            }
        }
        Instr::Expose(text) => {
            let mut ports = object(config, "ExposedPorts");
            for port in text.split_whitespace() {
                let port = if port.contains('/') {
                    port.to_string()
                } else {
                    format!("{port}/tcp")
                };
                ports.insert(port, json!({}));
            }
            config.insert("ExposedPorts".into(), Value::Object(ports));
        }
        Instr::Label(given) => {
            let mut labels = object(config, "Labels");
            for (k, v) in pairs(given)? {
                labels.insert(k, json!(v));
            }
            config.insert("Labels".into(), Value::Object(labels));
        }
        Instr::Onbuild(trigger) => {
            let mut list = config
                .get("OnBuild")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.push(json!(trigger));
            config.insert("OnBuild".into(), Value::Array(list));
        }
        Instr::Stopsignal(s) => {
            config.insert("StopSignal".into(), json!(s));
        }
        Instr::User(u) => {
            config.insert("User".into(), json!(word(u)?));
        }
        Instr::Volume { json: list, text } => {
            let mut volumes = object(config, "Volumes");
            let paths: Vec<String> = match list {
                Some(l) => l.clone(),
                None => text.split_whitespace().map(String::from).collect(),
            };
            for p in paths {
                volumes.insert(p, json!({}));
            }
            config.insert("Volumes".into(), Value::Object(volumes));
        }
        Instr::Workdir(dir) => {
            let base = config
                .get("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("/");
            let joined = std::path::Path::new(base).join(word(dir)?);
            config.insert("WorkingDir".into(), json!(joined.to_string_lossy()));
        }
        _ => return Err(bad(format!("only {ALLOWED} can be changed"))),
    }
    Ok(())
}

/// The config's `Env` list (`KEY=VALUE` strings).
fn env_of(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets one `KEY=VALUE` in the config's `Env`, replacing the key's old value.
pub(crate) fn set_env(config: &mut Map<String, Value>, kv: &str) {
    let key_of = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let key = key_of(kv);
    let mut env = env_of(config);
    env.retain(|e| key_of(e) != key);
    env.push(kv.to_string());
    config.insert("Env".into(), json!(env));
}

/// Applies every change in order to the `config` object of an image config.
pub fn apply_all(image_config: &mut Value, changes: &[String]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    if !image_config.get("config").is_some_and(Value::is_object) {
        image_config["config"] = json!({});
    }
    let config = image_config["config"].as_object_mut().expect("object");
    for change in changes {
        apply(config, change)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut v = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]}});
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        apply_all(&mut v, &changes).unwrap();
        v["config"].clone()
    }

    #[test]
    fn config_instructions_change_the_config() {
        let c = applied(&[
            "CMD [\"httpd\", \"-f\"]",
            "ENV A=2 B=\"x y\"",
            "EXPOSE 80 53/udp",
            "LABEL course=vms",
            "WORKDIR /srv",
            "WORKDIR www",
            "USER nobody",
            "VOLUME /data",
            "STOPSIGNAL SIGINT",
            "ENTRYPOINT echo hi",
        ]);
        assert_eq!(c["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=x y"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"]["course"], "vms");
        assert_eq!(c["WorkingDir"], "/srv/www");
        assert_eq!(c["User"], "nobody");
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["StopSignal"], "SIGINT");
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
    }

    #[test]
    fn other_instructions_are_refused_by_name() {
        let mut v = json!({});
        for bad in [
            "RUN rm -rf /",
            "COPY a b",
            "FROM x",
            "",
            "CMD a\nCMD b",
            "NOPE x",
        ] {
            let err = apply_all(&mut v, &[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("--change "), "{bad:?}: {err}");
        }
    }
}
