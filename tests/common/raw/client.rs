//! The blocking client: [`RawClient`] sends bytes and reads whole packets over a `TcpStream`, every
//! wait bounded by a deadline, with helpers for the common flows (connect, subscribe, publish with its
//! QoS handshake, expecting a close); and [`Witness`], the healthy pair that proves the broker still
//! serves others after a bad client.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::super::{unique_id, Proto, EVENT_TIMEOUT};
use super::{ack, kind, pingreq, publish, subscribe, ConnAck, Connect, Packet, Publish};

/// How a read ended without a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// EOF or connection reset: the broker closed the connection.
    Closed,
    /// The deadline passed with the connection still open.
    Timeout,
}

/// A blocking MQTT client speaking raw bytes over a `std::net::TcpStream`.
pub struct RawClient {
    pub stream: TcpStream,
    pub proto: Proto,
    /// Bytes received but not yet returned as a packet.
    buf: Vec<u8>,
    next_pkid: u16,
}

impl RawClient {
    /// Opens a TCP connection; sends nothing.
    pub fn open(addr: SocketAddr, proto: Proto) -> RawClient {
        let stream =
            TcpStream::connect_timeout(&addr, EVENT_TIMEOUT).expect("TCP connect to broker");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        RawClient {
            stream,
            proto,
            buf: Vec::new(),
            next_pkid: 0,
        }
    }

