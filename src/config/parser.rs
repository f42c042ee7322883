//! The `mosquitto.conf` line parser: one `key value...` per line, `#` comment lines, values checked
//! with Mosquitto's limits, `include_dir` files read in Mosquitto's order, and the listener options
//! (`listener`, the deprecated `port`/`bind_address` default listener, `max_connections`, ...) applied
//! to the listener they follow. [`super::Config::parse_str`] drives it: [`Parser::new`], then
//! [`Parser::parse_text`] on the main file (which recurses into included files), then [`Parser::finish`].
//! Which keys exist is in `keys.rs`; the errors it returns are in `error.rs`; listener options in
//! `parser/listener.rs`; a line and its value readers in `parser/line.rs`; `include_dir` in
//! `parser/include.rs`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{suggest, UNSUPPORTED_KEYS, UNSUPPORTED_PREFIXES};
use super::placement::parse_cpu_list;

mod cluster;
mod include;
mod line;
mod listener;
use super::{
    Arity, Config, ConfigError, ConfigNotice, ListenerConfig, ListenerSecurity, PersistenceSync,
    SocketDomain, ValueProblem, DEFAULT_AUTO_ID_PREFIX, DEFAULT_PORT, MIN_MAX_PACKET_SIZE,
    MQTT_MAX_PACKET_SIZE,
};
use crate::codec::ReasonCode;
use crate::index::Strategy;
use crate::logging::{LogDest, LogType, LogTypes, TimestampFormat};
use crate::session::SlowSubscriberPolicy;
use line::{parse_expiration, Line};

/// The listener a per-listener option (`max_connections`) applies to.
#[derive(Clone, Copy)]
enum CurrentListener {
    /// Before any `listener` line: Mosquitto's implicit default listener.
    Default,
    /// The listener at this index of `Parser::listeners`.
    Explicit(usize),
}

/// Parse state carried across the main file and its includes.
pub(super) struct Parser {
    config: Config,
    main_file: PathBuf,
    listeners: Vec<ListenerConfig>,
    current: CurrentListener,
    default_port: Option<u16>,
    default_bind_address: Option<String>,
    /// The options given to Mosquitto's implicit default listener (before any `listener` line); its port
    /// and address are `default_port` and `default_bind_address`.
    default_listener: ListenerConfig,
    /// Whether a listener option was given to the default listener (which then exists).
    default_listener_used: bool,
    /// A security option went to the whole broker: `per_listener_settings true` may not follow.
    global_security_set: bool,
    local_only: bool,
    allow_anonymous: Option<bool>,
    log_dest_set: bool,
    log_type_set: bool,
    has_log_file: bool,
    /// The `cluster_*` keys as read; made into `Config::cluster` by `finish`.
    cluster: cluster::ClusterKeys,
}

impl Parser {
    pub(super) fn new(main_file: &Path) -> Parser {
        Parser {
            config: Config {
                config_file: Some(main_file.to_owned()),
                notices: Vec::new(),
                ..Config::default()
            },
            main_file: main_file.to_owned(),
            listeners: Vec::new(),
            current: CurrentListener::Default,
            default_port: None,
            default_bind_address: None,
            default_listener: ListenerConfig::any_interface(DEFAULT_PORT),
            default_listener_used: false,
            global_security_set: false,
            local_only: true,
            allow_anonymous: None,
            log_dest_set: false,
            log_type_set: false,
            has_log_file: false,
            cluster: cluster::ClusterKeys::default(),
        }
    }

