//! [`SubscriptionTrie`]: topic filters (with their subscribers) indexed by level, matched against topics.
//!
//! Concurrency: a trie is owned by one shard and touched only by that shard's thread; it is `Send` (it
//! can be built on one thread and moved) but never shared, and takes no locks.
//!
//! Shape (after FlashMQ's subscription tree): each node has its literal children (inline while there is
//! one, scanned while few, hashed when many), a separate `+` child and a separate `#` child whose
//! subscribers match the node's path and everything below it. Filters whose first level starts with `$`
//! live under their own root, so a publish to `$SYS/...` never visits the `+` and `#` subscriptions of the
//! main root (MQTT 3.1.1 §4.7.2).
//!
//! Matching a topic walks only the paths the topic can take (the literal child and the `+` child at each
//! level, plus the `#` child's subscribers), with an explicit stack that stays inline for topics of
//! reasonable depth: no allocation per publish and no scan over all filters. Removing the last subscriber
//! of a filter prunes the nodes that no longer lead anywhere.

use std::fmt;
use std::hash::Hash;

use smallvec::SmallVec;

use super::arena::{split_first_level, ArenaNode, LevelMap, NodeArena, NodeId};

/// A subscriber set with more entries than this switches from a vector to a hash map.
const SUBSCRIBERS_MAP_ABOVE: usize = 16;
/// A hash-map subscriber set shrinking to this many entries switches back to a vector (hysteresis, so a
/// set hovering around the threshold does not convert on every change).
const SUBSCRIBERS_VEC_AT: usize = 4;

/// Pending branches of a match walk kept inline before spilling to the heap: one per level of depth
/// plus one, so topics up to ~30 levels never allocate.
const MATCH_STACK_INLINE: usize = 32;

/// Maps (topic filter, key) to a value and finds every entry whose filter matches a topic.
///
/// `K` identifies the subscriber (a session slot on a shard, a shard id in an [`crate::index::InterestMap`]),
/// `V` is what the caller keeps per subscription (QoS and options, a reference count).
///
/// Filters must be valid ([`crate::topic::validate_topic_filter`]) and not shared: strip `$share/{group}/`
/// before inserting. Debug builds assert this.
pub struct SubscriptionTrie<K, V> {
    /// Every node of both roots.
    nodes: NodeArena<TrieNode<K, V>>,
    /// Root of filters whose first level does not start with `$` (including `+` and `#` ones).
    root: NodeId,
    /// Root of filters whose first level starts with `$`; topics starting with `$` are matched only here.
    dollar_root: NodeId,
    /// Number of (filter, key) entries.
    entry_count: usize,
    /// Number of distinct filters with at least one entry.
    filter_count: usize,
}

/// One level of the trie.
struct TrieNode<K, V> {
    /// Children by literal level.
    literal_children: LevelMap,
    /// The `+` child: filters with a single-level wildcard at the next level.
    single_level_child: Option<NodeId>,
    /// The `#` child: its `subscribers` are those of this node's path followed by `/#` (of `#` alone at the
    /// main root). It never has children of its own.
    multi_level_child: Option<NodeId>,
    /// Subscribers whose filter ends at this node.
    subscribers: Subscribers<K, V>,
}

impl<K, V> Default for TrieNode<K, V> {
    fn default() -> Self {
        Self {
            literal_children: LevelMap::default(),
            single_level_child: None,
            multi_level_child: None,
            subscribers: Subscribers::default(),
        }
    }
}

impl<K, V> ArenaNode for TrieNode<K, V> {
    fn is_vacant(&self) -> bool {
        self.literal_children.is_empty()
            && self.single_level_child.is_none()
            && self.multi_level_child.is_none()
            && self.subscribers.is_empty()
    }
}

/// The subscribers of one filter: a vector while small (the first entry inline, fast to scan), a hash map
/// when large, so removing one of 100k fan-out subscribers is O(1).
enum Subscribers<K, V> {
    /// At most [`SUBSCRIBERS_MAP_ABOVE`] entries, unordered, keys distinct.
    Few(SmallVec<[(K, V); 1]>),
    /// More entries than a vector scan suits.
    Many(Box<ahash::AHashMap<K, V>>),
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Self::Few(SmallVec::new())
    }
}

