//! Byte-for-byte examples: the specs' own examples, then a hand-written vector for every packet type in
//! every version it exists in.

use bytes::{Bytes, BytesMut};
use smallvec::smallvec;

use super::*;
use crate::codec::fixed_header::{read_var_int, VarInt};

/// 3.1.1 §2.2.3 Table 2.4 / 5.0 §1.5.5 Table 1-1: the Variable Byte Integer boundaries.
const REMAINING_LENGTH_TABLE: [(usize, &[u8]); 8] = [
    (0, &[0x00]),
    (127, &[0x7F]),
    (128, &[0x80, 0x01]),
    (16_383, &[0xFF, 0x7F]),
    (16_384, &[0x80, 0x80, 0x01]),
    (2_097_151, &[0xFF, 0xFF, 0x7F]),
    (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
];

#[test]
fn remaining_length_table_encodes_and_decodes() {
    for (value, bytes) in REMAINING_LENGTH_TABLE {
        let mut out = BytesMut::new();
        fixed_header::write_var_int(&mut out, value);
        assert_eq!(&out[..], bytes, "{value}");
        assert_eq!(fixed_header::var_int_len(value), bytes.len());
        match read_var_int(bytes) {
            VarInt::Complete(v, used, minimal) => {
                assert_eq!((v as usize, used, minimal), (value, bytes.len(), true));
            }
            _ => panic!("{value} did not decode"),
        }
        // Every proper prefix is "need more".
        for cut in 0..bytes.len() {
            assert!(
                matches!(read_var_int(&bytes[..cut]), VarInt::Incomplete),
                "{value} cut at {cut}"
            );
        }
    }
}

#[test]
fn remaining_length_table_in_real_packets() {
    // PUBLISH QoS 0 to "t" with payloads making the remaining length hit the table's boundaries.
    for (value, header) in REMAINING_LENGTH_TABLE.iter().take(6).skip(1) {
        let payload = vec![0xAB; value - 3];
        let mut bytes = vec![0x30];
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0x00, 0x01, b't']);
        bytes.extend_from_slice(&payload);
        let p = Publish {
            payload: Bytes::from(payload),
            ..publish("t", QoS::AtMostOnce, 0, b"")
        };
        let packet = Packet::Publish(p);
        let mut out = BytesMut::new();
        encode(&packet, V311, &mut out).unwrap();
        assert_eq!(&out[..], &bytes[..]);
        assert_decodes(&bytes, V311, &[packet]);
    }
}

/// 3.1.1 §1.5.3 Figure 1.3: "A𪛔" is 00 05 41 F0 AA 9B 94.
#[test]
fn utf8_string_example() {
    let topic = "A\u{2A6D4}";
    let bytes = pkt(0x30, &[0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94]);
    assert_wire(
        &Packet::Publish(publish(topic, QoS::AtMostOnce, 0, b"")),
        V311,
        &bytes,
    );
}

/// 3.1.1 §3.1.2.10 Figure 3.6: CONNECT variable header "MQTT" 4, flags 0xCE (user name, password, will
/// QoS 1, will flag, clean session), keep alive 10; completed with a payload.
#[test]
fn connect_v311_spec_example() {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A];
    body.extend(s(b"client"));
    body.extend(s(b"will/topic"));
    body.extend(s(b"bye"));
    body.extend(s(b"user"));
    body.extend(s(b"pass"));
    let c = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 10,
        client_id: "client".into(),
        will: Some(Box::new(LastWill {
            topic: "will/topic".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        })),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pass")),
        properties: Properties::default(),
    };
    assert_wire(&Packet::Connect(Box::new(c)), V311, &pkt(0x10, &body));
}

/// 5.0 §3.1.2.12 Figure 3-8: "MQTT" 5, flags 0xC2, keep alive 10, properties length 5, Session Expiry
/// Interval (0x11) = 10.
#[test]
fn connect_v5_spec_example() {
    let mut body = vec![
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xC2, 0x00, 0x0A, 0x05, 0x11, 0, 0, 0, 10,
    ];
    body.extend(s(b"cid"));
    body.extend(s(b"u"));
    body.extend(s(b"p"));
    let c = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: "cid".into(),
        will: None,
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties {
            session_expiry_interval: Some(10),
            ..Default::default()
        },
    };
    // Decoded the same whatever version the connection assumed.
    for v in ALL_VERSIONS {
        assert_decodes(
            &pkt(0x10, &body),
            v,
            &[Packet::Connect(Box::new(c.clone()))],
        );
    }
    assert_wire(&Packet::Connect(Box::new(c)), V5, &pkt(0x10, &body));
}

