//! A session's outbound QoS 1/2 flows as the client acknowledges them: PUBACK, PUBREC (with or
//! without an error), PUBCOMP; each ends or advances a delivery of the in-flight window and lets the
//! queue move up.

use std::time::Instant;

use super::{Ledger, Limits, Session};
use crate::codec::{self, ProtocolVersion, PubResponseKind, QoS, ReasonCode};

impl Session {
    /// PUBACK from the client. Returns false if the id was unknown (ignored, as Mosquitto does).
    pub fn on_puback(&mut self, packet_id: u16, limits: &Limits, ledger: &mut dyn Ledger) -> bool {
        let pos = self
            .queues
            .inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.qos == QoS::AtLeastOnce);
        self.acknowledged(pos, limits, ledger)
    }

    /// The delivery at `pos` of the window ended.
    fn finish(&mut self, pos: usize, ledger: &mut dyn Ledger) {
        if let Some(i) = self.queues.inflight.remove(pos) {
            if i.message_id != 0 {
                ledger.done(&self.client_id, i.packet_id);
            }
        }
    }

    /// PUBREC from the client: answer PUBREL (also for an unknown id, so the client can finish).
    pub fn on_pubrec(&mut self, packet_id: u16, ledger: &mut dyn Ledger) -> bool {
        let known = match self
            .queues
            .inflight
            .iter_mut()
            .find(|i| i.packet_id == packet_id && i.qos == QoS::ExactlyOnce)
        {
            Some(i) => {
                let report = !i.released && i.message_id != 0;
                i.released = true;
                self.last_progress = Some(Instant::now());
                if report {
                    ledger.released(&self.client_id, packet_id);
                    // Once the client has the PUBREL it may forget the id: the release must be
                    // durable first.
                    self.stage(ledger);
                }
                true
            }
            None => false,
        };
        if let Some(conn) = &self.conn {
            let conn = self.sink(conn);
            let reason = if known || self.protocol != ProtocolVersion::V5 {
                ReasonCode::Success
            } else {
                ReasonCode::PacketIdentifierNotFound
            };
            conn.write(|out| {
                codec::encode_pub_response(
                    PubResponseKind::PubRel,
                    packet_id,
                    reason,
                    self.protocol,
                    out,
                )
            });
        }
        known
    }

    /// v5 PUBREC with an error reason: the client refused the message and the QoS 2 flow ends there.
    pub fn on_pubrec_error(
        &mut self,
        packet_id: u16,
        limits: &Limits,
        ledger: &mut dyn Ledger,
    ) -> bool {
        let Some(pos) = self
            .queues
            .inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.qos == QoS::ExactlyOnce && !i.released)
        else {
            return false;
        };
        self.finish(pos, ledger);
        self.pump(limits, ledger);
        true
    }

    /// PUBCOMP from the client.
    pub fn on_pubcomp(&mut self, packet_id: u16, limits: &Limits, ledger: &mut dyn Ledger) -> bool {
        let pos = self
            .queues
            .inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.released);
        self.acknowledged(pos, limits, ledger)
    }

    /// The delivery at `pos` in the window (None: no such id) is complete: it leaves the window and
    /// the queue moves up. Returns whether there was one.
    fn acknowledged(
        &mut self,
        pos: Option<usize>,
        limits: &Limits,
        ledger: &mut dyn Ledger,
    ) -> bool {
        let Some(pos) = pos else {
            return false;
        };
        self.finish(pos, ledger);
        self.progressed();
        self.pump(limits, ledger);
        true
    }
}
