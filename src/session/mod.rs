//! One client's session: subscriptions, the outbound inflight window and queue, inbound QoS 2 state and
//! the will. No I/O: packets are encoded into the connection's [`Outbox`] and the connection's writer
//! flushes it.
//!
//! Concurrency model: a session lives on its home shard (`home(client_id)`), in that shard's slab, and is
//! touched only by that shard's thread. Its outbox is shared (`Rc`) with the connection's writer on
//! the same thread.

pub mod alias;
mod custody;
mod frame;
mod hold;
mod ledger;
mod outbox;
mod persisted;
mod seeded;
mod send;

pub use custody::Custody;
pub use frame::{Framed, PerCopy};

pub use hold::{
    HoldSignal, HoldStamp, Holding, Origin, PublisherHold, SlowSubscriberPolicy, HOLD_GRACE,
    HOLD_LEASE,
};
pub use ledger::{Ledger, NoLedger};
pub use outbox::{recycle_written, spare_queue, Chunk, CloseReason, Outbox};
pub use seeded::{SeededMap, SeededState};

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::acl::{self, Access, ClientAcl};
use crate::codec::{
    self, LastWill, ProtocolVersion, PubResponseKind, QoS, ReasonCode, SubscriptionOptions,
    Utf8Bytes,
};
use crate::index::MemberState;
use crate::message::{Message, Remaining};
use alias::OutboundAliases;
use send::{ids_of, keep_ids, remaining_now, SubIds, Unsendable};

/// A connected client that acknowledged nothing for this long counts as stalled, not slow.
const PROGRESS_WINDOW: Duration = Duration::from_secs(1);

/// Delivery limits, from the config (Mosquitto's names and defaults).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_inflight_messages`: outbound QoS 1/2 messages awaiting acknowledgement (0 in the config means
    /// no limit, stored here as `usize::MAX`).
    pub max_inflight: usize,
    /// `max_queued_messages`: messages waiting beyond the inflight window or while the client is away.
    pub max_queued_messages: usize,
    /// `max_queued_bytes`: payload bytes of the same queue.
    pub max_queued_bytes: usize,
    /// `queue_qos0_messages`: queue QoS 0 messages for persistent sessions that are away.
    pub queue_qos0: bool,
    /// Bytes of encoded packets a connected client may have unsent in its outbox before further QoS 0
    /// messages to it are dropped (a slow subscriber costs its own queue, docs/ARCHITECTURE.md, invariant 6).
    pub outbox_soft_limit: usize,
    /// Messages that may already be on their way to a session from other shards (their mailboxes' capacity)
    /// when it holds its publishers: a client that keeps acknowledging may exceed `max_queued_messages` by
    /// this much, so what was in transit is not dropped.
    pub in_transit: usize,
    /// `slow_subscriber_policy`: when a congested subscriber may hold its publishers (module `hold`).
    pub slow_subscriber_policy: SlowSubscriberPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inflight: 20,
            max_queued_messages: 1000,
            max_queued_bytes: usize::MAX,
            queue_qos0: false,
            outbox_soft_limit: 4 * 1024 * 1024,
            in_transit: 0,
            slow_subscriber_policy: SlowSubscriberPolicy::default(),
        }
    }
}

/// What became of one message offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Encoded into the outbox.
    Sent,
    /// Waiting in the session queue (window full or client away).
    Queued,
    /// Dropped because a limit was reached (counted).
    Dropped,
    /// Not for this session (QoS 0 to a client that is away without `queue_qos0_messages`): Mosquitto does
    /// not count these as drops.
    Discarded,
    /// Larger than the v5 client's Maximum Packet Size: discarded as if sent [MQTT-3.1.2-25] (counted as a
    /// drop, as Mosquitto does, but no back-pressure: waiting would not make it fit).
    TooLarge,
    /// Its v5 Message Expiry Interval had passed [MQTT-3.3.2-5] (a retained message, or one that
    /// waited on another shard): not sent, counted as expired.
    Expired,
}

