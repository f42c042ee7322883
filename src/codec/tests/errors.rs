//! One test per decoder rule, each with its bad bytes and the exact error. Each quotes the rule. The
//! fixed header and the packets here; v5 properties in `property_errors.rs`; what errors become
//! (reason codes) and what the encoder refuses in `reason_codes.rs`.

use bytes::Bytes;

use super::*;
use DecodeError as E;
// ---- Fixed header -------------------------------------------------------------------------------------

/// 3.1.1 §2.2.3 / 5.0 §1.5.5: at most four bytes of remaining length.
#[test]
fn remaining_length_over_four_bytes() {
    for v in ALL_VERSIONS {
        assert_decode_err(
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            v,
            E::MalformedRemainingLength,
        );
        assert_decode_err(
            &[0xC0, 0x80, 0x80, 0x80, 0x80],
            v,
            E::MalformedRemainingLength,
        );
    }
}

/// 5.0 [MQTT-1.5.5-1]: Variable Byte Integers use the fewest bytes (remaining length, property length,
/// subscription identifier, and CONNECT once its level says 5.0).
#[test]
fn non_minimal_var_int_in_v5() {
    assert_decode_err(&[0xC0, 0x80, 0x00], V5, E::NonMinimalVarInt);
    assert_decode_err(&[0x40, 0x82, 0x00, 0x00, 0x01], V5, E::NonMinimalVarInt);
    // Property length 0 written as 0x80 0x00.
    assert_decode_err(
        &pkt(0x30, &[0x00, 0x01, b't', 0x80, 0x00]),
        V5,
        E::NonMinimalVarInt,
    );
    // Subscription identifier 1 written as 0x81 0x00.
    assert_decode_err(
        &publish_v5_props(&[0x0B, 0x81, 0x00]),
        V5,
        E::NonMinimalVarInt,
    );
    // A v5 CONNECT with a non-minimal remaining length, read before the version is known.
    let c = connect(b"MQTT", 5, 0x02, &[0x00, 0x00, 0x00]);
    let mut bad = vec![0x10, c[1] | 0x80, 0x00];
    bad.extend_from_slice(&c[2..]);
    assert_decode_err(&bad, V311, E::NonMinimalVarInt);
    // The same for 3.1.1 is fine.
    let c4 = connect(b"MQTT", 4, 0x02, &s(b"c"));
    let mut ok = vec![0x10, c4[1] | 0x80, 0x00];
    ok.extend_from_slice(&c4[2..]);
    assert_decodes(&ok, V311, &[Packet::Connect(Box::new(connect_c(V311)))]);
}

