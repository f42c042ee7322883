//! What packets do to a shard's state, one file per family of packets; each is an `impl Shard` block
//! that calls into the shard's parts (see `shard/mod.rs`). Synchronous code only: the connection tasks
//! (`connection.rs`) call in with the shard borrowed, between their awaits; nothing here calls back
//! into connection I/O.
//!
//! - `session.rs`: CONNECT and the session's life: attach, takeover, detach, wills, expiry, removal.
//! - `publish.rs`: PUBLISH and its acknowledgements, routing to this shard's sessions and to the
//!   other shards, the retained store, and the slow-subscriber holds (`session::hold`).
//! - `subscribe.rs`: SUBSCRIBE (with its wait for interest acknowledgements) and UNSUBSCRIBE.
//!
//! This file dispatches a packet to its family.

mod publish;
mod session;
mod subscribe;

use bytes::BytesMut;

use super::attached::Attached;
use super::Shard;
use crate::codec::{self, Packet, ProtocolVersion, PubResponseKind, ReasonCode};
use crate::logging::log_type;
use crate::session::CloseReason;

/// Append a packet the broker built (CONNACK, SUBACK, UNSUBACK, PINGRESP): only [`codec::encode`].
pub(super) fn encode_into(out: &mut BytesMut, packet: &Packet, protocol: ProtocolVersion) {
    // Broker-built packets are always within the protocol's limits.
    let _ = codec::encode(packet, protocol, out);
}

impl Shard {
    /// Handle one packet from an attached client. `Err` closes the connection.
    pub(crate) fn handle_packet(
        &mut self,
        a: &mut Attached,
        packet: Packet,
    ) -> Result<(), CloseReason> {
        if self.sessions.get(a.slot, a.generation).is_none() {
            return Err(CloseReason::Takeover);
        }
        match packet {
            Packet::Publish(p) => self.client_publish(a, p),
            Packet::PubAck(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBACK from {} (Mid: {}, RC:{})",
                    a.client_id, r.packet_id, r.reason as u8);
                let limits = self.settings.limits;
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked above");
                let before = s.pending_len().1;
                s.on_puback(r.packet_id, &limits);
                let sent = before.saturating_sub(s.pending_len().1);
                self.stats.messages_sent += sent as u64;
                Ok(())
            }
            Packet::PubRec(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBREC from {} (Mid: {})", a.client_id, r.packet_id);
                let limits = self.settings.limits;
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked above");
                if r.reason.is_error() {
                    // v5: the receiver refused the message; the flow ends here ([MQTT-4.3.3]).
                    s.on_pubrec_error(r.packet_id, &limits);
                } else {
                    s.on_pubrec(r.packet_id);
                }
                Ok(())
            }
            Packet::PubComp(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBCOMP from {} (Mid: {})", a.client_id, r.packet_id);
                let limits = self.settings.limits;
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked above");
                let before = s.pending_len().1;
                s.on_pubcomp(r.packet_id, &limits);
                let sent = before.saturating_sub(s.pending_len().1);
                self.stats.messages_sent += sent as u64;
                Ok(())
            }
            Packet::PubRel(r) => {
                tracing::debug!(target: log_type::DEBUG, "Received PUBREL from {} (Mid: {})", a.client_id, r.packet_id);
                let s = self
                    .sessions
                    .get_mut(a.slot, a.generation)
                    .expect("checked above");
                let known = s.inbound_qos2.remove(&r.packet_id);
                let reason = if known || a.protocol != ProtocolVersion::V5 {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                a.outbox.write(|out| {
                    codec::encode_pub_response(
                        PubResponseKind::PubComp,
                        r.packet_id,
                        reason,
                        a.protocol,
                        out,
                    )
                });
                Ok(())
            }
            Packet::Subscribe(s) => {
                self.client_subscribe(a, s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.client_unsubscribe(a, u);
                Ok(())
            }
            Packet::PingReq => {
                tracing::debug!(target: log_type::DEBUG, "Received PINGREQ from {}", a.client_id);
                a.outbox
                    .write(|out| encode_into(out, &Packet::PingResp, a.protocol));
                Ok(())
            }
            Packet::Disconnect(d) => {
                tracing::debug!(target: log_type::DEBUG, "Received DISCONNECT from {}", a.client_id);
                if a.protocol == ProtocolVersion::V5 {
                    if d.reason == ReasonCode::DisconnectWithWillMessage {
                        a.will_on_disconnect = true;
                    }
                    // [MQTT-3.14.2-2]: a session expiry of 0 at CONNECT cannot become non-zero now.
                    if let Some(expiry) = d.properties.session_expiry_interval {
                        let s = self
                            .sessions
                            .get_mut(a.slot, a.generation)
                            .expect("checked above");
                        if s.clean && expiry > 0 {
                            return Err(CloseReason::ProtocolError(ReasonCode::ProtocolError));
                        }
                        if expiry == 0 {
                            s.clean = true;
                        }
                        s.expiry_interval = expiry;
                    }
                }
                Err(CloseReason::ClientDisconnect)
            }
            // A second CONNECT [MQTT-3.1.0-2], AUTH without an authentication method at CONNECT, or a
            // packet only a server may send.
            _ => Err(CloseReason::ProtocolError(ReasonCode::ProtocolError)),
        }
    }
}
