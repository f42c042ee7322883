//! Model tests: each index runs beside a deliberately naive model (a list of entries plus the
//! [`crate::topic::matches()`] oracle) under random operation sequences over a small alphabet of levels, so
//! that collisions, empty levels, `$` topics and wildcards meet often. Any failure found is kept below as a
//! named regression test.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::{InterestMap, RetainedStore, ShardSet, SubscriptionTrie};
use crate::topic::{matches, validate_topic_filter, validate_topic_name};

/// The levels random topics and filters are made of.
#[derive(Debug, Clone, Copy)]
struct Alphabet {
    /// Topic levels: literals, an empty level, a `$` level (special only as the first level).
    topic_levels: &'static [&'static str],
    /// Filter levels: the topic levels plus both wildcards.
    filter_levels: &'static [&'static str],
    /// Most levels in a generated topic or filter.
    max_levels: usize,
    /// Most levels of the topics checked exhaustively after each sequence.
    exhaustive_levels: usize,
}

/// Few levels, deep topics: collisions, empty levels, `$` and wildcards meet often.
const SMALL: Alphabet = Alphabet {
    topic_levels: &["a", "b", "$x", ""],
    filter_levels: &["a", "b", "$x", "", "+", "#"],
    max_levels: 4,
    exhaustive_levels: 3,
};

/// Many siblings, shallow topics: level maps switch from linear to hashed and back.
const WIDE: Alphabet = Alphabet {
    topic_levels: &[
        "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "$y", "",
    ],
    filter_levels: &[
        "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "$y", "", "+", "#",
    ],
    max_levels: 2,
    exhaustive_levels: 2,
};

fn topic_strategy(alphabet: Alphabet) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(
        prop::sample::select(alphabet.topic_levels),
        1..=alphabet.max_levels,
    )
    .prop_map(|levels| levels.join("/"))
    .prop_filter("topic names are not empty", |topic| !topic.is_empty())
}

fn filter_strategy(alphabet: Alphabet) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(
        prop::sample::select(alphabet.filter_levels),
        1..=alphabet.max_levels,
    )
    .prop_map(|mut levels| {
        // `#` must be the last level: cut the filter after the first one.
        if let Some(hash) = levels.iter().position(|level| *level == "#") {
            levels.truncate(hash + 1);
        }
        levels.join("/")
    })
    .prop_filter("topic filters are not empty", |filter| !filter.is_empty())
}

/// Every valid string of `levels` with up to `depth` levels.
fn all_strings(levels: &[&str], depth: usize) -> Vec<String> {
    let mut strings: Vec<String> = levels.iter().map(|level| (*level).to_owned()).collect();
    let mut last = strings.clone();
    for _ in 1..depth {
        let longer: Vec<String> = last
            .iter()
            .flat_map(|prefix| levels.iter().map(move |level| format!("{prefix}/{level}")))
            .collect();
        strings.extend(longer.iter().cloned());
        last = longer;
    }
    strings
}

/// Every topic of the alphabet: checked exhaustively after each operation sequence.
fn all_topics(alphabet: Alphabet) -> Vec<String> {
    let mut topics = all_strings(alphabet.topic_levels, alphabet.exhaustive_levels);
    topics.retain(|topic| validate_topic_name(topic).is_ok());
    topics
}

/// Every filter of the alphabet up to two levels.
fn all_filters(alphabet: Alphabet) -> Vec<String> {
    let mut filters = all_strings(alphabet.filter_levels, 2);
    filters.retain(|filter| validate_topic_filter(filter).is_ok());
    filters
}

// ---------------------------------------------------------------------------------------------------------
// SubscriptionTrie

#[derive(Debug, Clone)]
enum TrieOp {
    Insert { filter: String, key: u8, value: u8 },
    Remove { filter: String, key: u8 },
    Update { filter: String, key: u8, value: u8 },
    Match { topic: String },
}

