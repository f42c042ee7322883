//! The hash state of a session's maps (its subscriptions, its inbound QoS 2 ids): ahash with one
//! random seed per process, held in a static rather than in every map.
//!
//! Why: `ahash::AHashMap` carries its own `RandomState`, 32 bytes of keys in every map, and a session
//! has two maps that are empty for most clients. A million idle clients paid 64 MB for keys nobody
//! hashed (issue 18, memory per idle client; docs/PERFORMANCE.md). One seed per process keeps what the
//! per-map keys were for: a client cannot predict the hashes of its filters, so it cannot make its own
//! map degrade (nor anyone else's: every map shares the secret, none reveals it).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// A `HashMap` hashed with [`SeededState`]: the size of the table alone (32 bytes).
pub type SeededMap<K, V> = HashMap<K, V, SeededState>;

/// A zero-sized `BuildHasher` for the process's one random ahash seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeededState;

impl BuildHasher for SeededState {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static SEED: OnceLock<ahash::RandomState> = OnceLock::new();
        SEED.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_costs_its_table_only_and_hashes_consistently() {
        assert_eq!(std::mem::size_of::<SeededState>(), 0);
        assert!(std::mem::size_of::<SeededMap<u16, u64>>() <= 32);
        let mut m: SeededMap<String, u32> = SeededMap::default();
        for i in 0..1000 {
            m.insert(i.to_string(), i);
        }
        assert!((0..1000).all(|i| m.get(&i.to_string()) == Some(&i)));
        assert_eq!(
            SeededState.hash_one("a/b"),
            SeededState.hash_one("a/b"),
            "one seed for the process"
        );
    }
}
