//! This shard's journal (`persistence true`): the records its state changes append, the
//! acknowledgements that wait for them to be durable, and the task that writes them
//! ([`journal_task`]). One per shard, owned by its [`Shard`](super::Shard) and touched on that shard's
//! thread only: packet handling appends (sessions, subscriptions, retained messages) and durable
//! sessions append through it as their [`Ledger`]; the task takes what was appended in batches.
//!
//! What a QoS 1/2 PUBLISH's acknowledgement waits for under `persistence_sync always` (the PUBACK or
//! PUBREC is written only then, in the order the PUBLISHes came):
//! - on this shard: every record appended up to the moment it was routed (the journal's `appended`
//!   position then) is durable;
//! - on every other shard it was sent to: that shard has made durable what it appended while handling
//!   it. Each shard counts the messages it sends to each other shard that an acknowledgement may wait
//!   for (`sent`), the receiver counts them as it handles them (`received`) and, after its next write
//!   and sync, tells the sender how many are covered (`Mail::Durable`). Mailboxes are FIFO, so "the
//!   first n" is exact. A shard that wrote nothing for them still answers, after any write in progress.
//!
//! Which shard writes what: a session's records go to its home shard's log; a retained message's to
//! the log of its topic's home (`home_of(topic)`), whichever shard it was published on (the shard
//! that routes it sends it there as `Mail::Retain`; the store itself is shared, see `retained.rs`).
//!
//! When the log has grown past `Persistence::compact_min` and four times its last snapshot, the task writes a new
//! snapshot of the shard's state and swaps it in (`persist::log::LogWriter::replace`).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::home_of;
use crate::codec::{
    self, ProtocolVersion, PubResponseKind, QoS, ReasonCode, SubscriptionOptions, Utf8Bytes,
};
use crate::config::PersistenceSync;
use crate::logging::log_type;
use crate::message::{DurableKey, Message};
use crate::persist::record::{self, Record, StoredMessage};
use crate::persist::Persistence;
use crate::router::ShardId;
use crate::session::{Ledger, Outbox, Session};

/// Appended and unwritten bytes beyond which the shard stops reading its clients (as for a full
/// mailbox): the disk is not keeping up, or is full.
const BACKLOG_LIMIT: usize = 64 << 20;

/// Syncs in flight at once under `persistence_sync always`: while one runs, the next batch is written
/// and its sync issued, instead of waiting a whole sync before writing.
const MAX_SYNCS: usize = 3;

/// How long a snapshot keeps the keys of messages this shard recorded (see `Record::Seen`).
const KEEP_SEEN: Duration = Duration::from_secs(60);

/// How long the task waits before writing again after a failed write.
const RETRY: Duration = Duration::from_secs(1);

/// An acknowledgement waiting for durability.
struct HeldAck {
    outbox: Rc<Outbox>,
    protocol: ProtocolVersion,
    kind: PubResponseKind,
    packet_id: u16,
    /// An accepted QoS 2 message's key: `Routed` is written when the acknowledgement goes out.
    durable_key: u64,
    /// This shard's journal position that must be durable.
    local: u64,
    /// (shard, count): how many of this shard's counted messages that shard must have made durable.
    remote: SmallVec<[(ShardId, u64); 2]>,
}

/// A batch the task takes: bytes to write, the position they end at, and what other shards' counted
/// messages they cover.
pub(super) struct Batch {
    bytes: Bytes,
    end: u64,
    received: Vec<u64>,
}

