//! What codec errors become: the reason code each decode error gives, and the values the encoder
//! refuses (leaving its output untouched).

use super::*;
use DecodeError as E;

// ---- Error → reason code -----------------------------------------------------------------------------------

#[test]
fn reason_code_mapping() {
    use ReasonCode as R;
    let table = [
        (E::MalformedRemainingLength, R::MalformedPacket),
        (E::NonMinimalVarInt, R::MalformedPacket),
        (E::InvalidPacketType(0), R::MalformedPacket),
        (E::InvalidQoS(3), R::MalformedPacket),
        (E::Truncated, R::MalformedPacket),
        (E::InvalidUtf8, R::MalformedPacket),
        (E::NullCharacter, R::MalformedPacket),
        (E::ConnectReservedFlagSet, R::MalformedPacket),
        (
            E::InvalidSubscriptionOptions { options: 0xC0 },
            R::MalformedPacket,
        ),
        (E::UnknownProperty { id: 0x7F }, R::MalformedPacket),
        (E::PropertyLengthMismatch, R::MalformedPacket),
        (E::PacketTooLarge { size: 2, max: 1 }, R::PacketTooLarge),
        (
            E::UnsupportedProtocolVersion { level: 6 },
            R::UnsupportedProtocolVersion,
        ),
        (E::WildcardInTopicName, R::TopicNameInvalid),
        (E::InvalidProtocolName, R::ProtocolError),
        (
            E::ZeroPacketId {
                packet_type: PacketType::Publish,
            },
            R::ProtocolError,
        ),
        (E::EmptySubscription, R::ProtocolError),
        (E::DuplicateProperty { id: 1 }, R::ProtocolError),
        (
            E::PropertyNotAllowed {
                id: 0x11,
                packet: PropertyContext::Publish,
            },
            R::ProtocolError,
        ),
        (
            E::InvalidPropertyValue { id: 0x21, value: 0 },
            R::ProtocolError,
        ),
        (
            E::InvalidPropertyValue { id: 0x23, value: 0 },
            R::TopicAliasInvalid,
        ),
    ];
    for (e, r) in table {
        assert_eq!(e.reason_code(), r, "{e:?}");
        assert_eq!(
            e.connack_refusal().is_some(),
            matches!(e, E::UnsupportedProtocolVersion { .. })
        );
    }
}

// ---- Encoder errors ------------------------------------------------------------------------------------------

#[test]
fn encode_rejects_unencodable_values_and_leaves_out_untouched() {
    let long = "x".repeat(65_536);
    let mut out = BytesMut::from(&b"keep"[..]);
    let p = Packet::Publish(publish(&long, QoS::AtMostOnce, 0, b""));
    assert_eq!(
        encode(&p, V311, &mut out),
        Err(EncodeError::StringTooLong { len: 65_536 })
    );
    assert_eq!(&out[..], b"keep");
    let Packet::Publish(pp) = &p else {
        unreachable!()
    };
    assert_eq!(
        encode_publish_header(pp, V5, &mut out),
        Err(EncodeError::StringTooLong { len: 65_536 })
    );
    assert_eq!(&out[..], b"keep");
    let c = Properties {
        correlation_data: Some(Bytes::from(vec![0; 70_000])),
        ..Default::default()
    };
    let p = Packet::PubAck(PubResponse {
        properties: c,
        ..PubResponse::new(1)
    });
    assert_eq!(
        encode(&p, V5, &mut out),
        Err(EncodeError::BinaryTooLong { len: 70_000 })
    );
    assert_eq!(&out[..], b"keep");
    // Remaining length above 268,435,455 (a zeroed allocation: the pages are never touched).
    let big = Publish {
        payload: Bytes::from(vec![0u8; 268_435_456]),
        ..publish("t", QoS::AtMostOnce, 0, b"")
    };
    assert_eq!(
        encode_publish_header(&big, V311, &mut out),
        Err(EncodeError::PacketTooLarge { size: 268_435_459 })
    );
    assert_eq!(&out[..], b"keep");
    let mut sid = publish("t", QoS::AtMostOnce, 0, b"");
    sid.properties.subscription_identifiers = smallvec::smallvec![MAX_VAR_INT + 1];
    assert_eq!(
        encode(&Packet::Publish(sid), V5, &mut out),
        Err(EncodeError::VarIntTooLarge {
            value: MAX_VAR_INT + 1
        })
    );
    assert_eq!(&out[..], b"keep");
}

/// [`encode_publish_parts`] refuses what cannot be encoded and leaves `out` as it was, whether it fails
/// before writing (topic, remaining length) or part-way through the properties.
#[test]
fn encode_publish_parts_rejects_unencodable_parts_and_leaves_out_untouched() {
    let none = Properties::default();
    let long = vec![b'x'; 65_536];
    let base = PublishParts {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: b"t",
        packet_id: 1,
        properties: &none,
        payload_len: 0,
        delivery: Default::default(),
    };
    let mut out = BytesMut::from(&b"keep"[..]);
    let cases: [(PublishParts, ProtocolVersion, EncodeError); 3] = [
        (
            PublishParts {
                topic: &long,
                ..base
            },
            V311,
            EncodeError::StringTooLong { len: 65_536 },
        ),
        // 2 + 1 + 2 + payload: one byte over the largest remaining length (3.x)...
        (
            PublishParts {
                payload_len: MAX_VAR_INT as usize - 4,
                ..base
            },
            V311,
            EncodeError::PacketTooLarge { size: 268_435_456 },
        ),
        // ...and the same payload fits 3.x but not 5.0, whose property length takes one more byte.
        (
            PublishParts {
                payload_len: MAX_VAR_INT as usize - 5,
                ..base
            },
            V5,
            EncodeError::PacketTooLarge { size: 268_435_456 },
        ),
    ];
    for (parts, v, err) in cases {
        assert_eq!(encode_publish_parts(&parts, v, &mut out), Err(err));
        assert_eq!(&out[..], b"keep", "{err:?}");
    }
    let mut fits = BytesMut::new();
    let largest = PublishParts {
        payload_len: MAX_VAR_INT as usize - 5,
        ..base
    };
    encode_publish_parts(&largest, V311, &mut fits).unwrap();
    assert_eq!(&fits[..2], &[0x32, 0xFF]);
    // Properties fail while being written, after the topic: the header written so far is taken back.
    let bad_binary = Properties {
        correlation_data: Some(Bytes::from(vec![0; 70_000])),
        ..Default::default()
    };
    let bad_sid = Properties {
        subscription_identifiers: smallvec::smallvec![MAX_VAR_INT + 1],
        ..Default::default()
    };
    for (properties, err) in [
        (&bad_binary, EncodeError::BinaryTooLong { len: 70_000 }),
        (
            &bad_sid,
            EncodeError::VarIntTooLarge {
                value: MAX_VAR_INT + 1,
            },
        ),
    ] {
        let parts = PublishParts { properties, ..base };
        assert_eq!(encode_publish_parts(&parts, V5, &mut out), Err(err));
        assert_eq!(&out[..], b"keep", "{err:?}");
        // 3.x writes no properties: the same parts encode.
        let mut v3 = BytesMut::new();
        encode_publish_parts(&parts, V311, &mut v3).unwrap();
        assert_eq!(&v3[..], &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
    }
}
