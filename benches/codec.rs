//! Sans-IO codec cost: decode and encode of every packet type the broker handles, for MQTT 3.1.1 and 5.0.
//!
//! - `decode/<packet>/<version>[/<payload>]`: one packet decoded from a `BytesMut` holding exactly its
//!   bytes (filling the buffer is setup, not timed: in the broker those bytes come from a read);
//! - `encode/<packet>/<version>[/<payload>]`: the packet appended to a reused `BytesMut`, as a connection's
//!   write buffer is reused;
//! - `encode_publish_header/...`: the fan-out path, header only (the broker writes the shared payload
//!   after it, so the payload size does not matter beyond the remaining length);
//! - `decode_batch/...`: many small PUBLISHes decoded from one buffer, as after one socket read from a
//!   busy publisher: this is where per-packet overhead shows.
//!
//! PUBLISH payloads are 16 B, 1 KiB and 64 KiB, QoS 0 and 1; the v5 PUBLISH carries the properties a real
//! client sends (payload format, message expiry, content type, one user property). Throughput is in
//! bytes of encoded packet, so small packets read as per-packet overhead and large ones as copy speed.
//!
//! Run: `cargo bench --bench codec`; add `-- --quick` for a short run.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use shardmq::codec::{
    self, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, Unsubscribe,
};

/// The protocol limit (fixed header included): the benches measure the codec, not a configured cap.
const MAX_PACKET_SIZE: usize = 1 + 4 + codec::MAX_VAR_INT as usize;
/// PUBLISH payload sizes benchmarked, with their labels.
const PAYLOADS: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (64 * 1024, "64KiB")];
/// PUBLISHes per buffer in the batch case: a 64 KiB read holds about this many 16 B-payload packets.
const BATCH_PACKETS: usize = 1000;
/// Payload sizes of the batch case: telemetry-sized messages.
const BATCH_PAYLOADS: [(usize, &str); 2] = [(16, "16B"), (128, "128B")];
const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];
/// Single-packet decodes timed per clock reading: enough to hide the clock's cost, few enough that the
/// buffers prepared for them are still in cache, as bytes just read from a socket are.
const DECODES_PER_BATCH: u64 = 32;

// The broker's allocator (src/main.rs): decode allocates for v5 properties and filter lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A read buffer holding `wire`, already in the shared form a connection's buffer has after its first
/// decode: otherwise every timed decode would pay the one-off promotion of a fresh `BytesMut` (an
/// allocation) that the broker pays once per buffer.
fn read_buffer(wire: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(1 + wire.len());
    buf.put_u8(0);
    buf.extend_from_slice(wire);
    drop(buf.split_to(1));
    buf
}

fn version_label(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "v3.1",
        ProtocolVersion::V311 => "v3.1.1",
        ProtocolVersion::V5 => "v5",
    }
}

/// Properties only a 5.0 connection carries; empty for 3.x (whose encoder would ignore them anyway, but
/// the round-trip check below compares with what the decoder returns).
fn v5_only(version: ProtocolVersion, properties: Properties) -> Properties {
    if version == ProtocolVersion::V5 {
        properties
    } else {
        Properties::default()
    }
}

fn publish(version: ProtocolVersion, qos: QoS, payload_len: usize) -> Packet {
    // A payload that is not all one byte, so nothing downstream can take a shortcut on it.
    let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: "site/17/dev/4711/temp".into(),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 4711 },
        properties: v5_only(
            version,
            Properties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(3600),
                content_type: Some("application/json".into()),
                user_properties: vec![("trace-id".into(), "4bf92f3577b34da6".into())],
                ..Properties::default()
            },
        ),
        payload: Bytes::from(payload),
    })
}

