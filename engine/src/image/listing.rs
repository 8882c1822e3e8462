//! `images`: one row per name (and one per unnamed image) with Docker's field
//! names and texts, for `--format` templates.

use serde_json::{json, Value};

use super::{Image, Reference, Result};
use crate::store::refs::RefName;
use crate::store::Store;
use crate::template::units::{go_time, human_duration, human_size, human_size_digits, since};

/// Docker's default `images` table.
pub const TABLE: &str = "{{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}";
/// With `--digests`.
pub const TABLE_DIGESTS: &str =
    "{{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}";

pub fn titles() -> Value {
    json!({
        "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
        "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
        "Containers": "CONTAINERS",
    })
}

/// One image under one name.
pub struct ImageEntry {
    pub image: Image,
    /// The familiar repository and tag, `<none>` for an unnamed image
    pub repository: String,
    pub tag: String,
    pub row: Value,
}

/// Every image, newest first as Docker lists them, unnamed ones (a `load` of
/// an untagged archive) among them.
/// `repository` keeps only the names of that repository (`images busybox`).
pub fn list(store: &Store, repository: Option<&str>, no_trunc: bool) -> Result<Vec<ImageEntry>> {
    let mut out = Vec::new();
    let wanted = repository.map(Reference::parse).transpose()?;
    // `images REPO` lists every tag of REPO; `images REPO:TAG` that one (the
    // parsed reference says latest either way)
    let tag_given =
        repository.is_some_and(|r| r.rsplit('/').next().is_some_and(|l| l.contains(':')));
    for (name, img) in Image::list(store)? {
        let r = Reference::parse(&name)?;
        if let Some(w) = &wanted {
            if w.familiar_repository() != r.familiar_repository() || (tag_given && w.tag != r.tag) {
                continue;
            }
        }
        let tag = r.tag.clone().unwrap_or_else(|| "<none>".into());
        out.push(entry(store, img, r.familiar_repository(), tag, no_trunc));
    }
    if wanted.is_none() {
        for m in store.read_index()?.manifests() {
            if m.full_name().is_none() {
                let img = Image::load(store, &crate::oci::digest_of(m)?)?;
                out.push(entry(
                    store,
                    img,
                    "<none>".into(),
                    "<none>".into(),
                    no_trunc,
                ));
            }
        }
    }
    // Docker's order: newest image first (an image without a creation time
    // last); the names of one image stay together in the index's order
    out.sort_by_key(|e| {
        std::cmp::Reverse(
            e.image
                .created()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()),
        )
    });
    Ok(out)
}

fn entry(
    store: &Store,
    image: Image,
    repository: String,
    tag: String,
    no_trunc: bool,
) -> ImageEntry {
    let bytes = image.unpacked_size(store);
    let size = human_size(bytes);
    let created = image.created().unwrap_or_default().to_string();
    let row = json!({
        "Containers": "N/A",
        "CreatedAt": go_time(&created),
        "CreatedSince": if created.is_empty() { "N/A".to_string() } else { format!("{} ago", human_duration(since(&created))) },
        "Digest": image.manifest_digest.to_string(),
        "ID": if no_trunc { image.id.to_string() } else { image.id.short().to_string() },
        "Repository": repository,
        "SharedSize": "N/A",
        "Size": size,
        "Tag": tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size_digits(bytes, 4),
    });
    ImageEntry {
        image,
        repository,
        tag,
        row,
    }
}
