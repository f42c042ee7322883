//! The on-disk record format of a shard's log and snapshot, and its encoder and decoder (sans-IO).
//!
//! A file is a [`Header`] followed by records. Integers are little-endian.
//!
//! - Header ([`HEADER_LEN`] bytes): magic `SHMQLOG\0`, format version `u16`, shard id `u16`, shard count
//!   `u16`, then the CRC-32C of those 14 bytes (`u32`).
//! - Record: `len: u32` (of the body), `crc: u32` (CRC-32C of the four `len` bytes and the body, so a
//!   damaged length is caught too), then the body: a kind byte and the fields. Strings (client ids,
//!   topics, filters) are a `u16` length and UTF-8; payloads a `u32` length and the bytes; v5 properties
//!   are the property block exactly as a packet carries it (the codec's own encoder and decoder, checked
//!   for PUBLISH, or for the Will Properties of a will). A body above [`MAX_BODY_LEN`] is corrupt.
//!
//! Decoding never panics and allocates nothing a length field asks for before that length was checked
//! against the bytes actually present and the record's checksum verified. [`decode`] (or [`Decoder`])
//! steps through records; [`replay`] reads a whole file and says how it ended ([`Tail`]).

// Spelled out so that the fuzz targets, which compile this file alone by `#[path]`, find it too.
#[path = "record/body.rs"]
mod body;
#[cfg(test)]
mod tests;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{
    DecodeError, EncodeError, LastWill, Properties, ProtocolVersion, QoS, SubscriptionOptions,
    Utf8Bytes,
};
use crate::message::{DurableKey, Message, Remaining};

/// The first bytes of every log and snapshot file.
pub const MAGIC: [u8; 8] = *b"SHMQLOG\0";
/// The format version written by this code (and the only one it reads).
pub const FORMAT_VERSION: u16 = 2;
/// Bytes of the file header.
pub const HEADER_LEN: usize = 18;
/// Bytes in front of each record body: length and checksum.
pub const FRAME_LEN: usize = 8;
/// The largest record body: an MQTT packet is at most 256 MiB, plus headroom for the record's own
/// fields. A longer length field is corruption, never an allocation.
pub const MAX_BODY_LEN: u32 = (256 + 1) << 20;

/// The file header: which shard wrote the file, out of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub shard: u16,
    pub shards: u16,
}

/// A message as stored: what [`Message`] carries, less its origin (which does not outlive the process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: Utf8Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// v5 properties (PUBLISH context), boxed and only when there are any, as in [`Message`].
    pub properties: Option<Box<Properties>>,
}

impl StoredMessage {
    /// The message as it stands now: a Message Expiry Interval is what is left of it (a record is
    /// read back later, in another process or on another node, whose clock starts afresh: a
    /// moving session's owed messages, a snapshot, a restart). One that expired meanwhile keeps
    /// 1 s (0 would mean "never").
    pub fn from_message(m: &Message) -> StoredMessage {
        let mut stored = StoredMessage::as_published(m);
        if m.can_expire() {
            let left = match m.remaining(std::time::Instant::now()) {
                Remaining::Left(n) => Some(n),
                Remaining::Expired => Some(1),
                Remaining::Unchanged | Remaining::Never => None,
            };
            if let (Some(left), Some(p)) = (left, stored.properties.as_mut()) {
                p.message_expiry_interval = Some(left);
            }
        }
        stored
    }

    /// The message with its properties as published, for a reader that counts the time since
    /// itself (`cluster::wire`, which carries when the PUBLISH was received).
    pub fn as_published(m: &Message) -> StoredMessage {
        let p = m.properties();
        StoredMessage {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            properties: (!p.is_empty()).then(|| Box::new(p.clone())),
        }
    }

    /// The message to route again (no origin: it has no live publisher).
    pub fn into_message(self) -> Message {
        let props = self.properties.map(|p| *p).unwrap_or_default();
        Message::new(self.topic, self.payload, self.qos, self.retain, props, None)
    }
}