/// An outbound QoS 1/2 message the client has not finished acknowledging.
#[derive(Debug)]
struct Inflight {
    packet_id: u16,
    msg: Rc<Framed>,
    qos: QoS,
    retain: bool,
    /// QoS 2 only: PUBREC received, PUBREL sent, awaiting PUBCOMP.
    released: bool,
    /// Its id in the shard's journal (0: not kept, see [`Session::durable`]).
    message_id: u64,
    /// The Subscription Identifiers it is sent with (again, when re-sent).
    ids: SubIds,
}

/// A message waiting for room in the window (or for the client to come back).
#[derive(Debug)]
struct Queued {
    msg: Rc<Framed>,
    qos: QoS,
    retain: bool,
    /// As [`Inflight::message_id`].
    message_id: u64,
    /// As [`Inflight::ids`].
    ids: SubIds,
}

/// A session's outbound QoS 1/2 state.
#[derive(Default)]
struct Queues {
    /// Outbound window, in send order (re-sent in this order on reconnect, [MQTT-4.4.0-1]).
    inflight: VecDeque<Inflight>,
    /// Messages beyond the window, in arrival order.
    queue: VecDeque<Queued>,
    /// Payload bytes in `queue`.
    queued_bytes: usize,
}

/// [`Queues`], allocated on the first mutable use and freed by [`LazyQueues::let_go_if_empty`]; an
/// unallocated one reads as empty.
#[derive(Default)]
struct LazyQueues(Option<Box<Queues>>);

thread_local! {
    /// What an unallocated [`LazyQueues`] reads as (one per thread, never freed: `Queues` holds `Rc`s,
    /// so it cannot be a `static`).
    static NO_QUEUES: &'static Queues = Box::leak(Box::default());
}

impl std::ops::Deref for LazyQueues {
    type Target = Queues;
    fn deref(&self) -> &Queues {
        match &self.0 {
            Some(q) => q,
            None => NO_QUEUES.with(|q| *q),
        }
    }
}

impl std::ops::DerefMut for LazyQueues {
    fn deref_mut(&mut self) -> &mut Queues {
        self.0.get_or_insert_with(Default::default)
    }
}

impl LazyQueues {
    /// Free the queues once nothing is in flight or queued.
    fn let_go_if_empty(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|q| q.inflight.is_empty() && q.queue.is_empty())
        {
            self.0 = None;
        }
    }
}

