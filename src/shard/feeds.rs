//! The retained copies a SUBSCRIBE asked for that did not fit in its connection's outbox yet, fed to
//! it as the outbox drains. One [`Feeds`] per shard, owned by its [`Shard`](super::Shard) and touched
//! on that shard's thread only: a SUBACK's retained copies enter it (`packets/subscribe.rs`), the
//! connection's task takes more from it after each batch written and after acknowledgements
//! (`serving.rs`), live retained messages mark what they make stale (`packets/publish.rs`), and the
//! session's end or takeover flushes it into the session (`packets/session.rs`).
//!
//! Why: a filter such as `#` over 50,000 retained messages of 1 KiB is 51 MB of copies. Written into
//! the outbox at once they went past its soft limit after ~4,000 QoS 0 copies, and the rest were
//! dropped (a 1 KiB retained storm lost 92% of its messages); QoS 1/2 copies past the session's queue
//! limit were dropped too. Mosquitto sends them all. Here they wait as references (an `Arc` and the
//! options each), in the order the store gave them, and the outbox gets about half its soft limit at
//! a time; a QoS 1/2 copy waits while the session's queue is half full, so none of them is dropped.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;

use crate::codec::{SubscriptionOptions, Utf8Bytes};
use crate::message::Message;
use crate::session::Outbox;

/// One retained copy: the message and the options of the subscription that asked for it.
pub(super) type Copy = (Arc<Message>, SubscriptionOptions);

/// The copies waiting for one connection.
pub(super) struct Feed {
    /// Keeps the key ([`key`]) from naming another connection's outbox while the feed lives.
    outbox: Rc<Outbox>,
    pub(super) slot: u32,
    pub(super) generation: u32,
    copies: VecDeque<Copy>,
    /// Sequence number of `copies[0]`; the others follow it.
    first_seq: u64,
    /// Topic → the sequence number that was next when a retained message of that topic reached the
    /// session live: waiting copies of the topic numbered below it are older than what the client
    /// has and are not sent (a retained copy after a live update would undo it on the client).
    /// Boxed and only once that happened: most feeds never see it.
    superseded: Option<Box<AHashMap<Utf8Bytes, u64>>>,
}

impl Feed {
    /// A feed of `copies` for the session in `slot` on `outbox` (not kept anywhere yet).
    pub(super) fn new(
        outbox: &Rc<Outbox>,
        slot: u32,
        generation: u32,
        copies: VecDeque<Copy>,
    ) -> Feed {
        Feed {
            outbox: outbox.clone(),
            slot,
            generation,
            copies,
            first_seq: 0,
            superseded: None,
        }
    }

    /// Whether this feed is for the connection on `outbox`.
    pub(super) fn is_for(&self, outbox: &Rc<Outbox>) -> bool {
        Rc::ptr_eq(&self.outbox, outbox)
    }

    /// The next copy to send, without taking it; stale ones before it (see [`Feed::superseded`])
    /// are dropped.
    pub(super) fn front(&mut self) -> Option<&Copy> {
        if let Some(superseded) = &self.superseded {
            while let Some(c) = self.copies.front() {
                let stale = superseded
                    .get(&c.0.topic)
                    .is_some_and(|&live| self.first_seq < live);
                if !stale {
                    break;
                }
                self.copies.pop_front();
                self.first_seq += 1;
            }
        }
        self.copies.front()
    }

    /// Take the copy [`Feed::front`] returned.
    pub(super) fn pop(&mut self) -> Option<Copy> {
        let c = self.copies.pop_front()?;
        self.first_seq += 1;
        Some(c)
    }

