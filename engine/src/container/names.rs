//! Container ids and names, with Docker's rules.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{ContainerError, Result};

/// A new 64-hex-digit container id.
pub fn new_id() -> String {
    crate::util::id::random_hex(32)
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, optionally with a leading '/'.
pub fn validate_name(name: &str) -> Result<String> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let ok = n.len() >= 2
        && n.len() <= 128
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(n.to_string())
    } else {
        Err(ContainerError::BadName(name.to_string()))
    }
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "patient", "quiet", "rapid", "serene", "steady", "tender", "vivid", "wise", "zesty",
];
const SCIENTISTS: &[&str] = &[
    "babbage", "curie", "dijkstra", "euler", "feynman", "goodall", "hopper", "hypatia", "knuth",
    "lamarr", "lovelace", "meitner", "noether", "pasteur", "ritchie", "shannon", "thompson",
    "torvalds", "turing", "wozniak",
];

/// A friendly random name like `keen_lovelace`.
pub fn random_name() -> String {
    let seed = u64::from_str_radix(&crate::util::id::random_hex(8), 16).unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
    });
    format!(
        "{}_{}",
        ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize],
        SCIENTISTS[((seed >> 16) % SCIENTISTS.len() as u64) as usize]
    )
}

/// A random name that `taken` refuses not: a few draws among the 400 pairs,
/// then a number after one (`keen_lovelace2`), as Docker does on collisions.
pub fn unused_random_name(taken: impl Fn(&str) -> bool) -> String {
    for _ in 0..32 {
        let n = random_name();
        if !taken(&n) {
            return n;
        }
    }
    let base = random_name();
    (2..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// `rename`: a new unique name for a container (its id and hostname stay).
pub fn rename(store: &crate::store::Store, container: &super::Container, new: &str) -> Result<()> {
    let new = validate_name(new)?;
    let _lock = store.lock()?;
    if let Some(other) = super::Container::list(store)?
        .into_iter()
        .find(|c| c.name == new)
    {
        return Err(ContainerError::NameInUse {
            name: new,
            id: other.id,
        });
    }
    let mut renamed = container.clone();
    renamed.name = new;
    renamed.save()?;
    crate::network::rename(&container.dir, &container.name, &renamed.name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        assert_eq!(validate_name("web-1").unwrap(), "web-1");
        assert_eq!(validate_name("/db.main_2").unwrap(), "db.main_2");
        for bad in ["", "a", "-x", "_x", "has space", "slash/x", "ü-name"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&random_name()).is_ok());
        assert_eq!(new_id().len(), 64);
    }

    #[test]
    fn unused_names_avoid_every_taken_one_even_when_all_pairs_are() {
        let every_pair: std::collections::HashSet<String> = ADJECTIVES
            .iter()
            .flat_map(|a| SCIENTISTS.iter().map(move |s| format!("{a}_{s}")))
            .collect();
        let n = unused_random_name(|n| every_pair.contains(n));
        assert!(!every_pair.contains(&n), "{n}");
        assert!(n.ends_with('2'), "{n}");
        assert!(validate_name(&n).is_ok());
        let one = unused_random_name(|n| n == "brave_lovelace");
        assert_ne!(one, "brave_lovelace");
    }
}
