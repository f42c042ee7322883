//! The broker's per-message encoders against literal bytes: [`encode_pub_response`] and
//! [`encode_disconnect`] in their short forms, and [`encode_publish_parts`] (flags, packet id,
//! properties, and a remaining length that counts the payload it does not write).

use bytes::BytesMut;
use smallvec::smallvec;

use super::super::*;
use super::REMAINING_LENGTH_TABLE;

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
