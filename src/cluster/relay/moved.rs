//! Sessions that moved to another node, on the node they left (docs/CLUSTER.md, "Sessions across
//! nodes").
//!
//! When a client connects elsewhere, its session leaves this node with what it was owed then
//! (`shard::claims`). A QoS 1/2 message for it may still reach this node after that: sent by a node
//! that had not yet seen the new node's interest, or published here before this node saw it. The
//! link keeps, for [`LIFE`] after each move, where the session went and its filters, and passes each
//! such message from another node to the session's new node, for that session only
//! (`wire::CLIENT_TAG`). From the eviction request until the shard's answer, whose snapshot says
//! the filters, the messages the link takes are held (at most [`HELD_MAX`]). What this node's
//! clients publish to the session reaches its stub in its shard (`shard::moves`), which passes it
//! here (`Mail::Follow`). Every QoS is followed: a copy that reaches the new node twice (sent there
//! directly as well, once its interest was known) is dropped there by its name (`Message::id`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;

use super::Relay;
use crate::codec::Utf8Bytes;
use crate::message::Message;

/// How long a session that moved is followed once the shard answered: as long as its stub lives
/// there (`shard::moves`, 3 s). Not longer: while the stub lives, this node gets every message
/// for the session's filters, so what it passes on and what the new node is sent directly are the
/// same messages, each in its publisher's order, and the first copy of each keeps that order; once
/// the stub is gone this node gets only what its other clients want, and passing that on (one hop
/// behind, but not held like a direct copy waiting for the batch before it, `ordered`) gave
/// those messages ahead of earlier ones of their publishers: 1 to 132 QoS 0 messages out of order
/// per run for a moving `#` subscriber in tests/32_cluster_concurrent.rs.
const LIFE: Duration = Duration::from_secs(3);

/// How long a session that moved is remembered for what a dead node's queue owes it (`kept`):
/// an adopter drains that queue for up to ~40 s after it adopted the session (`state`), and its
/// client may come back on another node meanwhile.
const GONE_LIFE: Duration = Duration::from_secs(60);

/// How long the shard's answer to a move is waited for (what comes meanwhile is held).
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Messages held for one session whose move is not answered yet, at most.
const HELD_MAX: usize = 10_000;

struct Moved {
    /// The node it went to.
    to: String,
    /// Its filters (but shared ones), once the shard answered.
    filters: Vec<Utf8Bytes>,
    /// Whether the shard answered; until then what the link routes is held.
    answered: bool,
    /// Followed (or waited for) until then.
    until: Instant,
    held: Vec<Arc<Message>>,
}

/// The sessions that left this node lately, by client id; and those coming here (a claim under
/// way), with what was sent after them meanwhile.
#[derive(Default)]
pub(super) struct MovedSessions {
    by_client: AHashMap<Utf8Bytes, Moved>,
    arriving: AHashMap<Utf8Bytes, Vec<Message>>,
    /// Where each session that moved from here in the last [`GONE_LIFE`] went, and its filters:
    /// only for what a dead node's queue owes it.
    gone: AHashMap<Utf8Bytes, (String, Vec<Utf8Bytes>, Instant)>,
}

impl Relay {
    /// Session `client_id` is being moved to node `to` (an eviction request): follow it.
    pub(super) fn moving(&mut self, client_id: Utf8Bytes, to: String) {
        self.moved.by_client.insert(
            client_id,
            Moved {
                to,
                filters: Vec::new(),
                answered: false,
                until: Instant::now() + ANSWER_WAIT,
                held: Vec::new(),
            },
        );
    }

    /// The shard answered the move of `client_id` with its session (None: it had none, or the new
    /// connection starts clean): pass on what was held for it, follow it for `LIFE`.
    pub(super) async fn moved(&mut self, client_id: &Utf8Bytes, session: Option<&Bytes>) {
        let Some(mut moved) = self.moved.by_client.remove(client_id) else {
            return;
        };
        let Some(session) = session else { return };
        moved.filters = super::super::state::filters_of(session);
        moved.answered = true;
        moved.until = Instant::now() + LIFE;
        self.moved.gone.insert(
            client_id.clone(),
            (
                moved.to.clone(),
                moved.filters.clone(),
                Instant::now() + GONE_LIFE,
            ),
        );
        let held = std::mem::take(&mut moved.held);
        let to = moved.to.clone();
        let wanted: Vec<Arc<Message>> = held
            .into_iter()
            .filter(|m| crate::topic::matches_any(&moved.filters, &m.topic))
            .collect();
        self.moved.by_client.insert(client_id.clone(), moved);
        for msg in wanted {
            self.send_to_client(&to, client_id, &msg).await;
        }
    }