impl<K, V> Subscribers<K, V> {
    fn len(&self) -> usize {
        match self {
            Self::Few(entries) => entries.len(),
            Self::Many(map) => map.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Copy + Eq + Hash, V> Subscribers<K, V> {
    fn get(&self, key: K) -> Option<&V> {
        match self {
            Self::Few(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            Self::Many(map) => map.get(&key),
        }
    }

    fn get_mut(&mut self, key: K) -> Option<&mut V> {
        match self {
            Self::Few(entries) => entries.iter_mut().find(|(k, _)| *k == key).map(|(_, v)| v),
            Self::Many(map) => map.get_mut(&key),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Self::Few(entries) => {
                if let Some((_, existing)) = entries.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(existing, value));
                }
                if entries.len() < SUBSCRIBERS_MAP_ABOVE {
                    entries.push((key, value));
                } else {
                    let mut map: ahash::AHashMap<K, V> = entries.drain(..).collect();
                    map.insert(key, value);
                    *self = Self::Many(Box::new(map));
                }
                None
            }
            Self::Many(map) => map.insert(key, value),
        }
    }

    fn remove(&mut self, key: K) -> Option<V> {
        match self {
            Self::Few(entries) => {
                let position = entries.iter().position(|(k, _)| *k == key)?;
                let (_, value) = entries.swap_remove(position);
                // Moves a last entry back inline and frees a spilled buffer: the node may live on.
                entries.shrink_to_fit();
                Some(value)
            }
            Self::Many(map) => {
                let value = map.remove(&key)?;
                if map.len() <= SUBSCRIBERS_VEC_AT {
                    *self = Self::Few(map.drain().collect());
                }
                Some(value)
            }
        }
    }

    fn for_each(&self, f: &mut impl FnMut(K, &V)) {
        match self {
            Self::Few(entries) => entries.iter().for_each(|(k, v)| f(*k, v)),
            Self::Many(map) => map.iter().for_each(|(k, v)| f(*k, v)),
        }
    }
}

/// How a walk went from a parent node to a child, to undo it when pruning.
#[derive(Clone, Copy)]
enum Edge<'f> {
    /// Through the literal level.
    Literal(&'f str),
    /// Through the `+` child.
    SingleLevel,
    /// Through the `#` child.
    MultiLevel,
}

/// Which child a filter level leads to.
fn edge_for(level: &str, last: bool) -> Edge<'_> {
    match level {
        "+" => Edge::SingleLevel,
        "#" if last => Edge::MultiLevel,
        _ => Edge::Literal(level),
    }
}

impl<K, V> TrieNode<K, V> {
    fn child(&self, edge: Edge<'_>) -> Option<NodeId> {
        match edge {
            Edge::Literal(level) => self.literal_children.get(level),
            Edge::SingleLevel => self.single_level_child,
            Edge::MultiLevel => self.multi_level_child,
        }
    }

    fn set_child(&mut self, edge: Edge<'_>, child: NodeId) {
        match edge {
            Edge::Literal(level) => self.literal_children.insert(level, child),
            Edge::SingleLevel => self.single_level_child = Some(child),
            Edge::MultiLevel => self.multi_level_child = Some(child),
        }
    }