/// Operations with subscriber keys below `keys`: a few keys collide often; many keys (on a few filters)
/// push subscriber sets past the vector-to-map switch and back.
fn trie_op_strategy(
    alphabet: Alphabet,
    filters: impl Strategy<Value = String> + Clone,
    keys: u8,
    insert_weight: u32,
) -> impl Strategy<Value = TrieOp> {
    prop_oneof![
        insert_weight => (filters.clone(), 0..keys, any::<u8>())
            .prop_map(|(filter, key, value)| TrieOp::Insert { filter, key, value }),
        2 => (filters.clone(), 0..keys).prop_map(|(filter, key)| TrieOp::Remove { filter, key }),
        1 => (filters, 0..keys, any::<u8>())
            .prop_map(|(filter, key, value)| TrieOp::Update { filter, key, value }),
        2 => topic_strategy(alphabet).prop_map(|topic| TrieOp::Match { topic }),
    ]
}

fn few_filters_strategy() -> impl Strategy<Value = String> + Clone {
    prop::sample::select(vec!["#", "a/+", "$x/+"]).prop_map(str::to_owned)
}

/// The model: (filter, key, value) entries, keys unique per filter.
#[derive(Default)]
struct TrieModel {
    /// Entries in insertion order.
    entries: Vec<(String, u8, u8)>,
}

impl TrieModel {
    fn insert(&mut self, filter: &str, key: u8, value: u8) -> Option<u8> {
        match self
            .entries
            .iter_mut()
            .find(|(f, k, _)| f == filter && *k == key)
        {
            Some(entry) => Some(std::mem::replace(&mut entry.2, value)),
            None => {
                self.entries.push((filter.to_owned(), key, value));
                None
            }
        }
    }

    fn remove(&mut self, filter: &str, key: u8) -> Option<u8> {
        let position = self
            .entries
            .iter()
            .position(|(f, k, _)| f == filter && *k == key)?;
        Some(self.entries.remove(position).2)
    }

    fn update(&mut self, filter: &str, key: u8, value: u8) -> Option<u8> {
        let entry = self
            .entries
            .iter_mut()
            .find(|(f, k, _)| f == filter && *k == key)?;
        Some(std::mem::replace(&mut entry.2, value))
    }

    fn matching(&self, topic: &str) -> Vec<(u8, String, u8)> {
        let mut found: Vec<_> = self
            .entries
            .iter()
            .filter(|(filter, _, _)| matches(filter, topic))
            .map(|(filter, key, value)| (*key, filter.clone(), *value))
            .collect();
        found.sort_unstable();
        found
    }

    fn filter_count(&self) -> usize {
        let mut filters: Vec<&str> = self
            .entries
            .iter()
            .map(|(filter, _, _)| filter.as_str())
            .collect();
        filters.sort_unstable();
        filters.dedup();
        filters.len()
    }
}

/// The trie stores (filter, value) as its value so a match can be compared entry by entry with the model.
type TestTrie = SubscriptionTrie<u8, (String, u8)>;

fn trie_matching(trie: &TestTrie, topic: &str) -> Vec<(u8, String, u8)> {
    let mut found = Vec::new();
    trie.for_each_match(topic, |key, (filter, value)| {
        found.push((key, filter.clone(), *value))
    });
    found.sort_unstable();
    found
}

