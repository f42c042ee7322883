//! The broker's runtime settings: what the shards need from the configuration, resolved once at start
//! (listener addresses, limits with "0 = unlimited" turned into real bounds). Shared read-only by every
//! shard through an `Arc`; never mutated after start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Security;
use crate::session::Limits;

/// Every protocol level (bits 3, 4, 5: MQTT 3.1, 3.1.1, 5.0) for [`ListenerSettings::protocol_levels`].
pub const ALL_PROTOCOL_LEVELS: u8 = 1 << 3 | 1 << 4 | 1 << 5;

#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Addresses to bind, one socket each: both IPv4 and IPv6 for a listener without a bind address
    /// (as Mosquitto), every address a host name resolves to otherwise, less what `socket_domain`
    /// leaves out. Port 0 picks a free port (the same one on every shard and address).
    pub addrs: Vec<SocketAddr>,
    /// Connections this listener accepts at once across all shards (None = unlimited).
    pub max_connections: Option<usize>,
    /// The client's username becomes its client id (Mosquitto's `use_username_as_clientid`).
    pub use_username_as_clientid: bool,
    /// MQTT over WebSockets (`protocol websockets`): an HTTP upgrade, then binary frames.
    pub websockets: bool,
    /// `mount_point`: prefixed to this listener's clients' topics (see `shard::attached`).
    pub mount_point: Option<String>,
    /// Accept clients without a username (`allow_anonymous`: global, or this listener's own under
    /// `per_listener_settings true`, as are the two below).
    pub allow_anonymous: bool,
    /// Accept an empty client id (and assign one); Mosquitto's `allow_zero_length_clientid`.
    pub allow_zero_length_clientid: bool,
    /// Prefix of assigned client ids (`auto_id_prefix`).
    pub auto_id_prefix: String,
    /// `accept_protocol_versions`: bit `level` set for each protocol level taken (3, 4, 5).
    pub protocol_levels: u8,
    /// Inbound topic aliases a v5 client of this listener may set up (`max_topic_alias`; 0: none).
    pub max_topic_alias: u16,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Number of shards (executors).
    pub shards: usize,
    /// CPU for each shard when pinned (None = unpinned, e.g. more shards than cores).
    pub cpus: Vec<Option<usize>>,
    pub listeners: Vec<ListenerSettings>,
    /// Listen backlog of every listening socket.
    pub listen_backlog: i32,
    /// `password_file` and `acl_file` as loaded at start-up (see `auth`); each shard holds the ones in
    /// force (`Shard::security`), which a SIGHUP replaces.
    pub security: Arc<Security>,
    /// Client ids must start with this (`clientid_prefixes`).
    pub clientid_prefixes: Option<String>,
    /// Longest a disconnected persistent session is kept (`persistent_client_expiration`); None: as
    /// long as its own expiry interval says (forever for 3.x).
    pub persistent_client_expiration: Option<Duration>,
    /// Deliver at the subscription's QoS, not min(publish, subscription) (`upgrade_outgoing_qos`).
    pub upgrade_outgoing_qos: bool,
    /// Largest packet accepted from a client, in bytes (fixed header included).
    pub max_packet_size: usize,
    /// Largest keep-alive a client may ask for, in seconds.
    pub max_keepalive_s: u16,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// TCP_NODELAY on client sockets.
    pub tcp_nodelay: bool,
    /// `$SYS` publishing period (None = disabled).
    pub sys_interval: Option<Duration>,
    /// Log connects and disconnects.
    pub connection_messages: bool,
    /// Session delivery limits.
    pub limits: Limits,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// `persistence true`: where and how state is kept on disk; None keeps nothing.
    pub persistence: Option<crate::persist::Persistence>,
}

impl Settings {
    /// Settings for tests and embedding: `shards` shards, one listener on 127.0.0.1:0, anonymous clients.
    pub fn local(shards: usize) -> Settings {
        Settings {
            shards,
            cpus: vec![None; shards],
            listeners: vec![ListenerSettings {
                addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
                max_connections: None,
                use_username_as_clientid: false,
                websockets: false,
                mount_point: None,
                allow_anonymous: true,
                allow_zero_length_clientid: true,
                auto_id_prefix: crate::config::DEFAULT_AUTO_ID_PREFIX.to_owned(),
                protocol_levels: ALL_PROTOCOL_LEVELS,
                max_topic_alias: crate::config::DEFAULT_MAX_TOPIC_ALIAS,
            }],
            listen_backlog: 1024,
            security: Arc::default(),
            clientid_prefixes: None,
            persistent_client_expiration: None,
            upgrade_outgoing_qos: false,
            max_packet_size: 268_435_460,
            max_keepalive_s: u16::MAX,
            retain_available: true,
            tcp_nodelay: false,
            sys_interval: Some(Duration::from_secs(10)),
            connection_messages: true,
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(10),
            persistence: None,
        }
    }
}
