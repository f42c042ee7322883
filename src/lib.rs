//! shardmq: a thread-per-core MQTT broker (see README.md and ../shared/DESIGN.md).
pub mod cli;
pub mod codec;
pub mod config;
pub mod index;
pub mod logging;
pub mod topic;