/// MQTT 3.1: "MQIsdp", level 3, clean session, keep alive 60, client id "paho/1".
#[test]
fn connect_v31_example() {
    let mut body = vec![
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C,
    ];
    body.extend(s(b"paho/1"));
    let c = Connect {
        protocol: V31,
        clean_start: true,
        keep_alive: 60,
        client_id: "paho/1".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    assert_wire(&Packet::Connect(Box::new(c)), V311, &pkt(0x10, &body));
}

/// 3.1.1 §3.3.2.3 Figure 3.11: topic "a/b", packet identifier 10.
#[test]
fn publish_spec_example() {
    let bytes = pkt(0x32, &[0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'x']);
    for v in [V31, V311] {
        assert_wire(
            &Packet::Publish(publish("a/b", QoS::AtLeastOnce, 10, b"x")),
            v,
            &bytes,
        );
    }
}

/// 3.1.1 §3.8.3 Figure 3.22: SUBSCRIBE "a/b" QoS 1, "c/d" QoS 2, packet identifier 10.
#[test]
fn subscribe_spec_example() {
    let bytes = [
        0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd',
        0x02,
    ];
    let sub = |f: &str, qos| SubscribeFilter {
        filter: f.into(),
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
    };
    let p = Packet::Subscribe(Subscribe {
        packet_id: 10,
        filters: vec![sub("a/b", QoS::AtLeastOnce), sub("c/d", QoS::ExactlyOnce)],
        properties: Properties::default(),
    });
    assert_wire(&p, V311, &bytes);
    assert_wire(&p, V31, &bytes);
}

/// 3.1.1 §3.9.3 Figure 3.26: SUBACK return codes 0, 1, 2 and 0x80.
#[test]
fn suback_spec_example() {
    let bytes = [0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80];
    let p = Packet::SubAck(SubAck {
        packet_id: 10,
        codes: vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
        properties: Properties::default(),
    });
    assert_wire(&p, V311, &bytes);
}

/// 3.1.1 §3.10.3 Figure 3.30: UNSUBSCRIBE "a/b", "c/d".
#[test]
fn unsubscribe_spec_example() {
    let bytes = [
        0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd',
    ];
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: 10,
        filters: vec!["a/b".into(), "c/d".into()],
        properties: Properties::default(),
    });
    assert_wire(&p, V311, &bytes);
}

#[test]
fn connack_vectors() {
    let ack = |sp, code| {
        Packet::ConnAck(ConnAck {
            session_present: sp,
            code,
            properties: Properties::default(),
        })
    };
    assert_wire(
        &ack(false, ReasonCode::Success),
        V31,
        &[0x20, 0x02, 0x00, 0x00],
    );
    assert_wire(
        &ack(true, ReasonCode::Success),
        V311,
        &[0x20, 0x02, 0x01, 0x00],
    );
    assert_wire(
        &ack(false, ReasonCode::NotAuthorized),
        V311,
        &[0x20, 0x02, 0x00, 0x05],
    );
    assert_wire(
        &ack(true, ReasonCode::Success),
        V5,
        &[0x20, 0x03, 0x01, 0x00, 0x00],
    );
    assert_wire(
        &ack(false, ReasonCode::Banned),
        V5,
        &[0x20, 0x03, 0x00, 0x8A, 0x00],
    );
    let with_props = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::Success,
        properties: Properties {
            receive_maximum: Some(20),
            maximum_qos: Some(1),
            ..Default::default()
        },
    });
    assert_wire(
        &with_props,
        V5,
        &[0x20, 0x08, 0x00, 0x00, 0x05, 0x21, 0x00, 0x14, 0x24, 0x01],
    );
}

