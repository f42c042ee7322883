//! Publisher, subscriber and idle clients.
//!
//! Payload layout (big-endian): publisher id (u32), sequence number (u32), send timestamp (u64, ns since
//! the run's epoch), then zero padding up to the payload size. For fixed-rate runs the timestamp is the
//! message's intended send time, so a publisher that falls behind (broker back-pressure, in-flight window
//! full) shows up as latency instead of silently sending less (no coordinated omission).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use shardmq::codec::{self, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS};

use crate::conn::{Role, Want};
use crate::shared::{Phase, Shared, Timeline};
use crate::track::{Seen, SubTrack};

/// Smallest payload: id + sequence + timestamp.
pub const PAYLOAD_HEADER: usize = 16;
/// A publisher stops producing when this much is waiting to be written.
const HIGH_WATER: usize = 64 * 1024;

fn encode_ack(packet: Packet, version: ProtocolVersion, wbuf: &mut BytesMut) -> Result<(), String> {
    codec::encode(&packet, version, wbuf).map_err(|e| format!("cannot encode an ack: {e}"))
}

/// A receiver's side of a QoS 1/2 delivery: PUBACK or PUBREC for a PUBLISH, PUBCOMP for a PUBREL.
/// Other packets are not acknowledged here.
pub fn acknowledge_delivery(
    packet: &Packet,
    version: ProtocolVersion,
    wbuf: &mut BytesMut,
) -> Result<(), String> {
    let ack = match packet {
        Packet::Publish(p) => match p.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => Packet::PubAck(PubResponse::new(p.packet_id)),
            QoS::ExactlyOnce => Packet::PubRec(PubResponse::new(p.packet_id)),
        },
        Packet::PubRel(rel) => Packet::PubComp(PubResponse::new(rel.packet_id)),
        _ => return Ok(()),
    };
    encode_ack(ack, version, wbuf)
}

/// Encoded PUBLISH header (fixed header, topic, packet id, v5 properties) of every message of a
/// publisher, and where its packet id sits.
pub struct PublishTemplate {
    pub header: Vec<u8>,
    pub packet_id_at: Option<usize>,
}

impl PublishTemplate {
    pub fn new(
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: usize,
        version: ProtocolVersion,
    ) -> PublishTemplate {
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 0xFFFF },
            properties: Properties::default(),
            payload: Bytes::from(vec![0u8; payload]),
        };
        let mut header = BytesMut::new();
        codec::encode_publish_header(&publish, version, &mut header)
            .expect("a loadgen PUBLISH is encodable");
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| {
            // The packet id follows the topic; v5 then has the properties' length (one 0 byte).
            header.len() - 2 - usize::from(version == ProtocolVersion::V5)
        });
        if let Some(at) = packet_id_at {
            debug_assert_eq!(&header[at..at + 2], &[0xFF, 0xFF]);
        }
        PublishTemplate {
            header: header.to_vec(),
            packet_id_at,
        }
    }
}

const FREE: u8 = 0;
/// Waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
const AWAIT_ACK: u8 = 1;
/// Waiting for PUBCOMP (QoS 2).
const AWAIT_COMP: u8 = 2;

pub struct Publisher {
    shared: Arc<Shared>,
    id: u32,
    seq: u32,
    qos: QoS,
    version: ProtocolVersion,
    rate: u64,
    /// Offset of this publisher's schedule (staggers fixed-rate publishers over one interval).
    offset_ns: u64,
    template: PublishTemplate,
    padding: Vec<u8>,
    inflight: usize,
    max_inflight: usize,
    /// By packet id (QoS 1/2 only).
    packet_ids: Vec<u8>,
    timeline: Option<Timeline>,
    acked: u64,
    rejected: u64,
    /// Messages published so far.
    published: u64,
    /// Deliveries given up on by the end-to-end window (see `ahead_of_receipts`).
    written_off: u64,
    /// Since when the window has held this publisher, and the receipts seen then.
    blocked: Option<(u64, u64)>,
}

/// How soon a max-rate publisher held by its end-to-end window looks again.
const WINDOW_RECHECK_NS: u64 = 200_000;
/// How long receipts may stand still, with the window full, before the outstanding messages are
/// taken as dropped by the broker.
const WINDOW_STALL_NS: u64 = 500_000_000;

