//! `image inspect` and `history`: an image's metadata the way Docker shows it.

use serde_json::{json, Value};

use super::{dir_size, Image, Reference};
use crate::store::Store;

/// Docker-like JSON for one image (the fields scripts and courses read).
pub fn inspect(store: &Store, image: &Image) -> Value {
    let refs: Vec<Reference> = image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .collect();
    let repo_tags: Vec<String> = refs
        .iter()
        .filter(|r| r.tag.is_some())
        .map(|r| r.familiar())
        .collect();
    let mut repo_digests: Vec<String> = refs
        .iter()
        .map(|r| format!("{}@{}", r.familiar_repository(), image.manifest_digest))
        .collect();
    repo_digests.dedup();
    let config = &image.config;
    let comment = config
        .history()
        .as_ref()
        .and_then(|h| h.last())
        .and_then(|h| h.comment().clone())
        .unwrap_or_default();
    let manifest_size = store
        .index_entry(&image.manifest_digest)
        .ok()
        .flatten()
        .map(|m| (m.media_type().to_string(), m.size()));
    json!({
        "Id": image.id.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": comment,
        "Created": config.created(),
        "Author": config.author().clone().unwrap_or_default(),
        "Config": config.config(),
        "Architecture": config.architecture().to_string(),
        "Variant": config.variant(),
        "Os": config.os().to_string(),
        "Size": image.unpacked_size(store),
        "RootFS": {
            "Type": config.rootfs().typ(),
            "Layers": config.rootfs().diff_ids(),
        },
        "Layers": image.layers.iter().map(|l| json!({
            "Digest": l.blob.to_string(),
            "MediaType": l.media_type,
            "Size": l.blob_size,
            "DiffID": l.diff_id.to_string(),
            "ChainID": l.chain_id.to_string(),
            "Dir": store.layer_dir(&l.chain_id),
        })).collect::<Vec<_>>(),
        "Descriptor": manifest_size.map(|(media_type, size)| json!({
            "mediaType": media_type,
            "digest": image.manifest_digest.to_string(),
            "size": size,
        })),
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "LowerDir": image.lower_dirs(store).iter().map(|p| p.display().to_string())
                    .collect::<Vec<_>>().join(":"),
            }
        },
    })
}

/// One row of `history`, newest first as Docker prints it.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub created: Option<String>,
    pub created_by: String,
    pub comment: String,
    /// Unpacked bytes of the layer this step made; 0 for an empty layer.
    pub size: u64,
    pub empty_layer: bool,
}

/// The config's history with each non-empty step matched to its layer.
pub fn history(store: &Store, image: &Image) -> Vec<HistoryRow> {
    let mut layers = image.layers.iter();
    let mut rows: Vec<HistoryRow> = image
        .config
        .history()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                layers
                    .next()
                    .map(|l| dir_size(&store.layer_dir(&l.chain_id)))
                    .unwrap_or(0)
            };
            HistoryRow {
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                comment: h.comment().clone().unwrap_or_default(),
                size,
                empty_layer: empty,
            }
        })
        .collect();
    // layers the history does not describe (a hand-made image) still show
    for l in layers {
        rows.push(HistoryRow {
            created: None,
            created_by: String::new(),
            comment: format!("layer {}", l.diff_id.short()),
            size: dir_size(&store.layer_dir(&l.chain_id)),
            empty_layer: false,
        });
    }
    rows.reverse();
    rows
}
