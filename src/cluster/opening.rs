//! A starting node opens to its clients only once every other node counts it live.
//!
//! A SUBACK waits until every node its node counts live has applied the new interest key (the
//! `seen` messages, `relay::answer_interest_when_written`). A node that has just become ready (its
//! queue read, the whole interest bucket read) but whose liveness key the subscriber's node has not
//! read yet (each node reads the nodes bucket's watch every `link::LIVE_NODES_REFRESH`) was not
//! waited for: a key written in that gap reached it through its watch a little later, and what its
//! clients published meanwhile missed the subscription, though its SUBACK had gone (tests/31's
//! routing model at start-up, 1 run in ~45). So a node that became ready, and put its liveness key:
//!
//! 1. takes the nodes that put their keys before it: those in its view of the nodes bucket once its
//!    own put came back through the watch (`link::keep_alive`, which sends them on `members`);
//! 2. says hello to each (a request on [`hello_subject`]): a node that hears it counts this one live
//!    at once, so that its later SUBACKs wait for this node's word, and answers;
//! 3. puts its mark ([`mark_key`], a fresh value) in the interest bucket, and opens once its own
//!    watch of that bucket brought the mark back: the watch brings changes in the stream's order,
//!    so every key put before the answers (a SUBACK that did not wait for this node) is applied.
//!
//! A node that does not answer (dead, its key not expired yet) is not waited for after
//! [`HELLO_WAIT`] × [`HELLO_TRIES`]; the whole opening is bounded by [`OPEN_LIMIT`], after which the
//! node opens all the same, with a warning (and a CONNECT never waits longer than
//! `link::READY_WAIT` from the start). Each other node hears one hello per start of this one.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::link::LinkConfig;
use super::store::open_bucket;

/// How long one hello waits for its answer.
pub const HELLO_WAIT: Duration = Duration::from_millis(1000);

/// How many hellos a node that does not answer is sent.
pub const HELLO_TRIES: u32 = 2;

/// How long after the members are known the node opens whatever happens.
pub const OPEN_LIMIT: Duration = Duration::from_secs(5);

/// Where node `node` hears the hellos of nodes that start (the request's payload: their names).
pub fn hello_subject(cluster: &str, node: &str) -> String {
    format!("shardmq.{cluster}.hello.{node}")
}

/// The key of `node`'s mark in the interest bucket. `=` is allowed in key names but never in a
/// node's name (`link::valid_name`), so no interest key (`<node>.<hash>`) is ever a mark.
pub fn mark_key(node: &str) -> String {
    format!("{MARK_PREFIX}{node}")
}

const MARK_PREFIX: &str = "=open.";

/// Whether a key of the interest bucket is a node's mark, not interest.
pub fn is_mark(key: &str) -> bool {
    key.starts_with(MARK_PREFIX)
}

/// What the opening task tells the link's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The mark with this value is being put: open when the interest watch brings it.
    Expect(Bytes),
    /// [`OPEN_LIMIT`] passed: open now.
    Anyway,
}

/// The link's side (sans-IO): whether the node is open, from the task's steps and the marks the
/// interest watch brings (both in the link's loop, so a mark is matched after every change the
/// watch brought before it).
pub struct Opening {
    key: String,
    expected: Option<Bytes>,
    marked: Option<Bytes>,
    open: watch::Sender<bool>,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Not yet, or before.
    No,
    /// Now: the mark came back.
    Marked,
    /// Now: the time was up.
    Anyway,
}

impl Opening {
    /// Closed; the receiver says when it opens.
    pub fn new(node: &str) -> (Opening, watch::Receiver<bool>) {
        let (open, rx) = watch::channel(false);
        let opening = Opening {
            key: mark_key(node),
            expected: None,
            marked: None,
            open,
        };
        (opening, rx)
    }

    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    pub fn step(&mut self, step: Step) -> Opened {
        match step {
            Step::Expect(value) => {
                self.expected = Some(value);
                self.check()
            }
            Step::Anyway if !self.is_open() => {
                self.open.send_replace(true);
                Opened::Anyway
            }
            Step::Anyway => Opened::No,
        }
    }

    /// The interest watch brought a mark (anyone's): this node's, with the value expected, opens
    /// it. A value of an earlier start (read before the task's `Expect`) does not.
    pub fn mark(&mut self, key: &str, value: Bytes) -> Opened {
        if key != self.key {
            return Opened::No;
        }
        self.marked = Some(value);
        self.check()
    }

