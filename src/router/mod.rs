//! Cross-shard mailboxes and the [`Mail`] they carry.
//!
//! Concurrency model: one bounded crossbeam FIFO per ordered (from, to) shard pair, so messages from one
//! shard reach another in the order they were sent (docs/ARCHITECTURE.md, invariant 4) and senders never contend with
//! each other. Each shard owns the sending ends of its row ([`MailSenders`]) and the receiving ends of its
//! column ([`Inbox`]); neither is shared. A parked shard is woken through a [`MailWaker`]: the receiver
//! registers its task waker and marks itself parked, then re-checks its queues before sleeping; a sender
//! wakes it only when it saw the parked mark, so a busy shard costs senders no syscalls ([`ParkFlag`]
//! has the handshake and why it cannot lose a wake-up).
//! A control channel per shard carries commands from outside the shard threads (shutdown).
//!
//! Urgent mail ([`Mail::is_urgent`]) travels on a second, unbounded FIFO per pair, which the receiving
//! shard drains before it routes each publish as well as in its mail loop ([`UrgentInbox`]): mail that
//! must take effect on a busy shard before its next publish, not when its mail loop next runs (a
//! connection reader may route thousands of PUBLISHes from one read before it yields).
//! - Interest changes (`InterestAdd`/`InterestRemove`, and `ShareJoin`/`ShareLeave` for shared
//!   subscription groups). Once the subscriber's shard has taken a
//!   SUBSCRIBE, a publish that another shard routes afterwards sees it, as in a single-threaded broker
//!   where packets are handled in the order they arrive; without it a publish sent before the
//!   subscriber's SUBACK could miss a subscription the broker had already taken.
//! - Holds on publishers (`Hold`, `Release`, `Object`, see `session::hold`). A hold stops its publisher
//!   after the packet during which it arrived; on the bounded mailbox it would wait for the rest of the
//!   publisher's read, whose messages the congested subscriber then has no room for.
//!
//! Unbounded because urgent mail is bounded by the number of distinct filters, and by one hold mail per
//! (publisher, shard) per half lease; and it must never wait behind publishes.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};

use crate::auth::Security;
use crate::codec::{Connect, Utf8Bytes};
use crate::index::MemberState;
use crate::message::Message;
use crate::session::{HoldSignal, HoldStamp};
use crate::stats::ShardStats;

/// Index of a shard, 0..N. Assigned by the server, not glommio's executor id (which has gaps). In
/// cluster mode the link to the other nodes has a mailbox too, id N (`crate::cluster`): a mailbox
/// id, in no shard count.
pub type ShardId = u16;

/// Capacity of each (from, to) mailbox. Beyond it a sender keeps mail in its own overflow queue and pauses
/// the reading of its publishers until the receiver drains (see `shard`), so a slow shard back-pressures
/// publishers instead of growing without bound.
///
/// A mailbox is crossbeam's unbounded (list) channel, bounded by a count ([`Mailbox`]): its memory
/// comes in blocks of 31 slots as mail arrives and goes as it is taken. A bounded (array) channel
/// allocates and writes all 512 slots (120 bytes each) at start-up: 61 KB per pair, N x N pairs, 250 MB
/// of the 835 MB that `shards 64` started with (docs/PERFORMANCE.md, "Issue 18").
pub const MAILBOX_CAPACITY: usize = 512;

/// How much mail one (from, to) mailbox holds: counted by its only sender before each send, and by
/// its receiver after each batch it takes (before telling the sender there is room).
#[derive(Default)]
struct Mailbox {
    len: AtomicUsize,
}

/// What a session moving to another node did lately on the node it leaves (`shard::moves`): the
/// ids of the messages it was given (`Message::id`), which its new node does not give again; and
/// when the kernel received the SUBSCRIBEs of its young subscriptions (`shard::lookback`), which
/// are not for a message received before them, whatever node the copy reaches.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lately {
    pub seen: Vec<u64>,
    pub subscribed: Vec<(Utf8Bytes, u64)>,
}