    pub(super) fn parse_text(
        &mut self,
        text: &str,
        file: &Path,
        level: usize,
    ) -> Result<(), ConfigError> {
        for (index, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (key, rest) = match trimmed.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((key, rest)) => (key, rest.trim()),
                None => (trimmed, ""),
            };
            let line = Line {
                file,
                number: index + 1,
            };
            self.apply(&line, key, rest, level)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        line: &Line<'_>,
        key: &str,
        rest: &str,
        level: usize,
    ) -> Result<(), ConfigError> {
        if !self.config.per_listener_settings
            && matches!(
                key,
                "allow_anonymous"
                    | "password_file"
                    | "acl_file"
                    | "allow_zero_length_clientid"
                    | "auto_id_prefix"
            )
        {
            self.global_security_set = true;
        }
        if self.cluster_key(line, key, rest)? {
            return Ok(());
        }
        let c = &mut self.config;
        match key {
            "listener" => self.listener(line, rest)?,
            "certfile"
            | "keyfile"
            | "cafile"
            | "capath"
            | "crlfile"
            | "require_certificate"
            | "use_identity_as_username"
            | "use_subject_as_username"
            | "tls_version"
            | "ciphers"
            | "ciphers_tls1.3" => self.tls_option(line, key, rest)?,
            "port" => {
                let port = line.int_in("port", rest, 1, 65535)? as u16;
                self.local_only = false;
                if self.default_port.is_some() {
                    c.notices.push(ConfigNotice::PortRepeated {
                        file: line.file.to_owned(),
                        line: line.number,
                    });
                }
                self.default_port = Some(port);
                c.notices.push(ConfigNotice::Deprecated {
                    file: line.file.to_owned(),
                    line: line.number,
                    key: "port",
                });
            }
            "bind_address" => {
                let address = line.one("bind_address", rest)?;
                if self.default_bind_address.is_some() {
                    return Err(line.duplicate("bind_address"));
                }
                self.local_only = false;
                self.default_bind_address = Some(address.to_owned());
                c.notices.push(ConfigNotice::Deprecated {
                    file: line.file.to_owned(),
                    line: line.number,
                    key: "bind_address",
                });
            }
            "max_connections" => {
                let v = line.int("max_connections", rest)?;
                let limit = if v < 0 {
                    None
                } else {
                    Some(u32::try_from(v).map_err(|_| {
                        line.invalid(
                            "max_connections",
                            &v.to_string(),
                            ValueProblem::OutOfRange {
                                min: -1,
                                max: i64::from(u32::MAX),
                            },
                        )
                    })?)
                };
                self.current_listener().max_connections = limit;
            }
            "allow_anonymous" if c.per_listener_settings => {
                let v = line.bool("allow_anonymous", rest)?;
                self.listener_security().allow_anonymous = Some(v);
            }
            "allow_anonymous" => self.allow_anonymous = Some(line.bool("allow_anonymous", rest)?),
            "max_inflight_messages" => {
                let v = line.limit("max_inflight_messages", rest, 65535)?;
                // Mosquitto treats 65535 like 0: no limit.
                c.max_inflight_messages = if v == 65535 { 0 } else { v as u16 };
            }
            "max_queued_messages" => {
                c.max_queued_messages =
                    line.limit("max_queued_messages", rest, i64::from(u32::MAX))? as u32;
            }
            "max_queued_bytes" => {
                c.max_queued_bytes = line.limit("max_queued_bytes", rest, i64::MAX)? as u64;
            }
            "queue_qos0_messages" => {
                c.queue_qos0_messages = line.bool("queue_qos0_messages", rest)?
            }
            "shared_subscription_strategy" => {
                let mut words = rest.split_whitespace();
                let v = words.next().unwrap_or("");
                let strategy = Strategy::from_name(v).ok_or_else(|| {
                    line.invalid(
                        "shared_subscription_strategy",
                        v,
                        ValueProblem::UnknownSharedStrategy,
                    )
                })?;
                let groups: Vec<&str> = words.collect();
                let table = &mut c.shared_subscription_strategy;
                if groups.is_empty() {
                    table.default = strategy;
                }
                table
                    .groups
                    .extend(groups.into_iter().map(|g| (g.to_owned(), strategy)));
            }
            "slow_subscriber_policy" => {
                let v = line.one("slow_subscriber_policy", rest)?;
                c.slow_subscriber_policy = SlowSubscriberPolicy::from_name(v).ok_or_else(|| {
                    line.invalid(
                        "slow_subscriber_policy",
                        v,
                        ValueProblem::UnknownSlowSubscriberPolicy,
                    )
                })?;
            }
            "max_packet_size" => {
                let v = line.int_in("max_packet_size", rest, 0, i64::from(MQTT_MAX_PACKET_SIZE))?;
                c.max_packet_size = match v as u32 {
                    0 => MQTT_MAX_PACKET_SIZE,
                    n if n < MIN_MAX_PACKET_SIZE => {
                        return Err(line.invalid(
                            "max_packet_size",
                            &n.to_string(),
                            ValueProblem::PacketSizeTooSmall,
                        ))
                    }
                    n => n,
                };
            }
            "max_keepalive" => {
                c.max_keepalive_s = line.int_in("max_keepalive", rest, 0, 65535)? as u16
            }
            "retain_available" => c.retain_available = line.bool("retain_available", rest)?,
            "max_topic_alias" => {
                let v = line.int_in("max_topic_alias", rest, 0, 65535)? as u16;
                self.current_listener().max_topic_alias = v;
            }
            "set_tcp_nodelay" => c.set_tcp_nodelay = line.bool("set_tcp_nodelay", rest)?,
            "sys_interval" => {
                c.sys_interval_s = line.int_in("sys_interval", rest, 0, 65535)? as u32
            }
            "log_dest" => self.log_dest(line, rest)?,
            "log_type" => {
                let word = line.one("log_type", rest)?;
                if !self.log_type_set {
                    self.log_type_set = true;
                    c.log_types = LogTypes::NONE;
                }
                match word {
                    "none" => c.log_types = LogTypes::NONE,
                    "all" => c.log_types = LogTypes::ALL,
                    other => match LogType::from_name(other) {
                        Some(t) => c.log_types.insert(t),
                        None => {
                            return Err(line.invalid(
                                "log_type",
                                other,
                                ValueProblem::UnknownLogType,
                            ))
                        }
                    },
                }
            }
            "log_timestamp" => c.log_timestamp = line.bool("log_timestamp", rest)?,
            "log_timestamp_format" => {
                let text = line.text("log_timestamp_format", rest)?;
                if c.log_timestamp_format.is_some() {
                    return Err(line.duplicate("log_timestamp_format"));
                }
                let format = TimestampFormat::parse(text)
                    .map_err(|reason| line.invalid("log_timestamp_format", text, reason))?;
                c.log_timestamp_format = Some(format);
            }
            "connection_messages" => {
                c.connection_messages = line.bool("connection_messages", rest)?
            }
            "include_dir" => self.include_dir(line, rest, level)?,
            "per_listener_settings" => {
                // As in Mosquitto, it decides where the security options that follow it go, and
                // must come before the first of them.
                let on = line.bool("per_listener_settings", rest)?;
                if on && self.global_security_set {
                    return Err(ConfigError::PerListenerSettingsTooLate {
                        file: line.file.to_owned(),
                        line: line.number,
                    });
                }
                c.per_listener_settings = on;
            }
            "persistence" | "retained_persistence" => {
                let name = if key == "persistence" {
                    "persistence"
                } else {
                    "retained_persistence"
                };
                c.persistence = line.bool(name, rest)?;
            }
            "persistence_location" => {
                c.persistence_location =
                    Some(PathBuf::from(line.text("persistence_location", rest)?));
            }
            "persistence_file" => {
                let name = line.text("persistence_file", rest)?;
                if name.contains('/') {
                    return Err(line.invalid(
                        "persistence_file",
                        name,
                        ValueProblem::PersistenceFileName,
                    ));
                }
                c.persistence_file = name.to_owned();
            }
            "persistence_sync" => {
                c.persistence_sync = match line.words(rest).as_slice() {
                    ["always"] => PersistenceSync::Always,
                    ["none"] => PersistenceSync::None,
                    ["interval", ms] => {
                        let ms = ms
                            .parse::<u64>()
                            .ok()
                            .filter(|&ms| (1..=3_600_000).contains(&ms));
                        let ms = ms.ok_or_else(|| {
                            line.invalid("persistence_sync", rest, ValueProblem::PersistenceSync)
                        })?;
                        PersistenceSync::Interval(Duration::from_millis(ms))
                    }
                    _ => {
                        return Err(line.invalid(
                            "persistence_sync",
                            rest,
                            ValueProblem::PersistenceSync,
                        ))
                    }
                };
            }
            "autosave_interval" => {
                c.autosave_interval =
                    line.int_in("autosave_interval", rest, 0, i64::from(u32::MAX))? as u32;
            }
            "autosave_on_changes" => {
                c.autosave_on_changes = line.bool("autosave_on_changes", rest)?;
            }
            "protocol" => match line.one("protocol", rest)? {
                "mqtt" => self.current_listener().websockets = false,
                "websockets" => self.current_listener().websockets = true,
                v @ "mqttsn" => return Err(line.unsupported(key, Some(v))),
                other => {
                    return Err(line.invalid("protocol", other, ValueProblem::UnknownProtocol))
                }
            },
            "user" => c.user = Some(line.text("user", rest)?.to_owned()),
            "pid_file" => {
                let path = line.text("pid_file", rest)?;
                if c.pid_file.is_some() {
                    return Err(line.duplicate("pid_file"));
                }
                c.pid_file = Some(PathBuf::from(path));
            }
            "allow_zero_length_clientid" if c.per_listener_settings => {
                let v = line.bool("allow_zero_length_clientid", rest)?;
                self.listener_security().allow_zero_length_clientid = Some(v);
            }
            "allow_zero_length_clientid" => {
                c.allow_zero_length_clientid = line.bool("allow_zero_length_clientid", rest)?
            }
            "auto_id_prefix" if c.per_listener_settings => {
                let prefix = line.text("auto_id_prefix", rest)?.to_owned();
                let security = self.listener_security();
                if security.auto_id_prefix.is_some() {
                    return Err(line.duplicate("auto_id_prefix"));
                }
                security.auto_id_prefix = Some(prefix);
            }
            "auto_id_prefix" => {
                let prefix = line.text("auto_id_prefix", rest)?;
                if c.auto_id_prefix != DEFAULT_AUTO_ID_PREFIX {
                    return Err(line.duplicate("auto_id_prefix"));
                }
                c.auto_id_prefix = prefix.to_owned();
            }
            "clientid_prefixes" => {
                let prefix = line.text("clientid_prefixes", rest)?;
                if c.clientid_prefixes.is_some() {
                    return Err(line.duplicate("clientid_prefixes"));
                }
                c.clientid_prefixes = Some(prefix.to_owned());
            }
            "persistent_client_expiration" => {
                let v = line.one("persistent_client_expiration", rest)?;
                c.persistent_client_expiration = Some(parse_expiration(v).ok_or_else(|| {
                    line.invalid("persistent_client_expiration", v, ValueProblem::Duration)
                })?);
            }
            "refuse_unreadable_subscriptions" => {
                let key = "refuse_unreadable_subscriptions";
                c.refuse_unreadable_subscriptions = match line.one(key, rest)? {
                    "false" | "0" => None,
                    "true" | "1" | "not_authorized" => Some(ReasonCode::NotAuthorized),
                    "unspecified_error" => Some(ReasonCode::UnspecifiedError),
                    v => return Err(line.invalid(key, v, ValueProblem::UnknownRefusal)),
                };
            }
            "upgrade_outgoing_qos" => {
                c.upgrade_outgoing_qos = line.bool("upgrade_outgoing_qos", rest)?
            }
            "accept_protocol_versions" => {
                let v = line.text("accept_protocol_versions", rest)?;
                let mut set = 0u8;
                for level in v.split(',').map(str::trim) {
                    match level {
                        "3" | "4" | "5" => set |= 1 << level.parse::<u8>().unwrap_or(0),
                        _ => {
                            return Err(line.invalid(
                                "accept_protocol_versions",
                                v,
                                ValueProblem::ProtocolVersions,
                            ))
                        }
                    }
                }
                self.current_listener().accept_protocol_versions = Some(set);
            }
            "mount_point" => {
                let v = line.text("mount_point", rest)?;
                if v.contains(['+', '#']) || crate::topic::validate_topic_name(v).is_err() {
                    return Err(line.invalid("mount_point", v, ValueProblem::InvalidMountPoint));
                }
                self.current_listener().mount_point = Some(v.to_owned());
            }
            "socket_domain" => {
                let v = line.one("socket_domain", rest)?;
                self.current_listener().socket_domain = Some(match v {
                    "ipv4" => SocketDomain::Ipv4,
                    "ipv6" => SocketDomain::Ipv6,
                    other => {
                        return Err(line.invalid(
                            "socket_domain",
                            other,
                            ValueProblem::UnknownSocketDomain,
                        ))
                    }
                });
            }
            "use_username_as_clientid" => {
                let v = line.bool("use_username_as_clientid", rest)?;
                self.current_listener().use_username_as_clientid = v;
            }
            "password_file" | "acl_file" if c.per_listener_settings => {
                let name = if key == "password_file" {
                    "password_file"
                } else {
                    "acl_file"
                };
                let path = PathBuf::from(line.text(name, rest)?);
                let security = self.listener_security();
                let slot = if name == "password_file" {
                    &mut security.password_file
                } else {
                    &mut security.acl_file
                };
                if slot.is_some() {
                    return Err(line.duplicate(name));
                }
                *slot = Some(path);
            }
            "password_file" => {
                let path = line.text("password_file", rest)?;
                if c.password_file.is_some() {
                    return Err(line.duplicate("password_file"));
                }
                c.password_file = Some(PathBuf::from(path));
            }
            "acl_file" => {
                let path = line.text("acl_file", rest)?;
                if c.acl_file.is_some() {
                    return Err(line.duplicate("acl_file"));
                }
                c.acl_file = Some(PathBuf::from(path));
            }
            // Global even under `per_listener_settings`: the methods are looked up by name for every
            // listener (`crate::auth::Security::auth_method`).
            "scram_file" => {
                let path = line.text("scram_file", rest)?;
                if c.scram_file.is_some() {
                    return Err(line.duplicate("scram_file"));
                }
                c.scram_file = Some(PathBuf::from(path));
            }
            "server_reference" => {
                let text = line.text("server_reference", rest)?;
                if c.server_reference.is_some() {
                    return Err(line.duplicate("server_reference"));
                }
                c.server_reference = Some(text.to_owned());
            }
            "server_reference_mode" => {
                let v = line.one("server_reference_mode", rest)?;
                c.server_reference_mode =
                    crate::settings::RedirectMode::from_name(v).ok_or_else(|| {
                        line.invalid(
                            "server_reference_mode",
                            v,
                            ValueProblem::UnknownRedirectMode,
                        )
                    })?;
            }
            "retry_interval" => c.notices.push(ConfigNotice::Obsolete {
                file: line.file.to_owned(),
                line: line.number,
                key: "retry_interval",
            }),
            "shards" => {
                // At most what a `ShardSet` holds (the interest summary's set of shard ids).
                let max = crate::index::MAX_SHARDS as i64;
                let n = line.int_in("shards", rest, 1, max)? as usize;
                c.shards = NonZeroUsize::new(n);
            }
            "cpu_affinity" => c.cpu_affinity = Some(line.bool("cpu_affinity", rest)?),
            "cpu_set" => {
                let text = line.text("cpu_set", rest)?;
                let cpus =
                    parse_cpu_list(text).map_err(|reason| line.invalid("cpu_set", text, reason))?;
                c.cpu_set = Some(cpus);
            }
            "listen_backlog" => {
                c.listen_backlog =
                    line.int_in("listen_backlog", rest, 1, i64::from(i32::MAX))? as u32;
            }
            _ if UNSUPPORTED_KEYS.contains(&key)
                || UNSUPPORTED_PREFIXES.iter().any(|p| key.starts_with(p)) =>
            {
                return Err(line.unsupported(key, None));
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    file: line.file.to_owned(),
                    line: line.number,
                    key: key.to_owned(),
                    suggestion: suggest(key),
                })
            }
        }
        Ok(())
    }

    fn log_dest(&mut self, line: &Line<'_>, rest: &str) -> Result<(), ConfigError> {
        let (dest, path) = match rest.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((dest, path)) => (dest, path.trim()),
            None => (rest, ""),
        };
        let add = match dest {
            "" => return Err(line.arity("log_dest", Arity::OneOrTwo, 0)),
            "none" | "stderr" | "stdout" if !line.words(path).is_empty() => {
                return Err(line.arity("log_dest", Arity::One, 1 + line.words(path).len()))
            }
            "none" => None,
            "stderr" => Some(LogDest::Stderr),
            "stdout" => Some(LogDest::Stdout),
            "file" => {
                if path.is_empty() {
                    return Err(line.arity("log_dest", Arity::OneOrTwo, 1));
                }
                if self.has_log_file {
                    return Err(line.duplicate("log_dest file"));
                }
                self.has_log_file = true;
                Some(LogDest::File(PathBuf::from(path)))
            }
            "syslog" | "topic" | "dlt" => return Err(line.unsupported("log_dest", Some(dest))),
            other => return Err(line.invalid("log_dest", other, ValueProblem::UnknownLogDest)),
        };
        let c = &mut self.config;
        if !self.log_dest_set {
            self.log_dest_set = true;
            c.log_dest.clear();
        }
        match add {
            None => c.log_dest.clear(),
            Some(d) => {
                if !c.log_dest.contains(&d) {
                    c.log_dest.push(d);
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Config, ConfigError> {
        self.config.cluster = self.finish_cluster()?;
        let mut listeners = std::mem::take(&mut self.listeners);
        let default_used = self.default_port.is_some()
            || self.default_bind_address.is_some()
            || self.default_listener_used;
        if self.local_only {
            // Mosquitto 2.0 "local only mode": loopback listener, anonymous clients allowed regardless.
            let mut l =
                std::mem::replace(&mut self.default_listener, ListenerConfig::any_interface(0));
            l.bind_address = ListenerConfig::local_only(DEFAULT_PORT).bind_address;
            listeners = vec![l];
            self.config.notices.push(ConfigNotice::LocalOnlyMode);
            if self.allow_anonymous == Some(false) {
                self.config
                    .notices
                    .push(ConfigNotice::AnonymousForcedInLocalOnly);
            }
            self.config.allow_anonymous = true;
        } else {
            if default_used {
                let mut l =
                    std::mem::replace(&mut self.default_listener, ListenerConfig::any_interface(0));
                l.port = self.default_port.unwrap_or(DEFAULT_PORT);
                l.bind_address = self.default_bind_address.take();
                listeners.push(l);
            }
            self.config.allow_anonymous = self.allow_anonymous.unwrap_or(false);
        }
        if self.config.per_listener_settings {
            for l in &mut listeners {
                let own = l.security.get_or_insert_with(ListenerSecurity::default);
                if self.local_only {
                    // Local only mode lets anonymous local clients in, whatever was said.
                    own.allow_anonymous = Some(true);
                }
            }
        }
        for (i, l) in listeners.iter().enumerate() {
            l.tls.check().map_err(|problem| ConfigError::ListenerTls {
                port: l.port,
                problem,
            })?;
            if listeners[..i]
                .iter()
                .any(|o| o.port == l.port && o.bind_address == l.bind_address)
            {
                return Err(ConfigError::DuplicateListener {
                    port: l.port,
                    bind_address: l.bind_address.clone(),
                });
            }
        }
        self.config.listeners = listeners;
        self.config.local_only = self.local_only;
        Ok(self.config)
    }
}
