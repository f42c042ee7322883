//! Fuzz target `persist_record`: the persistence record decoder (src/persist/record.rs) must be total
//! (no panic, no allocation a length field asks for before it is checked) on any bytes, both as a whole
//! file (`replay`) and stepped (`Decoder`), the two must agree, and every record it accepts re-encodes
//! and replays to an equal record.
//!
//! Like `decode`, the modules are compiled from source (`#[path]`): the record format, the message type
//! and the codec (whose property block it reuses) are runtime-free leaves.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../../src/codec/mod.rs"]
mod codec;

#[allow(dead_code, unused_imports)]
#[path = "../../../src/message.rs"]
mod message;

/// Only the record format of `persist`: the rest is I/O.
#[allow(dead_code)]
#[path = "../../../src/persist/record.rs"]
pub mod record;
mod persist {
    pub use super::record;
}

use persist::record::{encode, encode_header, replay, Decoder, Tail, HEADER_LEN};

/// Steps through `records` (which start at file offset `HEADER_LEN`) as the shard's reader would.
fn step(records: &[u8]) -> (Vec<persist::record::Record>, u64, bool) {
    let mut d = Decoder::new(HEADER_LEN as u64);
    let mut out = Vec::new();
    loop {
        let at = (d.offset() - HEADER_LEN as u64) as usize;
        match d.next(&records[at..]) {
            Ok(Some((r, used))) => {
                assert!(used >= 8 && at + used <= records.len());
                out.push(r);
            }
            Ok(None) => return (out, d.offset(), false),
            Err(e) => {
                assert_eq!(e.offset(), d.offset());
                return (out, d.offset(), true);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // As a whole file, header and all (almost always a bad header: that path must hold too).
    let raw = replay(data);
    assert!(raw.good_len <= data.len());

    // Behind a valid header, so the record decoder sees every input.
    let mut file = BytesMut::new();
    encode_header(0, 1, &mut file);
    file.extend_from_slice(data);
    let r = replay(&file);
    assert!(r.header.is_some());
    assert!(r.good_len >= HEADER_LEN && r.good_len <= file.len());

    let (stepped, end, failed) = step(data);
    assert_eq!(stepped, r.records);
    assert_eq!(end as usize, r.good_len);
    match r.tail {
        Tail::Clean => assert!(!failed && r.good_len == file.len()),
        Tail::Torn { dropped, error } => {
            assert_eq!(dropped, file.len() - r.good_len);
            assert_eq!(error.is_some(), failed);
        }
        Tail::Corrupt(e) => assert!(failed && e.offset() as usize == r.good_len),
        Tail::BadHeader(_) => unreachable!("the header was written here"),
    }

    // Whatever was accepted re-encodes and replays to the same records.
    let mut again = BytesMut::new();
    encode_header(0, 1, &mut again);
    for record in &r.records {
        encode(record, &mut again).expect("a decoded record re-encodes");
    }
    let back = replay(&again);
    assert_eq!(back.tail, Tail::Clean);
    assert_eq!(back.records, r.records);
});
