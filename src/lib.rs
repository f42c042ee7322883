//! shardmq: a thread-per-core MQTT broker (see README.md and ../shared/DESIGN.md).
pub mod codec;
