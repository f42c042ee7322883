//! Fuzz target `cluster_wire`: the frame of a message between cluster nodes (src/cluster/wire.rs),
//! read from NATS, must be total on any bytes (no panic, no allocation before a length is checked),
//! alone or in a batch, and every frame it accepts, plain, for a shared subscription group or for
//! one session,
//! re-encodes and decodes to the same message (its cluster-wide id included) and group.
//!
//! Like `persist_record`, the modules are compiled from source (`#[path]`): runtime-free leaves.
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

#[allow(dead_code)]
#[path = "../../../src/topic.rs"]
mod topic;

#[allow(dead_code)]
#[path = "../../../src/cluster/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    for frame in wire::frames(data) {
        check(frame);
    }
});

fn check(frame: Result<&[u8], wire::WireError>) {
    let Ok(frame) = frame.and_then(wire::decode_frame) else {
        return;
    };
    let mut again = BytesMut::new();
    match (&frame.group, &frame.client) {
        (Some((group, hops)), _) => wire::encode_shared(&frame.msg, group, *hops, &mut again),
        (None, Some(client)) => wire::encode_for_client(&frame.msg, client, &mut again),
        (None, None) => wire::encode(&frame.msg, &mut again),
    }
    .expect("an accepted frame re-encodes");
    let back = wire::decode_frame(&again).expect("a re-encoded frame decodes");
    assert_eq!(back.group, frame.group);
    assert_eq!(back.client, frame.client);
    let (a, b) = (&back.msg, &frame.msg);
    assert_eq!(
        (&a.topic, &a.payload, a.qos, a.retain, a.properties(), a.id, a.read_at),
        (&b.topic, &b.payload, b.qos, b.retain, b.properties(), b.id, b.read_at)
    );
}