/// The 3.x CONNACK return code mapping documented on `ConnAck::code`.
#[test]
fn connack_v3_code_mapping() {
    use ReasonCode::*;
    let table = [
        (Success, 0),
        (UnsupportedProtocolVersion, 1),
        (ClientIdentifierNotValid, 2),
        (ServerUnavailable, 3),
        (ServerBusy, 3),
        (UnspecifiedError, 3),
        (BadUserNameOrPassword, 4),
        (NotAuthorized, 5),
        (Banned, 5),
    ];
    for (code, wire) in table {
        for v in [V31, V311] {
            let mut out = BytesMut::new();
            encode(
                &Packet::ConnAck(ConnAck {
                    session_present: false,
                    code,
                    properties: Properties::default(),
                }),
                v,
                &mut out,
            )
            .unwrap();
            assert_eq!(&out[..], &[0x20, 0x02, 0x00, wire], "{code:?}");
        }
    }
    // Decoding 3..5 gives back the canonical reason codes.
    let back = [
        Success,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        ServerUnavailable,
        BadUserNameOrPassword,
        NotAuthorized,
    ];
    for (wire, code) in back.into_iter().enumerate() {
        let p = Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: Properties::default(),
        });
        assert_decodes(&[0x20, 0x02, 0x00, wire as u8], V311, &[p]);
    }
}

#[test]
fn publish_vectors() {
    let mut p = publish("t/1", QoS::ExactlyOnce, 0x1234, b"hi");
    p.dup = true;
    p.retain = true;
    let p = Packet::Publish(p);
    let v3 = [
        0x3D, 0x09, 0x00, 0x03, b't', b'/', b'1', 0x12, 0x34, b'h', b'i',
    ];
    assert_wire(&p, V31, &v3);
    assert_wire(&p, V311, &v3);
    assert_wire(
        &p,
        V5,
        &[
            0x3D, 0x0A, 0x00, 0x03, b't', b'/', b'1', 0x12, 0x34, 0x00, b'h', b'i',
        ],
    );
    // QoS 0: no packet identifier.
    assert_wire(
        &Packet::Publish(publish("t", QoS::AtMostOnce, 0, b"")),
        V311,
        &[0x30, 0x03, 0x00, 0x01, b't'],
    );
    // v5 with properties: topic alias 5, two subscription identifiers (PUBLISH may repeat them).
    let mut p5 = publish("t", QoS::AtMostOnce, 0, b"x");
    p5.properties.topic_alias = Some(5);
    p5.properties.subscription_identifiers = smallvec![1, 200];
    assert_wire(
        &Packet::Publish(p5),
        V5,
        &[
            0x30, 0x0D, 0x00, 0x01, b't', 0x08, 0x0B, 0x01, 0x0B, 0xC8, 0x01, 0x23, 0x00, 0x05,
            b'x',
        ],
    );
    // v5: empty topic name with a topic alias.
    let mut alias_only = publish("", QoS::AtMostOnce, 0, b"");
    alias_only.properties.topic_alias = Some(1);
    assert_wire(
        &Packet::Publish(alias_only),
        V5,
        &[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01],
    );
}

#[test]
fn publish_payload_is_a_slice_of_the_read_buffer() {
    let bytes = pkt(0x30, &[0x00, 0x01, b't', 1, 2, 3, 4]);
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, V311, MAX).unwrap() else {
        panic!()
    };
    assert_eq!(p.topic.as_bytes().as_ptr() as usize, start + 4);
    assert_eq!(p.payload.as_ptr() as usize, start + 5);
}

