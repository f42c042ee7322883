//! The mapping between MQTT topic names and filters and NATS subjects (sans-IO).
//!
//! Concurrency: pure functions over `&str` and an immutable [`SubjectPrefix`]; any thread may call them.
//!
//! # The two syntaxes
//!
//! - A NATS subject is tokens separated by `.`. A token is non-empty and contains no `.` and no
//!   whitespace; a token that is exactly `*` (one token) or `>` (one or more trailing tokens) is a
//!   wildcard, which a published subject must not contain.
//! - An MQTT topic is levels separated by `/` ([`crate::topic`]). A level may be empty and may hold any
//!   UTF-8 except U+0000 (and, in a topic name, `+` and `#`): `.`, `*`, `>`, spaces, `$`, non-ASCII.
//!
//! So a level cannot be copied into a token as it is: it is encoded, one token per level.
//!
//! # Topic to subject
//!
//! A topic's subject is `PREFIX.` followed by one token per level, in order, joined by `.`. PREFIX is
//! the caller's ([`SubjectPrefix`], e.g. `shardmq.<cluster_name>.m`): one or more tokens, none empty,
//! no `*` or `>` anywhere, no whitespace or control character, the first not starting with `$` (NATS
//! keeps `$SYS`, `$JS` and the like for itself), at most [`MAX_PREFIX_LEN`] bytes.
//!
//! A level is encoded byte by byte over its UTF-8:
//! - a byte in `[A-Za-z0-9_-]` (the kept class) is kept as it is;
//! - every other byte becomes `~` followed by its value as two UPPERCASE hex digits (`.` is `~2E`,
//!   `$` is `~24`, `~` is `~7E`, `é` is `~C3~A9`);
//! - an EMPTY level is the token `~` alone. No non-empty level encodes to it, since an escape is always
//!   three characters.
//!
//! Examples: `a//b` is `PREFIX.a.~.b`, `$SYS/x` is `PREFIX.~24SYS.x`, `a.b` is `PREFIX.a~2Eb`, `/` is
//! `PREFIX.~.~`. The subject is ASCII whatever the topic, and every token is a valid literal NATS token.
//!
//! [`subject_to_topic`] is the inverse, and accepts only what [`topic_to_subject`] produces: a subject
//! under `PREFIX.`, at most [`MAX_SUBJECT_LEN`] bytes, of non-empty tokens holding only kept-class bytes
//! and escapes of two uppercase hex digits of a byte outside the kept class other than `/` (`~2e`,
//! `~41` for `A`, `~2F`, a truncated `~2`, `~` before a non-hex digit and a bare `*` are all refused),
//! whose bytes are UTF-8 and a valid MQTT topic name (no U+0000, `+` or `#`). So the mapping is a
//! bijection between the topic names whose subject fits and the subjects it accepts: a node never
//! takes two subjects for one topic.
//!
//! # Length, and the overflow subject
//!
//! NATS limits a protocol control line (`max_control_line`, 4096 bytes by default), and a subject
//! travels in one: `PUB`/`HPUB` from the publishing node, `MSG`/`HMSG` to each subscriber, next to a
//! reply subject (a JetStream acknowledgement subject is some hundred bytes), a subscription id and
//! sizes. A subject is therefore at most [`MAX_SUBJECT_LEN`] (3072) bytes, the prefix included, and
//! [`topic_to_subject`] returns [`SubjectError::TooLong`] past it. MQTT allows topics of 65,535 bytes,
//! whose encoding (up to three bytes per byte) may be three times that, so this happens.
//!
//! Such a topic is published on its overflow subject instead, [`overflow_subject`]:
//! `PREFIX.~~.<32 uppercase hex digits>`, the first 128 bits of the SHA-256 of the topic's UTF-8, with the
//! topic itself carried in a message header by the cluster link. `~~` is never a token of the canonical
//! encoding (a `~` is either a whole token or starts a hex escape), so no ordinary topic's subject
//! starts with it and [`subject_to_topic`] refuses it ([`SubjectError::Overflow`]); the receiving node
//! reads the topic from the header, and can check that it hashes to the subject it came on.
//!
//! SHA-256 because the hash must be the same on every node of a cluster and in every shardmq version
//! that may share one: a fixed, standard algorithm, already a dependency (`sha2`, for SCRAM). Neither
//! `RandomState` nor ahash with fixed seeds will do: ahash's output is documented to vary with its
//! version and the CPU features a build uses. 128 bits make two long topics sharing a subject
//! practically impossible, and even then the header's topic, re-matched by the receiver, keeps delivery
//! right (it would cost only over-delivery to the NATS subscribers of that subject).
//!
//! # Filter to subjects
//!
//! [`filter_to_subjects`] gives the subjects a node subscribes to in NATS for one MQTT filter (a valid
//! filter, [`crate::topic::validate_topic_filter`]). Levels are encoded as above, except that `+` is
//! `*` and a trailing `#` is `>`. As MQTT `a/#` also matches `a` (its parent level) and NATS `a.>` does
//! not, `a/#` gives two subjects, `PREFIX.a` and `PREFIX.a.>`; a lone `#` gives `PREFIX.>` alone,
//! every topic having at least one level. A shared subscription `$share/{group}/{filter}` gives the
//! subjects of its filter: the group is not part of the subject, which node's member gets a message
//! is for the cluster link to decide.
//!
//! Long topics: a filter that may match a topic longer than a subject allows must also take in the
//! overflow subjects. The rule, which never misses a message:
//! - a filter without wildcards matches one topic, itself: it gives that topic's subject, or its
//!   overflow subject (the exact one, [`overflow_subject`]) when the subject would be too long;
//! - a filter with a wildcard gives, besides its subjects, `PREFIX.~~.>`, every overflow subject,
//!   unless one of its subjects already matches them all (`PREFIX.>`, `PREFIX.*.>`, `PREFIX.*.*`, from
//!   `#`, `+/#`, `+/+` and `+/+/#`): a second subject matching the same messages would only deliver
//!   them twice (core NATS delivers a message once per matching subscription, and JetStream refuses
//!   overlapping filter subjects on one consumer). A subject of the filter that is itself too long is
//!   left out: every topic it would match has a subject at least as long (a `*` or `>` stands for at
//!   least one token of at least one character), so it arrives through the overflow subject.
//!
//! So a node with a wildcard filter receives every long topic published in the cluster, whether its
//! filter matches or not. Long topics are rare; precision there would need a second, coarser mapping
//! of the topic into the overflow subject, which can come later without changing the ordinary one.
//!
//! The subjects of different filters may overlap (`a/+` and `a/#` both give subjects matching
//! `PREFIX.a.b`, every wildcard filter gives `PREFIX.~~.>`): merging a node's subjects into a set
//! without overlap is the cluster link's work, not this mapping's.
//!
//! # NATS matching is the coarse step
//!
//! NATS subject matching only routes a message to the nodes that may want it. The receiving node
//! re-checks every message against its own MQTT subscription index, which applies the rules NATS does
//! not know: a filter whose first level is `+` or `#` does not match a topic starting with `$` (MQTT
//! §4.7.2), yet NATS `PREFIX.*.x` matches `PREFIX.~24SYS.x` and `PREFIX.>` matches everything; a long
//! topic reaches every node with a wildcard filter. Over-delivery from NATS is expected and filtered;
//! what the mapping guarantees is that it never under-delivers: when an MQTT filter matches a topic,
//! one of the filter's subjects matches the topic's subject (or its overflow subject). The tests check
//! both that and that, for topics whose subject fits, NATS matches nothing more than MQTT does but for
//! that `$` rule.

