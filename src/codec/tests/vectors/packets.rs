//! A hand-written vector for every packet type in every version it exists in: CONNACK (and the 3.x
//! return code mapping), PUBLISH, the publish responses, SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK,
//! PINGREQ and PINGRESP, DISCONNECT and AUTH.

use bytes::{Bytes, BytesMut};
use smallvec::smallvec;

use super::super::*;

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