/// A message from one shard to another.
pub enum Mail {
    /// A publish that matched the receiving shard's interest: match the local trie and queue to sessions.
    /// One per (message, interested shard), never one per subscriber (docs/ARCHITECTURE.md, invariant 2).
    /// The stamp says where, when it was routed, the shards stood on holding its publisher (see
    /// `session::hold`): routing state, not part of the message.
    Publish(Arc<Message>, HoldStamp),
    /// Cluster mode, from the link: a message from another node's JetStream copy, delivered like a
    /// `Publish`; the sessions that owe it hold `custody`, and the copy is acknowledged once none
    /// does (`session::custody`).
    Taken {
        msg: Arc<Message>,
        custody: Arc<crate::session::Custody>,
    },
    /// With persistence: record a retained message (or its clearing, when the payload is empty) in
    /// the receiving shard's log, which keeps its topic (`shard::journal`). The routing shard stored
    /// it in the broker's one retained store already (`shard::retained`).
    Retain(Arc<Message>),
    /// A connection whose CONNECT named a client id whose home is the receiving shard.
    Handoff(Box<Handoff>),
    /// Shard `from` now has at least one subscription matching `filter`: record it in the interest map,
    /// then answer with `InterestAck` so the subscriber's SUBACK can go out (docs/ARCHITECTURE.md, invariant 5).
    /// `since`: when the kernel received the SUBSCRIBE (0: unknown); messages the receiving shard
    /// routed that were received after it and did not go to `from` go now, as `Replay`
    /// (`shard::lookback`).
    InterestAdd {
        from: ShardId,
        filter: Utf8Bytes,
        since: u64,
    },
    /// A message the sending shard routed before it knew of the receiving shard's new interest, though
    /// the SUBSCRIBE reached the machine first (`InterestAdd::since`): deliver it like a `Publish`,
    /// unless it was delivered here already.
    Replay(Arc<Message>),
    /// Shard `from` has no subscription on `filter` any more.
    InterestRemove { from: ShardId, filter: Utf8Bytes },
    /// Answer to `InterestAdd`: the sender will route matching publishes to the shard that asked.
    /// Also the answer to `ShareJoin`, with the group's `$share/...` as `filter`.
    InterestAck { filter: Utf8Bytes, from: ShardId },
    /// The session in `slot` of shard `from` joined the shared subscription group `full`
    /// (`$share/{group}/{filter}`, `filter` its inner filter): record the member, then answer with
    /// `InterestAck { filter: full }` so its SUBACK can go out (`index::shared`).
    ShareJoin {
        from: ShardId,
        slot: u32,
        full: Utf8Bytes,
        filter: Utf8Bytes,
        state: Arc<MemberState>,
        /// When the kernel received the SUBSCRIBE (0: restored at start-up): a group this member
        /// starts on the receiving shard gets what that shard routed since (`shard::shared`).
        since: u64,
    },
    /// The session in `slot` of shard `from` left the shared subscription group `full`.
    ShareLeave {
        from: ShardId,
        slot: u32,
        full: Utf8Bytes,
    },
    /// A message for the member in `slot` of the receiving shard of the shared subscription group
    /// `full`, picked by the sending shard (`shard::shared`). `counted`: sent by the message's own
    /// shard, so the journal counts it like a `Publish` (`shard::journal`); `hops`: how many members
    /// already gave it back (a member gone meanwhile passes it on, a bounded number of times).
    Shared {
        msg: Arc<Message>,
        slot: u32,
        full: Utf8Bytes,
        counted: bool,
        hops: u8,
    },
    /// A session on shard `from` is falling behind on messages published by session `slot` of the
    /// receiving shard: stop reading that publisher for one hold lease (a new hold or the renewal of one),
    /// as far as `from` is concerned (`slow_subscriber_policy` decides whether other shards must agree),
    /// back-pressure instead of dropping QoS 1/2 (see `session::hold`).
    Hold {
        slot: u32,
        from: ShardId,
        signal: HoldSignal,
        /// `hold_if_all_behind`: the holder's congestion is young, so the hold counts even where
        /// another subscriber keeps up (`session::hold`, step 5).
        insist: bool,
    },
    /// A session on shard `from` caught up: it no longer holds publisher `slot` of the receiving shard.
    Release { slot: u32, from: ShardId },
    /// `hold_if_all_behind`: a session on shard `from` keeps up with publisher `slot` of the receiving
    /// shard again, so `from` no longer agrees to that publisher being held, whoever holds it there.
    Object { slot: u32, from: ShardId },
    /// Shard `from` made durable what it appended for the first `count` counted messages the
    /// receiving shard sent it (`shard::journal`): acknowledgements waiting for them may go out.
    Durable { from: ShardId, count: u64 },
    /// Cluster mode, to the link: a CONNECT for `client_id` on shard `from`, about to be attached.
    /// The link makes this node the client id's owner in the cluster (closing its connection on the
    /// node that had it and, unless `clean_start`, bringing its session here), then answers
    /// `Claimed` (`cluster::sessions`).
    Claim {
        from: ShardId,
        ticket: u64,
        client_id: Utf8Bytes,
        clean_start: bool,
    },
    /// The link's answer to `Claim`: the session the client had on another node, as a snapshot of
    /// it (`persist::image`), when it moved here; and, when a live node sent it (None: a dead
    /// node's), what it did there lately ([`Lately`]).
    Claimed {
        ticket: u64,
        session: Option<bytes::Bytes>,
        lately: Option<Lately>,
    },
    /// From the link: client `client_id` connected on another node. Close its connection here and
    /// end its session here; with `keep`, first answer with the session (`Evicted`) for that node.
    Evict {
        ticket: u64,
        client_id: Utf8Bytes,
        keep: bool,
    },
    /// The answer to `Evict`: the session, when it was kept and there was one, and what it did
    /// here lately.
    Evicted {
        ticket: u64,
        session: Option<bytes::Bytes>,
        lately: Lately,
    },
    /// Cluster mode, to the link: the will this node would owe the cluster for `client_id` if it
    /// died now (its connection's, or one waiting out its delay), with its Will Delay Interval in
    /// seconds; None when there is none any more (`cluster::wills`).
    Will {
        client_id: Utf8Bytes,
        will: Option<(Arc<Message>, u32)>,
    },
    /// From the link: route `msg` as if published here (a dead node's will, `cluster::wills`).
    Route(Arc<Message>),
    /// Cluster mode, to the link: what another node needs to resume `client_id`'s session if this
    /// node died now (its settings and subscriptions, as a snapshot of it, `persist::image`); None
    /// when it has no persistent session any more (`cluster::state`).
    State {
        client_id: Utf8Bytes,
        image: Option<bytes::Bytes>,
    },
    /// Cluster mode, to the link: `msg` reached the stub of `client_id`'s session, which moved to
    /// another node a moment ago (`shard::moves`): the link sends it after the session.
    Follow {
        client_id: Utf8Bytes,
        msg: Arc<Message>,
    },
    /// Cluster mode, to the link: `client_id`'s session ended here for good (its clean connection
    /// closed, or it expired): the cluster forgets that this node owns the client id, unless
    /// another node claimed it meanwhile (`cluster::sessions`).
    Unclaim { client_id: Utf8Bytes },
    /// Cluster mode, to the link: a SUBSCRIBE on shard `from` sends retained messages; its SUBACK
    /// waits until this node's retained store has what the cluster's retained stream held when
    /// this came (answered `InterestAck { filter: key }`; `cluster::relay::synced`).
    RetainedSync { from: ShardId, key: Utf8Bytes },
    /// From the link: a dead node's session, as `State` had it, that this node adopts: installed
    /// as a session whose client is away (`cluster::state`).
    Adopt(bytes::Bytes),
    /// From the link: `msg`, which a dead node's queue held for its subscriptions, for those of the
    /// sessions `clients` this node adopted from it (`cluster::state`).
    Owed {
        clients: Arc<[Utf8Bytes]>,
        msg: Arc<Message>,
    },
    /// Ask for this shard's counters (from the `$SYS` shard).
    StatsQuery { reply_to: ShardId },
    /// Answer to `StatsQuery`.
    StatsReply(ShardStats),
}