/// One change to a shard's durable state. Session-scoped records name the session by client id; a
/// message is named by `message_id`, a per-shard sequence number the writer assigns (unique within
/// the file: a snapshot keeps the ids it copies and the writer continues above them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A persistent session exists with these settings (upsert; its subscriptions and messages are
    /// separate records). The will's delay is its `will_delay_interval` property.
    Session {
        client_id: Utf8Bytes,
        protocol: ProtocolVersion,
        expiry_interval: u32,
        will: Option<Box<LastWill>>,
        /// The username of the last connection: its `acl_file` rules apply while the client is away.
        username: Option<Utf8Bytes>,
        /// The index of the listener it last came through (`per_listener_settings`, `mount_point`).
        listener: u16,
        /// When its client went away, in seconds since the Unix epoch; 0 while connected. A restart
        /// counts the session's expiry and a delayed will's delay from it (time the broker was down
        /// included, as Mosquitto counts them). Encoded after the will, and absent (0) in records
        /// written before it existed.
        away_since: u64,
    },
    /// The session ended (expired, taken over by a clean start, or clean): forget it and all it owned.
    SessionGone { client_id: Utf8Bytes },
    /// A subscription was granted (upsert: replaces the options of the same filter).
    Subscribe {
        client_id: Utf8Bytes,
        filter: Utf8Bytes,
        options: SubscriptionOptions,
    },
    Unsubscribe {
        client_id: Utf8Bytes,
        filter: Utf8Bytes,
    },
    /// A message that [`Record::Queue`] records refer to, written once however many sessions of the
    /// shard it is owed to (a fan-out writes its payload once). `message` keeps the QoS and retain
    /// flag it was published with; each session's delivery flags are in its `Queue` record. Forgotten
    /// once no session owes it any more.
    Message {
        message_id: u64,
        /// The message's `Message::durable` key: this shard recorded an accepted QoS 2 message.
        key: Option<DurableKey>,
        message: StoredMessage,
    },
    /// Message `message_id` (an earlier [`Record::Message`]) is owed to the session at `qos`, with
    /// `retain` as the flag it is to be sent with (queued, not yet sent).
    Queue {
        client_id: Utf8Bytes,
        message_id: u64,
        qos: QoS,
        retain: bool,
    },
    /// The queued message `message_id` was sent with `packet_id`.
    Inflight {
        client_id: Utf8Bytes,
        message_id: u64,
        packet_id: u16,
    },
    /// PUBREC received for `packet_id`: PUBREL sent, PUBCOMP awaited.
    Released {
        client_id: Utf8Bytes,
        packet_id: u16,
    },
    /// PUBACK or PUBCOMP received for `packet_id`: forget the message.
    Done {
        client_id: Utf8Bytes,
        packet_id: u16,
    },
    /// The queued (not in-flight) message `message_id` was dropped without delivery (queue limits,
    /// expiry).
    Discard {
        client_id: Utf8Bytes,
        message_id: u64,
    },
    /// A durable session published QoS 2 message `packet_id` (PUBREC owed or sent, PUBREL awaited):
    /// a repeat of the PUBLISH is acknowledged, not routed again. Written before it is routed, with
    /// the message and its key, so that a restart can give it to the sessions whose shards had not
    /// recorded it yet (those whose logs lack a `Message` with that key); `message` is None once every
    /// shard it went to had it on disk.
    Accepted {
        client_id: Utf8Bytes,
        packet_id: u16,
        key: u64,
        message: Option<StoredMessage>,
    },
    /// PUBREL for `packet_id` (accepted as `key`): the exchange ended.
    AcceptedDone {
        client_id: Utf8Bytes,
        packet_id: u16,
        key: u64,
    },
    /// Every shard that message `key` went to has it on disk.
    Routed { key: u64 },
    /// This shard recorded accepted message `key` (kept by a snapshot for a while after the message
    /// itself is gone, until the publisher's shard has surely written `Routed`).
    Seen(DurableKey),
    /// A retained message was set for its topic (replacing any earlier one).
    Retain { message: StoredMessage },
    /// The retained message of `topic` was cleared.
    RetainClear { topic: Utf8Bytes },
}

/// Why a record could not be written. `out` is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordEncodeError {
    #[error("persist record field: {0}")]
    Field(#[from] EncodeError),
    #[error("persist record body of {len} bytes exceeds the {MAX_BODY_LEN}-byte bound")]
    TooLarge { len: usize },
}

