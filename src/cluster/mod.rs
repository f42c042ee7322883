//! Clustering: several shardmq nodes serving as one logical broker over NATS JetStream.
//!
//! docs/CLUSTER.md has the design: a link thread per node talks to NATS, the shards see it as one
//! more mailbox; a message crosses to each interested node once, on that node's subject, and the
//! node's shards deliver it, re-matched against their exact MQTT subscription indexes. Topics become
//! NATS subjects where NATS must tell them apart (the retained stream).
//!
//! What is here so far (not yet reachable from the configuration):
//! - [`link`]: the link thread: its NATS connection (reconnecting by itself, logging outages) and the
//!   node's liveness key in JetStream; routing, interest and sessions come next.
//! - [`subject`]: the sans-IO mapping between MQTT topic names and filters and NATS subjects (no
//!   sockets, no NATS client), with the rules a subject must keep and the fallback for topics too long
//!   for one.
pub mod acks;
mod bucket;
pub mod figures;
pub mod interest;
pub mod link;
mod post;
mod queue;
mod relay;
mod retained;
pub mod sessions;
pub mod subject;
pub mod wire;
