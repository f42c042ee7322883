//! Reading packets the broker sent: [`Packet`] (first byte and body, as framed by the client) and its
//! decoders into [`ConnAck`], [`Publish`], acks, AUTH and DISCONNECT, with the v5 properties as
//! [`PropValue`]s. Malformed input from the broker panics: it is a test failure.

use super::super::Proto;
use super::kind;

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
