//! Where blobs were seen: `cache/blob-sources.json` maps a blob digest to the
//! `registry/repository` names it was pulled from or pushed to, so a push to
//! another repository of the same registry can ask for a mount instead of
//! uploading the bytes again (as Docker's distribution metadata does).

use std::collections::{BTreeMap, BTreeSet};

use crate::store::{atomic, Digest, Store};

const FILE: &str = "cache/blob-sources.json";
/// Enough to find a mount source; old names fall off.
const MAX_PER_BLOB: usize = 8;

type Sources = BTreeMap<String, BTreeSet<String>>;

fn read(store: &Store) -> Sources {
    // a missing or damaged cache only costs a mount: start afresh
    atomic::read_json(&store.root().join(FILE)).unwrap_or_default()
}

/// Repositories (`registry/repository`) known to hold `digest`.
pub fn lookup(store: &Store, digest: &Digest) -> Vec<String> {
    read(store)
        .remove(digest.as_str())
        .map(|s| s.into_iter().collect())
        .unwrap_or_default()
}

/// Notes that each of `digests` is in `repository` (`registry/repository`).
pub fn record<'a>(store: &Store, repository: &str, digests: impl IntoIterator<Item = &'a Digest>) {
    let Ok(_lock) = store.lock() else { return };
    let mut sources = read(store);
    for d in digests {
        let set = sources.entry(d.to_string()).or_default();
        set.insert(repository.to_string());
        while set.len() > MAX_PER_BLOB {
            let first = set.iter().next().cloned().expect("non-empty");
            set.remove(&first);
        }
    }
    if let Err(e) = atomic::write_json_atomic(&store.root().join(FILE), &sources) {
        tracing::warn!("cannot record blob sources: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        assert!(lookup(&store, &d).is_empty());
        record(&store, "127.0.0.1:5000/a", [&d]);
        record(&store, "127.0.0.1:5000/b", [&d]);
        assert_eq!(
            lookup(&store, &d),
            vec!["127.0.0.1:5000/a", "127.0.0.1:5000/b"]
        );
        assert!(lookup(&store, &Digest::of(b"y")).is_empty());
    }
}
