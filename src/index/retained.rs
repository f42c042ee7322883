//! [`RetainedStore`]: the retained message of each topic, found by walking a topic filter.
//!
//! Concurrency: each shard owns the retained messages of the topics it is responsible for; only that
//! shard's thread touches its store. No locks.
//!
//! Shape: a trie over topic levels (literal levels only: topic names have no wildcards). A SUBSCRIBE's
//! filter walks it: a literal level follows one child, `+` every child, `#` the whole subtree. Topics whose
//! first level starts with `$` live under their own root, which a filter starting with `+` or `#` never
//! enters (MQTT 3.1.1 §4.7.2). Removing a topic's message prunes the nodes that no longer lead anywhere.

use std::fmt;

use smallvec::SmallVec;

use super::arena::{split_first_level, ArenaNode, LevelMap, NodeArena, NodeId};

/// Pending branches of a wildcard walk kept inline before spilling to the heap.
const WALK_STACK_INLINE: usize = 32;

/// Initial capacity of the buffer a wildcard walk rebuilds topic names in.
const TOPIC_BUFFER_BYTES: usize = 128;

/// Retained values (messages) by topic name, searchable by topic filter.
pub struct RetainedStore<V> {
    /// Every node of both roots.
    nodes: NodeArena<RetainedNode<V>>,
    /// Root of topics whose first level does not start with `$`.
    root: NodeId,
    /// Root of topics whose first level starts with `$`; only filters starting with a literal `$...` enter.
    dollar_root: NodeId,
    /// Number of topics holding a value.
    value_count: usize,
}

/// One topic level of the store.
struct RetainedNode<V> {
    /// Children by level.
    children: LevelMap,
    /// The retained value of the topic ending at this node.
    value: Option<V>,
}

impl<V> Default for RetainedNode<V> {
    fn default() -> Self {
        Self {
            children: LevelMap::default(),
            value: None,
        }
    }
}

impl<V> ArenaNode for RetainedNode<V> {
    fn is_vacant(&self) -> bool {
        self.children.is_empty() && self.value.is_none()
    }
}

/// What is left of the filter when a wildcard walk reaches a node.
#[derive(Clone, Copy)]
enum FilterRest<'f> {
    /// These filter levels remain to be matched; `None` once the filter is exhausted.
    Levels(Option<&'f str>),
    /// Below a `#`: the node and all its descendants match.
    Subtree,
}

/// A node a wildcard walk still has to visit.
#[derive(Clone, Copy)]
struct WalkStep<'a> {
    /// The node to visit.
    node: NodeId,
    /// Length of the topic buffer up to the parent node.
    parent_topic_len: usize,
    /// The node's own level, `None` for a root.
    level: Option<&'a str>,
    /// Whether a `/` separates the parent's topic from `level` (false for first-level nodes).
    separated: bool,
    /// The filter levels still to match at this node.
    filter_rest: FilterRest<'a>,
}

impl<V> RetainedStore<V> {
    /// An empty store.
    pub fn new() -> Self {
        let mut nodes = NodeArena::new();
        let root = nodes.alloc();
        let dollar_root = nodes.alloc();
        Self {
            nodes,
            root,
            dollar_root,
            value_count: 0,
        }
    }

    /// Number of topics with a retained value.
    pub fn len(&self) -> usize {
        self.value_count
    }

    /// Whether no topic has a retained value.
    pub fn is_empty(&self) -> bool {
        self.value_count == 0
    }

    /// Number of live trie nodes, both roots included (memory diagnostics; 2 when empty).
    pub fn node_count(&self) -> usize {
        self.nodes.live_count()
    }

    fn root_for(&self, levels: &str) -> NodeId {
        if levels.starts_with('$') {
            self.dollar_root
        } else {
            self.root
        }
    }

