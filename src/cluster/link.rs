//! The cluster link: the thread that talks to NATS for this node (docs/CLUSTER.md, "The link").
//!
//! Concurrency: one OS thread, `shardmq-cluster`, running a current-thread tokio runtime (async-nats
//! needs tokio; the shards run glommio and must never wait on the cluster). What it owns lives on that
//! thread; the rest of the broker talks to it through [`Link`] (today: stop), later through its
//! mailbox in the shards' matrix.
//!
//! What it does: connects to the NATS servers (retrying until one answers, reconnecting by itself
//! after an outage, logging each change once); keeps this node's liveness key in the
//! `shardmq_<cluster>_nodes` key-value bucket (put once the node is ready, refreshed every
//! [`LIVENESS_REFRESH`], expired by the bucket's `max_age`, [`LIVENESS_TTL`], when the node dies,
//! deleted when it stops); and runs the [`Relay`] (routing, interest, QoS 1/2 copies, claims) on
//! what its tasks (bucket writer and watcher, queue consumer, retained follower) and the shards'
//! mail bring.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::Arc;

use async_nats::jetstream;
use futures_lite::StreamExt;
use thiserror::Error;
use tokio::sync::{mpsc, watch, Notify};

use super::bucket::{watch_interest, write_keys, BucketEvent, KeysOf};
use super::figures::Figure;
use super::interest::Interest;
use super::opening::{Opened, Opening};
use super::post::Post;
use super::queue::consume;
use super::relay::{node_subject, Outlets, Relay};
use super::store::open_bucket;
use crate::codec::Utf8Bytes;
use crate::router::{MailboxEnds, ShardId};

/// How long a liveness key lives without a refresh: a node silent this long is taken as dead.
pub const LIVENESS_TTL: Duration = Duration::from_secs(15);

/// How long after its start a node's CONNECTs wait for it to be ready (reading its queue and every
/// node's interest) before they attach all the same; each one for at most the claim's time
/// (`sessions::CLAIM_TIMEOUT`).
pub const READY_WAIT: Duration = Duration::from_secs(15);

/// How often a live node refreshes its key: three refreshes per TTL, so one lost one is not a death.
pub const LIVENESS_REFRESH: Duration = Duration::from_secs(5);

/// QoS 0 copies the link takes, at most, before a QoS 1/2 batch that came after them.
const QOS0_FIRST: usize = 4096;

/// How soon a failed liveness write is tried again.
const RETRY_SOON: Duration = Duration::from_millis(250);

/// How often the link reads which nodes are live.
const LIVE_NODES_REFRESH: Duration = Duration::from_millis(250);

/// How this node joins the cluster (the `cluster_*` configuration keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// `cluster_name`: the same on every node; part of every bucket, stream and subject name.
    pub cluster: String,
    /// `cluster_node`: unique in the cluster.
    pub node: String,
    /// `cluster_nats`: the NATS servers to try.
    pub urls: Vec<String>,
    /// `cluster_nats_user` and `cluster_nats_password`.
    pub user: Option<(String, String)>,
    /// `cluster_nats_credentials`: a NATS credentials file (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// `cluster_nats_cafile`: CA certificates for `tls://` servers.
    pub cafile: Option<PathBuf>,
    /// `cluster_replicas`: copies JetStream keeps of each stream and bucket the cluster creates
    /// (`store`; 3 unless set).
    pub replicas: usize,
}

