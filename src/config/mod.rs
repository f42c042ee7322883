//! The broker's configuration: a `mosquitto.conf`-style file, with shardmq's additions (`shards`,
//! `cpu_affinity`, `cpu_set`, `listen_backlog`, `slow_subscriber_policy`), turned into one [`Config`].
//!
//! The file format is Mosquitto 2.0's: one `key value...` per line, `#` starts a comment line, keys are
//! case-sensitive, later lines win unless the key accumulates (`listener`, `log_dest`, `log_type`).
//! Every key Mosquitto 2.0 documents is recognised: the ones shardmq implements are parsed with
//! Mosquitto's defaults and limits, the others are refused with [`ConfigError::Unsupported`] so that
//! nothing in an existing `mosquitto.conf` is silently ignored. A key nobody knows is refused with the
//! nearest known key as a suggestion.
//!
//! Who calls it: `main`, through `crate::cli::load_config` ([`Config::load`] or [`Config::default`],
//! then the command line's `-p` and `-v`), once at start-up; tests build one with [`Config::parse_str`].
//! `crate::server::start` then resolves it into the `crate::settings::Settings` the shards run with, so
//! no shard reads a [`Config`], least of all on its hot path. A SIGHUP does not re-read this file: only
//! the password and ACL files, and the TLS certificates, keys, CAs and CRLs, are read again
//! (`crate::server::load_security`).
//!
//! Where things are:
//! - this file: [`Config`], its defaults and methods, [`ListenerConfig`] and the public constants;
//! - `keys.rs`: the table of known keys (supported, unsupported, plugin prefixes) and the suggestion
//!   for a misspelt one;
//! - `parser.rs`: the line parser (Mosquitto's syntax, `include_dir`), and `parser/listener.rs`, the
//!   `listener` line and the options that go to the listener above them (TLS, per-listener security);
//! - `error.rs`: [`ConfigError`], [`ValueProblem`], [`Arity`] and [`ConfigNotice`];
//! - `placement.rs`: how shards map onto CPUs ([`ShardPlacement`], [`available_cpus`], `cpu_set`);
//! - `tls.rs`: a listener's TLS options ([`TlsOptions`]) and how they must fit together.
//!
//! The log settings' types ([`LogDest`], [`LogTypes`], [`TimestampFormat`]) belong to `crate::logging`.
//!
//! Concurrency: parsing runs once on the main thread before any shard starts. The resulting [`Config`]
//! is plain data, read-only once the command line has been applied.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logging::{LogDest, LogTypes, TimestampFormat};
use crate::session::SlowSubscriberPolicy;

mod error;
mod keys;
mod parser;
mod placement;
#[cfg(test)]
mod tests;
mod tls;

pub use error::{Arity, ClusterProblem, ConfigError, ConfigNotice, ValueProblem};
pub use placement::{available_cpus, ShardPlacement};
pub use tls::{TlsOptions, TlsOptionsProblem, TlsVersion};

use parser::Parser;

/// Mosquitto's default `auto_id_prefix`.
pub const DEFAULT_AUTO_ID_PREFIX: &str = "auto-";

/// The commented default configuration (`docs/shardmq.conf`), shipped inside the binary.
pub const DEFAULT_CONFIG_TEXT: &str = include_str!("../../docs/shardmq.conf");

/// The MQTT port Mosquitto listens on when nothing else is said.
pub const DEFAULT_PORT: u16 = 1883;

/// Where "local only mode" binds: Mosquitto 2.0 without a configured listener accepts local clients only.
pub const LOCAL_ONLY_BIND_ADDRESS: &str = "127.0.0.1";

/// The largest packet MQTT can express (a 4-byte remaining length plus the fixed header's limit).
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_455;

/// Mosquitto refuses a `max_packet_size` below this: no useful CONNECT fits in fewer bytes.
pub const MIN_MAX_PACKET_SIZE: u32 = 20;

/// Mosquitto accepts at most this many `-p` options.
pub const MAX_COMMAND_LINE_PORTS: usize = 10;

/// Mosquitto's default `max_topic_alias`.
pub const DEFAULT_MAX_TOPIC_ALIAS: u16 = 10;

/// Default `listen(2)` backlog for each listener socket.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;

