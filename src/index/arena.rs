//! Node storage shared by the topic tries: a slab of nodes addressed by [`NodeId`], with a free list.
//!
//! Concurrency: owned by the one trie (and so the one shard) that allocated it.
//!
//! Why a slab and not `Box`ed children: a client controls how deep a filter or topic is (a 65535-byte
//! `////…` has 32768 levels). With boxed nodes, dropping or pruning such a chain recurses once per level and
//! can overflow a shard's stack; with a slab, nodes refer to each other by index, dropping is a flat loop and
//! every walk in this module's users is iterative. Freed slots are reused, so churn does not grow memory past
//! the peak number of live nodes.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::OnceLock;

use smallvec::SmallVec;

/// Handle of a node in a [`NodeArena`]: its slot index plus one, so `Option<NodeId>` is four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeId(NonZeroU32);

impl NodeId {
    fn slot(self) -> usize {
        // u32 -> usize is lossless on the 32- and 64-bit targets the broker supports.
        self.0.get() as usize - 1
    }
}

/// A node type the arena can reset when its slot is freed.
pub(crate) trait ArenaNode: Default {
    /// Whether the node holds nothing (no value, no subscriber, no child) and can be pruned.
    fn is_vacant(&self) -> bool;
}

/// Slab of trie nodes. Slots of removed nodes are reset to `N::default()` (dropping what they held) and
/// reused by the next allocation.
#[derive(Debug)]
pub(crate) struct NodeArena<N> {
    /// Every slot ever allocated, live or free; grows to the peak live count and no further.
    slots: Vec<N>,
    /// Slots freed by pruning, reused before `slots` grows.
    free_slots: Vec<NodeId>,
}

impl<N: ArenaNode> NodeArena<N> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free_slots: Vec::new(),
        }
    }

    /// A fresh empty node.
    ///
    /// # Panics
    /// When more than `u32::MAX - 1` nodes are live at once (hundreds of GiB of subscriptions).
    pub(crate) fn alloc(&mut self) -> NodeId {
        if let Some(id) = self.free_slots.pop() {
            return id;
        }
        let next = u32::try_from(self.slots.len() + 1)
            .ok()
            .and_then(NonZeroU32::new);
        let Some(next) = next else {
            panic!("topic trie exceeded {} nodes", u32::MAX - 1);
        };
        self.slots.push(N::default());
        NodeId(next)
    }

    /// Returns `id`'s slot to the free list, dropping what the node held.
    pub(crate) fn free(&mut self, id: NodeId) {
        self.slots[id.slot()] = N::default();
        self.free_slots.push(id);
    }

    pub(crate) fn get(&self, id: NodeId) -> &N {
        &self.slots[id.slot()]
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> &mut N {
        &mut self.slots[id.slot()]
    }

    /// Number of live (allocated, not freed) nodes.
    pub(crate) fn live_count(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }
}

/// Process-wide random hash keys for [`LevelMap`]s: a client cannot precompute colliding level names, and
/// each map stays 32 bytes (no per-map hasher state).
#[derive(Clone, Copy, Default)]
pub(crate) struct LevelHasher;

impl BuildHasher for LevelHasher {
    type Hasher = ahash::AHasher;

    fn build_hasher(&self) -> ahash::AHasher {
        static KEYS: OnceLock<ahash::RandomState> = OnceLock::new();
        KEYS.get_or_init(ahash::RandomState::new).build_hasher()
    }
}

/// Levels up to this many bytes are stored inside the map's slot, so a lookup does not chase a pointer to
/// compare keys.
const INLINE_LEVEL_BYTES: usize = 22;

/// A topic level as a map key: inline when short (the common case), boxed otherwise. Hashes and compares
/// as its bytes, so maps are probed with `level.as_bytes()` without building a key.
#[derive(Clone)]
pub(crate) enum LevelKey {
    /// `bytes[..len]` is the level.
    Inline {
        /// Length of the level in bytes, at most [`INLINE_LEVEL_BYTES`].
        len: u8,
        /// The level's bytes, zero-padded.
        bytes: [u8; INLINE_LEVEL_BYTES],
    },
    /// A level longer than [`INLINE_LEVEL_BYTES`].
    Boxed(Box<str>),
}

