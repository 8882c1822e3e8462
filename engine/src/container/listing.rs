//! `ps`: which containers to show (`-a`, `-n`, `--filter`) and the row each one
//! gives to `--format` templates, with Docker's field names and texts.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{json, Value};

use super::record::{Container, State, Status};
use super::{ContainerError, Result};
use crate::image::Image;
use crate::store::Store;
use crate::template::units::{go_time, human_duration, human_size, since};
use crate::template::Methods;

/// Docker's default `ps` table.
pub const PS_TABLE: &str =
    "{{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}";
/// Docker's default `ps -s` table.
pub const PS_TABLE_SIZE: &str = "{{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}\\t{{.Size}}";

/// Column titles of `ps` rows.
pub fn titles() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
        "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
        "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
    })
}

/// What `ps` was asked for.
#[derive(Debug, Default, Clone)]
pub struct PsQuery {
    pub all: bool,
    /// `-n N` / `-l`: the N most recently created, in any state
    pub last: Option<usize>,
    /// `--filter KEY=VALUE`, in the order given
    pub filters: Vec<String>,
    /// `-s`: compute sizes
    pub size: bool,
    /// `--no-trunc`: full ids and commands
    pub no_trunc: bool,
}

/// One container as `ps` shows it.
pub struct PsEntry {
    pub container: Container,
    pub state: State,
    /// Docker's row: every field a string, as `{{json .}}` prints them
    pub row: Value,
}

#[derive(Debug)]
enum Filter {
    Id(Regex),
    Name(Regex),
    Status(String),
    Exited(i32),
    Ancestor(String, Option<String>),
    Label(String, Option<String>),
    Before(String),
    Since(String),
    Volume(String),
    Network(String),
}

const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

fn bad(msg: String) -> ContainerError {
    ContainerError::BadFilter(msg)
}

fn parse_filters(
    store: &Store,
    specs: &[String],
    all: &[Container],
) -> Result<Vec<(String, Filter)>> {
    let mut out = Vec::new();
    let regex = |v: &str| {
        Regex::new(v).map_err(|e| bad(format!("invalid filter regular expression {v:?}: {e}")))
    };
    let created_of = |v: &str| -> Result<String> {
        let c = Container::find_in(all, v)?;
        Ok(c.created.clone())
    };
    for spec in specs {
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| bad(format!("bad format of filter {spec:?}: expected KEY=VALUE")))?;
        let key = key.trim().to_lowercase();
        let f = match key.as_str() {
            "id" => Filter::Id(regex(value)?),
            "name" => Filter::Name(regex(value)?),
            "status" => {
                if !STATUSES.contains(&value) {
                    return Err(bad(format!(
                        "invalid filter 'status={value}': use one of {}",
                        STATUSES.join(", ")
                    )));
                }
                Filter::Status(value.to_string())
            }
            "exited" => Filter::Exited(
                value
                    .parse()
                    .map_err(|_| bad(format!("invalid filter 'exited={value}': give an exit code")))?,
            ),
            "ancestor" => Filter::Ancestor(
                value.to_string(),
                Image::resolve(store, value).ok().map(|i| i.id.to_string()),
            ),
            "label" => {
                let (k, v) = match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                };
                Filter::Label(k, v)
            }
            "before" => Filter::Before(created_of(value)?),
            "since" => Filter::Since(created_of(value)?),
            "volume" => Filter::Volume(value.to_string()),
            "network" => Filter::Network(value.to_string()),
            _ => {
                return Err(bad(format!(
                    "invalid filter '{key}': use id, name, status, exited, ancestor, label, before, since, volume or network"
                )))
            }
        };
        out.push((key, f));
    }
    Ok(out)
}

/// Docker's state word: `paused` for a frozen running container.
fn state_word(c: &Container, s: &State) -> &'static str {
    match s.status {
        Status::Created if c.restarting(s) => "restarting",
        Status::Created => "created",
        Status::Running if super::pause::is_paused(c) => "paused",
        Status::Running => "running",
        Status::Exited if c.restarting(s) => "restarting",
        Status::Exited => "exited",
    }
}

fn matches(f: &Filter, c: &Container, s: &State) -> bool {
    match f {
        Filter::Id(r) => r.is_match(&c.id),
        Filter::Name(r) => r.is_match(&c.name) || r.is_match(&format!("/{}", c.name)),
        Filter::Status(w) => state_word(c, s) == w,
        Filter::Exited(code) => s.status == Status::Exited && s.exit_code == Some(*code),
        Filter::Ancestor(name, id) => {
            &c.image == name
                || id.as_deref() == Some(c.image_id.as_str())
                || c.image_id
                    .trim_start_matches("sha256:")
                    .starts_with(name.trim_start_matches("sha256:"))
        }
        Filter::Label(k, v) => match (c.options.labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            _ => false,
        },
        Filter::Before(t) => c.created < *t,
        Filter::Since(t) => c.created > *t,
        Filter::Volume(v) => c.options.volumes.iter().any(|m| {
            m.name.as_deref() == Some(v.as_str())
                || m.destination.to_str() == Some(v.as_str())
                || m.source.to_str() == Some(v.as_str())
        }),
        Filter::Network(n) => c.options.network.to_string() == *n,
    }
}