/// Why a [`LinkConfig`] is refused or the link could not start.
#[derive(Debug, Error)]
pub enum LinkError {
    /// A cluster or node name must be usable in NATS bucket, stream and subject names as it is.
    #[error("{what} `{name}` may hold only letters, digits, `_` and `-` (it names NATS buckets and subjects)")]
    BadName { what: &'static str, name: String },
    #[error("cluster_nats names no server")]
    NoServers,
    #[error("cannot start the cluster thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Whether `name` is a valid cluster or node name: the characters NATS allows in a key-value bucket
/// name (the strictest of the names it goes into), not empty.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl LinkConfig {
    /// Checks the names and the server list.
    pub fn check(&self) -> Result<(), LinkError> {
        for (what, name) in [
            ("cluster_name", &self.cluster),
            ("cluster_node", &self.node),
        ] {
            if !valid_name(name) {
                return Err(LinkError::BadName {
                    what,
                    name: name.clone(),
                });
            }
        }
        if self.urls.is_empty() {
            return Err(LinkError::NoServers);
        }
        Ok(())
    }

    /// The bucket of live nodes.
    pub fn nodes_bucket(&self) -> String {
        format!("shardmq_{}_nodes", self.cluster)
    }

    /// The bucket of every node's interest (docs/CLUSTER.md, "Interest exchange").
    pub fn interest_bucket(&self) -> String {
        format!("shardmq_{}_interest", self.cluster)
    }

    /// The bucket of the wills each node would owe if it died (`wills`).
    pub fn wills_bucket(&self) -> String {
        format!("shardmq_{}_wills", self.cluster)
    }
}

/// What the link needs of the shards: its ends of their mailbox matrix (its id is `count`), and
/// the subscriptions they restored at start-up, which no shard announces by mail.
pub struct LinkShards {
    pub ends: MailboxEnds,
    pub count: usize,
    /// Each restored filter, once per shard that has it (`ShardRestore::interest`).
    pub restored: Arc<Vec<(Utf8Bytes, ShardId)>>,
    /// The node's retained store, where the link applies the cluster's retained stream.
    pub retained: Arc<crate::shard::RetainedStripes>,
    /// What the link counts, read by shard 0 for `$SYS`.
    pub figures: Arc<super::figures::ClusterFigures>,
    /// The node runs with `persistence true`: its shards send the wills of the clients connected
    /// when it last died (so the link does not, `wills`).
    pub persistence: bool,
}

/// The running link; dropping it stops the thread too.
#[derive(Debug)]
pub struct Link {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Starts the link thread. It returns at once: connecting happens on the thread, and goes on until
    /// a server answers (a node whose NATS is down serves its own clients meanwhile).
    pub fn spawn(config: LinkConfig, shards: LinkShards) -> Result<Link, LinkError> {
        config.check()?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("shardmq-cluster".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!("Cluster: cannot start the NATS runtime: {e}.");
                        return;
                    }
                };
                runtime.block_on(run(config, shards, stopped));
            })
            .map_err(LinkError::Spawn)?;
        Ok(Link {
            stop,
            thread: Some(thread),
        })
    }

    /// Leaves the cluster (deletes this node's liveness key when NATS is reachable) and joins the
    /// thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The connection options: name, credentials, TLS, and the log lines for connection changes.
async fn options(
    config: &LinkConfig,
    reconnected: [Arc<Notify>; 3],
) -> std::io::Result<async_nats::ConnectOptions> {
    let mut options = match &config.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone()).await?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some((user, password)) = &config.user {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &config.cafile {
        options = options.add_root_certificates(ca.clone());
    }
    Ok(options
        .name(format!("shardmq {}/{}", config.cluster, config.node))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let reconnected = reconnected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("Cluster: connected to NATS.");
                        // The interest and wills writers put this node's whole set again.
                        for writer in &reconnected {
                            writer.notify_one();
                        }
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("Cluster: lost NATS; serving this node's clients alone.")
                    }
                    async_nats::Event::LameDuckMode => {
                        tracing::warn!("Cluster: the NATS server is going away (lame duck mode).")
                    }
                    other => tracing::debug!("Cluster: NATS event: {other}."),
                }
            }
        }))
}

