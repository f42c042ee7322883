//! The deframer on given bytes: the RFC 6455 examples, the three length forms, one MQTT packet over
//! fragments and several frames in one buffer, pieces of a frame, control frames (ping, pong, close)
//! and every frame error with its close code; then the frames the server writes and `unmask`.

use bytes::BytesMut;

use super::super::*;
use super::{client_frame, LenForm};

fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, op, payload, [0x37, 0xfa, 0x21, 0x3d], LenForm::Minimal)
}

/// Decodes all of `bytes` at once: (MQTT stream, events, bytes left in the input).
fn decode_all(bytes: &[u8]) -> Result<(Vec<u8>, Events, usize), FrameError> {
    let mut d = Deframer::new(1 << 20);
    let mut input = BytesMut::from(bytes);
    let mut mqtt = BytesMut::new();
    let events = d.decode(&mut input, &mut mqtt)?;
    Ok((mqtt.to_vec(), events, input.len()))
}

/// The same, fed `piece` bytes at a time.
fn decode_pieces(bytes: &[u8], piece: usize) -> Result<(Vec<u8>, Events, usize), FrameError> {
    let mut d = Deframer::new(1 << 20);
    let mut input = BytesMut::new();
    let mut mqtt = BytesMut::new();
    let mut events = Events::new();
    for chunk in bytes.chunks(piece) {
        input.extend_from_slice(chunk);
        events.extend(d.decode(&mut input, &mut mqtt)?);
    }
    Ok((mqtt.to_vec(), events, input.len()))
}

/// RFC 6455 §5.7: "A single-frame masked text message" containing "Hello".
const RFC_MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

#[test]
fn rfc_masked_hello_as_binary() {
    let mut bytes = RFC_MASKED_HELLO;
    bytes[0] = 0x82;
    assert_eq!(bytes.to_vec(), frame(true, opcode::BINARY, b"Hello"));
    assert_eq!(decode_all(&bytes), Ok((b"Hello".to_vec(), vec![], 0)));
}

#[test]
fn rfc_masked_hello_as_text_is_refused() {
    assert_eq!(decode_all(&RFC_MASKED_HELLO), Err(FrameError::Text));
    assert_eq!(FrameError::Text.close_code(), 1003);
}

#[test]
fn sixteen_and_sixty_four_bit_lengths() {
    for len in [126, 256, 65535, 65536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let bytes = frame(true, opcode::BINARY, &payload);
        assert_eq!(bytes[1] & 0x7F, if len <= 65535 { 126 } else { 127 });
        assert_eq!(decode_all(&bytes), Ok((payload, vec![], 0)), "{len}");
    }
}

#[test]
fn non_minimal_lengths_are_accepted() {
    let mask = [1, 2, 3, 4];
    for form in [LenForm::Ext16, LenForm::Ext64] {
        let bytes = client_frame(true, opcode::BINARY, b"\xc0\x00", mask, form);
        assert_eq!(
            decode_all(&bytes),
            Ok((b"\xc0\x00".to_vec(), vec![], 0)),
            "{form:?}"
        );
    }
}

/// An MQTT 3.1.1 CONNECT (client id "ws"), used as one packet split over frames.
const CONNECT: &[u8] = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02ws";

#[test]
fn one_packet_over_three_fragments() {
    let mut bytes = frame(false, opcode::BINARY, &CONNECT[..3]);
    bytes.extend(frame(false, opcode::CONTINUATION, &CONNECT[3..9]));
    bytes.extend(frame(true, opcode::CONTINUATION, &CONNECT[9..]));
    assert_eq!(decode_all(&bytes), Ok((CONNECT.to_vec(), vec![], 0)));
    // After the message ends a new one may start.
    bytes.extend(frame(true, opcode::BINARY, b"\xc0\x00"));
    let mut expected = CONNECT.to_vec();
    expected.extend_from_slice(b"\xc0\x00");
    assert_eq!(decode_all(&bytes), Ok((expected, vec![], 0)));
}

#[test]
fn empty_fragments_are_fine() {
    let mut bytes = frame(false, opcode::BINARY, b"");
    bytes.extend(frame(false, opcode::CONTINUATION, b"\xc0"));
    bytes.extend(frame(true, opcode::CONTINUATION, b""));
    assert_eq!(decode_all(&bytes), Ok((b"\xc0".to_vec(), vec![], 0)));
}

#[test]
fn two_frames_in_one_buffer() {
    let mut bytes = frame(true, opcode::BINARY, CONNECT);
    bytes.extend(client_frame(
        true,
        opcode::BINARY,
        b"\xc0\x00\xe0\x00",
        [9, 8, 7, 6],
        LenForm::Minimal,
    ));
    let mut expected = CONNECT.to_vec();
    expected.extend_from_slice(b"\xc0\x00\xe0\x00");
    assert_eq!(decode_all(&bytes), Ok((expected, vec![], 0)));
}