impl Mail {
    /// Interest changes and holds: mail that travels on the urgent FIFO (module comment). It may
    /// overtake publishes sent before it, which nothing here depends on: a hold is about the publisher's
    /// next read, and an interest change is answered (`InterestAck`) on the ordinary mailbox, behind the
    /// publishes it must follow.
    pub fn is_urgent(&self) -> bool {
        matches!(
            self,
            Mail::InterestAdd { .. }
                | Mail::InterestRemove { .. }
                | Mail::ShareJoin { .. }
                | Mail::ShareLeave { .. }
                | Mail::Hold { .. }
                | Mail::Release { .. }
                | Mail::Object { .. }
        )
    }
}

/// Everything a home shard needs to take over a connection accepted by another shard.
pub struct Handoff {
    /// The socket, duplicated before the accepting shard dropped its glommio stream.
    pub fd: OwnedFd,
    /// The decoded CONNECT, with the client id already assigned if it was empty.
    pub connect: Box<Connect>,
    /// Whether the client id was assigned by the broker (the v5 CONNACK then names it).
    pub assigned_id: bool,
    /// Bytes read after the CONNECT (a client may pipeline packets behind it).
    pub leftover: BytesMut,
    /// When the kernel received the read that brought `leftover` (ns since the epoch,
    /// `shard::lookback`).
    pub read_at: u64,
    /// The client's address, for logs.
    pub peer: std::net::SocketAddr,
    /// Index of the listener (config order) that accepted it.
    pub listener: usize,
    /// TLS session and WebSocket state, handshaken on the accepting shard (plain TCP: none).
    pub layers: Option<Box<crate::transport::Layers>>,
}

