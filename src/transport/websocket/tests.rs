//! Handshake and framing tests: the RFC 6455 examples, requests as real clients send them, every refusal
//! and every frame error, and a property test of the deframer against a test-only client encoder.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

// ---------------------------------------------------------------------------------------------------
// Handshake

fn request(lines: &[&str]) -> Vec<u8> {
    let mut r = lines.join("\r\n");
    r.push_str("\r\n\r\n");
    r.into_bytes()
}

/// A minimal valid request plus `extra` header lines.
fn minimal(extra: &[&str]) -> Vec<u8> {
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let mut lines = vec![
        "GET /mqtt HTTP/1.1",
        "Host: broker:8080",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        &key,
    ];
    lines.extend_from_slice(extra);
    request(&lines)
}

fn parse(buf: &[u8]) -> Result<Option<(Upgrade, usize)>, HandshakeError> {
    parse_upgrade(buf)
}

fn accepted(buf: &[u8]) -> Upgrade {
    let (u, consumed) = parse(buf).expect("valid").expect("complete");
    assert_eq!(consumed, buf.len());
    u
}

/// The request with one header line removed (matched by prefix) or replaced.
fn without(prefix: &str, replacement: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8(minimal(&["Sec-WebSocket-Protocol: mqtt"])).unwrap();
    let mut lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(prefix))
        .expect(prefix);
    match replacement {
        Some(r) => lines[i] = r,
        None => {
            lines.remove(i);
        }
    }
    request(&lines)
}

