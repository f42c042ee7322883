//! The link's routing: mail from the shards out to the interested nodes, messages from other nodes
//! in to the interested shards, and remote interest from the bucket to the shards (docs/CLUSTER.md,
//! "The link: a virtual shard").
//!
//! Owned by the link's task; nothing here waits on a shard. Outbound, one copy of a message goes to
//! each interested node, in the order the shards sent them (one NATS connection keeps a subject's
//! order): QoS 0 on core NATS, the node's subject `shardmq.<cluster>.node.<node>`; QoS 1 and 2
//! through the node's JetStream queue (`queue`), the publishing shard's acknowledgement waiting for
//! JetStream's (`acks`). While NATS is away the node serves its own clients alone: QoS 0 copies
//! for other nodes are dropped and counted; QoS 1/2 copies are kept in memory (up to
//! [`AWAY_LIMIT`]) and sent when NATS is back, and their publishers are acknowledged meanwhile, so
//! local traffic goes on (a node that dies during a whole NATS outage loses what it kept).
//!
//! Parts: `claims` (client ids: claims, evictions, release), `moved` (messages that reach this node
//! after a session left it go after it), `kept` (wills and sessions kept for a dead node, and
//! adopted from one), `shared` (`$share` groups across the nodes), `ordered` (QoS 0 copies and
//! batches in their sender's order), `held` (batches acknowledged once no session here owes their
//! copies), `subacks` (a SUBACK waits for every node's word), `synced` (a SUBSCRIBE waits for
//! the retained stream).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::mpsc;

use std::collections::VecDeque;

use self::kept::Kept;
use super::acks::{self, AckLedger, Ticket};
use super::bucket::BucketEvent;
use super::figures::{ClusterFigures, Figure};
use super::interest::{Interest, KvChange, ShardChange};
use super::post::Post;
use super::queue::{self, Copy};
use super::wire;
use crate::codec::QoS;
use crate::codec::Utf8Bytes;
use crate::router::{Mail, ShardId};
use crate::session::HoldStamp;

mod claims;
mod held;
mod kept;
mod moved;
mod ordered;
mod shared;
mod subacks;
mod synced;

use subacks::WaitingInterest;

/// How long the link waits, at most, for this node's sessions from its previous run before it
/// reads its queue (`Relay::reads_queue`).
const OWN_BACK_LIMIT: Duration = Duration::from_secs(10);

/// QoS 1/2 copies kept while NATS is away, at most; beyond, they are dropped and counted.
pub const AWAY_LIMIT: usize = 100_000;

/// A JetStream message of QoS 1/2 copies that finished: stored, or given back because NATS went
/// away. `tickets`: the counted messages among its copies.
pub struct CopyDone {
    pub tickets: Vec<Ticket>,
    pub result: Result<(), Copy>,
}

/// A batch of QoS 1/2 copies for one node stops growing at this size or this many frames (NATS's
/// default `max_payload` is 1 MiB).
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_FRAMES: usize = 1024;

/// The QoS 1/2 copies for one node not handed to NATS yet: one JetStream message, so one replicated
/// write, for all those the link makes in one turn of its loop (`wire::BATCH_TAG`).
#[derive(Default)]
struct Batch {
    payload: BytesMut,
    frames: usize,
    tickets: Vec<Ticket>,
    /// Its number among this run's batches for its node (`order`).
    number: u64,
}

