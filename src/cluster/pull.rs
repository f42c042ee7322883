//! This node's pull on its queue consumer (`queue`), pulling again the moment the server goes quiet.
//!
//! A JetStream pull request can be lost: sent to a queue stream still electing its leader, or to a
//! server that restarts. async-nats 0.38's pull stream then reports a missed heartbeat but sends
//! the next request only after the old one's expiry plus 5 s: every QoS 1/2 copy for this node
//! waited 10 s (docs/CLUSTER.md). Here a request is sent again as soon as two heartbeats are
//! missed, on the same inbox: a request that was not lost after all (a slow server) still delivers
//! to it, so nothing is left unacknowledged in a dropped subscription. The server says it is alive
//! every 250 ms while it has nothing to send, so a lost request costs half a second: with 1 s
//! heartbeats and 2 s of silence, one lost at a node's start (its queue stream still settling)
//! held every copy for that node 2 s, and a publisher that reconnected to that node meanwhile had
//! its new messages delivered there ahead of its older ones (`tests/32_cluster_concurrent.rs`,
//! 4 runs in ~50).
//!
//! [`Pulls`] is the accounting, sans-IO: how many messages the requests in flight may still bring,
//! and when to ask for more. [`pull`] drives it with a NATS subscription.

use std::time::Duration;

use async_nats::{jetstream, Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_lite::StreamExt;
use tokio::sync::{mpsc, watch};

/// Messages one request asks for.
pub const BATCH: usize = 256;

/// How long the server keeps one request.
pub const EXPIRES: Duration = Duration::from_secs(5);

/// How often a server with a live request and nothing to send says so: 4 small messages a second
/// per idle node.
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// Silence after which the requests in flight are taken as lost: two heartbeats missed. A server
/// merely slow to say so gets a second request, whose messages come to the same inbox.
pub const SILENCE: Duration = Duration::from_millis(500);

/// What the requests in flight may still bring, and when to ask for more.
#[derive(Debug, Default)]
pub struct Pulls {
    /// Messages asked for and not yet received, expired or ended.
    pending: usize,
}

/// What one message on the inbox was.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A message of the stream: hand it on.
    Message,
    /// A heartbeat, or a request's end: nothing to hand on.
    Status,
    /// The consumer is gone, or the server refused the pull: open it again.
    Failed(String),
}

impl Pulls {
    /// The size of the request to send now, if one is due: when what is in flight may bring half a
    /// batch or less.
    pub fn request(&mut self) -> Option<usize> {
        if self.pending > BATCH / 2 {
            return None;
        }
        self.pending += BATCH;
        Some(BATCH)
    }

    /// Nothing came for [`SILENCE`]: the requests in flight are taken as lost.
    pub fn silence(&mut self) {
        self.pending = 0;
    }

    /// One message on the inbox, with its status, description and headers.
    pub fn received(
        &mut self,
        status: Option<StatusCode>,
        description: Option<&str>,
        headers: Option<&HeaderMap>,
    ) -> Received {
        match status.unwrap_or(StatusCode::OK) {
            StatusCode::OK => {
                self.pending = self.pending.saturating_sub(1);
                Received::Message
            }
            StatusCode::IDLE_HEARTBEAT => Received::Status,
            StatusCode::REQUEST_TERMINATED
                if matches!(
                    description,
                    Some("Consumer Deleted") | Some("Consumer is push based")
                ) =>
            {
                Received::Failed(format!("pull ended: {}", description.unwrap_or_default()))
            }
            // A request expired, or ended for its size or bytes: the server says how many of the
            // messages it asked for it will not bring.
            StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED => {
                let left = headers
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse().ok())
                    .unwrap_or(BATCH);
                self.pending = self.pending.saturating_sub(left);
                Received::Status
            }
            status => Received::Failed(format!(
                "pull answered {status} {}",
                description.unwrap_or_default()
            )),
        }
    }
}

/// The request for `batch` messages, as JetStream reads it (durations in nanoseconds).
fn request_body(batch: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
        EXPIRES.as_nanos(),
        HEARTBEAT.as_nanos()
    ))
}

