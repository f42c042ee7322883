//! A SUBSCRIBE takes effect when it is read: the messages this shard routed or delivered lately, kept
//! for a short window, so that a subscription whose SUBSCRIBE the kernel received before a PUBLISH still
//! gets that PUBLISH when the shards read the two in the other order (docs/ARCHITECTURE.md, "A SUBSCRIBE
//! takes effect when it is read", has the argument). One per shard, touched on its thread only: routing
//! (`packets/publish.rs`) and mail (`executor.rs`) fill it, SUBSCRIBE handling (`packets/subscribe.rs`)
//! and `Mail::InterestAdd` read it back.
//!
//! Times are the kernel's receive times of the reads that carried the PUBLISH and the SUBSCRIBE
//! (`SO_TIMESTAMPNS`, read with each `recvmsg` in `tcp.rs`), in nanoseconds since the epoch: they order what the
//! clients sent on different connections as it reached the machine, which the shards' own reads do
//! not: a parked shard wakes later than a busy one reads, and even one shard reads a connection whose
//! reader is already running before one whose readiness it has yet to hear of.

use std::collections::VecDeque;
use std::sync::Arc;

use ahash::AHashMap;
use smallvec::SmallVec;

use crate::codec::{SubscriptionOptions, Utf8Bytes};
use crate::message::Message;

/// How far back a SUBSCRIBE can reach: its shard may handle it this long after the kernel received it
/// (a busy shard's read latency, then the interest mail's trip), and still get every message that was
/// received after it. 1 s, not the 250 ms it was: with 64 shards on 2 cores (CI's second pass, two
/// brokers side by side) a shard's thread waited past 250 ms for a CPU now and then, and a group's
/// first member missed the PUBLISH sent right behind its SUBSCRIBE (tests/24_shared.rs). The ring is
/// bounded by [`MAX_ENTRIES`] and [`MAX_BYTES`] whatever the window, so at full rate nothing changes;
/// below ~4,000 messages/s per shard it holds up to 4x as many references as before.
const WINDOW_NS: u64 = 1_000_000_000;

/// Cluster mode: how long a subscription is named as younger than the messages received before its
/// SUBSCRIBE. A copy from another node can be on its way much longer than mail between shards (a
/// JetStream pull sent again, `cluster::pull`: 2 s; a copy waiting for its twin, `moves`: 1 s); only
/// SUBSCRIBEs are kept this long, not messages.
const CLUSTER_SUBSCRIBED_NS: u64 = 5_000_000_000;

/// At most this many messages kept per shard, whatever the window: at 650k messages/s through a shard
/// (2 shards at full rate here), the window shrinks to ~6 ms rather than holding more. Kept small on
/// purpose: what the ring holds is freed late and cold, and at 65,536 entries that cost a fifth of the
/// full-rate throughput (docs/PERFORMANCE.md, "Issue 17, subscribe takes effect when read").
const MAX_ENTRIES: usize = 4_096;

/// At most this many payload bytes kept per shard (large payloads shrink the window instead).
const MAX_BYTES: usize = 8 << 20;

pub(super) struct Lookback {
    /// In the order this shard handled them.
    entries: VecDeque<Entry>,
    /// Payload bytes of `entries`.
    bytes: usize,
    /// The latest receive time pushed so far.
    horizon: u64,
    /// The other way round: subscriptions made here within the window (session slot → filter and
    /// the receive time of its SUBSCRIBE). A message received before a subscription's SUBSCRIBE is
    /// not for it, though it may reach this shard after the SUBSCRIBE was read (in a mailbox from
    /// another shard meanwhile). Empty but while clients subscribe.
    subscribed: AHashMap<u32, SmallVec<[(Utf8Bytes, u64); 2]>>,
    /// How long `subscribed` keeps a SUBSCRIBE: [`WINDOW_NS`], or [`CLUSTER_SUBSCRIBED_NS`].
    subscribed_ns: u64,
}