pub struct Relay {
    /// The link's mailbox id (`shards`).
    me: ShardId,
    post: Post,
    interest: Interest,
    /// Shared subscription groups across the nodes (`relay::shared`).
    groups: super::groups::Groups,
    /// The link's membership of groups with members on other nodes, as the shards see it: always
    /// online (the node it passes a message to picks an online member if it has one).
    link_member: Arc<crate::index::MemberState>,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    cluster: String,
    /// `shardmq.<cluster>.node.`: a node's subject is this and its name.
    node_subject: String,
    /// The QoS 1/2 messages of each shard, and which are in JetStream.
    ledger: AckLedger,
    /// Where the tasks waiting for JetStream's acknowledgements report.
    done: mpsc::UnboundedSender<CopyDone>,
    /// QoS 1/2 copies kept while NATS is away.
    away: VecDeque<Copy>,
    /// QoS 1/2 copies being gathered, per node, until the end of this turn of the link's loop.
    batches: ahash::AHashMap<String, Batch>,
    /// The batches this run started and the QoS 0 copies it sent, per node (`order`).
    numbering: super::order::Numbering,
    /// QoS 0 copies and batches from other nodes waiting for what was sent before them.
    holding: super::order::Holding<bytes::Bytes, async_nats::jetstream::Message>,
    /// The JetStream messages whose copies some session here still owes (`held`).
    held: held::Held,
    /// Whether this node's own sessions left by its previous run are back (`state::adopt`):
    /// until then its queue is not read (see [`Relay::reads_queue`]); at the latest then.
    own_back: bool,
    own_back_by: std::time::Instant,
    /// `Nats-Msg-Id`s: `<node>-<start time>-<n>`.
    id_prefix: String,
    next_id: u64,
    /// The node's retained store and the subjects of the cluster's retained stream.
    retained: Option<Arc<crate::shard::RetainedStripes>>,
    retained_prefix: super::subject::SubjectPrefix,
    kv: mpsc::UnboundedSender<KvChange>,
    /// This node's wills, for the wills bucket's writer, and the keys it was given a will for.
    wills: Kept,
    /// This node's persistent sessions, for the sessions' bucket's writer (`cluster::state`).
    states: Kept,
    buf: BytesMut,
    /// What it counts, for `$SYS` and the log line when it stops.
    figures: Arc<ClusterFigures>,
    /// Whether the drops of the current outage were logged.
    told_drop: bool,
    /// Whether NATS answered since the link started (claims wait for its first connection).
    ever_connected: bool,
    /// This node's name (claims of client ids).
    node: String,
    /// The sessions bucket, opened by the first claim.
    sessions: Arc<tokio::sync::OnceCell<async_nats::jetstream::kv::Store>>,
    /// Where claim and release tasks report.
    claimed: mpsc::UnboundedSender<TaskDone>,
    /// Releases of client ids under way, and eviction answers waiting for them.
    releases: claims::Releases,
    /// SUBSCRIBEs waiting for this node's retained store to catch up with the stream.
    syncs: synced::Syncs,
    /// SUBACKs waiting for this node's interest key to be written and seen by the other nodes.
    waiting_interest: ahash::AHashMap<String, WaitingInterest>,
    /// The live nodes, as the last liveness refresh found them (this one included).
    live: tokio::sync::watch::Receiver<Vec<String>>,
    /// Whether the node is ready (`link`), and until when a CONNECT waits for that.
    ready: tokio::sync::watch::Receiver<bool>,
    ready_wait_until: tokio::time::Instant,
    /// Eviction requests from other nodes waiting for a shard's answer: ticket -> reply subject.
    evictions: ahash::AHashMap<u64, claims::Eviction>,
    /// Sessions that moved to other nodes lately (`relay::moved`).
    moved: moved::MovedSessions,
    next_eviction: u64,
}

/// The subject on which node `origin` hears that another node applied one of its interest keys;
/// that node's name is the last token.
pub fn seen_subject(cluster: &str, origin: &str, by: &str) -> String {
    format!("shardmq.{cluster}.seen.{origin}.{by}")
}

/// What a claim or release task reports.
pub enum TaskDone {
    Claimed(ClaimDone),
    /// A release of this client id finished (`claims::Releases`).
    Released(Utf8Bytes),
    /// The retained stream's last sequence, or nothing (the query failed): `synced`.
    RetainedLast(Option<u64>),
}

/// A claim of a client id that finished: for shard `shard`'s CONNECT `ticket`, with the session
/// that moved here.
pub struct ClaimDone {
    pub shard: ShardId,
    pub ticket: u64,
    pub client_id: Utf8Bytes,
    pub session: Option<super::sessions::Moving>,
}

/// The subject on which `node` of `cluster` receives messages.
pub fn node_subject(cluster: &str, node: &str) -> String {
    format!("shardmq.{cluster}.node.{node}")
}