#[cfg(test)]
mod tests;

use std::fmt;

use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use thiserror::Error;

use crate::topic::{parse_shared, validate_topic_filter, validate_topic_name, TopicError};

/// Longest subject [`topic_to_subject`] gives and [`subject_to_topic`] takes, in bytes, prefix included:
/// NATS's default `max_control_line` of 4096 bytes less room for the rest of a `MSG`/`HMSG` line (a
/// JetStream reply subject, the subscription id, the sizes).
pub const MAX_SUBJECT_LEN: usize = 3072;

/// Longest [`SubjectPrefix`] in bytes: small enough that the overflow subject, and a topic of ordinary
/// length, always fit under [`MAX_SUBJECT_LEN`].
pub const MAX_PREFIX_LEN: usize = 256;

/// The token after the prefix that marks an overflow subject (`PREFIX.~~.<hash>`). The canonical
/// encoding never produces it: its `~` is either a whole token or an escape followed by hex digits.
pub const OVERFLOW_TOKEN: &str = "~~";

/// Hex digits of the hash in an overflow subject (128 bits).
const OVERFLOW_HASH_HEX_LEN: usize = 32;

/// The token of an empty level; see the module documentation.
const EMPTY_LEVEL: &str = "~";

const ESCAPE: u8 = b'~';

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Why a [`SubjectPrefix`] was refused. Offsets are byte offsets into the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PrefixError {
    /// The prefix has no bytes; it needs at least one token.
    #[error("subject prefix is empty")]
    Empty,
    /// The prefix is longer than [`MAX_PREFIX_LEN`].
    #[error("subject prefix is {len} bytes long, the limit is {MAX_PREFIX_LEN}")]
    TooLong {
        /// Length of the rejected prefix in bytes.
        len: usize,
    },
    /// Two dots in a row, or a dot at either end: a NATS token is never empty.
    #[error("subject prefix has an empty token at byte {offset}")]
    EmptyToken {
        /// Byte offset where the empty token is.
        offset: usize,
    },
    /// A `*` or `>`: NATS wildcards have no place in a subject messages are published to.
    #[error("subject prefix contains the wildcard '{wildcard}' at byte {offset}")]
    Wildcard {
        /// The wildcard found, `*` or `>`.
        wildcard: char,
        /// Byte offset of the wildcard.
        offset: usize,
    },
    /// Whitespace or a control character (U+0000 included), which NATS does not allow in a subject
    /// (whitespace separates the fields of its protocol lines).
    #[error("subject prefix contains whitespace or a control character at byte {offset}")]
    Whitespace {
        /// Byte offset of the character.
        offset: usize,
    },
    /// The first token starts with `$`, the subject space NATS keeps for itself (`$SYS`, `$JS`, ...).
    #[error("subject prefix starts with '$', which NATS reserves")]
    Reserved,
}

