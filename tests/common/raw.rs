//! A hand-written MQTT 3.1 / 3.1.1 / 5.0 encoder, decoder and blocking client for byte-exact tests.
//!
//! Deliberately independent of the broker's codec: a test that shared the codec under test would
//! agree with its bugs. Only what the tests need is here; packets are built as `Vec<u8>` so a test can
//! corrupt any byte before sending.

use super::{Proto, EVENT_TIMEOUT};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Control packet types (the high nibble of the first byte).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// MQTT 5.0 property identifiers used by the tests.
pub mod prop {
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
}

// ---------------------------------------------------------------------------------------------
// Encoding

pub fn encode_varint(mut n: usize, out: &mut Vec<u8>) {
    assert!(n <= 268_435_455, "remaining length too large");
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    put_u16(
        out,
        u16::try_from(b.len()).expect("field longer than 65535"),
    );
    out.extend_from_slice(b);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bin(out, s.as_bytes());
}

/// A whole packet: first byte, remaining length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    encode_varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A v5 property block: varint length followed by the already-encoded properties.
fn props_block(proto: Proto, props: &[u8], out: &mut Vec<u8>) {
    if proto.is_v5() {
        encode_varint(props.len(), out);
        out.extend_from_slice(props);
    }
}

/// Builder for the properties of a v5 packet.
#[derive(Default, Clone)]
pub struct Props(pub Vec<u8>);

