//! Clustering: several shardmq nodes serving as one logical broker over NATS JetStream.
//!
//! A node publishes the messages its clients send to NATS subjects, and subscribes in NATS to the
//! subjects of the filters its clients hold; what arrives from NATS is delivered by the node's own
//! shards, re-matched against their exact MQTT subscription indexes. This module will own the node's
//! side of that: the mapping between MQTT topics and NATS subjects, and the cluster link (the NATS
//! connection, what the node publishes and subscribes to, and the hand-over to and from the shards).
//!
//! What is here so far:
//! - [`subject`]: the sans-IO mapping between MQTT topic names and filters and NATS subjects (no
//!   sockets, no NATS client), with the rules a subject must keep and the fallback for topics too long
//!   for one.
pub mod subject;
