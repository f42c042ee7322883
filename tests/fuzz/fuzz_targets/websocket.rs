//! Fuzz target `websocket`: the WebSocket handshake parser and deframer must be total (no panic on any
//! input), and the deframer must agree with itself when the same bytes arrive in pieces: the same MQTT
//! stream, the same control events, the same error.
//!
//! Like `decode`, the module is compiled from source (`#[path]`): it is a runtime-free leaf.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../../src/transport/websocket.rs"]
mod websocket;

use websocket::{encode_accept, encode_refusal, parse_upgrade, Deframer, Events, FrameError};

const MAX_FRAMES: [usize; 3] = [usize::MAX, 1024, 16];

/// Decodes `data` fed `piece` bytes at a time: (MQTT stream, events, how it stopped).
fn deframe(data: &[u8], max: usize, piece: usize) -> (Vec<u8>, Events, Result<usize, FrameError>) {
    let mut d = Deframer::new(max);
    let mut input = BytesMut::new();
    let mut mqtt = BytesMut::new();
    let mut events = Events::new();
    for chunk in data.chunks(piece) {
        input.extend_from_slice(chunk);
        match d.decode(&mut input, &mut mqtt) {
            Ok(e) => events.extend(e),
            Err(e) => return (mqtt.to_vec(), events, Err(e)),
        }
    }
    (mqtt.to_vec(), events, Ok(input.len()))
}

fuzz_target!(|data: &[u8]| {
    match parse_upgrade(data) {
        Ok(Some((upgrade, consumed))) => {
            assert!(consumed <= data.len() && consumed <= websocket::MAX_REQUEST);
            let mut out = BytesMut::new();
            encode_accept(&upgrade, &mut out);
            // Every prefix short of the request is "need more".
            assert_eq!(parse_upgrade(&data[..consumed - 1]), Ok(None));
        }
        Ok(None) => assert!(data.len() < websocket::MAX_REQUEST),
        Err(e) => {
            let mut out = BytesMut::new();
            encode_refusal(&e, &mut out);
        }
    }
    for max in MAX_FRAMES {
        let whole = deframe(data, max, data.len().max(1));
        let piece = 1 + data.first().map_or(0, |&b| usize::from(b % 13));
        let split = deframe(data, max, piece);
        assert_eq!(split.0, whole.0, "MQTT stream, {piece}-byte pieces");
        // What is left over may differ (a data frame's payload streams), the outcome may not.
        assert_eq!(split.2.is_err(), whole.2.is_err(), "outcome, {piece}-byte pieces");
        match whole.2 {
            // The events of a call that fails are dropped with it: compare them only without error.
            Ok(_) => assert_eq!(split.1, whole.1, "events, {piece}-byte pieces"),
            Err(e) => assert_eq!(split.2, Err(e), "error, {piece}-byte pieces"),
        }
    }
});
