//! `commit`: a container's filesystem changes become a new image layer on top of
//! its image, as `docker commit` makes them. The container is frozen while its
//! upper dir is read (unless asked not to), the layer goes through the same
//! ingest as any other, and the config is the image's with what the container
//! was run with (env, command, entrypoint, workdir, user) and `--change`s on top.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::BufWriter;

use serde_json::{json, Value};

use super::{pause, Container, ContainerError, Result};
use crate::image::layer::write_image_named;
use crate::image::{changes, ingest, Image, ImageError, Reference};
use crate::layer::tree;
use crate::store::{Store, StoreError};
use crate::util::time::now_rfc3339;

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// REPOSITORY[:TAG]; none makes an unnamed image.
    pub reference: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// Dockerfile instructions for the config (`CMD ...`, `ENV ...`).
    pub changes: Vec<String>,
    /// Freeze a running container while its changes are read (Docker's default).
    pub pause: bool,
}

pub fn commit(store: &Store, container: &Container, opts: &CommitOptions) -> Result<Image> {
    let names = match &opts.reference {
        Some(r) => vec![Reference::parse(r)?],
        None => Vec::new(),
    };
    if container.id_range.is_some() {
        // its writable layer holds the host's ids of its range, not the image's
        return Err(ContainerError::BadOption(format!(
            "commit of container {} is not supported: it runs with --userns=auto; copy its files out with `cp` or run it with --userns=host",
            container.name
        )));
    }
    let base = Image::resolve(store, &container.image_id)?;
    let config = image_config(&base, container, opts)?;
    let frozen = opts.pause && !pause::is_paused(container) && pause::pause(container).is_ok();
    let layer = layer_from_upper(store, container, &base);
    if frozen {
        let _ = pause::unpause(container);
    }
    let mut config = config;
    let layer = layer?;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .ok_or_else(|| bad_config(&base, "rootfs.diff_ids is not a list"))?
        .push(json!(layer.diff_id.to_string()));
    let config: crate::oci::ImageConfiguration =
        serde_json::from_value(config).map_err(|e| bad_config(&base, &e.to_string()))?;
    let mut layers = base.layers.clone();
    layers.push(layer);
    Ok(write_image_named(store, &names, &config, &layers)?)
}

fn bad_config(base: &Image, message: &str) -> ContainerError {
    ImageError::BadConfig {
        digest: base.id.to_string(),
        message: message.to_string(),
    }
    .into()
}

/// The upper dir as a layer tar (whiteouts as `.wh.` entries), stored on top of
/// the image's layers.
fn layer_from_upper(
    store: &Store,
    container: &Container,
    base: &Image,
) -> Result<crate::image::LayerInfo> {
    let tmp = store.temp_dir("commit")?;
    let result = (|| {
        let tar_path = tmp.join("layer.tar");
        let file = File::create(&tar_path).map_err(|e| StoreError::io(&tar_path, e))?;
        tree::write_tar(&container.upper(), &HashSet::new(), BufWriter::new(file)).map_err(
            |e| ContainerError::Io {
                path: container.upper(),
                source: e,
            },
        )?;
        let tar = File::open(&tar_path).map_err(|e| StoreError::io(&tar_path, e))?;
        let parent = base.layers.last().map(|l| &l.chain_id);
        Ok(ingest::ingest_tar(store, parent, tar, &mut |_| {})?.layer)
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// The image's config with the container's run settings, a history entry, the
/// author and the changes applied.
fn image_config(base: &Image, c: &Container, opts: &CommitOptions) -> Result<Value> {
    let mut v = serde_json::to_value(&base.config).map_err(|e| bad_config(base, &e.to_string()))?;
    let created = now_rfc3339();
    if !v.get("config").is_some_and(Value::is_object) {
        v["config"] = json!({});
    }
    let cfg = v["config"].as_object_mut().expect("object");
    let o = &c.options;
    for kv in &o.env {
        changes::set_env(cfg, kv);
    }
    if let Some(ep) = &o.entrypoint {
        cfg.insert("Entrypoint".into(), json!([ep]));
    }
    if !o.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(o.cmd));
    }
    if let Some(w) = &o.workdir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &o.user {
        cfg.insert("User".into(), json!(u));
    }
    changes::apply_all(&mut v, &opts.changes)?;
    v["created"] = json!(created);
    if let Some(a) = &opts.author {
        v["author"] = json!(a);
    }
    let mut entry = json!({"created": created, "created_by": c.args.join(" ")});
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
    }
    if let Some(m) = &opts.message {
        entry["comment"] = json!(m);
    }
    match v.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(entry),
        None => v["history"] = json!([entry]),
    }
    Ok(v)
}