impl Publisher {
    pub fn new(
        shared: Arc<Shared>,
        id: u32,
        topic: &str,
        broker_receive_maximum: u16,
    ) -> Publisher {
        let s = &shared.settings;
        let rate = s.rate;
        let offset_ns = if rate == 0 {
            0
        } else {
            (u128::from(id) * 1_000_000_000 / (u128::from(rate) * u128::from(s.publishers.max(1))))
                as u64
        };
        Publisher {
            id,
            seq: 0,
            qos: s.qos,
            version: s.version,
            rate,
            offset_ns,
            template: PublishTemplate::new(topic, s.qos, s.retain, s.payload, s.version),
            padding: vec![0u8; s.payload - PAYLOAD_HEADER],
            inflight: 0,
            max_inflight: usize::from(s.inflight.min(broker_receive_maximum).max(1)),
            packet_ids: if s.qos == QoS::AtMostOnce {
                Vec::new()
            } else {
                vec![FREE; 65_536]
            },
            timeline: None,
            acked: 0,
            rejected: 0,
            published: 0,
            written_off: 0,
            blocked: None,
            shared,
        }
    }

    /// Intended send time of message `seq` (fixed rate).
    fn due(&self, start: u64, seq: u32) -> u64 {
        start + self.offset_ns + (u128::from(seq) * 1_000_000_000 / u128::from(self.rate)) as u64
    }

    fn encode(&mut self, wbuf: &mut BytesMut, ts: u64) {
        let start = wbuf.len();
        wbuf.extend_from_slice(&self.template.header);
        if let Some(at) = self.template.packet_id_at {
            let pid = (self.seq % 65_535) as u16 + 1;
            wbuf[start + at..start + at + 2].copy_from_slice(&pid.to_be_bytes());
            self.packet_ids[usize::from(pid)] = AWAIT_ACK;
            self.inflight += 1;
        }
        wbuf.put_u32(self.id);
        wbuf.put_u32(self.seq);
        wbuf.put_u64(ts);
        wbuf.extend_from_slice(&self.padding);
        self.seq = self.seq.wrapping_add(1);
        self.published += 1;
    }

    /// Max rate: whether this publisher is `window` messages ahead of what its subscribers received.
    /// A broker that drops messages (QoS 0 to a slow reader, a full queue) never delivers them, so
    /// when receipts stop advancing for [`WINDOW_STALL_NS`] what is outstanding is written off for flow
    /// control (the report still counts it as lost) instead of stalling the publisher for good.
    fn ahead_of_receipts(&mut self, now: u64) -> bool {
        let s = &self.shared.settings;
        let delivered =
            self.shared.delivered[self.id as usize].load(Ordering::Relaxed) + self.written_off;
        let outstanding = (self.published * s.fanout).saturating_sub(delivered);
        if outstanding < s.window * s.fanout {
            self.blocked = None;
            return false;
        }
        match self.blocked {
            Some((since, seen)) if seen == delivered => {
                if now.saturating_sub(since) >= WINDOW_STALL_NS {
                    self.written_off += outstanding;
                    self.blocked = None;
                    return false;
                }
            }
            _ => self.blocked = Some((now, delivered)),
        }
        true
    }

    fn complete(&mut self, pid: u16, rejected: bool) {
        self.packet_ids[usize::from(pid)] = FREE;
        self.inflight -= 1;
        if rejected {
            self.rejected += 1;
        } else {
            self.acked += 1;
        }
    }
}

impl Role for Publisher {
    fn produce(&mut self, wbuf: &mut BytesMut, phase: Phase, now: u64) -> Want {
        if phase != Phase::Run {
            return Want::Idle;
        }
        let timeline = *self.timeline.get_or_insert_with(|| self.shared.timeline());
        let (mut made, mut made_in_window) = (0u64, 0u64);
        let want = loop {
            if self.qos != QoS::AtMostOnce
                && (self.inflight >= self.max_inflight
                    || self.packet_ids[usize::from((self.seq % 65_535) as u16 + 1)] != FREE)
            {
                break Want::Idle;
            }
            if wbuf.len() >= HIGH_WATER {
                break Want::Now;
            }
            if self.rate == 0 && self.ahead_of_receipts(now) {
                // End-to-end bound: look again shortly (subscribers' receipts have no wake-up of
                // their own for us; the timer is coarse, but the window is deep enough to cover it).
                break Want::At(now + WINDOW_RECHECK_NS);
            }
            let ts = if self.rate == 0 {
                now
            } else {
                let due = self.due(timeline.start, self.seq);
                if due > now {
                    break Want::At(due.min(timeline.measure_end));
                }
                due
            };
            if ts >= timeline.measure_end {
                break Want::Idle;
            }
            self.encode(wbuf, ts);
            made += 1;
            if timeline.in_window(ts) {
                made_in_window += 1;
            }
        };
        if made > 0 {
            self.shared.sent.fetch_add(made, Ordering::Relaxed);
            self.shared
                .sent_window
                .fetch_add(made_in_window, Ordering::Relaxed);
        }
        want
    }

