//! The `retained` scenario: subscribe storms onto many retained topics.
//!
//! Setup seeds `--topics` T retained messages on `lg/retained/{i}` (one connection, QoS of the run,
//! acknowledged before the run starts). During the run each of S subscribers loops: SUBSCRIBE
//! `lg/retained/#`, receive the T retained messages, UNSUBSCRIBE, again. A storm's latency is from its
//! SUBSCRIBE being written to its last retained message arriving; throughput counts retained messages
//! delivered; a storm still incomplete when the drain ends counts its missing messages as lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use shardmq::codec::{
    self, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions, Unsubscribe,
};

use crate::conn::{handshake, ClientSpec, Role, Want};
use crate::roles::{acknowledge_delivery, PAYLOAD_HEADER};
use crate::shared::{Phase, Shared};

/// Topics of the retained messages, and the filter every storm subscribes to.
pub fn topic(i: usize) -> String {
    format!("lg/retained/{i}")
}
pub const FILTER: &str = "lg/retained/#";

/// Publishes `topics` retained messages and waits until the broker has them (PUBACKs for QoS 1, PUBCOMP
/// for QoS 2, a PINGREQ round trip after QoS 0: a broker handles one client's packets in order).
pub async fn seed(
    shared: &Shared,
    target: &crate::conn::Target,
    client_id: String,
    topics: usize,
    within: Duration,
) -> Result<(), String> {
    let spec = ClientSpec {
        client_id,
        source: None,
        subscribe: None,
    };
    let s = &shared.settings;
    let work = async {
        let mut stage = "TCP connect";
        let (mut conn, _) = handshake(shared, target, &spec, &mut stage).await?;
        let mut payload = BytesMut::with_capacity(s.payload);
        let mut outstanding = 0usize;
        for i in 0..topics {
            payload.clear();
            payload.put_u32(0);
            payload.put_u32(i as u32);
            payload.put_u64(shared.now_ns());
            payload.resize(s.payload.max(PAYLOAD_HEADER), 0);
            conn.encode(&Packet::Publish(Publish {
                dup: false,
                qos: s.qos,
                retain: true,
                topic: topic(i).into(),
                packet_id: if s.qos == QoS::AtMostOnce {
                    0
                } else {
                    (i % 65_535) as u16 + 1
                },
                properties: Properties::default(),
                payload: payload.split().freeze(),
            }))?;
            if s.qos != QoS::AtMostOnce {
                outstanding += 1;
            }
            // Stay within a window the broker accepts (its inflight limit) and a sane buffer.
            if outstanding >= 16 || i + 1 == topics {
                conn.flush_all().await.map_err(|e| format!("write: {e}"))?;
                while outstanding > 0 {
                    match conn.next_packet().await? {
                        Packet::PubAck(_) | Packet::PubComp(_) => outstanding -= 1,
                        Packet::PubRec(r) => {
                            conn.encode(&Packet::PubRel(PubResponse::new(r.packet_id)))?
                        }
                        other => {
                            return Err(format!(
                                "seeding retained messages: unexpected {:?}",
                                other.packet_type()
                            ))
                        }
                    }
                    conn.flush_all().await.map_err(|e| format!("write: {e}"))?;
                }
            }
        }
        conn.encode(&Packet::PingReq)?;
        conn.flush_all().await.map_err(|e| format!("write: {e}"))?;
        loop {
            if let Packet::PingResp = conn.next_packet().await? {
                break;
            }
        }
        conn.disconnect(Duration::from_secs(1)).await;
        Ok(())
    };
    tokio::time::timeout(within, work)
        .await
        .map_err(|_| format!("seeding {topics} retained messages timed out after {within:?}"))?
}

enum State {
    /// Ready to start a storm.
    Idle,
    /// SUBSCRIBE written at `started`; `got` retained messages so far.
    Storm { started: u64, got: usize },
    /// UNSUBSCRIBE written; waiting for UNSUBACK.
    Leaving,
}