#[test]
fn pubresp_vectors() {
    type Make = fn(PubResponse) -> Packet;
    let kinds: [(u8, Make); 4] = [
        (0x40, Packet::PubAck),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ];
    for (first, make) in kinds {
        for v in ALL_VERSIONS {
            assert_wire(&make(PubResponse::new(7)), v, &[first, 0x02, 0x00, 0x07]);
        }
        // v5 short form: reason code without property length.
        let not_found = PubResponse {
            reason: ReasonCode::PacketIdentifierNotFound,
            ..PubResponse::new(7)
        };
        let unspecified = PubResponse {
            reason: ReasonCode::UnspecifiedError,
            ..PubResponse::new(7)
        };
        let rc = if first >= 0x60 {
            not_found
        } else {
            unspecified
        };
        let code = rc.reason as u8;
        assert_wire(&make(rc.clone()), V5, &[first, 0x03, 0x00, 0x07, code]);
        // Full form with a reason string and a user property.
        let mut full = rc;
        full.properties.reason_string = Some("r".into());
        full.properties
            .user_properties
            .push(("k".into(), "v".into()));
        assert_wire(
            &make(full),
            V5,
            &[
                first, 0x0F, 0x00, 0x07, code, 0x0B, 0x1F, 0x00, 0x01, b'r', 0x26, 0x00, 0x01,
                b'k', 0x00, 0x01, b'v',
            ],
        );
        // Success with an explicit empty property length (rl 4) also decodes.
        assert_decodes(
            &[first, 0x04, 0x00, 0x07, 0x00, 0x00],
            V5,
            &[make(PubResponse::new(7))],
        );
    }
}

#[test]
fn subscribe_v5_vector() {
    let p = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: "a/+".into(),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
                identifier: 0,
            },
        }],
        properties: Properties {
            subscription_identifiers: smallvec![3],
            ..Default::default()
        },
    });
    assert_wire(
        &p,
        V5,
        &[
            0x82, 0x0B, 0x00, 0x01, 0x02, 0x0B, 0x03, 0x00, 0x03, b'a', b'/', b'+', 0x2D,
        ],
    );
}

#[test]
fn suback_vectors() {
    let codes = vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized];
    let p = Packet::SubAck(SubAck {
        packet_id: 2,
        codes,
        properties: Properties::default(),
    });
    assert_wire(&p, V5, &[0x90, 0x05, 0x00, 0x02, 0x00, 0x01, 0x87]);
    // 3.x: every error code is written as 0x80 (3.1 has no failure code; Mosquitto sends 0x80).
    for v in [V31, V311] {
        let mut out = BytesMut::new();
        encode(&p, v, &mut out).unwrap();
        assert_eq!(&out[..], &[0x90, 0x04, 0x00, 0x02, 0x01, 0x80]);
    }
}

#[test]
fn unsubscribe_and_unsuback_vectors() {
    let u = Packet::Unsubscribe(Unsubscribe {
        packet_id: 3,
        filters: vec!["x".into()],
        properties: Properties::default(),
    });
    assert_wire(&u, V31, &[0xA2, 0x05, 0x00, 0x03, 0x00, 0x01, b'x']);
    assert_wire(&u, V5, &[0xA2, 0x06, 0x00, 0x03, 0x00, 0x00, 0x01, b'x']);
    let v3 = Packet::UnsubAck(UnsubAck {
        packet_id: 3,
        codes: vec![],
        properties: Properties::default(),
    });
    assert_wire(&v3, V31, &[0xB0, 0x02, 0x00, 0x03]);
    assert_wire(&v3, V311, &[0xB0, 0x02, 0x00, 0x03]);
    let v5 = Packet::UnsubAck(UnsubAck {
        packet_id: 3,
        codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        properties: Properties::default(),
    });
    assert_wire(&v5, V5, &[0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11]);
}

#[test]
fn ping_vectors() {
    for v in ALL_VERSIONS {
        assert_wire(&Packet::PingReq, v, &[0xC0, 0x00]);
        assert_wire(&Packet::PingResp, v, &[0xD0, 0x00]);
    }
}

#[test]
fn disconnect_vectors() {
    let normal = Packet::Disconnect(Disconnect {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    });
    for v in ALL_VERSIONS {
        assert_wire(&normal, v, &[0xE0, 0x00]);
    }
    let will = Packet::Disconnect(Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: Properties::default(),
    });
    assert_wire(&will, V5, &[0xE0, 0x01, 0x04]);
    let props = Packet::Disconnect(Disconnect {
        reason: ReasonCode::Success,
        properties: Properties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    });
    assert_wire(&props, V5, &[0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 0]);
    // Reason code with an explicit empty property length.
    assert_decodes(&[0xE0, 0x02, 0x00, 0x00], V5, &[normal]);
}

