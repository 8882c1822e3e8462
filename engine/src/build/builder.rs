//! The builder: stages in dependency order (only those the target needs), each
//! step applied to the stage's state (config JSON, layers, ARGs in scope), layer
//! steps looked up in the cache before they run, the target's state written as
//! an ordinary image.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::cache::{self, KeyBuilder, Record, StoredLayer};
use super::chmod::Chmod;
use super::copy::{self, LayerPlan, Matched, Origin, Ownership};
use super::dockerfile::{
    self, CommandForm, CopySource, CopySpec, Dockerfile, Flag, Instr, Stage, Step,
};
use super::expand;
use super::ignore::Ignore;
use super::progress::Progress;
use super::run::{self, RunRequest};
use super::{default_network, BuildError, BuildOptions, BuildResult, Result};
use crate::image::ingest::ingest_tar;
use crate::image::layer::write_image_named;
use crate::image::{Image, ImageError, LayerInfo, Reference};
use crate::layer::merged::MergedView;
use crate::layer::tree;
use crate::network::NetworkMode;
use crate::store::{Digest, Store};
use crate::util::time::now_rfc3339;

const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// A stage's state between steps.
#[derive(Debug, Clone)]
struct State {
    /// The image config being built (`config`, `history`, ...); rootfs is filled at the end.
    image: Value,
    layers: Vec<LayerInfo>,
    /// ARGs in scope with a value, in declaration order.
    args: Vec<(String, String)>,
    /// The time of the last layer step (or the base image): history and the
    /// image's `created`, so an unchanged rebuild makes the same image id.
    created: String,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl State {
    fn scratch() -> State {
        State {
            image: json!({"architecture": "amd64", "os": "linux", "config": {}, "history": []}),
            layers: Vec::new(),
            args: Vec::new(),
            created: now_rfc3339(),
            cmd_set: false,
        }
    }

    fn config(&mut self) -> &mut Map<String, Value> {
        if !self.image.get("config").is_some_and(Value::is_object) {
            self.image["config"] = json!({});
        }
        self.image["config"].as_object_mut().expect("object")
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.image.get("config").and_then(|c| c.get(key))
    }

    fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.get(key)?.as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
    }