/// The CONNECT that `connect(name, level, 0x02 or 0x03, [properties] "c")` describes.
fn connect_c(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A v5 property Variable Byte Integer longer than four bytes.
#[test]
fn property_var_int_over_four_bytes() {
    assert_decode_err(
        &pkt(0x30, &[0x00, 0x01, b't', 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        V5,
        E::MalformedVarInt,
    );
    assert_decode_err(
        &publish_v5_props(&[0x0B, 0xFF, 0xFF, 0xFF, 0xFF]),
        V5,
        E::MalformedVarInt,
    );
}

/// The size limit is enforced from the fixed header alone, before the body is buffered.
#[test]
fn packet_too_large_from_the_header() {
    for v in ALL_VERSIONS {
        let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
        assert_decode_err_max(
            &header,
            v,
            1000,
            E::PacketTooLarge {
                size: 268_435_460,
                max: 1000,
            },
        );
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            decode(&mut buf, v, 1000),
            Err(E::PacketTooLarge {
                size: 268_435_460,
                max: 1000
            })
        );
    }
}

/// 3.1.1 §2.2.1 / 5.0 §2.1.2: type 0 is reserved; 15 is reserved before 5.0.
#[test]
fn invalid_packet_types() {
    for v in ALL_VERSIONS {
        assert_decode_err(&[0x00, 0x00], v, E::InvalidPacketType(0));
        assert_decode_err(&[0x00], v, E::InvalidPacketType(0));
    }
    for v in [V31, V311] {
        assert_decode_err(&[0xF0, 0x00], v, E::InvalidPacketType(15));
    }
}

/// 3.1.1 §2.2.2 [MQTT-2.2.2-1/2] / 5.0 §2.1.3: the flags of every packet but PUBLISH are fixed
/// (PUBREL, SUBSCRIBE, UNSUBSCRIBE 0010, others 0000).
#[test]
fn invalid_reserved_flags() {
    for t in [1u8, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
        let packet_type = PacketType::from_first_byte(t << 4).unwrap();
        for flags in 0..16u8 {
            if flags == packet_type.required_flags() {
                continue;
            }
            assert_decode_err(
                &[(t << 4) | flags, 0x00],
                V5,
                E::InvalidReservedFlags { packet_type, flags },
            );
        }
    }
}

// ---- PUBLISH --------------------------------------------------------------------------------------------

/// [MQTT-3.3.1-4]: a PUBLISH with both QoS bits set is malformed.
#[test]
fn publish_qos_3() {
    for v in ALL_VERSIONS {
        assert_decode_err(
            &pkt(0x36, &[0x00, 0x01, b't', 0x00, 0x01]),
            v,
            E::InvalidQoS(3),
        );
    }
}

/// [MQTT-3.3.1-2] (3.1.1 and 5.0): DUP must be 0 for QoS 0. (3.1 has no such rule; accepted.)
#[test]
fn publish_dup_with_qos_0() {
    assert_decode_err(&pkt(0x38, &[0x00, 0x01, b't']), V311, E::DupWithQoS0);
    assert_decode_err(&pkt(0x38, &[0x00, 0x01, b't', 0x00]), V5, E::DupWithQoS0);
    let mut p = publish("t", QoS::AtMostOnce, 0, b"");
    p.dup = true;
    assert_decodes(&pkt(0x38, &[0x00, 0x01, b't']), V31, &[Packet::Publish(p)]);
}

/// [MQTT-2.3.1-1]: QoS>0 PUBLISH has a non-zero packet identifier.
#[test]
fn publish_zero_packet_id() {
    for v in ALL_VERSIONS {
        for first in [0x32, 0x34] {
            assert_decode_err(
                &pkt(first, &[0x00, 0x01, b't', 0x00, 0x00, 0x00]),
                v,
                E::ZeroPacketId {
                    packet_type: PacketType::Publish,
                },
            );
        }
    }
}

/// [MQTT-3.3.2-2] (3.1.1) / [MQTT-3.3.2-2] (5.0): no wildcards in a Topic Name.
#[test]
fn publish_wildcard_topic() {
    for v in ALL_VERSIONS {
        for topic in [&b"a/+"[..], b"#", b"a/#", b"+"] {
            let mut body = s(topic);
            body.push(0x00);
            assert_decode_err(&pkt(0x30, &body), v, E::WildcardInTopicName);
        }
    }
}

/// 3.1.1 [MQTT-4.7.3-1]: topic names are at least one character; 5.0 §3.3.2.3.4: an empty topic needs a
/// Topic Alias.
#[test]
fn publish_empty_topic() {
    for v in [V31, V311] {
        assert_decode_err(&pkt(0x30, &[0x00, 0x00, b'x']), v, E::EmptyTopicName);
    }
    assert_decode_err(&pkt(0x30, &[0x00, 0x00, 0x00, b'x']), V5, E::EmptyTopicName);
}

/// [MQTT-1.5.3-1] (3.1.1) / [MQTT-1.5.4-1] (5.0): well-formed UTF-8 only (no overlong forms, no
/// surrogates, no stray bytes).
#[test]
fn invalid_utf8() {
    for bad in [
        &[0xC0, 0x80][..],
        &[0xED, 0xA0, 0x80],
        &[0xFF],
        &[b'a', 0xE2, 0x82],
        &[0xF4, 0x90, 0x80, 0x80],
    ] {
        for v in [V31, V311] {
            let mut body = s(bad);
            body.push(b'x');
            assert_decode_err(&pkt(0x30, &body), v, E::InvalidUtf8);
        }
        // In a client id, a user name, a filter.
        assert_decode_err(&connect(b"MQTT", 4, 0x02, &s(bad)), V311, E::InvalidUtf8);
        let mut sub = vec![0x00, 0x01];
        sub.extend(s(bad));
        sub.push(0x00);
        assert_decode_err(&pkt(0x82, &sub), V311, E::InvalidUtf8);
    }
}

/// [MQTT-1.5.3-2] (3.1.1) / [MQTT-1.5.4-2] (5.0): U+0000 is not allowed in a string.
#[test]
fn null_character() {
    for v in ALL_VERSIONS {
        let mut body = s(b"a\0b");
        body.extend([0x00, 0x00]);
        assert_decode_err(&pkt(0x30, &body), v, E::NullCharacter);
    }
    assert_decode_err(
        &connect(b"MQTT", 4, 0x02, &s(b"\0")),
        V311,
        E::NullCharacter,
    );
    let mut unsub = vec![0x00, 0x01];
    unsub.extend(s(b"a/\0"));
    assert_decode_err(&pkt(0xA2, &unsub), V311, E::NullCharacter);
}

// ---- CONNECT --------------------------------------------------------------------------------------------

/// 3.1.1 §3.1.2.1 / 5.0 §3.1.2.1: the protocol name is "MQTT" ("MQIsdp" for 3.1).
#[test]
fn invalid_protocol_name() {
    for name in [&b"MQTX"[..], b"mqtt", b"", b"MQIsdpX"] {
        let e = E::InvalidProtocolName;
        assert_decode_err(&connect(name, 4, 0x02, &s(b"c")), V311, e);
        assert_eq!(e.connack_refusal(), None);
    }
}

/// 3.1.1 [MQTT-3.1.2-2] / 5.0 §3.1.2.2: an unsupported level is answered with CONNACK 0x01 / 0x84.
#[test]
fn unsupported_protocol_version() {
    for (name, level) in [
        (&b"MQTT"[..], 3u8),
        (b"MQTT", 6),
        (b"MQTT", 0),
        (b"MQIsdp", 4),
        (b"MQIsdp", 5),
    ] {
        let e = E::UnsupportedProtocolVersion { level };
        assert_decode_err(&connect(name, level, 0x02, &s(b"c")), V311, e);
        assert_eq!(
            e.connack_refusal(),
            Some(ReasonCode::UnsupportedProtocolVersion)
        );
        assert_eq!(e.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    }
    // Even when the rest of the packet is garbage: the level is judged first.
    assert_decode_err(
        &pkt(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x07]),
        V311,
        E::UnsupportedProtocolVersion { level: 7 },
    );
}

/// 3.1.1 / 5.0 [MQTT-3.1.2-3]: the reserved connect flag is 0 (3.1 does not say so; accepted).
#[test]
fn connect_reserved_flag() {
    assert_decode_err(
        &connect(b"MQTT", 4, 0x03, &s(b"c")),
        V311,
        E::ConnectReservedFlagSet,
    );
    assert_decode_err(
        &connect(b"MQTT", 5, 0x03, &[&[0x00][..], &s(b"c")].concat()),
        V5,
        E::ConnectReservedFlagSet,
    );
    assert_decodes(
        &connect(b"MQIsdp", 3, 0x03, &s(b"c")),
        V311,
        &[Packet::Connect(Box::new(connect_c(V31)))],
    );
}

/// 3.1.1 [MQTT-3.1.2-13], [MQTT-3.1.2-15] / 5.0 [MQTT-3.1.2-11], [MQTT-3.1.2-13]: without the will flag,
/// will QoS and will retain are 0.
#[test]
fn will_flags_without_will() {
    for flags in [0x0A, 0x12, 0x22, 0x3A] {
        assert_decode_err(
            &connect(b"MQTT", 4, flags, &s(b"c")),
            V311,
            E::WillFlagsWithoutWill { flags },
        );
        assert_decode_err(
            &connect(b"MQTT", 5, flags, &[&[0x00][..], &s(b"c")].concat()),
            V5,
            E::WillFlagsWithoutWill { flags },
        );
    }
}

/// 3.1.1 §3.1.2.6 / 5.0 §3.1.2.6: will QoS 3 is malformed.
#[test]
fn will_qos_3() {
    let mut rest = s(b"c");
    rest.extend(s(b"w"));
    rest.extend(s(b"m"));
    assert_decode_err(&connect(b"MQTT", 4, 0x1E, &rest), V311, E::InvalidQoS(3));
    assert_decode_err(&connect(b"MQIsdp", 3, 0x1E, &rest), V311, E::InvalidQoS(3));
}

/// [MQTT-4.7.1-1] / [MQTT-4.7.3-1]: the will topic is a topic name: no wildcards, not empty.
#[test]
fn will_topic_rules() {
    for (topic, e) in [
        (&b"a/#"[..], E::WildcardInTopicName),
        (b"+", E::WildcardInTopicName),
        (b"", E::EmptyTopicName),
    ] {
        let mut rest = s(b"c");
        rest.extend(s(topic));
        rest.extend(s(b"m"));
        assert_decode_err(&connect(b"MQTT", 4, 0x06, &rest), V311, e);
    }
}

/// 3.1.1 [MQTT-3.1.2-22] (and 3.1): a password needs a user name. 5.0 allows it.
#[test]
fn password_without_username() {
    let mut rest = s(b"c");
    rest.extend(s(b"pw"));
    assert_decode_err(
        &connect(b"MQTT", 4, 0x42, &rest),
        V311,
        E::PasswordWithoutUsername,
    );
    assert_decode_err(
        &connect(b"MQIsdp", 3, 0x42, &rest),
        V311,
        E::PasswordWithoutUsername,
    );
    let v5 = connect(b"MQTT", 5, 0x42, &[&[0x00][..], &rest].concat());
    let c = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    };
    assert_decodes(&v5, V311, &[Packet::Connect(Box::new(c))]);
}

/// A CONNECT whose flags promise fields that are not there, or with bytes after the last field.
#[test]
fn connect_truncated_and_trailing() {
    // User name flag but no user name.
    assert_decode_err(&connect(b"MQTT", 4, 0x82, &s(b"c")), V311, E::Truncated);
    // A byte after the client id.
    assert_decode_err(
        &connect(b"MQTT", 4, 0x02, &[&s(b"c")[..], &[0x00]].concat()),
        V311,
        E::TrailingBytes { count: 1 },
    );
    // String length beyond the packet.
    assert_decode_err(
        &connect(b"MQTT", 4, 0x02, &[0x00, 0x09, b'c']),
        V311,
        E::Truncated,
    );
    // Packet ends inside the variable header.
    assert_decode_err(
        &pkt(
            0x10,
            &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00],
        ),
        V311,
        E::Truncated,
    );
}

