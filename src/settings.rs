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
    /// SUBSCRIBE to a filter the `acl_file` lets the client read nothing of is refused
    /// (`refuse_unreadable_subscriptions`).
    pub refuse_unreadable_subscriptions: Option<crate::codec::ReasonCode>,
    /// How shared subscription groups pick a member (`shared_subscription_strategy`).
    pub shared_strategies: crate::index::Strategies,
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
    /// `server_reference`: where v5 clients are sent, and when; None sends nobody anywhere.
    pub redirect: Option<Redirect>,
    /// The `cluster_*` keys: the link to start (`crate::cluster::link`); None: a single broker.
    pub cluster: Option<crate::cluster::link::LinkConfig>,
}

impl Settings {
    /// In cluster mode, the mailbox id of the link to the other nodes: the one after the shards'
    /// (docs/CLUSTER.md, "Wiring the link into the shards"). None for a single broker.
    pub fn link_id(&self) -> Option<crate::router::ShardId> {
        self.cluster
            .as_ref()
            .map(|_| self.shards as crate::router::ShardId)
    }
}

/// `server_reference` and `server_reference_mode`: the other server v5 clients are told to use
/// (MQTT 5.0 §4.11, the Server Reference property). 3.x clients cannot be told and are served as
/// without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The Server Reference sent, as configured (e.g. `other.example.com:1883`; the spec leaves its
    /// form to the deployment, and clients read it as a space-separated list of `host[:port]`).
    pub reference: String,
    pub mode: RedirectMode,
}

/// When v5 clients are sent to the [`Redirect`]'s server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedirectMode {
    /// Only when this broker shuts down: DISCONNECT 0x9C (Use another server) instead of 0x8B, so
    /// that clients move to the other server during a planned stop rather than retry this one.
    #[default]
    Shutdown,
    /// Temporarily: new v5 clients are refused with CONNACK 0x9C (Use another server), and those still
    /// connected at shutdown get DISCONNECT 0x9C.
    Redirect,
    /// Permanently: as `Redirect` with 0x9D (Server moved), which tells clients to forget this server.
    Moved,
}

impl RedirectMode {
    /// The `server_reference_mode` value.
    pub fn from_name(name: &str) -> Option<RedirectMode> {
        match name {
            "shutdown" => Some(RedirectMode::Shutdown),
            "redirect" => Some(RedirectMode::Redirect),
            "moved" => Some(RedirectMode::Moved),
            _ => None,
        }
    }
}

impl Redirect {
    /// The reason code a v5 client is given: at CONNECT (None when the mode lets it in) or at
    /// shutdown.
    pub fn code(&self, at_shutdown: bool) -> Option<crate::codec::ReasonCode> {
        use crate::codec::ReasonCode;
        match self.mode {
            RedirectMode::Shutdown if !at_shutdown => None,
            RedirectMode::Shutdown | RedirectMode::Redirect => Some(ReasonCode::UseAnotherServer),
            RedirectMode::Moved => Some(ReasonCode::ServerMoved),
        }
    }
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
            refuse_unreadable_subscriptions: None,
            shared_strategies: crate::index::Strategies::default(),
            max_packet_size: 268_435_460,
            max_keepalive_s: u16::MAX,
            retain_available: true,
            tcp_nodelay: false,
            sys_interval: Some(Duration::from_secs(10)),
            connection_messages: true,
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(10),
            persistence: None,
            redirect: None,
            cluster: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Redirect, RedirectMode};
    use crate::codec::ReasonCode;

    #[test]
    fn each_redirect_mode_gives_its_codes_at_connect_and_at_shutdown() {
        let code = |mode, at_shutdown| {
            Redirect {
                reference: "x".into(),
                mode,
            }
            .code(at_shutdown)
        };
        assert_eq!(code(RedirectMode::Shutdown, false), None);
        assert_eq!(
            code(RedirectMode::Shutdown, true),
            Some(ReasonCode::UseAnotherServer)
        );
        assert_eq!(
            code(RedirectMode::Redirect, false),
            Some(ReasonCode::UseAnotherServer)
        );
        assert_eq!(
            code(RedirectMode::Redirect, true),
            Some(ReasonCode::UseAnotherServer)
        );
        assert_eq!(
            code(RedirectMode::Moved, false),
            Some(ReasonCode::ServerMoved)
        );
        assert_eq!(
            code(RedirectMode::Moved, true),
            Some(ReasonCode::ServerMoved)
        );
        assert_eq!(RedirectMode::from_name("moved"), Some(RedirectMode::Moved));
        assert_eq!(RedirectMode::from_name("Moved"), None);
    }
}