/// Every non-PUBLISH case as (name, packet), with realistic field sizes.
fn control_packets(version: ProtocolVersion) -> Vec<(&'static str, Packet)> {
    let filter = |filter: &str, qos| SubscribeFilter {
        filter: filter.into(),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    };
    let response = |packet_id| PubResponse::new(packet_id);
    vec![
        (
            "connect",
            Packet::Connect(Box::new(Connect {
                protocol: version,
                clean_start: true,
                keep_alive: 60,
                client_id: "sensor-0004711-eu-west".into(),
                will: None,
                username: Some("fleet-eu".into()),
                password: Some(Bytes::from_static(b"s3cr3t-token-0123456789")),
                properties: v5_only(
                    version,
                    Properties {
                        session_expiry_interval: Some(3600),
                        receive_maximum: Some(64),
                        topic_alias_maximum: Some(16),
                        ..Properties::default()
                    },
                ),
            })),
        ),
        (
            "connack",
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ReasonCode::Success,
                properties: v5_only(
                    version,
                    Properties {
                        receive_maximum: Some(100),
                        topic_alias_maximum: Some(10),
                        maximum_packet_size: Some(268_435_455),
                        ..Properties::default()
                    },
                ),
            }),
        ),
        ("puback", Packet::PubAck(response(4711))),
        ("pubrec", Packet::PubRec(response(4712))),
        ("pubrel", Packet::PubRel(response(4712))),
        ("pubcomp", Packet::PubComp(response(4712))),
        (
            "subscribe",
            Packet::Subscribe(Subscribe {
                packet_id: 12,
                filters: vec![
                    filter("site/17/dev/4711/cmd", QoS::AtLeastOnce),
                    filter("site/17/+/+/temp", QoS::AtMostOnce),
                    filter("site/17/#", QoS::AtMostOnce),
                    filter("$SYS/broker/clients/connected", QoS::AtMostOnce),
                ],
                properties: v5_only(
                    version,
                    Properties {
                        subscription_identifiers: [7].into_iter().collect(),
                        ..Properties::default()
                    },
                ),
            }),
        ),
        (
            "suback",
            Packet::SubAck(SubAck {
                packet_id: 12,
                codes: vec![
                    ReasonCode::GrantedQoS1,
                    ReasonCode::Success,
                    ReasonCode::Success,
                    ReasonCode::Success,
                ],
                properties: Properties::default(),
            }),
        ),
        (
            "unsubscribe",
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 13,
                filters: vec!["site/17/+/+/temp".into(), "site/17/#".into()],
                properties: Properties::default(),
            }),
        ),
        ("pingreq", Packet::PingReq),
        (
            "disconnect",
            Packet::Disconnect(Disconnect {
                reason: ReasonCode::Success,
                properties: Properties::default(),
            }),
        ),
    ]
}

/// One benchmark case: its id and the packet with its encoding.
struct Case {
    name: &'static str,
    parameter: String,
    packet: Packet,
    wire: Bytes,
    version: ProtocolVersion,
}

fn encode_to_bytes(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    codec::encode(packet, version, &mut out).expect("benchmark packets are encodable");
    out.freeze()
}

/// A case, after checking that its packet survives a round trip: a bench of a decode that fails early
/// would report a meaningless (fast) figure.
fn case(name: &'static str, parameter: String, packet: Packet, version: ProtocolVersion) -> Case {
    let wire = encode_to_bytes(&packet, version);
    assert_eq!(wire.len(), codec::encoded_len(&packet, version), "{name}");
    let mut buf = BytesMut::from(&wire[..]);
    let decoded = codec::decode(&mut buf, version, MAX_PACKET_SIZE)
        .unwrap_or_else(|e| panic!("{name}/{parameter}: {e}"));
    assert_eq!(decoded.as_ref(), Some(&packet), "{name}/{parameter}");
    assert!(buf.is_empty(), "{name}/{parameter}: bytes left over");
    Case {
        name,
        parameter,
        packet,
        wire,
        version,
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for version in VERSIONS {
        let v = version_label(version);
        for (qos, name) in [
            (QoS::AtMostOnce, "publish_qos0"),
            (QoS::AtLeastOnce, "publish_qos1"),
        ] {
            for (len, label) in PAYLOADS {
                cases.push(case(
                    name,
                    format!("{v}/{label}"),
                    publish(version, qos, len),
                    version,
                ));
            }
        }
        for (name, packet) in control_packets(version) {
            cases.push(case(name, v.to_string(), packet, version));
        }
    }
    cases
}

/// Short warm-up and measurement: the codec is deterministic and single-threaded, so a few seconds per
/// case give a stable median while keeping the ~70 cases within a few minutes.
fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
}

