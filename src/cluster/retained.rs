//! Retained messages across the cluster (docs/CLUSTER.md, "Sessions across nodes": retained).
//!
//! The stream `SHARDMQ_<cluster>_RETAINED` keeps the last message of each topic
//! (`max_messages_per_subject: 1`), one subject per topic: `shardmq.<cluster>.retained.` and the
//! topic mapped by `subject` (a topic too long for a subject goes to its overflow subject). A node
//! publishes there each retained message (or clearing: an empty payload) that its clients or wills
//! set, and every node, itself included, applies the stream to its own retained store in the
//! stream's order, from the last message of each subject at start-up. Applying its own messages
//! too is what makes the nodes agree: two nodes setting one topic at once each store their own
//! first, then both apply the two in the stream's order and end on the same one.
//!
//! A client's QoS 1/2 retained message is acknowledged once the stream has it (at once while NATS
//! is away: kept, and sent when it is back), and a SUBSCRIBE on any node waits until that node has
//! applied what the stream held when it came (`relay::synced`): a retained message acknowledged
//! anywhere before a SUBSCRIBE is in what the SUBSCRIBE gets.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_lite::StreamExt;
use tokio::sync::mpsc;

use super::store::open_or_create_stream;
use super::subject::{self, SubjectPrefix};

/// The stream of `cluster`.
pub fn stream_name(cluster: &str) -> String {
    format!("SHARDMQ_{cluster}_RETAINED")
}

/// The subject prefix of `cluster`'s retained messages.
pub fn prefix(cluster: &str) -> SubjectPrefix {
    // Cluster names are checked (letters, digits, `_`, `-`): always a valid prefix.
    SubjectPrefix::new(&format!("shardmq.{cluster}.retained")).expect("a checked cluster name")
}

/// The subject that keeps `topic`'s retained message.
pub fn subject_of(prefix: &SubjectPrefix, topic: &str) -> String {
    subject::topic_to_subject(prefix, topic)
        .unwrap_or_else(|_| subject::overflow_subject(prefix, topic))
}

async fn open_stream(
    js: &jetstream::Context,
    cluster: &str,
) -> Result<stream::Stream, Box<dyn std::error::Error + Send + Sync>> {
    let subjects = vec![format!("{}.>", prefix(cluster))];
    open_or_create_stream(js, &stream_name(cluster), |num_replicas| stream::Config {
        subjects: subjects.clone(),
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas,
        allow_direct: true,
        ..Default::default()
    })
    .await
}

/// Reads the retained stream into `to`: the last message of every topic, then each new one; from
/// the start again after an error (applying a message twice changes nothing).
pub async fn follow(
    client: async_nats::Client,
    js: jetstream::Context,
    cluster: String,
    to: mpsc::Sender<(bytes::Bytes, u64)>,
) {
    while !to.is_closed() {
        if let Err(e) = follow_once(&client, &js, &cluster, &to).await {
            tracing::debug!("Cluster: reading the retained stream: {e}; again in 1 s.");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    client: &async_nats::Client,
    js: &jetstream::Context,
    cluster: &str,
    to: &mpsc::Sender<(bytes::Bytes, u64)>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stream = open_stream(js, cluster).await?;
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: format!("{}.>", prefix(cluster)),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(m) = messages.next().await {
        let m = m?;
        // Its place in the stream: a SUBSCRIBE waits until the store has what the stream held
        // (`relay::synced`).
        let seq = m.info().map_or(0, |i| i.stream_sequence);
        if to.send((m.message.payload, seq)).await.is_err() {
            return Ok(());
        }
    }
    Err("the retained stream's consumer ended".into())
}