    fn remove_child(&mut self, edge: Edge<'_>) {
        match edge {
            Edge::Literal(level) => self.literal_children.remove(level),
            Edge::SingleLevel => self.single_level_child = None,
            Edge::MultiLevel => self.multi_level_child = None,
        }
    }
}

impl<K, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        let mut nodes = NodeArena::new();
        let root = nodes.alloc();
        let dollar_root = nodes.alloc();
        Self {
            nodes,
            root,
            dollar_root,
            entry_count: 0,
            filter_count: 0,
        }
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.entry_count
    }

    /// Whether there is no entry at all.
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// Number of distinct filters with at least one entry.
    pub fn filter_count(&self) -> usize {
        self.filter_count
    }

    /// Number of live trie nodes, both roots included (memory diagnostics; 2 when empty).
    pub fn node_count(&self) -> usize {
        self.nodes.live_count()
    }

    /// The root holding filters or topics whose first level is `levels`' first level.
    fn root_for(&self, levels: &str) -> NodeId {
        if levels.starts_with('$') {
            self.dollar_root
        } else {
            self.root
        }
    }

    /// The node `filter` ends at, without creating nodes; each step is reported to `on_step`.
    fn locate<'f>(
        &self,
        filter: &'f str,
        mut on_step: impl FnMut(NodeId, Edge<'f>),
    ) -> Option<NodeId> {
        let mut node = self.root_for(filter);
        let mut rest = Some(filter);
        while let Some(levels) = rest {
            let (level, next) = split_first_level(levels);
            let edge = edge_for(level, next.is_none());
            let child = self.nodes.get(node).child(edge)?;
            on_step(node, edge);
            node = child;
            rest = next;
        }
        Some(node)
    }

    /// The node `filter` ends at, creating missing nodes.
    fn locate_or_create(&mut self, filter: &str) -> NodeId {
        let mut node = self.root_for(filter);
        let mut rest = Some(filter);
        while let Some(levels) = rest {
            let (level, next) = split_first_level(levels);
            let edge = edge_for(level, next.is_none());
            node = match self.nodes.get(node).child(edge) {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc();
                    self.nodes.get_mut(node).set_child(edge, child);
                    child
                }
            };
            rest = next;
        }
        node
    }
}

impl<K: Copy + Eq + Hash, V> SubscriptionTrie<K, V> {
    /// Adds or replaces the entry for (`filter`, `key`); returns the replaced value (a re-subscribe).
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        debug_assert_filter(filter);
        let node = self.locate_or_create(filter);
        let subscribers = &mut self.nodes.get_mut(node).subscribers;
        let was_empty = subscribers.is_empty();
        let replaced = subscribers.insert(key, value);
        if replaced.is_none() {
            self.entry_count += 1;
            if was_empty {
                self.filter_count += 1;
            }
        }
        replaced
    }

    /// Removes the entry for (`filter`, `key`) and returns its value, pruning nodes left empty.
    pub fn remove(&mut self, filter: &str, key: K) -> Option<V> {
        debug_assert_filter(filter);
        let mut path: SmallVec<[(NodeId, Edge<'_>); 16]> = SmallVec::new();
        let node = self.locate(filter, |parent, edge| path.push((parent, edge)))?;
        let subscribers = &mut self.nodes.get_mut(node).subscribers;
        let removed = subscribers.remove(key)?;
        let now_empty = subscribers.is_empty();
        self.entry_count -= 1;
        if now_empty {
            self.filter_count -= 1;
        }
        let mut child = node;
        while let Some((parent, edge)) = path.pop() {
            if !self.nodes.get(child).is_vacant() {
                break;
            }
            self.nodes.free(child);
            self.nodes.get_mut(parent).remove_child(edge);
            child = parent;
        }
        Some(removed)
    }

    /// The value of the entry for (`filter`, `key`).
    pub fn get(&self, filter: &str, key: K) -> Option<&V> {
        let node = self.locate(filter, |_, _| {})?;
        self.nodes.get(node).subscribers.get(key)
    }

    /// The value of the entry for (`filter`, `key`), mutably (to update QoS or a count in place).
    pub fn get_mut(&mut self, filter: &str, key: K) -> Option<&mut V> {
        let node = self.locate(filter, |_, _| {})?;
        self.nodes.get_mut(node).subscribers.get_mut(key)
    }

    /// Whether `filter` has at least one entry.
    pub fn contains_filter(&self, filter: &str) -> bool {
        self.locate(filter, |_, _| {})
            .is_some_and(|node| !self.nodes.get(node).subscribers.is_empty())
    }

    /// Calls `f` once for each (filter, key) entry whose filter matches `topic` (a valid topic name).
    ///
    /// A key subscribed through several matching filters is reported once per filter; the caller merges
    /// (MQTT 5 §3.3.4 lets it deliver once with the highest QoS). The order is unspecified.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(K, &V)) {
        // (node reached, topic levels still to consume: `None` once the topic is exhausted)
        let mut pending: SmallVec<[(NodeId, Option<&str>); MATCH_STACK_INLINE]> = SmallVec::new();
        pending.push((self.root_for(topic), Some(topic)));
        while let Some((id, rest)) = pending.pop() {
            let node = self.nodes.get(id);
            // `path/#` matches everything below `path` and `path` itself.
            if let Some(multi_level) = node.multi_level_child {
                self.nodes.get(multi_level).subscribers.for_each(&mut f);
            }
            let Some(levels) = rest else {
                node.subscribers.for_each(&mut f);
                continue;
            };
            let (level, next) = split_first_level(levels);
            if let Some(child) = node.single_level_child {
                pending.push((child, next));
            }
            if let Some(child) = node.literal_children.get(level) {
                pending.push((child, next));
            }
        }
    }
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("entries", &self.entry_count)
            .field("filters", &self.filter_count)
            .field("nodes", &self.nodes.live_count())
            .finish_non_exhaustive()
    }
}