/// The link's life: connect, route until told to stop, then leave.
async fn run(config: LinkConfig, shards: LinkShards, mut stopped: watch::Receiver<bool>) {
    super::store::set_replicas(config.replicas);
    let reconnected = Arc::new(Notify::new());
    let wills_reconnected = Arc::new(Notify::new());
    let states_reconnected = Arc::new(Notify::new());
    let writers = [
        reconnected.clone(),
        wills_reconnected.clone(),
        states_reconnected.clone(),
    ];
    let options = match options(&config, writers).await {
        Ok(options) => options,
        Err(e) => {
            tracing::error!("Cluster: cannot read the NATS credentials: {e}.");
            return;
        }
    };
    // Returns at once: with `retry_on_initial_connect` the client connects in the background.
    let client = match options.connect(config.urls.clone()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("Cluster: cannot connect to NATS: {e}.");
            return;
        }
    };
    let js = jetstream::new(client.clone());
    let (live_tx, live_rx) = watch::channel(Vec::new());
    // This node tells the cluster it is live only once it can take what the others send it: its
    // queue's consumer reading and the whole interest bucket read (so that its own clients'
    // messages reach every subscription already there). Until then no other node waits for it.
    let (ready_tx, ready_rx) = watch::channel(false);
    // Its liveness key was put: from then on the other nodes know it, and reap its wills if it
    // dies; so its wills go into the bucket only after that (`wills`).
    let (known_tx, mut known_rx) = watch::channel(false);
    // The nodes live when this node's liveness key came back through its watch: those it says
    // hello to before it opens to its clients (`opening`).
    let (members_tx, members_rx) = watch::channel(None);
    let liveness = tokio::spawn(keep_alive(
        client.clone(),
        js.clone(),
        config.clone(),
        stopped.clone(),
        shards.figures.clone(),
        Liveness {
            live: live_tx,
            ready: ready_rx,
            known: known_tx,
            members: members_tx,
        },
    ));
    let (steps_tx, mut steps) = mpsc::unbounded_channel();
    let opener = tokio::spawn(super::opening::open(
        client.clone(),
        js.clone(),
        config.clone(),
        members_rx,
        steps_tx,
    ));
    let (mut opening, open_rx) = Opening::new(&config.node);
    let mut interest = Interest::new(&config.node);
    let (kv, changes) = mpsc::unbounded_channel();
    // Restored subscriptions were never announced by mail (docs/CLUSTER.md).
    for (filter, shard) in shards.restored.iter() {
        if !filter.starts_with(crate::topic::SHARED_PREFIX) {
            if let Some(c) = interest.local_add(filter, *shard) {
                let _ = kv.send(c);
            }
        }
    }
    let (written_tx, mut written) = mpsc::unbounded_channel();
    // Its first sync, which deletes this node's keys it was not told of, waits until the
    // sessions this node's previous run left in the state bucket are back (their filters in
    // `interest`): the other nodes would route nothing here for those sessions in between.
    let (own_back_tx, own_back_rx) = watch::channel(false);
    let writer = tokio::spawn(write_keys(
        KeysOf {
            js: js.clone(),
            bucket: config.interest_bucket(),
            node: config.node.clone(),
        },
        changes,
        reconnected,
        written_tx,
        false,
        own_back_rx,
    ));
    // Wills: this node's in the bucket (written once its previous ones are reaped), and the
    // reaper of the nodes that die (`wills`).
    let (wills_tx, wills_changes) = mpsc::unbounded_channel();
    let (reaped_tx, mut reaped) = mpsc::unbounded_channel();
    let (own_reaped_tx, own_reaped) = tokio::sync::oneshot::channel();
    let reaper = tokio::spawn(super::wills::reap(
        js.clone(),
        config.clone(),
        live_rx.clone(),
        !shards.persistence,
        own_reaped_tx,
        reaped_tx,
    ));
    let will_writer = tokio::spawn({
        let (js, bucket, node) = (js.clone(), config.wills_bucket(), config.node.clone());
        async move {
            let _ = own_reaped.await;
            let _ = known_rx.wait_for(|known| *known).await;
            let keys = KeysOf { js, bucket, node };
            write_keys_now(keys, wills_changes, wills_reconnected, false).await;
        }
    });
    // Persistent sessions: this node's in the bucket (written once its previous ones are taken
    // back), and the adopter of the sessions of the nodes that die (`state`).
    let (states_tx, states_changes) = mpsc::unbounded_channel();
    // Bounded like the queue: a link with no room leaves the dead node's messages in JetStream.
    let (adopted_tx, mut adopted) = mpsc::channel(1024);
    let (own_taken_tx, own_taken) = tokio::sync::oneshot::channel();
    let adopter = tokio::spawn(super::state::adopt(
        js.clone(),
        config.clone(),
        live_rx.clone(),
        !shards.persistence,
        own_taken_tx,
        adopted_tx,
    ));
    let state_writer = tokio::spawn({
        let (js, bucket) = (js.clone(), super::state::bucket(&config.cluster));
        let (node, reconnected) = (config.node.clone(), states_reconnected.clone());
        async move {
            let _ = own_taken.await;
            // Left when the node stops: its sessions are resumed elsewhere.
            let keys = KeysOf { js, bucket, node };
            write_keys_now(keys, states_changes, reconnected, true).await;
        }
    });
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch_interest(
        js.clone(),
        config.interest_bucket(),
        events_tx,
    ));
    let subject = node_subject(&config.cluster, &config.node);
    let Some(mut inbound) = subscribe(&client, subject, &mut stopped).await else {
        return;
    };
    // This node's JetStream queue (QoS 1/2 from other nodes): bounded, so that a link with no room
    // leaves the rest in JetStream.
    let (queued_tx, mut queued) = mpsc::channel(1024);
    let (reading_tx, mut reading) = watch::channel(false);
    let (created_tx, mut created) = watch::channel(false);
    let consumer = tokio::spawn(consume(
        client.clone(),
        js.clone(),
        config.clone(),
        queued_tx,
        reading_tx,
        created_tx,
    ));
    let mut caught_up = false;
    let (retained_tx, mut retained) = mpsc::channel(1024);
    let follower = tokio::spawn(super::retained::follow(
        client.clone(),
        js.clone(),
        config.cluster.clone(),
        retained_tx,
    ));
    let evict_subject = super::sessions::evict_subject(&config.cluster, &config.node);
    let Some(mut evictions) = subscribe(&client, evict_subject, &mut stopped).await else {
        return;
    };
    let seen_subject = super::relay::seen_subject(&config.cluster, &config.node, "*");
    let Some(mut seen) = subscribe(&client, seen_subject, &mut stopped).await else {
        return;
    };
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (claimed_tx, mut claimed) = mpsc::unbounded_channel();
    let (custody_tx, mut let_go) = mpsc::unbounded_channel();
    let post = Post::new(shards.ends, shards.count);
    let mut relay = Relay::new(
        post,
        interest,
        client.clone(),
        &config,
        Outlets {
            kv,
            wills: wills_tx,
            states: states_tx,
            copies: done_tx,
            claims: claimed_tx,
            custody: custody_tx,
        },
        shards.figures.clone(),
        live_rx,
    );
    relay.set_retained_store(shards.retained);
    relay.set_ready(open_rx, READY_WAIT);
    let mut batch = Vec::new();
    let mut resend = tokio::time::interval(Duration::from_secs(1));
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let full = relay.post().full();
        let batch_waiting = relay.batch_waiting();
        let reads_queue = relay.reads_queue();
        tokio::select! {
            _ = stopped.changed() => break,
            _ = std::future::poll_fn(|cx| relay.post().poll(cx, &mut batch)) => {
                relay.take_mail(&mut batch).await;
            }
            m = inbound.next(), if !full => match m {
                Some(m) => relay.take_core(m).await,
                // The client ends subscriptions only when it is dropped.
                None => break,
            },
            // A batch waiting for the QoS 0 copies sent before it (`cluster::order`): until it
            // goes, no other is taken.
            _ = hold_over(batch_waiting) => relay.release_held().await,
            Some(m) = queued.recv(), if !full && batch_waiting.is_none() && reads_queue => {
                // The QoS 0 copies already here go first: one sent before this batch came over
                // the same connection before it (`cluster::order`), but `select!` picks at random.
                for _ in 0..QOS0_FIRST {
                    match futures_lite::future::poll_once(inbound.next()).await {
                        Some(Some(c)) => relay.take_core(c).await,
                        _ => break,
                    }
                }
                relay.take_queued(m).await;
            }
            Some((m, seq)) = retained.recv(), if !full => relay.take_retained(&m, seq),
            Some(d) = done.recv() => relay.copy_done(d),
            Some(c) = claimed.recv() => relay.task_done(c).await,
            Some(key) = let_go.recv() => {
                relay.let_go(key).await;
                while let Ok(key) = let_go.try_recv() {
                    relay.let_go(key).await;
                }
            }
            Some(key) = written.recv() => relay.interest_written(&key),
            Some(m) = evictions.next() => relay.take_eviction(m).await,
            Some(event) = events.recv() => {
                caught_up |= matches!(event, BucketEvent::CaughtUp);
                if let BucketEvent::Mark { key, value } = event {
                    if opening.mark(&key, value) == Opened::Marked {
                        tracing::info!(
                            "Cluster: node {} open to its clients: every other node counts it live.",
                            config.node
                        );
                    }
                } else {
                    relay.take_bucket_event(event).await;
                }
            }
            Some(step) = steps.recv() => {
                if opening.step(step) == Opened::Anyway {
                    tracing::warn!(
                        "Cluster: node {} open to its clients after {:?} without its mark back \
                         from the interest bucket (NATS slow or away): a message its clients \
                         publish at once may miss a subscription made elsewhere meanwhile.",
                        config.node,
                        super::opening::OPEN_LIMIT
                    );
                }
            }
            Ok(()) = reading.changed(), if !*ready_tx.borrow() => {}
            Ok(()) = created.changed(), if !reads_queue => relay.queue_is_new(),
            Some(m) = seen.next() => relay.interest_seen(&m),
            Some((client_id, will)) = reaped.recv() => relay.route_will(&client_id, will),
            Some(a) = adopted.recv(), if !full => relay.take_adoption(a).await,
            _ = resend.tick() => {
                relay.resend_kept().await;
                relay.prune_moved();
                relay.answer_late_interest();
                relay.release_synced();
                relay.release_held().await;
                relay.keep_held().await;
                relay.own_back_overdue();
            }
        }
        if reads_queue != relay.reads_queue() {
            own_back_tx.send_replace(true);
        }
        // The QoS 1/2 copies this turn made: one JetStream message per node.
        relay.flush_batches().await;
        if caught_up && !*ready_tx.borrow() && *reading.borrow() {
            tracing::info!(
                "Cluster: node {} ready: reading its queue and the interest of every node.",
                config.node
            );
            ready_tx.send_replace(true);
        }
    }
    consumer.abort();
    follower.abort();
    opener.abort();
    let figures = shards.figures.clone();
    // The writers delete this node's interest and wills when their senders (in the relay) go.
    drop(relay);
    watcher.abort();
    reaper.abort();
    adopter.abort();
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), will_writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), state_writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), liveness).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    tracing::info!(
        "Cluster: left the cluster; {} messages sent to other nodes, {} received, {} dropped, \
         {} unreadable.",
        figures.get(Figure::Sent),
        figures.get(Figure::Received),
        figures.get(Figure::Dropped),
        figures.get(Figure::Unreadable)
    );
}