fn run_trie_ops(alphabet: Alphabet, ops: &[TrieOp]) -> Result<(), TestCaseError> {
    let mut trie = TestTrie::new();
    let mut model = TrieModel::default();
    for op in ops {
        match op {
            TrieOp::Insert { filter, key, value } => {
                prop_assert_eq!(validate_topic_filter(filter), Ok(()));
                let replaced = trie
                    .insert(filter, *key, (filter.clone(), *value))
                    .map(|(_, v)| v);
                prop_assert_eq!(replaced, model.insert(filter, *key, *value), "{:?}", op);
            }
            TrieOp::Remove { filter, key } => {
                let removed = trie.remove(filter, *key).map(|(_, v)| v);
                prop_assert_eq!(removed, model.remove(filter, *key), "{:?}", op);
            }
            TrieOp::Update { filter, key, value } => {
                let old = trie
                    .get_mut(filter, *key)
                    .map(|entry| std::mem::replace(&mut entry.1, *value));
                prop_assert_eq!(old, model.update(filter, *key, *value), "{:?}", op);
            }
            TrieOp::Match { topic } => {
                prop_assert_eq!(
                    trie_matching(&trie, topic),
                    model.matching(topic),
                    "{:?}",
                    op
                );
            }
        }
        prop_assert_eq!(trie.len(), model.entries.len());
        prop_assert_eq!(trie.filter_count(), model.filter_count());
        prop_assert_eq!(trie.is_empty(), model.entries.is_empty());
    }
    for topic in all_topics(alphabet) {
        prop_assert_eq!(
            trie_matching(&trie, &topic),
            model.matching(&topic),
            "topic {:?}",
            topic
        );
    }
    for (filter, key, value) in &model.entries {
        prop_assert_eq!(trie.get(filter, *key).map(|(_, v)| *v), Some(*value));
    }
    // Removing everything must prune every node: churn does not grow memory.
    for (filter, key, value) in std::mem::take(&mut model.entries) {
        prop_assert_eq!(trie.remove(&filter, key).map(|(_, v)| v), Some(value));
    }
    prop_assert!(trie.is_empty());
    prop_assert_eq!(trie.filter_count(), 0);
    prop_assert_eq!(trie.node_count(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// RetainedStore

#[derive(Debug, Clone)]
enum RetainedOp {
    Set { topic: String, value: u8 },
    Remove { topic: String },
    Match { filter: String },
}

fn retained_op_strategy(alphabet: Alphabet) -> impl Strategy<Value = RetainedOp> {
    prop_oneof![
        3 => (topic_strategy(alphabet), any::<u8>()).prop_map(|(topic, value)| RetainedOp::Set { topic, value }),
        2 => topic_strategy(alphabet).prop_map(|topic| RetainedOp::Remove { topic }),
        2 => filter_strategy(alphabet).prop_map(|filter| RetainedOp::Match { filter }),
    ]
}

fn retained_matching(store: &RetainedStore<u8>, filter: &str) -> Vec<(String, u8)> {
    let mut found = Vec::new();
    store.for_each_match(filter, |topic, value| {
        found.push((topic.to_owned(), *value))
    });
    found.sort_unstable();
    found
}

fn model_retained_matching(model: &BTreeMap<String, u8>, filter: &str) -> Vec<(String, u8)> {
    model
        .iter()
        .filter(|(topic, _)| matches(filter, topic))
        .map(|(topic, value)| (topic.clone(), *value))
        .collect()
}

fn run_retained_ops(alphabet: Alphabet, ops: &[RetainedOp]) -> Result<(), TestCaseError> {
    let mut store = RetainedStore::new();
    let mut model = BTreeMap::new();
    for op in ops {
        match op {
            RetainedOp::Set { topic, value } => {
                prop_assert_eq!(
                    store.set(topic, *value),
                    model.insert(topic.clone(), *value),
                    "{:?}",
                    op
                );
            }
            RetainedOp::Remove { topic } => {
                prop_assert_eq!(store.remove(topic), model.remove(topic), "{:?}", op);
            }
            RetainedOp::Match { filter } => {
                prop_assert_eq!(
                    retained_matching(&store, filter),
                    model_retained_matching(&model, filter),
                    "{:?}",
                    op
                );
            }
        }
        prop_assert_eq!(store.len(), model.len());
    }
    for filter in all_filters(alphabet) {
        prop_assert_eq!(
            retained_matching(&store, &filter),
            model_retained_matching(&model, &filter),
            "filter {:?}",
            filter
        );
    }
    for (topic, value) in std::mem::take(&mut model) {
        prop_assert_eq!(store.get(&topic), Some(&value));
        prop_assert_eq!(store.remove(&topic), Some(value));
    }
    prop_assert!(store.is_empty());
    prop_assert_eq!(store.node_count(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// InterestMap

#[derive(Debug, Clone)]
enum InterestOp {
    Add { filter: String, shard: u16 },
    Remove { filter: String, shard: u16 },
    ShardsFor { topic: String },
}

fn shard_strategy() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..4, Just(127u16), Just(128u16), Just(1023u16)]
}

fn interest_op_strategy(alphabet: Alphabet) -> impl Strategy<Value = InterestOp> {
    prop_oneof![
        3 => (filter_strategy(alphabet), shard_strategy()).prop_map(|(filter, shard)| InterestOp::Add { filter, shard }),
        2 => (filter_strategy(alphabet), shard_strategy()).prop_map(|(filter, shard)| InterestOp::Remove { filter, shard }),
        2 => topic_strategy(alphabet).prop_map(|topic| InterestOp::ShardsFor { topic }),
    ]
}

fn model_shards_for(model: &HashMap<(String, u16), u32>, topic: &str) -> ShardSet {
    model
        .keys()
        .filter(|(filter, _)| matches(filter, topic))
        .map(|(_, shard)| *shard)
        .collect()
}

fn run_interest_ops(alphabet: Alphabet, ops: &[InterestOp]) -> Result<(), TestCaseError> {
    let mut interest = InterestMap::new();
    let mut model: HashMap<(String, u16), u32> = HashMap::new();
    for op in ops {
        match op {
            InterestOp::Add { filter, shard } => {
                let count = model.entry((filter.clone(), *shard)).or_insert(0);
                *count += 1;
                prop_assert_eq!(interest.add(filter, *shard), *count == 1, "{:?}", op);
            }
            InterestOp::Remove { filter, shard } => {
                let key = (filter.clone(), *shard);
                let last = match model.get_mut(&key) {
                    Some(count) if *count > 1 => {
                        *count -= 1;
                        false
                    }
                    Some(_) => model.remove(&key).is_some(),
                    None => false,
                };
                prop_assert_eq!(interest.remove(filter, *shard), last, "{:?}", op);
            }
            InterestOp::ShardsFor { topic } => {
                prop_assert_eq!(
                    interest.shards_for(topic),
                    model_shards_for(&model, topic),
                    "{:?}",
                    op
                );
            }
        }
    }
    for topic in all_topics(alphabet) {
        prop_assert_eq!(
            interest.shards_for(&topic),
            model_shards_for(&model, &topic),
            "topic {:?}",
            topic
        );
    }
    for ((filter, shard), count) in &model {
        prop_assert_eq!(interest.count(filter, *shard), *count);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn subscription_trie_agrees_with_the_model(
        ops in prop::collection::vec(trie_op_strategy(SMALL, filter_strategy(SMALL), 4, 3), 0..64)
    ) {
        run_trie_ops(SMALL, &ops)?;
    }

    #[test]
    fn retained_store_agrees_with_the_model(
        ops in prop::collection::vec(retained_op_strategy(SMALL), 0..64)
    ) {
        run_retained_ops(SMALL, &ops)?;
    }

    #[test]
    fn interest_map_agrees_with_the_model(
        ops in prop::collection::vec(interest_op_strategy(SMALL), 0..64)
    ) {
        run_interest_ops(SMALL, &ops)?;
    }

    #[test]
    fn shard_set_agrees_with_a_btree_set(shards in prop::collection::vec(0u16..1024, 0..64)) {
        let set: ShardSet = shards.iter().copied().collect();
        let model: std::collections::BTreeSet<u16> = shards.iter().copied().collect();
        prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(set.len(), model.len());
        prop_assert_eq!(set.is_empty(), model.is_empty());
        for shard in 0..1024 {
            prop_assert_eq!(set.contains(shard), model.contains(&shard));
        }
    }

    #[test]
    fn generated_filters_and_topics_are_valid(
        filter in filter_strategy(SMALL),
        topic in topic_strategy(SMALL),
        wide_filter in filter_strategy(WIDE),
        wide_topic in topic_strategy(WIDE),
    ) {
        prop_assert_eq!(validate_topic_filter(&filter), Ok(()));
        prop_assert_eq!(validate_topic_name(&topic), Ok(()));
        prop_assert_eq!(validate_topic_filter(&wide_filter), Ok(()));
        prop_assert_eq!(validate_topic_name(&wide_topic), Ok(()));
    }
}

proptest! {
    // Long sequences: fewer cases keep the suite fast.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn subscription_trie_with_large_subscriber_sets_agrees_with_the_model(
        ops in prop::collection::vec(trie_op_strategy(SMALL, few_filters_strategy(), 40, 5), 0..256)
    ) {
        run_trie_ops(SMALL, &ops)?;
    }

    #[test]
    fn subscription_trie_with_many_siblings_agrees_with_the_model(
        ops in prop::collection::vec(trie_op_strategy(WIDE, filter_strategy(WIDE), 3, 5), 0..256)
    ) {
        run_trie_ops(WIDE, &ops)?;
    }

    #[test]
    fn retained_store_with_many_siblings_agrees_with_the_model(
        ops in prop::collection::vec(retained_op_strategy(WIDE), 0..256)
    ) {
        run_retained_ops(WIDE, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Named regressions.
//
// No failure of the shipped code has been found by the model tests so far. These are the minimal cases
// they shrank to when each rule was deliberately broken during development (mutation checks), kept so
// every rule has a small named test that runs through the same model comparison.

fn insert(filter: &str, key: u8) -> TrieOp {
    TrieOp::Insert {
        filter: filter.to_owned(),
        key,
        value: key,
    }
}

fn match_topic(topic: &str) -> TrieOp {
    TrieOp::Match {
        topic: topic.to_owned(),
    }
}

/// Broken variant: `#` subscribers reported only while topic levels remain, so `a/#` missed `a`.
#[test]
fn regression_multi_level_filter_matches_its_parent_level() -> Result<(), TestCaseError> {
    run_trie_ops(SMALL, &[insert("a/#", 0), match_topic("a")])
}

/// Broken variant: `$` topics routed to the main root, so `+` and `#` at the root matched `$x`.
#[test]
fn regression_root_wildcards_do_not_match_dollar_topics() -> Result<(), TestCaseError> {
    run_trie_ops(
        SMALL,
        &[
            insert("+", 0),
            insert("#", 1),
            match_topic("$x"),
            match_topic("$x/a"),
        ],
    )
}

/// `+` matches an empty level, and an empty level is a literal child like any other.
#[test]
fn regression_single_level_wildcard_matches_an_empty_level() -> Result<(), TestCaseError> {
    run_trie_ops(
        SMALL,
        &[
            insert("a/+", 0),
            insert("a/", 1),
            insert("/+", 2),
            match_topic("a/"),
            match_topic("/"),
        ],
    )
}

/// Broken variant: `get_mut` missed entries once a subscriber set had switched to a hash map.
#[test]
fn regression_subscriber_set_updates_after_switching_to_a_map() -> Result<(), TestCaseError> {
    let mut ops: Vec<TrieOp> = (0..20).map(|key| insert("#", key)).collect();
    ops.push(TrieOp::Update {
        filter: "#".to_owned(),
        key: 3,
        value: 99,
    });
    ops.extend((0..18).map(|key| TrieOp::Remove {
        filter: "#".to_owned(),
        key,
    }));
    ops.push(match_topic("a"));
    run_trie_ops(SMALL, &ops)
}

/// Broken variant: a retained walk over `a/#` skipped the value of `a` itself.
#[test]
fn regression_retained_multi_level_filter_returns_the_parent_topic() -> Result<(), TestCaseError> {
    run_retained_ops(
        SMALL,
        &[
            RetainedOp::Set {
                topic: "a".to_owned(),
                value: 1,
            },
            RetainedOp::Match {
                filter: "a/#".to_owned(),
            },
        ],
    )
}

/// Broken variant: `$` topics in the main root, so a retained walk over `+/#` returned `$x/a`.
#[test]
fn regression_retained_root_wildcards_skip_dollar_topics() -> Result<(), TestCaseError> {
    run_retained_ops(
        SMALL,
        &[
            RetainedOp::Set {
                topic: "$x/a".to_owned(),
                value: 1,
            },
            RetainedOp::Match {
                filter: "+/#".to_owned(),
            },
        ],
    )
}

/// Broken variant: the interest map reported a shard for `a` through `a/#` only after a second level.
#[test]
fn regression_interest_multi_level_filter_matches_its_parent_level() -> Result<(), TestCaseError> {
    run_interest_ops(
        SMALL,
        &[
            InterestOp::Add {
                filter: "a/#".to_owned(),
                shard: 1023,
            },
            InterestOp::ShardsFor {
                topic: "a".to_owned(),
            },
        ],
    )
}
