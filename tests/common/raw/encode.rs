//! Building packets: the wire primitives (variable byte integer, two-byte lengths, strings, binary
//! data, the fixed header), the v5 property builder [`Props`], the [`Connect`] builder, and one function
//! per other packet a test sends. Every packet comes out as a `Vec<u8>`, so a test can corrupt any byte
//! before sending.

use super::super::Proto;
use super::{kind, prop};

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

/// A v5 AUTH packet (5.0 §3.15) with a reason code and properties (always written in full).
pub fn auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    props_block(Proto::V5, &props.0, &mut body);
    frame(0xF0, &body)
}