#[test]
fn auth_vectors() {
    let ok = Packet::Auth(Auth {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    });
    assert_wire(&ok, V5, &[0xF0, 0x00]);
    let cont = Packet::Auth(Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"\x01")),
            ..Default::default()
        },
    });
    assert_wire(
        &cont,
        V5,
        &[
            0xF0, 0x0E, 0x18, 0x0C, 0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', 0x16, 0x00,
            0x01, 0x01,
        ],
    );
    // Packet type 15 does not exist before 5.0.
    for v in [V31, V311] {
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&ok, v, &mut out),
            Err(EncodeError::NotInVersion {
                packet_type: PacketType::Auth
            })
        );
        assert!(out.is_empty());
    }
}

/// 3.1.1 allows a non-minimal remaining length (only 5.0 says MUST be minimal, [MQTT-1.5.5-1]).
#[test]
fn non_minimal_remaining_length_accepted_before_v5() {
    for v in [V31, V311] {
        assert_decodes(&[0xC0, 0x80, 0x00], v, &[Packet::PingReq]);
        assert_decodes(
            &[0x40, 0x82, 0x00, 0x00, 0x01],
            v,
            &[Packet::PubAck(PubResponse::new(1))],
        );
    }
}

#[test]
fn two_packets_in_one_buffer() {
    let mut bytes = pkt(0x30, &[0x00, 0x01, b'a', b'1']);
    bytes.extend(pkt(0x32, &[0x00, 0x01, b'b', 0x00, 0x05, b'2']));
    bytes.extend([0xC0, 0x00]);
    for v in ALL_VERSIONS {
        let mut second = publish("b", QoS::AtLeastOnce, 5, b"2");
        let mut first = publish("a", QoS::AtMostOnce, 0, b"1");
        if v == V5 {
            // The v5 form has a property length: rebuild the bytes.
            let mut b5 = pkt(0x30, &[0x00, 0x01, b'a', 0x00, b'1']);
            b5.extend(pkt(0x32, &[0x00, 0x01, b'b', 0x00, 0x05, 0x00, b'2']));
            b5.extend([0xC0, 0x00]);
            first.properties = Properties::default();
            second.properties = Properties::default();
            assert_decodes(
                &b5,
                v,
                &[
                    Packet::Publish(first),
                    Packet::Publish(second),
                    Packet::PingReq,
                ],
            );
        } else {
            assert_decodes(
                &bytes,
                v,
                &[
                    Packet::Publish(first),
                    Packet::Publish(second),
                    Packet::PingReq,
                ],
            );
        }
    }
}

#[test]
fn buffer_ending_mid_packet_keeps_the_bytes() {
    let mut bytes = pkt(0x30, &[0x00, 0x01, b'a', b'1']);
    let second = pkt(0x30, &[0x00, 0x01, b'b', b'2', b'3']);
    bytes.extend_from_slice(&second[..4]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        decode(&mut buf, V311, MAX),
        Ok(Some(Packet::Publish(_)))
    ));
    assert_eq!(decode(&mut buf, V311, MAX), Ok(None));
    assert_eq!(&buf[..], &second[..4]);
    buf.extend_from_slice(&second[4..]);
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, V311, MAX) else {
        panic!()
    };
    assert_eq!(&p.payload[..], b"23");
    assert!(buf.is_empty());
    // An empty buffer and a lone first byte are "need more" too.
    assert_eq!(decode(&mut BytesMut::new(), V311, MAX), Ok(None));
    assert_eq!(
        decode(&mut BytesMut::from(&[0x30][..]), V311, MAX),
        Ok(None)
    );
}

/// The size limit counts the whole packet, fixed header included: exactly `max` bytes pass.
#[test]
fn max_packet_size_boundary() {
    let bytes = pkt(0x30, &[0x00, 0x01, b't', 1, 2, 3]);
    let p = Publish {
        payload: Bytes::from_static(&[1, 2, 3]),
        ..publish("t", QoS::AtMostOnce, 0, b"")
    };
    assert_decodes_max(&bytes, V311, bytes.len(), &[Packet::Publish(p)]);
    assert_decode_err_max(
        &bytes,
        V311,
        bytes.len() - 1,
        DecodeError::PacketTooLarge { size: 8, max: 7 },
    );
}