/// Commands from outside the shard threads.
#[derive(Debug, Clone)]
pub enum Control {
    /// Close listeners and connections, then let the executor finish.
    Shutdown,
    /// The first step of shutdown: take no new clients and publish the will of every connected client
    /// (as Mosquitto does when it stops), then say so on the channel. `Shutdown` follows.
    Wills(std::sync::mpsc::Sender<()>),
    /// The server's ticker: check keep-alives, publish `$SYS` when due (see `shard::keepalive`).
    Tick,
    /// `password_file` and `acl_file` were read again (SIGHUP): apply them to every session, then say
    /// so on the channel.
    Security(Arc<Security>, std::sync::mpsc::Sender<()>),
    /// The process runs as the user it keeps (`user` applied): the journal may start its file I/O.
    /// Not before: io_uring's worker threads keep the credentials of the thread that started them,
    /// and root's would outlive the switch (`shard::journal`).
    BeginWriting,
}

/// The atomics [`park`] uses: std's here, loom's when `tests/park_model.rs` compiles that file.
mod atomics {
    pub use std::sync::atomic::{fence, AtomicBool, Ordering};
}
mod park;
pub use park::ParkFlag;

/// Wakes a shard's mail task from any thread (the handshake is [`ParkFlag`]'s).
#[derive(Default)]
pub struct MailWaker {
    /// The mail task's waker, registered before it parks.
    waker: AtomicWaker,
    /// Whether the mail task may be parked: set by it before its last look at the queues, cleared by
    /// it or by the first sender that wakes it.
    parked: ParkFlag,
}