/// One socket address to accept MQTT connections on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// TCP port, 1..=65535.
    pub port: u16,
    /// IP address or host name to bind; `None` binds every interface (IPv4 and IPv6, like Mosquitto).
    pub bind_address: Option<String>,
    /// Most clients connected through this listener at once; `None` is unlimited (Mosquitto's `-1`).
    pub max_connections: Option<u32>,
    /// `use_username_as_clientid`: a client's username replaces its client id (no username: refused).
    pub use_username_as_clientid: bool,
    /// TLS (`certfile`, `keyfile`, ...); a plain TCP listener when they are not set.
    pub tls: TlsOptions,
    /// `protocol websockets`: MQTT over WebSockets (ws, or wss with TLS) instead of plain MQTT.
    pub websockets: bool,
    /// `socket_domain`: only IPv4 or only IPv6 addresses; `None` binds both families.
    pub socket_domain: Option<SocketDomain>,
    /// `mount_point`: prefixed to every topic of this listener's clients, removed from what they get.
    pub mount_point: Option<String>,
    /// `accept_protocol_versions` (Mosquitto 2.1): the protocol levels this listener takes, as a bit
    /// set (bit 3: MQTT 3.1, bit 4: 3.1.1, bit 5: 5.0); `None` takes all three.
    pub accept_protocol_versions: Option<u8>,
    /// `max_topic_alias`: topic aliases a v5 client of this listener may set up towards the broker
    /// (announced as the CONNACK's Topic Alias Maximum); 0 refuses them. Default 10, as Mosquitto.
    pub max_topic_alias: u16,
    /// With `per_listener_settings true`: this listener's own security options (every listener has
    /// them then, unset ones at Mosquitto's defaults); `None` uses the global ones.
    pub security: Option<ListenerSecurity>,
}

/// A listener's own security options under `per_listener_settings true` (Mosquitto's list: those
/// shardmq implements); each unset one has Mosquitto's default, not the global value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerSecurity {
    /// `allow_anonymous` (default false, as Mosquitto 2.0).
    pub allow_anonymous: Option<bool>,
    /// `password_file`.
    pub password_file: Option<PathBuf>,
    /// `acl_file`.
    pub acl_file: Option<PathBuf>,
    /// `allow_zero_length_clientid` (default true).
    pub allow_zero_length_clientid: Option<bool>,
    /// `auto_id_prefix` (default `auto-`).
    pub auto_id_prefix: Option<String>,
}

/// `socket_domain`: the address family a listener is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    /// `ipv4`.
    Ipv4,
    /// `ipv6`.
    Ipv6,
}

impl SocketDomain {
    /// Whether `addr` is of this family.
    pub fn admits(self, addr: &std::net::SocketAddr) -> bool {
        addr.is_ipv6() == (self == SocketDomain::Ipv6)
    }
}

impl ListenerConfig {
    /// A listener on `port` bound to every interface, with no connection limit.
    pub fn any_interface(port: u16) -> Self {
        ListenerConfig {
            port,
            bind_address: None,
            max_connections: None,
            use_username_as_clientid: false,
            tls: TlsOptions::default(),
            websockets: false,
            socket_domain: None,
            mount_point: None,
            accept_protocol_versions: None,
            max_topic_alias: DEFAULT_MAX_TOPIC_ALIAS,
            security: None,
        }
    }

    /// The loopback-only listener Mosquitto 2.0 opens in local only mode.
    pub fn local_only(port: u16) -> Self {
        ListenerConfig {
            bind_address: Some(LOCAL_ONLY_BIND_ADDRESS.to_owned()),
            ..ListenerConfig::any_interface(port)
        }
    }
}