    /// A message from another node: also to each session that moved from here lately and wants it.
    /// (The sending node may have sent it to the session's new node too, if it knew: that node
    /// takes the first copy.)
    pub(super) async fn follow_moved(&mut self, msg: &Arc<Message>) {
        if self.moved.by_client.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut to_send = Vec::new();
        for (client_id, moved) in &mut self.moved.by_client {
            if !moved.answered {
                if moved.held.len() < HELD_MAX {
                    moved.held.push(msg.clone());
                }
            } else if moved.until > now && crate::topic::matches_any(&moved.filters, &msg.topic) {
                to_send.push((moved.to.clone(), client_id.clone()));
            }
        }
        for (to, client_id) in to_send {
            self.send_to_client(&to, &client_id, msg).await;
        }
    }

    /// A message published on this node reached the stub of moved session `client_id` (`shard::
    /// moves`), or one sent for it reached its shard after it left: after the session (held while
    /// the move is not answered).
    pub(super) async fn follow_stub(&mut self, client_id: &Utf8Bytes, msg: &Arc<Message>) {
        // Not followed any more (the client is coming back here: the node it is on has the
        // message already, as this node routes to it by its interest).
        let Some(moved) = self.moved.by_client.get_mut(client_id) else {
            return;
        };
        if !moved.answered {
            if moved.held.len() < HELD_MAX && !moved.held.iter().any(|m| Arc::ptr_eq(m, msg)) {
                moved.held.push(msg.clone());
            }
            return;
        }
        let to = moved.to.clone();
        self.send_to_client(&to, client_id, msg).await;
    }

    /// A message another node sent for session `client_id` only: to its shard here, or after it
    /// when it moved on from here meanwhile.
    pub(super) async fn take_for_client(&mut self, msg: Message, client_id: Utf8Bytes) {
        let to = self
            .moved
            .by_client
            .get(&client_id)
            .filter(|m| m.answered)
            .map(|m| m.to.clone());
        if let Some(held) = self.moved.arriving.get_mut(&client_id) {
            // Sent after it by the node it leaves, before it is installed here.
            if held.len() < HELD_MAX {
                held.push(msg);
            }
            return;
        }
        match to {
            Some(to) => self.send_to_client(&to, &client_id, &msg).await,
            None => self.owe(msg, &[client_id]),
        }
    }

    /// A CONNECT here claims `client_id`: what is sent for it waits until its session is.
    pub(super) fn arriving(&mut self, client_id: Utf8Bytes) {
        self.moved.arriving.entry(client_id).or_default();
    }

    /// The claim of `client_id` is answered (its session, if it moved here, is on its way to its
    /// shard, ahead of this): what came for it meanwhile follows.
    pub(super) fn arrived(&mut self, client_id: &Utf8Bytes) {
        if let Some(held) = self.moved.arriving.remove(client_id) {
            for msg in held {
                self.owe(msg, std::slice::from_ref(client_id));
            }
        }
    }

    /// Client `client_id` connects here (again): what comes for it stays here.
    pub(super) fn came_back(&mut self, client_id: &Utf8Bytes) {
        if !self.moved.by_client.is_empty() {
            self.moved.by_client.remove(client_id);
        }
        if !self.moved.gone.is_empty() {
            self.moved.gone.remove(client_id);
        }
    }

    /// Where session `client_id` went if it moved from here lately, and whether it wants `msg`.
    pub(super) fn gone_to(&self, client_id: &Utf8Bytes, msg: &Message) -> Option<Option<&str>> {
        let (to, filters, _) = self.moved.gone.get(client_id)?;
        Some(crate::topic::matches_any(filters, &msg.topic).then_some(to.as_str()))
    }

    /// Whether any session moved from here lately.
    pub(super) fn some_gone(&self) -> bool {
        !self.moved.gone.is_empty()
    }

    /// Forgets the sessions followed long enough (on the link's 1 s tick).
    pub fn prune_moved(&mut self) {
        let now = Instant::now();
        self.moved.by_client.retain(|_, m| m.until > now);
        self.moved.gone.retain(|_, g| g.2 > now);
    }

    pub(super) async fn send_to_client(&mut self, to: &str, client_id: &str, msg: &Message) {
        self.buf.clear();
        match super::wire::encode_for_client(msg, client_id, &mut self.buf) {
            Ok(()) => {
                let payload = self.buf.split().freeze();
                self.send_copies(msg, vec![to.to_owned()], Some(payload), None)
                    .await;
            }
            Err(e) => tracing::warn!(
                "Cluster: cannot pass a message on {} to {client_id} on {to}: {e}.",
                msg.topic
            ),
        }
    }
}
