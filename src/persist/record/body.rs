//! Record bodies: the kind byte and each variant's fields, written into and read from a body whose
//! frame (length and checksum) `super` handles. Read only after the checksum held, so a failure here is
//! a body this code does not write: corruption, or a newer format.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Record, RecordError, StoredMessage};
use crate::codec::{
    decode_property_block, encode_property_block, EncodeError, LastWill, Properties,
    PropertyContext, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions, Utf8Bytes,
    MAX_VAR_INT,
};
use crate::message::DurableKey;

pub(super) mod kind {
    pub const SESSION: u8 = 1;
    pub const SESSION_GONE: u8 = 2;
    pub const SUBSCRIBE: u8 = 3;
    pub const UNSUBSCRIBE: u8 = 4;
    pub const QUEUE: u8 = 5;
    pub const INFLIGHT: u8 = 6;
    pub const RELEASED: u8 = 7;
    pub const DONE: u8 = 8;
    pub const DISCARD: u8 = 9;
    pub const RETAIN: u8 = 10;
    pub const RETAIN_CLEAR: u8 = 11;
    pub const MESSAGE: u8 = 12;
    pub const ACCEPTED: u8 = 13;
    pub const ACCEPTED_DONE: u8 = 14;
    pub const ROUTED: u8 = 15;
    pub const SEEN: u8 = 16;
}

fn put_str(out: &mut BytesMut, s: &Utf8Bytes) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong { len: s.len() })?;
    out.put_u16_le(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_payload(out: &mut BytesMut, b: &[u8]) -> Result<(), EncodeError> {
    let len = u32::try_from(b.len()).map_err(|_| EncodeError::PacketTooLarge { size: b.len() })?;
    out.put_u32_le(len);
    out.put_slice(b);
    Ok(())
}

fn put_key(out: &mut BytesMut, k: &DurableKey) -> Result<(), EncodeError> {
    out.put_u64_le(k.key);
    put_str(out, &k.publisher)?;
    out.put_u16_le(k.packet_id);
    Ok(())
}

/// Bit 6 of a stored options byte (reserved in MQTT's): a `u32` Subscription Identifier follows.
/// Added without a new format version: records without an identifier are written as before, and
/// files written before read unchanged (only a broker older than this reads such a record as corrupt).
const HAS_IDENTIFIER: u8 = 0x40;

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
        | if o.identifier != 0 { HAS_IDENTIFIER } else { 0 }
}

fn put_message(out: &mut BytesMut, m: &StoredMessage) -> Result<(), EncodeError> {
    put_str(out, &m.topic)?;
    out.put_u8(m.qos as u8);
    out.put_u8(u8::from(m.retain));
    put_payload(out, &m.payload)?;
    match &m.properties {
        Some(p) => encode_property_block(out, p),
        None => encode_property_block(out, &Properties::default()),
    }
}