/// Why the bytes at `offset` (of the slice given to [`decode`], or of the file for [`Decoder`] and
/// [`replay`]) are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record at offset {offset}: length {len} exceeds the {MAX_BODY_LEN}-byte bound")]
    TooLarge { offset: u64, len: u32 },
    #[error("record at offset {offset}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("record at offset {offset}: unknown record kind {kind}")]
    UnknownKind { offset: u64, kind: u8 },
    #[error("record at offset {offset}: malformed body: {reason}")]
    Malformed { offset: u64, reason: &'static str },
    #[error("record at offset {offset}: invalid v5 properties: {error}")]
    Properties { offset: u64, error: DecodeError },
}

impl RecordError {
    pub fn offset(&self) -> u64 {
        match *self {
            RecordError::TooLarge { offset, .. }
            | RecordError::Checksum { offset, .. }
            | RecordError::UnknownKind { offset, .. }
            | RecordError::Malformed { offset, .. }
            | RecordError::Properties { offset, .. } => offset,
        }
    }

    fn shifted(mut self, base: u64) -> RecordError {
        match &mut self {
            RecordError::TooLarge { offset, .. }
            | RecordError::Checksum { offset, .. }
            | RecordError::UnknownKind { offset, .. }
            | RecordError::Malformed { offset, .. }
            | RecordError::Properties { offset, .. } => *offset += base,
        }
        self
    }
}

/// Why a file header is not one this code reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a shardmq log (bad magic bytes)")]
    BadMagic,
    #[error("log header checksum mismatch")]
    Checksum,
    #[error("log format version {version} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion { version: u16 },
    #[error("log header names shard {shard} of {shards}")]
    BadShard { shard: u16, shards: u16 },
}

/// Appends the file header for `shard` of `shards`.
pub fn encode_header(shard: u16, shards: u16, out: &mut BytesMut) {
    let start = out.len();
    out.put_slice(&MAGIC);
    out.put_u16_le(FORMAT_VERSION);
    out.put_u16_le(shard);
    out.put_u16_le(shards);
    let crc = crc32c::crc32c(&out[start..]);
    out.put_u32_le(crc);
}

/// Reads the header at the front of `buf`: `Ok(None)` if `buf` is shorter than [`HEADER_LEN`].
pub fn decode_header(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if h[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if crc32c::crc32c(&h[..14]) != u32_at(h, 14) {
        return Err(HeaderError::Checksum);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion { version });
    }
    let (shard, shards) = (
        u16::from_le_bytes([h[10], h[11]]),
        u16::from_le_bytes([h[12], h[13]]),
    );
    if shard >= shards {
        return Err(HeaderError::BadShard { shard, shards });
    }
    Ok(Some(Header {
        version,
        shard,
        shards,
    }))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Appends `record`, framed. On error nothing is appended.
pub fn encode(record: &Record, out: &mut BytesMut) -> Result<(), RecordEncodeError> {
    let start = out.len();
    out.put_bytes(0, FRAME_LEN);
    if let Err(e) = body::write(record, out) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - FRAME_LEN;
    if len > MAX_BODY_LEN as usize {
        out.truncate(start);
        return Err(RecordEncodeError::TooLarge { len });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = frame_crc(&out[start..start + 4], &out[start + FRAME_LEN..]);
    out[start + 4..start + FRAME_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn frame_crc(len: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), body)
}

/// One step of decoding: a record and the bytes it took, `Ok(None)` when the bytes end inside a
/// record (or before one: a torn tail if this is the end of the file), or why the bytes are corrupt.
pub type Decoded = Result<Option<(Record, usize)>, RecordError>;

/// Decodes the record at the front of `buf` (offsets in errors are relative to `buf`).
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(frame) = buf.get(..FRAME_LEN) else {
        return Ok(None);
    };
    let len = u32_at(frame, 0);
    if len > MAX_BODY_LEN {
        return Err(RecordError::TooLarge { offset: 0, len });
    }
    let end = FRAME_LEN + len as usize;
    let Some(body) = buf.get(FRAME_LEN..end) else {
        return Ok(None);
    };
    let stored = u32_at(frame, 4);
    let computed = frame_crc(&frame[..4], body);
    if stored != computed {
        return Err(RecordError::Checksum {
            offset: 0,
            stored,
            computed,
        });
    }
    let record = body::read(Bytes::copy_from_slice(body))?;
    Ok(Some((record, end)))
}

/// Steps through records, keeping the file offset for errors and for the caller's "last good record".
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    offset: u64,
}

