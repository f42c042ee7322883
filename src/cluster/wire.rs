//! A message as it crosses between nodes over NATS (sans-IO).
//!
//! The payload of a NATS message between links is one version byte ([`WIRE_VERSION`]), when the
//! publishing node's kernel received the PUBLISH (`Message::read_at`, 8 bytes, nanoseconds since
//! the epoch), and then the message as the persistence log frames it (`persist::record`, a
//! `Record::Message` with its length and CRC-32C): topic, payload, QoS, retain flag and v5
//! properties, with the log's decoder, which checks every length before it allocates and never
//! panics on bad input; the record's message id is the message's cluster-wide name
//! (`Message::id`), the same in every copy of it. The publisher's session does not travel: a
//! remote copy has no origin (nothing is held or acknowledged back across nodes).
//!
//! The receive time orders the message against SUBSCRIBEs on the receiving node as on one broker
//! (`shard::lookback`): a copy still on its way when a client subscribed there is not for that
//! subscription. Version 1 frames (no receive time; the retained stream may still hold some) are
//! read as received at an unknown time.
//!
//! A message for one member of a shared subscription group (docs/CLUSTER.md, "Shared
//! subscriptions") comes first with [`SHARED_TAG`], how many nodes passed it on already, and the
//! group (`$share/{group}/{filter}`, length-prefixed), then the frame above.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use crate::message::Message;
use crate::persist::record::{self, Record, StoredMessage};

/// The first byte of every message between links: a node that reads another value was sent by a
/// version of shardmq that frames messages differently, and drops it with a log line.
pub const WIRE_VERSION: u8 = 5;

/// The version before the receive time travelled: still read.
pub const WIRE_VERSION_1: u8 = 1;

/// The first byte of a message for one member of a shared subscription group.
pub const SHARED_TAG: u8 = 2;

/// The first byte of several frames for one node in one JetStream message: a node's QoS 1/2 copies
/// made while its link handled one batch of mail, stored (and replicated) by one JetStream write
/// instead of one each. Then, for each frame, its length (4 bytes) and the frame.
pub const BATCH_TAG: u8 = 3;

/// The first byte of a message for the subscriptions of one session only (`client`): one that had
/// moved to the receiving node when it reached the node it left (docs/CLUSTER.md, "Sessions across
/// nodes"). Then the client id (length-prefixed) and the frame.
pub const CLIENT_TAG: u8 = 4;

/// A message read from NATS: for every matching subscription, for one member of `group`, or for
/// the subscriptions of session `client`.
#[derive(Debug)]
pub struct Frame {
    pub msg: Message,
    /// The group and how many times the message was passed on already.
    pub group: Option<(crate::codec::Utf8Bytes, u8)>,
    pub client: Option<crate::codec::Utf8Bytes>,
}

/// Why bytes from NATS are not a message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty")]
    Empty,
    #[error("wire version {0}, this node reads {WIRE_VERSION}")]
    Version(u8),
    #[error("truncated")]
    Truncated,
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error("{0} bytes after the message")]
    Trailing(usize),
    #[error("a record that is not a message")]
    NotAMessage,
    #[error("too large to frame: {0}")]
    TooLarge(String),
    #[error("a shared subscription group that is not one")]
    BadGroup,
}

/// Appends `msg`, framed for the wire, to `out`.
pub fn encode(msg: &Message, out: &mut BytesMut) -> Result<(), WireError> {
    let start = out.len();
    out.put_u8(WIRE_VERSION);
    out.put_u64(msg.read_at);
    let record = Record::Message {
        message_id: msg.id,
        key: None,
        // As published: the receiver counts a Message Expiry Interval from `read_at`.
        message: StoredMessage::as_published(msg),
    };
    record::encode(&record, out).map_err(|e| {
        out.truncate(start);
        WireError::TooLarge(e.to_string())
    })
}

