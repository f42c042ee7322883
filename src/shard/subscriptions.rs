//! The subscriptions of this shard's sessions and the interest summary of the whole broker: the
//! `SubscriptionTrie` (filter → slot → options), the `InterestMap` (filter → the shards with a matching
//! subscription, this one included), and the SUBSCRIBEs whose SUBACK waits for other shards to
//! acknowledge new interest (docs/ARCHITECTURE.md, invariant 5). One per shard, owned by its
//! [`Shard`](super::Shard) and touched on that shard's thread only: by subscribe handling
//! (`packets/subscribe.rs`), by routing and delivery (`packets/publish.rs`), and by the interest mail
//! of other shards (`executor.rs`).

use ahash::AHashMap;
use smallvec::SmallVec;

use crate::codec::{SubAck, SubscriptionOptions, Utf8Bytes};
use crate::index::{InterestMap, ShardSet, SubscriptionTrie};
use crate::message::Message;
use crate::router::ShardId;

/// One session's subscriptions matching a topic, merged: the highest QoS, retain-as-published if
/// any asks for it, no-local only if all do, and every Subscription Identifier among them (a message
/// reaches a session once, carrying all of them, §3.3.4).
#[derive(Debug, Clone)]
pub(crate) struct Matched {
    pub(crate) slot: u32,
    /// Merged; its `identifier` is one of `ids` and means nothing on its own.
    pub(crate) opts: SubscriptionOptions,
    /// The non-zero Subscription Identifiers of the matching subscriptions.
    pub(crate) ids: SmallVec<[u32; 2]>,
}

/// A subscription request waiting for the other shards to acknowledge new interest before its SUBACK.
pub(super) struct PendingSub {
    /// Interest acknowledgements still missing (one per filter that had to be broadcast).
    pub(super) waits: usize,
    pub(super) suback: SubAck,
    /// Filters whose retained messages go out after the SUBACK.
    pub(super) retained: Vec<(Utf8Bytes, SubscriptionOptions)>,
    /// When the kernel received the SUBSCRIBE (0: unknown).
    pub(super) since: u64,
}

/// Identifies a pending SUBSCRIBE: session slot, its generation and the packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SubToken {
    pub(super) slot: u32,
    pub(super) generation: u32,
    pub(super) packet_id: u16,
}

/// A filter whose interest this shard broadcast and not every shard acknowledged yet.
#[derive(Default)]
struct PendingInterest {
    /// Acknowledgements still to come.
    remaining: usize,
    /// The shards that acknowledged (they route matching publishes here from then on).
    acked: ShardSet,
    /// Subscriptions whose SUBACK waits for them.
    waiters: Vec<SubToken>,
}

pub(super) struct Subscriptions {
    /// This shard.
    me: ShardId,
    shards: usize,
    /// Cluster mode: the link's mailbox, told of this shard's interest like the other shards; it
    /// answers once the interest is in the cluster's bucket, at once while NATS is away, within 3 s
    /// (docs/CLUSTER.md).
    link: Option<ShardId>,
    /// This shard's sessions' subscriptions: filter → (slot → options).
    trie: SubscriptionTrie<u32, SubscriptionOptions>,
    /// Which shards (this one included) have subscriptions on which filters.
    interest: InterestMap,
    interest_pending: AHashMap<Utf8Bytes, PendingInterest>,
    pending_subs: AHashMap<SubToken, PendingSub>,
    /// Reused buffer for trie matches.
    scratch: Vec<Matched>,
    /// The last key given by [`Self::expect_sync`].
    next_sync: u64,
}

impl Subscriptions {
    pub(super) fn new(me: ShardId, shards: usize, link: Option<ShardId>) -> Subscriptions {
        Subscriptions {
            me,
            shards,
            link,
            trie: SubscriptionTrie::new(),
            interest: InterestMap::new(),
            interest_pending: AHashMap::new(),
            pending_subs: AHashMap::new(),
            scratch: Vec::new(),
            next_sync: 0,
        }
    }

    /// Enter (or replace) the subscription of the session in `slot` to `filter`.
    pub(super) fn insert(&mut self, filter: &Utf8Bytes, slot: u32, opts: SubscriptionOptions) {
        self.trie.insert(filter, slot, opts);
    }

    /// A subscription read back at start-up: in the trie and counted in the interest summary, which
    /// every shard was given whole at start-up (`ShardRestore::interest`), so nobody is told.
    pub(super) fn restore(&mut self, filter: &Utf8Bytes, slot: u32, opts: SubscriptionOptions) {
        self.trie.insert(filter, slot, opts);
        self.interest.add(filter, self.me);
    }

    /// A new subscription to `filter` here. Returns true when this shard had none before and there are
    /// other shards or a cluster link: the caller tells them, and SUBACKs on `filter` wait for their
    /// acknowledgements.
    pub(super) fn add_interest(&mut self, filter: &Utf8Bytes) -> bool {
        if !self.interest.add(filter, self.me) {
            return false;
        }
        // The other shards, and the cluster link once the node's interest is in the cluster's
        // bucket (or NATS is away), answer before the SUBACK goes.
        let others = self.shards - 1 + usize::from(self.link.is_some());
        if others > 0 {
            let pending = self.interest_pending.entry(filter.clone()).or_default();
            pending.remaining += others;
        }
        self.others_to_tell()
    }

    /// Whether interest changes here go to anyone: other shards, or the cluster link.
    fn others_to_tell(&self) -> bool {
        self.shards > 1 || self.link.is_some()
    }