#[test]
fn accept_key_is_rfc_6455_example() {
    // RFC 6455 §1.3.
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn chrome_request_is_accepted_without_extensions() {
    let req = request(&[
        "GET /mqtt HTTP/1.1",
        "Host: localhost:8080",
        "Connection: Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/124.0.0.0 Safari/537.36",
        "Upgrade: websocket",
        "Origin: http://localhost:3000",
        "Sec-WebSocket-Version: 13",
        "Accept-Encoding: gzip, deflate, br, zstd",
        "Accept-Language: en-US,en;q=0.9",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Protocol: mqtt",
    ]);
    let u = accepted(&req);
    assert_eq!(u.path, "/mqtt");
    assert_eq!(u.key, KEY);
    assert_eq!(u.protocol, Some("mqtt"));
    assert_eq!(u.host.as_deref(), Some("localhost:8080"));
    assert_eq!(u.origin.as_deref(), Some("http://localhost:3000"));
    let mut out = BytesMut::new();
    encode_accept(&u, &mut out);
    assert_eq!(
        &out[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    assert!(!String::from_utf8_lossy(&out).contains("Extensions"));
}

#[test]
fn firefox_keep_alive_upgrade_is_accepted() {
    let req = request(&[
        "GET / HTTP/1.1",
        "Host: example.com",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Accept: */*",
        "Sec-WebSocket-Version: 13",
        "Origin: https://example.com",
        "Sec-WebSocket-Protocol: mqtt",
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Connection: keep-alive, Upgrade",
        "Sec-Fetch-Mode: websocket",
        "Pragma: no-cache",
        "Upgrade: websocket",
    ]);
    let u = accepted(&req);
    assert_eq!(u.path, "/");
    assert_eq!(u.protocol, Some("mqtt"));
}

#[test]
fn paho_python_request_is_accepted() {
    let req = request(&[
        "GET /mqtt HTTP/1.1",
        "Host: test.example:9001",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Origin: https://test.example:9001",
        "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: mqtt",
    ]);
    let u = accepted(&req);
    assert_eq!(u.path, "/mqtt");
    assert_eq!(u.key, "x3JJHMbDL1EzLkh9GBhXDw==");
    assert_eq!(u.protocol, Some("mqtt"));
    // RFC 6455 §1.2's other example key.
    assert_eq!(accept_key(&u.key), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let req = request(&[
        "GET /x HTTP/1.1",
        "upgrade: WebSocket",
        "CONNECTION: upgrade",
        "sec-websocket-version:13",
        "SEC-WEBSOCKET-KEY:   dGhlIHNhbXBsZSBub25jZQ==  ",
    ]);
    let u = accepted(&req);
    assert_eq!(u.key, KEY);
    assert_eq!(u.protocol, None);
    assert_eq!(u.host, None);
}

#[test]
fn no_subprotocol_offered_is_accepted_without_the_header() {
    let u = accepted(&minimal(&[]));
    assert_eq!(u.protocol, None);
    let mut out = BytesMut::new();
    encode_accept(&u, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(!text.contains("Sec-WebSocket-Protocol"), "{text}");
    assert!(
        text.ends_with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
        "{text}"
    );
}

#[test]
fn subprotocol_is_the_brokers_first_choice_among_those_offered() {
    let u = accepted(&minimal(&["Sec-WebSocket-Protocol: wamp, mqttv3.1, mqtt"]));
    assert_eq!(u.protocol, Some("mqtt"));
    let u = accepted(&minimal(&["Sec-WebSocket-Protocol: mqttv3.1"]));
    assert_eq!(u.protocol, Some("mqttv3.1"));
    // Several header lines make one list.
    let u = accepted(&minimal(&[
        "Sec-WebSocket-Protocol: chat",
        "Sec-WebSocket-Protocol: mqtt",
    ]));
    assert_eq!(u.protocol, Some("mqtt"));
    // Tokens are case-sensitive: a browser would fail an answer it did not offer verbatim.
    assert_eq!(
        parse(&minimal(&["Sec-WebSocket-Protocol: MQTT"])),
        Err(HandshakeError::NoMqttSubprotocol)
    );
}

#[test]
fn incomplete_request_needs_more() {
    let req = minimal(&["Sec-WebSocket-Protocol: mqtt"]);
    for n in 0..req.len() {
        assert_eq!(parse(&req[..n]), Ok(None), "prefix of {n} bytes");
    }
    assert!(parse(&req).unwrap().is_some());
}

#[test]
fn pipelined_frames_after_the_request_are_not_consumed() {
    let mut buf = minimal(&["Sec-WebSocket-Protocol: mqtt"]);
    let len = buf.len();
    let frame = [
        0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    buf.extend_from_slice(&frame);
    let (u, consumed) = parse(&buf).unwrap().unwrap();
    assert_eq!(consumed, len);
    assert_eq!(u.protocol, Some("mqtt"));
    assert_eq!(&buf[consumed..], &frame);
}

#[test]
fn request_without_end_is_refused_at_max_request() {
    let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
    while buf.len() < MAX_REQUEST - 20 {
        buf.extend_from_slice(b"X-Filler: abcdefghij\r\n");
    }
    assert_eq!(parse(&buf), Ok(None));
    buf.resize(MAX_REQUEST, b'a');
    assert_eq!(parse(&buf), Err(HandshakeError::TooLarge));
    // The end of the headers past the limit does not count.
    buf.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse(&buf), Err(HandshakeError::TooLarge));
}

#[test]
fn each_refusal() {
    use HandshakeError::*;
    let cases: Vec<(Vec<u8>, HandshakeError)> = vec![
        // A plain MQTT CONNECT on the WebSocket port: refused at its first byte.
        (vec![0x10, 0x0c, 0x00, 0x04], Malformed),
        (b"get / HTTP/1.1".to_vec(), Malformed),
        (request(&["GET /", "Upgrade: websocket"]), Malformed),
        (
            request(&["GET / HTTP/1.1 extra", "Upgrade: websocket"]),
            Malformed,
        ),
        (request(&["GET / FTP/1.1"]), Malformed),
        (without("Host", Some("Host broker")), Malformed),
        (without("Host", Some(" folded: line")), Malformed),
        (without("Host", Some("Bad Name: x")), Malformed),
        (without("GET", Some("POST /mqtt HTTP/1.1")), NotGet),
        (without("GET", Some("GET /mqtt HTTP/1.0")), NotHttp11),
        (without("GET", Some("GET /mqtt HTTP/2")), NotHttp11),
        (without("Upgrade", None), NotWebSocket),
        (without("Upgrade", Some("Upgrade: h2c")), NotWebSocket),
        (without("Connection", None), NoConnectionUpgrade),
        (
            without("Connection", Some("Connection: keep-alive")),
            NoConnectionUpgrade,
        ),
        (without("Sec-WebSocket-Version", None), UnsupportedVersion),
        (
            without("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8")),
            UnsupportedVersion,
        ),
        (
            without(
                "Sec-WebSocket-Version",
                Some("Sec-WebSocket-Version: 13, 8"),
            ),
            UnsupportedVersion,
        ),
        (
            without("Sec-WebSocket-Version", Some("Sec-WebSocket-Version:")),
            UnsupportedVersion,
        ),
        (without("Sec-WebSocket-Key", None), BadKey),
        (
            without("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: c2hvcnQ=")),
            BadKey,
        ),
        (
            without(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="),
            ),
            BadKey,
        ),
        // 17 bytes in 24 characters without padding does not exist; 18 bytes is 24 characters.
        (
            without(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA"),
            ),
            BadKey,
        ),
        (
            without("Host", Some("Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==")),
            BadKey,
        ),
        (
            without(
                "Sec-WebSocket-Protocol",
                Some("Sec-WebSocket-Protocol: wamp, chat"),
            ),
            NoMqttSubprotocol,
        ),
    ];
    for (req, expected) in cases {
        assert_eq!(
            parse(&req),
            Err(expected),
            "{}",
            String::from_utf8_lossy(&req)
        );
    }
    // The helper itself keeps a request valid (each case above breaks exactly one rule).
    assert_eq!(
        accepted(&without("Host", Some("Host: other"))).protocol,
        Some("mqtt")
    );
}

#[test]
fn refusal_responses() {
    let mut out = BytesMut::new();
    encode_refusal(&HandshakeError::UnsupportedVersion, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");

    for e in [
        HandshakeError::Malformed,
        HandshakeError::NoMqttSubprotocol,
        HandshakeError::TooLarge,
    ] {
        let mut out = BytesMut::new();
        encode_refusal(&e, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(!text.contains("Sec-WebSocket-Version"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, format!("{e}\n"));
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// Frames

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

// ---------------------------------------------------------------------------------------------------
// Property: any framing of a stream, fed in any pieces, gives back the stream.

/// One client frame of the generated sequence.
#[derive(Debug, Clone)]
struct Plan {
    /// Where the MQTT stream is cut into frames (sizes), and whether each frame ends its message.
    frames: Vec<(usize, bool)>,
    masks: Vec<[u8; 4]>,
    forms: Vec<u8>,
    /// A ping before frame i, with this payload.
    pings: Vec<Option<Vec<u8>>>,
}

fn plan() -> impl Strategy<Value = (Vec<u8>, Plan, Vec<usize>)> {
    (
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec((0usize..400, any::<bool>()), 1..20),
        proptest::collection::vec(any::<[u8; 4]>(), 20),
        proptest::collection::vec(0u8..3, 20),
        proptest::collection::vec(
            proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..126)),
            20,
        ),
        proptest::collection::vec(1usize..200, 1..50),
    )
        .prop_map(|(stream, frames, masks, forms, pings, pieces)| {
            (
                stream,
                Plan {
                    frames,
                    masks,
                    forms,
                    pings,
                },
                pieces,
            )
        })
}

proptest! {
    #[test]
    fn any_framing_in_any_pieces_gives_back_the_stream((stream, plan, pieces) in plan()) {
        let mut wire = Vec::new();
        let mut pings = Vec::new();
        let mut rest = &stream[..];
        let mut in_message = false;
        let n = plan.frames.len();
        for (i, &(size, fin)) in plan.frames.iter().enumerate() {
            // The last frame takes what is left and ends its message.
            let (size, fin) = if i + 1 == n { (rest.len(), true) } else { (size.min(rest.len()), fin) };
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            if let Some(p) = &plan.pings[i] {
                wire.extend(client_frame(true, opcode::PING, p, plan.masks[i], LenForm::Minimal));
                pings.push(Event::Ping(Bytes::from(p.clone())));
            }
            let op = if in_message { opcode::CONTINUATION } else { opcode::BINARY };
            let form = [LenForm::Minimal, LenForm::Ext16, LenForm::Ext64][usize::from(plan.forms[i])];
            wire.extend(client_frame(fin, op, chunk, plan.masks[i], form));
            in_message = !fin;
        }
        let mut d = Deframer::new(1 << 16);
        let mut input = BytesMut::new();
        let mut mqtt = BytesMut::new();
        let mut events = Events::new();
        let mut at = 0;
        for &piece in pieces.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + piece).min(wire.len());
            input.extend_from_slice(&wire[at..end]);
            at = end;
            events.extend(d.decode(&mut input, &mut mqtt).expect("valid frames"));
        }
        prop_assert_eq!(&mqtt[..], &stream[..]);
        prop_assert_eq!(events, pings);
        prop_assert!(input.is_empty());
    }
}

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