    fn on_packet(&mut self, packet: Packet, wbuf: &mut BytesMut, _now: u64) -> Result<(), String> {
        match packet {
            Packet::PubAck(ack) if self.qos == QoS::AtLeastOnce => {
                if self.packet_ids[usize::from(ack.packet_id)] != AWAIT_ACK {
                    return Err(format!("PUBACK for unknown packet id {}", ack.packet_id));
                }
                self.complete(ack.packet_id, ack.reason.is_error());
            }
            Packet::PubRec(rec) if self.qos == QoS::ExactlyOnce => {
                match self.packet_ids[usize::from(rec.packet_id)] {
                    AWAIT_ACK if rec.reason.is_error() => self.complete(rec.packet_id, true),
                    AWAIT_ACK | AWAIT_COMP => {
                        self.packet_ids[usize::from(rec.packet_id)] = AWAIT_COMP;
                        encode_ack(
                            Packet::PubRel(PubResponse::new(rec.packet_id)),
                            self.version,
                            wbuf,
                        )?;
                    }
                    _ => return Err(format!("PUBREC for unknown packet id {}", rec.packet_id)),
                }
            }
            Packet::PubComp(comp) if self.qos == QoS::ExactlyOnce => {
                if self.packet_ids[usize::from(comp.packet_id)] != AWAIT_COMP {
                    return Err(format!("PUBCOMP for unknown packet id {}", comp.packet_id));
                }
                self.complete(comp.packet_id, comp.reason.is_error());
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                return Err(format!("broker sent DISCONNECT ({:?})", d.reason))
            }
            other => {
                return Err(format!(
                    "unexpected {:?} from the broker (publisher)",
                    other.packet_type()
                ))
            }
        }
        Ok(())
    }

    fn end_batch(&mut self) {
        if self.acked > 0 {
            self.shared.acked.fetch_add(self.acked, Ordering::Relaxed);
            self.acked = 0;
        }
        if self.rejected > 0 {
            self.shared
                .rejected
                .fetch_add(self.rejected, Ordering::Relaxed);
            self.rejected = 0;
        }
    }
}

/// One delivery waiting to be accounted (at the end of the read batch, under the tracker's lock).
struct Delivery {
    publisher: u32,
    seq: u32,
    sent: u64,
    received: u64,
}

pub struct Subscriber {
    shared: Arc<Shared>,
    version: ProtocolVersion,
    track: Arc<Mutex<SubTrack>>,
    latency_shard: usize,
    pending: Vec<Delivery>,
    latencies: Vec<u64>,
    malformed: u64,
}

impl Subscriber {
    pub fn new(shared: Arc<Shared>, track: Arc<Mutex<SubTrack>>, index: usize) -> Subscriber {
        Subscriber {
            version: shared.settings.version,
            latency_shard: index % shared.latency.len(),
            track,
            pending: Vec::with_capacity(1024),
            latencies: Vec::with_capacity(1024),
            malformed: 0,
            shared,
        }
    }
}

impl Role for Subscriber {
    fn produce(&mut self, _wbuf: &mut BytesMut, _phase: Phase, _now: u64) -> Want {
        Want::Idle
    }

    fn on_packet(&mut self, packet: Packet, wbuf: &mut BytesMut, now: u64) -> Result<(), String> {
        acknowledge_delivery(&packet, self.version, wbuf)?;
        match packet {
            Packet::Publish(p) => {
                if p.payload.len() >= PAYLOAD_HEADER {
                    let b = &p.payload[..PAYLOAD_HEADER];
                    self.pending.push(Delivery {
                        publisher: u32::from_be_bytes(b[0..4].try_into().unwrap()),
                        seq: u32::from_be_bytes(b[4..8].try_into().unwrap()),
                        sent: u64::from_be_bytes(b[8..16].try_into().unwrap()),
                        received: now,
                    });
                } else {
                    self.malformed += 1;
                }
            }
            Packet::PubRel(_) | Packet::PingResp => {}
            Packet::Disconnect(d) => {
                return Err(format!("broker sent DISCONNECT ({:?})", d.reason))
            }
            other => {
                return Err(format!(
                    "unexpected {:?} from the broker (subscriber)",
                    other.packet_type()
                ))
            }
        }
        Ok(())
    }

