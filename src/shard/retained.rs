//! The retained store: one for the whole broker, whatever the shard count (issue 18: one copy of each
//! retained message per broker). It is split into one stripe per shard by the topic's hash
//! ([`home_of`], the same split that decides which shard's log records a topic: `journal.rs`), each
//! stripe a trie behind its own `RwLock`; every shard holds an [`Arc`] of the stripes in its
//! [`Retained`].
//!
//! Who touches what: the shard that routes a retained PUBLISH stores it (`packets/publish.rs`)
//! before the message goes anywhere, so a SUBSCRIBE handled on any shard after a live copy of it
//! arrived there finds it, or a newer one, in the store (`Subscriptions::awaits_retained`); a new
//! subscription reads the stripes its filter can match (`packets/subscribe.rs`); the shard whose
//! stripe it is removes expired messages at its tick (`executor.rs`) and writes the stripe to its
//! snapshot (`journal/task.rs`); `$SYS` counts the whole store once.
//!
//! Why shared, not a copy per shard (the design before): the copies' index nodes cost ~135 B per
//! retained message per extra shard (50,000 x 1 KiB retained messages: 3,344 B each with 16 shards
//! against 1,319 B with one), and a retained PUBLISH cost one trie insert on every shard. A lock per
//! stripe is taken for one trie insert or removal, or for a SUBSCRIBE's walk while it clones the
//! matching `Arc`s, never across an await; stripes keep publishers of different topics apart.
//! docs/PERFORMANCE.md, "Issue 18, third session", has the measurements.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use super::home_of;
use crate::codec::Utf8Bytes;
use crate::index::RetainedStore;
use crate::message::{Message, Remaining};
use crate::router::ShardId;

/// The broker's retained messages: one stripe per shard.
pub struct RetainedStripes {
    stripes: Box<[RwLock<Stripe>]>,
}

impl RetainedStripes {
    /// An empty store for a broker of `shards` shards.
    pub fn new(shards: usize) -> Arc<RetainedStripes> {
        Arc::new(RetainedStripes {
            stripes: (0..shards.max(1)).map(|_| RwLock::default()).collect(),
        })
    }

    /// Stores `msg` (clears its topic when its payload is empty), from outside the shards: the
    /// cluster link applying the cluster's retained stream (`cluster::retained`).
    pub fn store(&self, msg: Arc<Message>) {
        let i = home_of(msg.topic.as_bytes(), self.stripes.len());
        self.stripes[usize::from(i)]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .store(msg);
    }
}

/// One stripe: the topics whose hash gives its shard.
#[derive(Default)]
struct Stripe {
    /// Topic → the message retained there.
    store: RetainedStore<Arc<Message>>,
    /// When retained messages with a v5 Message Expiry Interval expire, soonest first, so that they
    /// leave the store (and `$SYS`'s count) without a scan of it. An entry whose topic got another
    /// message since is stale: [`Stripe::remove_expired`] looks at what the topic holds now.
    expiring: BinaryHeap<Reverse<(Instant, Utf8Bytes)>>,
}

impl Stripe {
    fn store(&mut self, msg: Arc<Message>) {
        if msg.payload.is_empty() {
            self.store.remove(&msg.topic);
        } else {
            let topic = msg.topic.clone();
            if let Some(at) = msg.expires_at() {
                self.expiring.push(Reverse((at, topic.clone())));
                // Stale entries of topics retained again and again: rebuilt from the store before
                // they outnumber it (amortised, so the heap stays within twice the store).
                if self.expiring.len() > 2 * self.store.len() + 64 {
                    self.rebuild_expiring();
                }
            }
            self.store.set(&topic, msg);
        }
    }

    fn rebuild_expiring(&mut self) {
        let mut fresh = Vec::new();
        self.store.for_each(|topic, m| {
            if let Some(at) = m.expires_at() {
                fresh.push(Reverse((at, Utf8Bytes::from(topic.to_owned()))));
            }
        });
        self.expiring = BinaryHeap::from(fresh);
    }

