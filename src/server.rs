//! Starting and stopping the broker: resolve the configuration into [`Settings`], open one SO_REUSEPORT
//! listening socket per (listener, shard), build the mailbox matrix and start one glommio executor thread
//! per shard. [`BrokerHandle`] reports the bound addresses and shuts everything down.
//!
//! Sockets are created here, on the calling thread, so that bind errors (port in use, bad address) are
//! reported by [`start`] before any shard starts, and so that "port 0" is resolved once: the first shard's
//! socket picks the port and the others bind the same one (binding 0 on every shard would give every
//! shard a different port).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::Security;
use crate::config::{Config, ConfigError, MQTT_MAX_PACKET_SIZE};
use crate::router::{Control, ControlSender, MailboxMatrix, ShardId};
use crate::session::Limits;
use crate::settings::{ListenerSettings, Settings};
use crate::shard::{self, ConnectionCounts, ShardStart};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot resolve listener address {address:?}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {source} (glommio needs a memlock limit of at least 512 KiB: ulimit -l)")]
    Executor {
        shard: usize,
        source: glommio::GlommioError<()>,
    },
    /// A shard's thread ended before its executor reported it was running.
    #[error("shard {shard} stopped while starting")]
    ShardDidNotStart { shard: usize },
    /// The persistence directory or a file in it could not be used (`persistence true`).
    #[error(transparent)]
    Persist(#[from] crate::persist::recover::PersistError),
    /// `password_file` or `acl_file` could not be read or is malformed.
    #[error(transparent)]
    Security(#[from] crate::auth::SecurityError),
    /// The cluster link thread could not be started.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::link::LinkError),
    /// The ticker thread (keep-alive checks, `$SYS`) could not be started.
    #[error("cannot start the ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
}

/// Read `password_file`, `acl_file` and `scram_file` (at start-up and on SIGHUP), logging what was
/// skipped in them. Under `per_listener_settings true` each listener's own files too (`scram_file` is
/// global), and always the TLS files.
pub fn load_security(config: &Config) -> Result<Security, crate::auth::SecurityError> {
    // One pair of files, what was skipped in them logged with `scope` in front.
    let load = |password_file: Option<&std::path::Path>, acl_file, scope: &str| {
        let (security, warnings) = Security::load(password_file, acl_file)?;
        for w in warnings {
            tracing::warn!(target: crate::logging::log_type::WARNING, "Warning: {scope}{w}");
        }
        Ok::<_, crate::auth::SecurityError>(security)
    };
    let mut security = load(
        config.password_file.as_deref(),
        config.acl_file.as_deref(),
        "",
    )?;
    if config.per_listener_settings {
        let scopes = config
            .listeners
            .iter()
            .map(|l| {
                let own = l.security.as_ref();
                load(
                    own.and_then(|s| s.password_file.as_deref()),
                    own.and_then(|s| s.acl_file.as_deref()),
                    &format!("listener on port {}: ", l.port),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        security = security.with_per_listener(scopes);
    }
    if let Some(path) = &config.scram_file {
        let file = crate::auth::scram::ScramFile::load(path)?;
        tracing::debug!(target: crate::logging::log_type::DEBUG,
            "scram_file {}: {} users.", path.display(), file.len());
        let mut methods = crate::auth::method::AuthMethods::default();
        methods.register(std::sync::Arc::new(crate::auth::scram::ScramSha256::new(
            file,
        )));
        security = security.with_methods(methods);
    }
    security.with_tls(config.listeners.iter().map(|l| (l.port, &l.tls)))
}

/// Turn a configuration into the settings the shards run with.
pub fn settings_from_config(config: &Config) -> Result<Settings, ServerError> {
    let placement = config.shard_placement()?;
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        // As Mosquitto: no bind address listens on every IPv4 and IPv6 interface; a host name on
        // every address it resolves to; `socket_domain` keeps one family.
        let mut addrs: Vec<SocketAddr> = match &l.bind_address {
            Some(host) => (host.as_str(), l.port)
                .to_socket_addrs()
                .map_err(|source| ServerError::Resolve {
                    address: host.clone(),
                    source,
                })?
                .collect(),
            None => vec![
                SocketAddr::from(([0, 0, 0, 0], l.port)),
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, l.port)),
            ],
        };
        if let Some(domain) = l.socket_domain {
            addrs.retain(|a| domain.admits(a));
        }
        let mut seen = Vec::new();
        addrs.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        if addrs.is_empty() {
            return Err(ServerError::Resolve {
                address: l.bind_address.clone().unwrap_or_default(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address of the family socket_domain asks for",
                ),
            });
        }
        listeners.push(ListenerSettings {
            addrs,
            max_connections: l.max_connections.map(|m| m as usize),
            use_username_as_clientid: l.use_username_as_clientid,
            websockets: l.websockets,
            mount_point: l.mount_point.clone(),
            allow_anonymous: l.security.as_ref().map_or(config.allow_anonymous, |s| {
                s.allow_anonymous.unwrap_or(false)
            }),
            allow_zero_length_clientid: l
                .security
                .as_ref()
                .map_or(config.allow_zero_length_clientid, |s| {
                    s.allow_zero_length_clientid.unwrap_or(true)
                }),
            auto_id_prefix: l
                .security
                .as_ref()
                .and_then(|s| s.auto_id_prefix.clone())
                .unwrap_or_else(|| config.auto_id_prefix.clone()),
            protocol_levels: l
                .accept_protocol_versions
                .unwrap_or(crate::settings::ALL_PROTOCOL_LEVELS),
            max_topic_alias: l.max_topic_alias,
        });
    }
    let unlimited = |v: u64| if v == 0 { usize::MAX } else { v as usize };
    let max_packet_size =
        if config.max_packet_size == 0 || config.max_packet_size >= MQTT_MAX_PACKET_SIZE {
            // The largest packet MQTT can frame: 268,435,455 bytes of body plus a 5-byte fixed header.
            MQTT_MAX_PACKET_SIZE as usize + 5
        } else {
            config.max_packet_size as usize
        };
    let security = load_security(config)?;
    Ok(Settings {
        shards: placement.shards,
        cpus: placement.cpus,
        listeners,
        listen_backlog: config.listen_backlog.min(i32::MAX as u32) as i32,
        security: Arc::new(security),
        clientid_prefixes: config.clientid_prefixes.clone(),
        persistent_client_expiration: config.persistent_client_expiration,
        upgrade_outgoing_qos: config.upgrade_outgoing_qos,
        refuse_unreadable_subscriptions: config.refuse_unreadable_subscriptions,
        shared_strategies: config.shared_subscription_strategy.clone(),
        max_packet_size,
        max_keepalive_s: config.max_keepalive_s,
        retain_available: config.retain_available,
        tcp_nodelay: config.set_tcp_nodelay,
        sys_interval: (config.sys_interval_s > 0)
            .then(|| Duration::from_secs(u64::from(config.sys_interval_s))),
        connection_messages: config.connection_messages,
        limits: Limits {
            max_inflight: unlimited(u64::from(config.max_inflight_messages)),
            max_queued_messages: unlimited(u64::from(config.max_queued_messages)),
            max_queued_bytes: unlimited(config.max_queued_bytes),
            queue_qos0: config.queue_qos0_messages,
            // What other shards may route to one client between its hold and the hold taking effect
            // there: their mailboxes' worth, a few times over for a shard that is slow to read its mail
            // (more shards than cores, a busy core).
            in_transit: 4 * crate::router::MAILBOX_CAPACITY * placement.shards.saturating_sub(1),
            slow_subscriber_policy: config.slow_subscriber_policy,
            ..Limits::default()
        },
        connect_timeout: Duration::from_secs(10),
        persistence: config.persistence.then(|| crate::persist::Persistence {
            files: crate::persist::files::Files::new(
                config
                    .persistence_location
                    .clone()
                    .unwrap_or_else(|| std::path::PathBuf::from(".")),
                config.persistence_file.clone(),
            ),
            sync: config.persistence_sync,
            compact_min: crate::persist::COMPACT_MIN,
        }),
        redirect: config
            .server_reference
            .clone()
            .map(|reference| crate::settings::Redirect {
                reference,
                mode: config.server_reference_mode,
            }),
        cluster: config.cluster.clone(),
    })
}

/// A running broker. Dropping it shuts the broker down.
pub struct BrokerHandle {
    addrs: Vec<SocketAddr>,
    /// Every bound address (see [`BrokerHandle::bound_addrs`]).
    bound: Vec<SocketAddr>,
    control: Vec<ControlSender>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    ticker: Option<Ticker>,
    /// `persistence true`: the directory and the files the broker created in it at start-up.
    persistence_paths: Vec<std::path::PathBuf>,
    /// The cluster link, with `cluster_nats`; stopped after the shards (docs/CLUSTER.md).
    link: Option<crate::cluster::link::Link>,
}

/// The thread that sends every shard a [`Control::Tick`] each [`shard::TICK`]: keep-alive checks and
/// `$SYS` without a glommio timer pending in any shard (see `shard::keepalive`).
struct Ticker {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Ticker {
    fn start(control: Vec<ControlSender>) -> std::io::Result<Ticker> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ticker".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(shard::TICK)
                {
                    for c in &control {
                        c.send(Control::Tick);
                    }
                }
            })?;
        Ok(Ticker { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl BrokerHandle {
    /// The address of each listener, in config order, with the real port when the config said 0.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Every address listened on, listener by listener (IPv4 and IPv6 for a listener without a bind
    /// address): what the start-up log names.
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.bound.clone()
    }

    /// Let the shards start writing their persistence logs (see [`start_held`]): call once the
    /// process runs as the user it keeps, as the files' I/O threads take the credentials of the
    /// thread that starts them.
    pub fn begin_writing(&self) {
        for c in &self.control {
            c.send(Control::BeginWriting);
        }
    }

    /// With `persistence true`: the persistence directory and the files written at start-up, which
    /// the broker must still be able to write once it dropped privileges (`user`).
    pub fn persistence_paths(&self) -> &[std::path::PathBuf] {
        &self.persistence_paths
    }

    /// Apply re-read `password_file` / `acl_file` contents on every shard (SIGHUP): connected clients
    /// that no longer pass are disconnected, every session's ACL is rebuilt. Returns once every shard
    /// has applied them (false if one did not within `limit`), so what follows sees one rule set.
    pub fn reload_security(&self, security: Arc<Security>, limit: Duration) -> bool {
        let (done, applied) = std::sync::mpsc::channel();
        for c in &self.control {
            c.send(Control::Security(security.clone(), done.clone()));
        }
        let deadline = Instant::now() + limit;
        (0..self.control.len()).all(|_| {
            applied
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        })
    }

    /// Stop as Mosquitto does: first publish the will of every connected client (each shard stops
    /// taking new clients, routes its clients' wills and reports; the wills reach subscribers that are
    /// still connected), then close the listeners and every connection (v5 clients get DISCONNECT
    /// 0x8B, after what was queued for them) and join the shards.
    pub fn shutdown(mut self) {
        if let Some(t) = self.ticker.take() {
            t.stop();
        }
        let (done, published) = std::sync::mpsc::channel();
        for c in &self.control {
            c.send(Control::Wills(done.clone()));
        }
        let deadline = Instant::now() + WILLS_TIMEOUT;
        for _ in 0..self.control.len() {
            if published
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break;
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.stop();
        }
        for c in &self.control {
            c.send(Control::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(link) = self.link.take() {
            link.stop();
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start the broker described by `config`. Returns once every shard's listeners are bound.
pub fn start(config: Config) -> Result<BrokerHandle, ServerError> {
    let settings = Arc::new(settings_from_config(&config)?);
    start_with(settings)
}

/// Start the broker with resolved settings.
pub fn start_with(settings: Arc<Settings>) -> Result<BrokerHandle, ServerError> {
    let handle = launch(settings)?;
    handle.begin_writing();
    Ok(handle)
}

/// Start the broker, but with its persistence files untouched by the shards until
/// [`BrokerHandle::begin_writing`]: for a process that switches user first (`crate::process`).
pub fn start_held(config: Config) -> Result<BrokerHandle, ServerError> {
    launch(Arc::new(settings_from_config(&config)?))
}

fn launch(settings: Arc<Settings>) -> Result<BrokerHandle, ServerError> {
    crate::limits::raise_memlock_limit();
    crate::limits::raise_nofile_limit();
    let wanted: usize = settings
        .listeners
        .iter()
        .filter_map(|l| l.max_connections)
        .sum();
    if let Some(warning) = crate::limits::nofile_shortfall(wanted, settings.shards) {
        tracing::warn!(target: crate::logging::log_type::WARNING, "{warning}");
    }
    let shards = settings.shards;
    // Cluster mode: the shards' restored subscriptions, which the link announces for them.
    let mut restored_interest = Arc::new(Vec::new());
    // Read back what was saved (and write the new generation) before any shard runs.
    let mut restores: Vec<Option<shard::ShardRestore>> = (0..shards).map(|_| None).collect();
    let mut persistence_paths = Vec::new();
    if let Some(p) = &settings.persistence {
        let recovered = crate::persist::recover::recover(&p.files, shards as u16)?;
        let mut interest = Vec::new();
        for (i, image) in recovered.shards.iter().enumerate() {
            let mut filters: Vec<&crate::codec::Utf8Bytes> = image
                .sessions
                .values()
                .flat_map(|s| s.subscriptions.keys())
                .collect();
            filters.sort_unstable();
            filters.dedup();
            interest.extend(filters.into_iter().map(|f| (f.clone(), i as ShardId)));
        }
        let interest = Arc::new(interest);
        restored_interest = interest.clone();
        persistence_paths.push(p.files.dir.clone());
        persistence_paths.push(p.files.dir.join(format!("{}.current", p.files.prefix)));
        for (i, (image, log_len)) in recovered
            .shards
            .into_iter()
            .zip(recovered.log_lens)
            .enumerate()
        {
            persistence_paths.push(p.files.log(recovered.generation, i as u16));
            restores[i] = Some(shard::ShardRestore {
                generation: recovered.generation,
                log_len,
                image,
                retained: recovered.retained.clone(),
                interest: interest.clone(),
            });
        }
    }
    // sockets[shard]: (listener index, socket), one per address of each listener.
    let mut sockets: Vec<Vec<(usize, OwnedFd)>> = (0..shards).map(|_| Vec::new()).collect();
    let mut addrs = Vec::with_capacity(settings.listeners.len());
    let mut bound = Vec::new();
    for (index, l) in settings.listeners.iter().enumerate() {
        // Port 0: the first socket picks the port, every other address and shard shares it.
        let mut port = 0;
        let mut first = None;
        for (n, &configured) in l.addrs.iter().enumerate() {
            let mut addr = configured;
            if addr.port() == 0 {
                addr.set_port(port);
            }
            let mut opened = Vec::with_capacity(shards);
            for _ in 0..shards {
                match listen_socket(addr, settings.listen_backlog) {
                    Ok(socket) => {
                        if addr.port() == 0 {
                            if let Some(a) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                                addr = a;
                                port = a.port();
                            }
                        }
                        opened.push(OwnedFd::from(socket));
                    }
                    // No IPv6 on this host: the implicit "::" of a listener without a bind address
                    // is left out, as getaddrinfo would not have offered it to Mosquitto.
                    Err(e) if n > 0 && configured.ip().is_unspecified() && configured.is_ipv6() => {
                        tracing::warn!(target: crate::logging::log_type::WARNING,
                            "Warning: no IPv6 listen socket on port {}: {e}", addr.port());
                        opened.clear();
                        break;
                    }
                    Err(source) => return Err(ServerError::Listen { addr, source }),
                }
            }
            if opened.is_empty() {
                continue;
            }
            for (per_shard, fd) in sockets.iter_mut().zip(opened) {
                per_shard.push((index, fd));
            }
            first.get_or_insert(addr);
            bound.push(addr);
        }
        addrs.push(first.expect("a listener binds at least its first address"));
    }
    // Cluster mode: one more mailbox, the link's (id `shards`), taken out of the matrix before its
    // ends are zipped with the shards' executors (docs/CLUSTER.md).
    let link = settings.link_id().is_some();
    let mut matrix = MailboxMatrix::new(shards + usize::from(link));
    let link_ends = if link { matrix.take_last() } else { None };
    // Built before the first shard starts, so that every early return below stops (on drop) what
    // already runs.
    let mut handle = BrokerHandle {
        addrs,
        bound,
        control: matrix.control.clone(),
        threads: Vec::with_capacity(shards),
        ticker: None,
        persistence_paths,
        link: None,
    };
    let counts = Arc::new(ConnectionCounts::new(settings.listeners.len()));
    let started = Instant::now();
    // Each shard reports once its executor is built: glommio builds it inside the new thread, so a
    // failure there (e.g. a memlock limit under glommio's 512 KiB minimum) would otherwise leave a
    // broker that says it runs but has no shard accepting connections.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<usize>();
    let ends = matrix.mail_out.into_iter().zip(matrix.inboxes).zip(sockets);
    // One retained store for the whole broker (`shard::retained`).
    let retained = shard::RetainedStripes::new(shards);
    let figures = settings.cluster.as_ref().map(|c| {
        Arc::new(crate::cluster::figures::ClusterFigures::new(
            &c.cluster, &c.node,
        ))
    });
    for (i, ((mail_out, inbox), listeners)) in ends.enumerate() {
        let placement = match settings.cpus.get(i).copied().flatten() {
            Some(cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let start = ShardStart {
            id: i as ShardId,
            settings: settings.clone(),
            listeners,
            mail_out,
            inbox,
            counts: counts.clone(),
            started,
            restore: restores[i].take(),
            retained: retained.clone(),
            cluster: figures.clone(),
        };
        let spawned = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            // No file DMA here: a small io_uring buffer keeps executor start fast and memlock low
            // (executor start 6-18 ms -> under 0.5 ms, a few MiB less RSS each; docs/PERFORMANCE.md).
            .io_memory(64 << 10)
            .ring_depth(RING_DEPTH)
            .spawn({
                let ready = ready_tx.clone();
                move || {
                    let _ = ready.send(i);
                    drop(ready);
                    shard::run(start)
                }
            });
        match spawned {
            Ok(t) => handle.threads.push(t),
            Err(source) => return Err(ServerError::Executor { shard: i, source }),
        }
    }
    drop(ready_tx);
    let mut up = vec![false; shards];
    for _ in 0..shards {
        match ready_rx.recv_timeout(EXECUTOR_START_TIMEOUT) {
            Ok(i) => up[i] = true,
            Err(_) => break,
        }
    }
    if let Some(failed) = up.iter().position(|&u| !u) {
        let thread = handle.threads.remove(failed);
        handle.stop();
        return Err(match thread.join() {
            Err(source) => ServerError::Executor {
                shard: failed,
                source,
            },
            Ok(()) => ServerError::ShardDidNotStart { shard: failed },
        });
    }
    handle.ticker = Some(Ticker::start(handle.control.clone()).map_err(ServerError::Ticker)?);
    if let Some(cluster) = &settings.cluster {
        tracing::info!(
            "Cluster: node {} of cluster {} (NATS: {}).",
            cluster.node,
            cluster.cluster,
            cluster.urls.join(", ")
        );
        let ends = link_ends.expect("a mailbox for the link");
        let shards = crate::cluster::link::LinkShards {
            ends,
            count: shards,
            restored: restored_interest,
            retained: retained.clone(),
            figures: figures.clone().expect("figures in cluster mode"),
            persistence: settings.persistence.is_some(),
        };
        handle.link = Some(crate::cluster::link::Link::spawn(cluster.clone(), shards)?);
    }
    Ok(handle)
}

/// io_uring entries per ring (glommio's default is 128). The kernel sizes the table it searches to
/// cancel a pending poll from the ring's size: with 128 entries that is 8 buckets, and when every idle
/// connection had a pending read (glommio's streams) a cancellation with 10,000 of them walked ~1,250
/// entries and `io_poll_find` took 44% of the broker's CPU; 4096 entries gave 256 buckets. Client
/// sockets now wait on the shard's epoll instance instead (`shard/readiness.rs`): what is pending in a
/// ring is timers, the journal's file I/O and that one epoll wait, so 256 entries do. The rings are
/// most of a shard's fixed memory: `shards 64` started at 115.0 MB RSS with 4096, 42.7 MB with 256
/// (docs/PERFORMANCE.md, issue 18).
const RING_DEPTH: usize = 256;

/// How long shutdown waits for the shards to publish their clients' wills (normally milliseconds).
const WILLS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a shard's executor may take to start (normally milliseconds).
const EXECUTOR_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound, listening, SO_REUSEPORT TCP socket.
fn listen_socket(addr: SocketAddr, backlog: i32) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}