/// Appends `msg` for one member of `group` (`$share/{group}/{filter}`), passed on `hops` times.
pub fn encode_shared(
    msg: &Message,
    group: &str,
    hops: u8,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let start = out.len();
    out.put_u8(SHARED_TAG);
    out.put_u8(hops);
    put_str(out, group, "group")
        .and_then(|()| encode(msg, out))
        .inspect_err(|_| out.truncate(start))
}

/// Appends `msg` for the subscriptions of session `client_id` only.
pub fn encode_for_client(
    msg: &Message,
    client_id: &str,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let start = out.len();
    out.put_u8(CLIENT_TAG);
    put_str(out, client_id, "client id")
        .and_then(|()| encode(msg, out))
        .inspect_err(|_| out.truncate(start))
}

/// Appends `s` with its length first (two bytes): a group, a client id (`cluster::wills`).
pub fn put_str(out: &mut BytesMut, s: &str, what: &str) -> Result<(), WireError> {
    let len = u16::try_from(s.len()).map_err(|_| WireError::TooLarge(what.into()))?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// A string [`put_str`] wrote at the start of `bytes`, and what follows it.
pub fn take_str(bytes: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let [hi, lo, rest @ ..] = bytes else {
        return Err(WireError::Truncated);
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if rest.len() < len {
        return Err(WireError::Truncated);
    }
    let (s, rest) = rest.split_at(len);
    let s = std::str::from_utf8(s).map_err(|e| WireError::Corrupt(e.to_string()))?;
    Ok((s, rest))
}

/// Starts a batch of frames in `out` (empty).
pub fn start_batch(out: &mut BytesMut) {
    out.put_u8(BATCH_TAG);
}

/// Appends `frame` (as [`encode`] or [`encode_shared`] wrote it) to the batch in `out`.
pub fn push_frame(out: &mut BytesMut, frame: &[u8]) {
    out.put_u32(u32::try_from(frame.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(frame);
}

/// The frames of one NATS payload: the payload itself, or each frame of a batch; an error (and
/// nothing after it) where a batch is cut short.
pub fn frames(bytes: &[u8]) -> Frames<'_> {
    match bytes.split_first() {
        Some((&BATCH_TAG, rest)) => Frames { rest, batch: true },
        _ => Frames {
            rest: bytes,
            batch: false,
        },
    }
}

/// The iterator of [`frames`].
pub struct Frames<'a> {
    rest: &'a [u8],
    batch: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.batch {
            self.batch = true;
            let whole = std::mem::take(&mut self.rest);
            return Some(Ok(whole));
        }
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(WireError::Truncated));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            self.rest = &[];
            return Some(Err(WireError::Truncated));
        }
        let (frame, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Ok(frame))
    }
}

/// The message in `bytes` (one whole NATS payload), with its group when it is for one member.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, WireError> {
    match bytes.split_first() {
        Some((&SHARED_TAG, rest)) => {
            let (&hops, rest) = rest.split_first().ok_or(WireError::Truncated)?;
            let (group, rest) = take_str(rest)?;
            let group = Some(group)
                .filter(|g| crate::topic::parse_shared(g).is_some())
                .ok_or(WireError::BadGroup)?;
            Ok(Frame {
                msg: decode(rest)?,
                group: Some((crate::codec::Utf8Bytes::from(group.to_owned()), hops)),
                client: None,
            })
        }
        Some((&CLIENT_TAG, rest)) => {
            let (client, rest) = take_str(rest)?;
            Ok(Frame {
                msg: decode(rest)?,
                group: None,
                client: Some(crate::codec::Utf8Bytes::from(client.to_owned())),
            })
        }
        _ => Ok(Frame {
            msg: decode(bytes)?,
            group: None,
            client: None,
        }),
    }
}