// ---- The broker's per-message encoders ---------------------------------------------------------------------

/// [`encode_pub_response`] for every kind, version and a Success and failure reason: the 2-byte body
/// whenever the spec allows (3.x always; 5.0 Success), the reason code after the packet id otherwise.
/// The same bytes as [`encode`] of the [`PubResponse`], and they decode back (to Success in 3.x, which has
/// no reason code).
#[test]
fn pub_response_short_form_vectors() {
    use PubResponseKind::*;
    use ReasonCode::{NotAuthorized, PacketIdentifierNotFound, Success};
    #[rustfmt::skip]
    let table: [(PubResponseKind, ProtocolVersion, ReasonCode, &[u8]); 24] = [
        (PubAck, V31, Success, &[0x40, 0x02, 0x12, 0x34]),
        (PubAck, V311, Success, &[0x40, 0x02, 0x12, 0x34]),
        (PubAck, V5, Success, &[0x40, 0x02, 0x12, 0x34]),
        (PubAck, V31, NotAuthorized, &[0x40, 0x02, 0x12, 0x34]),
        (PubAck, V311, NotAuthorized, &[0x40, 0x02, 0x12, 0x34]),
        (PubAck, V5, NotAuthorized, &[0x40, 0x03, 0x12, 0x34, 0x87]),
        (PubRec, V31, Success, &[0x50, 0x02, 0x12, 0x34]),
        (PubRec, V311, Success, &[0x50, 0x02, 0x12, 0x34]),
        (PubRec, V5, Success, &[0x50, 0x02, 0x12, 0x34]),
        (PubRec, V31, NotAuthorized, &[0x50, 0x02, 0x12, 0x34]),
        (PubRec, V311, NotAuthorized, &[0x50, 0x02, 0x12, 0x34]),
        (PubRec, V5, NotAuthorized, &[0x50, 0x03, 0x12, 0x34, 0x87]),
        (PubRel, V31, Success, &[0x62, 0x02, 0x12, 0x34]),
        (PubRel, V311, Success, &[0x62, 0x02, 0x12, 0x34]),
        (PubRel, V5, Success, &[0x62, 0x02, 0x12, 0x34]),
        (PubRel, V31, PacketIdentifierNotFound, &[0x62, 0x02, 0x12, 0x34]),
        (PubRel, V311, PacketIdentifierNotFound, &[0x62, 0x02, 0x12, 0x34]),
        (PubRel, V5, PacketIdentifierNotFound, &[0x62, 0x03, 0x12, 0x34, 0x92]),
        (PubComp, V31, Success, &[0x70, 0x02, 0x12, 0x34]),
        (PubComp, V311, Success, &[0x70, 0x02, 0x12, 0x34]),
        (PubComp, V5, Success, &[0x70, 0x02, 0x12, 0x34]),
        (PubComp, V31, PacketIdentifierNotFound, &[0x70, 0x02, 0x12, 0x34]),
        (PubComp, V311, PacketIdentifierNotFound, &[0x70, 0x02, 0x12, 0x34]),
        (PubComp, V5, PacketIdentifierNotFound, &[0x70, 0x03, 0x12, 0x34, 0x92]),
    ];
    for (kind, v, reason, bytes) in table {
        let mut out = BytesMut::from(&b"before"[..]);
        encode_pub_response(kind, 0x1234, reason, v, &mut out);
        assert_eq!(&out[..6], b"before", "appends");
        assert_eq!(&out[6..], bytes, "{kind:?} {v:?} {reason:?}");
        assert_eq!(kind.packet_type() as u8, bytes[0] >> 4);
        let make: fn(PubResponse) -> Packet = match kind {
            PubAck => Packet::PubAck,
            PubRec => Packet::PubRec,
            PubRel => Packet::PubRel,
            PubComp => Packet::PubComp,
        };
        let sent = PubResponse {
            reason,
            ..PubResponse::new(0x1234)
        };
        let mut whole = BytesMut::new();
        encode(&make(sent.clone()), v, &mut whole).unwrap();
        assert_eq!(&whole[..], bytes, "encode() of the PubResponse");
        let received = if v == V5 {
            sent
        } else {
            PubResponse::new(0x1234)
        };
        assert_decodes(bytes, v, &[make(received)]);
    }
    // The packet id is written as given, both bytes.
    let mut out = BytesMut::new();
    encode_pub_response(PubAck, 0xFFFF, Success, V311, &mut out);
    encode_pub_response(PubComp, 1, PacketIdentifierNotFound, V5, &mut out);
    assert_eq!(
        &out[..],
        &[0x40, 0x02, 0xFF, 0xFF, 0x70, 0x03, 0x00, 0x01, 0x92]
    );
}