/// The whole broker configuration. Built by [`Config::load`] / [`Config::parse_str`] or
/// [`Config::default`], adjusted by the command line (`crate::cli::load_config`), then read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The main config file this was read from; `None` for the built-in defaults. Logged at start-up.
    pub config_file: Option<PathBuf>,
    /// Listeners to open, in config order (the deprecated `port`/`bind_address` default listener last,
    /// as in Mosquitto). Never empty.
    pub listeners: Vec<ListenerConfig>,
    /// No `listener`, `port` or `bind_address` was configured: Mosquitto 2.0's "local only mode", where
    /// `listeners` is loopback-only. Mosquitto also binds `::1` then; transport may try it, best-effort.
    pub local_only: bool,
    /// Clients without a username may connect. Mosquitto 2.0: false once a listener is configured, true
    /// (forced) in local only mode.
    pub allow_anonymous: bool,
    /// Outgoing QoS 1/2 messages in flight per client; 0 = no limit. Mosquitto default 20.
    pub max_inflight_messages: u16,
    /// QoS 1/2 messages queued per client above those in flight; 0 = no limit. Default 1000.
    pub max_queued_messages: u32,
    /// Bytes queued per client above those in flight; 0 = no limit (default). The first limit hit wins.
    pub max_queued_bytes: u64,
    /// Queue QoS 0 messages for disconnected persistent sessions too (counted in the limits). Default false.
    pub queue_qos0_messages: bool,
    /// When a connected subscriber that falls behind holds (stops reading) the publishers feeding it
    /// instead of dropping beyond its queue limits (`slow_subscriber_policy`; see `crate::session`'s
    /// `hold` module). Default: only while every subscriber those publishers feed is behind.
    pub slow_subscriber_policy: SlowSubscriberPolicy,
    /// Largest MQTT packet accepted, in bytes, and announced to v5 clients. Default (and `0`):
    /// [`MQTT_MAX_PACKET_SIZE`].
    pub max_packet_size: u32,
    /// Largest keepalive a v5 client may use (longer ones get a server keepalive); 0 lets clients disable
    /// keepalive. Default 65535.
    pub max_keepalive_s: u16,
    /// Retained messages are supported; when false a PUBLISH with retain set disconnects the client.
    pub retain_available: bool,
    /// Set TCP_NODELAY on client sockets. Default true (Mosquitto: false): the writer coalesces already.
    pub set_tcp_nodelay: bool,
    /// Seconds between `$SYS` updates; 0 disables `$SYS`. Default 10.
    pub sys_interval_s: u32,
    /// Where log lines go, in order, without repeats; empty = `log_dest none`. Default stderr.
    pub log_dest: Vec<LogDest>,
    /// Which log types are written. Default error, warning, notice, information; `-v` makes it all.
    pub log_types: LogTypes,
    /// Prefix each log line with a timestamp. Default true.
    pub log_timestamp: bool,
    /// strftime pattern for that timestamp; `None` writes Unix seconds (Mosquitto's default).
    pub log_timestamp_format: Option<TimestampFormat>,
    /// Log client connects and disconnects. Default true.
    pub connection_messages: bool,
    /// Mosquitto's per-listener security; only `false` is supported, kept for completeness.
    pub per_listener_settings: bool,
    /// `persistence` (or `retained_persistence`): persistent sessions, their subscriptions and the
    /// QoS 1/2 messages owed to them, and retained messages are written to disk as they change
    /// (`crate::persist`) and restored at start-up. Default false.
    pub persistence: bool,
    /// `persistence_location`: the directory of the persistence files. Default: the working
    /// directory, as in Mosquitto.
    pub persistence_location: Option<PathBuf>,
    /// `persistence_file`: the prefix of the persistence files' names. Default `mosquitto.db`.
    pub persistence_file: String,
    /// `persistence_sync`: when what was written is made durable (shardmq's own option).
    pub persistence_sync: PersistenceSync,
    /// `autosave_interval` and `autosave_on_changes`: Mosquitto's snapshot schedule. Accepted and
    /// checked; every change is written as it happens here, so nothing waits for a snapshot.
    pub autosave_interval: u32,
    pub autosave_on_changes: bool,
    /// User to switch to when started as root, once the listeners are bound (`crate::process`).
    /// `None` = Mosquitto's default (`mosquitto`, else `nobody`).
    pub user: Option<String>,
    /// File the process id is written to once the broker serves, removed at exit (`crate::process`);
    /// `None` writes none (default).
    pub pid_file: Option<PathBuf>,
    /// Mosquitto `password_file` (hashes made by `mosquitto_passwd`): clients with a username must match
    /// it. `None` (default): `allow_anonymous` alone decides.
    pub password_file: Option<PathBuf>,
    /// Mosquitto `acl_file`: which topics each client may read and write. `None` (default): all topics.
    pub acl_file: Option<PathBuf>,
    /// `scram_file` (shardmq): SCRAM-SHA-256 credentials made by `shardmq passwd -S`, for MQTT 5.0
    /// enhanced authentication (`crate::auth::scram`). `None` (default): no method is offered and a
    /// CONNECT with an Authentication Method is refused with 0x8C, as Mosquitto without plugins does.
    pub scram_file: Option<PathBuf>,
    /// `server_reference` (shardmq): the server v5 clients are sent to (`crate::settings::Redirect`).
    pub server_reference: Option<String>,
    /// `server_reference_mode` (shardmq): when v5 clients are sent to `server_reference`.
    pub server_reference_mode: crate::settings::RedirectMode,
    /// Accept an empty client id (3.1.1 with clean session, 5.0) and assign one. Default true.
    pub allow_zero_length_clientid: bool,
    /// Prefix of the client ids the broker assigns. Default `auto-`.
    pub auto_id_prefix: String,
    /// Only client ids starting with this may connect (others: not authorised). Default: any.
    pub clientid_prefixes: Option<String>,
    /// `persistent_client_expiration`: disconnected persistent sessions are removed after this long.
    /// Default: never (v5 sessions still expire after their own Session Expiry Interval).
    pub persistent_client_expiration: Option<Duration>,
    /// `upgrade_outgoing_qos`: deliver at the subscription's QoS even above the publish's. Default false.
    pub upgrade_outgoing_qos: bool,
    /// `refuse_unreadable_subscriptions`: with an `acl_file`, answer a SUBSCRIBE to a filter no
    /// topic of which the client may read with this v5 reason code (`true`: 0x87, or
    /// `unspecified_error`: 0x80; 0x80 for 3.x) instead of granting it and checking each message
    /// (Mosquitto's way, the default: None).
    pub refuse_unreadable_subscriptions: Option<crate::codec::ReasonCode>,
    /// `shared_subscription_strategy STRATEGY [GROUP...]`: how shared subscription groups pick the
    /// member for a message (default `round_robin`; see `index::shared`).
    pub shared_subscription_strategy: crate::index::Strategies,
    /// Number of shards (executor threads); `None` = one per CPU this process may run on (or per
    /// `cpu_set` entry).
    pub shards: Option<NonZeroUsize>,
    /// `cluster_name`, `cluster_node`, `cluster_nats` and the `cluster_nats_*` credentials: this node
    /// joins a cluster over NATS (docs/CLUSTER.md). `None`: a single broker.
    pub cluster: Option<crate::cluster::link::LinkConfig>,
    /// Pin shard i to the i-th CPU of `cpu_set` when there are no more shards than CPUs. `None` (unset):
    /// pin only when `cpu_set` names the CPUs. Unpinned is the default because on a machine shared with
    /// clients (or a VM) a pinned shard cannot move off a CPU the kernel or a client is using, and every
    /// wake-up of it on an idle CPU costs an inter-processor interrupt: measured on 2 cores, pinned shards
    /// had 1.1-1.5x the median latency at 1000 msg/s and no more throughput (docs/PERFORMANCE.md).
    pub cpu_affinity: Option<bool>,
    /// CPUs the shards are pinned to, in order; `None` = every CPU this process may run on.
    pub cpu_set: Option<Vec<usize>>,
    /// `listen(2)` backlog of each listener socket. Default [`DEFAULT_LISTEN_BACKLOG`].
    pub listen_backlog: u32,
    /// `-v`: every log type is written, whatever `log_type` says.
    pub verbose: bool,
    /// `-d`: run in the background.
    pub daemon: bool,
    /// Things to log at start-up (deprecations, local only mode, ...), in the order they arose.
    pub notices: Vec<ConfigNotice>,
}