/// Where the relay's helpers report: the interest writer, the tasks waiting for JetStream's
/// acknowledgements, the claims of client ids.
pub struct Outlets {
    pub kv: mpsc::UnboundedSender<KvChange>,
    pub wills: mpsc::UnboundedSender<super::bucket::KeyWrite>,
    pub states: mpsc::UnboundedSender<super::bucket::KeyWrite>,
    pub copies: mpsc::UnboundedSender<CopyDone>,
    pub claims: mpsc::UnboundedSender<TaskDone>,
    /// Where the last holder of a [`crate::session::Custody`] says so (`held`).
    pub custody: mpsc::UnboundedSender<u64>,
}

impl Relay {
    pub fn new(
        post: Post,
        interest: Interest,
        client: async_nats::Client,
        config: &super::link::LinkConfig,
        outlets: Outlets,
        figures: Arc<ClusterFigures>,
        live: tokio::sync::watch::Receiver<Vec<String>>,
    ) -> Relay {
        let Outlets {
            kv,
            wills,
            states,
            copies: done,
            claims: claimed,
            custody,
        } = outlets;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Relay {
            me: post.shards() as ShardId,
            ledger: AckLedger::new(post.shards()),
            post,
            interest,
            groups: super::groups::Groups::new(&config.node),
            link_member: {
                let state = Arc::new(crate::index::MemberState::default());
                state.set_online(true);
                state
            },
            js: async_nats::jetstream::new(client.clone()),
            client,
            cluster: config.cluster.clone(),
            node_subject: format!("shardmq.{}.node.", config.cluster),
            done,
            away: VecDeque::new(),
            batches: ahash::AHashMap::new(),
            numbering: super::order::Numbering::new(&config.node, started as u64),
            holding: super::order::Holding::default(),
            held: held::Held::new(custody),
            own_back: false,
            own_back_by: std::time::Instant::now() + OWN_BACK_LIMIT,
            id_prefix: format!("{}-{started:x}-", config.node),
            next_id: 0,
            retained: None,
            retained_prefix: super::retained::prefix(&config.cluster),
            node: config.node.clone(),
            sessions: Arc::default(),
            claimed,
            releases: claims::Releases::default(),
            syncs: synced::Syncs::default(),
            waiting_interest: ahash::AHashMap::new(),
            live,
            ready: tokio::sync::watch::channel(true).1,
            ready_wait_until: tokio::time::Instant::now(),
            evictions: ahash::AHashMap::new(),
            moved: moved::MovedSessions::default(),
            next_eviction: 0,
            kv,
            wills: Kept::new(wills),
            states: Kept::new(states),
            buf: BytesMut::new(),
            figures,
            told_drop: false,
            ever_connected: false,
        }
    }

    /// The node's readiness: until it is ready, and for at most `wait` from now, a CONNECT's claim
    /// waits for it (see `claim`).
    pub fn set_ready(&mut self, ready: tokio::sync::watch::Receiver<bool>, wait: Duration) {
        self.ready = ready;
        self.ready_wait_until = tokio::time::Instant::now() + wait;
    }

    pub fn set_retained_store(&mut self, store: Arc<crate::shard::RetainedStripes>) {
        self.retained = Some(store);
    }

    /// Whether the link takes messages from this node's queue: once the sessions its previous
    /// run left in the bucket are back here. Before, a message the queue held for one of them
    /// (published while the node was down) found no subscription and was dropped: 21 of ~1,200
    /// QoS 1 messages published in the second after a kill -9, in a run where the node was
    /// restarted at once and its subscriber came back to it.
    pub fn reads_queue(&self) -> bool {
        self.own_back
    }

    /// This run created the node's queue consumer: the node never ran before, no session of a
    /// previous run waits for what its queue holds; read at once (on a fresh cluster the
    /// take-back's bucket listing took seconds under load, and QoS 1/2 from other nodes waited).
    pub fn queue_is_new(&mut self) {
        self.own_back = true;
    }

    /// The link's tick: the queue is read [`OWN_BACK_LIMIT`] after the start whatever the
    /// take-back of this node's sessions does (NATS failing it again and again): the rest of the
    /// cluster's QoS 1/2 traffic to this node must not wait on it.
    pub fn own_back_overdue(&mut self) {
        if !self.own_back && std::time::Instant::now() >= self.own_back_by {
            self.own_back = true;
            tracing::warn!(
                "Cluster: this node's sessions from its previous run are not back after                  {OWN_BACK_LIMIT:?}; reading its queue anyway (what it holds for them may find no                  subscription)."
            );
        }
    }