/// [`encode_disconnect`]: `E0 00` in 3.x and for Normal disconnection, `E0 01 <reason>` otherwise; the
/// same bytes as [`encode`] of the [`Disconnect`].
#[test]
fn disconnect_short_form_vectors() {
    #[rustfmt::skip]
    let table: [(ProtocolVersion, ReasonCode, &[u8]); 9] = [
        (V31, ReasonCode::Success, &[0xE0, 0x00]),
        (V311, ReasonCode::Success, &[0xE0, 0x00]),
        (V5, ReasonCode::Success, &[0xE0, 0x00]),
        (V31, ReasonCode::ServerShuttingDown, &[0xE0, 0x00]),
        (V311, ReasonCode::KeepAliveTimeout, &[0xE0, 0x00]),
        (V5, ReasonCode::ServerShuttingDown, &[0xE0, 0x01, 0x8B]),
        (V5, ReasonCode::KeepAliveTimeout, &[0xE0, 0x01, 0x8D]),
        (V5, ReasonCode::SessionTakenOver, &[0xE0, 0x01, 0x8E]),
        (V5, ReasonCode::ProtocolError, &[0xE0, 0x01, 0x82]),
    ];
    for (v, reason, bytes) in table {
        let mut out = BytesMut::from(&b"before"[..]);
        encode_disconnect(reason, v, &mut out);
        assert_eq!(&out[..6], b"before", "appends");
        assert_eq!(&out[6..], bytes, "{v:?} {reason:?}");
        let packet = Disconnect {
            reason,
            properties: Properties::default(),
        };
        let mut whole = BytesMut::new();
        encode(&Packet::Disconnect(packet.clone()), v, &mut whole).unwrap();
        assert_eq!(&whole[..], bytes, "encode() of the Disconnect");
        let received = if v == V5 {
            packet
        } else {
            Disconnect {
                reason: ReasonCode::Success,
                ..packet
            }
        };
        assert_decodes(bytes, v, &[Packet::Disconnect(received)]);
    }
}