/// A subscriber that repeats subscribe storms.
pub struct Storm {
    shared: Arc<Shared>,
    version: ProtocolVersion,
    topics: usize,
    state: State,
    packet_id: u16,
    latency_shard: usize,
    /// Counted in the shared totals at the end of each read batch.
    received: u64,
    received_window: u64,
}

impl Storm {
    pub fn new(shared: Arc<Shared>, topics: usize, index: usize) -> Storm {
        Storm {
            version: shared.settings.version,
            latency_shard: index % shared.latency.len(),
            topics,
            state: State::Idle,
            packet_id: 0,
            received: 0,
            received_window: 0,
            shared,
        }
    }

    fn next_id(&mut self) -> u16 {
        self.packet_id = self.packet_id % 65_535 + 1;
        self.packet_id
    }

    fn encode(&self, p: &Packet, wbuf: &mut BytesMut) -> Result<(), String> {
        codec::encode(p, self.version, wbuf).map_err(|e| format!("encode: {e}"))
    }
}

impl Role for Storm {
    fn produce(&mut self, wbuf: &mut BytesMut, phase: Phase, now: u64) -> Want {
        if phase != Phase::Run || !matches!(self.state, State::Idle) {
            return Want::Idle;
        }
        let timeline = self.shared.timeline();
        if now >= timeline.measure_end {
            return Want::Idle;
        }
        let packet = Packet::Subscribe(Subscribe {
            packet_id: self.next_id(),
            filters: vec![SubscribeFilter {
                filter: FILTER.into(),
                options: SubscriptionOptions {
                    qos: self.shared.settings.qos,
                    ..Default::default()
                },
            }],
            properties: Properties::default(),
        });
        if self.encode(&packet, wbuf).is_err() {
            return Want::Idle;
        }
        let t = self.topics as u64;
        self.shared.sent.fetch_add(t, Ordering::Relaxed);
        if timeline.in_window(now) {
            self.shared.sent_window.fetch_add(t, Ordering::Relaxed);
        }
        self.state = State::Storm {
            started: now,
            got: 0,
        };
        Want::Idle
    }

    fn on_packet(&mut self, packet: Packet, wbuf: &mut BytesMut, now: u64) -> Result<(), String> {
        acknowledge_delivery(&packet, self.version, wbuf)?;
        match packet {
            Packet::SubAck(ack) => match ack.codes.first() {
                Some(ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2) => {}
                other => return Err(format!("SUBSCRIBE {FILTER} refused: {other:?}")),
            },
            Packet::UnsubAck(_) => self.state = State::Idle,
            Packet::Publish(p) => {
                let State::Storm { started, got } = &mut self.state else {
                    return Ok(());
                };
                if !p.retain {
                    return Ok(());
                }
                *got += 1;
                self.received += 1;
                let timeline = self.shared.timeline();
                if timeline.in_window(now) {
                    self.received_window += 1;
                }
                if *got >= self.topics {
                    if timeline.in_window(*started) {
                        self.shared.latency[self.latency_shard]
                            .lock()
                            .unwrap()
                            .saturating_record(now.saturating_sub(*started).max(1));
                    }
                    let packet = Packet::Unsubscribe(Unsubscribe {
                        packet_id: self.next_id(),
                        filters: vec![FILTER.into()],
                        properties: Properties::default(),
                    });
                    self.encode(&packet, wbuf)?;
                    self.state = State::Leaving;
                }
            }
            Packet::PubRel(_) | Packet::PingResp => {}
            Packet::Disconnect(d) => {
                return Err(format!("broker sent DISCONNECT ({:?})", d.reason))
            }
            other => {
                return Err(format!(
                    "unexpected {:?} from the broker (retained storm)",
                    other.packet_type()
                ))
            }
        }
        Ok(())
    }

    fn end_batch(&mut self) {
        if self.received > 0 {
            self.shared
                .received
                .fetch_add(self.received, Ordering::Relaxed);
            self.shared
                .received_unique
                .fetch_add(self.received, Ordering::Relaxed);
            self.shared
                .received_window_total
                .fetch_add(self.received_window, Ordering::Relaxed);
            self.received = 0;
            self.received_window = 0;
        }
    }
}
