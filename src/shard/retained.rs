//! This shard's copy of the retained store: every shard holds the whole retained set, kept the same by
//! `Mail::Retain` (see `router`). One per shard, owned by its [`Shard`](super::Shard) and touched on
//! that shard's thread only: routing (`packets/publish.rs`) and other shards' retain mail
//! (`executor.rs`) change it, a new subscription (`packets/subscribe.rs`) reads it, and `$SYS` counts
//! it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::codec::Utf8Bytes;
use crate::index::RetainedStore;
use crate::message::{Message, Remaining};

pub(super) struct Retained {
    /// Topic → the message retained there.
    store: RetainedStore<Arc<Message>>,
    /// When retained messages with a v5 Message Expiry Interval expire, soonest first, so that they
    /// leave the store (and `$SYS`'s count) without a scan of it. An entry whose topic got another
    /// message since is stale: [`Self::remove_expired`] looks at what the topic holds now.
    expiring: BinaryHeap<Reverse<(Instant, Utf8Bytes)>>,
}

impl Retained {
    pub(super) fn new() -> Retained {
        Retained {
            store: RetainedStore::new(),
            expiring: BinaryHeap::new(),
        }
    }

    /// Store, replace or (empty payload) clear a retained message in this shard's copy.
    pub(super) fn store(&mut self, msg: Arc<Message>) {
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

    /// Remove the retained messages whose expiry interval passed by `now` [MQTT-3.3.2-5]; returns
    /// their topics (the caller journals their removal).
    pub(super) fn remove_expired(&mut self, now: Instant) -> Vec<Utf8Bytes> {
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

    /// Each retained message whose topic matches `filter`.
    pub(super) fn for_each_match(&self, filter: &str, mut f: impl FnMut(&Arc<Message>)) {
        self.store.for_each_match(filter, |_, m| f(m));
    }

    /// Every retained message, `$` topics included.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Arc<Message>)) {
        self.store.for_each(|_, m| f(m));
    }

    pub(super) fn len(&self) -> usize {
        self.store.len()
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
        let mut r = Retained::new();
        r.store(retained("a", Some(10), 11));
        r.store(retained("b", Some(10), 5));
        r.store(retained("c", None, 0));
        // Retained again without an expiry: the earlier deadline is stale.
        r.store(retained("d", Some(10), 11));
        r.store(retained("d", None, 0));
        let now = Instant::now();
        assert_eq!(r.remove_expired(now), vec![Utf8Bytes::from_static("a")]);
        assert_eq!(r.len(), 3);
        assert!(r.remove_expired(now).is_empty());
        let later = now + Duration::from_secs(5);
        assert_eq!(r.remove_expired(later), vec![Utf8Bytes::from_static("b")]);
        assert_eq!(r.len(), 2);
        assert!(r.expiring.is_empty());
    }

    #[test]
    fn stale_deadlines_do_not_pile_up() {
        let mut r = Retained::new();
        for _ in 0..10_000 {
            r.store(retained("t", Some(3600), 0));
        }
        assert!(r.expiring.len() <= 2 * r.len() + 65, "{}", r.expiring.len());
    }
}