    /// Opens a connection, sends `connect` and returns the client and its CONNACK, asserting it was
    /// accepted (return code 0).
    pub fn connect(addr: SocketAddr, connect: &Connect) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(addr, connect.proto);
        c.send(&connect.encode());
        let ack = c.read_packet().connack(connect.proto);
        assert_eq!(ack.code, 0, "CONNACK refused the connection: {ack:?}");
        (c, ack)
    }

    /// Connect with clean session / clean start and default settings.
    pub fn connect_clean(addr: SocketAddr, proto: Proto, client_id: &str) -> RawClient {
        RawClient::connect(addr, &Connect::new(proto, client_id)).0
    }

    pub fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid % 65535 + 1;
        self.next_pkid
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to broker");
    }

    /// Like `send` but tolerates the broker having closed the connection already (a bad-input test
    /// may be cut off mid-write).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one packet, or how the read ended, within `limit`.
    pub fn try_read_packet(&mut self, limit: Duration) -> Result<Packet, ReadEnd> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(p) = self.parse_buffered() {
                return Ok(p);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Err(ReadEnd::Timeout);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return Err(ReadEnd::Closed)
                }
                Err(e) => panic!("read from broker: {e}"),
            }
        }
    }

    fn parse_buffered(&mut self) -> Option<Packet> {
        if self.buf.len() < 2 {
            return None;
        }
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = *self.buf.get(i)?;
            len |= ((b & 0x7F) as usize) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            assert!(i <= 4, "broker sent a malformed remaining length");
        }
        if self.buf.len() < i + len {
            return None;
        }
        let p = Packet {
            first: self.buf[0],
            body: self.buf[i..i + len].to_vec(),
        };
        self.buf.drain(..i + len);
        Some(p)
    }

    /// Reads the next packet; panics if the connection closes or nothing comes within
    /// [`EVENT_TIMEOUT`].
    pub fn read_packet(&mut self) -> Packet {
        match self.try_read_packet(EVENT_TIMEOUT) {
            Ok(p) => p,
            Err(e) => panic!("expected a packet from the broker, got {e:?}"),
        }
    }

    /// Reads the next packet and asserts its type.
    pub fn expect(&mut self, k: u8) -> Packet {
        let p = self.read_packet();
        assert_eq!(p.kind(), k, "expected packet type {k}, got {p:?}");
        p
    }

    /// Waits for the broker to close the connection (EOF or reset) within `limit`; returns the packets
    /// it sent before closing. Panics if the connection stays open.
    pub fn expect_closed_within(&mut self, limit: Duration) -> Vec<Packet> {
        let deadline = Instant::now() + limit;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_packet(left) {
                Ok(p) => before.push(p),
                Err(ReadEnd::Closed) => return before,
                Err(ReadEnd::Timeout) => {
                    panic!("broker did not close the connection within {limit:?} (got {before:?})")
                }
            }
        }
    }

    /// [`expect_closed_within`](Self::expect_closed_within) with [`EVENT_TIMEOUT`].
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        self.expect_closed_within(EVENT_TIMEOUT)
    }

    /// Waits for the broker to close the connection after a protocol violation and checks what it sent
    /// first: nothing in 3.x [MQTT-4.8.0-1]; in 5.0 at most one CONNACK or DISCONNECT carrying an error
    /// reason code (>= 0x80) [MQTT-4.13.1-1].
    pub fn expect_closed_for_violation(&mut self) {
        let before = self.expect_closed();
        if self.proto.is_v5() {
            assert!(
                before.len() <= 1,
                "at most one CONNACK/DISCONNECT before closing, got {before:?}"
            );
            if let Some(p) = before.first() {
                let reason = match p.kind() {
                    kind::DISCONNECT => p.disconnect_reason(),
                    kind::CONNACK => p.connack(Proto::V5).code,
                    _ => panic!("only CONNACK or DISCONNECT may precede the close, got {p:?}"),
                };
                assert!(
                    reason >= 0x80,
                    "the packet before closing must carry an error reason: {p:?}"
                );
            }
        } else {
            assert!(
                before.is_empty(),
                "a 3.x broker closes without sending anything, got {before:?}"
            );
        }
    }

    /// Subscribes and waits for the SUBACK; returns the granted QoS / reason codes.
    pub fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let pkid = self.pkid();
        self.send(&subscribe(self.proto, pkid, filters));
        let p = self.expect(kind::SUBACK);
        let (id, codes) = p.suback(self.proto);
        assert_eq!(id, pkid, "SUBACK packet id [MQTT-3.8.4-2]");
        assert_eq!(codes.len(), filters.len(), "one SUBACK code per filter");
        codes
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP) before returning.
    /// Messages arriving meanwhile would fail the test; use a separate publisher client.
    pub fn publish(&mut self, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
        let pkid = self.pkid();
        self.send(&publish(
            self.proto, topic, qos, retain, false, pkid, payload,
        ));
        match qos {
            0 => {}
            1 => assert_eq!(self.expect(kind::PUBACK).ack_pkid(), pkid),
            2 => {
                assert_eq!(self.expect(kind::PUBREC).ack_pkid(), pkid);
                self.send(&ack(kind::PUBREL, pkid));
                assert_eq!(self.expect(kind::PUBCOMP).ack_pkid(), pkid);
            }
            _ => unreachable!(),
        }
    }

    /// Reads the next packet, asserts it is a PUBLISH and decodes it (no ack is sent).
    pub fn recv_publish(&mut self) -> Publish {
        self.expect(kind::PUBLISH).publish(self.proto)
    }

    /// Asserts no packet arrives for `d` and the connection stays open. Only for proving absence
    /// where there is no later event to wait for; callers say why in a comment.
    pub fn expect_silence(&mut self, d: Duration) {
        match self.try_read_packet(d) {
            Err(ReadEnd::Timeout) => {}
            other => panic!("expected silence for {d:?}, got {other:?}"),
        }
    }

    pub fn ping(&mut self) {
        self.send(&pingreq());
        self.expect(kind::PINGRESP);
    }
}

/// A pair of healthy clients (subscriber + publisher) used to prove the broker still serves others
/// after a bad client was dealt with: "nothing else disturbed".
pub struct Witness {
    sub: RawClient,
    publ: RawClient,
    topic: String,
    rounds: u32,
}

impl Witness {
    pub fn new(addr: SocketAddr, proto: Proto) -> Witness {
        let topic = format!("witness/{}", unique_id("w"));
        let mut sub = RawClient::connect_clean(addr, proto, &unique_id("wsub"));
        assert_eq!(sub.subscribe(&[(&topic, 1)]), vec![1]);
        let publ = RawClient::connect_clean(addr, proto, &unique_id("wpub"));
        Witness {
            sub,
            publ,
            topic,
            rounds: 0,
        }
    }

    /// Publishes one QoS 1 message and asserts the subscriber receives it.
    pub fn check(&mut self) {
        self.rounds += 1;
        let payload = format!("still alive {}", self.rounds);
        self.publ.publish(&self.topic, 1, false, payload.as_bytes());
        let p = self.sub.recv_publish();
        assert_eq!(p.topic, self.topic);
        assert_eq!(
            p.payload,
            payload.as_bytes(),
            "witness client was not served after a bad client"
        );
        self.sub.send(&ack(kind::PUBACK, p.pkid));
    }
}