pub(super) struct Journal {
    on: bool,
    /// `persistence_sync always`: acknowledgements wait.
    gate: bool,
    me: ShardId,
    shards: usize,
    /// Cluster mode: the link's mailbox. Acknowledgements of QoS 1/2 messages it forwards wait for
    /// its `Durable` (the copies are in JetStream), with or without persistence (`cluster::acks`).
    link: Option<ShardId>,
    /// Records appended and not yet taken by the task.
    pending: BytesMut,
    /// Bytes ever appended (a position in the journal, not a file offset: compaction changes those).
    appended: u64,
    /// Bytes written (and synced, under `always`).
    durable: u64,
    next_message_id: u64,
    /// The last message given an id, with it: a fan-out to several sessions of this shard writes the
    /// message once (`Record::Message`), then one `Queue` record per session.
    last_message: Option<(Arc<Message>, u64)>,
    /// Per mailbox (the link's too): counted messages sent there / received from there / reported
    /// durable to there / confirmed durable by there.
    sent: Vec<u64>,
    received: Vec<u64>,
    reported: Vec<u64>,
    confirmed: Vec<u64>,
    acks: VecDeque<HeldAck>,
    /// The journal task, parked for work.
    waker: Option<Waker>,
    /// Shutdown: the task writes what is left and ends.
    stopping: bool,
    /// Writes are failing (logged once per episode).
    failing: bool,
    /// The next `Message::durable_key` (this shard's id in the top 16 bits).
    next_key: u64,
    /// Accepted QoS 2 messages not yet on disk everywhere they went: key → publisher, packet id,
    /// message (written with its `Accepted` record again by a snapshot, see `Record::Accepted`).
    unrouted: AHashMap<u64, (Utf8Bytes, u16, StoredMessage)>,
    /// Keys of messages this shard recorded lately, kept by snapshots (`Record::Seen`).
    recent_keys: VecDeque<(Instant, DurableKey)>,
    /// Client ids of sessions whose writes wait for durability (`Session::release_staged`).
    staged: Vec<Utf8Bytes>,
    /// `persistence_sync always`: syncs in flight (at most [`MAX_SYNCS`]).
    syncing: usize,
    /// File I/O may start (`Control::BeginWriting`).
    begun: bool,
    /// Readers paused while the journal is [`Self::backlogged`].
    backlog_waiters: Vec<Waker>,
}

impl Journal {
    pub(super) fn new(
        me: ShardId,
        shards: usize,
        link: Option<ShardId>,
        persistence: Option<&Persistence>,
        next_message_id: u64,
    ) -> Journal {
        let mailboxes = shards + usize::from(link.is_some());
        Journal {
            link,
            on: persistence.is_some(),
            gate: persistence.is_some_and(|p| p.sync == PersistenceSync::Always),
            me,
            shards,
            pending: BytesMut::new(),
            appended: 0,
            durable: 0,
            next_message_id: next_message_id.max(1),
            last_message: None,
            sent: vec![0; mailboxes],
            received: vec![0; mailboxes],
            reported: vec![0; mailboxes],
            confirmed: vec![0; mailboxes],
            acks: VecDeque::new(),
            waker: None,
            stopping: false,
            failing: false,
            backlog_waiters: Vec::new(),
            staged: Vec::new(),
            syncing: 0,
            begun: false,
            next_key: 1,
            unrouted: AHashMap::new(),
            recent_keys: VecDeque::new(),
        }
    }

    /// Whether this broker keeps anything on disk.
    pub(super) fn is_on(&self) -> bool {
        self.on
    }