#[test]
fn a_frame_one_byte_at_a_time() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut bytes = frame(true, opcode::BINARY, &payload);
    bytes.extend(frame(true, opcode::PING, b"hi"));
    bytes.extend(frame(true, opcode::BINARY, CONNECT));
    let mut expected = payload.clone();
    expected.extend_from_slice(CONNECT);
    let all = decode_all(&bytes).unwrap();
    assert_eq!(
        all,
        (expected, vec![Event::Ping(Bytes::from_static(b"hi"))], 0)
    );
    for piece in 1..=13 {
        assert_eq!(
            decode_pieces(&bytes, piece).unwrap(),
            all,
            "{piece}-byte pieces"
        );
    }
}

#[test]
fn partial_header_and_partial_control_frame_stay_in_the_input() {
    let mut d = Deframer::new(1024);
    let mut mqtt = BytesMut::new();
    let ping = frame(true, opcode::PING, b"abc");
    for n in 0..ping.len() {
        let mut input = BytesMut::from(&ping[..n]);
        assert_eq!(d.decode(&mut input, &mut mqtt), Ok(vec![]));
        assert_eq!(input.len(), n, "{n} bytes of a ping");
    }
    let data = frame(true, opcode::BINARY, b"abc");
    for n in 0..6 {
        let mut input = BytesMut::from(&data[..n]);
        assert_eq!(d.decode(&mut input, &mut mqtt), Ok(vec![]));
        assert_eq!(input.len(), n, "{n} bytes of a data frame header");
    }
    assert!(mqtt.is_empty());
}

#[test]
fn ping_between_fragments() {
    let mut bytes = frame(false, opcode::BINARY, &CONNECT[..5]);
    bytes.extend(frame(true, opcode::PING, b"are you there"));
    bytes.extend(frame(true, opcode::PONG, b""));
    bytes.extend(frame(true, opcode::CONTINUATION, &CONNECT[5..]));
    let events = vec![
        Event::Ping(Bytes::from_static(b"are you there")),
        Event::Pong,
    ];
    assert_eq!(decode_all(&bytes), Ok((CONNECT.to_vec(), events, 0)));
}

#[test]
fn rfc_pong_example() {
    // RFC 6455 §5.7: "A masked Pong response" with "Hello" as its body.
    let bytes = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(decode_all(&bytes), Ok((vec![], vec![Event::Pong], 0)));
}

#[test]
fn close_with_and_without_code() {
    assert_eq!(
        decode_all(&frame(true, opcode::CLOSE, b"")),
        Ok((vec![], vec![Event::Close(None)], 0))
    );
    assert_eq!(
        decode_all(&frame(true, opcode::CLOSE, &1000u16.to_be_bytes())),
        Ok((vec![], vec![Event::Close(Some(1000))], 0))
    );
    let mut reason = 4001u16.to_be_bytes().to_vec();
    reason.extend_from_slice("au revoir é".as_bytes());
    assert_eq!(
        decode_all(&frame(true, opcode::CLOSE, &reason)),
        Ok((vec![], vec![Event::Close(Some(4001))], 0))
    );
}

#[test]
fn nothing_is_decoded_after_close() {
    let mut bytes = frame(true, opcode::BINARY, b"\xc0\x00");
    bytes.extend(frame(true, opcode::CLOSE, &1001u16.to_be_bytes()));
    bytes.extend(frame(true, opcode::BINARY, b"\xe0\x00"));
    bytes.extend([0x81, 0x00]); // a text frame: not even an error any more
    let mut d = Deframer::new(1024);
    let mut input = BytesMut::from(&bytes[..]);
    let mut mqtt = BytesMut::new();
    assert_eq!(
        d.decode(&mut input, &mut mqtt),
        Ok(vec![Event::Close(Some(1001))])
    );
    assert_eq!(&mqtt[..], b"\xc0\x00");
    assert!(input.is_empty());
    input.extend_from_slice(&frame(true, opcode::PING, b""));
    assert_eq!(d.decode(&mut input, &mut mqtt), Ok(vec![]));
    assert_eq!(&mqtt[..], b"\xc0\x00");
}