/// Why a topic, filter or subject could not be mapped. Offsets are byte offsets into the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SubjectError {
    /// The topic given, or the topic a subject decodes to, is not a valid MQTT topic name.
    #[error("not a valid MQTT topic name: {0}")]
    Topic(TopicError),
    /// The filter given is not a valid MQTT topic filter.
    #[error("not a valid MQTT topic filter: {0}")]
    Filter(TopicError),
    /// The subject would be, or is, longer than [`MAX_SUBJECT_LEN`]; a topic this long is published on
    /// its [`overflow_subject`].
    #[error("subject is {len} bytes long, the limit is {MAX_SUBJECT_LEN}")]
    TooLong {
        /// Length of the subject in bytes.
        len: usize,
    },
    /// The subject does not start with the prefix followed by `.`.
    #[error("subject is not under the prefix")]
    NotUnderPrefix,
    /// The subject is an overflow subject: its topic is not in it but in a message header.
    #[error("subject is an overflow subject; its topic travels in a header")]
    Overflow,
    /// Two dots in a row, or a dot at the end.
    #[error("subject has an empty token at byte {offset}")]
    EmptyToken {
        /// Byte offset where the empty token is.
        offset: usize,
    },
    /// A `~` not followed by two uppercase hex digits (truncated, lowercase, not hex).
    #[error("subject has a malformed escape at byte {offset}")]
    BadEscape {
        /// Byte offset of the `~`.
        offset: usize,
    },
    /// An escape of a byte in the kept class (`~41` for `A`): the canonical encoding keeps it as it is.
    #[error("subject escapes a byte that is never escaped at byte {offset}")]
    NeedlessEscape {
        /// Byte offset of the `~`.
        offset: usize,
    },
    /// `~2F`, an escaped `/`: a topic's `/` separates levels, which are tokens, never part of one.
    #[error("subject escapes '/' at byte {offset}")]
    EscapedSlash {
        /// Byte offset of the `~`.
        offset: usize,
    },
    /// A byte outside the kept class that is not escaped (`*`, a space, non-ASCII, ...).
    #[error("subject has the unescaped byte {byte:#04x} at byte {offset}")]
    UnescapedByte {
        /// The byte found.
        byte: u8,
        /// Its byte offset.
        offset: usize,
    },
    /// The decoded bytes are not UTF-8, so not a topic.
    #[error("subject does not decode to UTF-8")]
    NotUtf8,
}

/// The subject prefix of a cluster, checked once (see the module documentation for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectPrefix(Box<str>);

impl SubjectPrefix {
    /// Checks `prefix` (e.g. `shardmq.<cluster_name>.m`), without a trailing `.`.
    pub fn new(prefix: &str) -> Result<SubjectPrefix, PrefixError> {
        if prefix.is_empty() {
            return Err(PrefixError::Empty);
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(PrefixError::TooLong { len: prefix.len() });
        }
        if prefix.starts_with('$') {
            return Err(PrefixError::Reserved);
        }
        let mut token_start = 0;
        for (offset, character) in prefix.char_indices() {
            match character {
                '.' if offset == token_start => return Err(PrefixError::EmptyToken { offset }),
                '.' => token_start = offset + 1,
                '*' | '>' => {
                    return Err(PrefixError::Wildcard {
                        wildcard: character,
                        offset,
                    })
                }
                c if c.is_whitespace() || c.is_control() => {
                    return Err(PrefixError::Whitespace { offset })
                }
                _ => {}
            }
        }
        if token_start == prefix.len() {
            return Err(PrefixError::EmptyToken {
                offset: prefix.len(),
            });
        }
        Ok(SubjectPrefix(prefix.into()))
    }

