//! The link's routing: mail from the shards out to the interested nodes, messages from other nodes
//! in to the interested shards, and remote interest from the bucket to the shards (docs/CLUSTER.md,
//! "The link: a virtual shard").
//!
//! Owned by the link's task; nothing here waits on a shard. Outbound, one copy of a message goes to
//! each interested node, on its subject `shardmq.<cluster>.node.<node>`, in the order the shards
//! sent them (one NATS connection keeps a subject's order). While NATS is away, messages for other
//! nodes are dropped and counted, never queued against the shards: the node serves its own clients
//! alone until the link is back.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::bucket::BucketEvent;
use super::interest::{Interest, KvChange, ShardChange};
use super::post::Post;
use super::wire;
use crate::router::{Mail, ShardId};
use crate::session::HoldStamp;

/// What the link counted (logged when it stops).
#[derive(Debug, Default, Clone, Copy)]
pub struct RelayCounts {
    /// Copies sent to other nodes.
    pub sent: u64,
    /// Messages from other nodes routed here.
    pub received: u64,
    /// Copies not sent: NATS away, or refused (too large for its `max_payload`).
    pub dropped: u64,
    /// Payloads from NATS that were not a message.
    pub undecodable: u64,
}

pub struct Relay {
    /// The link's mailbox id (`shards`).
    me: ShardId,
    post: Post,
    interest: Interest,
    client: async_nats::Client,
    /// `shardmq.<cluster>.node.`: a node's subject is this and its name.
    node_subject: String,
    kv: mpsc::UnboundedSender<KvChange>,
    buf: BytesMut,
    pub counts: RelayCounts,
    /// Whether the drops of the current outage were logged.
    told_drop: bool,
}

/// The subject on which `node` of `cluster` receives messages.
pub fn node_subject(cluster: &str, node: &str) -> String {
    format!("shardmq.{cluster}.node.{node}")
}

impl Relay {
    pub fn new(
        post: Post,
        interest: Interest,
        client: async_nats::Client,
        cluster: &str,
        kv: mpsc::UnboundedSender<KvChange>,
    ) -> Relay {
        Relay {
            me: post.shards() as ShardId,
            post,
            interest,
            client,
            node_subject: format!("shardmq.{cluster}.node."),
            kv,
            buf: BytesMut::new(),
            counts: RelayCounts::default(),
            told_drop: false,
        }
    }

    pub fn post(&mut self) -> &mut Post {
        &mut self.post
    }

    /// Handle a batch of mail from the shards.
    pub async fn from_shards(&mut self, batch: &mut Vec<Mail>) {
        for mail in batch.drain(..) {
            match mail {
                Mail::Publish(msg, _) => self.forward(&msg).await,
                Mail::InterestAdd { from, filter, .. } => {
                    if let Some(c) = self.interest.local_add(&filter, from) {
                        let _ = self.kv.send(c);
                    }
                }
                Mail::InterestRemove { from, filter } => {
                    if let Some(c) = self.interest.local_remove(&filter, from) {
                        let _ = self.kv.send(c);
                    }
                }
                // The shards' answers to the link's interest: nothing waits for them.
                Mail::InterestAck { .. } => {}
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
            .map(|n| format!("{}{n}", self.node_subject))
            .collect();
        if nodes.is_empty() {
            return;
        }
        if self.client.connection_state() != async_nats::connection::State::Connected {
            self.counts.dropped += nodes.len() as u64;
            if !self.told_drop {
                self.told_drop = true;
                tracing::warn!(
                    "Cluster: NATS is away; messages for other nodes are dropped until it is back."
                );
            }
            return;
        }
        self.told_drop = false;
        self.buf.clear();
        if let Err(e) = wire::encode(msg, &mut self.buf) {
            tracing::warn!("Cluster: cannot send a message on {}: {e}.", msg.topic);
            self.counts.dropped += nodes.len() as u64;
            return;
        }
        let payload = self.buf.split().freeze();
        for subject in nodes {
            match self.client.publish(subject, payload.clone()).await {
                Ok(()) => self.counts.sent += 1,
                Err(e) => {
                    self.counts.dropped += 1;
                    tracing::debug!("Cluster: publish on {} failed: {e}.", msg.topic);
                }
            }
        }
    }

    /// A message from another node: to each shard here with a matching subscription.
    pub fn from_nats(&mut self, payload: &[u8]) {
        let msg = match wire::decode(payload) {
            Ok(msg) => msg,
            Err(e) => {
                self.counts.undecodable += 1;
                tracing::warn!("Cluster: a message from NATS was not one ({e}); dropped.");
                return;
            }
        };
        self.counts.received += 1;
        let shards = self.interest.local_shards_for(&msg.topic);
        if shards.is_empty() {
            return;
        }
        let msg = Arc::new(msg);
        for to in shards.iter() {
            self.post
                .send(to, Mail::Publish(msg.clone(), HoldStamp::default()));
        }
    }

    /// A change read from the interest bucket.
    pub fn from_bucket(&mut self, event: BucketEvent) {
        let changes = match event {
            BucketEvent::Present(keys) => self.interest.retain_remote(&keys),
            BucketEvent::Put { key, filter } => match self.interest.remote_put(&key, filter) {
                Ok(change) => change.into_iter().collect(),
                Err(()) => {
                    tracing::warn!(
                        "Cluster: interest key {key} names no node, or one node too many \
                         (at most {}); ignored.",
                        super::interest::MAX_NODES
                    );
                    Vec::new()
                }
            },
            BucketEvent::Delete { key } => self.interest.remote_delete(&key).into_iter().collect(),
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
    }

    fn tell(&mut self, make: impl FnMut() -> Mail) {
        self.post.tell_shards(make);
    }
}