    fn remove_expired(&mut self, now: Instant) -> Vec<Utf8Bytes> {
        let mut removed = Vec::new();
        while let Some(Reverse((at, _))) = self.expiring.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, topic))) = self.expiring.pop() else {
                break;
            };
            let expired = self
                .store
                .get(&topic)
                .is_some_and(|m| m.remaining(now) == Remaining::Expired);
            if expired {
                self.store.remove(&topic);
                removed.push(topic);
            }
        }
        removed
    }
}

/// A shard's hold on the broker's retained store.
pub(super) struct Retained {
    stripes: Arc<RetainedStripes>,
    /// This shard: the stripe it keeps (expiry, snapshots).
    me: ShardId,
}

impl Retained {
    pub(super) fn new(stripes: Arc<RetainedStripes>, me: ShardId) -> Retained {
        Retained { stripes, me }
    }

    fn stripe_of(&self, topic: &str) -> &RwLock<Stripe> {
        let i = home_of(topic.as_bytes(), self.stripes.stripes.len());
        &self.stripes.stripes[usize::from(i)]
    }

    /// Store, replace or (empty payload) clear a retained message.
    pub(super) fn store(&self, msg: Arc<Message>) {
        let stripe = self.stripe_of(&msg.topic);
        stripe
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .store(msg);
    }

    /// Start-up: a retained message read back from disk, stored by the shard whose stripe it is in
    /// (every shard is given the whole set).
    pub(super) fn restore(&self, msg: Arc<Message>) {
        if self.houses(&msg.topic) {
            self.store(msg);
        }
    }

    fn houses(&self, topic: &str) -> bool {
        std::ptr::eq(self.stripe_of(topic), self.own())
    }

    fn own(&self) -> &RwLock<Stripe> {
        &self.stripes.stripes[usize::from(self.me) % self.stripes.stripes.len()]
    }

    /// Remove the retained messages of this shard's stripe whose expiry interval passed by `now`
    /// [MQTT-3.3.2-5]; returns their topics (the caller journals their removal).
    pub(super) fn remove_expired(&self, now: Instant) -> Vec<Utf8Bytes> {
        let mut stripe = self.own().write().unwrap_or_else(PoisonError::into_inner);
        if stripe
            .expiring
            .peek()
            .map_or(true, |Reverse((at, _))| *at > now)
        {
            return Vec::new();
        }
        stripe.remove_expired(now)
    }

    /// Each retained message whose topic matches `filter`: a filter without wildcards reads one
    /// stripe, any other every stripe, one at a time.
    pub(super) fn for_each_match(&self, filter: &str, mut f: impl FnMut(&Arc<Message>)) {
        if !filter.contains(['+', '#']) {
            let stripe = self.stripe_of(filter).read();
            let stripe = stripe.unwrap_or_else(PoisonError::into_inner);
            stripe.store.for_each_match(filter, |_, m| f(m));
            return;
        }
        for stripe in self.stripes.stripes.iter() {
            let stripe = stripe.read().unwrap_or_else(PoisonError::into_inner);
            stripe.store.for_each_match(filter, |_, m| f(m));
        }
    }

    /// Every retained message of this shard's stripe, `$` topics included (snapshots).
    pub(super) fn for_each_own(&self, mut f: impl FnMut(&Arc<Message>)) {
        let stripe = self.own().read().unwrap_or_else(PoisonError::into_inner);
        stripe.store.for_each(|_, m| f(m));
    }

    /// Retained messages in the whole store.
    pub(super) fn len(&self) -> usize {
        self.stripes
            .stripes
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).store.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::codec::{Properties, QoS};

    fn retained(topic: &'static str, expiry: Option<u32>, aged: u64) -> Arc<Message> {
        let mut m = Message::new(
            Utf8Bytes::from_static(topic),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            true,
            Properties {
                message_expiry_interval: expiry,
                ..Properties::default()
            },
            None,
        );
        m.age_by(aged);
        Arc::new(m)
    }

