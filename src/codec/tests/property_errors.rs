//! The decoder's rules for v5 properties, each with its bad bytes and the exact error; each quotes
//! the rule.

use super::*;
use DecodeError as E;

// ---- v5 properties ----------------------------------------------------------------------------------------

/// 5.0 §2.2.2.2: only the identifiers of Table 2-4 exist.
#[test]
fn unknown_property() {
    for id in [0x00, 0x04, 0x0A, 0x14, 0x20, 0x2B, 0x7F, 0x80, 0xFF] {
        assert_decode_err(
            &publish_v5_props(&[id, 0x00]),
            V5,
            E::UnknownProperty { id },
        );
    }
}

/// "It is a Protocol Error to include the X more than once" (every single-valued property).
#[test]
fn duplicate_property() {
    assert_decode_err(
        &publish_v5_props(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
        V5,
        E::DuplicateProperty { id: 0x02 },
    );
    assert_decode_err(
        &publish_v5_props(&[0x01, 0, 0x01, 1]),
        V5,
        E::DuplicateProperty { id: 0x01 },
    );
    assert_decode_err(
        &publish_v5_props(&[0x03, 0, 1, b'a', 0x03, 0, 0]),
        V5,
        E::DuplicateProperty { id: 0x03 },
    );
    assert_decode_err(
        &publish_v5_props(&[0x23, 0, 1, 0x23, 0, 1]),
        V5,
        E::DuplicateProperty { id: 0x23 },
    );
    // CONNACK with two Maximum QoS.
    assert_decode_err(
        &[0x20, 0x07, 0x00, 0x00, 0x04, 0x24, 0x00, 0x24, 0x01],
        V5,
        E::DuplicateProperty { id: 0x24 },
    );
    // SUBSCRIBE: one Subscription Identifier at most (§3.8.2.1.2) ...
    let sub = [
        &[0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02][..],
        &s(b"a"),
        &[0x00],
    ]
    .concat();
    assert_decode_err(&pkt(0x82, &sub), V5, E::DuplicateProperty { id: 0x0B });
    // ... while PUBLISH may carry several; user properties may repeat anywhere.
    let mut p = publish("t", QoS::AtMostOnce, 0, b"x");
    p.properties.subscription_identifiers = smallvec::smallvec![1, 2];
    p.properties.user_properties = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
    let props = [
        0x0B, 0x01, 0x0B, 0x02, 0x26, 0, 1, b'a', 0, 1, b'1', 0x26, 0, 1, b'a', 0, 1, b'2',
    ];
    assert_decodes(&publish_v5_props(&props), V5, &[Packet::Publish(p)]);
}

/// Table 2-4: each property only in the packets listed for it.
#[test]
fn property_not_allowed() {
    use PropertyContext as C;
    // Session Expiry Interval in PUBLISH.
    assert_decode_err(
        &publish_v5_props(&[0x11, 0, 0, 0, 1]),
        V5,
        E::PropertyNotAllowed {
            id: 0x11,
            packet: C::Publish,
        },
    );
    // Will Delay Interval in CONNECT properties (it belongs in the will properties).
    let c = connect(
        b"MQTT",
        5,
        0x02,
        &[&[0x05, 0x18, 0, 0, 0, 1][..], &s(b"c")].concat(),
    );
    assert_decode_err(
        &c,
        V311,
        E::PropertyNotAllowed {
            id: 0x18,
            packet: C::Connect,
        },
    );
    // Topic Alias in will properties.
    let will = [
        &[0x00][..],
        &s(b"c"),
        &[0x03, 0x23, 0x00, 0x01],
        &s(b"w"),
        &s(b"m"),
    ]
    .concat();
    assert_decode_err(
        &connect(b"MQTT", 5, 0x06, &will),
        V311,
        E::PropertyNotAllowed {
            id: 0x23,
            packet: C::Will,
        },
    );
    // Reason String in SUBSCRIBE; Topic Alias in PUBACK; Assigned Client Identifier in DISCONNECT.
    let sub = [
        &[0x00, 0x01, 0x04, 0x1F, 0x00, 0x01, b'r'][..],
        &s(b"a"),
        &[0x00],
    ]
    .concat();
    assert_decode_err(
        &pkt(0x82, &sub),
        V5,
        E::PropertyNotAllowed {
            id: 0x1F,
            packet: C::Subscribe,
        },
    );
    assert_decode_err(
        &[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
        V5,
        E::PropertyNotAllowed {
            id: 0x23,
            packet: C::PubAck,
        },
    );
    assert_decode_err(
        &[0xE0, 0x05, 0x00, 0x03, 0x12, 0x00, 0x00],
        V5,
        E::PropertyNotAllowed {
            id: 0x12,
            packet: C::Disconnect,
        },
    );
    // Session Expiry Interval in AUTH; Server Reference in UNSUBACK.
    assert_decode_err(
        &[0xF0, 0x07, 0x18, 0x05, 0x11, 0, 0, 0, 0],
        V5,
        E::PropertyNotAllowed {
            id: 0x11,
            packet: C::Auth,
        },
    );
    assert_decode_err(
        &[0xB0, 0x07, 0x00, 0x01, 0x03, 0x1C, 0x00, 0x00, 0x00],
        V5,
        E::PropertyNotAllowed {
            id: 0x1C,
            packet: C::UnsubAck,
        },
    );
}

/// §2.2.2.1: the property length covers exactly the properties.
#[test]
fn property_length_mismatch() {
    // Message Expiry Interval needs 5 bytes; the property length says 3.
    assert_decode_err(
        &pkt(0x30, &[0x00, 0x01, b't', 0x03, 0x02, 0, 0, 0, 1]),
        V5,
        E::PropertyLengthMismatch,
    );
    // Property length past the end of the packet.
    assert_decode_err(
        &pkt(0x30, &[0x00, 0x01, b't', 0x09, 0x01, 0x00]),
        V5,
        E::PropertyLengthMismatch,
    );
    // A string property whose length runs past the property section.
    assert_decode_err(
        &pkt(
            0x30,
            &[0x00, 0x01, b't', 0x03, 0x03, 0x00, 0x05, b'a', b'b'],
        ),
        V5,
        E::PropertyLengthMismatch,
    );
    // A property id alone.
    assert_decode_err(
        &pkt(0x30, &[0x00, 0x01, b't', 0x01, 0x23]),
        V5,
        E::PropertyLengthMismatch,
    );
}

/// Value ranges: 0/1 bytes, non-zero Receive Maximum, Maximum Packet Size, Topic Alias, Subscription
/// Identifier.
#[test]
fn invalid_property_values() {
    let cases: [(&[u8], u8, u32); 4] = [
        (&[0x01, 0x02], 0x01, 2),       // Payload Format Indicator
        (&[0x0B, 0x00], 0x0B, 0), // Subscription Identifier 0 ([MQTT-3.8.2-?] "value of 0 is a Protocol Error")
        (&[0x23, 0x00, 0x00], 0x23, 0), // Topic Alias 0 ([MQTT-3.3.2-8])
        (&[0x01, 0xFF], 0x01, 255),
    ];
    for (props, id, value) in cases {
        assert_decode_err(
            &publish_v5_props(props),
            V5,
            E::InvalidPropertyValue { id, value },
        );
    }
    assert_eq!(
        E::InvalidPropertyValue { id: 0x23, value: 0 }.reason_code(),
        ReasonCode::TopicAliasInvalid
    );
    // CONNECT: Receive Maximum 0, Maximum Packet Size 0, Request Problem/Response Information 2.
    let connect_cases: [(&[u8], u8, u32); 4] = [
        (&[0x21, 0, 0], 0x21, 0),
        (&[0x27, 0, 0, 0, 0], 0x27, 0),
        (&[0x17, 2], 0x17, 2),
        (&[0x19, 2], 0x19, 2),
    ];
    for (props, id, value) in connect_cases {
        let rest = [&[props.len() as u8][..], props, &s(b"c")].concat();
        assert_decode_err(
            &connect(b"MQTT", 5, 0x02, &rest),
            V311,
            E::InvalidPropertyValue { id, value },
        );
    }
    // CONNACK: Maximum QoS, Retain/Wildcard/Subscription-Identifier/Shared Available are 0 or 1.
    for id in [0x24, 0x25, 0x28, 0x29, 0x2A] {
        assert_decode_err(
            &[0x20, 0x05, 0x00, 0x00, 0x02, id, 0x02],
            V5,
            E::InvalidPropertyValue { id, value: 2 },
        );
    }
    // SUBSCRIBE with Subscription Identifier 0.
    let sub = [&[0x00, 0x01, 0x02, 0x0B, 0x00][..], &s(b"a"), &[0x00]].concat();
    assert_decode_err(
        &pkt(0x82, &sub),
        V5,
        E::InvalidPropertyValue { id: 0x0B, value: 0 },
    );
}

/// [MQTT-3.3.2-14], [MQTT-4.7.3-1]: the Response Topic is a Topic Name (no wildcards, not empty).
#[test]
fn response_topic_rules() {
    assert_decode_err(
        &publish_v5_props(&[0x08, 0x00, 0x01, b'#']),
        V5,
        E::WildcardInTopicName,
    );
    assert_decode_err(
        &publish_v5_props(&[0x08, 0x00, 0x00]),
        V5,
        E::EmptyTopicName,
    );
}

/// §3.1.2.11.10: Authentication Data without Authentication Method is a Protocol Error.
#[test]
fn auth_data_without_method() {
    let rest = [&[0x04, 0x16, 0x00, 0x01, 0xAA][..], &s(b"c")].concat();
    assert_decode_err(
        &connect(b"MQTT", 5, 0x02, &rest),
        V311,
        E::AuthDataWithoutMethod,
    );
}

/// Strings inside properties follow the string rules.
#[test]
fn property_string_rules() {
    assert_decode_err(
        &publish_v5_props(&[0x03, 0x00, 0x01, 0x00]),
        V5,
        E::NullCharacter,
    );
    assert_decode_err(
        &publish_v5_props(&[0x03, 0x00, 0x01, 0xFF]),
        V5,
        E::InvalidUtf8,
    );
    assert_decode_err(
        &publish_v5_props(&[0x26, 0x00, 0x01, b'k', 0x00, 0x01, 0xC0]),
        V5,
        E::InvalidUtf8,
    );
}
