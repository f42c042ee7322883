//! Property tests: random bytes (and random corruptions of valid packets) never panic the decoder and
//! split feeding agrees with whole feeding; random valid packets of every type round-trip in every
//! version.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::select;
use smallvec::SmallVec;

use super::*;
use crate::codec::properties::{allowed_in, properties_wire_len};

fn utf8() -> impl Strategy<Value = Utf8Bytes> {
    "[a-z/ü$+#🦀 -]{0,12}".prop_map(Utf8Bytes::from)
}

fn topic_name() -> impl Strategy<Value = Utf8Bytes> {
    "[a-z/ü$🦀 -]{1,12}".prop_map(Utf8Bytes::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn bool_byte() -> impl Strategy<Value = Option<u8>> {
    proptest::option::of(0u8..=1)
}

fn nonzero_u16() -> impl Strategy<Value = Option<u16>> {
    proptest::option::of(1u16..)
}

/// Any valid property values, every property possibly present.
fn any_properties() -> impl Strategy<Value = Properties> {
    let a = (
        bool_byte(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(utf8()),
        proptest::option::of(topic_name()),
        proptest::option::of(binary()),
        proptest::collection::vec(1u32..=MAX_VAR_INT, 0..3),
        proptest::option::of(any::<u32>()),
        proptest::option::of(utf8()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(utf8()),
        proptest::option::of(binary()),
        bool_byte(),
    );
    let b = (
        proptest::option::of(any::<u32>()),
        bool_byte(),
        proptest::option::of(utf8()),
        proptest::option::of(utf8()),
        proptest::option::of(utf8()),
        nonzero_u16(),
        proptest::option::of(any::<u16>()),
        nonzero_u16(),
        bool_byte(),
        bool_byte(),
        proptest::collection::vec((utf8(), utf8()), 0..3),
        proptest::option::of(1u32..),
    );
    let c = (bool_byte(), bool_byte(), bool_byte());
    (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3.map(|t| Utf8Bytes::from(t.replace(['+', '#'], "x"))),
        correlation_data: a.4,
        subscription_identifiers: SmallVec::from_vec(a.5),
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: a.9,
        authentication_data: a.10,
        request_problem_information: a.11,
        will_delay_interval: b.0,
        request_response_information: b.1,
        response_information: b.2,
        server_reference: b.3,
        reason_string: b.4,
        receive_maximum: b.5,
        topic_alias_maximum: b.6,
        topic_alias: b.7,
        maximum_qos: b.8,
        retain_available: b.9,
        user_properties: b.10,
        maximum_packet_size: b.11,
        wildcard_subscription_available: c.0,
        subscription_identifier_available: c.1,
        shared_subscription_available: c.2,
    })
}

/// Keeps only what Table 2-4 allows in `ctx` (and what the decoder accepts there).
fn restrict(mut p: Properties, ctx: PropertyContext) -> Properties {
    use crate::codec::properties::id;
    let ok = |i: u8| allowed_in(i).is_some_and(|m| m & ctx.bit() != 0);
    macro_rules! keep {
        ($($f:ident: $id:expr),*) => { $( if !ok($id) { p.$f = None; } )* };
    }
    keep!(
        payload_format_indicator: id::PAYLOAD_FORMAT_INDICATOR,
        message_expiry_interval: id::MESSAGE_EXPIRY_INTERVAL,
        content_type: id::CONTENT_TYPE,
        response_topic: id::RESPONSE_TOPIC,
        correlation_data: id::CORRELATION_DATA,
        session_expiry_interval: id::SESSION_EXPIRY_INTERVAL,
        assigned_client_identifier: id::ASSIGNED_CLIENT_IDENTIFIER,
        server_keep_alive: id::SERVER_KEEP_ALIVE,
        authentication_method: id::AUTHENTICATION_METHOD,
        authentication_data: id::AUTHENTICATION_DATA,
        request_problem_information: id::REQUEST_PROBLEM_INFORMATION,
        will_delay_interval: id::WILL_DELAY_INTERVAL,
        request_response_information: id::REQUEST_RESPONSE_INFORMATION,
        response_information: id::RESPONSE_INFORMATION,
        server_reference: id::SERVER_REFERENCE,
        reason_string: id::REASON_STRING,
        receive_maximum: id::RECEIVE_MAXIMUM,
        topic_alias_maximum: id::TOPIC_ALIAS_MAXIMUM,
        topic_alias: id::TOPIC_ALIAS,
        maximum_qos: id::MAXIMUM_QOS,
        retain_available: id::RETAIN_AVAILABLE,
        maximum_packet_size: id::MAXIMUM_PACKET_SIZE,
        wildcard_subscription_available: id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        subscription_identifier_available: id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        shared_subscription_available: id::SHARED_SUBSCRIPTION_AVAILABLE
    );
    if !ok(id::USER_PROPERTY) {
        p.user_properties.clear();
    }
    if !ok(id::SUBSCRIPTION_IDENTIFIER) {
        p.subscription_identifiers.clear();
    } else if ctx != PropertyContext::Publish {
        p.subscription_identifiers.truncate(1);
    }
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    p
}

fn props(version: ProtocolVersion, ctx: PropertyContext) -> BoxedStrategy<Properties> {
    if version == V5 {
        any_properties().prop_map(move |p| restrict(p, ctx)).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn reason(packet_type: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.allowed_in(packet_type))
        .collect();
    select(codes)
}

fn arb_connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = proptest::option::of(
        (
            topic_name(),
            binary(),
            qos(),
            any::<bool>(),
            props(v, PropertyContext::Will),
        )
            .prop_map(|(t, payload, qos, retain, properties)| LastWill {
                topic: Utf8Bytes::from(t.replace(['+', '#'], "x")),
                payload,
                qos,
                retain,
                properties,
            }),
    );
    (
        any::<bool>(),
        any::<u16>(),
        utf8(),
        will,
        proptest::option::of(utf8()),
        proptest::option::of(binary()),
        props(v, PropertyContext::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.x: no password without a user name.
                let password = if v != V5 && username.is_none() {
                    None
                } else {
                    password
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will: will.map(Box::new),
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn arb_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v3_connack_codes = vec![
        ReasonCode::Success,
        ReasonCode::UnsupportedProtocolVersion,
        ReasonCode::ClientIdentifierNotValid,
        ReasonCode::ServerUnavailable,
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized,
    ];
    let connack_code = if v == V5 {
        reason(PacketType::ConnAck).boxed()
    } else {
        select(v3_connack_codes).boxed()
    };
    let connack = (
        any::<bool>(),
        connack_code,
        props(v, PropertyContext::ConnAck),
    )
        .prop_map(move |(sp, code, properties)| {
            let session_present = sp && code == ReasonCode::Success && v != V31;
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        });
    let publish = (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        1u16..,
        props(v, PropertyContext::Publish),
        binary(),
    )
        .prop_map(move |(dup, qos, retain, topic, pid, properties, payload)| {
            let topic = Utf8Bytes::from(topic.replace(['+', '#'], "x"));
            // 5.0: an empty topic is fine with a topic alias.
            let topic = if v == V5 && properties.topic_alias.is_some() && dup {
                Utf8Bytes::from("")
            } else {
                topic
            };
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: if qos0 { 0 } else { pid },
                properties,
                payload,
            })
        });
    let pubresp = |t: PacketType, ctx, make: fn(PubResponse) -> Packet| {
        let code = if v == V5 {
            reason(t).boxed()
        } else {
            Just(ReasonCode::Success).boxed()
        };
        (1u16.., code, props(v, ctx)).prop_map(move |(packet_id, reason, properties)| {
            make(PubResponse {
                packet_id,
                reason,
                properties,
            })
        })
    };
    let options =
        (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
            if v == V5 {
                let retain_handling = [
                    RetainHandling::SendAtSubscribe,
                    RetainHandling::SendAtSubscribeIfNew,
                    RetainHandling::DoNotSend,
                ][rh as usize];
                SubscriptionOptions {
                    qos,
                    no_local: nl,
                    retain_as_published: rap,
                    retain_handling,
                    identifier: 0,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                }
            }
        });
    let subscribe = (
        1u16..,
        proptest::collection::vec((utf8(), options), 1..4),
        props(v, PropertyContext::Subscribe),
    )
        .prop_map(|(packet_id, filters, properties)| {
            let filters = filters
                .into_iter()
                .map(|(filter, options)| SubscribeFilter { filter, options })
                .collect();
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        });
    let suback_code = if v == V5 {
        reason(PacketType::SubAck).boxed()
    } else {
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    let suback = (
        1u16..,
        proptest::collection::vec(suback_code, 0..4),
        props(v, PropertyContext::SubAck),
    )
        .prop_map(|(packet_id, codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                codes,
                properties,
            })
        });
    let unsubscribe = (
        1u16..,
        proptest::collection::vec(utf8(), 1..4),
        props(v, PropertyContext::Unsubscribe),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        });
    let unsuback_codes = if v == V5 {
        proptest::collection::vec(reason(PacketType::UnsubAck), 0..4).boxed()
    } else {
        Just(vec![]).boxed()
    };
    let unsuback = (1u16.., unsuback_codes, props(v, PropertyContext::UnsubAck)).prop_map(
        |(packet_id, codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                codes,
                properties,
            })
        },
    );
    let disconnect_code = if v == V5 {
        reason(PacketType::Disconnect).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    let disconnect = (disconnect_code, props(v, PropertyContext::Disconnect))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }));
    let mut all = vec![
        arb_connect(v).boxed(),
        connack.boxed(),
        publish.boxed(),
        pubresp(PacketType::PubAck, PropertyContext::PubAck, Packet::PubAck).boxed(),
        pubresp(PacketType::PubRec, PropertyContext::PubRec, Packet::PubRec).boxed(),
        pubresp(PacketType::PubRel, PropertyContext::PubRel, Packet::PubRel).boxed(),
        pubresp(
            PacketType::PubComp,
            PropertyContext::PubComp,
            Packet::PubComp,
        )
        .boxed(),
        subscribe.boxed(),
        suback.boxed(),
        unsubscribe.boxed(),
        unsuback.boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect.boxed(),
    ];
    if v == V5 {
        let auth = (reason(PacketType::Auth), props(v, PropertyContext::Auth))
            .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }));
        all.push(auth.boxed());
    }
    proptest::strategy::Union::new(all).boxed()
}

