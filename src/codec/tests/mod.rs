//! Codec tests. Every decoder test goes through [`assert_decodes`] or [`assert_decode_err`], which also
//! replay the input split into 1, 2, 5, 10 and 100-byte pieces fed into one `BytesMut`.

mod errors;
mod prop;
mod property_errors;
mod reason_codes;
mod regressions;
mod roundtrip;
mod vectors;

use bytes::{Bytes, BytesMut};

use super::*;

pub(super) const V31: ProtocolVersion = ProtocolVersion::V31;
pub(super) const V311: ProtocolVersion = ProtocolVersion::V311;
pub(super) const V5: ProtocolVersion = ProtocolVersion::V5;
pub(super) const ALL_VERSIONS: [ProtocolVersion; 3] = [V31, V311, V5];
/// The piece sizes every decoder test is replayed with.
pub(super) const SPLITS: [usize; 5] = [1, 2, 5, 10, 100];
pub(super) const MAX: usize = 1 << 24;

/// A packet from its first byte and body (remaining length computed).
pub(super) fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    let mut out = BytesMut::new();
    fixed_header::write_var_int(&mut out, body.len());
    v.extend_from_slice(&out);
    v.extend_from_slice(body);
    v
}

/// A length-prefixed string/binary field.
pub(super) fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

/// Decodes everything in `bytes` at once, returning the packets and where each one ended.
pub(super) fn decode_whole(
    bytes: &[u8],
    version: ProtocolVersion,
    max: usize,
) -> (Vec<(Packet, usize)>, Result<(), DecodeError>) {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match decode(&mut buf, version, max) {
            Ok(Some(p)) => out.push((p, bytes.len() - buf.len())),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Packets with the bytes fed when each came out, the first error with the bytes fed then, what is left.
pub(super) type Replay = (Vec<(Packet, usize)>, Option<(DecodeError, usize)>, BytesMut);

/// Feeds `bytes` in `chunk`-byte pieces, decoding after each. Returns each packet with the number of
/// bytes fed when it came out, and the first error (with the bytes fed then).
pub(super) fn decode_pieces(
    bytes: &[u8],
    version: ProtocolVersion,
    max: usize,
    chunk: usize,
) -> Replay {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            // Cheap "untouched" check (a full copy would make 1-byte replays of big packets quadratic).
            let (len, ptr, head) = (buf.len(), buf.as_ptr(), buf[..buf.len().min(16)].to_vec());
            match decode(&mut buf, version, max) {
                Ok(Some(p)) => out.push((p, fed)),
                Ok(None) => {
                    assert_eq!(
                        (buf.len(), buf.as_ptr()),
                        (len, ptr),
                        "Ok(None) must leave the buffer untouched"
                    );
                    assert_eq!(&buf[..head.len()], &head[..]);
                    break;
                }
                Err(e) => return (out, Some((e, fed)), buf),
            }
        }
    }
    (out, None, buf)
}

/// Asserts `bytes` decode to exactly `expected` (nothing left over), whole and split into pieces; each
/// packet must come out exactly when its last byte arrives, never earlier or later.
#[track_caller]
pub(super) fn assert_decodes(bytes: &[u8], version: ProtocolVersion, expected: &[Packet]) {
    assert_decodes_max(bytes, version, MAX, expected)
}

/// [`assert_decodes`] with a given maximum packet size.
#[track_caller]
pub(super) fn assert_decodes_max(
    bytes: &[u8],
    version: ProtocolVersion,
    max: usize,
    expected: &[Packet],
) {
    dump_seed(bytes);
    let (whole, res) = decode_whole(bytes, version, max);
    assert_eq!(res, Ok(()), "decoding {bytes:02x?}");
    let packets: Vec<Packet> = whole.iter().map(|x| x.0.clone()).collect();
    assert_eq!(packets, expected, "decoding {bytes:02x?}");
    assert_eq!(
        whole.last().map_or(0, |x| x.1),
        bytes.len(),
        "bytes left over"
    );
    for chunk in SPLITS {
        let (got, err, rest) = decode_pieces(bytes, version, max, chunk);
        assert_eq!(err, None, "split {chunk}");
        assert!(rest.is_empty(), "split {chunk}: bytes left over");
        assert_eq!(got.len(), whole.len(), "split {chunk}");
        for ((p, fed), (q, end)) in got.iter().zip(&whole) {
            assert_eq!(p, q, "split {chunk}");
            // Out as soon as complete: the piece that completed it was the one just fed.
            assert!(
                *fed >= *end && *fed - chunk.min(*fed) < *end,
                "split {chunk}: packet ending at {end} came out at {fed}"
            );
        }
    }
}