    fn next_seq(&self) -> u64 {
        self.first_seq + self.copies.len() as u64
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// Copies for the same connection, after those waiting (numbered on from `first_seq`, so a
    /// live update marked before them does not make them stale).
    pub(super) fn extend(&mut self, copies: VecDeque<Copy>) {
        if self.copies.is_empty() {
            // Nothing waits: take the new queue as it is instead of copying it.
            self.copies = copies;
        } else {
            self.copies.extend(copies);
        }
    }
}

/// The feeds of this shard's connections, by outbox.
#[derive(Default)]
pub(super) struct Feeds(AHashMap<usize, Feed>);

/// A connection's key: its outbox's address, unique while a feed keeps the outbox alive.
fn key(outbox: &Rc<Outbox>) -> usize {
    Rc::as_ptr(outbox) as usize
}

impl Feeds {
    /// No connection has copies waiting (the check every write and read pays).
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A retained message of `topic` was delivered live on `outbox`: the copies of it waiting there
    /// now are older.
    pub(super) fn supersede(&mut self, outbox: &Rc<Outbox>, topic: &Utf8Bytes) {
        if let Some(feed) = self.0.get_mut(&key(outbox)) {
            let next = feed.next_seq();
            feed.superseded
                .get_or_insert_with(Default::default)
                .insert(topic.clone(), next);
        }
    }

    /// Take the feed of `outbox` (to feed it, or because its connection ended).
    pub(super) fn take(&mut self, outbox: &Rc<Outbox>) -> Option<Feed> {
        if self.0.is_empty() {
            return None;
        }
        self.0.remove(&key(outbox))
    }

    /// Keep a feed that still has copies (an empty one is dropped).
    pub(super) fn put_back(&mut self, feed: Feed) {
        if !feed.copies.is_empty() {
            self.0.insert(key(&feed.outbox), feed);
        }
    }

    /// Copies waiting, over all connections (tests).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.0.values().map(|f| f.copies.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Properties, QoS};

    fn retained(topic: &'static str) -> Arc<Message> {
        Arc::new(Message::new(
            Utf8Bytes::from_static(topic),
            Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            true,
            Properties::default(),
            None,
        ))
    }

    fn topics(feed: &mut Feed) -> Vec<String> {
        std::iter::from_fn(|| {
            feed.front()?;
            feed.pop()
        })
        .map(|c| c.0.topic.to_string())
        .collect()
    }

    fn copies(topics: &[&'static str]) -> VecDeque<Copy> {
        let opts = SubscriptionOptions::default();
        topics.iter().map(|t| (retained(t), opts)).collect()
    }

    #[test]
    fn copies_keep_their_order_and_a_live_update_makes_only_older_copies_stale() {
        let outbox = Rc::new(Outbox::new());
        let mut feeds = Feeds::default();
        feeds.put_back(Feed::new(&outbox, 3, 7, copies(&["a", "b"])));
        feeds.supersede(&outbox, &Utf8Bytes::from_static("a"));
        // A later SUBSCRIBE's copy of `a` is newer than the live one: it goes.
        let mut feed = feeds.take(&outbox).expect("a feed");
        feed.extend(copies(&["a"]));
        feeds.put_back(feed);
        assert_eq!(feeds.waiting(), 3);
        let mut feed = feeds.take(&outbox).expect("a feed");
        assert_eq!((feed.slot, feed.generation), (3, 7));
        assert_eq!(topics(&mut feed), vec!["b".to_owned(), "a".to_owned()]);
        assert!(feed.is_empty());
        feeds.put_back(feed);
        assert!(feeds.is_empty(), "an empty feed is not kept");
    }

    #[test]
    fn live_updates_elsewhere_do_not_touch_a_feed() {
        let (one, two) = (Rc::new(Outbox::new()), Rc::new(Outbox::new()));
        let mut feeds = Feeds::default();
        feeds.put_back(Feed::new(&one, 1, 1, copies(&["a"])));
        feeds.supersede(&two, &Utf8Bytes::from_static("a"));
        assert!(feeds.take(&two).is_none());
        let mut feed = feeds.take(&one).expect("a feed");
        assert_eq!(topics(&mut feed), vec!["a".to_owned()]);
    }
}
