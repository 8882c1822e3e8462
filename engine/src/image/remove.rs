//! `tag` and `rmi`: names come and go; an image goes when its last name does and
//! no container needs it, and then its blobs and layers that no other image
//! shares are collected.

use std::collections::HashSet;

use super::gc::{self, Candidates, GcReport, Holders};
use super::{Image, ImageError, Reference, Result};
use crate::store::{Digest, Store};

/// Points `target` at the image `source` names (a name or an id prefix).
pub fn tag(store: &Store, source: &str, target: &str) -> Result<Image> {
    let image = Image::resolve(store, source)?;
    let reference = Reference::parse(target)?;
    let entry = store
        .index_entry(&image.manifest_digest)?
        .ok_or_else(|| ImageError::NotFound(source.to_string()))?;
    let tag = reference
        .tag
        .clone()
        .or_else(|| reference.digest.clone())
        .unwrap_or_else(|| "latest".into());
    store.set_ref(
        &reference.full(),
        &tag,
        &image.manifest_digest,
        entry.size(),
        entry.media_type().as_ref(),
    )?;
    Image::load(store, &image.manifest_digest)
}

/// What `rmi` did for one argument, in Docker's words.
#[derive(Debug, Default, Clone)]
pub struct RemoveReport {
    /// Names removed, familiar form (busybox:latest).
    pub untagged: Vec<String>,
    /// The image id when the image itself is gone.
    pub deleted: Option<Digest>,
    pub collected: GcReport,
}

/// Removes an image name, or the image when given its id (`rmi`). Refuses an
/// image some container uses unless `force`, and an id with several names
/// unless `force`. Blobs and layers left unused (by images and `holders`) are
/// collected.
pub fn remove(
    store: &Store,
    input: &str,
    force: bool,
    holders: &dyn Holders,
) -> Result<RemoveReport> {
    let image = Image::resolve(store, input)?;
    let by_name = Reference::parse(input)
        .ok()
        .map(|r| r.full())
        .filter(|full| image.names.contains(full));
    let names_to_drop: Vec<String> = match &by_name {
        Some(full) => vec![full.clone()],
        None => {
            if image.names.len() > 1 && !force {
                return Err(ImageError::Conflict(format!(
                    "image {} is referenced by {} names ({}): remove them by name or use -f",
                    image.id.short(),
                    image.names.len(),
                    familiar_list(&image.names)
                )));
            }
            image.names.clone()
        }
    };
    let last_name = names_to_drop.len() >= image.names.len();
    if last_name && !force {
        let users: Vec<String> = holders
            .containers(store)?
            .into_iter()
            .filter(|c| c.image_id == image.id.as_str())
            .map(|c| c.label)
            .collect();
        if !users.is_empty() {
            return Err(ImageError::Conflict(format!(
                "image {} is used by container {}: remove the container first or use -f",
                input,
                users.join(", ")
            )));
        }
    }
    let mut report = RemoveReport::default();
    for name in &names_to_drop {
        if store.remove_ref(name)?.is_some() {
            report.untagged.push(familiar(name));
        }
    }
    crate::fault::point("rmi.untagged");
    if !last_name {
        return Ok(report);
    }
    // no names left: drop any unnamed entry too, then collect what it used
    store.remove_manifest_refs(&image.manifest_digest)?;
    let blobs: HashSet<Digest> = [image.manifest_digest.clone(), image.id.clone()]
        .into_iter()
        .chain(image.layers.iter().map(|l| l.blob.clone()))
        .collect();
    let layers: HashSet<Digest> = image.layers.iter().map(|l| l.chain_id.clone()).collect();
    report.collected = gc::collect(store, &Candidates::Only { blobs, layers }, holders)?;
    // another name or manifest may still hold the same config: then it is not deleted
    if report.collected.blobs.contains(&image.id) {
        report.deleted = Some(image.id.clone());
    }
    Ok(report)
}

fn familiar(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.to_string())
}

fn familiar_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| familiar(n))
        .collect::<Vec<_>>()
        .join(", ")
}
