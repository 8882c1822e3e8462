//! Chain ids: the identity of a layer together with every layer under it, as
//! the OCI image spec defines it (`ChainID(L0) = DiffID(L0)`,
//! `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`). An unpacked layer
//! lives under `layers/<chain-id>`.

use crate::store::Digest;

/// The chain id of a layer whose diff id is `diff_id`, on top of `parent` (the
/// chain id of the layers below; none for the bottom layer).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// The chain id of each layer, bottom first, from the image's diff ids.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let id = chain_id(out.last(), diff);
        out.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_chain_id_is_the_diff_id_and_each_next_hashes_parent_and_diff() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert_eq!(chain_id(Some(&ids[0]), &b), ids[1]);
        assert_eq!(chain_id(None, &b), b);
        assert!(chain_ids(&[]).is_empty());
    }
}