impl Props {
    /// A one-byte property (Payload Format Indicator, say).
    pub fn byte(mut self, id: u8, v: u8) -> Self {
        self.0.push(id);
        self.0.push(v);
        self
    }
    pub fn u32(mut self, id: u8, v: u32) -> Self {
        self.0.push(id);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u16(mut self, id: u8, v: u16) -> Self {
        self.0.push(id);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A UTF-8 string property (Authentication Method, say).
    pub fn str(mut self, id: u8, v: &str) -> Self {
        self.0.push(id);
        put_str(&mut self.0, v);
        self
    }
    /// A binary data property (Authentication Data, say).
    pub fn bin(mut self, id: u8, v: &[u8]) -> Self {
        self.0.push(id);
        put_bin(&mut self.0, v);
        self
    }
    pub fn varint(mut self, id: u8, v: usize) -> Self {
        self.0.push(id);
        encode_varint(v, &mut self.0);
        self
    }
}

#[derive(Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// v5 Will Delay Interval, seconds (a Will Property; ignored for 3.x).
    pub delay: Option<u32>,
}

/// A CONNECT packet under construction; `encode()` produces the bytes.
#[derive(Clone)]
pub struct Connect {
    pub proto: Proto,
    pub client_id: String,
    pub clean: bool,
    pub keepalive: u16,
    pub will: Option<Will>,
    /// v5 CONNECT properties (ignored for 3.x).
    pub props: Props,
    /// Extra bits OR-ed into the connect flags byte (to set the reserved bit, say).
    pub extra_flags: u8,
    /// Overrides the protocol level byte (to send an unsupported level).
    pub level_override: Option<u8>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl Connect {
    pub fn new(proto: Proto, client_id: &str) -> Connect {
        Connect {
            proto,
            client_id: client_id.to_string(),
            clean: true,
            keepalive: 60,
            will: None,
            props: Props::default(),
            extra_flags: 0,
            level_override: None,
            username: None,
            password: None,
        }
    }
    /// Username and password flags and fields.
    pub fn login(mut self, username: &str, password: &[u8]) -> Self {
        self.username = Some(username.to_string());
        self.password = Some(password.to_vec());
        self
    }
    /// Username flag and field only.
    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(username.to_string());
        self
    }
    pub fn clean(mut self, clean: bool) -> Self {
        self.clean = clean;
        self
    }
    pub fn keepalive(mut self, secs: u16) -> Self {
        self.keepalive = secs;
        self
    }
    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Self {
        self.will = Some(Will {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            delay: None,
        });
        self
    }
    /// v5: the will (set before) gets a Will Delay Interval.
    pub fn will_delay(mut self, secs: u32) -> Self {
        self.will.as_mut().expect("a will to delay").delay = Some(secs);
        self
    }
    /// A persistent session: clean = 0, and for v5 a Session Expiry Interval so the session outlives
    /// the connection (absent, it is 0 and the session ends with the connection: 5.0 section 3.1.2.11.2).
    pub fn persistent(mut self) -> Self {
        self.clean = false;
        if self.proto.is_v5() {
            self.props = self.props.u32(prop::SESSION_EXPIRY_INTERVAL, 3600);
        }
        self
    }
    pub fn prop_u16(mut self, id: u8, v: u16) -> Self {
        self.props = self.props.u16(id, v);
        self
    }
    pub fn prop_u32(mut self, id: u8, v: u32) -> Self {
        self.props = self.props.u32(id, v);
        self
    }
    pub fn prop_str(mut self, id: u8, v: &str) -> Self {
        self.props = self.props.str(id, v);
        self
    }
    pub fn prop_bin(mut self, id: u8, v: &[u8]) -> Self {
        self.props = self.props.bin(id, v);
        self
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_str(&mut body, self.proto.name());
        body.push(self.level_override.unwrap_or(self.proto.level()));
        let mut flags = self.extra_flags;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        body.push(flags);
        put_u16(&mut body, self.keepalive);
        props_block(self.proto, &self.props.0, &mut body);
        put_str(&mut body, &self.client_id);
        if let Some(w) = &self.will {
            let delay = w
                .delay
                .map(|d| Props::default().u32(prop::WILL_DELAY_INTERVAL, d));
            props_block(
                self.proto,
                delay.as_ref().map_or(&[][..], |p| &p.0),
                &mut body,
            );
            put_str(&mut body, &w.topic);
            put_bin(&mut body, &w.payload);
        }
        if let Some(u) = &self.username {
            put_str(&mut body, u);
        }
        if let Some(p) = &self.password {
            put_bin(&mut body, p);
        }
        frame(0x10, &body)
    }
}

/// A PUBLISH packet. `pkid` is ignored (not written) for QoS 0.
pub fn publish(
    proto: Proto,
    topic: &str,
    qos: u8,
    retain: bool,
    dup: bool,
    pkid: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    if qos > 0 {
        put_u16(&mut body, pkid);
    }
    props_block(proto, &[], &mut body);
    body.extend_from_slice(payload);
    let first = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    frame(first, &body)
}

/// A v5 PUBLISH with properties `props` (`pkid` ignored for QoS 0).
pub fn publish_v5(
    topic: &str,
    qos: u8,
    retain: bool,
    pkid: u16,
    props: &Props,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    if qos > 0 {
        put_u16(&mut body, pkid);
    }
    props_block(Proto::V5, &props.0, &mut body);
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// A v5 SUBSCRIBE with properties `props` and raw options bytes.
pub fn subscribe_v5(pkid: u16, props: &Props, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = Vec::new();
    put_u16(&mut body, pkid);
    props_block(Proto::V5, &props.0, &mut body);
    for (f, options) in filters {
        put_str(&mut body, f);
        body.push(*options);
    }
    frame(0x82, &body)
}

/// A SUBSCRIBE packet; each filter's options byte is just its QoS (v5: no-local 0, RAP 0, handling 0).
pub fn subscribe(proto: Proto, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = Vec::new();
    put_u16(&mut body, pkid);
    props_block(proto, &[], &mut body);
    for (f, qos) in filters {
        put_str(&mut body, f);
        body.push(*qos);
    }
    frame(0x82, &body)
}

pub fn unsubscribe(proto: Proto, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    put_u16(&mut body, pkid);
    props_block(proto, &[], &mut body);
    for f in filters {
        put_str(&mut body, f);
    }
    frame(0xA2, &body)
}

/// PUBACK / PUBREC / PUBREL / PUBCOMP with reason "success" (the short form, valid in 3.x and 5.0).
pub fn ack(kind: u8, pkid: u16) -> Vec<u8> {
    let flags = if kind == kind::PUBREL { 0x02 } else { 0 };
    frame((kind << 4) | flags, &pkid.to_be_bytes())
}

pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0x00]
}

/// DISCONNECT, normal (v5: reason 0x00 is implied by a remaining length of 0).
pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0x00]
}

/// v5 DISCONNECT with a reason code (e.g. 0x04 "Disconnect with Will Message").
pub fn disconnect_v5(reason: u8) -> Vec<u8> {
    vec![0xE0, 0x01, reason]
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A v5 AUTH packet (5.0 §3.15) with a reason code and properties (always written in full).
pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    props_block(Proto::V5, &props.0, &mut body);
    frame(0xF0, &body)
}

/// One packet as received: the first byte and the body after the remaining length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: u8,
    /// v5 properties (empty for 3.x).
    pub props: Vec<(u8, PropValue)>,
}