fn debug_assert_filter(filter: &str) {
    debug_assert!(
        crate::topic::validate_topic_filter(filter).is_ok()
            && crate::topic::parse_shared(filter).is_none(),
        "SubscriptionTrie needs a valid, non-shared topic filter, got {filter:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn matched(
        trie: &SubscriptionTrie<u32, &'static str>,
        topic: &str,
    ) -> Vec<(u32, &'static str)> {
        let mut found = Vec::new();
        trie.for_each_match(topic, |key, value| found.push((key, *value)));
        found.sort_unstable();
        found
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut trie = SubscriptionTrie::new();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/b", 1, "q0"), None);
        assert_eq!(trie.insert("a/b", 1, "q1"), Some("q0"));
        assert_eq!(trie.insert("a/b", 2, "q2"), None);
        assert_eq!(trie.insert("a/#", 1, "all"), None);
        assert_eq!((trie.len(), trie.filter_count()), (3, 2));
        assert_eq!(trie.get("a/b", 1), Some(&"q1"));
        assert_eq!(trie.get("a/b", 3), None);
        assert_eq!(trie.get("a/c", 1), None);
        assert!(trie.contains_filter("a/#"));
        assert!(!trie.contains_filter("a"));
        if let Some(value) = trie.get_mut("a/b", 2) {
            *value = "q2'";
        }
        assert_eq!(
            matched(&trie, "a/b"),
            vec![(1, "all"), (1, "q1"), (2, "q2'")]
        );
        assert_eq!(trie.remove("a/b", 3), None);
        assert_eq!(trie.remove("x/y", 1), None);
        assert_eq!(trie.remove("a/b", 1), Some("q1"));
        assert_eq!(trie.remove("a/b", 1), None);
        assert_eq!((trie.len(), trie.filter_count()), (2, 2));
        assert_eq!(trie.remove("a/b", 2), Some("q2'"));
        assert_eq!(trie.remove("a/#", 1), Some("all"));
        assert!(trie.is_empty());
        assert_eq!(trie.filter_count(), 0);
        assert_eq!(trie.node_count(), 2);
    }

    #[test]
    fn matches_follow_the_oracle_on_the_topic_tables() {
        let filters = [
            "#", "+", "+/+", "/#", "/+", "+/", "a", "a/", "a/#", "a/+", "a/b", "a/+/c", "a//b",
            "+/b/#", "$SYS/#", "$SYS/+", "$SYS", "$x/+/#", "+/$x", "a/$x",
        ];
        let topics = [
            "a",
            "a/",
            "/a",
            "/",
            "a/b",
            "a/b/c",
            "a//b",
            "x/b/y",
            "$SYS",
            "$SYS/load",
            "$SYS/a/b",
            "$x/a",
            "a/$x",
            "b",
        ];
        let mut trie = SubscriptionTrie::new();
        for (key, filter) in (0u32..).zip(filters) {
            trie.insert(filter, key, filter);
        }
        for topic in topics {
            let expected: Vec<_> = (0u32..)
                .zip(filters)
                .filter(|(_, filter)| matches(filter, topic))
                .collect();
            assert_eq!(matched(&trie, topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn dollar_topics_skip_root_wildcards() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("#", 1, "hash");
        trie.insert("+/monitor/Clients", 2, "plus");
        trie.insert("$SYS/monitor/+", 3, "sys");
        assert_eq!(matched(&trie, "$SYS/monitor/Clients"), vec![(3, "sys")]);
        assert_eq!(
            matched(&trie, "x/monitor/Clients"),
            vec![(1, "hash"), (2, "plus")]
        );
    }

    #[test]
    fn a_key_through_several_filters_is_reported_per_filter() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("a/b", 7, "exact");
        trie.insert("a/+", 7, "plus");
        trie.insert("#", 7, "hash");
        assert_eq!(
            matched(&trie, "a/b"),
            vec![(7, "exact"), (7, "hash"), (7, "plus")]
        );
    }

    #[test]
    fn large_fan_out_switches_to_a_map_and_back() {
        let mut trie = SubscriptionTrie::new();
        for key in 0..100_000u32 {
            assert_eq!(trie.insert("fan/out", key, "s"), None);
        }
        assert_eq!(trie.len(), 100_000);
        assert_eq!(trie.filter_count(), 1);
        let mut count = 0;
        trie.for_each_match("fan/out", |_, _| count += 1);
        assert_eq!(count, 100_000);
        assert_eq!(trie.insert("fan/out", 42, "again"), Some("s"));
        for key in 0..99_998u32 {
            assert!(trie.remove("fan/out", key).is_some(), "key {key}");
        }
        assert_eq!(
            matched(&trie, "fan/out"),
            vec![(99_998, "s"), (99_999, "s")]
        );
        let node = trie
            .locate("fan/out", |_, _| {})
            .expect("filter is present");
        assert!(matches!(
            trie.nodes.get(node).subscribers,
            Subscribers::Few(_)
        ));
    }

    #[test]
    fn removing_everything_prunes_every_node() {
        let mut trie = SubscriptionTrie::new();
        let filters = [
            "a/b/c/d",
            "a/+/c",
            "a/#",
            "+/+/+",
            "$SYS/#",
            "//",
            "a/b/c/d/e/f/#",
        ];
        for round in 0..3u32 {
            for (key, filter) in (round..).zip(filters) {
                trie.insert(filter, key, "v");
                trie.insert(filter, key + 100, "v");
            }
            for (key, filter) in (round..round + 7).zip(filters).rev() {
                assert_eq!(trie.remove(filter, key + 100), Some("v"));
                assert_eq!(trie.remove(filter, key), Some("v"));
            }
            assert!(trie.is_empty());
            assert_eq!(trie.node_count(), 2, "round {round}");
        }
    }

    #[test]
    fn partial_removal_keeps_shared_prefixes() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("a/b/c", 1, "abc");
        trie.insert("a/b", 1, "ab");
        trie.insert("a/+/c", 1, "a+c");
        assert_eq!(trie.remove("a/b/c", 1), Some("abc"));
        assert_eq!(matched(&trie, "a/b"), vec![(1, "ab")]);
        assert_eq!(matched(&trie, "a/x/c"), vec![(1, "a+c")]);
        assert_eq!(trie.node_count(), 2 + 4);
    }

    #[test]
    fn very_deep_filters_do_not_overflow_the_stack() {
        // 30000 empty levels: a 30000-byte filter, well inside the 65535-byte limit.
        let deep = "/".repeat(30_000);
        let deep_hash = format!("{deep}/#");
        let mut trie = SubscriptionTrie::new();
        trie.insert(&deep, 1, "deep");
        trie.insert(&deep_hash, 2, "deep#");
        trie.insert("#", 3, "all");
        assert_eq!(
            matched(&trie, &deep),
            vec![(1, "deep"), (2, "deep#"), (3, "all")]
        );
        assert_eq!(trie.remove(&deep, 1), Some("deep"));
        assert_eq!(trie.remove(&deep_hash, 2), Some("deep#"));
        assert_eq!(trie.remove("#", 3), Some("all"));
        assert_eq!(trie.node_count(), 2);
        trie.insert(&deep, 1, "deep");
        drop(trie);
    }
}
