//! Retained messages a SUBSCRIBE gets, as fresh as the cluster's (docs/CLUSTER.md, "Retained
//! messages"): a retained message acknowledged on another node before a SUBSCRIBE was sent here
//! is in what the SUBSCRIBE gets.
//!
//! A client's QoS 1/2 retained message is acknowledged once the retained stream has it
//! (`publish_retained`); a SUBSCRIBE here that sends retained messages waits
//! (`Mail::RetainedSync`) until this node's store has applied the stream up to the last sequence
//! it held when the SUBSCRIBE came. One stream query at a time answers every SUBSCRIBE that came
//! before it was sent; those that come meanwhile wait for the next. While NATS is away, or for
//! longer than [`SYNC_LIMIT`], the SUBSCRIBE goes with what the store has.

use std::time::Duration;

use tokio::time::Instant;

use super::{Relay, TaskDone};
use crate::codec::Utf8Bytes;
use crate::router::{Mail, ShardId};

/// The longest a SUBSCRIBE waits for the store to catch up.
const SYNC_LIMIT: Duration = Duration::from_secs(1);

/// A SUBSCRIBE waiting: its shard, the key it is answered with, since when.
struct Waiter {
    shard: ShardId,
    key: Utf8Bytes,
    since: Instant,
}

#[derive(Default)]
pub(super) struct Syncs {
    /// Waiting for the next query of the stream.
    unasked: Vec<Waiter>,
    /// Answered by the query under way.
    asked: Vec<Waiter>,
    /// Waiting for the store to reach a stream sequence.
    until: Vec<(u64, Waiter)>,
    /// The last stream sequence applied to this node's store.
    applied: u64,
}

impl Relay {
    /// A SUBSCRIBE on shard `from` waits for this node's retained store (`Mail::RetainedSync`).
    pub(super) fn sync_retained(&mut self, from: ShardId, key: Utf8Bytes) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if !connected || self.retained.is_none() {
            self.answer_sync(from, key);
            return;
        }
        self.syncs.unasked.push(Waiter {
            shard: from,
            key,
            since: Instant::now(),
        });
        self.ask_stream();
    }

    /// Queries the stream's last sequence for the waiters that have not asked, unless a query is
    /// under way.
    fn ask_stream(&mut self) {
        if !self.syncs.asked.is_empty() || self.syncs.unasked.is_empty() {
            return;
        }
        self.syncs.asked = std::mem::take(&mut self.syncs.unasked);
        let (js, name) = (
            self.js.clone(),
            super::super::retained::stream_name(&self.cluster),
        );
        let done = self.claimed.clone();
        tokio::spawn(async move {
            // One STREAM.INFO request (`get_stream` reads the stream's info).
            let last = async {
                let stream = js.get_stream(&name).await.ok()?;
                Some(stream.cached_info().state.last_sequence)
            };
            let last = tokio::time::timeout(SYNC_LIMIT, last).await.ok().flatten();
            let _ = done.send(TaskDone::RetainedLast(last));
        });
    }

    /// The query under way answered: the stream's last sequence, or nothing (its waiters go).
    pub(super) fn stream_last(&mut self, last: Option<u64>) {
        let asked = std::mem::take(&mut self.syncs.asked);
        match last {
            Some(last) => self
                .syncs
                .until
                .extend(asked.into_iter().map(|w| (last, w))),
            None => {
                for w in asked {
                    self.answer_sync(w.shard, w.key);
                }
            }
        }
        self.release_synced();
    }

    /// This node's store applied the stream's message `seq`.
    pub(super) fn applied_retained(&mut self, seq: u64) {
        self.syncs.applied = self.syncs.applied.max(seq);
        if !self.syncs.until.is_empty() {
            self.release_synced();
        }
    }

    /// Answers the waiters whose sequence the store reached, and those that waited too long
    /// (on the link's tick too: a query that never answers holds nobody).
    pub fn release_synced(&mut self) {
        let (applied, now) = (self.syncs.applied, Instant::now());
        let late = |w: &Waiter| now.duration_since(w.since) >= SYNC_LIMIT;
        let (go, stay): (Vec<_>, Vec<_>) = std::mem::take(&mut self.syncs.until)
            .into_iter()
            .partition(|(seq, w)| *seq <= applied || late(w));
        self.syncs.until = stay;
        let mut gone: Vec<Waiter> = go.into_iter().map(|(_, w)| w).collect();
        if self
            .syncs
            .asked
            .iter()
            .any(|w| now.duration_since(w.since) >= 2 * SYNC_LIMIT)
        {
            gone.append(&mut self.syncs.asked);
        }
        let (unasked_late, unasked): (Vec<_>, Vec<_>) = std::mem::take(&mut self.syncs.unasked)
            .into_iter()
            .partition(late);
        self.syncs.unasked = unasked;
        gone.extend(unasked_late);
        for w in gone {
            self.answer_sync(w.shard, w.key);
        }
        self.ask_stream();
    }

    fn answer_sync(&mut self, shard: ShardId, key: Utf8Bytes) {
        let from = self.me;
        self.post
            .send(shard, Mail::InterestAck { filter: key, from });
    }
}