    /// The prefix, without a trailing `.`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The subject a topic name is published on: `PREFIX.` and one encoded token per level.
///
/// [`SubjectError::TooLong`] when the subject would exceed [`MAX_SUBJECT_LEN`] (then publish on the
/// [`overflow_subject`]); [`SubjectError::Topic`] when `topic` is not a valid topic name.
pub fn topic_to_subject(prefix: &SubjectPrefix, topic: &str) -> Result<String, SubjectError> {
    validate_topic_name(topic).map_err(SubjectError::Topic)?;
    // Measured first: a 64 KiB topic may encode to 192 KiB, which is refused without building it.
    let len = prefix.0.len()
        + topic
            .split('/')
            .map(|level| 1 + encoded_level_len(level))
            .sum::<usize>();
    if len > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong { len });
    }
    let mut subject = String::with_capacity(len);
    subject.push_str(&prefix.0);
    for level in topic.split('/') {
        subject.push('.');
        push_level(&mut subject, level);
    }
    debug_assert_eq!(subject.len(), len);
    Ok(subject)
}

/// The topic name a subject from [`topic_to_subject`] stands for; refuses everything else (see the
/// module documentation), so that one topic has exactly one subject.
pub fn subject_to_topic(prefix: &SubjectPrefix, subject: &str) -> Result<String, SubjectError> {
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong { len: subject.len() });
    }
    let tokens = subject
        .strip_prefix(&*prefix.0)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or(SubjectError::NotUnderPrefix)?;
    if tokens.split('.').next() == Some(OVERFLOW_TOKEN) {
        return Err(SubjectError::Overflow);
    }
    let mut topic = Vec::with_capacity(tokens.len());
    let mut offset = prefix.0.len() + 1;
    for (index, token) in tokens.split('.').enumerate() {
        if index > 0 {
            topic.push(b'/');
        }
        decode_token(token, offset, &mut topic)?;
        offset += token.len() + 1;
    }
    let topic = String::from_utf8(topic).map_err(|_| SubjectError::NotUtf8)?;
    // `~2B`, `~23` and `~00` decode to `+`, `#` and U+0000, which no topic name holds.
    validate_topic_name(&topic).map_err(SubjectError::Topic)?;
    Ok(topic)
}

/// The subject a topic too long for [`topic_to_subject`] is published on:
/// `PREFIX.~~.<first 128 bits of SHA-256(topic), 32 uppercase hex digits>`. The topic itself travels in
/// a header. `topic` is assumed to be a valid topic name; any string gives a subject.
pub fn overflow_subject(prefix: &SubjectPrefix, topic: &str) -> String {
    let digest = Sha256::digest(topic.as_bytes());
    let mut subject = String::with_capacity(
        prefix.0.len() + 1 + OVERFLOW_TOKEN.len() + 1 + OVERFLOW_HASH_HEX_LEN,
    );
    subject.push_str(&prefix.0);
    subject.push('.');
    subject.push_str(OVERFLOW_TOKEN);
    subject.push('.');
    for &byte in &digest[..OVERFLOW_HASH_HEX_LEN / 2] {
        push_hex(&mut subject, byte);
    }
    subject
}

/// Whether `subject` has the form of an overflow subject under `prefix` (what [`overflow_subject`]
/// gives for some topic).
pub fn is_overflow_subject(prefix: &SubjectPrefix, subject: &str) -> bool {
    subject
        .strip_prefix(&*prefix.0)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_prefix(OVERFLOW_TOKEN))
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|hash| {
            hash.len() == OVERFLOW_HASH_HEX_LEN && hash.bytes().all(is_upper_hex_digit)
        })
}

