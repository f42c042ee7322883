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
//! [`record`] is sans-IO, like the codec: it encodes records into a `BytesMut` and decodes them from
//! byte slices. [`log`] is the file side: a shard's log written through glommio with group commit (one
//! write and one `fdatasync` per batch of appended records). Still to come (issue 16): the shards
//! appending as their state changes, acknowledgements waiting for durability, compaction into a
//! snapshot, and replay at start-up.

pub mod log;
pub mod record;