    #[test]
    fn expired_retained_messages_leave_the_store_and_replaced_ones_stay() {
        let mut r = Stripe::default();
        r.store(retained("a", Some(10), 11));
        r.store(retained("b", Some(10), 5));
        r.store(retained("c", None, 0));
        // Retained again without an expiry: the earlier deadline is stale.
        r.store(retained("d", Some(10), 11));
        r.store(retained("d", None, 0));
        let now = Instant::now();
        assert_eq!(r.remove_expired(now), vec![Utf8Bytes::from_static("a")]);
        assert_eq!(r.store.len(), 3);
        assert!(r.remove_expired(now).is_empty());
        let later = now + Duration::from_secs(5);
        assert_eq!(r.remove_expired(later), vec![Utf8Bytes::from_static("b")]);
        assert_eq!(r.store.len(), 2);
        assert!(r.expiring.is_empty());
    }

    fn matching(r: &Retained, filter: &str) -> Vec<String> {
        let mut topics = Vec::new();
        r.for_each_match(filter, |m| topics.push(m.topic.to_string()));
        topics.sort();
        topics
    }

    #[test]
    fn every_shard_sees_one_store_split_into_stripes() {
        let stripes = RetainedStripes::new(4);
        let shards: Vec<Retained> = (0..4).map(|i| Retained::new(stripes.clone(), i)).collect();
        let topics: Vec<String> = (0..40).map(|i| format!("s/{i}")).collect();
        for (i, t) in topics.iter().enumerate() {
            // Stored by whichever shard routed it.
            shards[i % 4].store(retained(Box::leak(t.clone().into_boxed_str()), None, 0));
        }
        let used = stripes
            .stripes
            .iter()
            .filter(|s| !s.read().unwrap().store.is_empty())
            .count();
        assert!(used > 1, "40 topics in one stripe of 4");
        let mut all = topics.clone();
        all.sort();
        for r in &shards {
            assert_eq!(r.len(), 40, "counted once, whole");
            assert_eq!(matching(r, "s/#"), all);
            assert_eq!(matching(r, "s/7"), vec!["s/7".to_owned()]);
            assert!(matching(r, "t/+").is_empty());
        }
        // A snapshot writes each message once: from the shard whose stripe has it.
        let mut owned = 0;
        for r in &shards {
            r.for_each_own(|m| {
                assert!(r.houses(&m.topic));
                owned += 1;
            });
        }
        assert_eq!(owned, 40);
        // Cleared by any shard, gone for all.
        let clear = Message::new(
            Utf8Bytes::from_static("s/7"),
            Bytes::new(),
            QoS::AtMostOnce,
            true,
            Properties::default(),
            None,
        );
        shards[3].store(Arc::new(clear));
        assert!(matching(&shards[0], "s/7").is_empty());
        assert_eq!(shards[1].len(), 39);
    }

    #[test]
    fn a_restored_message_is_stored_once_and_expires_on_its_stripes_shard() {
        let stripes = RetainedStripes::new(3);
        let shards: Vec<Retained> = (0..3).map(|i| Retained::new(stripes.clone(), i)).collect();
        let m = retained("x/y", Some(10), 11);
        for r in &shards {
            r.restore(m.clone());
        }
        assert_eq!(Arc::strong_count(&m), 2, "one copy in the store");
        let now = Instant::now();
        let keeper = shards.iter().position(|r| r.houses("x/y")).expect("one");
        for (i, r) in shards.iter().enumerate() {
            let removed = r.remove_expired(now);
            if i == keeper {
                assert_eq!(removed, vec![Utf8Bytes::from_static("x/y")]);
            } else {
                assert!(removed.is_empty());
            }
        }
        assert_eq!(shards[0].len(), 0);
    }

    #[test]
    fn stale_deadlines_do_not_pile_up() {
        let mut r = Stripe::default();
        for _ in 0..10_000 {
            r.store(retained("t", Some(3600), 0));
        }
        assert!(
            r.expiring.len() <= 2 * r.store.len() + 65,
            "{}",
            r.expiring.len()
        );
    }
}
