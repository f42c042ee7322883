//! What the cluster keeps for the day this node dies, and what it brings of dead nodes: wills
//! (`cluster::wills`) and persistent sessions (`cluster::state`), each in its bucket, and the
//! messages a dead node's queue held for the sessions adopted here.

use std::sync::Arc;

use ahash::AHashSet;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::Relay;
use crate::cluster::bucket::KeyWrite;
use crate::cluster::state::Adoption;
use crate::cluster::wire;
use crate::codec::Utf8Bytes;
use crate::message::Message;
use crate::router::{Mail, ShardId};

/// This node's keys in one bucket: the writer's channel, and the keys it was given a value for.
pub(super) struct Kept {
    writer: mpsc::UnboundedSender<KeyWrite>,
    keys: AHashSet<String>,
}

impl Kept {
    pub(super) fn new(writer: mpsc::UnboundedSender<KeyWrite>) -> Kept {
        Kept {
            writer,
            keys: AHashSet::new(),
        }
    }

    /// Puts `value` in `key`, or deletes it (None).
    fn write(&mut self, key: String, value: Option<Bytes>) {
        // The shards say "none" often (every disconnect): a key never put needs no delete.
        if value.is_none() && !self.keys.remove(&key) {
            return;
        }
        if value.is_some() {
            self.keys.insert(key.clone());
        }
        let _ = self.writer.send(KeyWrite { key, value });
    }
}

impl Relay {
    /// A shard's client's will, as the node would owe it if it died now (None: none any more).
    pub(super) fn keep_will(&mut self, client_id: &str, will: Option<(Arc<Message>, u32)>) {
        let key = super::super::interest::key_of(&self.node, client_id);
        let value = will.and_then(|(msg, delay)| {
            super::super::wills::encode(client_id, delay, &msg)
                .map_err(|e| {
                    tracing::warn!(
                        "Cluster: the will of {client_id} is not kept in the cluster ({e})."
                    )
                })
                .ok()
        });
        self.wills.write(key, value);
    }

    /// A shard's persistent session, as another node would resume it if this one died now
    /// (None: it ended).
    pub(super) fn keep_state(&mut self, client_id: &str, image: Option<Bytes>) {
        let key = super::super::interest::key_of(&self.node, client_id);
        let value = image.and_then(|image| {
            super::super::state::encode(client_id, &image)
                .map_err(|e| {
                    tracing::warn!(
                        "Cluster: the session of {client_id} is not kept in the cluster ({e})."
                    )
                })
                .ok()
        });
        self.states.write(key, value);
    }

    /// `msg`, from a dead node's queue, to the home shards of the adopted sessions `clients`.
    pub(super) fn owe(&mut self, msg: Message, clients: &[Utf8Bytes]) {
        let shards = self.post.shards();
        let msg = Arc::new(msg);
        let mut by_shard: Vec<Vec<Utf8Bytes>> = vec![Vec::new(); shards];
        for id in clients {
            by_shard[usize::from(crate::shard::home_of(id.as_bytes(), shards))].push(id.clone());
        }
        for (shard, clients) in by_shard.into_iter().enumerate() {
            if !clients.is_empty() {
                let (clients, msg) = (clients.into(), msg.clone());
                self.post
                    .send(shard as ShardId, Mail::Owed { clients, msg });
            }
        }
    }

    /// A dead node's will this node reaped: routed by the client id's home shard here.
    pub fn route_will(&mut self, client_id: &str, will: Message) {
        if self.post.shards() == 0 {
            return;
        }
        let shard = crate::shard::home_of(client_id.as_bytes(), self.post.shards());
        self.post.send(shard, Mail::Route(Arc::new(will)));
    }

    /// What the adoption of a dead node's sessions brings (`cluster::state`): a session, installed
    /// by its client id's home shard here; or a message from the dead node's queue, for the
    /// adopted sessions (through their home shards), or for a shared subscription's group.
    pub async fn take_adoption(&mut self, adoption: Adoption) {
        let shards = self.post.shards();
        if shards == 0 {
            return;
        }
        let (m, to) = match adoption {
            Adoption::Session(client_id, image) => {
                let shard = crate::shard::home_of(client_id.as_bytes(), shards);
                // Its subscriptions route here from now: a message taken from the queue before
                // the shard's own word (`Mail::InterestAdd`, after it installed the session)
                // reaches the shard after the session, as the mailbox keeps order.
                for filter in super::super::state::filters_of(&image) {
                    if let Some(c) = self.interest.local_add(&filter, shard) {
                        let _ = self.kv.send(c);
                    }
                }
                return self.post.send(shard, Mail::Adopt(image));
            }
            Adoption::OwnBack => {
                self.own_back = true;
                return;
            }
            Adoption::Owed(m, to) => (m, to),
        };
        for frame in wire::frames(&m.payload) {
            if let Some(msg) = self
                .take_addressed(frame.and_then(wire::decode_frame))
                .await
            {
                for p in to.pass_on.iter().filter(|p| p.wants(&msg)) {
                    if p.node == self.node {
                        self.owe(msg.clone(), std::slice::from_ref(&p.client_id));
                    } else {
                        self.send_to_client(&p.node, &p.client_id, &msg).await;
                    }
                }
                // An adopted session whose client came back on another node since: there.
                if self.some_gone() && !to.clients.is_empty() {
                    let mut here = Vec::with_capacity(to.clients.len());
                    let mut there = Vec::new();
                    for id in to.clients.iter() {
                        match self.gone_to(id, &msg) {
                            None => here.push(id.clone()),
                            Some(Some(node)) => there.push((node.to_owned(), id.clone())),
                            Some(None) => {}
                        }
                    }
                    for (node, id) in there {
                        self.send_to_client(&node, &id, &msg).await;
                    }
                    if !here.is_empty() {
                        self.owe(msg, &here);
                    }
                } else if !to.clients.is_empty() {
                    self.owe(msg, &to.clients);
                }
            }
        }
        if let Err(e) = m.ack().await {
            tracing::debug!("Cluster: cannot acknowledge a dead node's queued message: {e}.");
        }
    }
}
