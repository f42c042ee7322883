//! A [`WsConnection`]'s state: what it owes the writer (a pong, an echoed close, the close for a frame
//! error) as it deframes.

use bytes::BytesMut;

use super::super::*;

/// A connection's state: a ping is answered with a pong owed to the writer, the MQTT bytes around it
/// come through, and the client's close is echoed and ends the stream.
#[test]
fn a_connection_answers_pings_and_echoes_the_close() {
    let mut ws = WsConnection::new(usize::MAX);
    let mask = [1, 2, 3, 4];
    let masked = |opcode: u8, payload: &[u8]| {
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    ws.input.extend_from_slice(&masked(0x2, b"\xc0\x00"));
    ws.input.extend_from_slice(&masked(0x9, b"hi"));
    let mut mqtt = BytesMut::new();
    assert_eq!(ws.deframe(&mut mqtt), Ok(Some(2)));
    assert_eq!(&mqtt[..], b"\xc0\x00");
    assert!(ws.owes());
    let mut pong = BytesMut::new();
    encode_pong(b"hi", &mut pong);
    assert_eq!(ws.take_owed(), pong);
    assert!(!ws.owes());
    ws.input
        .extend_from_slice(&masked(0x8, &1001u16.to_be_bytes()));
    assert_eq!(ws.deframe(&mut mqtt), Ok(None));
    let mut close = BytesMut::new();
    encode_close(1001, &mut close);
    assert_eq!(ws.take_owed(), close);
    // A frame error owes the close with its code.
    let mut ws = WsConnection::new(usize::MAX);
    ws.input.extend_from_slice(&masked(0x1, b"text"));
    assert!(ws.deframe(&mut mqtt).is_err());
    let mut close = BytesMut::new();
    encode_close(1003, &mut close);
    assert_eq!(ws.take_owed(), close);
}
