//! MQTT over WebSockets (`protocol websockets`): a hand-rolled RFC 6455 client that shapes frames as no
//! library would (a packet split over frames and over a fragmented message, several packets in one
//! frame, pings between fragments), the refusals (not a WebSocket request, a wrong version, no mqtt
//! subprotocol, text and unmasked frames) that disturb nobody else, and paho-mqtt's websocket
//! transport over ws:// and wss://. With 1 and 4 shards, so that the WebSocket state is handed to the
//! client's home shard.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::broker::TestBroker;
use common::raw::{self, kind, Connect, RawClient};
use common::{unique_id, with_timeout, Proto};

/// The key of RFC 6455 §1.3 and the accept value it must get.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A WebSocket client over a blocking socket.
struct Ws {
    s: TcpStream,
    /// MQTT bytes received and not yet parsed into packets.
    mqtt: Vec<u8>,
}

/// Sends `request` and returns the HTTP response head the broker answered with.
fn http(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

impl Ws {
    fn connect(addr: SocketAddr) -> Ws {
        let (s, head) = http(
            addr,
            &upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n"),
        );
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        assert!(head.contains(ACCEPT), "wrong Sec-WebSocket-Accept: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-protocol: mqtt\r\n"),
            "subprotocol not chosen: {head}"
        );
        Ws {
            s,
            mqtt: Vec::new(),
        }
    }

    /// One client frame, masked.
    fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    /// The next server frame: (FIN, opcode, payload). Server frames must not be masked.
    fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).expect("a frame header");
        assert_eq!(h[1] & 0x80, 0, "the server masked a frame");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload).unwrap();
        (h[0] & 0x80 != 0, h[0] & 0x0f, payload)
    }

    /// The next MQTT packet (first byte, body), from binary frames.
    fn packet(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some(p) = split_packet(&mut self.mqtt) {
                return p;
            }
            let (_, opcode, payload) = self.read_frame();
            assert!(
                opcode == BINARY || opcode == CONTINUATION,
                "expected MQTT in binary frames, got opcode {opcode}"
            );
            self.mqtt.extend_from_slice(&payload);
        }
    }

    fn expect(&mut self, k: u8) -> Vec<u8> {
        let (first, body) = self.packet();
        assert_eq!(first >> 4, k, "expected packet type {k}, got {first:#x}");
        body
    }

    /// The server's close frame (its code), then the end of the stream.
    fn expect_close(&mut self) -> u16 {
        loop {
            let (_, opcode, payload) = self.read_frame();
            if opcode == CLOSE {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let mut rest = Vec::new();
                let _ = self.s.read_to_end(&mut rest);
                assert!(rest.is_empty(), "bytes after the close frame: {rest:?}");
                return code;
            }
        }
    }
}

fn split_packet(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        len |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if buf.len() < i + len {
        return None;
    }
    let first = buf[0];
    let body = buf[i..i + len].to_vec();
    buf.drain(..i + len);
    Some((first, body))
}

/// A broker with a plain MQTT listener (`broker.addr()`) and a WebSocket one (the second address).
fn start(shards: usize) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start(shards, "listener 1884 127.0.0.1\nprotocol websockets\n");
    let ws = broker.addrs()[1];
    (broker, ws)
}

/// A plain MQTT client beside the WebSocket ones.
fn tcp_client(broker: &TestBroker, role: &str) -> RawClient {
    RawClient::connect_clean(broker.addr(), Proto::V311, &unique_id(role))
}

