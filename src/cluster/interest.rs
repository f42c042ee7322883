//! Who is interested in what, as the link sees it (sans-IO: the link does what the answers say).
//!
//! Two maps (docs/CLUSTER.md, "Interest exchange"):
//! - **local**: filter -> this node's shards with a subscription to it, learnt from the shards'
//!   `InterestAdd`/`InterestRemove` mail. It routes messages from other nodes to the shards that
//!   want them, and its distinct filters are this node's interest in the cluster's key-value bucket:
//!   [`KvChange`]s say when a filter enters or leaves it.
//! - **remote**: filter -> the other nodes interested, learnt from that bucket. It says which nodes a
//!   message goes to; [`ShardChange`]s say when a filter gains its first or loses its last remote node,
//!   which is when the shards are told that the link is (no longer) interested in it.
//!
//! Both are `index::InterestMap`s, the shards' own interest summary: the local one keyed by shard id,
//! the remote one by a small number given to each node name here.

use ahash::{AHashMap, AHashSet};
use sha2::{Digest, Sha256};

use crate::codec::Utf8Bytes;
use crate::index::{InterestMap, ShardSet};
use crate::router::ShardId;

/// The most nodes one link tells apart (the ids an `InterestMap` holds).
pub const MAX_NODES: usize = 1024;

/// A change to this node's keys in the interest bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvChange {
    /// The node is interested in `filter` now: put `key` with the filter as its value.
    Put { key: String, filter: Utf8Bytes },
    /// No session here subscribes to the filter of `key` any more: delete it.
    Delete { key: String },
}

/// A change in whether any other node is interested in a filter: what the shards are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardChange {
    Add(Utf8Bytes),
    Remove(Utf8Bytes),
}

/// Why a key of the interest bucket is not taken as a node's interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoteKeyError {
    #[error("it names no node (no `.`)")]
    NoNode,
    #[error("its node is one more than the {MAX_NODES} a node tells apart")]
    TooManyNodes,
}

/// The key of `node`'s interest in `filter`: `<node>.<first 128 bits of SHA-256(filter), hex>`. Key
/// names allow only `[-/_=.a-zA-Z0-9]`, which a filter may not keep to; the value holds the filter.
pub fn key_of(node: &str, filter: &str) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(filter.as_bytes());
    let mut key = String::with_capacity(node.len() + 33);
    key.push_str(node);
    key.push('.');
    for b in &digest[..16] {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// The keys of `known` not in `present` (a fresh read of the bucket).
pub fn absent<'a>(
    known: impl Iterator<Item = &'a String>,
    present: &AHashSet<String>,
) -> Vec<String> {
    known.filter(|k| !present.contains(*k)).cloned().collect()
}

/// The node a key belongs to.
pub fn node_of(key: &str) -> Option<&str> {
    key.split_once('.').map(|(node, _)| node)
}

#[derive(Default)]
pub struct Interest {
    /// This node's name: its own keys in the bucket are not remote interest.
    node: String,
    local: InterestMap,
    /// Each filter with local interest, and how many shards have it.
    local_filters: AHashMap<Utf8Bytes, u32>,
    /// Node name -> its number in `remote`, and back.
    node_ids: AHashMap<String, u16>,
    node_names: Vec<String>,
    remote: InterestMap,
    /// Each remote key seen in the bucket: its node's number and its filter.
    remote_keys: AHashMap<String, (u16, Utf8Bytes)>,
    /// Each filter with remote interest, and how many nodes have it.
    remote_filters: AHashMap<Utf8Bytes, u32>,
}

impl Interest {
    pub fn new(node: &str) -> Interest {
        Interest {
            node: node.to_owned(),
            ..Interest::default()
        }
    }

    /// Shard `shard` has a subscription to `filter` now (its first).
    pub fn local_add(&mut self, filter: &Utf8Bytes, shard: ShardId) -> Option<KvChange> {
        if !self.local.add(filter, shard) {
            return None;
        }
        let shards = self.local_filters.entry(filter.clone()).or_default();
        *shards += 1;
        (*shards == 1).then(|| KvChange::Put {
            key: key_of(&self.node, filter),
            filter: filter.clone(),
        })
    }

    /// Shard `shard` has no subscription to `filter` any more.
    pub fn local_remove(&mut self, filter: &Utf8Bytes, shard: ShardId) -> Option<KvChange> {
        if !self.local.remove(filter, shard) {
            return None;
        }
        let shards = self.local_filters.get_mut(filter)?;
        *shards -= 1;
        if *shards > 0 {
            return None;
        }
        self.local_filters.remove(filter);
        Some(KvChange::Delete {
            key: key_of(&self.node, filter),
        })
    }

    /// This node's keys in the bucket, as they should be.
    pub fn own_keys(&self) -> impl Iterator<Item = (String, &Utf8Bytes)> {
        self.local_filters
            .keys()
            .map(|f| (key_of(&self.node, f), f))
    }

    /// The shards here with a subscription matching `topic`.
    pub fn local_shards_for(&self, topic: &str) -> ShardSet {
        self.local.shards_for(topic)
    }