    fn env(&self) -> Vec<String> {
        self.strings("Env").unwrap_or_default()
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        let kv = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(slot) => *slot = kv,
            None => env.push(kv),
        }
        self.config().insert("Env".into(), json!(env));
    }

    fn workdir(&self) -> String {
        self.get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    fn user(&self) -> String {
        self.get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn shell(&self) -> Vec<String> {
        self.strings("Shell")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    /// What `$VAR` sees: ARGs, then ENV (ENV wins over an ARG of the same name).
    fn lookup(&self) -> Vec<String> {
        let mut v: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        v.extend(self.env());
        v
    }

    fn parent_chain(&self) -> Option<Digest> {
        self.layers.last().map(|l| l.chain_id.clone())
    }

    fn lowers(&self, store: &Store) -> Vec<PathBuf> {
        self.layers
            .iter()
            .rev()
            .map(|l| store.layer_dir(&l.chain_id))
            .collect()
    }

    fn view(&self, store: &Store) -> MergedView {
        MergedView::new(self.lowers(store))
    }

    fn history(&mut self, created_by: String, layer: bool) {
        let mut h = json!({
            "created": self.created,
            "created_by": created_by,
            "comment": HISTORY_COMMENT,
        });
        if !layer {
            h["empty_layer"] = json!(true);
        }
        if !self.image.get("history").is_some_and(Value::is_array) {
            self.image["history"] = json!([]);
        }
        self.image["history"].as_array_mut().expect("array").push(h);
    }
}

/// Go's `%q` of a string slice, as Docker writes CMD and ENTRYPOINT in history.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

struct Builder<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    file: &'a Dockerfile,
    progress: &'a mut dyn Progress,
    ignore: Ignore,
    /// Global ARGs (before FROM) with their values.
    meta_args: Vec<(String, String)>,
    results: HashMap<usize, State>,
    used_args: HashSet<String>,
    next_id: usize,
    steps: usize,
    cached: usize,
}

impl Builder<'_> {
    fn fail(&self, line: usize, text: &str, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.opts.dockerfile_name.clone(),
            line,
            instruction: short(text),
            message: message.into(),
        }
    }

    fn expand(&self, state: &State, step: &Step, s: &str) -> Result<String> {
        expand::word(s, &state.lookup(), self.file.escape)
            .map_err(|e| self.fail(step.line, &step.text, e.to_string()))
    }

    fn stage_index(&self, name: &str) -> Option<usize> {
        if let Ok(n) = name.parse::<usize>() {
            return (n < self.file.stages.len()).then_some(n);
        }
        self.file.stages.iter().position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    fn expand_meta(&self, s: &str) -> String {
        let env: Vec<String> = self
            .meta_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        expand::word(s, &env, self.file.escape).unwrap_or_else(|_| s.to_string())
    }

    /// Stages `index` needs first: its FROM stage and every `--from` stage.
    fn deps(&self, index: usize) -> Vec<usize> {
        let stage = &self.file.stages[index];
        let mut out = Vec::new();
        let base = self.expand_meta(&stage.base);
        if let Some(i) = self.stage_index(&base).filter(|i| *i < index) {
            out.push(i);
        }
        for step in &stage.steps {
            let flags: &[Flag] = match &step.instr {
                Instr::Copy(c) => &c.flags,
                Instr::Run { flags, .. } => flags,
                _ => continue,
            };
            for f in flags {
                let from = match (f.name.as_str(), &f.value) {
                    ("from", Some(v)) => Some(v.clone()),
                    ("mount", Some(v)) => v
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("from=").map(String::from)),
                    _ => None,
                };
                if let Some(i) = from.and_then(|v| self.stage_index(&self.expand_meta(&v))) {
                    if i < index {
                        out.push(i);
                    }
                }
            }
        }
        out
    }

    fn build_stage(&mut self, index: usize) -> Result<()> {
        if self.results.contains_key(&index) {
            return Ok(());
        }
        for dep in self.deps(index) {
            self.build_stage(dep)?;
        }
        let stage = &self.file.stages[index];
        let multi = self.file.stages.len() > 1;
        let name = match &stage.name {
            Some(n) => format!("{n} "),
            None if multi => format!("stage-{index} "),
            None => String::new(),
        };
        let total = 1 + stage
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.instr,
                    Instr::Run { .. } | Instr::Copy(_) | Instr::Add(_) | Instr::Workdir(_)
                )
            })
            .count();
        let mut state = self.from(stage, &name, total)?;
        let triggers = state
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        state.config().remove("OnBuild");
        let mut n = 1;
        for trigger in triggers {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{trigger}\n")).map_err(|p| {
                self.fail(
                    stage.line,
                    &stage.text,
                    format!("ONBUILD trigger {trigger:?}: {}", p[0].message),
                )
            })?;
            for mut step in parsed.stages[0].steps.clone() {
                step.line = stage.line;
                step.text = format!("ONBUILD {}", step.text);
                self.step(&mut state, &step, &name, &mut n, total)?;
            }
        }
        for step in &stage.steps {
            self.step(&mut state, step, &name, &mut n, total)?;
        }
        self.results.insert(index, state);
        Ok(())
    }

    fn from(&mut self, stage: &Stage, name: &str, total: usize) -> Result<State> {
        let base = self.expand_meta(&stage.base);
        if let Some(p) = &stage.platform {
            let p = self.expand_meta(p);
            if p != "linux/amd64" && p != "linux/x86_64" {
                return Err(self.fail(
                    stage.line,
                    &stage.text,
                    format!("platform {p} is not available: twinbox builds linux/amd64 images"),
                ));
            }
        }
        let id = self.begin(&format!("[{name}1/{total}] FROM {base}"));
        let started = Instant::now();
        let state = if base.eq_ignore_ascii_case("scratch") {
            State::scratch()
        } else if let Some(i) = self
            .stage_index(&base)
            .filter(|i| self.results.contains_key(i))
        {
            let mut s = self.results[&i].clone();
            s.args.clear();
            s.cmd_set = false;
            s
        } else {
            let image = self.base_image(stage, &base)?;
            let raw: Value = self
                .store
                .read_json_blob(&image.id)
                .map_err(ImageError::from)?;
            let created = raw
                .get("created")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(now_rfc3339);
            let mut image_json = json!({
                "architecture": raw.get("architecture").cloned().unwrap_or(json!("amd64")),
                "os": raw.get("os").cloned().unwrap_or(json!("linux")),
                "config": raw.get("config").cloned().unwrap_or(json!({})),
                "history": raw.get("history").cloned().unwrap_or(json!([])),
            });
            if image_json["config"].is_null() {
                image_json["config"] = json!({});
            }
            let lease: Vec<&Digest> = image
                .layers
                .iter()
                .flat_map(|l| [&l.blob, &l.chain_id])
                .collect();
            {
                let _lock = self.store.lock()?;
                self.store.lease(&lease)?;
            }
            State {
                image: image_json,
                layers: image.layers.clone(),
                args: Vec::new(),
                created,
                cmd_set: false,
            }
        };
        self.progress.step_done(id, started.elapsed());
        Ok(state)
    }

    fn base_image(&mut self, stage: &Stage, base: &str) -> Result<Image> {
        if self.opts.pull {
            let options = crate::registry::pull::PullOptions::default();
            crate::registry::pull::pull(
                self.store,
                base,
                &options,
                &crate::registry::progress::NoProgress,
            )
            .map_err(|e| self.fail(stage.line, &stage.text, format!("pulling {base}: {e}")))?;
        }
        match Image::resolve(self.store, base) {
            Ok(i) => Ok(i),
            Err(ImageError::NotFound(_)) => Err(BuildError::BaseImage {
                file: self.opts.dockerfile_name.clone(),
                line: stage.line,
                name: base.to_string(),
            }),
            Err(e) => Err(self.fail(stage.line, &stage.text, e.to_string())),
        }
    }

    fn begin(&mut self, label: &str) -> usize {
        self.next_id += 1;
        self.progress.step_started(self.next_id, label);
        self.next_id
    }

    fn step(
        &mut self,
        state: &mut State,
        step: &Step,
        name: &str,
        n: &mut usize,
        total: usize,
    ) -> Result<()> {
        let layered = matches!(
            step.instr,
            Instr::Run { .. } | Instr::Copy(_) | Instr::Add(_) | Instr::Workdir(_)
        );
        if !layered {
            return self.metadata(state, step);
        }
        *n += 1;
        self.steps += 1;
        let id = self.begin(&format!("[{name}{n}/{total}] {}", short(&step.text)));
        let started = Instant::now();
        let result = match &step.instr {
            Instr::Run { flags, command } => self.run(state, step, flags, command, id, started),
            Instr::Copy(spec) => self.copy(state, step, spec, false),
            Instr::Add(spec) => self.copy(state, step, spec, true),
            Instr::Workdir(path) => self.workdir(state, step, path),
            _ => unreachable!("layered steps only"),
        };
        match result {
            Ok(true) => {
                self.cached += 1;
                self.progress.step_cached(id);
                Ok(())
            }
            Ok(false) => {
                self.progress.step_done(id, started.elapsed());
                Ok(())
            }
            Err(e) => {
                let message = match &e {
                    BuildError::RunFailed { code, .. } => {
                        format!("process did not complete successfully: exit code: {code}")
                    }
                    other => other.to_string(),
                };
                self.progress.step_failed(id, started.elapsed(), &message);
                Err(e)
            }
        }
    }

    /// Looks a step up in the cache; on a hit applies it to the state, marks
    /// the step's history entry and returns true.
    fn cached(&mut self, state: &mut State, key: &Digest) -> bool {
        if self.opts.no_cache {
            return false;
        }
        let parent = state.parent_chain();
        let Some((record, layer)) = cache::lookup(self.store, key, parent.as_ref()) else {
            return false;
        };
        state.created = record.created;
        let made = layer.is_some();
        if let Some(l) = layer {
            state.layers.push(l);
        }
        Self::last_history_layer(state, made);
        fix_history_created(state);
        true
    }

    /// The cache of a `--link` step: its layer does not depend on the steps
    /// before, so a layer made on another parent is reused, unpacked again on
    /// this one from its blob when this chain has not been seen.
    fn cached_linked(&mut self, state: &mut State, key: &Digest) -> Result<bool> {
        if self.cached(state, key) {
            return Ok(true);
        }
        if self.opts.no_cache {
            return Ok(false);
        }
        let Some(record) = cache::read(self.store, key) else {
            return Ok(false);
        };
        let Some(blob) = record
            .layer
            .as_ref()
            .and_then(|l| Digest::parse(&l.blob).ok())
            .filter(|b| self.store.has_blob(b))
        else {
            return Ok(false);
        };
        let reader = crate::image::layer::open_tar_file(&self.store.blob_path(&blob))?;
        let parent = state.parent_chain();
        let layer = ingest_tar(self.store, parent.as_ref(), reader, &mut |_| {})?.layer;
        state.created = record.created;
        state.layers.push(layer);
        Self::last_history_layer(state, true);
        fix_history_created(state);
        Ok(true)
    }

    /// Turns a changed tree into the step's layer (none when nothing changed)
    /// and records it in the cache.
    fn commit_tree(
        &mut self,
        state: &mut State,
        key: &Digest,
        root: &Path,
        skip: &HashSet<PathBuf>,
    ) -> Result<bool> {
        self.commit_layer(state, key, |out| tree::write_tar(root, skip, out))
    }

    /// Writes a layer tar with `write` (none when it has no entries), adds it
    /// to the state and records it in the cache.
    fn commit_layer(
        &mut self,
        state: &mut State,
        key: &Digest,
        write: impl FnOnce(BufWriter<File>) -> std::io::Result<u64>,
    ) -> Result<bool> {
        let tmp = self.store.temp_dir("build-layer")?;
        let result = (|| -> Result<bool> {
            let tar_path = tmp.join("layer.tar");
            let file = File::create(&tar_path).map_err(|e| BuildError::io(&tar_path, e))?;
            let entries = write(BufWriter::new(file)).map_err(|e| BuildError::io(&tar_path, e))?;
            state.created = now_rfc3339();
            let layer = if entries == 0 {
                None
            } else {
                let mut f = File::open(&tar_path).map_err(|e| BuildError::io(&tar_path, e))?;
                f.rewind().map_err(|e| BuildError::io(&tar_path, e))?;
                let parent = state.parent_chain();
                let l = ingest_tar(
                    self.store,
                    parent.as_ref(),
                    std::io::BufReader::new(f),
                    &mut |_| {},
                )?
                .layer;
                Some(l)
            };
            cache::save(
                self.store,
                key,
                &Record {
                    layer: layer.as_ref().map(StoredLayer::from_info),
                    created: state.created.clone(),
                },
            );
            crate::fault::point("build.step-committed");
            let made = layer.is_some();
            if let Some(l) = layer {
                state.layers.push(l);
            }
            Ok(made)
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn last_history_layer(state: &mut State, layer: bool) {
        if let Some(h) = state.image["history"]
            .as_array_mut()
            .and_then(|a| a.last_mut())
        {
            if layer {
                h.as_object_mut().map(|o| o.remove("empty_layer"));
            } else {
                h["empty_layer"] = json!(true);
            }
        }
    }

    /// The build args a RUN sees as env: every ARG in scope that ENV does not set.
    fn run_env_args(state: &State) -> Vec<String> {
        let env = state.env();
        state
            .args
            .iter()
            .filter(|(k, _)| !env.iter().any(|e| e.split('=').next() == Some(k)))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    fn run(
        &mut self,
        state: &mut State,
        step: &Step,
        flags: &[Flag],
        command: &CommandForm,
        id: usize,
        started: Instant,
    ) -> Result<bool> {
        let argv = match command {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut v = state.shell();
                v.push(s.clone());
                v
            }
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(self.fail(step.line, &step.text, "RUN needs a command"));
        }
        let mut network = self.opts.network.clone().unwrap_or_else(default_network);
        let mut mounts = Vec::new();
        for f in flags {
            let value = self.expand(state, step, f.value.as_deref().unwrap_or(""))?;
            match f.name.as_str() {
                "network" => {
                    network = match value.as_str() {
                        "default" => self.opts.network.clone().unwrap_or_else(default_network),
                        v => v
                            .parse::<NetworkMode>()
                            .map_err(|e| self.fail(step.line, &step.text, e))?,
                    }
                }
                "mount" => mounts.push(
                    super::mounts::parse(&value)
                        .map_err(|e| self.fail(step.line, &step.text, e))?,
                ),
                "security" if value == "sandbox" => {}
                other => {
                    return Err(self.fail(
                        step.line,
                        &step.text,
                        format!("--{other}={value} is not supported"),
                    ))
                }
            }
        }
        let build_args = Self::run_env_args(state);
        for (k, _) in &state.args {
            self.used_args.insert(k.clone());
        }
        let mut key = KeyBuilder::new("run", state.parent_chain().as_ref());
        key.list(&argv)
            .list(&state.env())
            .list(&build_args)
            .field(&state.user())
            .field(&state.workdir())
            .field(&network.to_string());
        let mut prepared = Vec::new();
        for m in &mounts {
            key.field(&m.key_text());
            prepared.extend(self.prepare_mount(state, step, m, key.hasher())?);
        }
        let key = key.finish();
        let history = {
            let mut parts = Vec::new();
            if !state.args.is_empty() {
                parts.push(format!("|{}", state.args.len()));
                for (k, v) in &state.args {
                    parts.push(format!("{k}={v}"));
                }
            }
            parts.extend(argv.iter().cloned());
            format!("RUN {} # buildkit", parts.join(" "))
        };
        state.history(history, true);
        if self.cached(state, &key) {
            return Ok(true);
        }
        let config: oci_spec::image::Config =
            serde_json::from_value(state.image["config"].clone()).unwrap_or_default();
        let mut binds = Vec::new();
        let mut tmpfs = Vec::new();
        let mut secret_env = Vec::new();
        for p in &prepared {
            match p {
                super::mounts::Prepared::Bind {
                    source,
                    target,
                    read_only,
                    ..
                } => binds.push((source.clone(), target.clone(), *read_only)),
                super::mounts::Prepared::Tmpfs {
                    target,
                    size,
                    read_only,
                } => tmpfs.push(run::TmpfsMount {
                    target: target.clone(),
                    size: *size,
                    read_only: *read_only,
                }),
                super::mounts::Prepared::Env { name, value } => {
                    secret_env.push(format!("{name}={value}"))
                }
            }
        }
        let req = RunRequest {
            lowers: state.lowers(self.store),
            argv: argv.clone(),
            config: &config,
            build_args,
            user: state.user(),
            workdir: state.workdir(),
            network,
            binds,
            tmpfs,
            secret_env,
        };
        let progress = &mut *self.progress;
        let outcome = run::run(self.store, &req, &mut |line| {
            progress.step_output(id, started.elapsed(), line)
        });
        // staged sources, secret files and private caches go, whatever happened
        drop(prepared);
        let outcome = outcome.map_err(|e| self.fail(step.line, &step.text, e.to_string()))?;
        if outcome.exit_code != 0 {
            return Err(BuildError::RunFailed {
                file: self.opts.dockerfile_name.clone(),
                line: step.line,
                instruction: short(&step.text),
                code: outcome.exit_code,
                tail: outcome.tail.clone(),
            });
        }
        let made = self.commit_tree(state, &key, &outcome.upper(), &HashSet::new())?;
        Self::last_history_layer(state, made);
        fix_history_created(state);
        Ok(false)
    }

    fn prepare_mount(
        &mut self,
        state: &State,
        step: &Step,
        m: &super::mounts::Mount,
        key: &mut Sha256,
    ) -> Result<Vec<super::mounts::Prepared>> {
        use super::mounts::{Kind, Prepared};
        let absolute = |t: &str| {
            if t.starts_with('/') {
                t.to_string()
            } else {
                format!("{}/{}", state.workdir().trim_end_matches('/'), t)
            }
        };
        let target = if m.target.is_empty() {
            "/".to_string()
        } else {
            absolute(&m.target)
        };
        match &m.kind {
            Kind::Tmpfs { size, read_only } => Ok(vec![Prepared::Tmpfs {
                target,
                size: *size,
                read_only: *read_only,
            }]),
            Kind::Cache(cache) => Ok(vec![self.prepare_cache(state, step, cache, target)?]),
            Kind::Secret(secret) => {
                let id = &secret.id;
                let Some((_, source)) = self.opts.secrets.iter().find(|(sid, _)| sid == id) else {
                    if secret.required {
                        return Err(self.fail(
                            step.line,
                            &step.text,
                            format!(
                                "secret {id:?} is required: pass it with --secret id={id},src=FILE (or env=VAR)"
                            ),
                        ));
                    }
                    // BuildKit: an optional secret that is absent is simply not there
                    return Ok(Vec::new());
                };
                let value = source
                    .read()
                    .map_err(|e| self.fail(step.line, &step.text, format!("secret {id:?}: {e}")))?;
                let mut out = Vec::new();
                if let Some(name) = &secret.env {
                    let value = String::from_utf8(value.clone()).map_err(|_| {
                        self.fail(
                            step.line,
                            &step.text,
                            format!(
                                "secret {id:?} is not text, so it cannot be the variable {name}"
                            ),
                        )
                    })?;
                    out.push(Prepared::Env {
                        name: name.clone(),
                        value,
                    });
                }
                if let Some(file_target) = secret.file_target(&m.target) {
                    // a private copy with the mode and owner the mount asks for
                    let scratch = self.store.temp_dir("build-secret")?;
                    let file = scratch.join("secret");
                    let written = (|| {
                        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                        let mut f = fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&file)?;
                        std::io::Write::write_all(&mut f, &value)?;
                        std::os::unix::fs::chown(&file, Some(secret.uid), Some(secret.gid))?;
                        fs::set_permissions(&file, fs::Permissions::from_mode(secret.mode))
                    })();
                    let prepared = Prepared::Bind {
                        source: file.clone(),
                        target: absolute(&file_target),
                        read_only: true,
                        hold: None,
                        scratch: Some(scratch),
                    };
                    written.map_err(|e| BuildError::io(&file, e))?;
                    out.push(prepared);
                }
                Ok(out)
            }
            Kind::Bind { source, from, rw } => {
                let tmp = self.store.temp_dir("build-bind")?;
                let dest = tmp.join("src");
                let prepared = Prepared::Bind {
                    source: dest.clone(),
                    target,
                    read_only: !rw,
                    hold: None,
                    scratch: Some(tmp),
                };
                let src = source.clone().unwrap_or_else(|| "/".into());
                self.stage_mount_source(state, step, from.as_deref(), &src, &dest, key)?;
                Ok(vec![prepared])
            }
        }
    }

    /// Copies `source` of the build context, or of the stage or image `from`,
    /// to `dest`, hashing what it copies into `key`.
    fn stage_mount_source(
        &mut self,
        state: &State,
        step: &Step,
        from: Option<&str>,
        source: &str,
        dest: &Path,
        key: &mut Sha256,
    ) -> Result<()> {
        let view = match from {
            Some(f) => Some(self.source_view(state, step, f)?),
            None => None,
        };
        let origin = match &view {
            Some(v) => Origin::Image(v),
            None => Origin::Context {
                root: self.opts.context.as_deref(),
                ignore: &self.ignore,
            },
        };
        let matched = origin
            .sources(source)
            .map_err(|e| self.fail(step.line, &step.text, e))?;
        let own = Ownership::default();
        for m in &matched {
            copy::hash_entry(key, Path::new(""), &m.real)
                .map_err(|e| BuildError::io(&m.real, e))?;
            copy::stage_entry(&m.real, dest, &own).map_err(|e| BuildError::io(&m.real, e))?;
            // lstat: the source is a path of the stage, never a host path a link leads to
            if m.real.symlink_metadata().is_ok_and(|md| md.is_dir()) {
                for (rel, real) in origin.walk(m) {
                    copy::hash_entry(key, &rel, &real).map_err(|e| BuildError::io(&real, e))?;
                    copy::stage_entry(&real, &dest.join(&rel), &own)
                        .map_err(|e| BuildError::io(&real, e))?;
                }
            }
        }
        Ok(())
    }

    /// A cache mount: the directory kept in the store under its id, locked as
    /// its `sharing` says for the step's life. A new cache starts empty, or as
    /// a copy of `source` in `from`, with the asked mode and owner; it is made
    /// in scratch and renamed into place, so a crash never leaves half a seed.
    fn prepare_cache(
        &mut self,
        state: &State,
        step: &Step,
        cache: &super::mounts::Cache,
        target: String,
    ) -> Result<super::mounts::Prepared> {
        use super::mounts::{Prepared, Sharing};
        let id = cache.id.clone().unwrap_or_else(|| target.clone());
        let base = self.store.root().join("cache/build-mounts");
        fs::create_dir_all(&base).map_err(|e| BuildError::io(&base, e))?;
        let hex = Digest::of(id.as_bytes()).hex().to_string();
        let lock_path = base.join(format!("{hex}.lock"));
        let lock = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BuildError::io(&lock_path, e))?;
        let locked = |r: std::io::Result<()>| r.map_err(|e| BuildError::io(&lock_path, e));
        let dir = base.join(&hex);
        let (dir, scratch) = match cache.sharing {
            Sharing::Shared => {
                locked(lock.lock_shared())?;
                (dir, None)
            }
            Sharing::Locked => {
                locked(lock.lock())?;
                (dir, None)
            }
            Sharing::Private => match lock.try_lock() {
                Ok(()) => (dir, None),
                Err(fs::TryLockError::WouldBlock) => {
                    // in use: this step gets a cache of its own, dropped after
                    let own = self.store.temp_dir("build-cache")?;
                    (own.join("cache"), Some(own))
                }
                Err(fs::TryLockError::Error(e)) => return Err(BuildError::io(&lock_path, e)),
            },
        };
        if !dir.exists() {
            let scratch = self.store.temp_dir("build-cache-new")?;
            let fresh = scratch.join("cache");
            let made = self.seed_cache(state, step, cache, &fresh).and_then(|()| {
                match fs::rename(&fresh, &dir) {
                    Ok(()) => Ok(()),
                    // a concurrent build made it first: use theirs
                    Err(_) if dir.is_dir() => Ok(()),
                    Err(e) => Err(BuildError::io(&dir, e)),
                }
            });
            let _ = fs::remove_dir_all(&scratch);
            made?;
        }
        Ok(Prepared::Bind {
            source: dir,
            target,
            read_only: cache.read_only,
            hold: Some(lock),
            scratch,
        })
    }

    /// Fills a new cache directory `at`: a copy of `source` in `from` when
    /// given, with the cache's mode and owner on its top directory.
    fn seed_cache(
        &mut self,
        state: &State,
        step: &Step,
        cache: &super::mounts::Cache,
        at: &Path,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(from) = &cache.from {
            let source = cache.source.clone().unwrap_or_else(|| "/".into());
            // a cache's contents are never part of the step's cache key
            let mut ignored = <Sha256 as sha2::Digest>::new();
            self.stage_mount_source(state, step, Some(from), &source, at, &mut ignored)?;
        }
        fs::create_dir_all(at).map_err(|e| BuildError::io(at, e))?;
        fs::set_permissions(at, fs::Permissions::from_mode(cache.mode))
            .map_err(|e| BuildError::io(at, e))?;
        std::os::unix::fs::chown(at, Some(cache.uid), Some(cache.gid))
            .map_err(|e| BuildError::io(at, e))?;
        Ok(())
    }

    /// The tree `--from` names: an earlier stage, or an image in the store.
    fn source_view(&mut self, state: &State, step: &Step, from: &str) -> Result<MergedView> {
        let from = self.expand(state, step, from)?;
        if let Some(i) = self.stage_index(&from) {
            return match self.results.get(&i) {
                Some(s) => Ok(s.view(self.store)),
                None => Err(self.fail(step.line, &step.text, format!("stage {from:?} comes later in the Dockerfile: --from can only name an earlier stage"))),
            };
        }
        match Image::resolve(self.store, &from) {
            Ok(image) => Ok(MergedView::new(image.lower_dirs(self.store))),
            Err(_) => Err(self.fail(
                step.line,
                &step.text,
                format!(
                    "--from={from}: no stage or image of that name (stages: {})",
                    self.stage_names()
                ),
            )),
        }
    }

    fn stage_names(&self) -> String {
        let names: Vec<String> = self
            .file
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| s.name.clone().unwrap_or_else(|| i.to_string()))
            .collect();
        names.join(", ")
    }

    fn copy(&mut self, state: &mut State, step: &Step, spec: &CopySpec, add: bool) -> Result<bool> {
        let mut from = None;
        let mut chown = None;
        let mut chmod = None;
        let mut checksum = None;
        let mut link = false;
        let mut parents = false;
        let mut keep_git_dir = false;
        let mut unpack: Option<bool> = None;
        let mut excludes: Vec<String> = Vec::new();
        for f in &spec.flags {
            let v = self.expand(state, step, f.value.as_deref().unwrap_or(""))?;
            let on = |v: &str| match v {
                "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                _ => Err(self.fail(
                    step.line,
                    &step.text,
                    format!("--{}={v}: give true or false", f.name),
                )),
            };
            match f.name.as_str() {
                "from" => from = Some(v),
                "chown" => chown = Some(v),
                "chmod" => {
                    chmod = Some(Chmod::parse(&v).ok_or_else(|| {
                        self.fail(
                            step.line,
                            &step.text,
                            format!("--chmod={v}: give an octal mode like 0755 or a symbolic one like u+x,g-w"),
                        )
                    })?)
                }
                "checksum" => checksum = Some(v),
                "link" => link = on(&v)?,
                "parents" => parents = on(&v)?,
                "keep-git-dir" => keep_git_dir = on(&v)?,
                "unpack" => unpack = Some(on(&v)?),
                "exclude" if !v.is_empty() => excludes.push(v),
                other => {
                    return Err(self.fail(
                        step.line,
                        &step.text,
                        format!("--{other} is not supported"),
                    ))
                }
            }
        }
        let dest_raw = self.expand(state, step, &spec.dest)?;
        let dest_is_dir = dest_raw.ends_with('/');
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", state.workdir().trim_end_matches('/'), dest_raw)
        };
        let any_git = add
            && spec.sources.iter().any(|src| match src {
                CopySource::Path(raw) => is_git_source(raw),
                CopySource::Heredoc { .. } => false,
            });
        if keep_git_dir && !any_git {
            return Err(self.fail(
                step.line,
                &step.text,
                "--keep-git-dir is for ADD of a git repository",
            ));
        }
        // --link: the layer is made without reading the stage's files (no
        // symlink in the destination is followed, every parent is a plain
        // directory), so its cache does not depend on the steps before it
        let image_view = if link {
            MergedView::new(Vec::new())
        } else {
            state.view(self.store)
        };
        let dest_rel = if link {
            PathBuf::from(clean_abs(&dest_abs).trim_start_matches('/'))
        } else {
            image_view
                .resolve(Path::new(dest_abs.trim_start_matches('/')))
                .map_err(|e| self.fail(step.line, &step.text, format!("destination: {e}")))?
        };
        let exclude = (!excludes.is_empty()).then(|| Ignore::parse(&excludes.join("\n")));
        let excluded = |rel: &Path| {
            exclude
                .as_ref()
                .is_some_and(|x| x.is_ignored(&rel.to_string_lossy()))
        };
        let lowers = state.lowers(self.store);
        let owner = match &chown {
            Some(c) => {
                let u = crate::container::user::resolve(c, &lowers)
                    .map_err(|e| self.fail(step.line, &step.text, e.to_string()))?;
                // Docker: a user without a group gets its uid as the gid too
                Some((u.uid, if c.contains(':') { u.gid } else { u.uid }))
            }
            None => None,
        };
        let view_from = match &from {
            Some(f) => Some(self.source_view(state, step, f)?),
            None => None,
        };
        let opts = self.opts;
        let ignore = self.ignore.clone();
        let origin = match &view_from {
            Some(v) => Origin::Image(v),
            None => Origin::Context {
                root: opts.context.as_deref(),
                ignore: &ignore,
            },
        };
        let own = Ownership {
            chown: owner,
            reset_to_root: view_from.is_none(),
            chmod: chmod.clone(),
        };

        // sources: paths (with globs), URLs (ADD), heredocs
        let tmp = self.store.temp_dir("build-copy")?;
        let result = (|| -> Result<bool> {
            let mut items: Vec<Item> = Vec::new();
            let mut srcs_text = Vec::new();
            for (n, src) in spec.sources.iter().enumerate() {
                match src {
                    CopySource::Heredoc { body, expand: ex } => {
                        let body = if *ex {
                            self.expand(state, step, body)?
                        } else {
                            body.clone()
                        };
                        let name = heredoc_name(&step.text, n);
                        let p = tmp.join("heredoc").join(&name);
                        fs::create_dir_all(p.parent().expect("parent"))
                            .map_err(|e| BuildError::io(&p, e))?;
                        fs::write(&p, body).map_err(|e| BuildError::io(&p, e))?;
                        set_mode(&p, 0o644)?;
                        srcs_text.push(format!("<<{name}"));
                        items.push(Item {
                            m: Matched {
                                rel: PathBuf::from(&name),
                                real: p,
                            },
                            kind: SourceKind::Heredoc,
                            keep: None,
                        });
                    }
                    CopySource::Path(raw) => {
                        let s = self.expand(state, step, raw)?;
                        srcs_text.push(s.clone());
                        if add && is_git_source(&s) {
                            let out = super::git::checkout(
                                &s,
                                &tmp.join(format!("git-{n}")),
                                keep_git_dir,
                                checksum.as_deref(),
                            )
                            .map_err(|e| self.fail(step.line, &step.text, e))?;
                            items.push(Item {
                                m: Matched {
                                    rel: PathBuf::new(),
                                    real: out.dir,
                                },
                                kind: SourceKind::Git(format!("{s}@{}", out.commit)),
                                keep: None,
                            });
                            continue;
                        }
                        if add && (s.starts_with("http://") || s.starts_with("https://")) {
                            let p =
                                super::fetch::download(&s, &tmp.join("url"), checksum.as_deref())
                                    .map_err(|e| self.fail(step.line, &step.text, e))?;
                            let rel = PathBuf::from(p.file_name().unwrap_or_default());
                            items.push(Item {
                                m: Matched { rel, real: p },
                                kind: SourceKind::Url,
                                keep: None,
                            });
                            continue;
                        }
                        for m in origin
                            .sources(&s)
                            .map_err(|e| self.fail(step.line, &step.text, e))?
                        {
                            let keep = parents.then(|| parents_kept(&s, &m.rel));
                            items.push(Item {
                                m,
                                kind: SourceKind::Path,
                                keep,
                            });
                        }
                    }
                }
            }
            if items.len() > 1 && !parents && !dest_is_dir && !image_view.is_dir(&dest_rel) {
                return Err(self.fail(step.line, &step.text, format!("with more than one source file the destination must be a directory and end with a /: {dest_raw}")));
            }
            // the key: every source's identity, the destination and the flags
            // an excluded source, or an excluded entry below a directory source
            // (matched relative to it, or to the kept parents with --parents)
            let skip_item = |it: &Item| {
                it.kind == SourceKind::Path
                    && match &it.keep {
                        Some(k) => excluded(k),
                        None => {
                            !it.m.real.symlink_metadata().is_ok_and(|md| md.is_dir())
                                && excluded(Path::new(it.m.rel.file_name().unwrap_or_default()))
                        }
                    }
            };
            let skip_entry = |it: &Item, rel: &Path| match &it.keep {
                Some(k) => excluded(&k.join(rel)),
                None => excluded(rel),
            };
            // a checked-out repository is walked on its own, not in the origin
            let walk = |it: &Item| match it.kind {
                SourceKind::Git(_) => {
                    let view = MergedView::new(vec![it.m.real.clone()]);
                    Origin::Image(&view).walk(&Matched {
                        rel: PathBuf::new(),
                        real: it.m.real.clone(),
                    })
                }
                _ => origin.walk(&it.m),
            };
            let mut key = KeyBuilder::new(
                match (add, link) {
                    (true, false) => "add",
                    (false, false) => "copy",
                    (true, true) => "add-link",
                    (false, true) => "copy-link",
                },
                if link { None } else { state.parent_chain() }.as_ref(),
            );
            key.field(&dest_abs).field(&format!(
                "{owner:?}/{chmod:?}/{}/{parents}/{unpack:?}/{excludes:?}",
                from.as_deref().unwrap_or("")
            ));
            for it in &items {
                let m = &it.m;
                if skip_item(it) {
                    continue;
                }
                // a repository is keyed by its commit, as in BuildKit (a
                // checkout's .git differs from clone to clone)
                if let SourceKind::Git(commit) = &it.kind {
                    key.field(commit);
                    continue;
                }
                key.field(&m.rel.display().to_string());
                copy::hash_entry(key.hasher(), Path::new(""), &m.real)
                    .map_err(|e| BuildError::io(&m.real, e))?;
                if m.real.symlink_metadata().is_ok_and(|md| md.is_dir()) {
                    for (rel, real) in walk(it) {
                        if skip_entry(it, &rel) {
                            continue;
                        }
                        copy::hash_entry(key.hasher(), &rel, &real)
                            .map_err(|e| BuildError::io(&real, e))?;
                    }
                }
            }
            let key = key.finish();
            let verb = if add { "ADD" } else { "COPY" };
            let mut history = format!("{verb} ");
            if let Some(f) = &from {
                history.push_str(&format!("--from={f} "));
            }
            history.push_str(&format!("{} {dest_raw} # buildkit", srcs_text.join(" ")));
            state.history(history, true);
            let hit = if link {
                self.cached_linked(state, &key)?
            } else {
                self.cached(state, &key)
            };
            if hit {
                return Ok(true);
            }
            let mut plan = LayerPlan::default();
            let into_dir =
                parents || dest_is_dir || items.len() > 1 || image_view.is_dir(&dest_rel);
            for (n, it) in items.iter().enumerate() {
                let m = &it.m;
                if skip_item(it) {
                    continue;
                }
                let md = m
                    .real
                    .symlink_metadata()
                    .map_err(|e| BuildError::io(&m.real, e))?;
                // --parents: the path below the pivot is kept, its directories
                // copied with their own metadata as rsync --relative does
                let base = match &it.keep {
                    Some(keep) => {
                        plan.parents(&dest_rel, &image_view, &own);
                        let pivot: PathBuf = m
                            .rel
                            .components()
                            .take(m.rel.components().count() - keep.components().count())
                            .collect();
                        let mut at = PathBuf::new();
                        let dirs = keep.components().count() - usize::from(!md.is_dir());
                        for c in keep.components().take(dirs) {
                            at.push(c);
                            if let Some(real) = origin.real(&pivot.join(&at)) {
                                plan.copy(dest_rel.join(&at), real, own.clone());
                            }
                        }
                        Some(dest_rel.join(keep))
                    }
                    None => None,
                };
                if md.is_dir() {
                    let base = base.unwrap_or_else(|| dest_rel.clone());
                    if it.keep.is_none() {
                        plan.parents(&base, &image_view, &own);
                    }
                    for (rel, real) in walk(it) {
                        if !skip_entry(it, &rel) {
                            plan.copy(base.join(&rel), real, own.clone());
                        }
                    }
                    continue;
                }
                if let Some(target) = base {
                    plan.copy(target, m.real.clone(), own.clone());
                    continue;
                }
                let target = if into_dir {
                    dest_rel.join(m.rel.file_name().unwrap_or_default())
                } else {
                    dest_rel.clone()
                };
                if let Some(parent) = target.parent() {
                    plan.parents(parent, &image_view, &own);
                }
                // ADD unpacks local archives, and URLs' only with --unpack
                let unpacks = match it.kind {
                    SourceKind::Path => unpack.unwrap_or(true),
                    SourceKind::Url => unpack.unwrap_or(false),
                    SourceKind::Heredoc | SourceKind::Git(_) => false,
                };
                if add && unpacks && md.is_file() && copy::is_archive(&m.real) {
                    // a local archive is unpacked (by the store's safe unpacker)
                    // into the destination directory, its owners kept
                    plan.parents(&dest_rel, &image_view, &own);
                    let dir = tmp.join(format!("archive-{n}"));
                    fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                    let reader = crate::image::layer::open_tar_file(&m.real)?;
                    crate::store::unpack::unpack_layer(reader, &dir).map_err(|e| {
                        self.fail(
                            step.line,
                            &step.text,
                            format!("unpacking {}: {e}", m.rel.display()),
                        )
                    })?;
                    let archive = MergedView::new(vec![dir.clone()]);
                    let unpacked = Origin::Image(&archive);
                    let root = Matched {
                        rel: PathBuf::new(),
                        real: dir.clone(),
                    };
                    let kept = Ownership {
                        chown: None,
                        reset_to_root: false,
                        chmod: None,
                    };
                    for (rel, real) in unpacked.walk(&root) {
                        plan.copy(dest_rel.join(&rel), real, kept.clone());
                    }
                    continue;
                }
                plan.copy(target, m.real.clone(), own.clone());
            }
            let made = self.commit_layer(state, &key, |out| plan.write_tar(out))?;
            Self::last_history_layer(state, made);
            fix_history_created(state);
            Ok(false)
        })();
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn workdir(&mut self, state: &mut State, step: &Step, raw: &str) -> Result<bool> {
        let path = self.expand(state, step, raw)?;
        let joined = if path.starts_with('/') {
            path
        } else {
            format!("{}/{}", state.workdir().trim_end_matches('/'), path)
        };
        let clean = clean_abs(&joined);
        state.config().insert("WorkingDir".into(), json!(clean));
        state.history(format!("WORKDIR {clean}"), false);
        let view = state.view(self.store);
        let rel = view
            .resolve(Path::new(clean.trim_start_matches('/')))
            .map_err(|e| self.fail(step.line, &step.text, e.to_string()))?;
        if clean == "/" || view.is_dir(&rel) {
            return Ok(true);
        }
        let user = state.user();
        let mut key = KeyBuilder::new("workdir", state.parent_chain().as_ref());
        key.field(&clean).field(&user);
        let key = key.finish();
        if self.cached(state, &key) {
            return Ok(true);
        }
        let owner = if user.is_empty() {
            None
        } else {
            crate::container::user::resolve(&user, &state.lowers(self.store))
                .ok()
                .map(|u| (u.uid, u.gid))
        };
        let tmp = self.store.temp_dir("build-workdir")?;
        let result = (|| {
            let staging = tmp.join("stage");
            fs::create_dir_all(&staging).map_err(|e| BuildError::io(&staging, e))?;
            let mut existing = HashSet::new();
            let own = Ownership {
                chown: owner,
                reset_to_root: true,
                chmod: None,
            };
            copy::stage_parents(&staging, &rel, &view, &own, &mut existing)
                .map_err(|e| BuildError::io(&staging, e))?;
            self.commit_tree(state, &key, &staging, &existing)
        })();
        let _ = fs::remove_dir_all(&tmp);
        let made = result?;
        Self::last_history_layer(state, made);
        fix_history_created(state);
        Ok(false)
    }

    fn metadata(&mut self, state: &mut State, step: &Step) -> Result<()> {
        let esc = self.file.escape;
        match &step.instr {
            Instr::Env(pairs) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(state, step, k)?;
                    let v = self.expand(state, step, v)?;
                    parts.push(format!("{k}={v}"));
                    state.set_env(&k, &v);
                }
                state.history(format!("ENV {}", parts.join(" ")), false);
            }
            Instr::Label(pairs) => {
                let mut parts = Vec::new();
                let mut labels = state
                    .get("Labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for (k, v) in pairs {
                    let k = self.expand(state, step, k)?;
                    let v = self.expand(state, step, v)?;
                    parts.push(format!("{k}={v}"));
                    labels.insert(k, json!(v));
                }
                state
                    .config()
                    .insert("Labels".into(), Value::Object(labels));
                state.history(format!("LABEL {}", parts.join(" ")), false);
            }
            Instr::Maintainer(m) => {
                state.image["author"] = json!(m);
                state.history(format!("MAINTAINER {m}"), false);
            }
            Instr::Arg(list) => {
                let mut parts = Vec::new();
                for (name, default) in list {
                    let default = match default {
                        Some(d) => Some(self.expand(state, step, d)?),
                        None => None,
                    };
                    parts.push(match &default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                    let value = self
                        .opts
                        .build_args
                        .get(name)
                        .cloned()
                        .or(default)
                        .or_else(|| {
                            self.meta_args
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.clone())
                        });
                    self.used_args.insert(name.clone());
                    state.args.retain(|(k, _)| k != name);
                    if let Some(v) = value {
                        state.args.push((name.clone(), v));
                    }
                }
                state.history(format!("ARG {}", parts.join(" ")), false);
            }
            Instr::Expose(text) => {
                let mut ports = state
                    .get("ExposedPorts")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let words = expand::words(text, &state.lookup(), esc)
                    .map_err(|e| self.fail(step.line, &step.text, e.to_string()))?;
                let mut added = BTreeMap::new();
                for w in words {
                    let port =
                        normalize_port(&w).map_err(|e| self.fail(step.line, &step.text, e))?;
                    ports.insert(port.clone(), json!({}));
                    added.insert(port, ());
                }
                state
                    .config()
                    .insert("ExposedPorts".into(), Value::Object(ports));
                let shown: Vec<String> = added.keys().map(|p| format!("{p}:{{}}")).collect();
                state.history(format!("EXPOSE map[{}]", shown.join(" ")), false);
            }
            Instr::User(u) => {
                let u = self.expand(state, step, u)?;
                state.config().insert("User".into(), json!(u));
                state.history(format!("USER {u}"), false);
            }
            Instr::Volume { json: list, text } => {
                let vols = match list {
                    Some(l) => l
                        .iter()
                        .map(|v| self.expand(state, step, v))
                        .collect::<Result<Vec<_>>>()?,
                    None => expand::words(text, &state.lookup(), esc)
                        .map_err(|e| self.fail(step.line, &step.text, e.to_string()))?,
                };
                if vols.iter().any(|v| v.trim().is_empty()) {
                    return Err(self.fail(step.line, &step.text, "VOLUME paths cannot be empty"));
                }
                let mut map = state
                    .get("Volumes")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for v in &vols {
                    map.insert(v.clone(), json!({}));
                }
                state.config().insert("Volumes".into(), Value::Object(map));
                state.history(format!("VOLUME [{}]", vols.join(" ")), false);
            }
            Instr::Stopsignal(s) => {
                let s = self.expand(state, step, s)?;
                state.config().insert("StopSignal".into(), json!(s));
                state.history(format!("STOPSIGNAL {s}"), false);
            }
            Instr::Cmd(form) => {
                let cmd = self.command(state, form);
                state.config().insert("Cmd".into(), json!(cmd));
                state.cmd_set = true;
                state.history(format!("CMD {}", go_quoted(&cmd)), false);
            }
            Instr::Entrypoint(form) => {
                let ep = self.command(state, form);
                state.config().insert("Entrypoint".into(), json!(ep));
                if !state.cmd_set {
                    // Docker: a new ENTRYPOINT drops the CMD inherited from the base
                    state.config().insert("Cmd".into(), Value::Null);
                }
                state.history(format!("ENTRYPOINT {}", go_quoted(&ep)), false);
            }
            Instr::Shell(list) => {
                if list.is_empty() {
                    return Err(self.fail(
                        step.line,
                        &step.text,
                        "SHELL needs a JSON array, like [\"/bin/bash\", \"-c\"]",
                    ));
                }
                state.config().insert("Shell".into(), json!(list));
                state.history(format!("SHELL [{}]", list.join(" ")), false);
            }
            Instr::Healthcheck { flags, test } => {
                let mut hc = Map::new();
                match test {
                    None => {
                        hc.insert("Test".into(), json!(["NONE"]));
                    }
                    Some(CommandForm::Exec(v)) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        hc.insert("Test".into(), json!(t));
                    }
                    Some(CommandForm::Shell(s)) => {
                        hc.insert("Test".into(), json!(["CMD-SHELL", s]));
                    }
                }
                for f in flags {
                    let v = f.value.clone().unwrap_or_default();
                    let (key, value) = match f.name.as_str() {
                        "retries" => (
                            "Retries",
                            json!(v.parse::<u64>().map_err(|_| self.fail(
                                step.line,
                                &step.text,
                                format!("--retries={v}: give a number")
                            ))?),
                        ),
                        "interval" => (
                            "Interval",
                            json!(parse_duration(&v)
                                .map_err(|e| self.fail(step.line, &step.text, e))?),
                        ),
                        "timeout" => (
                            "Timeout",
                            json!(parse_duration(&v)
                                .map_err(|e| self.fail(step.line, &step.text, e))?),
                        ),
                        "start-period" => (
                            "StartPeriod",
                            json!(parse_duration(&v)
                                .map_err(|e| self.fail(step.line, &step.text, e))?),
                        ),
                        "start-interval" => (
                            "StartInterval",
                            json!(parse_duration(&v)
                                .map_err(|e| self.fail(step.line, &step.text, e))?),
                        ),
                        _ => continue,
                    };
                    hc.insert(key.into(), value);
                }
                let test_shown = hc.get("Test").cloned().unwrap_or_default();
                state
                    .config()
                    .insert("Healthcheck".into(), Value::Object(hc));
                state.history(format!("HEALTHCHECK {test_shown}"), false);
            }
            Instr::Onbuild(trigger) => {
                let mut list = state.strings("OnBuild").unwrap_or_default();
                list.push(trigger.clone());
                state.config().insert("OnBuild".into(), json!(list));
                state.history(format!("ONBUILD {trigger}"), false);
            }
            Instr::Run { .. } | Instr::Copy(_) | Instr::Add(_) | Instr::Workdir(_) => {
                unreachable!("layer steps are not metadata")
            }
        }
        Ok(())
    }

    fn command(&self, state: &State, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut v = state.shell();
                v.push(s.clone());
                v
            }
        }
    }

    fn write_image(&mut self, mut state: State) -> Result<Image> {
        if !self.opts.labels.is_empty() {
            let mut labels = state
                .get("Labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), json!(v));
            }
            state
                .config()
                .insert("Labels".into(), Value::Object(labels));
        }
        let mut image = state.image.clone();
        image["created"] = json!(state.created);
        image["rootfs"] = json!({
            "type": "layers",
            "diff_ids": state.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        });
        let names: Vec<Reference> = self
            .opts
            .tags
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<std::result::Result<_, _>>()?;
        Ok(write_image_named(
            self.store,
            &names,
            &image,
            &state.layers,
        )?)
    }
}