/// The NATS subjects to subscribe to for an MQTT topic filter (shared subscriptions included): its
/// subjects (two for a filter ending in `/#`) and the overflow subjects it may need, by the rules of
/// the module documentation. [`SubjectError::Filter`] when `filter` is not a valid filter.
pub fn filter_to_subjects(
    prefix: &SubjectPrefix,
    filter: &str,
) -> Result<SmallVec<[String; 2]>, SubjectError> {
    validate_topic_filter(filter).map_err(SubjectError::Filter)?;
    let filter = parse_shared(filter).map_or(filter, |(_group, filter)| filter);
    // The levels before a trailing `#`, if any; `None` for a lone `#`.
    let (head, multi_level) = if filter == "#" {
        (None, true)
    } else if let Some(head) = filter.strip_suffix("/#") {
        (Some(head), true)
    } else {
        (Some(filter), false)
    };
    let mut subjects = SmallVec::new();
    let Some(head) = head else {
        // `PREFIX.>` matches every subject under the prefix, overflow subjects included.
        subjects.push(format!("{}.>", prefix.0));
        return Ok(subjects);
    };

    let len = prefix.0.len()
        + head
            .split('/')
            .map(|level| {
                1 + if level == "+" {
                    1
                } else {
                    encoded_level_len(level)
                }
            })
            .sum::<usize>();
    let has_wildcard = multi_level || head.split('/').any(|level| level == "+");
    if !has_wildcard {
        // The filter is a topic name, and matches that topic alone.
        subjects.push(match topic_to_subject(prefix, head) {
            Ok(subject) => subject,
            Err(SubjectError::TooLong { .. }) => overflow_subject(prefix, head),
            Err(error) => unreachable!("a valid filter without wildcards is a topic name: {error}"),
        });
        return Ok(subjects);
    }

    // Left out when too long: what they would match arrives on `PREFIX.~~.>` (module documentation).
    if len <= MAX_SUBJECT_LEN {
        let mut subject = String::with_capacity(len + 2);
        subject.push_str(&prefix.0);
        for level in head.split('/') {
            subject.push('.');
            if level == "+" {
                subject.push('*');
            } else {
                push_level(&mut subject, level);
            }
        }
        if multi_level && len + 2 <= MAX_SUBJECT_LEN {
            // `a/#` matches `a` too: the parent's subject, then the one for its descendants.
            let descendants = format!("{subject}.>");
            subjects.push(subject);
            subjects.push(descendants);
        } else {
            subjects.push(subject);
        }
    }
    let covered = subjects
        .iter()
        .any(|subject| matches!(&subject[prefix.0.len() + 1..], "*.>" | "*.*"));
    if !covered {
        subjects.push(format!("{}.{OVERFLOW_TOKEN}.>", prefix.0));
    }
    Ok(subjects)
}

/// Bytes kept as they are in a token; every other byte is escaped.
fn is_kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

fn is_upper_hex_digit(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte)
}

/// Length of a level's token.
fn encoded_level_len(level: &str) -> usize {
    if level.is_empty() {
        return EMPTY_LEVEL.len();
    }
    level
        .bytes()
        .map(|byte| if is_kept(byte) { 1 } else { 3 })
        .sum()
}

fn push_level(subject: &mut String, level: &str) {
    if level.is_empty() {
        subject.push_str(EMPTY_LEVEL);
        return;
    }
    for byte in level.bytes() {
        if is_kept(byte) {
            subject.push(char::from(byte));
        } else {
            subject.push(char::from(ESCAPE));
            push_hex(subject, byte);
        }
    }
}

fn push_hex(out: &mut String, byte: u8) {
    out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(HEX_DIGITS[usize::from(byte & 0xF)]));
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Appends the level `token` stands for to `topic`; `offset` is the token's byte offset in the subject.
fn decode_token(token: &str, offset: usize, topic: &mut Vec<u8>) -> Result<(), SubjectError> {
    if token.is_empty() {
        return Err(SubjectError::EmptyToken { offset });
    }
    if token == EMPTY_LEVEL {
        return Ok(());
    }
    let bytes = token.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if is_kept(byte) {
            topic.push(byte);
            index += 1;
        } else if byte == ESCAPE {
            let at = offset + index;
            let value = match (
                bytes.get(index + 1).copied().and_then(hex_value),
                bytes.get(index + 2).copied().and_then(hex_value),
            ) {
                (Some(high), Some(low)) => (high << 4) | low,
                _ => return Err(SubjectError::BadEscape { offset: at }),
            };
            if is_kept(value) {
                return Err(SubjectError::NeedlessEscape { offset: at });
            }
            // A level never holds its own separator: `a~2Fb` would decode to `a/b`, whose subject is
            // `a.b`, and one topic would have two subjects.
            if value == b'/' {
                return Err(SubjectError::EscapedSlash { offset: at });
            }
            topic.push(value);
            index += 3;
        } else {
            return Err(SubjectError::UnescapedByte {
                byte,
                offset: offset + index,
            });
        }
    }
    Ok(())
}