pub struct Session {
    /// The client identifier, the session's key in its shard's directory.
    pub client_id: Utf8Bytes,
    /// Protocol of the current (or last) connection: decides how packets are encoded.
    pub protocol: ProtocolVersion,
    /// Clean session (3.x) / clean start with zero expiry (5.0): the session ends with the connection.
    pub clean: bool,
    /// Kept across restarts (`persistence true` and not clean): what it owes at QoS 1/2 goes through
    /// the [`Ledger`] its shard passes in.
    pub durable: bool,
    /// Incremented each time the slab slot is reused or a new connection takes the session, so stale
    /// tokens (interest acks, retained replies) from an earlier owner are ignored.
    pub generation: u32,
    /// Filter → options, as granted. The shard's trie holds the same set, keyed by this session's slot.
    pub subscriptions: SeededMap<Utf8Bytes, SubscriptionOptions>,
    /// The will of the current connection, published if it closes without DISCONNECT. Boxed: a will
    /// with its properties is ~470 bytes, and most sessions have none (memory per idle client).
    pub will: Option<Box<LastWill>>,
    /// Next outbound packet id to try (1..=65535, skipping ids in use).
    next_packet_id: u16,
    /// The outbound QoS 1/2 window and queue: allocated with the first message, let go when both
    /// are empty (64 bytes inline otherwise, for every idle client).
    queues: LazyQueues,
    /// Inbound QoS 2 packet ids received (PUBREC sent) and not yet released by PUBREL: a re-sent PUBLISH
    /// with one of these ids is acknowledged again but not delivered again (exactly once).
    pub inbound_qos2: SeededMap<u16, u64>,
    /// Restored from disk: QoS 2 packet ids whose exchange ended before the restart, the PUBCOMP
    /// perhaps lost with the connection. A PUBREL for one gets its PUBCOMP with success; a new
    /// PUBLISH with one forgets it.
    pub completed_qos2: Option<Box<ahash::AHashSet<u16>>>,
    /// Set once it subscribed to a shared subscription group: what the shards picking group members
    /// need to know of it (online, backlog; `index::shared`).
    pub shared: Option<Arc<MemberState>>,
    /// The live connection's outbox; None while the client is away.
    pub conn: Option<Rc<Outbox>>,
    /// Writes waiting for the journal to reach a position before they go to `conn` (see
    /// [`Ledger::stage`]); None when writes go straight to `conn`.
    staged: Option<Box<Staged>>,
    /// v5 Receive Maximum of the current connection: caps the inflight window below `max_inflight`.
    /// 0: none given (a value of 0 is a Protocol Error, MQTT 5.0 §3.1.2.11.3, refused by the codec).
    /// Plain integers here and below keep the session's small fields in 32 bytes.
    pub receive_maximum: u16,
    /// When the client went away (seconds since the Unix epoch, see `Record::Session`); 0 while it is
    /// connected.
    pub away_since: u64,
    /// Seconds the session outlives a disconnect: the v5 Session Expiry Interval, `u32::MAX` (never) for
    /// a 3.x persistent session; capped by `persistent_client_expiration` (see `shard::expiry`).
    pub expiry_interval: u32,
    /// v5 Maximum Packet Size of the current (or last) connection: no larger packet may be sent to it
    /// (a four-byte integer on the wire; read as a `usize` with [`Session::max_packet_size`]).
    /// 0: none (0 is a Protocol Error too, §3.1.2.11.4).
    pub maximum_packet_size: u32,
    /// The topic aliases assigned towards the current connection, when its CONNECT allowed some (v5
    /// Topic Alias Maximum > 0); a new connection starts a new table [MQTT-3.3.2-7].
    pub aliases: Option<Box<OutboundAliases>>,
    /// Copies dropped as expired since the shard last asked ([`Session::take_expired`]).
    expired: u32,
    /// Copies dropped as over the Maximum Packet Size since the shard last asked
    /// ([`Session::take_too_large`]).
    too_large: u32,
    /// Last time the client acknowledged something (or connected): tells a slow consumer, whose
    /// publishers are worth slowing down, from a stalled one, whose messages are dropped instead.
    last_progress: Option<Instant>,
    /// Messages are being dropped for this session: the drop that started it was logged, and the next
    /// one is logged only after the queue drained (see [`Session::note_dropped`]).
    dropping: bool,
    /// Length of the `mount_point` of the listener the client came through (0: none): every topic it
    /// gets is under it and is sent without it (see `shard::attached::mounted`).
    pub mount_len: u16,
    /// Index of the listener of the current (or last) connection: whose files apply to it under
    /// `per_listener_settings true` (a SIGHUP checks it again against them).
    pub listener: u16,
    /// As a publisher: subscribers falling behind on this client's messages hold its reading (see
    /// [`hold`]).
    pub hold: PublisherHold,
    /// As a subscriber: the publishers this session holds while its QoS 1/2 queue is congested.
    pub holding: Holding,
    /// What the client may read and write (`acl_file`), for its current (or last) username; None when no
    /// ACL file is configured. Kept with the session because messages are checked as they are queued,
    /// also while the client is away.
    pub acl: Option<Box<ClientAcl>>,
    /// Username and password of the current (or last) connection, when it gave a username: a reload of
    /// the security files checks connected clients again and rebuilds ACLs, as Mosquitto does.
    pub login: Option<Box<Login>>,
}

/// Writes of a durable session waiting for durability (see [`Ledger::stage`]).
struct Staged {
    /// The journal position that must be durable first.
    until: u64,
    out: Outbox,
}

/// The credentials a client connected with.
pub struct Login {
    pub username: Utf8Bytes,
    pub password: Option<Bytes>,
    /// The enhanced authentication method (MQTT 5.0 AUTH) that proved `username`, if one did; the
    /// password is then `None`. Also what a re-authentication must name again [MQTT-4.12.1-1].
    pub method: Option<Utf8Bytes>,
}

