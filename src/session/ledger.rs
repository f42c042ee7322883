//! What a durable session tells its shard's journal (`shard::journal`) about the QoS 1/2 messages it
//! owes, so that the journal can append the records that recreate them after a restart
//! (`crate::persist`). A trait, so that the session stays free of files and shards: the shard passes
//! its journal, tests and non-durable callers pass [`NoLedger`].
//!
//! Only sessions with [`super::Session::durable`] set call it, and only for QoS 1/2 deliveries: QoS 0
//! is not kept across a restart.
//!
//! Exactly once across a crash (QoS 2) needs more than records: the client must never see a packet
//! id (or a PUBREL) that a restarted broker would not know. So a durable session's QoS 2 PUBLISH, and
//! its PUBREL, are written to a staging outbox until the records naming them are durable
//! ([`Ledger::stage`]), and everything written to the session after them waits behind them, in
//! order. QoS 1 needs no such wait: a message re-sent after a crash is a duplicate QoS 1 allows.

use std::sync::Arc;

use crate::codec::{QoS, Utf8Bytes};
use crate::message::Message;

pub trait Ledger {
    /// `msg` is now owed to `client_id` at `qos` with `retain` as its flag (queued or sent at once).
    /// Returns the id that names it in the later calls.
    fn owed(&mut self, client_id: &Utf8Bytes, msg: &Arc<Message>, qos: QoS, retain: bool) -> u64;
    /// Message `message_id` went out with `packet_id`.
    fn sent(&mut self, client_id: &Utf8Bytes, message_id: u64, packet_id: u16);
    /// PUBREC for `packet_id`: the PUBREL is owed now, not the message.
    fn released(&mut self, client_id: &Utf8Bytes, packet_id: u16);
    /// The delivery of `packet_id` ended (PUBACK, PUBCOMP, a refusing PUBREC, or dropped in flight).
    fn done(&mut self, client_id: &Utf8Bytes, packet_id: u16);
    /// Queued message `message_id` was dropped unsent.
    fn discarded(&mut self, client_id: &Utf8Bytes, message_id: u64);
    /// Whether what the session writes next must wait until what it reported so far is durable
    /// (QoS 2 under `persistence_sync always`): the position to wait for, and the ledger will call
    /// `Session::release_staged` once it is reached. None: write at once.
    fn stage(&mut self, client_id: &Utf8Bytes) -> Option<u64>;
}

/// For sessions that keep nothing (and tests).
pub struct NoLedger;

impl Ledger for NoLedger {
    fn owed(&mut self, _: &Utf8Bytes, _: &Arc<Message>, _: QoS, _: bool) -> u64 {
        0
    }
    fn sent(&mut self, _: &Utf8Bytes, _: u64, _: u16) {}
    fn released(&mut self, _: &Utf8Bytes, _: u16) {}
    fn done(&mut self, _: &Utf8Bytes, _: u16) {}
    fn discarded(&mut self, _: &Utf8Bytes, _: u64) {}
    fn stage(&mut self, _: &Utf8Bytes) -> Option<u64> {
        None
    }
}