/// [`encode_publish_parts`] against literal bytes: flags, packet id only for QoS 1/2, the empty v5
/// property block as one `0` byte, properties written from the borrowed set.
#[test]
fn publish_parts_vectors() {
    let none = Properties::default();
    let props = Properties {
        topic_alias: Some(5),
        subscription_identifiers: smallvec![1, 200],
        ..Default::default()
    };
    fn parts<'a>(
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: &'a [u8],
        packet_id: u16,
        properties: &'a Properties,
        payload_len: usize,
    ) -> PublishParts<'a> {
        PublishParts {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload_len,
            delivery: Default::default(),
        }
    }
    #[rustfmt::skip]
    let table: [(PublishParts, ProtocolVersion, &[u8]); 9] = [
        // 3.x QoS 0: no packet id, no properties even if the message has some.
        (parts(false, QoS::AtMostOnce, false, b"t", 9, &none, 2), V311, &[0x30, 0x05, 0x00, 0x01, b't']),
        (parts(false, QoS::AtMostOnce, false, b"t", 9, &props, 2), V31, &[0x30, 0x05, 0x00, 0x01, b't']),
        // DUP, QoS 2, RETAIN.
        (parts(true, QoS::ExactlyOnce, true, b"t/1", 0x1234, &none, 2), V311,
            &[0x3D, 0x09, 0x00, 0x03, b't', b'/', b'1', 0x12, 0x34]),
        (parts(false, QoS::AtLeastOnce, true, b"t/1", 0x1234, &none, 0), V311,
            &[0x33, 0x07, 0x00, 0x03, b't', b'/', b'1', 0x12, 0x34]),
        (parts(true, QoS::AtLeastOnce, false, b"t/1", 0x1234, &none, 0), V31,
            &[0x3A, 0x07, 0x00, 0x03, b't', b'/', b'1', 0x12, 0x34]),
        // 5.0 without properties: the property length 0.
        (parts(true, QoS::ExactlyOnce, true, b"t/1", 0x1234, &none, 2), V5,
            &[0x3D, 0x0A, 0x00, 0x03, b't', b'/', b'1', 0x12, 0x34, 0x00]),
        (parts(false, QoS::AtMostOnce, false, b"t", 0, &none, 0), V5, &[0x30, 0x04, 0x00, 0x01, b't', 0x00]),
        // 5.0 with properties: topic alias 5, subscription identifiers 1 and 200.
        (parts(false, QoS::AtMostOnce, false, b"t", 0, &props, 1), V5,
            &[0x30, 0x0D, 0x00, 0x01, b't', 0x08, 0x0B, 0x01, 0x0B, 0xC8, 0x01, 0x23, 0x00, 0x05]),
        // Empty topic (5.0, with a topic alias).
        (parts(false, QoS::AtLeastOnce, false, b"", 7, &props, 0), V5,
            &[0x32, 0x0D, 0x00, 0x00, 0x00, 0x07, 0x08, 0x0B, 0x01, 0x0B, 0xC8, 0x01, 0x23, 0x00, 0x05]),
    ];
    for (p, v, bytes) in table {
        let mut out = BytesMut::from(&b"before"[..]);
        encode_publish_parts(&p, v, &mut out).unwrap();
        assert_eq!(&out[..6], b"before", "appends");
        assert_eq!(&out[6..], bytes, "{p:?} {v:?}");
        // publish_len counts the header and the payload.
        let len = publish_len(v, p.topic.len(), p.qos, p.properties, p.payload_len);
        assert_eq!(len, bytes.len() + p.payload_len, "{p:?} {v:?}");
    }
}

/// The remaining length of [`encode_publish_parts`] counts the payload it does not write: every
/// boundary of the Variable Byte Integer table, up to the largest, without allocating the payloads.
#[test]
fn publish_parts_remaining_length_table() {
    let none = Properties::default();
    for (value, rl) in REMAINING_LENGTH_TABLE.iter().skip(1) {
        // 3.1.1 QoS 0 "t": 3 bytes of variable header.
        let p = PublishParts {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: b"t",
            packet_id: 0,
            properties: &none,
            payload_len: value - 3,
            delivery: Default::default(),
        };
        let mut expected = vec![0x30];
        expected.extend_from_slice(rl);
        expected.extend_from_slice(&[0x00, 0x01, b't']);
        let mut out = BytesMut::new();
        encode_publish_parts(&p, V311, &mut out).unwrap();
        assert_eq!(&out[..], &expected[..], "{value}");
        // 5.0 QoS 2 "t": topic, packet id and property length, 6 bytes.
        let p = PublishParts {
            qos: QoS::ExactlyOnce,
            packet_id: 0xABCD,
            payload_len: value - 6,
            ..p
        };
        let mut expected = vec![0x34];
        expected.extend_from_slice(rl);
        expected.extend_from_slice(&[0x00, 0x01, b't', 0xAB, 0xCD, 0x00]);
        let mut out = BytesMut::new();
        encode_publish_parts(&p, V5, &mut out).unwrap();
        assert_eq!(&out[..], &expected[..], "{value}");
    }
    // A topic of 65,535 bytes: the largest length prefix.
    let topic = vec![b'a'; 65_535];
    let p = PublishParts {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: &topic,
        packet_id: 1,
        properties: &none,
        payload_len: 0,
        delivery: Default::default(),
    };
    let mut out = BytesMut::new();
    encode_publish_parts(&p, V5, &mut out).unwrap();
    // Remaining length 2 + 65,535 + 2 + 1 = 65,540 = 0x84 0x80 0x04.
    assert_eq!(&out[..6], &[0x32, 0x84, 0x80, 0x04, 0xFF, 0xFF]);
    assert_eq!(&out[6 + 65_535..], &[0x00, 0x01, 0x00]);
    assert_eq!(out.len(), 4 + 65_540);
}