impl LevelKey {
    fn new(level: &str) -> Self {
        match u8::try_from(level.len()) {
            Ok(len) if level.len() <= INLINE_LEVEL_BYTES => {
                let mut bytes = [0; INLINE_LEVEL_BYTES];
                bytes[..level.len()].copy_from_slice(level.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Boxed(level.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Boxed(level) => level.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Built from a `&str` in `new`, so always UTF-8; the fallback is unreachable.
            Self::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Self::Boxed(level) => level,
        }
    }
}

impl PartialEq for LevelKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for LevelKey {}

impl Hash for LevelKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly like the `[u8]` it borrows as.
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for LevelKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A level map with more children than this switches from a vector to a hash map.
const LEVEL_MAP_HASHED_ABOVE: usize = 8;
/// A hashed level map shrinking to this many children switches back to a vector (hysteresis).
const LEVEL_MAP_LINEAR_AT: usize = 2;

/// Children of a trie node by literal level, e.g. `dev` in `site/1/dev/#`.
///
/// Most nodes have one child (`dev/{m}` → `temp`): it is stored inline, so a chain of single children costs
/// no allocation and a lookup reads no memory beyond the node. Up to [`LEVEL_MAP_HASHED_ABOVE`] children
/// are scanned linearly; more are hashed. Memory is given back as children go.
pub(crate) enum LevelMap {
    /// Few children, unordered, levels distinct; the first is inline.
    Linear(SmallVec<[(LevelKey, NodeId); 1]>),
    /// Many children.
    Hashed(HashMap<LevelKey, NodeId, LevelHasher>),
}

impl Default for LevelMap {
    fn default() -> Self {
        Self::Linear(SmallVec::new())
    }
}

impl LevelMap {
    pub(crate) fn get(&self, level: &str) -> Option<NodeId> {
        match self {
            Self::Linear(children) => children
                .iter()
                .find(|(key, _)| key.as_bytes() == level.as_bytes())
                .map(|(_, child)| *child),
            Self::Hashed(children) => children.get(level.as_bytes()).copied(),
        }
    }

    /// Adds `level` → `child`, replacing any child `level` had.
    pub(crate) fn insert(&mut self, level: &str, child: NodeId) {
        match self {
            Self::Linear(children) => {
                if let Some(existing) = children
                    .iter_mut()
                    .find(|(key, _)| key.as_bytes() == level.as_bytes())
                {
                    existing.1 = child;
                } else if children.len() < LEVEL_MAP_HASHED_ABOVE {
                    children.push((LevelKey::new(level), child));
                } else {
                    let mut hashed: HashMap<LevelKey, NodeId, LevelHasher> =
                        children.drain(..).collect();
                    hashed.insert(LevelKey::new(level), child);
                    *self = Self::Hashed(hashed);
                }
            }
            Self::Hashed(children) => {
                children.insert(LevelKey::new(level), child);
            }
        }
    }

    pub(crate) fn remove(&mut self, level: &str) {
        match self {
            Self::Linear(children) => {
                if let Some(position) = children
                    .iter()
                    .position(|(key, _)| key.as_bytes() == level.as_bytes())
                {
                    children.swap_remove(position);
                    // Moves the last child back inline and frees the spilled buffer.
                    children.shrink_to_fit();
                }
            }
            Self::Hashed(children) => {
                children.remove(level.as_bytes());
                if children.len() <= LEVEL_MAP_LINEAR_AT {
                    *self = Self::Linear(children.drain().collect());
                }
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Linear(children) => children.is_empty(),
            Self::Hashed(children) => children.is_empty(),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, NodeId)> {
        let (linear, hashed) = match self {
            Self::Linear(children) => (Some(children), None),
            Self::Hashed(children) => (None, Some(children)),
        };
        let linear = linear
            .into_iter()
            .flat_map(|children| children.iter().map(|(level, child)| (level, *child)));
        let hashed = hashed
            .into_iter()
            .flat_map(|children| children.iter().map(|(level, child)| (level, *child)));
        linear
            .chain(hashed)
            .map(|(level, child)| (level.as_str(), child))
    }
}

/// Splits `a/b/c` into (`a`, `Some("b/c")`) and `c` into (`c`, `None`). An empty string is one empty level.
pub(crate) fn split_first_level(levels: &str) -> (&str, Option<&str>) {
    match levels.find('/') {
        Some(slash) => (&levels[..slash], Some(&levels[slash + 1..])),
        None => (levels, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_map_finds_short_and_long_levels() {
        let long = "l".repeat(INLINE_LEVEL_BYTES + 1);
        let exact = "e".repeat(INLINE_LEVEL_BYTES);
        let mut map = LevelMap::default();
        let mut arena = NodeArena::<Slot>::new();
        let ids: Vec<NodeId> = (0..5).map(|_| arena.alloc()).collect();
        for (level, id) in ["", "a", "caf\u{e9}", exact.as_str(), long.as_str()]
            .into_iter()
            .zip(&ids)
        {
            map.insert(level, *id);
        }
        assert_eq!(map.get(""), Some(ids[0]));
        assert_eq!(map.get("caf\u{e9}"), Some(ids[2]));
        assert_eq!(map.get(&exact), Some(ids[3]));
        assert_eq!(map.get(&long), Some(ids[4]));
        assert_eq!(map.get("b"), None);
        let mut levels: Vec<&str> = map.iter().map(|(level, _)| level).collect();
        levels.sort_unstable();
        assert_eq!(
            levels,
            ["", "a", "caf\u{e9}", exact.as_str(), long.as_str()]
        );
        for level in ["", "a", "caf\u{e9}", exact.as_str(), long.as_str()] {
            assert!(!map.is_empty());
            map.remove(level);
        }
        assert!(map.is_empty());
    }

    #[test]
    fn level_map_switches_between_linear_and_hashed() {
        let mut map = LevelMap::default();
        let mut arena = NodeArena::<Slot>::new();
        let levels: Vec<String> = (0..40).map(|n| format!("level{n}")).collect();
        let ids: Vec<NodeId> = levels.iter().map(|_| arena.alloc()).collect();
        for (count, (level, id)) in levels.iter().zip(&ids).enumerate() {
            map.insert(level, *id);
            assert_eq!(
                matches!(map, LevelMap::Hashed(_)),
                count >= LEVEL_MAP_HASHED_ABOVE
            );
        }
        map.insert(&levels[0], ids[1]);
        assert_eq!(map.get(&levels[0]), Some(ids[1]));
        assert_eq!(map.iter().count(), 40);
        for (level, id) in levels.iter().zip(&ids).skip(1) {
            assert_eq!(map.get(level), Some(*id));
            map.remove(level);
            assert_eq!(map.get(level), None);
        }
        assert!(matches!(map, LevelMap::Linear(_)));
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            vec![(levels[0].as_str(), ids[1])]
        );
        map.remove(&levels[0]);
        assert!(map.is_empty());
    }

    #[test]
    fn split_first_level_keeps_empty_levels() {
        assert_eq!(split_first_level("a/b/c"), ("a", Some("b/c")));
        assert_eq!(split_first_level("a"), ("a", None));
        assert_eq!(split_first_level(""), ("", None));
        assert_eq!(split_first_level("/a"), ("", Some("a")));
        assert_eq!(split_first_level("a/"), ("a", Some("")));
    }

    #[derive(Default)]
    struct Slot(u32);

    impl ArenaNode for Slot {
        fn is_vacant(&self) -> bool {
            self.0 == 0
        }
    }

    #[test]
    fn freed_slots_are_reset_and_reused() {
        let mut arena = NodeArena::<Slot>::new();
        let first = arena.alloc();
        let second = arena.alloc();
        arena.get_mut(first).0 = 7;
        assert_eq!(arena.live_count(), 2);
        arena.free(first);
        assert_eq!(arena.live_count(), 1);
        let reused = arena.alloc();
        assert_eq!(reused, first);
        assert!(arena.get(reused).is_vacant());
        assert_ne!(reused, second);
    }
}