pub(super) fn write(record: &Record, out: &mut BytesMut) -> Result<(), EncodeError> {
    match record {
        Record::Session {
            client_id,
            protocol,
            expiry_interval,
            will,
            username,
            listener,
            away_since,
        } => {
            out.put_u8(kind::SESSION);
            put_str(out, client_id)?;
            out.put_u8(*protocol as u8);
            out.put_u32_le(*expiry_interval);
            match username {
                None => out.put_u8(0),
                Some(u) => {
                    out.put_u8(1);
                    put_str(out, u)?;
                }
            }
            out.put_u16_le(*listener);
            match will {
                None => out.put_u8(0),
                Some(w) => {
                    out.put_u8(1);
                    put_str(out, &w.topic)?;
                    out.put_u8(w.qos as u8);
                    out.put_u8(u8::from(w.retain));
                    put_payload(out, &w.payload)?;
                    encode_property_block(out, &w.properties)?;
                }
            }
            out.put_u64_le(*away_since);
        }
        Record::SessionGone { client_id } => {
            out.put_u8(kind::SESSION_GONE);
            put_str(out, client_id)?;
        }
        Record::Subscribe {
            client_id,
            filter,
            options,
        } => {
            out.put_u8(kind::SUBSCRIBE);
            put_str(out, client_id)?;
            put_str(out, filter)?;
            out.put_u8(options_byte(options));
            if options.identifier != 0 {
                out.put_u32_le(options.identifier);
            }
        }
        Record::Unsubscribe { client_id, filter } => {
            out.put_u8(kind::UNSUBSCRIBE);
            put_str(out, client_id)?;
            put_str(out, filter)?;
        }
        Record::Message {
            message_id,
            key,
            message,
        } => {
            out.put_u8(kind::MESSAGE);
            out.put_u64_le(*message_id);
            match key {
                None => out.put_u8(0),
                Some(k) => {
                    out.put_u8(1);
                    put_key(out, k)?;
                }
            }
            put_message(out, message)?;
        }
        Record::Accepted {
            client_id,
            packet_id,
            key,
            message,
        } => {
            out.put_u8(kind::ACCEPTED);
            put_str(out, client_id)?;
            out.put_u16_le(*packet_id);
            out.put_u64_le(*key);
            match message {
                None => out.put_u8(0),
                Some(m) => {
                    out.put_u8(1);
                    put_message(out, m)?;
                }
            }
        }
        Record::AcceptedDone {
            client_id,
            packet_id,
            key,
        } => {
            out.put_u8(kind::ACCEPTED_DONE);
            put_str(out, client_id)?;
            out.put_u16_le(*packet_id);
            out.put_u64_le(*key);
        }
        Record::Routed { key } => {
            out.put_u8(kind::ROUTED);
            out.put_u64_le(*key);
        }
        Record::Seen(k) => {
            out.put_u8(kind::SEEN);
            put_key(out, k)?;
        }
        Record::Queue {
            client_id,
            message_id,
            qos,
            retain,
        } => {
            out.put_u8(kind::QUEUE);
            put_str(out, client_id)?;
            out.put_u64_le(*message_id);
            out.put_u8(*qos as u8);
            out.put_u8(u8::from(*retain));
        }
        Record::Inflight {
            client_id,
            message_id,
            packet_id,
        } => {
            out.put_u8(kind::INFLIGHT);
            put_str(out, client_id)?;
            out.put_u64_le(*message_id);
            out.put_u16_le(*packet_id);
        }
        Record::Released {
            client_id,
            packet_id,
        } => {
            out.put_u8(kind::RELEASED);
            put_str(out, client_id)?;
            out.put_u16_le(*packet_id);
        }
        Record::Done {
            client_id,
            packet_id,
        } => {
            out.put_u8(kind::DONE);
            put_str(out, client_id)?;
            out.put_u16_le(*packet_id);
        }
        Record::Discard {
            client_id,
            message_id,
        } => {
            out.put_u8(kind::DISCARD);
            put_str(out, client_id)?;
            out.put_u64_le(*message_id);
        }
        Record::Retain { message } => {
            out.put_u8(kind::RETAIN);
            put_message(out, message)?;
        }
        Record::RetainClear { topic } => {
            out.put_u8(kind::RETAIN_CLEAR);
            put_str(out, topic)?;
        }
    }
    Ok(())
}

fn malformed(reason: &'static str) -> RecordError {
    RecordError::Malformed { offset: 0, reason }
}

/// Reads a whole verified body: one record, and nothing after its fields.
pub(super) fn read(body: Bytes) -> Result<Record, RecordError> {
    let mut r = Reader { body, pos: 0 };
    let record = read_record(&mut r)?;
    if r.pos != r.body.len() {
        return Err(malformed("trailing bytes after the record's fields"));
    }
    Ok(record)
}

/// A cursor over one verified record body.
struct Reader {
    body: Bytes,
    pos: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, RecordError> {
        if n > self.body.len() - self.pos {
            return Err(malformed("field runs past the end of the body"));
        }
        let b = self.body.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let b = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(&b);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed("flag byte is neither 0 nor 1")),
        }
    }

    fn string(&mut self) -> Result<Utf8Bytes, RecordError> {
        let len = self.u16()?;
        let b = self.take(usize::from(len))?;
        Utf8Bytes::try_from(b).map_err(|_| malformed("string is not UTF-8"))
    }

    fn payload(&mut self) -> Result<Bytes, RecordError> {
        let len = self.u32()?;
        self.take(len as usize)
    }

    fn qos(&mut self) -> Result<QoS, RecordError> {
        QoS::from_u8(self.u8()?).ok_or(malformed("QoS above 2"))
    }

    fn packet_id(&mut self) -> Result<u16, RecordError> {
        match self.u16()? {
            0 => Err(malformed("packet id 0")),
            id => Ok(id),
        }
    }

    fn properties(&mut self, ctx: PropertyContext) -> Result<Properties, RecordError> {
        let rest = self.body.slice(self.pos..);
        let (props, used) = decode_property_block(rest, ctx)
            .map_err(|error| RecordError::Properties { offset: 0, error })?;
        self.pos += used;
        Ok(props)
    }

    fn key(&mut self) -> Result<DurableKey, RecordError> {
        Ok(DurableKey {
            key: self.u64()?,
            publisher: self.string()?,
            packet_id: self.packet_id()?,
        })
    }

    fn message(&mut self) -> Result<StoredMessage, RecordError> {
        let topic = self.string()?;
        let qos = self.qos()?;
        let retain = self.bool()?;
        let payload = self.payload()?;
        let props = self.properties(PropertyContext::Publish)?;
        Ok(StoredMessage {
            topic,
            payload,
            qos,
            retain,
            properties: (!props.is_empty()).then(|| Box::new(props)),
        })
    }
}

