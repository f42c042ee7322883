//! The cluster's streams and key-value buckets in JetStream: opened when there, created otherwise,
//! with the same configuration whichever node creates them first.
//!
//! Replication: [`REPLICAS`] copies unless `cluster_replicas` says otherwise ([`set_replicas`]),
//! so that a NATS server's death loses nothing. A stream or bucket that exists already keeps
//! the replicas it was made with (`nats stream edit` changes them). A single NATS
//! server (development, a test) refuses more than one replica with its own error ("replicas > 1
//! not supported in non-clustered mode"): only then is a stream created with one, and logged. Any
//! other refusal (JetStream still electing its leader, peers not all known yet, another node
//! creating the same stream at the same moment) is returned for the caller to try again: a
//! one-replica stream made during a NATS cluster's start would lose its messages with one server.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

/// Replicas of the cluster's buckets and streams, unless `cluster_replicas` says otherwise.
pub const REPLICAS: usize = 3;

thread_local! {
    /// `cluster_replicas`, set by the cluster link as it starts on its thread: every task of a
    /// link runs there (a current-thread runtime), and a process may run several links (tests).
    static CHOSEN: std::cell::Cell<usize> = const { std::cell::Cell::new(REPLICAS) };
}

/// The replicas of what this link creates from now on: `cluster_replicas` (1 to 5). Called on the
/// link's thread.
pub fn set_replicas(n: usize) {
    CHOSEN.set(n.clamp(1, 5));
}

fn replicas() -> usize {
    CHOSEN.get()
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Whether `e` is a single, non-clustered NATS server refusing replicas (JetStream error 10074).
fn single_server(e: &dyn std::fmt::Display) -> bool {
    let text = e.to_string();
    text.contains("10074") || text.contains("non-clustered mode")
}

/// Opens stream `name`, creating it with `config(replicas)` when missing.
pub async fn open_or_create_stream(
    js: &jetstream::Context,
    name: &str,
    config: impl Fn(usize) -> stream::Config,
) -> Result<stream::Stream, Error> {
    if let Ok(s) = js.get_stream(name).await {
        return Ok(s);
    }
    create("stream", name, |replicas| {
        js.create_stream(stream::Config {
            name: name.to_owned(),
            ..config(replicas)
        })
    })
    .await
}

/// Opens bucket `name`, creating it when missing, its keys expiring after `max_age` (zero: never).
pub async fn open_bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<kv::Store, Error> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    create("bucket", name, |num_replicas| {
        js.create_key_value(kv::Config {
            bucket: name.to_owned(),
            history: 1,
            max_age,
            num_replicas,
            ..Default::default()
        })
    })
    .await
}

/// Tries `attempt` every second until it succeeds, or until `gone` says its caller went (None);
/// each failure logged at debug level after `what` (NATS starting, a stream electing its leader).
pub async fn retry<T, F, Fut>(what: &str, gone: impl Fn() -> bool, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    loop {
        match attempt().await {
            Ok(t) => return Some(t),
            Err(e) => tracing::debug!("Cluster: {what}: {e}."),
        }
        if gone() {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether `e` is JetStream lacking servers for the replicas (error 10023): for a moment while a
/// NATS cluster starts, for good with a cluster of two servers.
fn too_few_servers(e: &dyn std::fmt::Display) -> bool {
    let text = e.to_string();
    text.contains("10023") || text.contains("insufficient resources")
}

/// Whether a lack of servers was logged (once per process: the callers try again every second).
static TOLD_TOO_FEW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `create(replicas())`, or `create(1)` when NATS says it is a single server (logged).
async fn create<T, E, F>(what: &str, name: &str, create: impl Fn(usize) -> F) -> Result<T, Error>
where
    E: std::error::Error + Send + Sync + 'static,
    F: std::future::Future<Output = Result<T, E>>,
{
    let replicas = replicas();
    match create(replicas).await {
        Ok(made) => Ok(made),
        Err(first) if replicas > 1 && single_server(&first) => {
            let made = create(1).await?;
            tracing::warn!(
                "Cluster: {what} {name} has one replica: NATS is a single server ({first})."
            );
            Ok(made)
        }
        Err(e) => {
            if too_few_servers(&e) && !TOLD_TOO_FEW.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "Cluster: JetStream cannot place {what} {name} on {replicas} servers ({e}); \
                     trying again. With fewer JetStream servers than that in the NATS cluster, \
                     set cluster_replicas (1 for one or two servers: a server's death then \
                     loses what it held)."
                );
            }
            Err(Box::new(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_server_gets_one_replica() {
        assert!(single_server(
            &"jetstream error: 500 (code replicas > 1 not supported in non-clustered mode, error code 10074)"
        ));
        for transient in [
            "jetstream error: 503 (code JetStream system temporarily unavailable, error code 10008)",
            "jetstream error: 500 (code insufficient resources, error code 10023)",
            "jetstream error: 400 (code stream name already in use with a different configuration, error code 10058)",
            "timed out",
        ] {
            assert!(!single_server(&transient), "{transient}");
            assert_eq!(too_few_servers(&transient), transient.contains("10023"));
        }
    }
}
