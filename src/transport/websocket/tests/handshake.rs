//! The upgrade handshake: the RFC 6455 accept key, requests as real clients (Chrome, Firefox, Paho)
//! send them, subprotocol choice, incomplete and pipelined input, every refusal and its HTTP response.

use bytes::BytesMut;

use super::super::*;

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
