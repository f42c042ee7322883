//! shardmq: a thread-per-core MQTT broker (see README.md and ../shared/DESIGN.md).
pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod index;
pub mod logging;
pub mod message;
pub mod router;
pub mod server;
pub mod session;
pub mod settings;
pub mod shard;
pub mod stats;
pub mod topic;