/// The history entry just added takes the step's time (known after the cache lookup).
fn fix_history_created(state: &mut State) {
    let created = state.created.clone();
    if let Some(h) = state.image["history"]
        .as_array_mut()
        .and_then(|a| a.last_mut())
    {
        h["created"] = json!(created);
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| BuildError::io(p, e))
}

/// The file name a `COPY <<NAME` heredoc gets: its delimiter.
fn heredoc_name(text: &str, n: usize) -> String {
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("<<"))
        .map(|w| {
            w.trim_start_matches('-')
                .trim_matches(['"', '\''])
                .to_string()
        })
        .nth(n)
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| format!("heredoc-{n}"))
}

/// Where a COPY/ADD entry came from: a path (context, stage, image), a URL
/// (ADD), or a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceKind {
    Path,
    Url,
    Heredoc,
    /// A git repository checked out for ADD, with its source and commit.
    Git(String),
}

/// One source of a COPY/ADD, and with `--parents` the path it keeps.
struct Item {
    m: Matched,
    kind: SourceKind,
    keep: Option<PathBuf>,
}

/// `--parents`: the part of a matched path kept under the destination: all
/// of it, or what follows a `/./` pivot in the source (`x/./y/*.txt` keeps `y/..`).
fn parents_kept(src: &str, rel: &Path) -> PathBuf {
    let mut s = src.trim_start_matches('/');
    while let Some(rest) = s.strip_prefix("./") {
        s = rest.trim_start_matches('/');
    }
    let skip = s
        .find("/./")
        .map(|i| {
            Path::new(&s[..i])
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .count()
        })
        .unwrap_or(0);
    rel.components().skip(skip).collect()
}