/// One benchmark per case in group `name`, with the case's wire size as its throughput.
fn bench_cases(
    c: &mut Criterion,
    name: &str,
    cases: &[Case],
    mut routine: impl FnMut(&mut criterion::Bencher<'_>, &Case),
) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    for case in cases {
        group.throughput(Throughput::Bytes(case.wire.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(case.name, &case.parameter),
            case,
            &mut routine,
        );
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion, cases: &[Case]) {
    bench_cases(c, "decode", cases, |b, case| {
        // The decoded packet is dropped after the clock stops: this times decoding only.
        b.iter_batched_ref(
            || read_buffer(&case.wire),
            |buf| codec::decode(buf, black_box(case.version), MAX_PACKET_SIZE),
            BatchSize::NumIterations(DECODES_PER_BATCH),
        );
    });
}

fn bench_encode(c: &mut Criterion, cases: &[Case]) {
    bench_cases(c, "encode", cases, |b, case| {
        // Reused like a connection's write buffer: after the first iteration no allocation.
        let mut out = BytesMut::with_capacity(case.wire.len());
        b.iter(|| {
            out.clear();
            codec::encode(black_box(&case.packet), case.version, &mut out)
                .expect("checked encodable");
            out.len()
        });
    });
}

fn bench_publish_header(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("encode_publish_header");
    configure(&mut group);
    // The header does not depend on the payload size beyond its length: one size per QoS and version.
    for case in cases.iter().filter(|c| c.parameter.ends_with("/1KiB")) {
        let Packet::Publish(publish) = &case.packet else {
            continue;
        };
        let mut out = BytesMut::new();
        codec::encode_publish_header(publish, case.version, &mut out).expect("checked encodable");
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(case.name, &case.parameter),
            publish,
            |b, publish| {
                b.iter(|| {
                    out.clear();
                    codec::encode_publish_header(black_box(publish), case.version, &mut out)
                        .expect("checked encodable");
                    out.len()
                });
            },
        );
    }
    group.finish();
}

fn bench_decode_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_batch");
    configure(&mut group);
    for version in VERSIONS {
        for (len, label) in BATCH_PAYLOADS {
            // Distinct packet ids and topics as from one publisher's stream; QoS 1 so each carries an id.
            let mut buffer = BytesMut::new();
            for i in 0..BATCH_PACKETS {
                let mut packet = publish(version, QoS::AtLeastOnce, len);
                if let Packet::Publish(p) = &mut packet {
                    p.packet_id = (i % 65_535 + 1) as u16;
                    p.topic = format!("site/17/dev/{i}/temp").into();
                }
                codec::encode(&packet, version, &mut buffer).expect("benchmark packets encodable");
            }
            let wire = buffer.freeze();
            group.throughput(Throughput::Bytes(wire.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(
                    "publish_qos1",
                    format!("{}/{label}/x{BATCH_PACKETS}", version_label(version)),
                ),
                &wire,
                |b, wire| {
                    // Each packet is dropped inside the timing, as the broker is done with it before
                    // decoding the next.
                    b.iter_batched_ref(
                        || read_buffer(wire),
                        |buf| {
                            let mut decoded = 0usize;
                            while let Some(packet) =
                                codec::decode(buf, version, MAX_PACKET_SIZE).expect("valid batch")
                            {
                                black_box(&packet);
                                decoded += 1;
                            }
                            assert_eq!(decoded, BATCH_PACKETS);
                        },
                        BatchSize::LargeInput,
                    );
                },
            );
        }
    }
    group.finish();
}

fn bench_codec(c: &mut Criterion) {
    let cases = cases();
    eprintln!(
        "config: codec decode/encode, single thread (no pinning), {} CPUs available; {} cases \
         (MQTT 3.1.1 and 5.0; PUBLISH QoS 0/1 with {:?} B payloads, v5 PUBLISH with 4 properties); \
         batch: {BATCH_PACKETS} QoS 1 PUBLISHes per buffer, payloads {:?} B; throughput = encoded bytes",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cases.len(),
        PAYLOADS.map(|(len, _)| len),
        BATCH_PAYLOADS.map(|(len, _)| len),
    );
    bench_decode(c, &cases);
    bench_encode(c, &cases);
    bench_publish_header(c, &cases);
    bench_decode_batch(c);
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
