//! How bytes become packets beyond a single well-formed one: a non-minimal remaining length before
//! 5.0, two packets in one buffer, a buffer that ends mid-packet, and the maximum packet size boundary.

use bytes::{Bytes, BytesMut};

use super::super::*;

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