impl Decoder {
    /// A decoder whose first record starts at file offset `offset` (usually [`HEADER_LEN`]).
    pub fn new(offset: u64) -> Decoder {
        Decoder { offset }
    }

    /// The file offset just past the last record decoded: the length to truncate a torn file to.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Decodes the record at the front of `buf`, which must start at [`Decoder::offset`].
    pub fn next(&mut self, buf: &[u8]) -> Decoded {
        match decode(buf) {
            Ok(Some((record, used))) => {
                self.offset += used as u64;
                Ok(Some((record, used)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.shifted(self.offset)),
        }
    }
}

/// How a replayed file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belonged to a good record.
    Clean,
    /// The file ends in a partial write: `dropped` bytes after the last good record. `error` is set when
    /// those bytes were a complete-looking but damaged last record (or zero fill) rather than a short
    /// one. The caller truncates the file to [`Replay::good_len`].
    Torn {
        dropped: usize,
        error: Option<RecordError>,
    },
    /// Damage with data after it (or a record whose checksum holds but whose body is not one this code
    /// writes): the caller moves the file aside.
    Corrupt(RecordError),
    /// The header is not one this code reads: the caller moves the file aside.
    BadHeader(HeaderError),
}

/// A whole file read: its header (`None` if the file is shorter than one, or bad), the records of the
/// good prefix in order, the length of that prefix, and how the file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub header: Option<Header>,
    pub records: Vec<Record>,
    pub good_len: usize,
    pub tail: Tail,
}

/// How reading a whole file went, without its records (see [`scan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub header: Option<Header>,
    /// Records of the good prefix.
    pub records: usize,
    pub good_len: usize,
    pub tail: Tail,
}

/// Reads a whole log or snapshot file into memory (tests, the fuzz target): [`scan`], collected.
pub fn replay(file: &[u8]) -> Replay {
    let mut records = Vec::new();
    let s = scan(file, |r| records.push(r));
    Replay {
        header: s.header,
        records,
        good_len: s.good_len,
        tail: s.tail,
    }
}

/// Reads a whole log or snapshot file, handing each record of its good prefix to `each` in order.
///
/// A bad record is a torn tail, not corruption, when it is the last thing in the file (its length
/// reaches the end, as when the length was written and the rest was not) or when everything from it to
/// the end is zero (space allocated but never written): losing the last unsynced writes is what a crash
/// does, and moving the whole file aside for it would lose everything else.
pub fn scan(file: &[u8], mut each: impl FnMut(Record)) -> Scan {
    let mut out = Scan {
        header: None,
        records: 0,
        good_len: 0,
        tail: Tail::Clean,
    };
    match decode_header(file) {
        Ok(Some(h)) => out.header = Some(h),
        Ok(None) => {
            if !file.is_empty() {
                out.tail = Tail::Torn {
                    dropped: file.len(),
                    error: None,
                };
            }
            return out;
        }
        Err(e) => {
            out.tail = Tail::BadHeader(e);
            return out;
        }
    }
    let mut decoder = Decoder::new(HEADER_LEN as u64);
    let mut pos = HEADER_LEN;
    loop {
        let rest = &file[pos..];
        match decoder.next(rest) {
            Ok(Some((record, used))) => {
                each(record);
                out.records += 1;
                pos += used;
            }
            Ok(None) => {
                if !rest.is_empty() {
                    out.tail = Tail::Torn {
                        dropped: rest.len(),
                        error: None,
                    };
                }
                break;
            }
            Err(e) => {
                let reaches_end = match e {
                    RecordError::TooLarge { .. } | RecordError::Checksum { .. } => {
                        FRAME_LEN as u64 + u64::from(u32_at(rest, 0)) >= rest.len() as u64
                    }
                    _ => false,
                };
                out.tail = if reaches_end || rest.iter().all(|&b| b == 0) {
                    Tail::Torn {
                        dropped: rest.len(),
                        error: Some(e),
                    }
                } else {
                    Tail::Corrupt(e)
                };
                break;
            }
        }
    }
    out.good_len = pos;
    out
}