/// The subject a pull on `consumer` of `stream` is requested on.
pub fn next_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")
}

/// Pulls `consumer` of `stream` into `to` until `to` closes (`Ok`) or the pull fails.
/// `reading` turns true once the server answered a request (a message or a heartbeat): one sent
/// to a stream still electing its leader may be lost, and this node is not ready before its queue
/// is read.
pub async fn pull(
    client: &Client,
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    to: &mpsc::Sender<jetstream::Message>,
    reading: &watch::Sender<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    let subject = next_subject(stream, consumer);
    let mut pulls = Pulls::default();
    loop {
        if let Some(batch) = pulls.request() {
            client
                .publish_with_reply(subject.clone(), inbox.clone(), request_body(batch))
                .await?;
        }
        let message = match tokio::time::timeout(SILENCE, sub.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err("the pull's subscription ended".into()),
            Err(_) => {
                tracing::debug!(
                    "Cluster: this node's queue said nothing for {} ms; pulling again.",
                    SILENCE.as_millis()
                );
                pulls.silence();
                continue;
            }
        };
        reading.send_if_modified(|r| !std::mem::replace(r, true));
        let description = message.description.as_deref();
        match pulls.received(message.status, description, message.headers.as_ref()) {
            Received::Message => {
                let m = jetstream::Message {
                    message,
                    context: js.clone(),
                };
                if to.send(m).await.is_err() {
                    return Ok(());
                }
            }
            Received::Status => {}
            Received::Failed(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(left: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Nats-Pending-Messages", left.to_string().as_str());
        h
    }

    #[test]
    fn asks_for_more_when_half_a_batch_is_left() {
        let mut p = Pulls::default();
        assert_eq!(p.request(), Some(BATCH));
        assert_eq!(p.request(), None, "a full batch is in flight");
        for _ in 0..BATCH / 2 - 1 {
            assert_eq!(p.received(None, None, None), Received::Message);
        }
        assert_eq!(p.request(), None, "more than half a batch may still come");
        assert_eq!(
            p.received(Some(StatusCode::OK), None, None),
            Received::Message
        );
        assert_eq!(p.request(), Some(BATCH));
    }

    #[test]
    fn an_expired_request_is_replaced_at_once() {
        let mut p = Pulls::default();
        p.request();
        p.received(None, None, None);
        assert_eq!(
            p.received(Some(StatusCode::TIMEOUT), None, Some(&ended(BATCH - 1))),
            Received::Status
        );
        assert_eq!(p.request(), Some(BATCH));
        // Without the count, the whole batch is taken as ended.
        p.received(
            Some(StatusCode::REQUEST_TERMINATED),
            Some("Leadership Change"),
            None,
        );
        assert_eq!(p.request(), Some(BATCH));
    }

    #[test]
    fn heartbeats_change_nothing_and_silence_pulls_again() {
        let mut p = Pulls::default();
        p.request();
        assert_eq!(
            p.received(Some(StatusCode::IDLE_HEARTBEAT), None, None),
            Received::Status
        );
        assert_eq!(p.request(), None, "a heartbeat says the request is alive");
        p.silence();
        assert_eq!(
            p.request(),
            Some(BATCH),
            "a silent request is taken as lost"
        );
    }

    #[test]
    fn a_refused_pull_fails() {
        let mut p = Pulls::default();
        p.request();
        assert!(matches!(
            p.received(Some(StatusCode::NOT_FOUND), None, None),
            Received::Failed(_)
        ));
        let deleted = Some("Consumer Deleted");
        assert!(matches!(
            p.received(Some(StatusCode::REQUEST_TERMINATED), deleted, None),
            Received::Failed(_)
        ));
    }

    #[test]
    fn the_request_says_batch_expiry_and_heartbeat() {
        assert_eq!(
            &request_body(7)[..],
            br#"{"batch":7,"expires":5000000000,"idle_heartbeat":250000000}"#
        );
    }
}
