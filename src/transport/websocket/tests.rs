//! Handshake and framing tests: the RFC 6455 examples, requests as real clients send them, every refusal
//! and every frame error, and a property test of the deframer against a test-only client encoder.
//!
//! Where things are: `tests/handshake.rs`, the upgrade request and the answers to it; `tests/frames.rs`,
//! the deframer on given bytes and the server's frames; `tests/prop.rs`, the deframer's property test;
//! `tests/connection.rs`, a connection's owed pongs and closes. The test-only client encoder is here.

mod connection;
mod frames;
mod handshake;
mod prop;

/// How a test frame writes its payload length.
#[derive(Debug, Clone, Copy)]
enum LenForm {
    Minimal,
    /// 126 and a 16-bit length, even for a short payload (non-minimal: accepted).
    Ext16,
    /// 127 and a 64-bit length.
    Ext64,
}

/// A client frame: masked with `mask`, the length as `form` says. Test-only: the server never masks.
fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4], form: LenForm) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | op];
    let len = payload.len();
    match form {
        LenForm::Minimal if len <= 125 => f.push(0x80 | len as u8),
        LenForm::Minimal | LenForm::Ext16 if len <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}