impl Session {
    pub fn new(
        client_id: Utf8Bytes,
        protocol: ProtocolVersion,
        clean: bool,
        generation: u32,
    ) -> Session {
        Session {
            client_id,
            protocol,
            clean,
            durable: false,
            generation,
            subscriptions: SeededMap::default(),
            will: None,
            next_packet_id: 1,
            queues: LazyQueues::default(),
            inbound_qos2: SeededMap::default(),
            completed_qos2: None,
            shared: None,
            conn: None,
            staged: None,
            receive_maximum: 0,
            away_since: 0,
            expiry_interval: 0,
            maximum_packet_size: 0,
            aliases: None,
            expired: 0,
            too_large: 0,
            last_progress: None,
            dropping: false,
            mount_len: 0,
            listener: 0,
            hold: PublisherHold::default(),
            holding: Holding::default(),
            acl: None,
            login: None,
        }
    }

    /// The largest packet the current (or last) connection accepts (v5 Maximum Packet Size).
    pub fn max_packet_size(&self) -> Option<usize> {
        (self.maximum_packet_size > 0).then_some(self.maximum_packet_size as usize)
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Bytes waiting in the live connection's outbox (0 when away).
    pub fn pending_bytes(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.pending_bytes())
    }

    /// Messages queued plus inflight (for tests and `$SYS`).
    pub fn pending_len(&self) -> (usize, usize) {
        (self.queues.inflight.len(), self.queues.queue.len())
    }

    /// Whether this session's queue is filling while its client still makes progress: the case where
    /// slowing the publishers that feed it avoids dropping acknowledged QoS 1/2 messages. A client that
    /// stopped acknowledging is not waited for (docs/ARCHITECTURE.md, invariant 6: it costs only its own queue).
    pub fn congested(&self, limits: &Limits, now: Instant) -> bool {
        self.behind(limits) && self.progressing(now)
    }

    /// Whether the queue is at least half full, by messages or bytes.
    fn behind(&self, limits: &Limits) -> bool {
        self.queues.queue.len().saturating_mul(2) >= limits.max_queued_messages
            || self.queues.queued_bytes.saturating_mul(2) >= limits.max_queued_bytes
    }

    /// Whether this session keeps up with `msg`, offered to it at `qos` (`hold_if_all_behind`):
    /// connected and not behind (for QoS 1/2 its queue is below half its limits, where it would hold
    /// its publishers; for QoS 0 its outbox is below its soft limit). A short backlog, such as the
    /// burst a publisher sends when a hold ends, is not falling behind: counted as behind, it would
    /// let a slow sibling's holds throttle the publisher in turn. None when it does not count either
    /// way: away, or `msg` is too large for it (it would be discarded).
    pub fn keeps_up(&self, msg: &Message, qos: QoS, limits: &Limits) -> Option<bool> {
        let conn = self.conn.as_ref()?;
        if self.copy_too_large(msg, qos, &[], false) {
            return None;
        }
        Some(if qos == QoS::AtMostOnce {
            conn.pending_bytes() < limits.outbox_soft_limit
        } else {
            !self.behind(limits)
        })
    }

    /// A message to this session was dropped: true for the first drop of an episode, which the caller
    /// logs. The episode ends when the queue has drained to a quarter of its limits (so a queue that
    /// hovers at its limit, one acknowledgement freeing one place, logs once, not once per message) or
    /// when a new connection takes the session, as in Mosquitto.
    pub fn note_dropped(&mut self) -> bool {
        !std::mem::replace(&mut self.dropping, true)
    }

    /// `hold_if_all_behind`: the session was found congested at `now`; starts an episode if none runs.
    pub fn note_congested(&mut self, now: Instant) {
        self.holding.note_congested(now);
    }

    /// `hold_if_all_behind`: whether its holds insist at `now`: a congestion episode began less than
    /// [`HOLD_GRACE`] ago (see [`hold`], step 5).
    pub fn insists(&self, now: Instant) -> bool {
        self.holding.insists(now)
    }

    /// Tests: let the current congestion episode (or, if none runs, the next) count as begun
    /// [`HOLD_GRACE`] ago, so its holds no longer insist.
    #[cfg(test)]
    pub(crate) fn outgrow_grace(&mut self) {
        self.holding.outgrow_grace();
    }