impl Default for Lookback {
    fn default() -> Lookback {
        Lookback {
            entries: VecDeque::new(),
            bytes: 0,
            horizon: 0,
            subscribed: AHashMap::new(),
            subscribed_ns: WINDOW_NS,
        }
    }
}

struct Entry {
    msg: Arc<Message>,
    /// `msg`'s payload length, kept here so that eviction does not read the (cold) message.
    bytes: u32,
    /// `horizon` once this entry was pushed: no entry before it was received later than this. Never
    /// decreases along `entries`, so a binary search finds where the messages received after a given
    /// time can start, although mail from other shards comes in slightly out of time order.
    horizon: u64,
    /// Routed by this shard (read from one of its clients); otherwise delivered here by mail.
    routed_here: bool,
}

impl Lookback {
    /// A shard of a cluster node: messages come from other nodes too (`cluster::wire` carries their
    /// receive time), later than from other shards.
    pub(super) fn for_cluster() -> Lookback {
        Lookback {
            subscribed_ns: CLUSTER_SUBSCRIBED_NS,
            ..Lookback::default()
        }
    }

    /// Keep `msg`, just routed here (`routed_here`) or delivered here by mail. Messages without a
    /// receive time (wills, `$SYS`, restored messages) are not kept.
    pub(super) fn push(&mut self, msg: &Arc<Message>, routed_here: bool) {
        let at = msg.read_at;
        if at == 0 {
            return;
        }
        self.horizon = self.horizon.max(at);
        let bytes = u32::try_from(msg.payload.len()).unwrap_or(u32::MAX);
        self.bytes += bytes as usize;
        self.entries.push_back(Entry {
            msg: msg.clone(),
            bytes,
            horizon: self.horizon,
            routed_here,
        });
        let oldest = self.horizon.saturating_sub(WINDOW_NS);
        self.evict(oldest);
    }

    /// Let go of what is older than the window at wall-clock time `now_ns` (on the shard's tick, so an
    /// idle shard does not keep its last messages alive).
    pub(super) fn expire(&mut self, now_ns: u64) {
        let oldest = now_ns.saturating_sub(WINDOW_NS);
        self.evict(oldest);
        if !self.subscribed.is_empty() {
            let oldest = now_ns.saturating_sub(self.subscribed_ns);
            self.subscribed.retain(|_, subs| {
                subs.retain(|(_, since)| *since >= oldest);
                !subs.is_empty()
            });
        }
    }

    /// Session `slot` subscribed to `filter` with a SUBSCRIBE the kernel received at `since`. (A slot
    /// reused by another session within the window keeps these: harmless, as that session's own
    /// SUBSCRIBEs come later.)
    pub(super) fn subscribed(&mut self, slot: u32, filter: &Utf8Bytes, since: u64) {
        if since == 0 {
            return;
        }
        let subs = self.subscribed.entry(slot).or_default();
        subs.retain(|(f, _)| f != filter);
        subs.push((filter.clone(), since));
    }

    /// Whether some session subscribed within the window (one branch per delivery otherwise).
    pub(super) fn has_subscribed(&self) -> bool {
        !self.subscribed.is_empty()
    }

    /// Whether `msg` is for session `slot`, whose subscriptions are `subscriptions`, as far as time
    /// goes: none of them is younger than the message, or one that is not matches it.
    pub(super) fn is_for(
        &self,
        slot: u32,
        subscriptions: &crate::session::SeededMap<Utf8Bytes, SubscriptionOptions>,
        msg: &Message,
    ) -> bool {
        let younger = self.subscribed_after(slot, msg);
        younger.is_empty()
            || subscriptions.keys().any(|filter| {
                !younger.contains(&filter) && crate::topic::matches(filter, &msg.topic)
            })
    }

    /// The young subscriptions of session `slot`: each filter and when the kernel received its
    /// SUBSCRIBE (a session moving to another node takes them along, `router::Lately`).
    pub(super) fn subscribed_of(&self, slot: u32) -> Vec<(Utf8Bytes, u64)> {
        self.subscribed
            .get(&slot)
            .map_or_else(Vec::new, |subs| subs.iter().cloned().collect())
    }