    /// A shared subscription group (`$share/...`) joined here and told to the other shards and the
    /// cluster link: SUBACKs
    /// on it wait for their acknowledgements as for new interest.
    pub(super) fn expect_acks(&mut self, full: &Utf8Bytes) {
        let pending = self.interest_pending.entry(full.clone()).or_default();
        pending.remaining += self.shards - 1 + usize::from(self.link.is_some());
    }

    /// Cluster mode: the SUBSCRIBE `token` waits for the link's retained store to catch up with the
    /// cluster's retained stream. Returns the key the link answers (`InterestAck`) with: one of its
    /// own, not a filter (it starts with a NUL, which no filter holds).
    pub(super) fn expect_sync(&mut self, token: SubToken) -> Utf8Bytes {
        self.next_sync += 1;
        let key = Utf8Bytes::from(format!("\0sync {}", self.next_sync));
        let pending = self.interest_pending.entry(key.clone()).or_default();
        pending.remaining = 1;
        pending.waiters.push(token);
        key
    }

    /// If interest in `filter` is not yet acknowledged everywhere, the SUBSCRIBE `token` waits for it:
    /// returns whether it does.
    pub(super) fn wait_for_interest(&mut self, filter: &Utf8Bytes, token: SubToken) -> bool {
        match self.interest_pending.get_mut(filter) {
            Some(pending) => {
                pending.waiters.push(token);
                true
            }
            None => false,
        }
    }

    /// Some SUBSCRIBE waits for its SUBACK.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending_subs.is_empty()
    }

    /// Whether the session in `slot` (at `generation`) has a SUBSCRIBE waiting for its SUBACK that will send the
    /// retained message `msg` after it (a filter matching its topic with retained messages asked
    /// for, and `msg` not known to be newer than the SUBSCRIBE: see
    /// [`is_after`](super::packets::is_after)). Such a message routed meanwhile is not delivered
    /// live to it as well: the shard that routed it stored it in the broker's one store first
    /// (`shard::retained`), so the retained copies read once the SUBACK goes have it, or a newer
    /// one of its topic.
    pub(super) fn awaits_retained(&self, slot: u32, generation: u32, msg: &Message) -> bool {
        self.pending_subs.iter().any(|(token, p)| {
            token.slot == slot
                && token.generation == generation
                && !super::packets::is_after(msg, p.since)
                && p.retained
                    .iter()
                    .any(|(filter, _)| crate::topic::matches(filter, &msg.topic))
        })
    }

    /// Keep a SUBSCRIBE whose SUBACK waits for interest acknowledgements.
    pub(super) fn park(&mut self, token: SubToken, pending: PendingSub) {
        self.pending_subs.insert(token, pending);
    }

    /// Another shard acknowledged interest in `filter`: the SUBSCRIBEs that waited only for that, in the
    /// order they were made.
    pub(super) fn interest_acked(
        &mut self,
        filter: &Utf8Bytes,
        from: ShardId,
    ) -> Vec<(SubToken, PendingSub)> {
        let mut done = Vec::new();
        let Some(pending) = self.interest_pending.get_mut(filter) else {
            return done;
        };
        pending.acked.insert(from);
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining > 0 {
            return done;
        }
        let PendingInterest { waiters, .. } =
            self.interest_pending.remove(filter).unwrap_or_default();
        for token in waiters {
            let Some(p) = self.pending_subs.get_mut(&token) else {
                continue;
            };
            p.waits -= 1;
            if p.waits == 0 {
                let p = self.pending_subs.remove(&token).expect("just seen");
                done.push((token, p));
            }
        }
        done
    }

    /// Remove the subscription of the session in `slot` to `filter`. None if it had none; otherwise
    /// whether this shard lost its last subscription to `filter` and other shards must be told.
    pub(super) fn remove(&mut self, filter: &Utf8Bytes, slot: u32) -> Option<bool> {
        self.trie.remove(filter, slot)?;
        Some(self.interest.remove(filter, self.me) && self.others_to_tell())
    }

    /// Shard `from` has a subscription to `filter` now.
    pub(super) fn add_remote_interest(&mut self, filter: &Utf8Bytes, from: ShardId) {
        self.interest.add(filter, from);
    }

    /// Shard `from` lost its last subscription to `filter`.
    pub(super) fn remove_remote_interest(&mut self, filter: &Utf8Bytes, from: ShardId) {
        self.interest.remove(filter, from);
    }

    /// The shards (this one included) with a subscription matching `topic`.
    pub(super) fn shards_for(&self, topic: &str) -> ShardSet {
        self.interest.shards_for(topic)
    }

    /// The sessions here with a subscription matching `topic`, one entry per session, sorted by slot,
    /// with its matching subscriptions merged ([`Matched`]). Give the buffer back with
    /// [`Self::recycle`].
    pub(super) fn matches(&mut self, topic: &str) -> Vec<Matched> {
        let mut matches = std::mem::take(&mut self.scratch);
        matches.clear();
        self.trie.for_each_match(topic, |slot, opts| {
            let mut ids = SmallVec::new();
            if opts.identifier != 0 {
                ids.push(opts.identifier);
            }
            matches.push(Matched {
                slot,
                opts: *opts,
                ids,
            })
        });
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| m.slot);
            matches.dedup_by(|later, kept| {
                if later.slot != kept.slot {
                    return false;
                }
                if later.opts.qos > kept.opts.qos {
                    kept.opts.qos = later.opts.qos;
                }
                kept.opts.retain_as_published |= later.opts.retain_as_published;
                kept.opts.no_local &= later.opts.no_local;
                kept.ids.extend(later.ids.drain(..));
                true
            });
        }
        matches
    }

    /// The buffer [`Self::matches`] lent, for the next delivery.
    pub(super) fn recycle(&mut self, matches: Vec<Matched>) {
        self.scratch = matches;
    }
}
