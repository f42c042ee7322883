//! Fuzz target `decode`: the decoder must be total (no panic on any input), agree with itself when the
//! same bytes arrive in pieces, and round-trip: every packet it decodes re-encodes (to exactly
//! `encoded_len` bytes) and decodes again to an equal packet.
//!
//! The codec module is compiled from source (`#[path]`) rather than through the `shardmq` crate: it is a
//! runtime-free leaf, so the fuzzer builds in seconds without glommio and the rest of the broker.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../../src/codec/mod.rs"]
mod codec;

use codec::{
    decode, encode, encode_publish_header, encoded_len, DecodeError, Packet, ProtocolVersion, PublishFrame,
    PublishParts,
};

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5];
const MAX_SIZES: [usize; 4] = [usize::MAX, 268_435_460, 1024, 16];

/// Decodes everything in `data`: the packets, and how it stopped (`Ok(n)`: need more with n bytes left).
fn decode_all(data: &[u8], version: ProtocolVersion, max: usize) -> (Vec<Packet>, Result<usize, DecodeError>) {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    loop {
        match decode(&mut buf, version, max) {
            Ok(Some(p)) => packets.push(p),
            Ok(None) => return (packets, Ok(buf.len())),
            Err(e) => return (packets, Err(e)),
        }
    }
}

/// The same, fed `chunk` bytes at a time into one buffer.
fn decode_pieces(data: &[u8], version: ProtocolVersion, max: usize, chunk: usize) -> (Vec<Packet>, Result<usize, DecodeError>) {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, max) {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => return (packets, Err(e)),
            }
        }
    }
    (packets, Ok(buf.len()))
}

fn check_roundtrip(packet: &Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("a decoded packet must be encodable");
    assert_eq!(out.len(), encoded_len(packet, version), "encoded_len disagrees with encode");
    if let Packet::Publish(p) = packet {
        let mut header = BytesMut::new();
        encode_publish_header(p, version, &mut header).expect("encodable header");
        header.extend_from_slice(&p.payload);
        assert_eq!(header, out, "encode_publish_header + payload != encode");
        // A fan-out's shared frame, encoded once with other flags and packet id, then patched.
        let mut other = PublishParts::of(p);
        other.dup = !p.dup;
        other.retain = !p.retain;
        other.packet_id = p.packet_id.wrapping_add(1);
        let frame = PublishFrame::encode(&other, Some(&p.payload[..]), version).expect("encodable frame");
        let mut patched = BytesMut::new();
        frame.write(p.dup, p.qos, p.retain, p.packet_id, &mut patched);
        assert_eq!(patched, out, "PublishFrame::write != encode");
    }
    let wire = out.clone();
    let again = decode(&mut out, version, usize::MAX);
    match again {
        Ok(Some(q)) => assert_eq!(&q, packet, "round trip changed the packet; wire {wire:02x?}"),
        other => panic!("re-encoded packet did not decode: {other:?}; wire {wire:02x?}"),
    }
    assert!(out.is_empty(), "re-encoded packet left {} bytes", out.len());
}

fuzz_target!(|data: &[u8]| {
    for version in VERSIONS {
        for max in MAX_SIZES {
            let (packets, end) = decode_all(data, version, max);
            for p in &packets {
                check_roundtrip(p, version);
            }
            if max == usize::MAX || max == 1024 {
                // Splitting the input must not change what comes out.
                let chunk = 1 + data.first().map_or(0, |&b| usize::from(b % 13));
                let (split, split_end) = decode_pieces(data, version, max, chunk);
                assert_eq!(split, packets, "split into {chunk}-byte pieces");
                assert_eq!(split_end, end, "split into {chunk}-byte pieces");
            }
        }
    }
});