// ---- CONNACK --------------------------------------------------------------------------------------------

/// 3.1.1 [MQTT-3.2.2-1] / 5.0 §3.2.2.1: acknowledge flags bits 7-1 reserved; [MQTT-3.2.2-4] (3.1.1) /
/// [MQTT-3.2.2-6] (5.0): session present is 0 with a refusal.
#[test]
fn connack_flags() {
    assert_decode_err(
        &[0x20, 0x02, 0x02, 0x00],
        V311,
        E::InvalidConnAckFlags { flags: 0x02 },
    );
    assert_decode_err(
        &[0x20, 0x03, 0x80, 0x00, 0x00],
        V5,
        E::InvalidConnAckFlags { flags: 0x80 },
    );
    assert_decode_err(
        &[0x20, 0x02, 0x01, 0x05],
        V311,
        E::InvalidConnAckFlags { flags: 0x01 },
    );
    assert_decode_err(
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        V5,
        E::InvalidConnAckFlags { flags: 0x01 },
    );
}

/// 3.1.1 §3.2.2.3: return codes 6-255 are reserved; 5.0: only the CONNACK reason codes.
#[test]
fn connack_invalid_codes() {
    let connack = PacketType::ConnAck;
    assert_decode_err(
        &[0x20, 0x02, 0x00, 0x06],
        V311,
        E::InvalidReasonCode {
            code: 6,
            packet_type: connack,
        },
    );
    assert_decode_err(
        &[0x20, 0x02, 0x00, 0x80],
        V31,
        E::InvalidReasonCode {
            code: 0x80,
            packet_type: connack,
        },
    );
    // 0x04 and 0x10 are reason codes, but not CONNACK ones; 0x03 is none.
    for code in [0x01, 0x03, 0x04, 0x10, 0x8E, 0x91] {
        assert_decode_err(
            &[0x20, 0x03, 0x00, code, 0x00],
            V5,
            E::InvalidReasonCode {
                code,
                packet_type: connack,
            },
        );
    }
}

