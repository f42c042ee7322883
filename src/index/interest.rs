//! [`InterestMap`]: which shards have a subscription matching a topic, and the [`ShardSet`] it answers with.
//!
//! Concurrency: every shard owns its own `InterestMap` and only its thread touches it. The maps are kept
//! alike by message: a shard whose first local subscription to a filter appears (or whose last one goes)
//! tells every shard, itself included, and each applies [`InterestMap::add`] / [`InterestMap::remove`] to its
//! own copy. A publish is then matched against the local copy and sent once to each interested shard
//! (docs/ARCHITECTURE.md, invariant 2).
//!
//! Every shard holds every filter, so what a filter costs here is paid once per shard. Filters without
//! wildcards, most of a large subscription set (`devices/{id}/cmd`), are kept in a hash map and found
//! by one lookup of the topic itself; only wildcard filters take trie nodes, ~80 bytes per level
//! (18,000 clients with one filter each: 7,104 bytes per subscription at 16 shards with every filter
//! in the trie; docs/PERFORMANCE.md, "Issue 18, third session").
//!
//! The hash map keeps a 64-bit hash of each literal filter, not the filter: the map only decides
//! which shards get a message, and the shard that gets it matches the topic against its own sessions'
//! subscriptions exactly (`SubscriptionTrie`). Two filters with the same hash share one entry, their
//! counts added, so each shard stays interested while either is held: the only effect of a collision
//! is mail to a shard that then finds no subscriber, and with 64 bits that takes billions of distinct
//! filters to be likely. Every shard must hash alike for that to hold (a shard decides whether to
//! announce a filter by its own map, and the others route by theirs), hence the fixed seeds
//! ([`literal_hash`]). Without the filter's copy an entry is 24 bytes instead of 40 plus the string's
//! allocation (docs/PERFORMANCE.md, "Issue 18, fourth session").

use std::fmt;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::trie::SubscriptionTrie;

/// Largest number of shards a [`ShardSet`] (and so the broker) supports.
pub const MAX_SHARDS: usize = 1024;

/// Number of 64-bit words in a [`ShardSet`].
const SHARD_WORDS: usize = MAX_SHARDS / 64;

/// A set of shard ids below [`MAX_SHARDS`], as a fixed bitset.
///
/// It is `Copy` and never allocates: 128 bytes inline whatever the shard count. A variant inline up to 128
/// shards and boxed above would be smaller for small machines but could not be `Copy`; returning 128 bytes
/// per publish costs a few stores, and iteration skips zero words.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShardSet {
    /// Bit `s % 64` of word `s / 64` is set when shard `s` is in the set.
    words: [u64; SHARD_WORDS],
}

impl ShardSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self {
            words: [0; SHARD_WORDS],
        }
    }

    /// Adds `shard`; returns whether it was absent.
    ///
    /// # Panics
    /// When `shard >= MAX_SHARDS`; the configuration must reject more shards than that.
    pub fn insert(&mut self, shard: u16) -> bool {
        let (word, bit) = Self::position(shard);
        assert!(
            word < SHARD_WORDS,
            "shard id {shard} is not below MAX_SHARDS ({MAX_SHARDS})"
        );
        let absent = self.words[word] & bit == 0;
        self.words[word] |= bit;
        absent
    }

    /// Removes `shard`; returns whether it was present.
    pub fn remove(&mut self, shard: u16) -> bool {
        let (word, bit) = Self::position(shard);
        match self.words.get_mut(word) {
            Some(bits) => {
                let present = *bits & bit != 0;
                *bits &= !bit;
                present
            }
            None => false,
        }
    }

    /// Whether `shard` is in the set (always false at or above [`MAX_SHARDS`]).
    pub fn contains(&self, shard: u16) -> bool {
        let (word, bit) = Self::position(shard);
        self.words.get(word).is_some_and(|bits| bits & bit != 0)
    }

    /// Whether the set has no shard.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&bits| bits == 0)
    }

    /// Number of shards in the set.
    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|bits| bits.count_ones() as usize)
            .sum()
    }

    /// Adds every shard of `other`.
    pub fn union_with(&mut self, other: &ShardSet) {
        for (mine, theirs) in self.words.iter_mut().zip(other.words) {
            *mine |= theirs;
        }
    }

    /// The set as a bitmask (bit `s` for shard `s`) when every shard in it is below 64.
    pub fn as_u64(&self) -> Option<u64> {
        self.words[1..]
            .iter()
            .all(|&bits| bits == 0)
            .then_some(self.words[0])
    }

    /// The shard ids in ascending order.
    pub fn iter(&self) -> ShardSetIter {
        ShardSetIter {
            words: self.words,
            word_index: 0,
        }
    }

    fn position(shard: u16) -> (usize, u64) {
        (usize::from(shard) / 64, 1u64 << (shard % 64))
    }
}

impl fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<u16> for ShardSet {
    fn from_iter<I: IntoIterator<Item = u16>>(shards: I) -> Self {
        let mut set = Self::new();
        for shard in shards {
            set.insert(shard);
        }
        set
    }
}

impl IntoIterator for ShardSet {
    type Item = u16;
    type IntoIter = ShardSetIter;