/// The containers `ps` shows, newest first, with their rows.
pub fn ps(store: &Store, q: &PsQuery) -> Result<Vec<PsEntry>> {
    let mut containers = Container::list(store)?;
    containers.sort_by(|a, b| b.created.cmp(&a.created));
    let filters = parse_filters(store, &q.filters, &containers)?;
    let all = q.all || q.last.is_some() || filters.iter().any(|(k, _)| k == "status");
    let mut out = Vec::new();
    for c in containers {
        if q.last.is_some_and(|n| out.len() >= n) {
            break;
        }
        let Ok(state) = c.state() else { continue };
        if !all && state.status != Status::Running {
            continue;
        }
        // the same key given twice: either value; different keys: both
        let mut by_key: BTreeMap<&str, bool> = BTreeMap::new();
        for (k, f) in &filters {
            let hit = matches(f, &c, &state);
            let e = by_key.entry(k.as_str()).or_insert(false);
            *e = *e || hit;
        }
        if by_key.values().any(|hit| !hit) {
            continue;
        }
        let row = row(store, &c, &state, q);
        out.push(PsEntry {
            container: c,
            state,
            row,
        });
    }
    Ok(out)
}

/// The command line as Docker's `ps` shows it: arguments with spaces in quotes.
fn command_text(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && (a.is_empty() || a.contains(char::is_whitespace)) {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    quoted.join(" ")
}

/// Go's `Ellipsis`: at most `n` characters, the last one `…` when cut.
fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    s.chars().take(n - 1).chain(std::iter::once('…')).collect()
}

/// `Up 5 minutes`, `Exited (0) 2 seconds ago`, as `ps` writes a state.
pub fn status_text(c: &Container, s: &State) -> String {
    match s.status {
        Status::Created if c.restarting(s) => "Restarting".into(),
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            human_duration(since(s.started_at.as_deref().unwrap_or(""))),
            if super::pause::is_paused(c) {
                " (Paused)"
            } else {
                ""
            }
        ),
        Status::Exited => {
            let code = s.exit_code.map_or("unknown".to_string(), |c| c.to_string());
            let ago = s
                .finished_at
                .as_deref()
                .map(|t| format!(" {} ago", human_duration(since(t))))
                .unwrap_or_default();
            let word = if c.restarting(s) {
                "Restarting"
            } else {
                "Exited"
            };
            format!("{word} ({code}){ago}")
        }
    }
}

/// `0.0.0.0:8080->80/tcp` for each mapping of a running container.
pub fn ports_text(c: &Container, s: &State) -> String {
    if s.status != Status::Running {
        return String::new();
    }
    let ports: Vec<String> = c.options.ports.iter().map(|p| p.to_string()).collect();
    ports.join(", ")
}

fn row(store: &Store, c: &Container, s: &State, q: &PsQuery) -> Value {
    let command = command_text(&c.args);
    let command = if q.no_trunc {
        command
    } else {
        ellipsis(&command, 20)
    };
    let size = if q.size {
        let rw = crate::image::dir_size(&c.upper());
        let image = Image::resolve(store, &c.image_id)
            .map(|i| i.unpacked_size(store))
            .unwrap_or(0);
        format!("{} (virtual {})", human_size(rw), human_size(rw + image))
    } else {
        "0B".into()
    };
    let labels: Vec<String> = c
        .options
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mounts: Vec<String> = c
        .options
        .volumes
        .iter()
        .map(|v| {
            v.name
                .clone()
                .unwrap_or_else(|| v.source.display().to_string())
        })
        .collect();
    json!({
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": go_time(&c.created),
        "ID": if q.no_trunc { c.id.clone() } else { c.short_id().to_string() },
        "Image": c.image,
        "Labels": labels.join(","),
        "LocalVolumes": c.options.volumes.iter().filter(|v| !v.is_bind()).count().to_string(),
        "Mounts": mounts.join(","),
        "Names": c.name,
        "Networks": c.options.network.to_string(),
        "Ports": ports_text(c, s),
        "RunningFor": format!("{} ago", human_duration(since(&c.created))),
        "Size": size,
        "State": state_word(c, s),
        "Status": status_text(c, s),
    })
}

/// `{{.Label "key"}}` on a `ps` row.
pub struct RowMethods;

impl Methods for RowMethods {
    fn call(&self, target: &Value, name: &str, args: &[Value]) -> Option<Value> {
        if name != "Label" || args.len() != 1 {
            return None;
        }
        let key = args[0].as_str()?;
        let labels = target.get("Labels")?.as_str()?;
        let value = labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        Some(Value::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsis_as_docker() {
        assert_eq!(ellipsis("sleep 1000", 20), "sleep 1000");
        assert_eq!(
            ellipsis("sh -c 'while true; do sleep 1; done'", 20),
            "sh -c 'while true; …"
        );
    }

    #[test]
    fn label_method() {
        let row = json!({"Labels": "a=1,b=two"});
        assert_eq!(
            RowMethods.call(&row, "Label", &[json!("b")]),
            Some(json!("two"))
        );
        assert_eq!(
            RowMethods.call(&row, "Label", &[json!("c")]),
            Some(json!(""))
        );
        assert_eq!(RowMethods.call(&row, "Nope", &[json!("c")]), None);
    }
}