#[test]
fn connack_wrong_length() {
    assert_decode_err(
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        V311,
        E::TrailingBytes { count: 1 },
    );
    assert_decode_err(&[0x20, 0x01, 0x00], V311, E::Truncated);
    // v5 CONNACK has no short form: the property length is required.
    assert_decode_err(&[0x20, 0x02, 0x00, 0x00], V5, E::Truncated);
}

// ---- PUBACK / PUBREC / PUBREL / PUBCOMP ------------------------------------------------------------------

#[test]
fn pubresp_rules() {
    for (first, packet_type) in [
        (0x40, PacketType::PubAck),
        (0x50, PacketType::PubRec),
        (0x62, PacketType::PubRel),
        (0x70, PacketType::PubComp),
    ] {
        for v in ALL_VERSIONS {
            // [MQTT-2.3.1-1]-style: packet identifiers are non-zero.
            assert_decode_err(
                &[first, 0x02, 0x00, 0x00],
                v,
                E::ZeroPacketId { packet_type },
            );
            assert_decode_err(&[first, 0x01, 0x00], v, E::Truncated);
            assert_decode_err(&[first, 0x00], v, E::Truncated);
        }
        for v in [V31, V311] {
            assert_decode_err(
                &[first, 0x03, 0x00, 0x01, 0x00],
                v,
                E::TrailingBytes { count: 1 },
            );
        }
        // 5.0: only that packet's reason codes ([MQTT-3.4.2-1] etc.).
        let bad = if first >= 0x60 { 0x10 } else { 0x92 };
        assert_decode_err(
            &[first, 0x03, 0x00, 0x01, bad],
            V5,
            E::InvalidReasonCode {
                code: bad,
                packet_type,
            },
        );
        // Property length beyond the packet.
        assert_decode_err(
            &[first, 0x04, 0x00, 0x01, 0x00, 0x05],
            V5,
            E::PropertyLengthMismatch,
        );
        // Bytes after the properties.
        assert_decode_err(
            &[first, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00],
            V5,
            E::TrailingBytes { count: 1 },
        );
    }
}