/// Asserts `bytes` fail with exactly `expected`, whole and in pieces (`Ok(None)` allowed until then).
#[track_caller]
pub(super) fn assert_decode_err_max(
    bytes: &[u8],
    version: ProtocolVersion,
    max: usize,
    expected: DecodeError,
) {
    dump_seed(bytes);
    let (_, res) = decode_whole(bytes, version, max);
    assert_eq!(res, Err(expected), "decoding {bytes:02x?}");
    for chunk in SPLITS {
        let (_, err, _) = decode_pieces(bytes, version, max, chunk);
        assert_eq!(err.map(|e| e.0), Some(expected), "split {chunk}");
    }
}

#[track_caller]
pub(super) fn assert_decode_err(bytes: &[u8], version: ProtocolVersion, expected: DecodeError) {
    assert_decode_err_max(bytes, version, MAX, expected)
}

/// Encodes `packet`, checks [`encoded_len`], and decodes it back (whole and split).
#[track_caller]
pub(super) fn assert_roundtrip(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("encodable");
    assert_eq!(
        out.len(),
        encoded_len(packet, version),
        "encoded_len of {packet:?}"
    );
    if let Packet::Publish(p) = packet {
        let mut header = BytesMut::new();
        encode_publish_header(p, version, &mut header).expect("encodable");
        header.extend_from_slice(&p.payload);
        assert_eq!(header, out, "encode_publish_header + payload == encode");
        let mut parts = BytesMut::new();
        encode_publish_parts(&parts_of(p), version, &mut parts).expect("encodable");
        parts.extend_from_slice(&p.payload);
        assert_eq!(parts, out, "encode_publish_parts + payload == encode");
    }
    assert_decodes(&out, version, std::slice::from_ref(packet));
    out.to_vec()
}

/// Packets up to this size are replayed in every piece size of [`SPLITS`]; larger ones (long topics,
/// payloads past the 3- and 4-byte remaining lengths) byte by byte through their header, then in
/// [`BIG_PIECE`]-byte pieces (1-byte pieces of megabytes would take minutes in a debug build).
pub(super) const FULL_REPLAY_MAX: usize = 20_000;
pub(super) const BIG_PIECE: usize = 4096;

/// The parts of `p`, field by field (not through [`PublishParts::of`]).
pub(super) fn parts_of(p: &Publish) -> PublishParts<'_> {
    PublishParts {
        dup: p.dup,
        qos: p.qos,
        retain: p.retain,
        topic: p.topic.as_bytes(),
        packet_id: p.packet_id,
        properties: &p.properties,
        payload_len: p.payload.len(),
        delivery: Default::default(),
    }
}

