//! QoS 1/2 between nodes through JetStream (docs/CLUSTER.md, "QoS >= 1 is durable across nodes").
//!
//! One work-queue stream per cluster, `SHARDMQ_<cluster>_Q`, on the subjects
//! `shardmq.<cluster>.q.<node>`, replicated on 3 NATS servers (1 if the NATS cluster has fewer).
//! Each node reads its own subject through a durable pull consumer, `node_<node>`, and acknowledges
//! a message once no session of its own owes a copy made from it (`relay/held.rs`); what it had
//! not acknowledged when it died comes again, to the node that adopts its sessions or to itself.
//! A sending node publishes with a message id (`Nats-Msg-Id`), so a publish retried after a lost
//! acknowledgement is stored once (the stream's duplicate window).
//!
//! - [`publish`]: one JetStream message to one node (a batch of copies: `relay`, `wire::BATCH_TAG`),
//!   retried until JetStream has it or NATS is away.
//! - [`consume`]: this node's consumer, its messages handed to the link over a bounded channel (so
//!   a link that has no room stops the pull, and JetStream keeps the rest); `pull` reads it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::Client;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::link::LinkConfig;
use super::store::open_or_create_stream;

/// How long the stream keeps a message no node took (a node that never comes back).
pub const QUEUE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long JetStream waits for a node's acknowledgement before it delivers a message again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Messages a node has taken and not yet acknowledged, at most: above `relay::held::HELD_MAX`,
/// so that the messages held for sessions never stop the queue.
const MAX_ACK_PENDING: i64 = 200_000;

/// The stream of `cluster`.
pub fn stream_name(cluster: &str) -> String {
    format!("SHARDMQ_{cluster}_Q")
}

/// The durable consumer through which `node` reads its queue.
pub fn consumer_name(node: &str) -> String {
    format!("node_{node}")
}

/// The subject of `node`'s queue.
pub fn queue_subject(cluster: &str, node: &str) -> String {
    format!("shardmq.{cluster}.q.{node}")
}

/// Opens the queue stream, creating it when missing.
pub async fn open_stream(
    js: &jetstream::Context,
    cluster: &str,
) -> Result<stream::Stream, Box<dyn std::error::Error + Send + Sync>> {
    let subjects = vec![format!("shardmq.{cluster}.q.*")];
    open_or_create_stream(js, &stream_name(cluster), |num_replicas| stream::Config {
        subjects: subjects.clone(),
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas,
        max_age: QUEUE_MAX_AGE,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
}

/// QoS 1/2 copies for one node, as one JetStream message (a batch, or one retained message).
#[derive(Debug, Clone)]
pub struct Copy {
    pub subject: String,
    /// Its `Nats-Msg-Id`: the same on every try.
    pub id: String,
    pub payload: Bytes,
    /// Its `Shardmq-Batch` header (`order`): its sender and number among the batches for its node.
    pub order: Option<String>,
}

/// Hands `copy` to the NATS client (in the caller's order) and returns what waits for JetStream's
/// acknowledgement, retrying until it comes or NATS is away (then the copy comes back, for later).
pub async fn publish(
    client: &async_nats::Client,
    js: &jetstream::Context,
    copy: Copy,
) -> impl std::future::Future<Output = Result<(), Copy>> + Send + 'static {
    let first = js.send_publish(copy.subject.clone(), build(&copy)).await;
    let (client, js) = (client.clone(), js.clone());
    async move {
        let mut delay = Duration::from_millis(20);
        let mut attempt = first;
        loop {
            let outcome = match attempt {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => return Ok(()),
                // No stream yet (the receiving node creates it), a leader election after a server
                // went, a slow server: try again.
                Err(e) => tracing::debug!(
                    "Cluster: JetStream publish on {}: {e}; retrying.",
                    copy.subject
                ),
            }
            if client.connection_state() != async_nats::connection::State::Connected {
                return Err(copy);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
            attempt = js.send_publish(copy.subject.clone(), build(&copy)).await;
        }
    }
}

fn build(copy: &Copy) -> jetstream::context::Publish {
    let publish = jetstream::context::Publish::build()
        .payload(copy.payload.clone())
        .message_id(&copy.id);
    match &copy.order {
        Some(order) => publish.header(super::order::BATCH_HEADER, order.as_str()),
        None => publish,
    }
}

/// Reads this node's queue into `to` until the link goes; opens the stream and the consumer again
/// after an error.
/// `reading` turns true once the server answered the consumer's first pull (`pull::pull`);
/// `created`, when this run created the node's consumer: the node never ran before, so nothing
/// in its queue is for sessions of a previous run (`Relay::reads_queue`).
pub async fn consume(
    client: Client,
    js: jetstream::Context,
    config: LinkConfig,
    to: mpsc::Sender<jetstream::Message>,
    reading: watch::Sender<bool>,
    created: watch::Sender<bool>,
) {
    while !to.is_closed() {
        if let Err(e) = consume_once(&client, &js, &config, &to, &reading, &created).await {
            tracing::debug!("Cluster: reading this node's queue: {e}; again in 1 s.");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume_once(
    client: &Client,
    js: &jetstream::Context,
    config: &LinkConfig,
    to: &mpsc::Sender<jetstream::Message>,
    reading: &watch::Sender<bool>,
    created: &watch::Sender<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stream = open_stream(js, &config.cluster).await?;
    let durable = consumer_name(&config.node);
    let existed = stream
        .get_consumer::<consumer::pull::Config>(&durable)
        .await
        .is_ok();
    let _: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: queue_subject(&config.cluster, &config.node),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await?;
    if !existed {
        created.send_replace(true);
    }
    super::pull::pull(
        client,
        js,
        &stream_name(&config.cluster),
        &durable,
        to,
        reading,
    )
    .await
}
