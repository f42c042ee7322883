//! Durable state (issue 16): what a shard writes to disk so that persistent sessions and retained
//! messages survive a restart.
//!
//! What persists: persistent sessions (client id, protocol version, session expiry interval, the will
//! with its properties and delay), their subscriptions with options, the QoS 1/2 messages owed to them
//! (queued, and in flight with their packet ids and PUBREL state), and retained messages (set and
//! cleared). Clean sessions, QoS 0 traffic to offline clients and connection state do not.
//!
//! File layout: each shard owns its own files, an append-only log and a snapshot the log is compacted
//! into. Both have the same form: a header (magic, format version, the shard's id and the shard count
//! at write time, so a restart with another count can re-home sessions) followed by framed records,
//! each `length | crc32c | body`, so that replay can tell a torn tail (truncate to the last good
//! record) from a corrupt file (move it aside). A snapshot is simply a log of upserts only.
//!
//! - [`record`] is sans-IO, like the codec: it encodes records into a `BytesMut` and decodes them from
//!   byte slices.
//! - [`image`] is what records add up to, and the snapshot writer (sans-IO too).
//! - [`files`] names the files and keeps track of the current generation; [`recover`] is start-up:
//!   read, merge, re-home, write a new generation (blocking I/O, before the shards run).
//! - [`log`] is a shard's log file at run time, written through glommio with group commit (one write
//!   and one `fdatasync` per batch of appended records), and replaced by a compacted snapshot when it
//!   has grown.
//!
//! The shard side (what is appended when, acknowledgements that wait for durability, the journal
//! task) is `shard::journal`.

// The fuzz target `persist_record` (tests/fuzz) compiles this module from source without the rest of
// the crate: only the sans-IO record format is built there.

/// The persistence settings the shards share (`persistence true`).
#[cfg(not(fuzzing))]
#[derive(Debug, Clone)]
pub struct Persistence {
    pub files: files::Files,
    pub sync: crate::config::PersistenceSync,
    /// A shard's log is compacted once it is larger than this and four times its last snapshot
    /// ([`COMPACT_MIN`]; smaller in tests).
    pub compact_min: u64,
}

/// A log smaller than this is never compacted: rewriting it would cost more than reading it back.
#[cfg(not(fuzzing))]
pub const COMPACT_MIN: u64 = 64 << 20;

#[cfg(not(fuzzing))]
pub mod files;
#[cfg(not(fuzzing))]
pub mod image;
#[cfg(not(fuzzing))]
pub mod log;
pub mod record;
#[cfg(not(fuzzing))]
pub mod recover;