impl MailWaker {
    /// Called by a sender after it queued mail.
    pub fn notify(&self) {
        if self.parked.take_parked() {
            self.waker.wake();
        }
    }
    /// Called by the receiver before it re-checks its queues and returns Pending.
    pub fn prepare_park(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
        self.parked.set_parked();
    }
    /// Called by the receiver when it found work after `prepare_park`.
    pub fn unpark(&self) {
        self.parked.clear();
    }
}

/// The full set of channels, built once by the server and split into per-shard ends: one set per
/// mailbox, the shards' and, in cluster mode, the link's (the last, see [`MailboxMatrix::take_last`]).
pub struct MailboxMatrix {
    pub mail_out: Vec<MailSenders>,
    pub inboxes: Vec<Inbox>,
    pub control: Vec<ControlSender>,
}

/// Sends control commands to one shard from any thread.
#[derive(Clone)]
pub struct ControlSender {
    tx: Sender<Control>,
    waker: Arc<MailWaker>,
}

impl ControlSender {
    pub fn send(&self, c: Control) {
        // Unbounded: control messages are rare.
        let _ = self.tx.send(c);
        self.waker.notify();
    }
}

/// Rows of channel ends: `senders[from][to]`, `receivers[to][from]`.
type Grid<T> = Vec<Vec<T>>;

/// One channel per ordered (from, to) pair.
fn channel_grid(
    shards: usize,
    channel: impl Fn() -> (Sender<Mail>, Receiver<Mail>),
) -> (Grid<Sender<Mail>>, Grid<Receiver<Mail>>) {
    let mut senders: Grid<Sender<Mail>> = (0..shards).map(|_| Vec::with_capacity(shards)).collect();
    let mut receivers: Grid<Receiver<Mail>> =
        (0..shards).map(|_| Vec::with_capacity(shards)).collect();
    for from_row in senders.iter_mut() {
        for to_col in receivers.iter_mut() {
            let (tx, rx) = channel();
            from_row.push(tx);
            to_col.push(rx);
        }
    }
    (senders, receivers)
}

/// The ends of one mailbox owner: the sending row, the receiving column and its control channel.
pub struct MailboxEnds {
    pub mail_out: MailSenders,
    pub inbox: Inbox,
    pub control: ControlSender,
}

impl MailboxMatrix {
    /// Takes the last mailbox's ends out (the cluster link's: `shards + 1` mailboxes, the link's id
    /// `shards`), so that what is left zips with the shards' executors.
    pub fn take_last(&mut self) -> Option<MailboxEnds> {
        Some(MailboxEnds {
            mail_out: self.mail_out.pop()?,
            inbox: self.inboxes.pop()?,
            control: self.control.pop()?,
        })
    }

    pub fn new(shards: usize) -> MailboxMatrix {
        let wakers: Vec<Arc<MailWaker>> = (0..shards)
            .map(|_| Arc::new(MailWaker::default()))
            .collect();
        let (senders, receivers) = channel_grid(shards, crossbeam_channel::unbounded);
        // `counts[from][to]`, shared by the two ends of that mailbox.
        let counts: Grid<Arc<Mailbox>> = (0..shards)
            .map(|_| (0..shards).map(|_| Arc::default()).collect())
            .collect();
        let (urgent_tx, urgent_rx) = channel_grid(shards, crossbeam_channel::unbounded);
        let queued: Vec<Arc<AtomicUsize>> = (0..shards).map(|_| Arc::default()).collect();
        // One per shard: wakes its overflow task when a receiver takes mail from a mailbox it found
        // full.
        let space: Vec<Arc<MailWaker>> = (0..shards)
            .map(|_| Arc::new(MailWaker::default()))
            .collect();
        let mut control = Vec::with_capacity(shards);
        let mut control_rx = Vec::with_capacity(shards);
        for waker in &wakers {
            let (tx, rx) = crossbeam_channel::unbounded();
            control.push(ControlSender {
                tx,
                waker: waker.clone(),
            });
            control_rx.push(rx);
        }
        let mail_out = senders
            .into_iter()
            .zip(urgent_tx)
            .enumerate()
            .map(|(from, (to, urgent))| MailSenders {
                from: from as ShardId,
                to,
                counts: counts[from].clone(),
                urgent,
                urgent_queued: queued.clone(),
                wakers: wakers.clone(),
                space: space[from].clone(),
            })
            .collect();
        let inboxes = receivers
            .into_iter()
            .zip(urgent_rx)
            .zip(control_rx)
            .enumerate()
            .map(|(me, ((from, urgent), control))| Inbox {
                from,
                counts: counts.iter().map(|row| row[me].clone()).collect(),
                urgent: UrgentInbox {
                    from: urgent,
                    queued: queued[me].clone(),
                },
                control,
                waker: wakers[me].clone(),
                space: space.clone(),
            })
            .collect();
        MailboxMatrix {
            mail_out,
            inboxes,
            control,
        }
    }
}