/// Remaining lengths on either side of each Variable Byte Integer size change (1/2, 2/3, 3/4 bytes).
const REMAINING_LENGTH_BOUNDARIES: [usize; 6] = [127, 128, 16_383, 16_384, 2_097_151, 2_097_152];

/// A short topic name, or one of 65,400 to 65,535 bytes (the largest a length prefix allows).
fn short_or_long_topic() -> impl Strategy<Value = Utf8Bytes> {
    prop_oneof![
        3 => topic_name(),
        1 => (topic_name(), 65_400usize..=65_535).prop_map(|(t, n)| {
            let mut t = t.replace(['+', '#'], "x");
            t.extend(std::iter::repeat('a').take(n - t.len()));
            Utf8Bytes::from(t)
        }),
    ]
}

/// A payload length: small, or making the remaining length land within 2 bytes of a boundary of
/// [`REMAINING_LENGTH_BOUNDARIES`] when the variable header (`vh_len`) leaves room for it.
fn payload_len(vh_len: usize, pick: (bool, usize, i64, usize)) -> usize {
    let (at_boundary, boundary, delta, small) = pick;
    let target = REMAINING_LENGTH_BOUNDARIES[boundary] as i64 + delta;
    if at_boundary && target >= vh_len as i64 {
        target as usize - vh_len
    } else {
        small
    }
}

