//! Inputs found by fuzzing (`tests/fuzz`, target `decode`) or by the property tests, each kept as a named
//! regression test with a short postmortem, sled-style. Add one per crash: the bytes, the version, and
//! what the decoder must say now.
//!
//! No fuzz run has crashed yet, so the entries below are the edge shapes the fuzz target exists to
//! watch, pinned so that a refactor cannot silently break them.

use super::*;

/// Shape: a remaining length whose 4 bytes are all present but the packet is not. Must be "need more"
/// (or PacketTooLarge), never an index past the buffer.
#[test]
fn max_remaining_length_header_only() {
    for v in ALL_VERSIONS {
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00][..]);
        assert_eq!(decode(&mut buf, v, usize::MAX), Ok(None));
        assert_eq!(buf.len(), 6);
    }
}

/// Shape: a property length that points past the packet while a valid property follows in the payload
/// bytes; the sub-reader must stop at the packet end.
#[test]
fn property_length_past_packet_end() {
    assert_decode_err(
        &[0x40, 0x05, 0x00, 0x01, 0x10, 0x7F, 0x1F],
        V5,
        DecodeError::PropertyLengthMismatch,
    );
}

/// Shape: the v5 short forms must re-encode to the same packet (decode → encode → decode is the fuzz
/// target's differential check): a PUBACK with Success and an empty property length (rl 4) re-encodes as
/// rl 2, a DISCONNECT with Success and empty properties as rl 0.
#[test]
fn short_forms_reencode_canonically() {
    for (bytes, canonical) in [
        (
            &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00][..],
            &[0x40, 0x02, 0x00, 0x01][..],
        ),
        (&[0xE0, 0x02, 0x00, 0x00], &[0xE0, 0x00]),
        (&[0xF0, 0x01, 0x00], &[0xF0, 0x00]),
    ] {
        let mut buf = BytesMut::from(bytes);
        let p = decode(&mut buf, V5, MAX).unwrap().unwrap();
        let mut out = BytesMut::new();
        encode(&p, V5, &mut out).unwrap();
        assert_eq!(&out[..], canonical);
        assert_decodes(bytes, V5, &[p]);
    }
}