/// Stored subscription options: the options byte, and the identifier it announces.
fn read_stored_options(r: &mut Reader) -> Result<SubscriptionOptions, RecordError> {
    let b = r.u8()?;
    let mut options = read_options(b & !HAS_IDENTIFIER)?;
    if b & HAS_IDENTIFIER != 0 {
        options.identifier = match r.u32()? {
            id @ 1..=MAX_VAR_INT => id,
            _ => return Err(malformed("subscription identifier out of range")),
        };
    }
    Ok(options)
}

pub(super) fn read_options(b: u8) -> Result<SubscriptionOptions, RecordError> {
    if b & 0xC0 != 0 {
        return Err(malformed("reserved subscription option bits set"));
    }
    let retain_handling = match (b >> 4) & 3 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(malformed("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(b & 3).ok_or(malformed("subscription QoS above 2"))?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling,
        identifier: 0,
    })
}

fn read_record(r: &mut Reader) -> Result<Record, RecordError> {
    let k = r.u8()?;
    Ok(match k {
        kind::SESSION => {
            let client_id = r.string()?;
            let protocol = match r.u8()? {
                3 => ProtocolVersion::V31,
                4 => ProtocolVersion::V311,
                5 => ProtocolVersion::V5,
                _ => return Err(malformed("unknown protocol version")),
            };
            let expiry_interval = r.u32()?;
            let username = if r.bool()? { Some(r.string()?) } else { None };
            let listener = r.u16()?;
            let will = if r.bool()? {
                let topic = r.string()?;
                let qos = r.qos()?;
                let retain = r.bool()?;
                let payload = r.payload()?;
                let properties = r.properties(PropertyContext::Will)?;
                Some(Box::new(LastWill {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties,
                }))
            } else {
                None
            };
            // A trailing field: records written before it existed end after the will.
            let away_since = if r.pos < r.body.len() { r.u64()? } else { 0 };
            Record::Session {
                client_id,
                protocol,
                expiry_interval,
                will,
                username,
                listener,
                away_since,
            }
        }
        kind::SESSION_GONE => Record::SessionGone {
            client_id: r.string()?,
        },
        kind::SUBSCRIBE => Record::Subscribe {
            client_id: r.string()?,
            filter: r.string()?,
            options: read_stored_options(r)?,
        },
        kind::UNSUBSCRIBE => Record::Unsubscribe {
            client_id: r.string()?,
            filter: r.string()?,
        },
        kind::MESSAGE => Record::Message {
            message_id: r.u64()?,
            key: if r.bool()? { Some(r.key()?) } else { None },
            message: r.message()?,
        },
        kind::ACCEPTED => Record::Accepted {
            client_id: r.string()?,
            packet_id: r.packet_id()?,
            key: r.u64()?,
            message: if r.bool()? { Some(r.message()?) } else { None },
        },
        kind::ACCEPTED_DONE => Record::AcceptedDone {
            client_id: r.string()?,
            packet_id: r.packet_id()?,
            key: r.u64()?,
        },
        kind::ROUTED => Record::Routed { key: r.u64()? },
        kind::SEEN => Record::Seen(r.key()?),
        kind::QUEUE => Record::Queue {
            client_id: r.string()?,
            message_id: r.u64()?,
            qos: r.qos()?,
            retain: r.bool()?,
        },
        kind::INFLIGHT => Record::Inflight {
            client_id: r.string()?,
            message_id: r.u64()?,
            packet_id: r.packet_id()?,
        },
        kind::RELEASED => Record::Released {
            client_id: r.string()?,
            packet_id: r.packet_id()?,
        },
        kind::DONE => Record::Done {
            client_id: r.string()?,
            packet_id: r.packet_id()?,
        },
        kind::DISCARD => Record::Discard {
            client_id: r.string()?,
            message_id: r.u64()?,
        },
        kind::RETAIN => Record::Retain {
            message: r.message()?,
        },
        kind::RETAIN_CLEAR => Record::RetainClear { topic: r.string()? },
        kind => return Err(RecordError::UnknownKind { offset: 0, kind }),
    })
}