    /// The filters session `slot` subscribed to after the kernel received `msg`: not for `msg`.
    pub(super) fn subscribed_after(&self, slot: u32, msg: &Message) -> SmallVec<[&Utf8Bytes; 2]> {
        match self.subscribed.get(&slot) {
            Some(subs) if msg.read_at != 0 => subs
                .iter()
                .filter(|(_, since)| *since > msg.read_at)
                .map(|(f, _)| f)
                .collect(),
            _ => SmallVec::new(),
        }
    }

    fn evict(&mut self, oldest: u64) {
        while let Some(front) = self.entries.front() {
            let over = self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES;
            if front.horizon >= oldest && !over {
                break;
            }
            self.bytes -= front.bytes as usize;
            self.entries.pop_front();
        }
    }

    /// The messages received after `since`, in the order this shard handled them, and whether each
    /// was routed here.
    pub(super) fn received_after(
        &self,
        since: u64,
    ) -> impl Iterator<Item = (&Arc<Message>, bool)> + '_ {
        let start = self.entries.partition_point(|e| e.horizon <= since);
        self.entries
            .range(start..)
            .filter(move |e| e.msg.read_at > since)
            .map(|e| (&e.msg, e.routed_here))
    }

    /// Appends to `out` the cluster-wide ids (`Message::id`) of the messages kept here that one of
    /// `subscriptions` (shared ones aside) matches: what a session with them was given lately, or
    /// not given for a reason its new node has too (`Moves::seen_by`: a session moving to another
    /// node; that node then drops a late twin instead of giving it a second time).
    pub(super) fn ids_matching(
        &self,
        subscriptions: &crate::session::SeededMap<Utf8Bytes, SubscriptionOptions>,
        out: &mut Vec<u64>,
    ) {
        let filters: SmallVec<[&Utf8Bytes; 4]> = subscriptions
            .keys()
            .filter(|f| !f.starts_with(crate::topic::SHARED_PREFIX))
            .collect();
        if filters.is_empty() {
            return;
        }
        out.extend(
            self.entries
                .iter()
                .filter(|e| {
                    e.msg.id != 0
                        && crate::topic::matches_any(filters.iter().copied(), &e.msg.topic)
                })
                .map(|e| e.msg.id),
        );
    }

    /// Whether this very message (not an equal one) was handled here within the window.
    pub(super) fn contains(&self, msg: &Arc<Message>) -> bool {
        let start = self.entries.partition_point(|e| e.horizon < msg.read_at);
        self.entries
            .range(start..)
            .any(|e| Arc::ptr_eq(&e.msg, msg))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How late a read the kernel received at `since` is handled, in milliseconds, if later than the
/// window (what was received between may be missed: a shard stalled that long); `None` otherwise.
pub(crate) fn late_ms(since: u64) -> Option<u64> {
    let late = now_ns().saturating_sub(since);
    (since != 0 && late > WINDOW_NS).then_some(late / 1_000_000)
}

/// Wall-clock time in nanoseconds since the epoch, as the kernel stamps reads.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, QoS, Utf8Bytes};
    use bytes::Bytes;

    fn msg(at: u64, payload: usize) -> Arc<Message> {
        let mut m = Message::new(
            Utf8Bytes::from_static("t"),
            Bytes::from(vec![0; payload]),
            QoS::AtMostOnce,
            false,
            Properties::default(),
            None,
        );
        m.read_at = at;
        Arc::new(m)
    }

    fn ats(l: &Lookback, since: u64) -> Vec<u64> {
        l.received_after(since).map(|(m, _)| m.read_at).collect()
    }

    #[test]
    fn messages_received_after_a_time_are_found_although_mail_comes_out_of_order() {
        let mut l = Lookback::default();
        // Handled in this order; 15 came by mail after 20 was routed here.
        for at in [10, 20, 15, 30, 25] {
            l.push(&msg(at, 1), at % 10 == 0);
        }
        assert_eq!(ats(&l, 0), [10, 20, 15, 30, 25]);
        assert_eq!(ats(&l, 12), [20, 15, 30, 25]);
        assert_eq!(ats(&l, 17), [20, 30, 25]);
        assert_eq!(ats(&l, 27), [30]);
        assert_eq!(ats(&l, 30), Vec::<u64>::new());
        let routed: Vec<bool> = l.received_after(0).map(|(_, r)| r).collect();
        assert_eq!(routed, [true, true, false, true, false]);
    }

    #[test]
    fn messages_without_a_receive_time_are_not_kept() {
        let mut l = Lookback::default();
        l.push(&msg(0, 1), true);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn the_window_count_and_bytes_bound_what_is_kept() {
        let mut l = Lookback::default();
        l.push(&msg(1_000, 1), true);
        l.push(&msg(1_000 + WINDOW_NS, 1), true);
        assert_eq!(l.len(), 2, "exactly the window: kept");
        l.push(&msg(2_000 + WINDOW_NS, 1), true);
        assert_eq!(ats(&l, 0), [1_000 + WINDOW_NS, 2_000 + WINDOW_NS]);
        l.expire(3_000 + 2 * WINDOW_NS);
        assert_eq!(l.len(), 0, "an idle shard lets go on its tick");

        for i in 1..=MAX_ENTRIES as u64 + 10 {
            l.push(&msg(10 * WINDOW_NS + i, 0), true);
        }
        assert_eq!(l.len(), MAX_ENTRIES);
        l.expire(u64::MAX);
        l.push(&msg(20 * WINDOW_NS, MAX_BYTES / 2), true);
        l.push(&msg(20 * WINDOW_NS + 1, MAX_BYTES / 2), true);
        assert_eq!(l.len(), 2);
        l.push(&msg(20 * WINDOW_NS + 2, 1), true);
        assert_eq!(ats(&l, 0), [20 * WINDOW_NS + 1, 20 * WINDOW_NS + 2]);
    }

    #[test]
    fn subscriptions_younger_than_a_message_are_named_until_they_age_out() {
        let mut l = Lookback::default();
        let (a, b) = (Utf8Bytes::from_static("a"), Utf8Bytes::from_static("b/#"));
        assert!(!l.has_subscribed());
        l.subscribed(1, &a, 100);
        l.subscribed(1, &b, 200);
        l.subscribed(2, &a, 0);
        assert!(l.has_subscribed());
        let names = |l: &Lookback, slot, at| -> Vec<String> {
            l.subscribed_after(slot, &msg(at, 1))
                .iter()
                .map(|f| f.to_string())
                .collect()
        };
        assert_eq!(names(&l, 1, 50), ["a", "b/#"]);
        assert_eq!(names(&l, 1, 150), ["b/#"]);
        assert_eq!(names(&l, 1, 200), Vec::<String>::new());
        assert_eq!(names(&l, 2, 50), Vec::<String>::new(), "no time: none");
        l.subscribed(1, &a, 300);
        assert_eq!(
            names(&l, 1, 250),
            ["a"],
            "re-subscribed: the latest time counts"
        );
        l.expire(250 + WINDOW_NS);
        assert_eq!(names(&l, 1, 1), ["a"]);
        l.expire(301 + WINDOW_NS);
        assert!(!l.has_subscribed());

        // A cluster node keeps them longer: copies from other nodes come later than mail.
        let mut l = Lookback::for_cluster();
        l.subscribed(1, &a, 100);
        l.expire(100 + WINDOW_NS * 4);
        assert_eq!(names(&l, 1, 50), ["a"]);
        l.expire(101 + CLUSTER_SUBSCRIBED_NS);
        assert!(!l.has_subscribed());
    }

    #[test]
    fn contains_finds_the_same_message_not_an_equal_one() {
        let mut l = Lookback::default();
        let (a, b) = (msg(5, 1), msg(5, 1));
        l.push(&a, false);
        l.push(&msg(9, 1), true);
        assert!(l.contains(&a));
        assert!(!l.contains(&b));
    }
}