    pub fn post(&mut self) -> &mut Post {
        &mut self.post
    }

    /// Handle a batch of mail from the shards.
    pub async fn take_mail(&mut self, batch: &mut Vec<Mail>) {
        for mail in batch.drain(..) {
            match mail {
                Mail::Publish(msg, _) => self.forward(&msg).await,
                Mail::Retain(msg) => self.publish_retained(&msg).await,
                Mail::InterestAdd { from, filter, .. } => {
                    let key = super::interest::key_of(&self.node, &filter);
                    let put = self.interest.local_add(&filter, from);
                    self.answer_interest_when_written(key, put, from, filter);
                }
                Mail::InterestRemove { from, filter } => {
                    if let Some(c) = self.interest.local_remove(&filter, from) {
                        let _ = self.kv.send(c);
                    }
                }
                // The shards' answers to the link's interest: nothing waits for them.
                Mail::InterestAck { .. } => {}
                Mail::ShareJoin {
                    from,
                    slot,
                    full,
                    state,
                    ..
                } => {
                    let key = super::interest::key_of(&self.node, &full);
                    let put = self.groups.local_join(&full, from, slot, state);
                    self.answer_interest_when_written(key, put, from, full);
                }
                Mail::ShareLeave { from, slot, full } => {
                    if let Some(c) = self.groups.local_leave(&full, from, slot) {
                        let _ = self.kv.send(c);
                    }
                }
                Mail::Shared {
                    msg,
                    full,
                    counted,
                    hops,
                    slot,
                } => {
                    self.forward_shared(msg, full, counted, hops, Some(slot))
                        .await
                }
                Mail::Will { client_id, will } => self.keep_will(&client_id, will),
                Mail::State { client_id, image } => self.keep_state(&client_id, image),
                Mail::Unclaim { client_id } => self.unclaim(client_id),
                Mail::RetainedSync { from, key } => self.sync_retained(from, key),
                // A moved session's stub passes what reached it for the session (`shard::moves`).
                Mail::Follow { client_id, msg } => self.follow_stub(&client_id, &msg).await,
                Mail::Claim {
                    from,
                    ticket,
                    client_id,
                    clean_start,
                } => self.claim(from, ticket, client_id, clean_start),
                Mail::Evicted {
                    ticket,
                    session,
                    lately,
                } => {
                    if let Some(e) = self.evictions.remove(&ticket) {
                        self.moved(&e.client_id, session.as_ref()).await;
                        let payload = session
                            .map(|s| super::sessions::encode_answer(&s, &lately))
                            .unwrap_or_default();
                        self.answer_eviction(e, payload).await;
                    }
                }
                other => {
                    debug_assert!(false, "the link got mail it never asks for");
                    drop(other);
                }
            }
        }
    }

    /// Send `msg` to every other node interested in its topic, once each.
    async fn forward(&mut self, msg: &crate::message::Message) {
        let nodes: Vec<String> = self
            .interest
            .remote_nodes_for(&msg.topic)
            .map(str::to_owned)
            .collect();
        let payload = if nodes.is_empty() {
            None
        } else {
            self.buf.clear();
            match wire::encode(msg, &mut self.buf) {
                Ok(()) => Some(self.buf.split().freeze()),
                Err(e) => {
                    tracing::warn!("Cluster: cannot send a message on {}: {e}.", msg.topic);
                    self.figures.add(Figure::Dropped, nodes.len() as u64);
                    None
                }
            }
        };
        let counted = msg.origin.filter(|_| acks::counted(msg)).map(|o| o.0);
        self.send_copies(msg, nodes, payload, counted).await;
    }