/// A git repository as BuildKit recognizes one in ADD: a git or ssh URL,
/// `git@host:path`, or an http(s) URL whose path ends in `.git`.
fn is_git_source(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("git://") || lower.starts_with("ssh://") || lower.starts_with("git@") {
        return true;
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let path = lower.split(['#', '?']).next().unwrap_or("");
        return path.trim_end_matches('/').ends_with(".git");
    }
    false
}

fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// `80`, `80/udp`, `8000-8002/tcp` → Docker's keys.
fn normalize_port(w: &str) -> std::result::Result<String, String> {
    let (port, proto) = w.split_once('/').unwrap_or((w, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("EXPOSE {w}: the protocol must be tcp, udp or sctp"));
    }
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let valid = match port.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(port),
    };
    if !valid {
        return Err(format!("EXPOSE {w}: give a port number (1-65535)"));
    }
    Ok(format!("{port}/{proto}"))
}

/// Go durations as HEALTHCHECK takes them; one parser for every duration.
pub use crate::util::time::parse_duration;

/// The first line of an instruction, shortened for progress and errors.
fn short(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() > 120 {
        let cut: String = first.chars().take(117).collect();
        format!("{cut}...")
    } else {
        first.to_string()
    }
}

/// Builds the target stage of `file` and writes the image.
pub fn run_build(
    store: &Store,
    opts: &BuildOptions,
    file: &Dockerfile,
    progress: &mut dyn Progress,
) -> Result<BuildResult> {
    let ignore = match &opts.context {
        Some(ctx) => Ignore::for_build(ctx, opts.dockerfile_path.as_deref())
            .map_err(|e| BuildError::io(ctx.join(".dockerignore"), e))?,
        None => Ignore::default(),
    };
    // tags are checked before any work
    for t in &opts.tags {
        Reference::parse(t)?;
    }
    // BuildKit's automatic platform ARGs: usable in FROM, and in a stage after `ARG NAME`
    let mut meta_args: Vec<(String, String)> = PLATFORM_ARGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for step in &file.global_args {
        if let Instr::Arg(list) = &step.instr {
            for (name, default) in list {
                let env: Vec<String> = meta_args
                    .iter()
                    .map(|(k, v): &(String, String)| format!("{k}={v}"))
                    .collect();
                let default = default
                    .as_ref()
                    .map(|d| expand::word(d, &env, file.escape).unwrap_or_else(|_| d.clone()));
                if let Some(v) = opts.build_args.get(name).cloned().or(default) {
                    meta_args.retain(|(k, _)| k != name);
                    meta_args.push((name.clone(), v));
                }
            }
        }
    }
    let mut b = Builder {
        store,
        opts,
        file,
        progress,
        ignore,
        meta_args,
        results: HashMap::new(),
        used_args: file
            .global_args
            .iter()
            .flat_map(|s| match &s.instr {
                Instr::Arg(l) => l.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect(),
        next_id: 0,
        steps: 0,
        cached: 0,
    };
    let target = match &opts.target {
        Some(t) => b
            .stage_index(t)
            .filter(|_| t.parse::<usize>().is_err())
            .ok_or_else(|| {
                BuildError::BadOption(format!(
                    "target stage {t:?} is not in the Dockerfile (stages: {})",
                    b.stage_names()
                ))
            })?,
        None => file.stages.len() - 1,
    };
    b.build_stage(target)?;
    let state = b.results.remove(&target).expect("built");
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !b.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
        .collect();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        b.progress.note(&format!(
            "warning: build args not used by any ARG: {}",
            list.join(", ")
        ));
    }
    let id = b.begin("exporting to image");
    let started = Instant::now();
    let image = b.write_image(state)?;
    b.progress.step_output(
        id,
        started.elapsed(),
        &format!("writing image {}", image.id),
    );
    for n in &image.names {
        b.progress
            .step_output(id, started.elapsed(), &format!("naming to {n}"));
    }
    b.progress.step_done(id, started.elapsed());
    Ok(BuildResult {
        id: image.id.clone(),
        image,
        steps: b.steps,
        cached: b.cached,
    })
}

const PLATFORM_ARGS: &[(&str, &str)] = &[
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
];

/// Proxy variables every build accepts without an ARG.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_helpers() {
        assert_eq!(clean_abs("/app/../srv/./x/"), "/srv/x");
        assert_eq!(normalize_port("5000").unwrap(), "5000/tcp");
        assert_eq!(normalize_port("53/UDP").unwrap(), "53/udp");
        assert!(normalize_port("http").is_err());
        assert!(normalize_port("80/icmp").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("10").is_err());
        assert_eq!(
            go_quoted(&["flask".into(), "run".into()]),
            r#"["flask" "run"]"#
        );
        assert_eq!(heredoc_name("COPY <<EOF <<'two' /d/", 1), "two");
    }

    #[test]
    fn parents_pivot_and_git_sources() {
        let kept = |src: &str, rel: &str| parents_kept(src, Path::new(rel));
        assert_eq!(kept("./x/a.txt", "x/a.txt"), PathBuf::from("x/a.txt"));
        assert_eq!(kept("./x/./y/*.txt", "x/y/b.txt"), PathBuf::from("y/b.txt"));
        assert_eq!(
            kept("/app/./out/bin", "app/out/bin"),
            PathBuf::from("out/bin")
        );
        assert_eq!(
            kept("src/**/*.txt", "src/x/b.txt"),
            PathBuf::from("src/x/b.txt")
        );
        for git in [
            "https://github.com/moby/buildkit.git#v0.10.1",
            "https://example.com/repo.git",
            "git@github.com:moby/buildkit.git",
            "git://example.com/r",
            "ssh://git@example.com/r",
        ] {
            assert!(is_git_source(git), "{git}");
        }
        for not_git in ["https://example.com/a.tar.gz", "repo.git", "./x.git"] {
            assert!(!is_git_source(not_git), "{not_git}");
        }
    }
}