    fn into_iter(self) -> ShardSetIter {
        self.iter()
    }
}

impl IntoIterator for &ShardSet {
    type Item = u16;
    type IntoIter = ShardSetIter;

    fn into_iter(self) -> ShardSetIter {
        self.iter()
    }
}

/// Iterator over a [`ShardSet`]'s ids in ascending order (owns a copy of the bits).
#[derive(Clone, Debug)]
pub struct ShardSetIter {
    /// Bits not yet yielded; yielded bits are cleared.
    words: [u64; SHARD_WORDS],
    /// First word that may still have set bits.
    word_index: usize,
}

impl Iterator for ShardSetIter {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        while let Some(bits) = self.words.get_mut(self.word_index) {
            if *bits != 0 {
                let bit = bits.trailing_zeros();
                *bits &= *bits - 1;
                // word_index < 16 and bit < 64, so the id is below 1024 and fits u16.
                return Some((self.word_index * 64) as u16 + bit as u16);
            }
            self.word_index += 1;
        }
        None
    }
}

/// For each topic filter, the shards with at least one subscription to it, and how many each has.
///
/// A shard's own subscriptions are recorded here too, so one lookup answers "where must this publish go".
#[derive(Debug, Default)]
pub struct InterestMap {
    /// Wildcard filters: (filter, shard) -> number of subscriptions that shard reported for the
    /// filter (never zero).
    shard_counts: SubscriptionTrie<u16, u32>,
    /// Filters without wildcards, which match exactly the topic they spell, by [`literal_hash`]:
    /// hash -> (shard, number of subscriptions), one entry per interested shard (never empty, counts
    /// never zero). See the module documentation for why a hash stands for the filter.
    literal: HashMap<u64, LiteralShards, BuildHasherDefault<PreHashed>>,
}

/// The interested shards of one literal filter, with their subscription counts: one inline (most
/// literal filters are held on one shard), more in a box. 16 bytes, where a `SmallVec` of one takes 24
/// (docs/PERFORMANCE.md, "Issue 18, fourth session").
#[derive(Debug)]
enum LiteralShards {
    One([(u16, u32); 1]),
    // Boxed so that the rare case costs the common one 8 bytes, not 24 (the size of a Vec).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<(u16, u32)>>),
}

// The figure the type's documentation gives, kept true by the build.
const _: () = assert!(std::mem::size_of::<LiteralShards>() == 16);

impl LiteralShards {
    fn as_slice(&self) -> &[(u16, u32)] {
        match self {
            LiteralShards::One(one) => one,
            LiteralShards::Many(many) => many,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(u16, u32)] {
        match self {
            LiteralShards::One(one) => one,
            LiteralShards::Many(many) => many,
        }
    }

    fn push(&mut self, entry: (u16, u32)) {
        match self {
            LiteralShards::One([first]) => {
                *self = LiteralShards::Many(Box::new(vec![*first, entry]))
            }
            LiteralShards::Many(many) => many.push(entry),
        }
    }

    /// Removes the entry at `at`; returns whether none is left.
    fn swap_remove(&mut self, at: usize) -> bool {
        match self {
            LiteralShards::One(_) => true,
            LiteralShards::Many(many) => {
                many.swap_remove(at);
                if let [only] = many[..] {
                    *self = LiteralShards::One([only]);
                }
                false
            }
        }
    }
}

/// The key of a literal filter (or of a topic, to look one up) in [`InterestMap`]: the same on every
/// shard of the process, so that all of them merge colliding filters alike.
fn literal_hash(filter: &str) -> u64 {
    // Fixed seeds: SHA-512's initial words (square roots of the first primes). Not the digits of pi
    // after those `sessions::home_of` uses: ahash XORs its seeds with exactly those, which gave an
    // all-zero key that hashed every string to 0 (the unit test `literal_hashes_differ` catches it).
    let state = ahash::RandomState::with_seeds(
        0x6a09_e667_f3bc_c908,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
    );
    state.hash_one(filter)
}

/// The hasher of the literal map: its keys are [`literal_hash`]es already, well mixed, used as they are.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("the literal map's keys are u64 hashes")
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Whether `filter` has a wildcard level (and so lives in the trie).
fn is_wild(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

impl InterestMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more subscription to `filter` on `shard`; returns true when it is the first one for
    /// this (filter, shard), i.e. the shard just became interested.
    pub fn add(&mut self, filter: &str, shard: u16) -> bool {
        if !is_wild(filter) {
            let shards = match self.literal.entry(literal_hash(filter)) {
                Entry::Vacant(vacant) => {
                    vacant.insert(LiteralShards::One([(shard, 1)]));
                    return true;
                }
                Entry::Occupied(occupied) => occupied.into_mut(),
            };
            if let Some((_, count)) = shards.as_mut_slice().iter_mut().find(|(s, _)| *s == shard) {
                *count += 1;
                return false;
            }
            shards.push((shard, 1));
            return true;
        }
        if let Some(count) = self.shard_counts.get_mut(filter, shard) {
            *count += 1;
            return false;
        }
        self.shard_counts.insert(filter, shard, 1);
        true
    }

    /// Records one subscription fewer to `filter` on `shard`; returns true when it was the last one, i.e.
    /// the shard is no longer interested. Removing an unknown (filter, shard) does nothing and returns false.
    pub fn remove(&mut self, filter: &str, shard: u16) -> bool {
        if !is_wild(filter) {
            let key = literal_hash(filter);
            let Some(shards) = self.literal.get_mut(&key) else {
                return false;
            };
            let Some(at) = shards.as_slice().iter().position(|(s, _)| *s == shard) else {
                return false;
            };
            let count = &mut shards.as_mut_slice()[at].1;
            if *count > 1 {
                *count -= 1;
                return false;
            }
            if shards.swap_remove(at) {
                self.literal.remove(&key);
            }
            return true;
        }
        match self.shard_counts.get_mut(filter, shard) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => self.shard_counts.remove(filter, shard).is_some(),
            None => false,
        }
    }