/// Random PUBLISH parts in `v`: every QoS, DUP and RETAIN, short and near-65,535-byte topics, for 5.0 any
/// properties a PUBLISH may carry (an empty topic with a topic alias), payloads of 0..300 bytes or
/// around the remaining-length boundaries.
fn arb_publish_parts(v: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        (any::<bool>(), qos(), any::<bool>(), 1u16..),
        short_or_long_topic(),
        props(v, PropertyContext::Publish),
        (
            any::<bool>(),
            0..REMAINING_LENGTH_BOUNDARIES.len(),
            -2i64..=2,
            0usize..300,
        ),
        any::<u8>(),
    )
        .prop_map(
            move |((dup, qos, retain, pid), topic, properties, pick, seed)| {
                let qos0 = qos == QoS::AtMostOnce;
                let topic = if v == V5 && properties.topic_alias.is_some() && retain {
                    Utf8Bytes::from("")
                } else {
                    topic
                };
                let mut vh_len = 2 + topic.len() + if qos0 { 0 } else { 2 };
                if v == V5 {
                    vh_len += properties_wire_len(&properties);
                }
                let len = payload_len(vh_len, pick);
                let payload: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect();
                Publish {
                    // [MQTT-3.3.1-2]: no DUP on QoS 0 (3.1.1 and 5.0).
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: if qos0 { 0 } else { pid },
                    properties,
                    payload: Bytes::from(payload),
                }
            },
        )
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(ALL_VERSIONS.to_vec())
}

