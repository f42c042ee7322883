//! One PUBLISH copy on its way to the client, decided as it is written: whether it may still go
//! (its Message Expiry Interval not passed, within the client's Maximum Packet Size), what it carries
//! of its own ([`PerCopy`]: the connection's topic alias, the interval left, the subscription
//! identifiers), then the write through the shared [`Framed`].
//!
//! The checks come before a packet id is given out or the ledger hears of the send, so a copy that
//! cannot go leaves nothing behind; the alias is assigned only once the copy is sure to be written
//! (a Define the client never saw would make its later Reuse unknown to it).

use std::time::Instant;

use super::alias::AliasUse;
use super::frame::PerCopy;
use super::{Framed, Outbox, Session};
use crate::codec::{DeliveryProperties, ProtocolVersion, PublishParts, QoS};
use crate::logging::log_type;
use crate::message::{Message, Remaining};

/// The Subscription Identifiers a queued or in-flight copy carries: boxed and only when there are
/// any, so that a queue entry without them grows by one pointer.
pub(super) type SubIds = Option<Box<[u32]>>;

/// `ids` as a queue entry keeps them.
pub(super) fn keep_ids(ids: &[u32]) -> SubIds {
    (!ids.is_empty()).then(|| ids.into())
}

/// The identifiers kept by [`keep_ids`].
pub(super) fn ids_of(ids: &SubIds) -> &[u32] {
    ids.as_deref().unwrap_or(&[])
}

/// Why a copy does not go to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unsendable {
    /// Over the client's Maximum Packet Size [MQTT-3.1.2-25].
    TooLarge,
    /// Its Message Expiry Interval passed [MQTT-3.3.2-5].
    Expired,
}

/// A copy that may go: the Message Expiry Interval it carries instead of the message's own.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cleared {
    expiry: Option<u32>,
}

/// A copy over the client's Maximum Packet Size is dropped: logged as Mosquitto 2.0 logs it.
#[cold]
#[inline(never)]
fn log_too_large(client_id: &str, len: usize) {
    tracing::info!(target: log_type::NOTICE,
        "Dropping too large outgoing PUBLISH for {client_id} ({len} bytes)");
}

/// What is left of `msg`'s expiry interval now (no clock read for a message that cannot expire).
pub(super) fn remaining_now(msg: &Message) -> Remaining {
    if msg.can_expire() {
        msg.remaining(Instant::now())
    } else {
        Remaining::Never
    }
}

impl Session {
    /// Whether a copy of `msg` at `qos` with `ids` may go to the connected client now.
    pub(super) fn clear(
        &self,
        msg: &Message,
        qos: QoS,
        ids: &[u32],
    ) -> Result<Cleared, Unsendable> {
        let remaining = remaining_now(msg);
        if remaining == Remaining::Expired {
            return Err(Unsendable::Expired);
        }
        if self.refuse_too_large(msg, qos, ids, true) {
            return Err(Unsendable::TooLarge);
        }
        Ok(Cleared {
            expiry: remaining.replacement(),
        })
    }

    /// Whether a PUBLISH of `msg` at `qos` with `ids` would exceed the client's Maximum Packet Size.
    /// `with_alias`: as it would go out now on this connection, with the topic alias it would carry
    /// (else as without aliases: for a copy to be queued, whose alias is decided when it is sent).
    pub(super) fn copy_too_large(
        &self,
        msg: &Message,
        qos: QoS,
        ids: &[u32],
        with_alias: bool,
    ) -> bool {
        self.oversize(msg, qos, ids, with_alias).is_some()
    }

    /// [`Self::copy_too_large`], logged as Mosquitto logs it when it is.
    pub(super) fn refuse_too_large(
        &self,
        msg: &Message,
        qos: QoS,
        ids: &[u32],
        with_alias: bool,
    ) -> bool {
        match self.oversize(msg, qos, ids, with_alias) {
            Some(len) => {
                log_too_large(&self.client_id, len);
                true
            }
            None => false,
        }
    }

    /// The size of that PUBLISH when it is over the client's Maximum Packet Size.
    fn oversize(&self, msg: &Message, qos: QoS, ids: &[u32], with_alias: bool) -> Option<usize> {
        let max = self.max_packet_size()?;
        // `Some(None)`: the connection uses aliases and this copy would define one.
        let alias = self
            .aliases
            .as_ref()
            .filter(|_| with_alias)
            .map(|a| a.peek(&msg.topic));
        let topic = msg.topic.as_bytes();
        let topic = match alias {
            Some(Some(_)) => &[][..],
            _ => &topic[usize::from(self.mount_len).min(topic.len())..],
        };
        let parts = PublishParts {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: 0,
            properties: msg.properties(),
            payload_len: msg.payload.len(),
            delivery: DeliveryProperties {
                // Same size as the message's own interval, which a replacement takes the place of.
                message_expiry_interval: None,
                topic_alias: alias.map(|a| a.unwrap_or(1)),
                subscription_identifiers: ids,
            },
        };
        let len = parts.wire_len(self.protocol);
        (len > max).then_some(len)
    }

    /// Write a cleared copy of `msg` to `conn` (or the staging outbox).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_copy(
        &mut self,
        conn: &Outbox,
        msg: &Framed,
        qos: QoS,
        packet_id: u16,
        dup: bool,
        retain: bool,
        ids: &[u32],
        cleared: Cleared,
    ) {
        let alias: Option<AliasUse> = self.aliases.as_mut().map(|a| a.assign(&msg.topic));
        let v5 = self.protocol == ProtocolVersion::V5;
        let per = if v5 {
            PerCopy {
                alias,
                expiry: cleared.expiry,
                ids,
            }
        } else {
            PerCopy::default()
        };
        msg.write(
            self.sink(conn),
            self.protocol,
            self.mount_len,
            qos,
            packet_id,
            dup,
            retain,
            per,
        );
    }

    /// A queued or in-flight copy was dropped: counted until the shard asks.
    pub(super) fn note_unsendable(&mut self, why: Unsendable) {
        match why {
            Unsendable::Expired => self.expired = self.expired.saturating_add(1),
            Unsendable::TooLarge => self.too_large = self.too_large.saturating_add(1),
        }
    }

    /// Queued or in-flight copies dropped because their expiry interval passed, since the last call
    /// (for `$SYS`).
    pub fn take_expired(&mut self) -> u64 {
        u64::from(std::mem::take(&mut self.expired))
    }

    /// Queued or in-flight copies dropped as over the client's Maximum Packet Size (a new connection
    /// allowing less), since the last call (for `$SYS`: dropped, as Mosquitto counts them).
    pub fn take_too_large(&mut self) -> u64 {
        u64::from(std::mem::take(&mut self.too_large))
    }
}