    /// Send `payload` (`msg` framed) to each of `nodes`: at QoS 0 on their subjects, at QoS 1/2
    /// through JetStream. `counted`: the shard whose acknowledgement of `msg` waits for the copies.
    async fn send_copies(
        &mut self,
        msg: &crate::message::Message,
        nodes: Vec<String>,
        payload: Option<bytes::Bytes>,
        counted: Option<ShardId>,
    ) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if connected {
            self.told_drop = false;
        }
        if msg.qos == QoS::AtMostOnce {
            let Some(payload) = payload else { return };
            if !connected {
                self.dropped_away(nodes.len());
                return;
            }
            for node in nodes {
                // Named after the QoS 1/2 copies sent to that node before it, the open batch's
                // included (`order`; a batch in `batches` has a frame at least).
                let frames = self.batches.get(&node).map(|b| b.frames as u64);
                let subject = format!("{}{node}", self.node_subject);
                let sent = match self.numbering.copy(&node, frames) {
                    // Not before the QoS 1/2 copies sent to that node before it (`order`).
                    Some(after) => {
                        let mut headers = async_nats::HeaderMap::new();
                        headers.insert(super::order::AFTER_HEADER, after.as_str());
                        self.client
                            .publish_with_headers(subject, headers, payload.clone())
                            .await
                    }
                    None => self.client.publish(subject, payload.clone()).await,
                };
                match sent {
                    Ok(()) => self.figures.add(Figure::Sent, 1),
                    Err(e) => {
                        self.figures.add(Figure::Dropped, 1);
                        tracing::debug!("Cluster: publish on {} failed: {e}.", msg.topic);
                    }
                }
            }
            return;
        }
        // QoS 1/2: the publishing shard's acknowledgement waits for the copies sent now.
        let copies = if connected && payload.is_some() {
            nodes.len() as u32
        } else {
            0
        };
        let ticket = counted.map(|shard| self.ledger.received(shard, copies));
        let Some(payload) = payload else {
            return self.tell_durable();
        };
        for node in nodes {
            if !connected {
                let subject = queue::queue_subject(&self.cluster, &node);
                let copy = self.copy(subject, payload.clone());
                self.keep_away(copy);
                continue;
            }
            // A batch is in `batches` from its first frame until it is flushed.
            let batch = match self.batches.entry(node) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let number = self.numbering.start_batch(e.key());
                    let batch = e.insert(Batch {
                        number,
                        ..Batch::default()
                    });
                    wire::start_batch(&mut batch.payload);
                    batch
                }
            };
            wire::push_frame(&mut batch.payload, &payload);
            batch.frames += 1;
            batch.tickets.extend(ticket);
            if batch.payload.len() >= BATCH_BYTES || batch.frames >= BATCH_FRAMES {
                self.flush_batches().await;
            }
        }
        if copies == 0 {
            self.tell_durable();
        }
    }

    /// Hands the QoS 1/2 copies gathered for each node to NATS, one JetStream message per node (at
    /// the end of each turn of the link's loop, and when one grows too big).
    pub async fn flush_batches(&mut self) {
        if self.batches.is_empty() {
            return;
        }
        let batches: Vec<(String, Batch)> = self.batches.drain().collect();
        for (node, batch) in batches {
            self.send_batch(node, batch).await;
        }
    }

    async fn send_batch(&mut self, node: String, batch: Batch) {
        let subject = queue::queue_subject(&self.cluster, &node);
        let mut copy = self.copy(subject, batch.payload.freeze());
        copy.order = Some(self.numbering.batch_header(&node, batch.number));
        self.send_copy(copy, batch.tickets).await;
    }

    /// A JetStream message on `subject`, with this link's next `Nats-Msg-Id`.
    fn copy(&mut self, subject: String, payload: bytes::Bytes) -> Copy {
        let id = format!("{}{}", self.id_prefix, self.next_id);
        self.next_id += 1;
        Copy {
            subject,
            id,
            payload,
            order: None,
        }
    }

    /// Hands `copy` to NATS now; a task waits for JetStream's acknowledgement.
    async fn send_copy(&mut self, copy: Copy, tickets: Vec<Ticket>) {
        let acked = queue::publish(&self.client, &self.js, copy).await;
        let done = self.done.clone();
        tokio::spawn(async move {
            let result = acked.await;
            let _ = done.send(CopyDone { tickets, result });
        });
    }

    /// A QoS 1/2 copy finished: stored, or back because NATS went away (kept for later: the
    /// publisher is acknowledged now, as for a copy made while NATS was away).
    pub fn copy_done(&mut self, done: CopyDone) {
        match done.result {
            Ok(()) => self.figures.add(Figure::Sent, 1),
            Err(copy) => self.keep_away(copy),
        }
        for ticket in done.tickets {
            self.ledger.copy_done(ticket);
        }
        self.tell_durable();
    }

    /// Tell the shards which of their QoS 1/2 messages are safe now (`Mail::Durable`).
    fn tell_durable(&mut self) {
        let from = self.me;
        for (shard, count) in self.ledger.advance() {
            self.post.send(shard, Mail::Durable { from, count });
        }
    }

    fn keep_away(&mut self, copy: Copy) {
        if self.away.len() >= AWAY_LIMIT {
            self.dropped_away(1);
            return;
        }
        if self.away.is_empty() {
            tracing::warn!(
                "Cluster: NATS is away; QoS 1/2 messages for other nodes are kept in memory \
                 (up to {AWAY_LIMIT}) until it is back."
            );
        }
        self.away.push_back(copy);
    }

    fn dropped_away(&mut self, n: usize) {
        self.figures.add(Figure::Dropped, n as u64);
        if !self.told_drop {
            self.told_drop = true;
            tracing::warn!(
                "Cluster: NATS is away; QoS 0 messages for other nodes (and QoS 1/2 past \
                 {AWAY_LIMIT} kept) are dropped until it is back."
            );
        }
    }

    /// NATS may be back: send what was kept meanwhile, in order.
    pub async fn resend_kept(&mut self) {
        if self.away.is_empty()
            || self.client.connection_state() != async_nats::connection::State::Connected
        {
            return;
        }
        tracing::info!(
            "Cluster: NATS is back; sending the {} QoS 1/2 messages kept for other nodes.",
            self.away.len()
        );
        while let Some(copy) = self.away.pop_front() {
            self.send_copy(copy, Vec::new()).await;
        }
    }

    /// A retained message (or clearing) set on this node: to the cluster's retained stream. A
    /// client's QoS 1/2 one is acknowledged once the stream has it (at once while NATS is away).
    async fn publish_retained(&mut self, msg: &crate::message::Message) {
        let counted = msg.origin.filter(|_| acks::counted(msg)).map(|o| o.0);
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        self.buf.clear();
        if let Err(e) = wire::encode(msg, &mut self.buf) {
            tracing::warn!(
                "Cluster: cannot share the retained message of {}: {e}.",
                msg.topic
            );
            if let Some(shard) = counted {
                self.ledger.received(shard, 0);
                self.tell_durable();
            }
            return;
        }
        let subject = super::retained::subject_of(&self.retained_prefix, &msg.topic);
        let payload = self.buf.split().freeze();
        let copy = self.copy(subject, payload);
        let ticket = counted.map(|shard| self.ledger.received(shard, u32::from(connected)));
        if connected {
            self.send_copy(copy, ticket.into_iter().collect()).await;
        } else {
            self.keep_away(copy);
            if ticket.is_some() {
                self.tell_durable();
            }
        }
    }

    /// A message of the cluster's retained stream: into this node's store, and with persistence
    /// into the log of the shard that keeps its topic.
    /// `seq`: its sequence in the stream (`synced`).
    pub fn take_retained(&mut self, payload: &[u8], seq: u64) {
        self.applied_retained(seq);
        let msg = match wire::decode(payload) {
            Ok(msg) => msg,
            Err(e) => {
                self.figures.add(Figure::Unreadable, 1);
                tracing::warn!("Cluster: a retained message from NATS was not one ({e}); dropped.");
                return;
            }
        };
        let Some(store) = &self.retained else { return };
        let msg = Arc::new(msg);
        store.store(msg.clone());
        if self.post.shards() > 0 {
            let keeper = crate::shard::home_of(msg.topic.as_bytes(), self.post.shards());
            self.post.send(keeper, Mail::Retain(msg));
        }
    }

    /// A message from another node: to each shard here with a matching subscription. `custody`:
    /// it came in a JetStream message, acknowledged once no session here owes it (`held`).
    pub async fn take_message(
        &mut self,
        payload: &[u8],
        custody: Option<&Arc<crate::session::Custody>>,
    ) {
        for frame in wire::frames(payload) {
            match frame {
                Ok(frame) => self.take_frame(frame, custody).await,
                Err(e) => self.cut_short(&e),
            }
        }
    }

    /// A batch from another node ended in the middle of a frame: counted, the rest dropped.
    fn cut_short(&mut self, e: &dyn std::fmt::Display) {
        self.figures.add(Figure::Unreadable, 1);
        tracing::warn!("Cluster: a batch from NATS was cut short ({e}); the rest dropped.");
    }

    /// One message from another node.
    async fn take_frame(&mut self, payload: &[u8], custody: Option<&Arc<crate::session::Custody>>) {
        let Some(msg) = self.take_addressed(wire::decode_frame(payload)).await else {
            return;
        };
        self.figures.add(Figure::Received, 1);
        let msg = Arc::new(msg);
        self.follow_moved(&msg).await;
        let shards = self.interest.local_shards_for(&msg.topic);
        for to in shards.iter() {
            let mail = match custody {
                // Only a QoS 1/2 message can be owed: a QoS 0 one in the batch lets go at once.
                Some(c) if msg.qos != QoS::AtMostOnce => Mail::Taken {
                    msg: msg.clone(),
                    custody: c.clone(),
                },
                _ => Mail::Publish(msg.clone(), HoldStamp::default()),
            };
            self.post.send(to, mail);
        }
    }

    /// A decoded frame from another node (its queue, its subject, a dead node's queue): one for a
    /// group's member or for one session is handled here; a plain message is returned, for the
    /// caller to route; an unreadable one is counted and dropped.
    async fn take_addressed(
        &mut self,
        frame: Result<wire::Frame, wire::WireError>,
    ) -> Option<crate::message::Message> {
        // A receive time ahead of this node's clock (the other node's clock is ahead) counts as
        // now: it orders the message after every SUBSCRIBE read here so far, as it is.
        let now = crate::shard::now_ns();
        let frame = frame.map(|mut f| {
            f.msg.read_at = f.msg.read_at.min(now);
            f
        });
        match frame {
            Ok(wire::Frame {
                msg,
                group: Some((full, hops)),
                ..
            }) => self.take_shared(msg, full, hops).await,
            Ok(wire::Frame {
                msg,
                client: Some(client),
                ..
            }) => {
                self.figures.add(Figure::Received, 1);
                self.take_for_client(msg, client).await;
            }
            Ok(frame) => return Some(frame.msg),
            Err(e) => {
                self.figures.add(Figure::Unreadable, 1);
                tracing::warn!("Cluster: a message from NATS was not one ({e}); dropped.");
            }
        }
        None
    }

    /// A change read from the interest bucket.
    pub async fn take_bucket_event(&mut self, event: BucketEvent) {
        let mut seen = None;
        let changes = match event {
            BucketEvent::Present(keys) => {
                let gone = self.groups.retain_remote(&keys);
                self.tell_groups(gone);
                self.interest.retain_remote(&keys)
            }
            BucketEvent::Put { key, filter } => match self.remote_put(&key, filter) {
                Ok(change) => {
                    seen = super::interest::node_of(&key)
                        .filter(|origin| *origin != self.node)
                        .map(|origin| {
                            (seen_subject(&self.cluster, origin, &self.node), key.clone())
                        });
                    change.into_iter().collect()
                }
                Err(e) => {
                    tracing::warn!("Cluster: interest key {key} ignored: {e}.");
                    Vec::new()
                }
            },
            BucketEvent::Delete { key } => {
                let gone = self.groups.remote_delete(&key);
                self.tell_groups(gone);
                self.interest.remote_delete(&key).into_iter().collect()
            }
            BucketEvent::CaughtUp | BucketEvent::Mark { .. } => Vec::new(),
        };
        let from = self.me;
        for change in changes {
            match change {
                ShardChange::Add(filter) => self.tell(|| Mail::InterestAdd {
                    from,
                    filter: filter.clone(),
                    since: 0,
                }),
                ShardChange::Remove(filter) => self.tell(|| Mail::InterestRemove {
                    from,
                    filter: filter.clone(),
                }),
            }
        }
        // The shards were told (their urgent mail, applied before any publish they route next):
        // the node whose key it is may answer its SUBACKs.
        if let Some((subject, key)) = seen {
            let _ = self.client.publish(subject, key.into()).await;
        }
    }

    fn tell(&mut self, make: impl FnMut() -> Mail) {
        self.post.tell_shards(make);
    }
}