// ---- SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK ---------------------------------------------------------

#[test]
fn subscribe_rules() {
    let sub = PacketType::Subscribe;
    for v in ALL_VERSIONS {
        let props: &[u8] = if v == V5 { &[0x00] } else { &[] };
        let body = |pid: &[u8], tail: &[u8]| pkt(0x82, &[pid, props, tail].concat());
        // [MQTT-2.3.1-1]: non-zero packet identifier.
        assert_decode_err(
            &body(&[0, 0], &[&s(b"a")[..], &[0]].concat()),
            v,
            E::ZeroPacketId { packet_type: sub },
        );
        // 3.1.1 [MQTT-3.8.3-3] / 5.0 [MQTT-3.8.3-2]: at least one filter.
        assert_decode_err(&body(&[0, 1], &[]), v, E::EmptySubscription);
        // Requested QoS 3 is malformed.
        assert_decode_err(
            &body(&[0, 1], &[&s(b"a")[..], &[3]].concat()),
            v,
            E::InvalidQoS(3),
        );
        // A filter without its options byte.
        assert_decode_err(&body(&[0, 1], &s(b"a")), v, E::Truncated);
    }
    // 3.x [MQTT-3-8.3-4]: the upper six bits of the requested QoS byte are 0 (Mosquitto rejects them in
    // 3.1 too).
    for v in [V31, V311] {
        for options in [0x04, 0x08, 0x10, 0x80, 0xFD] {
            assert_decode_err(
                &pkt(0x82, &[&[0, 1][..], &s(b"a"), &[options]].concat()),
                v,
                E::InvalidSubscriptionOptions { options },
            );
        }
    }
    // 5.0 [MQTT-3.8.3-5]: bits 7-6 reserved; Retain Handling 3 is malformed.
    for options in [0x40, 0x80, 0x30, 0x31] {
        assert_decode_err(
            &pkt(0x82, &[&[0, 1, 0][..], &s(b"a"), &[options]].concat()),
            V5,
            E::InvalidSubscriptionOptions { options },
        );
    }
}

