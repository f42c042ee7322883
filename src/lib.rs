//! shardmq: a thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker, a drop-in replacement for Mosquitto 2.0
//! (its config file, command line, logs and `$SYS` topics) built to scale across cores.
//!
//! One shard per core, each a glommio executor (io_uring) that owns its connections, the sessions whose
//! home it is (`hash(client id) mod shards`), its part of the subscription index and its copy of the
//! retained store. Listeners share the port through SO_REUSEPORT; a connection that lands on another
//! shard than its client id's home is handed there once its CONNECT is read. Shards share nothing
//! mutable: they exchange messages through bounded mailboxes, one per (from, to) pair, and a publish
//! crosses to each interested shard once, as one reference-counted message. docs/ARCHITECTURE.md has
//! the invariants, the rooms and the path of one PUBLISH; docs/PERFORMANCE.md the figures.
//!
//! Modules, leaves first (only `router`, `shard` and `server` touch glommio):
//! - [`codec`]: the sans-IO MQTT codec, one file per packet; `decode`/`encode` over byte buffers.
//! - [`topic`]: topic names and filters, their validation and the `matches` oracle.
//! - [`index`]: a shard's `SubscriptionTrie`, the `InterestMap` (filter → shards) and the retained store.
//! - [`message`]: an application message as routed between shards (topic, payload, properties).
//! - [`session`]: one client's delivery state (in-flight window, queue, holds, encoded frames, write queue); no I/O.
//! - [`auth`]: `password_file` and `acl_file` as Mosquitto reads them.
//! - [`persist`]: the on-disk record format of a shard's log and snapshot (issue 16); no I/O.
//! - [`transport`]: what bytes pass through between socket and codec: TLS (rustls), WebSocket framing; no I/O.
//! - [`config`]: the mosquitto.conf parser, its key table and errors, CPU placement.
//! - [`settings`]: the resolved, immutable configuration every shard reads.
//! - [`logging`]: Mosquitto-style log lines and the writer thread shards hand them to.
//! - [`stats`]: a shard's counters, merged by message for `$SYS`.
//! - [`router`]: the cross-shard mailboxes, the `Mail` they carry and the park handshake.
//! - [`shard`]: one shard: its parts (sessions, subscriptions, retained copy, mail out, live
//!   connections, keep-alive, expiry, `$SYS`), packet handling by family (`shard/packets/`), the
//!   connection tasks and the executor's loop.
//! - [`server`]: starts one executor per shard, the ticker, shutdown.
//! - [`cluster`]: several nodes as one broker over NATS JetStream; so far the sans-IO mapping between
//!   MQTT topics and filters and NATS subjects.
//! - [`cli`]: Mosquitto's command line.
//! - [`process`]: the `pid_file` and dropping root privileges (`user`).
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod index;
pub mod limits;
pub mod logging;
pub mod message;
pub mod passwd;
pub mod persist;
pub mod process;
pub mod router;
pub mod server;
pub mod session;
pub mod settings;
pub mod shard;
pub mod stats;
pub mod topic;
pub mod transport;