    /// Whether the queue is down to a quarter of its limits: the publishers this session holds can go on.
    pub fn drained(&self, limits: &Limits) -> bool {
        self.queues.queue.len().saturating_mul(4) <= limits.max_queued_messages
            && self.queues.queued_bytes.saturating_mul(4) <= limits.max_queued_bytes
    }

    /// Connected and acknowledged something within [`PROGRESS_WINDOW`].
    fn progressing(&self, now: Instant) -> bool {
        self.conn.is_some()
            && self
                .last_progress
                .is_some_and(|t| now.saturating_duration_since(t) < PROGRESS_WINDOW)
    }

    fn progressed(&mut self) {
        self.last_progress = Some(Instant::now());
    }

    /// Outbound QoS 1/2 messages allowed in flight at once.
    fn window(&self, limits: &Limits) -> usize {
        match self.receive_maximum {
            0 => limits.max_inflight,
            r => usize::from(r).min(limits.max_inflight),
        }
    }

    fn alloc_packet_id(&mut self) -> u16 {
        // The window is far smaller than 65535, so this terminates quickly; ids in use are skipped so a
        // client never sees one id twice in flight ([MQTT-2.3.1-2]).
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.queues.inflight.iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    /// Whether a copy of `msg` at `qos` came too late for this session: at QoS 0, when the current
    /// connection opened after the kernel received `msg` ([`Outbox::opened_after`]). The client was
    /// then away, and QoS 0 is not kept for it (unless `queue_qos0_messages`: delivered then), or on
    /// an earlier connection, which the message was for.
    pub fn missed(&self, msg: &Message, qos: QoS, limits: &Limits) -> bool {
        qos == QoS::AtMostOnce
            && !limits.queue_qos0
            && self
                .conn
                .as_ref()
                .is_some_and(|c| c.opened_after(msg.read_at))
    }

    /// Offer a message at the already-computed delivery QoS (min of publish and subscription QoS).
    /// `slack`: the session may hold this message's publisher, so while it keeps acknowledging its queue
    /// may exceed the limits by what arrives before the hold takes effect (see `enqueue`).
    /// `ids`: the Subscription Identifiers of the matching subscriptions (v5).
    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        &mut self,
        msg: &Rc<Framed>,
        qos: QoS,
        retain: bool,
        ids: &[u32],
        limits: &Limits,
        slack: bool,
        ledger: &mut dyn Ledger,
    ) -> Delivery {
        if self.refuse_too_large(msg, qos, ids, false) {
            return Delivery::TooLarge;
        }
        if usize::from(self.mount_len) >= msg.topic.len() {
            // Nothing of the topic would be left once the mount point is removed (`m` or `m/` for a
            // mount point `m/`): Mosquitto swallows it too. (Also true, and skipped, without one for
            // an empty topic, which never reaches here.)
            return Delivery::Discarded;
        }
        let Some(conn) = self.conn.clone() else {
            if qos == QoS::AtMostOnce && !limits.queue_qos0 {
                return Delivery::Discarded;
            }
            if remaining_now(msg) == Remaining::Expired {
                return Delivery::Expired;
            }
            return self.enqueue(msg, qos, retain, ids, limits, false, ledger);
        };
        let sends_now = qos == QoS::AtMostOnce
            || (self.queues.inflight.len() < self.window(limits) && self.queues.queue.is_empty());
        if !sends_now {
            if remaining_now(msg) == Remaining::Expired {
                return Delivery::Expired;
            }
            return self.enqueue(msg, qos, retain, ids, limits, slack, ledger);
        }
        if qos == QoS::AtMostOnce && conn.pending_bytes() >= limits.outbox_soft_limit {
            return Delivery::Dropped;
        }
        let cleared = match self.clear(msg, qos, ids) {
            Ok(c) => c,
            Err(Unsendable::TooLarge) => return Delivery::TooLarge,
            Err(Unsendable::Expired) => return Delivery::Expired,
        };
        if qos == QoS::AtMostOnce {
            self.write_copy(&conn, msg, qos, 0, false, retain, ids, cleared);
        } else {
            let message_id = self.owe(msg, qos, retain, ledger);
            self.send_inflight(
                &conn,
                msg.clone(),
                qos,
                retain,
                message_id,
                keep_ids(ids),
                cleared,
                ledger,
            );
        }
        Delivery::Sent
    }