/// The message in `bytes` (one whole NATS payload).
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    let (read_at, rest) = match version {
        WIRE_VERSION => {
            let (at, rest) = rest.split_first_chunk::<8>().ok_or(WireError::Truncated)?;
            (u64::from_be_bytes(*at), rest)
        }
        WIRE_VERSION_1 => (0, rest),
        _ => return Err(WireError::Version(version)),
    };
    match record::decode(rest) {
        Ok(Some((
            Record::Message {
                message,
                message_id,
                ..
            },
            used,
        ))) if used == rest.len() => {
            let mut msg = message.into_message();
            msg.id = message_id;
            msg.read_at = read_at;
            if read_at != 0 && msg.can_expire() {
                // Its expiry counts from when the publishing node received it: the time in
                // JetStream (a queue read later, a retained message read by a node that starts)
                // included, as on one broker.
                msg.received_ago(Duration::from_nanos(
                    crate::shard::now_ns().saturating_sub(read_at),
                ));
            }
            Ok(msg)
        }
        Ok(Some((Record::Message { .. }, used))) => Err(WireError::Trailing(rest.len() - used)),
        Ok(Some(_)) => Err(WireError::NotAMessage),
        Ok(None) => Err(WireError::Truncated),
        Err(e) => Err(WireError::Corrupt(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Properties, QoS, Utf8Bytes};
    use crate::message::Remaining;
    use bytes::Bytes;

    fn message(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Message {
        let mut props = Properties {
            content_type: Some(Utf8Bytes::from("text/plain")),
            ..Properties::default()
        };
        props
            .user_properties
            .push((Utf8Bytes::from("k"), Utf8Bytes::from("v")));
        Message::new(
            Utf8Bytes::from(topic),
            Bytes::copy_from_slice(payload),
            qos,
            retain,
            props,
            Some((3, 7)),
        )
    }

    #[test]
    fn a_version_1_frame_reads_without_a_receive_time() {
        let mut m = message("a/b", b"x", QoS::AtLeastOnce, true);
        m.read_at = 42;
        m.id = 7;
        let mut out = BytesMut::new();
        encode(&m, &mut out).unwrap();
        let mut old = vec![WIRE_VERSION_1];
        old.extend_from_slice(&out[9..]);
        let back = decode(&old).unwrap();
        assert_eq!((&*back.topic, back.read_at, back.id), ("a/b", 0, 7));
        assert_eq!(decode(&out[..5]).unwrap_err(), WireError::Truncated);
        old[0] = 9;
        assert_eq!(decode(&old).unwrap_err(), WireError::Version(9));
    }

    #[test]
    fn a_copy_counts_its_expiry_from_when_the_publishing_node_received_it() {
        let props = Properties {
            message_expiry_interval: Some(10),
            ..Default::default()
        };
        let mut m = Message::new(
            Utf8Bytes::from_static("t"),
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            props,
            None,
        );
        m.read_at = crate::shard::now_ns() - 4_000_000_000;
        // Held 4 s on the publishing node before it went (a batch, a stub): counted once.
        m.age_by(4);
        let mut out = BytesMut::new();
        encode(&m, &mut out).unwrap();
        let back = decode(&out).unwrap();
        assert_eq!(
            back.remaining(std::time::Instant::now()),
            Remaining::Left(6)
        );
        m.read_at = crate::shard::now_ns() - 11_000_000_000;
        out.clear();
        encode(&m, &mut out).unwrap();
        let back = decode(&out).unwrap();
        assert_eq!(
            back.remaining(std::time::Instant::now()),
            Remaining::Expired
        );
    }

    #[test]
    fn a_message_round_trips_without_its_origin() {
        let mut m = message("a/ü/+x", b"\x00payload\xff", QoS::ExactlyOnce, true);
        m.id = 0xfeed_f00d_0000_0001;
        m.read_at = 1_796_619_023_763_993_822;
        let mut out = BytesMut::new();
        encode(&m, &mut out).unwrap();
        assert_eq!(out[0], WIRE_VERSION);
        let back = decode(&out).unwrap();
        assert_eq!(&*back.topic, "a/ü/+x");
        assert_eq!(&back.payload[..], b"\x00payload\xff");
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert_eq!(back.properties(), m.properties());
        assert_eq!(back.origin, None);
        // Its cluster-wide name travels: the node a moved session went to tells copies apart.
        assert_eq!(back.id, 0xfeed_f00d_0000_0001);
        // Its receive time too: the receiving node orders it against SUBSCRIBEs by it.
        assert_eq!(back.read_at, m.read_at);
        let mut out = BytesMut::new();
        encode_for_client(&m, "c", &mut out).unwrap();
        assert_eq!(decode_frame(&out).unwrap().msg.id, m.id);
    }

    #[test]
    fn a_message_for_a_group_member_names_its_group() {
        let m = message("s/1", b"x", QoS::AtLeastOnce, false);
        let mut out = BytesMut::new();
        encode_shared(&m, "$share/g/s/+", 3, &mut out).unwrap();
        let frame = decode_frame(&out).unwrap();
        assert_eq!(&*frame.msg.topic, "s/1");
        assert_eq!(frame.group, Some((Utf8Bytes::from("$share/g/s/+"), 3)));
        let mut plain = BytesMut::new();
        encode(&m, &mut plain).unwrap();
        assert_eq!(decode_frame(&plain).unwrap().group, None);
        for n in 0..out.len() {
            assert!(decode_frame(&out[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut bad = BytesMut::new();
        encode_shared(&m, "not/a/group", 0, &mut bad).unwrap();
        assert_eq!(decode_frame(&bad).err(), Some(WireError::BadGroup));
    }

    #[test]
    fn a_batch_gives_back_its_frames_and_a_cut_one_ends_in_an_error() {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        encode(&message("a/1", b"x", QoS::AtLeastOnce, false), &mut a).unwrap();
        encode(&message("b", b"", QoS::ExactlyOnce, true), &mut b).unwrap();
        let mut batch = BytesMut::new();
        start_batch(&mut batch);
        push_frame(&mut batch, &a);
        push_frame(&mut batch, &b);
        let topics: Vec<String> = frames(&batch)
            .map(|f| decode_frame(f.unwrap()).unwrap().msg.topic.to_string())
            .collect();
        assert_eq!(topics, ["a/1", "b"]);
        // A lone frame is its own only frame; an empty batch (cut at 1) has none; a cut between
        // two frames ends cleanly after the first.
        assert_eq!(
            frames(&a).map(|f| f.unwrap().len()).collect::<Vec<_>>(),
            [a.len()]
        );
        for cut in 1..batch.len() {
            let got: Vec<_> = frames(&batch[..cut]).collect();
            let whole = got.iter().filter(|f| f.is_ok()).count();
            assert!(whole < 2, "cut at {cut}");
            assert!(
                cut == 1 || cut == 1 + 4 + a.len() || got.last().is_some_and(|f| f.is_err()),
                "cut at {cut} ends in an error: {got:?}"
            );
        }
    }

    #[test]
    fn bad_bytes_are_refused_not_panicked_on() {
        let mut out = BytesMut::new();
        encode(&message("t", b"x", QoS::AtMostOnce, false), &mut out).unwrap();
        let refused = |b: &[u8]| decode(b).err();
        assert_eq!(refused(&[]), Some(WireError::Empty));
        let mut other = out.to_vec();
        other[0] = 9;
        assert_eq!(refused(&other), Some(WireError::Version(9)));
        assert_eq!(refused(&out[..out.len() - 1]), Some(WireError::Truncated));
        let mut flipped = out.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(refused(&flipped), Some(WireError::Corrupt(_))));
        let mut longer = out.to_vec();
        longer.push(0);
        assert_eq!(refused(&longer), Some(WireError::Trailing(1)));
        // Every prefix of a valid frame is refused cleanly.
        for n in 0..out.len() {
            assert!(decode(&out[..n]).is_err());
        }
    }
}
