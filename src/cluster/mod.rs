//! Clustering: several shardmq nodes serving as one logical broker over NATS JetStream.
//!
//! docs/CLUSTER.md has the design: a link thread per node talks to NATS, the shards see it as one
//! more mailbox; a message crosses to each interested node once, on that node's subject, and the
//! node's shards deliver it, re-matched against their exact MQTT subscription indexes. Topics become
//! NATS subjects where NATS must tell them apart (the retained stream).
//!
//! - [`link`]: the link thread and its NATS connection; `relay` does what it reads (routing,
//!   interest exchange, QoS 1/2 copies through `queue`, session claims through [`sessions`],
//!   retained messages through `retained`); `store` opens the streams and buckets they keep.
//! - [`subject`]: the sans-IO mapping between MQTT topic names and filters and NATS subjects (no
//!   sockets, no NATS client), with the rules a subject must keep and the fallback for topics too long
//!   for one.
pub mod acks;
mod bucket;
pub mod figures;
mod groups;
pub mod interest;
pub mod link;
mod live;
mod opening;
pub mod order;
mod post;
pub mod pull;
mod queue;
mod relay;
mod retained;
pub mod sessions;
mod state;
pub mod store;
pub mod subject;
pub mod wills;
pub mod wire;