/// [`write_keys`] for a bucket whose writes nobody waits for and whose first sync goes at once.
async fn write_keys_now<C: super::bucket::KeyChange>(
    keys: KeysOf,
    changes: mpsc::UnboundedReceiver<C>,
    reconnected: Arc<tokio::sync::Notify>,
    keep_at_stop: bool,
) {
    let (unused, _) = mpsc::unbounded_channel();
    let now = watch::channel(true).1;
    write_keys(keys, changes, reconnected, unused, keep_at_stop, now).await;
}

/// Ready at `until`; never without it.
async fn hold_over(until: Option<std::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until.into()).await,
        None => std::future::pending().await,
    }
}

/// Subscribes to `subject`, trying again every second until NATS takes it; None if told to stop
/// meanwhile.
async fn subscribe(
    client: &async_nats::Client,
    subject: String,
    stopped: &mut watch::Receiver<bool>,
) -> Option<async_nats::Subscriber> {
    loop {
        match client.subscribe(subject.clone()).await {
            Ok(sub) => return Some(sub),
            Err(e) => {
                tracing::warn!("Cluster: cannot subscribe to {subject} yet: {e}.");
                tokio::select! {
                    _ = stopped.changed() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// What [`keep_alive`] reads and tells about liveness.
struct Liveness {
    /// The live nodes (this one included), sorted.
    live: watch::Sender<Vec<String>>,
    /// The node is ready: its key may be put.
    ready: watch::Receiver<bool>,
    /// Its key was put.
    known: watch::Sender<bool>,
    /// The nodes live once its first put came back through the watch (`opening`).
    members: watch::Sender<Option<Vec<String>>>,
}

/// Keeps this node's liveness key until told to stop, then deletes it; counts a node that says
/// hello (`opening`) live at once.
async fn keep_alive(
    client: async_nats::Client,
    js: jetstream::Context,
    config: LinkConfig,
    mut stopped: watch::Receiver<bool>,
    figures: Arc<super::figures::ClusterFigures>,
    liveness: Liveness,
) {
    let Liveness {
        live,
        ready,
        known,
        members,
    } = liveness;
    let hello_subject = super::opening::hello_subject(&config.cluster, &config.node);
    let Some(mut hellos) = subscribe(&client, hello_subject, &mut stopped).await else {
        return;
    };
    let mut bucket = None;
    // The other nodes' liveness, read with one watch (`live`), started again after an error.
    let mut nodes = super::live::LiveNodes::new(LIVENESS_TTL);
    let mut watch: Option<async_nats::jetstream::kv::Watch> = None;
    // The next liveness put: at once, again soon until one succeeds (NATS starting, the bucket's
    // stream electing its leader), then every LIVENESS_REFRESH.
    let mut put_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(LIVE_NODES_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tick.tick() => {}
            Some(m) = hellos.next() => {
                // A node that starts: live from now on, so that a SUBACK here waits for its word
                // before it opens to its clients.
                let Some(reply) = m.reply else { continue };
                let Some(from) = std::str::from_utf8(&m.payload).ok().filter(|n| valid_name(n)) else {
                    continue;
                };
                nodes.put(from, Duration::ZERO, std::time::Instant::now());
                tell_live(&mut nodes, &live, &figures);
                let _ = client.publish(reply, bytes::Bytes::new()).await;
                continue;
            }
            entry = async { watch.as_mut()?.next().await }, if watch.is_some() => {
                match entry {
                    Some(Ok(entry)) => {
                        super::live::apply(&mut nodes, &entry, std::time::Instant::now(), Duration::ZERO);
                        // This node's put back: every put before it came before it.
                        if entry.key == config.node
                            && entry.operation == async_nats::jetstream::kv::Operation::Put
                        {
                            tell_members(&known, &members, &mut nodes);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!("Cluster: watch of the nodes bucket: {e}; again.");
                        watch = None;
                    }
                    None => watch = None,
                }
                continue;
            }
        }
        if bucket.is_none() {
            match open_bucket(&js, &config.nodes_bucket(), LIVENESS_TTL).await {
                Ok(b) => bucket = Some(b),
                Err(e) => {
                    tracing::debug!("Cluster: cannot open the nodes bucket yet: {e}.");
                    continue;
                }
            }
        }
        let Some(b) = &bucket else { continue };
        if *ready.borrow() && tokio::time::Instant::now() >= put_at {
            match b.put(&config.node, liveness_value().into()).await {
                Ok(_) => {
                    put_at = tokio::time::Instant::now() + LIVENESS_REFRESH;
                    known.send_replace(true);
                }
                Err(e) => {
                    tracing::debug!("Cluster: liveness refresh failed: {e}.");
                    put_at = tokio::time::Instant::now() + RETRY_SOON;
                }
            }
        }
        // The cluster's size for `$SYS`, and the nodes whose word a SUBACK waits for
        // (`Relay::answer_interest_when_written`): read every LIVE_NODES_REFRESH, so that a node
        // that joins is waited for within about that.
        if watch.is_none() {
            match super::live::start(b, &mut nodes).await {
                Ok(w) => {
                    watch = Some(w);
                    // Read after this node's put: every put before it is in the read.
                    tell_members(&known, &members, &mut nodes);
                }
                Err(e) => {
                    tracing::debug!("Cluster: cannot watch the nodes bucket yet: {e}.");
                    continue;
                }
            }
        }
        // NATS away: nobody can refresh a key, so nobody's silence says anything. Every node
        // known stays live, and has a whole TTL from NATS's return to put its key again. Before,
        // an outage longer than the TTL (a loaded machine restarting all of NATS) left only the
        // nodes that refreshed first after it: the others were reaped as dead, their sessions
        // adopted while they still served them (tests/27_cluster_kill.rs, outage, 64 shards: its
        // subscriber's node got no more QoS 0 messages).
        if client.connection_state() != async_nats::connection::State::Connected {
            nodes.renew(std::time::Instant::now());
        }
        tell_live(&mut nodes, &live, &figures);
    }
    if let Some(b) = &bucket {
        // Best effort: a node that cannot say goodbye expires after LIVENESS_TTL.
        let _ = tokio::time::timeout(Duration::from_secs(2), b.delete(&config.node)).await;
    }
}

/// The live nodes now, to the relay and `$SYS`.
fn tell_live(
    nodes: &mut super::live::LiveNodes,
    live: &watch::Sender<Vec<String>>,
    figures: &super::figures::ClusterFigures,
) {
    let now = nodes.live(std::time::Instant::now());
    figures.set_nodes(now.len() as u64);
    live.send_replace(now);
}

/// Once this node's key is put and known to be in the nodes it reads: those nodes, once
/// (`opening`).
fn tell_members(
    known: &watch::Sender<bool>,
    members: &watch::Sender<Option<Vec<String>>>,
    nodes: &mut super::live::LiveNodes,
) {
    if *known.borrow() && members.borrow().is_none() {
        members.send_replace(Some(nodes.live(std::time::Instant::now())));
    }
}

/// What a liveness key holds: when it was written (seconds since the epoch) and by which version.
fn liveness_value() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{{\"at\":{now},\"version\":\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LinkConfig {
        LinkConfig {
            cluster: "prod-1".into(),
            node: "node_a".into(),
            urls: vec!["nats://127.0.0.1:4222".into()],
            user: None,
            credentials: None,
            cafile: None,
            replicas: crate::cluster::store::REPLICAS,
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(config().check().is_ok());
        assert_eq!(config().nodes_bucket(), "shardmq_prod-1_nodes");
        for bad in ["", "a.b", "a b", "a*", "a>", "é", "a/b"] {
            let mut c = config();
            c.node = bad.into();
            assert!(
                matches!(
                    c.check(),
                    Err(LinkError::BadName {
                        what: "cluster_node",
                        ..
                    })
                ),
                "{bad:?}"
            );
            let mut c = config();
            c.cluster = bad.into();
            assert!(
                matches!(
                    c.check(),
                    Err(LinkError::BadName {
                        what: "cluster_name",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let mut c = config();
        c.urls.clear();
        assert!(matches!(c.check(), Err(LinkError::NoServers)));
    }
}