    /// Stores `value` as `topic`'s retained value (a valid topic name); returns the one it replaces.
    pub fn set(&mut self, topic: &str, value: V) -> Option<V> {
        debug_assert_topic(topic);
        let mut node = self.root_for(topic);
        for level in topic.split('/') {
            let existing = self.nodes.get(node).children.get(level);
            node = match existing {
                Some(child) => child,
                None => {
                    let child = self.nodes.alloc();
                    self.nodes.get_mut(node).children.insert(level, child);
                    child
                }
            };
        }
        let replaced = self.nodes.get_mut(node).value.replace(value);
        if replaced.is_none() {
            self.value_count += 1;
        }
        replaced
    }

    /// Removes `topic`'s retained value and returns it, pruning nodes left empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        debug_assert_topic(topic);
        let mut path: SmallVec<[(NodeId, &str); 16]> = SmallVec::new();
        let mut node = self.root_for(topic);
        for level in topic.split('/') {
            let child = self.nodes.get(node).children.get(level)?;
            path.push((node, level));
            node = child;
        }
        let removed = self.nodes.get_mut(node).value.take()?;
        self.value_count -= 1;
        let mut child = node;
        while let Some((parent, level)) = path.pop() {
            if !self.nodes.get(child).is_vacant() {
                break;
            }
            self.nodes.free(child);
            let parent_node = self.nodes.get_mut(parent);
            parent_node.children.remove(level);
            child = parent;
        }
        Some(removed)
    }

    /// `topic`'s retained value.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = self.root_for(topic);
        for level in topic.split('/') {
            node = self.nodes.get(node).children.get(level)?;
        }
        self.nodes.get(node).value.as_ref()
    }

    /// Calls `f(topic, value)` for every retained value, `$` topics included (snapshots).
    pub fn for_each(&self, mut f: impl FnMut(&str, &V)) {
        self.for_each_match("#", &mut f);
        // `#` does not reach `$` topics [MQTT-4.7.2-1]: each first `$` level is walked on its own.
        let firsts: Vec<String> = self
            .nodes
            .get(self.dollar_root)
            .children
            .iter()
            .map(|(level, _)| format!("{level}/#"))
            .collect();
        for filter in firsts {
            self.for_each_match(&filter, &mut f);
        }
    }

    /// Calls `f(topic, value)` for each retained value whose topic matches `filter` (a valid, non-shared
    /// topic filter). The order is unspecified.
    ///
    /// A filter without wildcards is a single lookup; a wildcard filter walks only the matching subtrees and
    /// rebuilds each topic name in one buffer allocated per call (this runs per SUBSCRIBE, not per publish).
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        if !filter.contains(['+', '#']) {
            if let Some(value) = self.get(filter) {
                f(filter, value);
            }
            return;
        }
        let mut topic = String::with_capacity(TOPIC_BUFFER_BYTES);
        let mut pending: SmallVec<[WalkStep<'_>; WALK_STACK_INLINE]> = SmallVec::new();
        pending.push(WalkStep {
            node: self.root_for(filter),
            parent_topic_len: 0,
            level: None,
            separated: false,
            filter_rest: FilterRest::Levels(Some(filter)),
        });
        while let Some(step) = pending.pop() {
            topic.truncate(step.parent_topic_len);
            if let Some(level) = step.level {
                if step.separated {
                    topic.push('/');
                }
                topic.push_str(level);
            }
            let node = self.nodes.get(step.node);
            let child_step = |node, level, filter_rest| WalkStep {
                node,
                parent_topic_len: topic.len(),
                level: Some(level),
                separated: step.level.is_some(),
                filter_rest,
            };
            match step.filter_rest {
                FilterRest::Subtree => {
                    if let Some(value) = &node.value {
                        f(&topic, value);
                    }
                    for (level, child) in node.children.iter() {
                        pending.push(child_step(child, level, FilterRest::Subtree));
                    }
                }
                FilterRest::Levels(None) => {
                    if let Some(value) = &node.value {
                        f(&topic, value);
                    }
                }
                FilterRest::Levels(Some(levels)) => {
                    let (level, next) = split_first_level(levels);
                    match level {
                        "#" => {
                            // `a/#` matches `a` itself, then everything below it.
                            if let Some(value) = &node.value {
                                f(&topic, value);
                            }
                            for (level, child) in node.children.iter() {
                                pending.push(child_step(child, level, FilterRest::Subtree));
                            }
                        }
                        "+" => {
                            for (level, child) in node.children.iter() {
                                pending.push(child_step(child, level, FilterRest::Levels(next)));
                            }
                        }
                        _ => {
                            if let Some(child) = node.children.get(level) {
                                pending.push(child_step(child, level, FilterRest::Levels(next)));
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RetainedStore<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedStore")
            .field("topics", &self.value_count)
            .field("nodes", &self.nodes.live_count())
            .finish_non_exhaustive()
    }
}

fn debug_assert_topic(topic: &str) {
    debug_assert!(
        crate::topic::validate_topic_name(topic).is_ok(),
        "RetainedStore needs a valid topic name, got {topic:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn matched(store: &RetainedStore<u32>, filter: &str) -> Vec<(String, u32)> {
        let mut found = Vec::new();
        store.for_each_match(filter, |topic, value| {
            found.push((topic.to_owned(), *value))
        });
        found.sort_unstable();
        found
    }

    #[test]
    fn set_get_replace_remove() {
        let mut store = RetainedStore::new();
        assert!(store.is_empty());
        assert_eq!(store.set("a/b", 1), None);
        assert_eq!(store.set("a/b", 2), Some(1));
        assert_eq!(store.set("a", 3), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("a/b"), Some(&2));
        assert_eq!(store.get("a/c"), None);
        assert_eq!(store.get("a/b/c"), None);
        assert_eq!(store.remove("a/b/c"), None);
        assert_eq!(store.remove("a/b"), Some(2));
        assert_eq!(store.remove("a/b"), None);
        assert_eq!(store.get("a"), Some(&3));
        assert_eq!(store.remove("a"), Some(3));
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 2);
    }

    #[test]
    fn wildcard_walks_follow_the_oracle() {
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
            "//",
        ];
        let filters = [
            "#", "+", "+/+", "/#", "/+", "+/", "a", "a/", "a/#", "a/+", "a/b", "a/+/c", "a//b",
            "+/b/#", "$SYS/#", "$SYS/+", "$SYS", "$x/+/#", "+/$x", "a/$x", "+/+/+", "//", "+//",
            "+/#",
        ];
        let mut store = RetainedStore::new();
        for (value, topic) in (0u32..).zip(topics) {
            store.set(topic, value);
        }
        for filter in filters {
            let mut expected: Vec<_> = (0u32..)
                .zip(topics)
                .filter(|(_, topic)| matches(filter, topic))
                .map(|(value, topic)| (topic.to_owned(), value))
                .collect();
            expected.sort_unstable();
            assert_eq!(matched(&store, filter), expected, "filter {filter:?}");
        }
    }

    #[test]
    fn root_wildcards_do_not_return_dollar_topics() {
        let mut store = RetainedStore::new();
        store.set("$SYS/broker/uptime", 1);
        store.set("home/temp", 2);
        assert_eq!(matched(&store, "#"), vec![("home/temp".to_owned(), 2)]);
        assert_eq!(matched(&store, "+/broker/+"), vec![]);
        assert_eq!(
            matched(&store, "$SYS/#"),
            vec![("$SYS/broker/uptime".to_owned(), 1)]
        );
    }

    #[test]
    fn very_deep_topics_do_not_overflow_the_stack() {
        let deep = "/".repeat(30_000);
        let mut store = RetainedStore::new();
        store.set(&deep, 1);
        assert_eq!(matched(&store, "#"), vec![(deep.clone(), 1)]);
        assert_eq!(store.remove(&deep), Some(1));
        assert_eq!(store.node_count(), 2);
        store.set(&deep, 2);
        drop(store);
    }
}