    /// The bucket holds `key` with the value `filter`. None when the key is this node's or known
    /// already.
    pub fn remote_put(
        &mut self,
        key: &str,
        filter: Utf8Bytes,
    ) -> Result<Option<ShardChange>, RemoteKeyError> {
        let node = node_of(key).ok_or(RemoteKeyError::NoNode)?;
        if node == self.node || self.remote_keys.contains_key(key) {
            return Ok(None);
        }
        let id = match self.node_ids.get(node) {
            Some(&id) => id,
            None if self.node_names.len() < MAX_NODES => {
                let id = self.node_names.len() as u16;
                self.node_names.push(node.to_owned());
                self.node_ids.insert(node.to_owned(), id);
                id
            }
            None => return Err(RemoteKeyError::TooManyNodes),
        };
        self.remote.add(&filter, id);
        self.remote_keys
            .insert(key.to_owned(), (id, filter.clone()));
        let nodes = self.remote_filters.entry(filter.clone()).or_default();
        *nodes += 1;
        Ok((*nodes == 1).then_some(ShardChange::Add(filter)))
    }

    /// The bucket no longer holds `key`.
    pub fn remote_delete(&mut self, key: &str) -> Option<ShardChange> {
        let (id, filter) = self.remote_keys.remove(key)?;
        self.remote.remove(&filter, id);
        let nodes = self.remote_filters.get_mut(&filter)?;
        *nodes -= 1;
        if *nodes > 0 {
            return None;
        }
        self.remote_filters.remove(&filter);
        Some(ShardChange::Remove(filter))
    }

    /// After reading the bucket's keys afresh (a new watch): forget the remote keys not among them.
    pub fn retain_remote(&mut self, present: &AHashSet<String>) -> Vec<ShardChange> {
        let gone = absent(self.remote_keys.keys(), present);
        gone.iter().filter_map(|k| self.remote_delete(k)).collect()
    }

    /// The other nodes with a subscription matching `topic`.
    pub fn remote_nodes_for(&self, topic: &str) -> impl Iterator<Item = &str> {
        self.remote
            .shards_for(topic)
            .iter()
            .map(|id| self.node_names[usize::from(id)].as_str())
    }

    /// Filters with remote interest (what the shards were told).
    pub fn remote_filters(&self) -> impl Iterator<Item = &Utf8Bytes> {
        self.remote_filters.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s)
    }

    #[test]
    fn keys_are_valid_bucket_keys_and_name_their_node() {
        let k = key_of("node-1", "a/+/ü/#");
        assert_eq!(node_of(&k), Some("node-1"));
        assert_eq!(k.len(), "node-1.".len() + 32);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)));
        assert_ne!(key_of("n", "a"), key_of("n", "b"));
        assert_eq!(key_of("n", "a"), key_of("n", "a"));
    }

    #[test]
    fn local_interest_is_put_once_and_deleted_with_its_last_shard() {
        let mut i = Interest::new("me");
        let put = i.local_add(&f("a/#"), 0);
        assert_eq!(
            put,
            Some(KvChange::Put {
                key: key_of("me", "a/#"),
                filter: f("a/#")
            })
        );
        assert_eq!(i.local_add(&f("a/#"), 1), None);
        assert_eq!(i.local_shards_for("a/b").len(), 2);
        assert_eq!(i.local_remove(&f("a/#"), 0), None);
        assert_eq!(i.local_remove(&f("a/#"), 0), None, "unknown: nothing");
        assert_eq!(
            i.local_remove(&f("a/#"), 1),
            Some(KvChange::Delete {
                key: key_of("me", "a/#")
            })
        );
        assert!(i.local_shards_for("a/b").is_empty());
        assert_eq!(i.own_keys().count(), 0);
    }

    #[test]
    fn remote_interest_tells_the_shards_on_its_first_and_last_node() {
        let mut i = Interest::new("me");
        assert_eq!(
            i.remote_put(&key_of("me", "x"), f("x")),
            Ok(None),
            "own key"
        );
        let (ka, kb) = (key_of("a", "s/+"), key_of("b", "s/+"));
        assert_eq!(
            i.remote_put(&ka, f("s/+")),
            Ok(Some(ShardChange::Add(f("s/+"))))
        );
        assert_eq!(i.remote_put(&ka, f("s/+")), Ok(None), "seen");
        assert_eq!(i.remote_put(&kb, f("s/+")), Ok(None));
        let mut nodes: Vec<&str> = i.remote_nodes_for("s/1").collect();
        nodes.sort();
        assert_eq!(nodes, ["a", "b"]);
        assert_eq!(i.remote_nodes_for("t/1").count(), 0);
        assert_eq!(i.remote_delete(&ka), None);
        assert_eq!(i.remote_nodes_for("s/1").collect::<Vec<_>>(), ["b"]);
        assert_eq!(i.remote_delete(&kb), Some(ShardChange::Remove(f("s/+"))));
        assert_eq!(i.remote_delete(&kb), None);
        assert_eq!(i.remote_put("nodot", f("z")), Err(RemoteKeyError::NoNode));
    }

    #[test]
    fn a_fresh_read_of_the_bucket_drops_what_went_meanwhile() {
        let mut i = Interest::new("me");
        let (k1, k2) = (key_of("a", "one"), key_of("a", "two"));
        i.remote_put(&k1, f("one")).unwrap();
        i.remote_put(&k2, f("two")).unwrap();
        let present: AHashSet<String> = [k2.clone()].into_iter().collect();
        assert_eq!(i.retain_remote(&present), [ShardChange::Remove(f("one"))]);
        assert_eq!(i.remote_filters().collect::<Vec<_>>(), [&f("two")]);
    }
}