/// Mosquitto's default `persistence_file`.
pub const DEFAULT_PERSISTENCE_FILE: &str = "mosquitto.db";

/// `persistence_sync`: when the records a shard wrote are made durable (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistenceSync {
    /// `always` (default): after each batch of changes (group commit), and a QoS 1/2 PUBLISH is
    /// acknowledged only once the records it caused are durable.
    Always,
    /// `interval MS`: at most every MS milliseconds; acknowledgements do not wait (a crash loses up to
    /// that much, as Mosquitto's `autosave_interval` loses up to its interval).
    Interval(Duration),
    /// `none`: written at once but never synced (the kernel writes it back): survives the broker's
    /// crash, not the machine's.
    None,
}

impl Default for Config {
    /// Mosquitto 2.0 without a config file: local only mode on 127.0.0.1:1883, anonymous clients allowed.
    fn default() -> Self {
        Config {
            config_file: None,
            listeners: vec![ListenerConfig::local_only(DEFAULT_PORT)],
            local_only: true,
            allow_anonymous: true,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            slow_subscriber_policy: SlowSubscriberPolicy::default(),
            max_packet_size: MQTT_MAX_PACKET_SIZE,
            max_keepalive_s: 65535,
            retain_available: true,
            set_tcp_nodelay: true,
            sys_interval_s: 10,
            log_dest: vec![LogDest::Stderr],
            log_types: LogTypes::DEFAULT,
            log_timestamp: true,
            log_timestamp_format: None,
            connection_messages: true,
            per_listener_settings: false,
            persistence: false,
            persistence_location: None,
            persistence_file: DEFAULT_PERSISTENCE_FILE.to_owned(),
            persistence_sync: PersistenceSync::Always,
            autosave_interval: 1800,
            autosave_on_changes: false,
            user: None,
            pid_file: None,
            password_file: None,
            acl_file: None,
            scram_file: None,
            cluster: None,
            server_reference: None,
            server_reference_mode: crate::settings::RedirectMode::default(),
            allow_zero_length_clientid: true,
            auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_owned(),
            clientid_prefixes: None,
            persistent_client_expiration: None,
            upgrade_outgoing_qos: false,
            refuse_unreadable_subscriptions: None,
            shared_subscription_strategy: crate::index::Strategies::default(),
            shards: None,
            cpu_affinity: None,
            cpu_set: None,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            verbose: false,
            daemon: false,
            notices: vec![ConfigNotice::LocalOnlyMode],
        }
    }
}