    fn append(&mut self, r: &Record) {
        // Without persistence nothing is ever written, so nothing may wait for it: a session that
        // came from another node of a cluster (or any caller of the `Ledger`) has numbered messages
        // whose records, counted here, would hold every later acknowledgement of this shard
        // (`acknowledge` waits for `appended` to be durable) and pile up in `pending`.
        if !self.on {
            return;
        }
        let before = self.pending.len();
        if let Err(e) = record::encode(r, &mut self.pending) {
            tracing::error!(target: log_type::ERROR,
                "Error: a persistence record could not be written: {e}");
            return;
        }
        self.appended += (self.pending.len() - before) as u64;
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// A durable session's settings (at CONNECT, and when its will or expiry changes).
    pub(super) fn session(&mut self, s: &Session) {
        if s.durable {
            self.append(&session_record(s));
        }
    }

    /// A durable session ended.
    pub(super) fn session_gone(&mut self, client_id: &Utf8Bytes) {
        if self.on {
            self.append(&Record::SessionGone {
                client_id: client_id.clone(),
            });
        }
    }

    pub(super) fn subscribe(&mut self, s: &Session, filter: &Utf8Bytes, o: SubscriptionOptions) {
        if s.durable {
            self.append(&Record::Subscribe {
                client_id: s.client_id.clone(),
                filter: filter.clone(),
                options: o,
            });
        }
    }

    pub(super) fn unsubscribe(&mut self, s: &Session, filter: &Utf8Bytes) {
        if s.durable {
            self.append(&Record::Unsubscribe {
                client_id: s.client_id.clone(),
                filter: filter.clone(),
            });
        }
    }

    /// The shard whose log records the retained message of `topic` (None without persistence, and
    /// for `$SYS` topics: see [`retained_keeper`]).
    pub(super) fn keeper_of(&self, topic: &str) -> Option<ShardId> {
        retained_keeper(topic, self.shards).filter(|_| self.on)
    }

    /// A retained message was stored or cleared: recorded by the topic's home shard only (`$SYS`
    /// topics are the broker's own, published again after a start, and never recorded).
    pub(super) fn retained(&mut self, msg: &Message) {
        if !self.on || !owns_retained(&msg.topic, self.me, self.shards) {
            return;
        }
        if msg.payload.is_empty() {
            self.append(&Record::RetainClear {
                topic: msg.topic.clone(),
            });
        } else {
            self.append(&Record::Retain {
                message: StoredMessage::from_message(msg),
            });
        }
    }

    /// A durable session published QoS 2 message `packet_id` (not a repeat): recorded with the message
    /// before it is routed. Returns its key for `Message::durable_key` (0: not kept).
    pub(super) fn accept(&mut self, publisher: &Session, packet_id: u16, msg: &Message) -> u64 {
        if !publisher.durable {
            return 0;
        }
        let key = u64::from(self.me) << 48 | self.next_key;
        self.next_key += 1;
        let stored = StoredMessage::from_message(msg);
        self.append(&Record::Accepted {
            client_id: publisher.client_id.clone(),
            packet_id,
            key,
            message: Some(stored.clone()),
        });
        self.unrouted
            .insert(key, (publisher.client_id.clone(), packet_id, stored));
        key
    }

    /// PUBREL for QoS 2 message `packet_id` of a durable session, accepted as `key`: returns
    /// whether its PUBCOMP must wait (through [`Self::acknowledge`]) for the record to be durable.
    /// Until then a restart would still count the id as in use, and once the client has the
    /// PUBCOMP it may send a new message with it.
    pub(super) fn accepted_done(&mut self, publisher: &Session, packet_id: u16, key: u64) -> bool {
        if !publisher.durable || key == 0 {
            return false;
        }
        self.append(&Record::AcceptedDone {
            client_id: publisher.client_id.clone(),
            packet_id,
            key,
        });
        self.gate
    }

    /// Every shard accepted message `key` went to has it on disk.
    fn routed(&mut self, key: u64) {
        if key != 0 && self.unrouted.remove(&key).is_some() {
            self.append(&Record::Routed { key });
        }
    }

    /// Whether `msg`, sent by this shard as `Publish` (or `Retain` when `retain_mail`), is one the
    /// receiver counts: acknowledgements may wait for it. Both ends decide from the message alone.
    fn counted(&self, msg: &Message, retain_mail: bool) -> bool {
        self.gate && msg.origin.is_some() && (retain_mail || msg.qos != QoS::AtMostOnce)
    }

    /// This shard sends `msg` to `to` (see [`Self::counted`], and `cluster::acks::counted` for the
    /// link).
    pub(super) fn note_sent(&mut self, to: ShardId, msg: &Message, retain_mail: bool) {
        let counted = if Some(to) == self.link {
            crate::cluster::acks::counted(msg)
        } else {
            self.counted(msg, retain_mail)
        };
        if counted {
            self.sent[usize::from(to)] += 1;
        }
    }

    /// This shard handled `msg` from another shard (after appending what it caused).
    pub(super) fn note_received(&mut self, msg: &Message, retain_mail: bool) {
        if let Some((from, _)) = msg.origin.filter(|_| self.counted(msg, retain_mail)) {
            self.received[usize::from(from)] += 1;
            self.wake();
        }
    }

    /// Shard `from` made durable the first `count` counted messages this shard sent it.
    pub(super) fn confirmed(&mut self, from: ShardId, count: u64) {
        let c = &mut self.confirmed[usize::from(from)];
        *c = (*c).max(count);
        self.release_acks();
    }

    /// Acknowledge a QoS 1/2 PUBLISH routed just now to `reached` (the shards its `Publish` or
    /// `Retain` mail went to): at once, or once what it caused is durable.
    pub(super) fn acknowledge(
        &mut self,
        outbox: &Rc<Outbox>,
        protocol: ProtocolVersion,
        kind: PubResponseKind,
        packet_id: u16,
        durable_key: u64,
        reached: impl Iterator<Item = ShardId>,
    ) {
        // Without `persistence_sync always`, only the cluster link is waited for.
        let (gate, link) = (self.gate, self.link);
        let remote: SmallVec<[(ShardId, u64); 2]> = reached
            .filter(|&s| s != self.me && (gate || Some(s) == link))
            .map(|s| (s, self.sent[usize::from(s)]))
            .collect();
        if !gate && remote.is_empty() {
            self.routed(durable_key);
            outbox.write(|out| ack(kind, packet_id, protocol, out));
            return;
        }
        self.acks.push_back(HeldAck {
            outbox: outbox.clone(),
            protocol,
            kind,
            packet_id,
            durable_key,
            local: self.appended,
            remote,
        });
        self.release_acks();
        if !self.acks.is_empty() {
            self.wake();
        }
    }

    /// Write the acknowledgements whose records are durable, in order.
    fn release_acks(&mut self) {
        while let Some(a) = self.acks.front() {
            let ready = a.local <= self.durable
                && a.remote
                    .iter()
                    .all(|&(s, n)| self.confirmed[usize::from(s)] >= n);
            if !ready {
                return;
            }
            let a = self.acks.pop_front().expect("front exists");
            self.routed(a.durable_key);
            a.outbox
                .write(|out| ack(a.kind, a.packet_id, a.protocol, out));
        }
    }

    /// Too much appended and not yet written: the shard's readers pause (back-pressure on publishers
    /// while the disk is slow or full).
    pub(super) fn backlogged(&self) -> bool {
        self.on && self.appended - self.durable > BACKLOG_LIMIT as u64
    }

    /// The process runs as its final user: the task may open its log (`Control::BeginWriting`).
    pub(super) fn begin(&mut self) {
        self.begun = true;
        self.wake();
    }

    fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.begun || self.stopping {
            return Poll::Ready(());
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready once the journal is no longer [`Self::backlogged`].
    pub(super) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.backlogged() {
            return Poll::Ready(());
        }
        self.backlog_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// Ready when the task has something to do: records to write, counted messages to report, or the
    /// end. Otherwise parks the task.
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let unreported = self.received != self.reported;
        let work = !self.pending.is_empty() || unreported;
        if (work && self.syncing < MAX_SYNCS) || self.stopping {
            return Poll::Ready(());
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready when no sync is in flight.
    fn poll_synced(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.syncing == 0 {
            return Poll::Ready(());
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn take_batch(&mut self) -> Batch {
        // A message id stays shared only within a batch: compaction keeps only the messages still
        // owed, so a later `Queue` must not refer to a `Message` record an earlier batch wrote.
        self.last_message = None;
        self.forget_old_keys(Instant::now());
        Batch {
            bytes: self.pending.split().freeze(),
            end: self.appended,
            received: self.received.clone(),
        }
    }

    /// `batch` is written: what waited for it goes out. Returns the `Durable` mail to send.
    fn written(&mut self, batch: &Batch) -> SmallVec<[(ShardId, u64); 4]> {
        self.durable = self.durable.max(batch.end);
        if self.failing {
            self.failing = false;
            tracing::info!(target: log_type::NOTICE,
                "Persistence writes succeed again: held acknowledgements go out.");
        }
        let mut mail = SmallVec::new();
        for (from, &n) in batch.received.iter().enumerate() {
            if n > self.reported[from] {
                self.reported[from] = n;
                mail.push((from as ShardId, n));
            }
        }
        self.release_acks();
        if !self.backlogged() {
            for w in self.backlog_waiters.drain(..) {
                w.wake();
            }
        }
        mail
    }

    /// Keys recorded more than [`KEEP_SEEN`] ago are surely `Routed` on their publisher's shard by now
    /// (that takes a mail and a write): snapshots stop keeping them.
    fn forget_old_keys(&mut self, now: Instant) {
        while self
            .recent_keys
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > KEEP_SEEN)
        {
            self.recent_keys.pop_front();
        }
    }

    /// A batch taken for a compaction that failed: its records go in front of what came since.
    fn put_back(&mut self, batch: Batch) {
        let mut again = BytesMut::with_capacity(batch.bytes.len() + self.pending.len());
        again.extend_from_slice(&batch.bytes);
        again.extend_from_slice(&self.pending);
        self.pending = again;
    }

    /// Shutdown: the task writes what is left, then ends.
    pub(super) fn stop(&mut self) {
        self.stopping = true;
        self.wake();
    }
}

impl Ledger for Journal {
    fn owed(&mut self, client_id: &Utf8Bytes, msg: &Arc<Message>, qos: QoS, retain: bool) -> u64 {
        let message_id = match &self.last_message {
            Some((m, id)) if Arc::ptr_eq(m, msg) => *id,
            _ => {
                let id = self.next_message_id;
                self.next_message_id += 1;
                self.append(&Record::Message {
                    message_id: id,
                    key: msg.durable.as_deref().cloned(),
                    message: StoredMessage::from_message(msg),
                });
                if let Some(k) = &msg.durable {
                    self.recent_keys.push_back((Instant::now(), (**k).clone()));
                }
                self.last_message = Some((msg.clone(), id));
                id
            }
        };
        self.append(&Record::Queue {
            client_id: client_id.clone(),
            message_id,
            qos,
            retain,
        });
        message_id
    }

    fn sent(&mut self, client_id: &Utf8Bytes, message_id: u64, packet_id: u16) {
        self.append(&Record::Inflight {
            client_id: client_id.clone(),
            message_id,
            packet_id,
        });
    }

    fn released(&mut self, client_id: &Utf8Bytes, packet_id: u16) {
        self.append(&Record::Released {
            client_id: client_id.clone(),
            packet_id,
        });
    }

    fn done(&mut self, client_id: &Utf8Bytes, packet_id: u16) {
        self.append(&Record::Done {
            client_id: client_id.clone(),
            packet_id,
        });
    }

    fn discarded(&mut self, client_id: &Utf8Bytes, message_id: u64) {
        self.append(&Record::Discard {
            client_id: client_id.clone(),
            message_id,
        });
    }

    fn stage(&mut self, client_id: &Utf8Bytes) -> Option<u64> {
        if !self.gate || self.appended <= self.durable {
            return None;
        }
        if self.staged.last() != Some(client_id) {
            self.staged.push(client_id.clone());
        }
        Some(self.appended)
    }
}

/// Writes session `s` whole to `w`: its settings, subscriptions, QoS 2 exchanges as a publisher and
/// the messages it is owed: those its journal keeps for a snapshot, every one (`all`) for a session
/// moving to another node (`shard::claims`), those the journal does not keep numbered from
/// [`MOVED_MESSAGE_IDS`].
pub(in crate::shard) fn write_session(
    w: &mut crate::persist::image::SnapshotWriter,
    s: &Session,
    all: bool,
) {
    w.session(
        &session_record(s),
        s.subscriptions.iter().map(|(f, o)| (f.clone(), *o)),
    );
    for (&packet_id, &key) in &s.inbound_qos2 {
        w.accepted(&s.client_id, packet_id, key, None);
    }
    for &packet_id in s.completed_qos2.iter().flat_map(|c| c.iter()) {
        w.completed(&s.client_id, packet_id);
    }
    if !all {
        s.for_each_owed(|id, m, qos, retain, packet_id, released| {
            w.owed(&s.client_id, id, m, qos, retain, packet_id, released)
        });
        return;
    }
    let mut next = MOVED_MESSAGE_IDS;
    let now = std::time::Instant::now();
    s.for_each_owed_all(|id, m, qos, retain, packet_id, released| {
        // Not sent yet and expired: the new node would count its expiry afresh and send it
        // (a persistent session taken back on another node after its messages expired).
        if packet_id.is_none() && m.remaining(now) == crate::message::Remaining::Expired {
            return;
        }
        // A snapshot writes a message once per id: each unnumbered one gets its own.
        let id = if id == 0 {
            next += 1;
            next
        } else {
            id
        };
        w.owed(&s.client_id, id, m, qos, retain, packet_id, released)
    });
}

/// The ids given to owed messages that the journal does not number, in a moving session's
/// snapshot: far above any journal's (a per-shard sequence), so the two never meet.
const MOVED_MESSAGE_IDS: u64 = 1 << 62;

/// The `Session` record of `s`.
pub(in crate::shard) fn session_record(s: &Session) -> Record {
    Record::Session {
        client_id: s.client_id.clone(),
        protocol: s.protocol,
        expiry_interval: s.expiry_interval,
        will: s.will.clone(),
        username: s.login.as_ref().map(|l| l.username.clone()),
        listener: s.listener,
        away_since: s.away_since,
    }
}

/// The shard of `shards` whose log records the retained message of `topic`: its home; none for a
/// `$SYS` topic.
fn retained_keeper(topic: &str, shards: usize) -> Option<ShardId> {
    (!topic.starts_with("$SYS")).then(|| home_of(topic.as_bytes(), shards))
}

/// Whether shard `me` of `shards` records the retained message of `topic`.
pub(crate) fn owns_retained(topic: &str, me: ShardId, shards: usize) -> bool {
    retained_keeper(topic, shards) == Some(me)
}

/// A PUBACK or PUBREC with reason Success (the codec's short form).
fn ack(kind: PubResponseKind, packet_id: u16, protocol: ProtocolVersion, out: &mut BytesMut) {
    codec::encode_pub_response(kind, packet_id, ReasonCode::Success, protocol, out)
}

mod restore;
mod task;

pub use restore::ShardRestore;
pub(in crate::shard) use task::journal_task;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, PubResponseKind, QoS};

    /// Without persistence nothing is written, so nothing counts as appended: a session with
    /// numbered messages (one moved from another node of a cluster) used to make every later
    /// acknowledgement that waits for the link wait for ever.
    #[test]
    fn without_persistence_numbered_messages_hold_no_acknowledgement() {
        let link = 1;
        let mut j = Journal::new(0, 1, Some(link), None, 1);
        let client = Utf8Bytes::from_static("moved");
        let msg = Arc::new(Message::new(
            Utf8Bytes::from_static("t"),
            Bytes::from_static(b"m"),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            Some((0, 3)),
        ));
        let id = Ledger::owed(&mut j, &client, &msg, QoS::AtLeastOnce, false);
        Ledger::sent(&mut j, &client, id, 7);
        assert_eq!((j.appended, j.pending.len()), (0, 0));

        let outbox = Rc::new(Outbox::new());
        j.note_sent(link, &msg, false);
        let kind = PubResponseKind::PubAck;
        j.acknowledge(
            &outbox,
            ProtocolVersion::V311,
            kind,
            9,
            0,
            [link].into_iter(),
        );
        assert_eq!(outbox.pending_bytes(), 0, "waits for the link's copies");
        j.confirmed(link, 1);
        assert!(
            outbox.pending_bytes() > 0,
            "acknowledged once they are in JetStream"
        );
    }
}