#[test]
fn suback_rules() {
    let t = PacketType::SubAck;
    for v in ALL_VERSIONS {
        assert_decode_err(
            &[0x90, 0x03, 0x00, 0x00, 0x00],
            v,
            E::ZeroPacketId { packet_type: t },
        );
    }
    // [MQTT-3.9.3-2]: 3.x codes other than 0, 1, 2, 0x80 are reserved.
    for code in [0x03, 0x7F, 0x81, 0x87] {
        assert_decode_err(
            &[0x90, 0x03, 0x00, 0x01, code],
            V311,
            E::InvalidReasonCode {
                code,
                packet_type: t,
            },
        );
    }
    // 5.0 SUBACK table.
    for code in [0x03, 0x04, 0x10, 0x81, 0x92] {
        assert_decode_err(
            &[0x90, 0x04, 0x00, 0x01, 0x00, code],
            V5,
            E::InvalidReasonCode {
                code,
                packet_type: t,
            },
        );
    }
}

#[test]
fn unsubscribe_rules() {
    let t = PacketType::Unsubscribe;
    for v in ALL_VERSIONS {
        let props: &[u8] = if v == V5 { &[0x00] } else { &[] };
        assert_decode_err(
            &pkt(0xA2, &[&[0, 0][..], props, &s(b"a")].concat()),
            v,
            E::ZeroPacketId { packet_type: t },
        );
        // [MQTT-3.10.3-2]: at least one filter.
        assert_decode_err(
            &pkt(0xA2, &[&[0, 1][..], props].concat()),
            v,
            E::EmptyUnsubscribe,
        );
        assert_decode_err(
            &pkt(0xA2, &[&[0, 1][..], props, &[0x00]].concat()),
            v,
            E::Truncated,
        );
    }
}

#[test]
fn unsuback_rules() {
    let t = PacketType::UnsubAck;
    for v in ALL_VERSIONS {
        assert_decode_err(
            &[0xB0, 0x02, 0x00, 0x00],
            v,
            E::ZeroPacketId { packet_type: t },
        );
    }
    for v in [V31, V311] {
        assert_decode_err(
            &[0xB0, 0x03, 0x00, 0x01, 0x00],
            v,
            E::TrailingBytes { count: 1 },
        );
    }
    for code in [0x01, 0x02, 0x10, 0x81] {
        assert_decode_err(
            &[0xB0, 0x04, 0x00, 0x01, 0x00, code],
            V5,
            E::InvalidReasonCode {
                code,
                packet_type: t,
            },
        );
    }
}

// ---- PINGREQ / PINGRESP / DISCONNECT / AUTH ---------------------------------------------------------------

#[test]
fn body_where_none_belongs() {
    for v in ALL_VERSIONS {
        assert_decode_err(&[0xC0, 0x01, 0x00], v, E::TrailingBytes { count: 1 });
        assert_decode_err(&[0xD0, 0x02, 0x00, 0x00], v, E::TrailingBytes { count: 2 });
    }
    for v in [V31, V311] {
        assert_decode_err(&[0xE0, 0x01, 0x00], v, E::TrailingBytes { count: 1 });
    }
}

#[test]
fn disconnect_and_auth_reason_codes() {
    for code in [0x01, 0x10, 0x84, 0x85, 0x92] {
        assert_decode_err(
            &[0xE0, 0x01, code],
            V5,
            E::InvalidReasonCode {
                code,
                packet_type: PacketType::Disconnect,
            },
        );
    }
    for code in [0x01, 0x04, 0x80, 0x8C] {
        assert_decode_err(
            &[0xF0, 0x01, code],
            V5,
            E::InvalidReasonCode {
                code,
                packet_type: PacketType::Auth,
            },
        );
    }
    assert_decode_err(
        &[0xE0, 0x03, 0x00, 0x00, 0x00],
        V5,
        E::TrailingBytes { count: 1 },
    );
}
