//! Client ids across the nodes, on the relay (docs/CLUSTER.md, "Sessions across nodes"; the NATS
//! part is `cluster::sessions`, the shards' part `shard::claims`): this node's CONNECTs claim their
//! client id, other nodes' claims evict a client here, and a session that ends here for good gives
//! its client id back.

use std::time::Duration;

use super::{ClaimDone, Relay, TaskDone};
use crate::cluster::sessions;
use crate::codec::Utf8Bytes;
use crate::router::{Mail, ShardId};

/// An eviction request waiting for the shard's answer: where to answer, and whose session.
pub(super) struct Eviction {
    pub(super) reply: async_nats::Subject,
    pub(super) client_id: Utf8Bytes,
}

/// Releases of client ids under way (each in a task of its own), and the answers to eviction
/// requests for those client ids, which wait until they are done: the claimer writes the key
/// again once answered (`sessions::claim`), so this node's delete cannot land after its claim.
/// (nats-server before 2.9.21 may store two writes that expected the same revision, when sent
/// at once: nats-server#4320; Debian bookworm has 2.9.10.)
#[derive(Default)]
pub(super) struct Releases {
    under_way: ahash::AHashMap<Utf8Bytes, u32>,
    answers: ahash::AHashMap<Utf8Bytes, Vec<(async_nats::Subject, bytes::Bytes)>>,
}

impl Relay {
    /// A CONNECT on shard `from` claims `client_id` in the cluster (`sessions::claim`), in a task
    /// of its own: other CONNECTs and all routing go on meanwhile.
    pub(super) fn claim(
        &mut self,
        from: ShardId,
        ticket: u64,
        client_id: Utf8Bytes,
        clean_start: bool,
    ) {
        // Back here: no longer followed elsewhere (a session moving round the nodes would have
        // its messages go round after it).
        self.came_back(&client_id);
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        self.ever_connected |= connected;
        if !connected && self.ever_connected {
            // NATS lost: the node serves the client alone. (Before the link's first connection,
            // a node that just started, the claim waits for it, within its time.)
            self.post.send(
                from,
                Mail::Claimed {
                    ticket,
                    session: None,
                    lately: None,
                },
            );
            return;
        }
        let (client, js, store) = (self.client.clone(), self.js.clone(), self.sessions.clone());
        let (cluster, node, done) = (
            self.cluster.clone(),
            self.node.clone(),
            self.claimed.clone(),
        );
        let (mut ready, until) = (self.ready.clone(), self.ready_wait_until);
        self.arriving(client_id.clone());
        tokio::spawn(async move {
            let claim = async {
                // A node that just started: its clients' CONNACKs wait until it routes by every
                // other node's interest and reads its queue, so that what they publish reaches
                // every subscription there already; within the claim's time, and only for a
                // while after its start (NATS may be away).
                if !*ready.borrow() {
                    let _ = tokio::time::timeout_at(until, ready.wait_for(|r| *r)).await;
                }
                while client.connection_state() != async_nats::connection::State::Connected {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                sessions::claim(
                    &client,
                    &js,
                    &store,
                    &cluster,
                    &node,
                    &client_id,
                    clean_start,
                )
                .await
            };
            let session = match tokio::time::timeout(sessions::CLAIM_TIMEOUT, claim).await {
                Ok(Ok(session)) => session,
                Ok(Err(e)) => {
                    tracing::warn!(
                        "Cluster: cannot claim client id {client_id} in the cluster ({e}); \
                         it connects here with the session this node has."
                    );
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        "Cluster: claiming client id {client_id} took over {:?}; it connects \
                         here with the session this node has.",
                        sessions::CLAIM_TIMEOUT
                    );
                    None
                }
            };
            let _ = done.send(TaskDone::Claimed(ClaimDone {
                shard: from,
                ticket,
                client_id,
                session,
            }));
        });
    }

    /// A session ended here for good: the cluster forgets this node owns its client id, in a task
    /// of its own (nothing waits for it; while NATS is away the key stays, and the next claim of
    /// the client id takes it over as any other).
    pub(super) fn unclaim(&mut self, client_id: Utf8Bytes) {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        let (js, store) = (self.js.clone(), self.sessions.clone());
        let (cluster, node) = (self.cluster.clone(), self.node.clone());
        *self
            .releases
            .under_way
            .entry(client_id.clone())
            .or_default() += 1;
        let done = self.claimed.clone();
        tokio::spawn(async move {
            let release = sessions::release(&js, &store, &cluster, &node, &client_id);
            match tokio::time::timeout(sessions::CLAIM_TIMEOUT, release).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("Cluster: cannot release {client_id}: {e}."),
                Err(_) => tracing::debug!("Cluster: releasing {client_id} took too long."),
            }
            let _ = done.send(TaskDone::Released(client_id));
        });
    }

    /// A claim, release or retained stream query task finished.
    pub async fn task_done(&mut self, done: TaskDone) {
        match done {
            TaskDone::Claimed(done) => self.claim_done(done),
            TaskDone::RetainedLast(last) => self.stream_last(last),
            TaskDone::Released(client_id) => {
                let Some(n) = self.releases.under_way.get_mut(&client_id) else {
                    return;
                };
                *n -= 1;
                if *n > 0 {
                    return;
                }
                self.releases.under_way.remove(&client_id);
                for (reply, payload) in self.releases.answers.remove(&client_id).unwrap_or_default()
                {
                    self.publish_answer(reply, payload).await;
                }
            }
        }
    }

    /// The shard's answer to an eviction request: sent, once this node's releases of the client
    /// id are done.
    pub(super) async fn answer_eviction(&mut self, e: Eviction, payload: bytes::Bytes) {
        if self.releases.under_way.contains_key(&e.client_id) {
            let waiting = self.releases.answers.entry(e.client_id).or_default();
            waiting.push((e.reply, payload));
            return;
        }
        self.publish_answer(e.reply, payload).await;
    }

    async fn publish_answer(&mut self, reply: async_nats::Subject, payload: bytes::Bytes) {
        if let Err(e) = self.client.publish(reply, payload).await {
            tracing::debug!("Cluster: cannot answer an eviction: {e}.");
        }
    }

    /// A claim finished: the CONNECT may attach.
    fn claim_done(&mut self, done: ClaimDone) {
        let (session, lately) = match done.session {
            Some(m) => (Some(m.snapshot), m.lately),
            None => (None, None),
        };
        self.post.send(
            done.shard,
            Mail::Claimed {
                ticket: done.ticket,
                session,
                lately,
            },
        );
        self.arrived(&done.client_id);
    }

    /// Another node claimed a client id this node may have: its home shard closes it and answers.
    pub async fn take_eviction(&mut self, m: async_nats::Message) {
        let Some(reply) = m.reply else { return };
        let Some((client_id, keep, to)) = sessions::decode_request(&m.payload) else {
            tracing::warn!("Cluster: an eviction request that is not one; ignored.");
            return;
        };
        if self.post.shards() == 0 {
            let _ = self.client.publish(reply, bytes::Bytes::new()).await;
            return;
        }
        self.next_eviction += 1;
        let ticket = self.next_eviction;
        let client_id = Utf8Bytes::from(client_id);
        if keep {
            // What reaches this node for it from now on goes after it.
            self.moving(client_id.clone(), to);
        }
        let home = crate::shard::home_of(client_id.as_bytes(), self.post.shards());
        self.evictions.insert(
            ticket,
            Eviction {
                reply,
                client_id: client_id.clone(),
            },
        );
        self.post.send(
            home,
            Mail::Evict {
                ticket,
                client_id,
                keep,
            },
        );
    }
}