    fn end_batch(&mut self) {
        if self.pending.is_empty() && self.malformed == 0 {
            return;
        }
        let timeline = self.shared.timeline();
        let publishers = self.shared.settings.publishers;
        let (mut received, mut unique) = (0u64, 0u64);
        {
            let mut track = self.track.lock().unwrap();
            track.unexpected += self.malformed;
            self.malformed = 0;
            for d in self.pending.drain(..) {
                if d.publisher >= publishers {
                    track.unexpected += 1;
                    continue;
                }
                received += 1;
                if timeline.in_window(d.received) {
                    track.received_window += 1;
                }
                match track.streams.entry(d.publisher).or_default().observe(d.seq) {
                    Seen::Duplicate => track.duplicates += 1,
                    seen => {
                        if seen == Seen::OutOfOrder {
                            track.out_of_order += 1;
                        }
                        unique += 1;
                        self.shared.delivered[d.publisher as usize].fetch_add(1, Ordering::Relaxed);
                        if timeline.in_window(d.sent) {
                            self.latencies
                                .push(d.received.saturating_sub(d.sent).max(1));
                        }
                    }
                }
            }
            track.received += received;
            track.unique += unique;
        }
        if !self.latencies.is_empty() {
            let mut hist = self.shared.latency[self.latency_shard].lock().unwrap();
            for &l in &self.latencies {
                hist.saturating_record(l);
            }
            drop(hist);
            self.latencies.clear();
        }
        self.shared.received.fetch_add(received, Ordering::Relaxed);
        self.shared
            .received_unique
            .fetch_add(unique, Ordering::Relaxed);
    }
}

/// A connected client that only keeps its connection alive.
pub struct Idle;

impl Role for Idle {
    fn produce(&mut self, _wbuf: &mut BytesMut, _phase: Phase, _now: u64) -> Want {
        Want::Idle
    }

    fn on_packet(&mut self, packet: Packet, _wbuf: &mut BytesMut, _now: u64) -> Result<(), String> {
        match packet {
            Packet::PingResp => Ok(()),
            Packet::Disconnect(d) => Err(format!("broker sent DISCONNECT ({:?})", d.reason)),
            other => Err(format!(
                "unexpected {:?} from the broker (idle client)",
                other.packet_type()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips_through_the_codec() {
        for version in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for payload in [16usize, 200, 1024] {
                    let t = PublishTemplate::new("lg/p2p/7", qos, false, payload, version);
                    let mut buf = BytesMut::from(&t.header[..]);
                    if let Some(at) = t.packet_id_at {
                        buf[at..at + 2].copy_from_slice(&0x1234u16.to_be_bytes());
                    }
                    buf.put_u32(7);
                    buf.put_u32(42);
                    buf.put_u64(99);
                    buf.extend_from_slice(&vec![0u8; payload - 16]);
                    let packet = codec::decode(&mut buf, version, 1 << 20).unwrap().unwrap();
                    let Packet::Publish(p) = packet else {
                        panic!("not a PUBLISH")
                    };
                    assert!(buf.is_empty());
                    assert_eq!(p.topic.as_str(), "lg/p2p/7");
                    assert_eq!(p.qos, qos);
                    if qos != QoS::AtMostOnce {
                        assert_eq!(p.packet_id, 0x1234);
                    }
                    assert_eq!(p.payload.len(), payload);
                    assert_eq!(&p.payload[..8], &[0, 0, 0, 7, 0, 0, 0, 42]);
                }
            }
        }
    }

    #[test]
    fn the_end_to_end_window_holds_then_writes_off_what_a_broker_dropped() {
        let settings = crate::shared::RunSettings {
            version: ProtocolVersion::V311,
            qos: QoS::AtMostOnce,
            payload: 16,
            rate: 0,
            inflight: 20,
            window: 10,
            fanout: 2,
            publishers: 1,
            keepalive: 0,
            persistent: false,
            retain: false,
            tls: None,
        };
        let shared = Arc::new(Shared::new(settings, 1));
        let mut p = Publisher::new(shared.clone(), 0, "t", u16::MAX);
        p.published = 9;
        assert!(!p.ahead_of_receipts(0), "9 of 10 outstanding");
        p.published = 10;
        assert!(p.ahead_of_receipts(0), "window full");
        // Receipts advance but the publisher went on: held (21 deliveries outstanding, window 20), and
        // the stall clock restarts.
        shared.delivered[0].fetch_add(1, Ordering::Relaxed);
        p.published = 11;
        assert!(p.ahead_of_receipts(WINDOW_STALL_NS - 1));
        assert!(p.ahead_of_receipts(2 * WINDOW_STALL_NS - 2));
        // No receipt for a whole stall period: the 21 outstanding deliveries are written off.
        assert!(!p.ahead_of_receipts(2 * WINDOW_STALL_NS - 1));
        assert_eq!(p.written_off, 21);
        // Late deliveries of written-off messages do not wedge the count.
        shared.delivered[0].fetch_add(21, Ordering::Relaxed);
        assert!(!p.ahead_of_receipts(2 * WINDOW_STALL_NS));
    }
}