#[test]
fn every_frame_error() {
    use FrameError::*;
    let mut unmasked = RFC_MASKED_HELLO;
    unmasked[0] = 0x82;
    unmasked[1] = 0x05;
    let mut top_bit = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    top_bit.extend_from_slice(&[0; 4]);
    let mut ping_126 = vec![0x89, 0x80 | 126, 0x00, 0x7E];
    ping_126.extend_from_slice(&[0; 4]);
    ping_126.extend_from_slice(&[0; 126]);
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (unmasked.to_vec(), Unmasked),
        (vec![0x82, 0x00], Unmasked),
        (
            frame(true, 0x40 | opcode::BINARY, b"x"),
            ReservedBits(0b100),
        ),
        (frame(true, 0x10 | opcode::PING, b""), ReservedBits(0b001)),
        (frame(true, opcode::TEXT, b"{}"), Text),
        (frame(true, 0x3, b""), UnknownOpcode(0x3)),
        (frame(true, 0x7, b""), UnknownOpcode(0x7)),
        (frame(true, 0xB, b""), UnknownOpcode(0xB)),
        (frame(true, 0xF, b""), UnknownOpcode(0xF)),
        (
            frame(false, opcode::PING, b""),
            FragmentedControl(opcode::PING),
        ),
        (
            frame(false, opcode::CLOSE, b""),
            FragmentedControl(opcode::CLOSE),
        ),
        (ping_126, ControlTooLong),
        (frame(true, opcode::PONG, &[0; 200]), ControlTooLong),
        (
            frame(true, opcode::CONTINUATION, b"x"),
            UnexpectedContinuation,
        ),
        (
            [
                frame(false, opcode::BINARY, b"a"),
                frame(true, opcode::BINARY, b"b"),
            ]
            .concat(),
            UnfinishedMessage,
        ),
        (
            [
                frame(false, opcode::BINARY, b"a"),
                frame(true, opcode::TEXT, b"b"),
            ]
            .concat(),
            Text,
        ),
        (top_bit, InvalidLength),
        (frame(true, opcode::CLOSE, b"\x03"), CloseOneByte),
        (
            frame(true, opcode::CLOSE, &999u16.to_be_bytes()),
            InvalidCloseCode(999),
        ),
        (
            frame(true, opcode::CLOSE, &1005u16.to_be_bytes()),
            InvalidCloseCode(1005),
        ),
        (
            frame(true, opcode::CLOSE, &1015u16.to_be_bytes()),
            InvalidCloseCode(1015),
        ),
        (
            frame(true, opcode::CLOSE, &2999u16.to_be_bytes()),
            InvalidCloseCode(2999),
        ),
        (
            frame(true, opcode::CLOSE, &5000u16.to_be_bytes()),
            InvalidCloseCode(5000),
        ),
        (
            frame(true, opcode::CLOSE, b"\x03\xe8\xff"),
            CloseReasonNotUtf8,
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(decode_all(&bytes), Err(expected), "{bytes:02x?}");
        // The error is found whatever the pieces the bytes arrive in.
        assert_eq!(
            decode_pieces(&bytes, 1),
            Err(expected),
            "{bytes:02x?} byte by byte"
        );
    }
}

#[test]
fn frames_over_max_frame_are_refused_before_their_payload() {
    let mut d = Deframer::new(100);
    let mut mqtt = BytesMut::new();
    // Only the header of a 101-byte frame: refused without waiting for the payload.
    let bytes = frame(true, opcode::BINARY, &[0; 101]);
    let mut input = BytesMut::from(&bytes[..4]);
    assert_eq!(
        d.decode(&mut input, &mut mqtt),
        Err(FrameError::TooBig { len: 101, max: 100 })
    );
    let mut d = Deframer::new(100);
    let mut input = BytesMut::from(&frame(true, opcode::BINARY, &[0; 100])[..]);
    assert_eq!(d.decode(&mut input, &mut mqtt), Ok(vec![]));
    assert_eq!(mqtt.len(), 100);
    // A control frame is bound by 125, not by max_frame.
    let mut d = Deframer::new(4);
    let mut input = BytesMut::from(&frame(true, opcode::PING, b"hello")[..]);
    assert_eq!(
        d.decode(&mut input, &mut mqtt),
        Ok(vec![Event::Ping(Bytes::from_static(b"hello"))])
    );
}

#[test]
fn close_codes_of_errors() {
    assert_eq!(FrameError::Text.close_code(), 1003);
    assert_eq!(FrameError::TooBig { len: 2, max: 1 }.close_code(), 1009);
    assert_eq!(FrameError::CloseReasonNotUtf8.close_code(), 1007);
    assert_eq!(FrameError::Unmasked.close_code(), 1002);
    assert_eq!(FrameError::UnexpectedContinuation.close_code(), 1002);
}

#[test]
fn server_frames() {
    for (len, header) in [
        (0, vec![0x82, 0x00]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0x00, 126]),
        (65535, vec![0x82, 126, 0xFF, 0xFF]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload = vec![0xA5; len];
        let mut out = BytesMut::new();
        encode_binary(&payload, &mut out);
        assert_eq!(&out[..header.len()], &header[..], "{len}");
        assert_eq!(&out[header.len()..], &payload[..], "{len}");
        let mut split = BytesMut::new();
        encode_binary_header(len, &mut split);
        assert_eq!(&split[..], &header[..], "{len}");
    }
    let mut out = BytesMut::new();
    encode_pong(b"Hello", &mut out);
    // RFC 6455 §5.7's unmasked Ping, as a Pong.
    assert_eq!(&out[..], &[0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    out.clear();
    encode_pong(&[1; 200], &mut out);
    assert_eq!(out.len(), 2 + 125);
    out.clear();
    encode_close(1002, &mut out);
    assert_eq!(&out[..], &[0x88, 0x02, 0x03, 0xEA]);
}

#[test]
fn unmask_matches_bytewise_at_every_length_and_phase() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    for len in 0..40 {
        let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
        let mut fast = data.clone();
        unmask(&mut fast, mask);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(fast, slow, "{len}");
    }
}