    /// Number of subscriptions `shard` has reported for `filter`.
    pub fn count(&self, filter: &str, shard: u16) -> u32 {
        if !is_wild(filter) {
            return self.literal.get(&literal_hash(filter)).map_or(0, |shards| {
                shards
                    .as_slice()
                    .iter()
                    .find(|(s, _)| *s == shard)
                    .map_or(0, |(_, c)| *c)
            });
        }
        self.shard_counts.get(filter, shard).copied().unwrap_or(0)
    }

    /// The shards with a subscription whose filter matches `topic` (a valid topic name).
    pub fn shards_for(&self, topic: &str) -> ShardSet {
        let mut shards = ShardSet::new();
        self.shard_counts.for_each_match(topic, |shard, _| {
            shards.insert(shard);
        });
        // A topic name is the one literal filter it matches (a valid topic has no wildcard).
        if !self.literal.is_empty() {
            if let Some(exact) = self.literal.get(&literal_hash(topic)) {
                for (shard, _) in exact.as_slice() {
                    shards.insert(*shard);
                }
            }
        }
        shards
    }

    /// Number of distinct filters some shard is interested in.
    pub fn filter_count(&self) -> usize {
        self.shard_counts.filter_count() + self.literal.len()
    }

    /// Whether no shard is interested in anything.
    pub fn is_empty(&self) -> bool {
        self.shard_counts.is_empty() && self.literal.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_hashes_differ() {
        let hashes: std::collections::HashSet<u64> = ["a", "b", "a/b", "$SYS/b", "", "/"]
            .into_iter()
            .map(literal_hash)
            .collect();
        assert_eq!(hashes.len(), 6, "{hashes:x?}");
    }

    #[test]
    fn shard_set_basics() {
        let mut set = ShardSet::new();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert!(set.insert(0));
        assert!(!set.insert(0));
        assert!(set.insert(63));
        assert!(set.insert(64));
        assert!(set.insert(1023));
        assert!(set.contains(64));
        assert!(!set.contains(65));
        assert!(!set.contains(1024));
        assert!(!set.contains(u16::MAX));
        assert_eq!(set.len(), 4);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 63, 64, 1023]);
        assert!(set.remove(63));
        assert!(!set.remove(63));
        assert!(!set.remove(5000));
        assert_eq!(format!("{set:?}"), "{0, 64, 1023}");
        let copy = set;
        assert_eq!(copy, set);
        let mut other: ShardSet = [1, 2, 64].into_iter().collect();
        other.union_with(&set);
        assert_eq!(
            other.into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 64, 1023]
        );
    }

    #[test]
    fn shard_set_as_u64_only_below_64() {
        assert_eq!(ShardSet::new().as_u64(), Some(0));
        let low: ShardSet = [0, 5, 63].into_iter().collect();
        assert_eq!(low.as_u64(), Some(1 | 1 << 5 | 1 << 63));
        let high: ShardSet = [0, 64].into_iter().collect();
        assert_eq!(high.as_u64(), None);
    }

    #[test]
    #[should_panic(expected = "MAX_SHARDS")]
    fn shard_set_rejects_ids_beyond_max() {
        ShardSet::new().insert(1024);
    }

    #[test]
    fn interest_is_refcounted_per_filter_and_shard() {
        let mut interest = InterestMap::new();
        assert!(interest.add("a/+", 1));
        assert!(!interest.add("a/+", 1));
        assert!(interest.add("a/+", 2));
        assert!(interest.add("a/b", 3));
        assert!(interest.add("#", 0));
        assert_eq!(interest.count("a/+", 1), 2);
        assert_eq!(
            interest.shards_for("a/b").iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(interest.shards_for("$SYS/b").len(), 0);
        assert!(!interest.remove("a/+", 1));
        assert!(interest.remove("a/+", 1));
        assert!(!interest.remove("a/+", 1));
        assert!(!interest.remove("never/seen", 1));
        assert_eq!(
            interest.shards_for("a/c").iter().collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert!(interest.remove("a/+", 2));
        assert!(interest.remove("a/b", 3));
        assert!(interest.remove("#", 0));
        assert!(interest.is_empty());
        assert_eq!(interest.filter_count(), 0);
    }
}