impl ConnAck {
    pub fn prop(&self, id: u8) -> Option<&PropValue> {
        self.props.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropValue {
    Int(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// 0 for QoS 0.
    pub pkid: u16,
    pub payload: Vec<u8>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().expect("packet truncated");
        self.0 = rest;
        *b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "packet truncated");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn bin(&mut self) -> Vec<u8> {
        let n = self.u16() as usize;
        self.take(n).to_vec()
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.bin()).expect("broker sent a non-UTF-8 string")
    }
    fn varint(&mut self) -> usize {
        let mut n = 0usize;
        for i in 0..4 {
            let b = self.u8();
            n |= ((b & 0x7F) as usize) << (7 * i);
            if b & 0x80 == 0 {
                return n;
            }
        }
        panic!("malformed variable byte integer from the broker");
    }
    fn props(&mut self) -> Vec<(u8, PropValue)> {
        let len = self.varint();
        let mut c = Cursor(self.take(len));
        let mut out = Vec::new();
        while !c.0.is_empty() {
            let id = c.u8();
            let v = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                    PropValue::Int(c.u8() as u32)
                }
                0x13 | 0x21 | 0x22 | 0x23 => PropValue::Int(c.u16() as u32),
                0x02 | 0x11 | 0x18 | 0x27 => PropValue::Int(c.u32()),
                0x0B => PropValue::Int(c.varint() as u32),
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => PropValue::Str(c.string()),
                0x09 | 0x16 => PropValue::Bin(c.bin()),
                0x26 => PropValue::Pair(c.string(), c.string()),
                other => panic!("unknown v5 property id {other:#04x} from the broker"),
            };
            out.push((id, v));
        }
        out
    }
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    fn expect_kind(&self, k: u8) {
        assert_eq!(self.kind(), k, "expected packet type {k}, got {self:?}");
    }

    pub fn connack(&self, proto: Proto) -> ConnAck {
        self.expect_kind(kind::CONNACK);
        assert_eq!(self.first & 0x0F, 0, "CONNACK flags must be 0");
        let mut c = Cursor(&self.body);
        let ack_flags = c.u8();
        let code = c.u8();
        let props = if proto.is_v5() && !c.0.is_empty() {
            c.props()
        } else {
            Vec::new()
        };
        ConnAck {
            session_present: ack_flags & 1 == 1,
            code,
            props,
        }
    }

    pub fn publish(&self, proto: Proto) -> Publish {
        self.expect_kind(kind::PUBLISH);
        let qos = (self.first >> 1) & 3;
        let mut c = Cursor(&self.body);
        let topic = c.string();
        let pkid = if qos > 0 { c.u16() } else { 0 };
        if proto.is_v5() {
            c.props();
        }
        Publish {
            topic,
            qos,
            retain: self.first & 1 == 1,
            dup: self.first & 8 == 8,
            pkid,
            payload: c.0.to_vec(),
        }
    }

    /// The v5 properties of a PUBLISH, in the order sent.
    pub fn publish_props(&self) -> Vec<(u8, PropValue)> {
        self.expect_kind(kind::PUBLISH);
        let qos = (self.first >> 1) & 3;
        let mut c = Cursor(&self.body);
        c.string();
        if qos > 0 {
            c.u16();
        }
        c.props()
    }

    /// Packet id and reason codes of a SUBACK (or UNSUBACK).
    pub fn suback(&self, proto: Proto) -> (u16, Vec<u8>) {
        let mut c = Cursor(&self.body);
        let pkid = c.u16();
        if proto.is_v5() {
            c.props();
        }
        (pkid, c.0.to_vec())
    }

    /// Packet id of a PUBACK/PUBREC/PUBREL/PUBCOMP.
    pub fn ack_pkid(&self) -> u16 {
        Cursor(&self.body).u16()
    }

    /// Reason code and properties of a v5 AUTH (remaining length 0: Success without properties).
    pub fn auth(&self) -> (u8, Vec<(u8, PropValue)>) {
        self.expect_kind(kind::AUTH);
        assert_eq!(self.first & 0x0F, 0, "AUTH flags must be 0 [MQTT-2.1.3-1]");
        let mut c = Cursor(&self.body);
        if c.0.is_empty() {
            return (0, Vec::new());
        }
        let reason = c.u8();
        let props = if c.0.is_empty() {
            Vec::new()
        } else {
            c.props()
        };
        (reason, props)
    }

    /// Properties of a v5 DISCONNECT (empty when it has none).
    pub fn disconnect_props(&self) -> Vec<(u8, PropValue)> {
        self.expect_kind(kind::DISCONNECT);
        let mut c = Cursor(&self.body);
        if c.0.len() < 2 {
            return Vec::new();
        }
        c.u8();
        c.props()
    }

    /// Reason code of a v5 DISCONNECT (0x00 when the remaining length is 0).
    pub fn disconnect_reason(&self) -> u8 {
        self.expect_kind(kind::DISCONNECT);
        self.body.first().copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Client

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
        let topic = format!("witness/{}", super::unique_id("w"));
        let mut sub = RawClient::connect_clean(addr, proto, &super::unique_id("wsub"));
        assert_eq!(sub.subscribe(&[(&topic, 1)]), vec![1]);
        let publ = RawClient::connect_clean(addr, proto, &super::unique_id("wpub"));
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
