//! Byte-for-byte examples: the specs' own examples, then a hand-written vector for every packet type in
//! every version it exists in.
//!
//! Where things are: `vectors/spec_examples.rs`, the specs' examples; `vectors/packets.rs`, a vector per
//! packet type and version; `vectors/framing.rs`, several packets or a partial one in a buffer, and the
//! size limit; `vectors/broker_encoders.rs`, the broker's per-message encoders.

mod broker_encoders;
mod framing;
mod packets;
mod spec_examples;

/// 3.1.1 §2.2.3 Table 2.4 / 5.0 §1.5.5 Table 1-1: the Variable Byte Integer boundaries.
const REMAINING_LENGTH_TABLE: [(usize, &[u8]); 8] = [
    (0, &[0x00]),
    (127, &[0x7F]),
    (128, &[0x80, 0x01]),
    (16_383, &[0xFF, 0x7F]),
    (16_384, &[0x80, 0x80, 0x01]),
    (2_097_151, &[0xFF, 0xFF, 0x7F]),
    (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
];