    fn check(&mut self) -> Opened {
        if self.is_open() || self.expected.is_none() || self.expected != self.marked {
            return Opened::No;
        }
        self.open.send_replace(true);
        Opened::Marked
    }
}

/// The opening task: waits for `members` (the nodes live when this node's liveness put came back),
/// says hello to each, puts the mark; tells the link's loop through `steps`. Returns once it sent
/// [`Step::Anyway`] (harmless once open) or the loop is gone.
pub async fn open(
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    config: LinkConfig,
    mut members: watch::Receiver<Option<Vec<String>>>,
    steps: mpsc::UnboundedSender<Step>,
) {
    let Ok(list) = members.wait_for(|m| m.is_some()).await.map(|m| m.clone()) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + OPEN_LIMIT;
    let others: Vec<String> = list
        .unwrap_or_default()
        .into_iter()
        .filter(|n| *n != config.node)
        .collect();
    let mut hellos = tokio::task::JoinSet::new();
    for node in others.iter().cloned() {
        let (client, subject) = (client.clone(), hello_subject(&config.cluster, &node));
        let me = Bytes::from(config.node.clone());
        hellos.spawn(async move {
            for _ in 0..HELLO_TRIES {
                let answer = client.request(subject.clone(), me.clone());
                if let Ok(Ok(_)) = tokio::time::timeout(HELLO_WAIT, answer).await {
                    return (node, true);
                }
            }
            (node, false)
        });
    }
    let mut silent = Vec::new();
    while let Some(answer) = hellos.join_next().await {
        if let Ok((node, false)) = answer {
            silent.push(node);
        }
    }
    if silent.is_empty() {
        tracing::debug!("Cluster: the {} other nodes know this one.", others.len());
    } else {
        silent.sort_unstable();
        tracing::info!(
            "Cluster: no answer to this node's hello from {silent:?} (stopped, or dying): not \
             waited for."
        );
    }
    let value = Bytes::from(fresh_value());
    if steps.send(Step::Expect(value.clone())).is_err() {
        return;
    }
    let interest = config.interest_bucket();
    while tokio::time::Instant::now() < deadline {
        let put = async {
            let store = open_bucket(&js, &interest, Duration::ZERO).await?;
            store.put(mark_key(&config.node), value.clone()).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        match tokio::time::timeout_at(deadline, put).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::debug!("Cluster: cannot put this node's mark yet: {e}.");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(_) => break,
        }
    }
    tokio::time::sleep_until(deadline).await;
    let _ = steps.send(Step::Anyway);
}

/// A mark's value no earlier start of this node put: the time, to the nanosecond, and the process.
fn fresh_value() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}.{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_opens_when_its_mark_comes_back_with_the_value_expected() {
        let (mut o, rx) = Opening::new("n1");
        assert_eq!(o.mark(&mark_key("n1"), Bytes::from("old")), Opened::No);
        assert_eq!(o.step(Step::Expect(Bytes::from("new"))), Opened::No);
        assert!(!*rx.borrow(), "a mark of an earlier start does not open it");
        assert_eq!(o.mark(&mark_key("n2"), Bytes::from("new")), Opened::No);
        assert!(!*rx.borrow(), "another node's mark does not open it");
        assert_eq!(o.mark(&mark_key("n1"), Bytes::from("new")), Opened::Marked);
        assert!(*rx.borrow());
        assert_eq!(o.step(Step::Anyway), Opened::No);
    }

    #[test]
    fn a_mark_read_before_the_task_said_what_to_expect_opens_it_then() {
        let (mut o, rx) = Opening::new("n1");
        assert_eq!(o.mark(&mark_key("n1"), Bytes::from("v")), Opened::No);
        assert_eq!(o.step(Step::Expect(Bytes::from("v"))), Opened::Marked);
        assert!(*rx.borrow());
    }

    #[test]
    fn the_time_up_opens_it_without_the_mark() {
        let (mut o, rx) = Opening::new("n1");
        assert_eq!(o.step(Step::Expect(Bytes::from("v"))), Opened::No);
        assert_eq!(o.step(Step::Anyway), Opened::Anyway);
        assert!(*rx.borrow());
        assert_eq!(o.mark(&mark_key("n1"), Bytes::from("v")), Opened::No);
    }

    #[test]
    fn no_interest_key_is_a_mark() {
        let key = super::super::interest::key_of("n1", "a/b");
        assert!(!is_mark(&key));
        assert!(is_mark(&mark_key("n1")));
        assert!(!is_mark("open.n1"));
    }
}