/// The sending ends of one shard's row: one FIFO to every shard (including itself, unused: local work
/// never goes through a mailbox).
pub struct MailSenders {
    from: ShardId,
    to: Vec<Sender<Mail>>,
    /// How full each of `to` is.
    counts: Vec<Arc<Mailbox>>,
    /// The urgent FIFO (see the module comment), one per destination.
    urgent: Vec<Sender<Mail>>,
    /// Per destination: urgent mail queued and not yet taken, so that routing a publish costs one
    /// atomic load, not a look at every FIFO, when there is none (almost always).
    urgent_queued: Vec<Arc<AtomicUsize>>,
    wakers: Vec<Arc<MailWaker>>,
    /// This shard's own "space available" waker: receivers wake it after taking mail from its
    /// mailboxes, so mail held back for a full mailbox is retried on that event, not on a timer.
    space: Arc<MailWaker>,
}

impl MailSenders {
    /// Queue mail for `to`. On a full mailbox the mail comes back so the caller can keep it in order;
    /// to a receiver that has ended it is dropped.
    pub fn try_send(&self, to: ShardId, mail: Mail) -> Result<(), Mail> {
        debug_assert_ne!(to, self.from, "local work never goes through a mailbox");
        debug_assert!(
            !mail.is_urgent(),
            "urgent mail keeps its order on the urgent FIFO (send_urgent)"
        );
        let count = &self.counts[to as usize].len;
        // This shard is the mailbox's only sender, so nothing fills it between this look and the
        // send; its receiver only empties it. Acquire: pairs with the receiver's release of room.
        if count.load(Ordering::Acquire) >= MAILBOX_CAPACITY {
            return Err(mail);
        }
        count.fetch_add(1, Ordering::Relaxed);
        match self.to[to as usize].send(mail) {
            Ok(()) => {
                self.wakers[to as usize].notify();
                Ok(())
            }
            // The receiver has ended (shutdown, or a cluster link that failed): the mail is dropped,
            // not given back. Given back it would read as a full mailbox, held back for ever, and
            // pause this shard's publishers for good.
            Err(_) => {
                count.fetch_sub(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Before waiting for room in a full mailbox: mark this shard's space waiter parked. The caller
    /// must then retry its held-back sends once more and wait only if a mailbox is still full; a
    /// receiver that takes mail after that retry always wakes it (the mail task's handshake,
    /// [`ParkFlag`]).
    pub fn prepare_space_wait(&self, cx: &Context<'_>) {
        self.space.prepare_park(cx);
    }

    /// The retry after [`Self::prepare_space_wait`] sent everything: no wake needed.
    pub fn cancel_space_wait(&self) {
        self.space.unpark();
    }

    /// Queue urgent mail ([`Mail::is_urgent`]) for `to`; never full.
    pub fn send_urgent(&self, to: ShardId, mail: Mail) {
        debug_assert_ne!(to, self.from, "local work never goes through a mailbox");
        debug_assert!(mail.is_urgent());
        // Counted before the send, so the receiver never takes more than the count (no wrap-around).
        let queued = &self.urgent_queued[to as usize];
        queued.fetch_add(1, Ordering::Release);
        // Disconnected only when the receiving shard has ended (shutdown): nothing left to tell.
        if self.urgent[to as usize].send(mail).is_ok() {
            self.wakers[to as usize].notify();
        } else {
            queued.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A shard's receiving ends of the urgent FIFO. The mail loop's [`Inbox`] holds them too (the same
/// channels, on the same thread), so that a parked shard wakes for urgent mail.
#[derive(Clone, Default)]
pub struct UrgentInbox {
    from: Vec<Receiver<Mail>>,
    /// Incremented by senders before each send; see `MailSenders::urgent_queued`.
    queued: Arc<AtomicUsize>,
}

impl UrgentInbox {
    /// Whether urgent mail may be waiting: one atomic load. False means none was sent since the
    /// last drain (senders count before they send).
    pub fn has_mail(&self) -> bool {
        self.queued.load(Ordering::Acquire) != 0
    }

    /// Take all urgent mail queued so far, in order per sending shard.
    pub fn drain(&self, mut f: impl FnMut(Mail)) {
        if self.has_mail() {
            self.drain_all(&mut f);
        }
    }

    fn drain_all(&self, f: &mut impl FnMut(Mail)) {
        let mut taken = 0;
        for rx in &self.from {
            while let Ok(m) = rx.try_recv() {
                taken += 1;
                f(m);
            }
        }
        if taken > 0 {
            self.queued.fetch_sub(taken, Ordering::AcqRel);
        }
    }
}

/// The receiving ends of one shard's column.
pub struct Inbox {
    from: Vec<Receiver<Mail>>,
    /// How full each of `from` is (see [`Mailbox`]).
    counts: Vec<Arc<Mailbox>>,
    urgent: UrgentInbox,
    control: Receiver<Control>,
    waker: Arc<MailWaker>,
    /// Every shard's "space available" waker, by sending shard: told after mail was taken from it.
    space: Vec<Arc<MailWaker>>,
}

/// Mail taken per source per poll, so one busy sender cannot starve the others or the shard's sockets.
const DRAIN_BATCH: usize = 256;

impl Inbox {
    /// The urgent FIFO, for the shard to drain before routing (see the module comment).
    pub fn urgent(&self) -> UrgentInbox {
        self.urgent.clone()
    }

    fn drain(&self, out: &mut Vec<Mail>) {
        self.urgent.drain_all(&mut |m| out.push(m));
        for ((rx, space), count) in self.from.iter().zip(&self.space).zip(&self.counts) {
            let before = out.len();
            for _ in 0..DRAIN_BATCH {
                match rx.try_recv() {
                    Ok(m) => out.push(m),
                    Err(_) => break,
                }
            }
            // Room was made: a sender waiting on it (only one whose mailbox was full parks) retries.
            // The count goes down first, so the sender's retry after the wake (or after its park
            // mark, `ParkFlag`) sees the room.
            let taken = out.len() - before;
            if taken > 0 {
                count.len.fetch_sub(taken, Ordering::Release);
                space.notify();
            }
        }
    }

    /// Wait for mail or a control command. Parks on the [`MailWaker`] with no spinning.
    pub fn poll_recv(&self, cx: &mut Context<'_>, batch: &mut Vec<Mail>) -> Poll<Option<Control>> {
        if let Ok(c) = self.control.try_recv() {
            return Poll::Ready(Some(c));
        }
        self.drain(batch);
        if !batch.is_empty() {
            return Poll::Ready(None);
        }
        self.waker.prepare_park(cx);
        // Re-check after marking parked: a sender that queued before the mark did not wake us.
        if let Ok(c) = self.control.try_recv() {
            self.waker.unpark();
            return Poll::Ready(Some(c));
        }
        self.drain(batch);
        if !batch.is_empty() {
            self.waker.unpark();
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