#[test]
fn frames_of_any_shape_carry_mqtt_both_ways() {
    if common::broker::external_mosquitto() {
        // Needs two listeners of the embedded broker (plain and WebSocket).
        return;
    }
    with_timeout("websocket frames", Duration::from_secs(60), || {
        for &shards in common::shard_counts() {
            let (broker, ws_addr) = start(shards);
            let mut ws = Ws::connect(ws_addr);
            // CONNECT over three frames: a whole one, then a fragmented message with a ping between
            // its fragments.
            let connect = Connect::new(Proto::V311, &unique_id("ws")).encode();
            let (a, rest) = connect.split_at(3);
            let (b, c) = rest.split_at(rest.len() / 2);
            ws.frame(true, BINARY, a);
            ws.frame(false, BINARY, b);
            ws.frame(true, PING, b"still there?");
            ws.frame(true, CONTINUATION, c);
            let (fin, opcode, payload) = ws.read_frame();
            assert_eq!(
                (fin, opcode, &payload[..]),
                (true, PONG, &b"still there?"[..])
            );
            ws.expect(kind::CONNACK);
            // SUBSCRIBE and PINGREQ in one frame.
            let mut two = raw::subscribe(Proto::V311, 1, &[("ws/#", 1)]);
            two.extend(raw::pingreq());
            ws.frame(true, BINARY, &two);
            // Both answered (the SUBACK may come second: it waits for the other shards to know).
            let mut kinds = [ws.packet().0 >> 4, ws.packet().0 >> 4];
            kinds.sort();
            assert_eq!(kinds, [kind::SUBACK, kind::PINGRESP]);
            // From a TCP client to the WebSocket one, and back; a payload above 64 KiB takes the
            // 64-bit length form.
            let mut tcp = tcp_client(&broker, "tcp");
            let big = vec![b'x'; 70_000];
            tcp.send(&raw::publish(
                Proto::V311,
                "ws/in",
                1,
                false,
                false,
                7,
                &big,
            ));
            tcp.expect(kind::PUBACK);
            let body = ws.expect(kind::PUBLISH);
            assert!(body.ends_with(&big), "payload changed on the way");
            assert_eq!(&body[2..7], b"ws/in");
            let pkid = [body[7], body[8]];
            ws.frame(true, BINARY, &[0x40, 2, pkid[0], pkid[1]]);
            assert_eq!(tcp.subscribe(&[("tcp/#", 0)]), vec![0]);
            ws.frame(
                true,
                BINARY,
                &raw::publish(Proto::V311, "tcp/out", 0, false, false, 0, b"from ws"),
            );
            let m = tcp.recv_publish();
            assert_eq!(
                (m.topic.as_str(), &m.payload[..]),
                ("tcp/out", &b"from ws"[..])
            );
            // The client's close is echoed, then the connection ends.
            ws.frame(true, CLOSE, &1000u16.to_be_bytes());
            assert_eq!(ws.expect_close(), 1000);
        }
    });
}

