//! The specs' own examples, byte for byte: the Variable Byte Integer table (alone and as a real
//! packet's remaining length), the UTF-8 string figure, and the CONNECT, PUBLISH, SUBSCRIBE, SUBACK and
//! UNSUBSCRIBE figures of 3.1.1 and 5.0 (and a 3.1 CONNECT).

use bytes::{Bytes, BytesMut};

use super::super::*;
use super::REMAINING_LENGTH_TABLE;
use crate::codec::fixed_header::{read_var_int, VarInt};

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