impl Config {
    /// Reads and parses the config file at `path` (and any `include_dir` it names).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse_str(&text, path)
    }

    /// Parses config text. `origin` is the file it came from: named in errors, and the directory a
    /// relative `include_dir` is resolved against.
    pub fn parse_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut parser = Parser::new(origin);
        parser.parse_text(text, origin, 0)?;
        parser.finish()
    }

    /// Applies `-p` ports the way Mosquitto 2.0 does: in local only mode they replace the default port
    /// (still loopback only); when the file defines listeners they are ignored, with a notice.
    pub fn apply_command_line_ports(&mut self, ports: &[u16]) -> Result<(), ConfigError> {
        if ports.len() > MAX_COMMAND_LINE_PORTS {
            return Err(ConfigError::TooManyPorts { count: ports.len() });
        }
        if ports.is_empty() {
            return Ok(());
        }
        if self.local_only {
            let max_connections = self.listeners.first().and_then(|l| l.max_connections);
            let max_topic_alias = self
                .listeners
                .first()
                .map_or(DEFAULT_MAX_TOPIC_ALIAS, |l| l.max_topic_alias);
            self.listeners = ports
                .iter()
                .map(|&port| ListenerConfig {
                    max_connections,
                    max_topic_alias,
                    ..ListenerConfig::local_only(port)
                })
                .collect();
        } else {
            self.notices.push(ConfigNotice::CommandLinePortsIgnored {
                ports: ports.to_vec(),
            });
        }
        Ok(())
    }

    /// Applies `-v`: every log type is written, overriding `log_type`.
    pub fn apply_verbose(&mut self) {
        self.verbose = true;
        self.log_types = LogTypes::ALL;
    }

    /// Decides how many shards run and which CPU each is pinned to, on the CPUs this process may use.
    pub fn shard_placement(&self) -> Result<ShardPlacement, ConfigError> {
        let available = available_cpus().map_err(|source| ConfigError::Affinity { source })?;
        self.shard_placement_on(&available)
    }

    /// [`Config::shard_placement`] for a given set of usable CPUs (sorted ascending); for tests and tuning.
    pub fn shard_placement_on(&self, available: &[usize]) -> Result<ShardPlacement, ConfigError> {
        placement::place(self, available)
    }
}
