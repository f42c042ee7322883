//! What packets do to a shard's state, one file per family of packets; each is an `impl Shard` block
//! that calls into the shard's parts (see `shard/mod.rs`). Synchronous code only: the connection tasks
//! (`connection.rs`) call in with the shard borrowed, between their awaits; nothing here calls back
//! into connection I/O.
//!
//! - `session.rs`: CONNECT and the session's life: attach, takeover, detach, wills, expiry, removal.
//! - `publish.rs`: PUBLISH and its acknowledgements, routing to this shard's sessions and to the
//!   other shards, the retained store, and the slow-subscriber holds (`session::hold`).
//! - `subscribe.rs`: SUBSCRIBE (with its wait for interest acknowledgements) and UNSUBSCRIBE.
//! - `auth.rs`: AUTH on a live connection (MQTT 5.0 re-authentication).
//!
//! This file dispatches a packet to its family.

mod auth;
mod publish;
mod session;
mod subscribe;

pub(super) use publish::{delivery_qos, tally};
pub(super) use session::will_message;
pub(super) use subscribe::is_after;

use bytes::BytesMut;

use super::attached::Attached;
use super::Shard;
use crate::codec::{self, Packet, ProtocolVersion, ReasonCode};
use crate::logging::log_type;
use crate::session::CloseReason;

/// Append a packet the broker built (CONNACK, SUBACK, UNSUBACK, PINGRESP): only [`codec::encode`],
/// within the v5 client's Maximum Packet Size `max` (its Reason String, then its User Properties left
/// out if need be, and nothing written if it still does not fit: [`codec::fit`]).
pub(super) fn encode_into(
    out: &mut BytesMut,
    mut packet: Packet,
    protocol: ProtocolVersion,
    max: Option<usize>,
) {
    if !codec::fit(&mut packet, protocol, max) {
        tracing::debug!(target: log_type::DEBUG,
            "Dropping a {}-byte outgoing packet over the client's Maximum Packet Size",
            codec::encoded_len(&packet, protocol));
        return;
    }
    // Broker-built packets are always within the protocol's limits.
    let _ = codec::encode(&packet, protocol, out);
}

impl Shard {
    /// The `mount_point` of the listener `a` came through, if it has one.
    pub(super) fn mount_point(&self, a: &Attached) -> Option<&str> {
        self.listener_mount_point(usize::from(a.listener))
    }

    /// The `mount_point` of listener `listener`, if it has one.
    fn listener_mount_point(&self, listener: usize) -> Option<&str> {
        self.settings
            .listeners
            .get(listener)?
            .mount_point
            .as_deref()
    }

    /// `Session::mount_len` for a client of listener `listener`.
    pub(in crate::shard) fn mount_len(&self, listener: usize) -> u16 {
        self.listener_mount_point(listener)
            .map_or(0, |m| u16::try_from(m.len()).unwrap_or(u16::MAX))
    }

    /// Handle one packet from an attached client. `Err` closes the connection.
    pub(crate) fn handle_packet(
        &mut self,
        a: &mut Attached,
        packet: Packet,
    ) -> Result<(), CloseReason> {
        let handled = self.dispatch_packet(a, packet);
        // The packets of one read share the kernel's receive time: each next one is a nanosecond
        // later, so that a PUBLISH and a SUBSCRIBE sent together keep their order for the copies
        // of the PUBLISH that other shards or nodes hand back later (`lookback`: a copy received
        // before a subscription is not for it).
        if a.read_at != 0 {
            a.read_at += 1;
        }
        handled
    }

    fn dispatch_packet(&mut self, a: &mut Attached, packet: Packet) -> Result<(), CloseReason> {
        if self.sessions.get(a.slot, a.generation).is_none() {
            return Err(CloseReason::Takeover);
        }
        match packet {
            Packet::Publish(p) => self.client_publish(a, p),
            Packet::PubAck(r) => self.client_puback(a, r),
            Packet::PubRec(r) => self.client_pubrec(a, r),
            Packet::PubComp(r) => self.client_pubcomp(a, r),
            Packet::PubRel(r) => self.client_pubrel(a, r),
            Packet::Subscribe(s) => self.client_subscribe(a, s),
            Packet::Unsubscribe(u) => {
                self.client_unsubscribe(a, u);
                Ok(())
            }
            Packet::PingReq => {
                tracing::debug!(target: log_type::DEBUG, "Received PINGREQ from {}", a.client_id);
                let max = self
                    .sessions
                    .get(a.slot, a.generation)
                    .and_then(|s| s.max_packet_size());
                a.outbox
                    .write(|out| encode_into(out, Packet::PingResp, a.protocol, max));
                Ok(())
            }
            Packet::Disconnect(d) => self.client_disconnect(a, d),
            Packet::Auth(auth) => self.client_auth(a, auth),
            // A second CONNECT [MQTT-3.1.0-2], or a packet only a server may send.
            _ => Err(CloseReason::ProtocolError(ReasonCode::ProtocolError)),
        }
    }
}