/// Writes the header of `p` with [`encode_publish_parts`] and appends its payload, as the broker does;
/// asserts the bytes are what [`encode`] writes for `p`, that [`publish_len`] counts them, and that they
/// decode back to `p`, whole and split (see [`FULL_REPLAY_MAX`]). Returns the header.
#[track_caller]
pub(super) fn assert_parts_roundtrip(p: &Publish, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_publish_parts(&parts_of(p), version, &mut out).expect("encodable");
    let header = out.to_vec();
    // A fan-out's frame, encoded once from parts with other flags and another packet id, then written
    // with this delivery's: the same header, with or without the payload inline.
    let mut other = parts_of(p);
    other.dup = !p.dup;
    other.retain = !p.retain;
    other.packet_id = p.packet_id.wrapping_add(1);
    for inline in [false, true] {
        let frame = PublishFrame::encode(&other, inline.then_some(&p.payload[..]), version)
            .expect("encodable frame");
        assert_eq!(frame.includes_payload(), inline);
        let mut written = BytesMut::new();
        frame.write(p.dup, p.qos, p.retain, p.packet_id, &mut written);
        assert_eq!(written.len(), frame.len());
        let (frame_header, rest) = written.split_at(header.len());
        assert!(frame_header == &header[..], "frame header differs");
        assert_eq!(rest.len(), if inline { p.payload.len() } else { 0 });
        assert!(rest == &p.payload[..rest.len()], "inline payload differs");
    }
    out.extend_from_slice(&p.payload);
    let len = publish_len(
        version,
        p.topic.len(),
        p.qos,
        &p.properties,
        p.payload.len(),
    );
    assert_eq!(out.len(), len, "publish_len");
    let packet = Packet::Publish(p.clone());
    let mut whole = BytesMut::new();
    encode(&packet, version, &mut whole).expect("encodable");
    // Not assert_eq: a failure would print megabytes.
    if let Some(at) = out.iter().zip(whole.iter()).position(|(a, b)| a != b) {
        panic!("header + payload differs from encode() at byte {at}");
    }
    assert_eq!(out.len(), whole.len(), "header + payload vs encode()");
    if out.len() <= FULL_REPLAY_MAX {
        assert_decodes(&out, version, std::slice::from_ref(&packet));
        return header;
    }
    // Cuts through the fixed header (the remaining length's bytes) and just before the end of the
    // variable header are "need more", buffer untouched (every cut would copy the 64 KiB topic 64 Ki times).
    let cuts = (0..=8).chain([header.len() - 1, header.len()]);
    for cut in cuts.filter(|&c| c < out.len()) {
        let mut buf = BytesMut::from(&out[..cut]);
        assert_eq!(decode(&mut buf, version, MAX), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut, "cut at {cut}");
    }
    let (got, res) = decode_whole(&out, version, MAX);
    assert_eq!(res, Ok(()));
    assert!(
        got.len() == 1 && got[0].0 == packet && got[0].1 == out.len(),
        "whole: decoded packet differs"
    );
    let (got, err, rest) = decode_pieces(&out, version, MAX, BIG_PIECE);
    assert_eq!(err.map(|e| e.0), None);
    assert!(rest.is_empty(), "bytes left over");
    assert!(
        got.len() == 1 && got[0].0 == packet && got[0].1 == out.len(),
        "split {BIG_PIECE}: decoded packet differs or came out late"
    );
    header
}

/// Encodes `packet` and asserts the exact bytes, then decodes them back.
#[track_caller]
pub(super) fn assert_wire(packet: &Packet, version: ProtocolVersion, bytes: &[u8]) {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("encodable");
    assert_eq!(&out[..], bytes, "encoding {packet:?}");
    assert_roundtrip(packet, version);
    assert_decodes(bytes, version, std::slice::from_ref(packet));
}

/// A CONNECT packet: protocol name, level, flags, keep alive 60, then `rest` (properties/payload).
pub(super) fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = s(name);
    body.extend([level, flags, 0x00, 0x3C]);
    body.extend_from_slice(rest);
    pkt(0x10, &body)
}

/// A v5 PUBLISH QoS 0 to "t" with the given property bytes (property length computed) and payload "x".
pub(super) fn publish_v5_props(props: &[u8]) -> Vec<u8> {
    let mut body = s(b"t");
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.push(b'x');
    pkt(0x30, &body)
}

pub(super) fn publish(topic: &str, qos: QoS, packet_id: u16, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}

/// With `CODEC_FUZZ_SEEDS=<dir>` set, every test input is written there (named by its FNV-1a hash): how
/// the fuzz corpus in tests/fuzz/corpus/decode was seeded with the spec examples and the rule vectors.
fn dump_seed(bytes: &[u8]) {
    let Some(dir) = std::env::var_os("CODEC_FUZZ_SEEDS") else {
        return;
    };
    if bytes.len() > 4096 {
        return;
    }
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = std::path::Path::new(&dir).join(format!("seed-{hash:016x}"));
    std::fs::write(path, bytes).expect("write seed");
}