/// A connection idle for a second gives up its task (`src/shard/parking.rs`) while a WebSocket frame
/// header may be half read: that part must wait with the connection, not be lost with the task.
#[test]
fn a_frame_split_across_an_idle_park_is_read_whole() {
    if common::broker::external_mosquitto() {
        return;
    }
    with_timeout("websocket park", Duration::from_secs(60), || {
        for &shards in common::shard_counts() {
            let broker = TestBroker::start(
                shards,
                "sys_interval 1\nlistener 1884 127.0.0.1\nprotocol websockets\n",
            );
            let mut ws = Ws::connect(broker.addrs()[1]);
            ws.frame(
                true,
                BINARY,
                &Connect::new(Proto::V311, &unique_id("ws")).encode(),
            );
            ws.expect(kind::CONNACK);
            let mut tcp = tcp_client(&broker, "tcp");
            assert_eq!(tcp.subscribe(&[("ws/parked", 0)]), vec![0]);
            // The frame's header and a byte of its mask now (nothing the broker can unmask yet, so
            // nothing for MQTT to wait on), the rest once both clients are parked.
            let publish = raw::publish(Proto::V311, "ws/parked", 0, false, false, 0, b"whole");
            let mask = [0x11, 0x22, 0x33, 0x44];
            let mut frame = vec![0x80 | BINARY, 0x80 | publish.len() as u8];
            frame.extend_from_slice(&mask);
            frame.extend(publish.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            let (first, rest) = frame.split_at(3);
            ws.s.write_all(first).unwrap();
            common::wait_parked(broker.addr(), 2);
            ws.s.write_all(rest).unwrap();
            let m = tcp.recv_publish();
            assert_eq!(
                (m.topic.as_str(), &m.payload[..]),
                ("ws/parked", &b"whole"[..])
            );
            // And the other way, to the parked WebSocket client.
            ws.frame(
                true,
                BINARY,
                &raw::subscribe(Proto::V311, 1, &[("tcp/parked", 0)]),
            );
            ws.expect(kind::SUBACK);
            common::wait_parked(broker.addr(), 2);
            tcp.publish("tcp/parked", 0, false, b"to ws");
            let body = ws.expect(kind::PUBLISH);
            assert!(body.ends_with(b"to ws"), "payload changed on the way");
        }
    });
}

#[test]
fn bad_requests_and_frames_are_refused_and_disturb_nobody() {
    if common::broker::external_mosquitto() {
        // Needs two listeners of the embedded broker; libwebsockets' HTTP refusals differ in detail.
        return;
    }
    with_timeout("websocket refusals", Duration::from_secs(60), || {
        for &shards in common::shard_counts() {
            let (broker, ws_addr) = start(shards);
            let mut watcher = Ws::connect(ws_addr);
            watcher.frame(
                true,
                BINARY,
                &Connect::new(Proto::V311, &unique_id("watch")).encode(),
            );
            watcher.expect(kind::CONNACK);
            watcher.frame(
                true,
                BINARY,
                &raw::subscribe(Proto::V311, 1, &[("calm/#", 0)]),
            );
            watcher.expect(kind::SUBACK);
            // Plain MQTT on a WebSocket port: an HTTP error, then the end.
            let (mut s, head) = http(ws_addr, "\x10\x11\x00\x04MQTT\x04\x02\x00\x1e\x00\x05plain");
            assert!(head.starts_with("HTTP/1.1 400"), "plain MQTT got: {head}");
            let _ = s.read_to_end(&mut Vec::new());
            for (request, status) in [
                (
                    upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n")
                        .replace("Version: 13", "Version: 8"),
                    "426",
                ),
                (
                    upgrade_request("/mqtt", "Sec-WebSocket-Protocol: chat\r\n"),
                    "400",
                ),
                (
                    upgrade_request("/", "").replace("Upgrade: websocket\r\n", ""),
                    "400",
                ),
            ] {
                let (_, head) = http(ws_addr, &request);
                assert!(
                    head.starts_with(&format!("HTTP/1.1 {status}")),
                    "{request:?} got {head}"
                );
            }
            // After the upgrade: a text frame closes with 1003, an unmasked one with 1002.
            let mut ws = Ws::connect(ws_addr);
            ws.frame(true, TEXT, b"hello");
            assert_eq!(ws.expect_close(), 1003);
            let mut ws = Ws::connect(ws_addr);
            ws.s.write_all(&[0x82, 0x02, 0xc0, 0x00]).unwrap();
            assert_eq!(ws.expect_close(), 1002);
            // Everyone else was undisturbed.
            let mut publisher = tcp_client(&broker, "pub");
            publisher.send(&raw::publish(
                Proto::V311,
                "calm/x",
                1,
                false,
                false,
                1,
                b"ok",
            ));
            publisher.expect(kind::PUBACK);
            let body = watcher.expect(kind::PUBLISH);
            assert_eq!(&body[2..8], b"calm/x");
            assert!(body.ends_with(b"ok"));
        }
    });
}

/// paho-mqtt's own websocket transport (`transport="websockets"`), ws:// and wss://.
#[test]
fn paho_over_ws_and_wss() {
    if !common::paho_present() {
        return;
    }
    with_timeout("paho over websockets", Duration::from_secs(60), || {
        let dir = std::env::temp_dir().join(unique_id("wss"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/transport.py");
        for &shards in common::shard_counts() {
            for tls in [false, true] {
                let extra = if tls {
                    format!(
                        "protocol websockets\ncertfile {}\nkeyfile {}\n",
                        dir.join("server.crt").display(),
                        dir.join("server.key").display()
                    )
                } else {
                    "protocol websockets\n".to_owned()
                };
                let broker = TestBroker::start(shards, &extra);
                let mut cmd = Command::new("python3");
                cmd.arg(&script)
                    .args(["127.0.0.1", &broker.port().to_string(), "--websockets"]);
                if tls {
                    cmd.arg("--cafile").arg(dir.join("server.crt"));
                }
                let out = cmd.output().expect("run python3");
                assert!(
                    out.status.success(),
                    "{shards} shard(s), tls {tls}: transport.py over websockets failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