    /// A QoS 1/2 message becomes owed: its journal id (0 when the session keeps nothing).
    fn owe(&self, msg: &Framed, qos: QoS, retain: bool, ledger: &mut dyn Ledger) -> u64 {
        if self.durable && qos != QoS::AtMostOnce {
            ledger.owed(&self.client_id, msg.message(), qos, retain)
        } else {
            0
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        msg: &Rc<Framed>,
        qos: QoS,
        retain: bool,
        ids: &[u32],
        limits: &Limits,
        slack: bool,
        ledger: &mut dyn Ledger,
    ) -> Delivery {
        let size = msg.queued_size();
        // A connected client that keeps acknowledging, and may hold this message's publisher, gets twice
        // the queue, plus what other shards may already have in their mailboxes for it: its publishers
        // are being held (see `hold`), and this absorbs what was read, acknowledged and routed before the
        // hold took effect. Away or stalled clients, and any client whose publishers the
        // `slow_subscriber_policy` does not hold for it, get exactly the limits.
        let (max_messages, max_bytes) = if slack && self.progressing(Instant::now()) {
            (
                limits
                    .max_queued_messages
                    .saturating_mul(2)
                    .saturating_add(limits.in_transit),
                limits.max_queued_bytes.saturating_mul(2),
            )
        } else {
            (limits.max_queued_messages, limits.max_queued_bytes)
        };
        if self.queues.queue.len() >= max_messages
            || self.queues.queued_bytes.saturating_add(size) > max_bytes
        {
            return Delivery::Dropped;
        }
        self.queues.queued_bytes += size;
        let message_id = self.owe(msg, qos, retain, ledger);
        self.queues.queue.push_back(Queued {
            msg: msg.clone(),
            qos,
            retain,
            message_id,
            ids: keep_ids(ids),
        });
        Delivery::Queued
    }

    #[allow(clippy::too_many_arguments)]
    fn send_inflight(
        &mut self,
        conn: &Outbox,
        msg: Rc<Framed>,
        qos: QoS,
        retain: bool,
        message_id: u64,
        ids: SubIds,
        cleared: send::Cleared,
        ledger: &mut dyn Ledger,
    ) {
        if self.queues.inflight.is_empty() {
            // The client owed nothing until now: its time to acknowledge starts here.
            self.last_progress = Some(Instant::now());
        }
        let packet_id = self.alloc_packet_id();
        if message_id != 0 {
            ledger.sent(&self.client_id, message_id, packet_id);
            if qos == QoS::ExactlyOnce {
                self.stage(ledger);
            }
        }
        self.write_copy(
            conn,
            &msg,
            qos,
            packet_id,
            false,
            retain,
            ids_of(&ids),
            cleared,
        );
        self.queues.inflight.push_back(Inflight {
            packet_id,
            msg,
            qos,
            retain,
            released: false,
            message_id,
            ids,
        });
    }

    /// Move queued messages into the window while it has room. Returns how many were sent.
    pub fn pump(&mut self, limits: &Limits, ledger: &mut dyn Ledger) -> usize {
        let Some(conn) = self.conn.clone() else {
            return 0;
        };
        let mut sent = 0;
        while let Some(q) = self.queues.queue.front() {
            if q.qos != QoS::AtMostOnce && self.queues.inflight.len() >= self.window(limits) {
                break;
            }
            let Some(q) = self.queues.queue.pop_front() else {
                break;
            };
            self.queues.queued_bytes -= q.msg.queued_size();
            let cleared = match self.clear(&q.msg, q.qos, ids_of(&q.ids)) {
                Ok(c) => c,
                Err(why) => {
                    // Expired while queued [MQTT-3.3.2-5], or queued for an earlier connection
                    // that allowed larger packets [MQTT-3.1.2-25].
                    self.note_unsendable(why);
                    if q.message_id != 0 {
                        ledger.discarded(&self.client_id, q.message_id);
                    }
                    continue;
                }
            };
            if q.qos == QoS::AtMostOnce {
                self.write_copy(
                    &conn,
                    &q.msg,
                    q.qos,
                    0,
                    false,
                    q.retain,
                    ids_of(&q.ids),
                    cleared,
                );
            } else {
                self.send_inflight(
                    &conn,
                    q.msg,
                    q.qos,
                    q.retain,
                    q.message_id,
                    q.ids,
                    cleared,
                    ledger,
                );
            }
            sent += 1;
        }
        if self.dropping && self.drained(limits) {
            self.dropping = false;
        }
        if self.queues.queue.is_empty() {
            self.holding.end_episode();
        }
        self.queues.let_go_if_empty();
        sent
    }

    /// Whether the client may receive a message on `topic` (`acl_file` read rules; all without one).
    pub fn may_read(&self, topic: &str) -> bool {
        self.acl
            .as_ref()
            .map_or(true, |acl| acl.allows(topic, Access::READ))
    }

    /// Whether the client may publish on `topic`: never on the broker's own topics
    /// ([`acl::reserved_for_write`]), and only where `acl_file` lets it.
    pub fn may_write(&self, topic: &str) -> bool {
        !acl::reserved_for_write(topic)
            && self
                .acl
                .as_ref()
                .map_or(true, |acl| acl.allows(topic, Access::WRITE))
    }

    /// A new connection took this session over (persistent resume): re-send the window in order, PUBLISH
    /// with DUP set, PUBREL for released QoS 2 ([MQTT-4.4.0-1]), then whatever fits from the queue.
    pub fn resume(&mut self, conn: Rc<Outbox>, limits: &Limits, ledger: &mut dyn Ledger) -> usize {
        // What was staged for an earlier connection is written again below, from the window.
        self.staged = None;
        // A new connection may allow smaller packets than the one these were sent on [MQTT-3.1.2-25],
        // and a PUBLISH not yet received (no PUBREC) whose expiry interval passed is not sent again
        // (as Mosquitto does); the others carry what is left of it.
        let inflight = std::mem::take(&mut self.queues.inflight);
        let mut cleared = Vec::with_capacity(inflight.len());
        for i in inflight {
            if i.released {
                cleared.push(None);
                self.queues.inflight.push_back(i);
                continue;
            }
            match self.clear(&i.msg, i.qos, ids_of(&i.ids)) {
                Ok(c) => {
                    cleared.push(Some(c));
                    self.queues.inflight.push_back(i);
                }
                Err(why) => {
                    self.note_unsendable(why);
                    if i.message_id != 0 {
                        ledger.done(&self.client_id, i.packet_id);
                    }
                }
            }
        }
        if self.durable
            && self
                .queues
                .inflight
                .iter()
                .any(|i| i.qos == QoS::ExactlyOnce)
        {
            // Their packet ids may not be durable yet (sent just before the client went away).
            self.stage(ledger);
        }
        let inflight = std::mem::take(&mut self.queues.inflight);
        for (i, cleared) in inflight.iter().zip(cleared) {
            match cleared {
                None => {
                    let protocol = self.protocol;
                    self.sink(&conn).write(|out| {
                        codec::encode_pub_response(
                            PubResponseKind::PubRel,
                            i.packet_id,
                            ReasonCode::Success,
                            protocol,
                            out,
                        )
                    });
                }
                Some(c) => self.write_copy(
                    &conn,
                    &i.msg,
                    i.qos,
                    i.packet_id,
                    true,
                    i.retain,
                    ids_of(&i.ids),
                    c,
                ),
            }
        }
        self.queues.inflight = inflight;
        let resent = self.queues.inflight.len();
        self.conn = Some(conn);
        self.dropping = false;
        self.holding.end_episode();
        self.progressed();
        resent + self.pump(limits, ledger)
    }

    /// Packet ids of the outbound window, in send order (for tests that acknowledge them).
    #[cfg(test)]
    pub(crate) fn inflight_ids(&self) -> Vec<u16> {
        self.queues.inflight.iter().map(|i| i.packet_id).collect()
    }
}

mod acks;
mod takeback;

#[cfg(test)]
mod tests;