/// Decodes `bytes` whole and in `chunk`-byte pieces; both must agree, and every packet must round-trip.
fn decode_never_panics(bytes: &[u8], v: ProtocolVersion, max: usize, chunk: usize) {
    let (whole, end) = decode_whole(bytes, v, max);
    for (p, _) in &whole {
        let mut out = BytesMut::new();
        encode(p, v, &mut out).expect("decoded packets are encodable");
        assert_eq!(decode(&mut out, v, usize::MAX), Ok(Some(p.clone())));
    }
    let (split, err, _) = decode_pieces(bytes, v, max, chunk);
    assert_eq!(
        split.iter().map(|x| &x.0).collect::<Vec<_>>(),
        whole.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert_eq!(err.map(|e| e.0), end.err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), v in version(),
                                max in select(vec![usize::MAX, 1024, 10]), chunk in 1usize..12) {
        decode_never_panics(&bytes, v, max, chunk);
    }

    /// Random bytes behind a plausible first byte and remaining length reach deeper than pure noise.
    #[test]
    fn random_bodies_never_panic(first in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..200),
                                 v in version(), chunk in 1usize..12) {
        decode_never_panics(&pkt(first, &body), v, usize::MAX, chunk);
    }

    #[test]
    fn corrupted_valid_packets_never_panic(v in version(), seed in any::<u64>(),
                                           flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                                           chunk in 1usize..12) {
        // A valid packet, then a few bytes overwritten.
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig::default(),
            proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
                let mut s = [0u8; 32];
                s[..8].copy_from_slice(&seed.to_le_bytes());
                s
            }),
        );
        let packet = arb_packet(v).new_tree(&mut runner).expect("strategy").current();
        let mut out = BytesMut::new();
        encode(&packet, v, &mut out).expect("encodable");
        let mut bytes = out.to_vec();
        for (at, val) in flips {
            let i = at % bytes.len();
            bytes[i] = val;
        }
        decode_never_panics(&bytes, v, usize::MAX, chunk);
    }

    #[test]
    fn random_valid_packets_roundtrip(p in version().prop_flat_map(|v| (Just(v), arb_packet(v)))) {
        let (v, packet) = p;
        assert_roundtrip(&packet, v);
    }

    /// Several random packets back to back decode in order.
    #[test]
    fn random_packet_streams(p in version().prop_flat_map(|v| (Just(v), proptest::collection::vec(arb_packet(v), 1..5)))) {
        let (v, packets) = p;
        let mut out = BytesMut::new();
        for packet in &packets {
            encode(packet, v, &mut out).expect("encodable");
        }
        assert_decodes(&out, v, &packets);
    }
}

proptest! {
    // Fewer cases: a quarter of the topics are 64 KiB and some payloads 2 MiB.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// What the broker sends for a delivery (the header from [`encode_publish_parts`], then the payload)
    /// is what [`encode`] writes for the same PUBLISH, and decodes back to it, whole and split.
    #[test]
    fn publish_parts_and_payload_roundtrip(p in version().prop_flat_map(|v| (Just(v), arb_publish_parts(v)))) {
        let (v, publish) = p;
        assert_parts_roundtrip(&publish, v);
    }
}
