//! Shard-local topic indexes: subscriptions ([`SubscriptionTrie`]), the interest summary of which shards
//! want which topics ([`InterestMap`], [`ShardSet`]), retained messages ([`RetainedStore`]) and the
//! members of shared subscription groups ([`SharedGroups`]).
//!
//! Concurrency model: every structure here is owned by exactly one shard and only that shard's thread
//! reads or writes it. Nothing mutable is shared between shards, so there are no locks and no `Rc`s: the
//! types are plain data, `Send` when their keys and values are (so they can be built before a shard
//! starts), and kept consistent across shards by messages (docs/ARCHITECTURE.md, invariants 2 and 5), never by shared
//! memory (save the two atomics per shared-subscription member that `shared` explains). The one
//! process-wide item is the random key the level maps hash with, set once on first use
//! (a `OnceLock`) and read-only afterwards.
//!
//! All structures are runtime-free (no glommio, no I/O) and take topic names and filters that were
//! validated by [`crate::topic`]; debug builds assert it. Matching is iterative and allocation-free per
//! publish for topics of ordinary depth, and a client-controlled depth (up to 32768 levels) cannot overflow
//! a shard's stack: nodes live in a slab and refer to each other by index.
//!
//! Memory: a node's only child and a filter's only subscriber are stored inline, so the common chain
//! `site/{n}/dev/{m}/temp` with one subscriber allocates nothing beyond its slab slots; `benches/index.rs`
//! prints the resident memory per subscription for its mix (about 170 bytes).

mod arena;
mod interest;
mod retained;
mod shared;
mod trie;

#[cfg(test)]
mod model_tests;

pub use interest::{InterestMap, ShardSet, ShardSetIter, MAX_SHARDS};
pub use retained::RetainedStore;
pub use shared::{Member, MemberState, SharedGroups, Strategies, Strategy};
pub use trie::SubscriptionTrie;
