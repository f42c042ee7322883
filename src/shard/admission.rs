//! Whether a CONNECT is admitted: the checks that do not depend on session state (protocol level,
//! client id rules, will topic, listener options), the login (`password_file`, on glommio's blocking
//! pool when the hash is costly), and the v5 CONNACK properties of an admitted one. Used by
//! `connection.rs` while it reads the CONNECT; no I/O here but the blocking-pool hand-off.

use std::sync::Arc;

use super::connection::Refusal;
use crate::auth::Security;
use crate::codec::{Connect, Properties, ProtocolVersion, ReasonCode};
use crate::logging::log_type;
use crate::settings::Settings;
use crate::topic;

/// The largest packet size MQTT can express (a 4-byte remaining length plus the fixed header).
const PROTOCOL_MAX_PACKET: usize = 268_435_460;

/// The CONNECT checks that do not depend on session state, with each version's refusal.
pub(super) fn check_connect(
    settings: &Settings,
    listener: usize,
    c: &Connect,
) -> Result<(), Refusal> {
    let v = c.protocol;
    let v5 = v == ProtocolVersion::V5;
    let refuse = |code| Err(Refusal::Connack(code, v));
    let level = match v {
        ProtocolVersion::V31 => 3,
        ProtocolVersion::V311 => 4,
        ProtocolVersion::V5 => 5,
    };
    if settings.listeners[listener].protocol_levels & (1 << level) == 0 {
        // `accept_protocol_versions`: answered as an unknown level is (3.x return code 1, v5 0x84).
        return refuse(ReasonCode::UnsupportedProtocolVersion);
    }
    // `server_reference_mode redirect|moved`: v5 clients are sent elsewhere before anything else is
    // checked (the reference goes in the CONNACK: `encode_refusal`).
    if let Some(code) = settings.redirect.as_ref().and_then(|r| r.code(false)) {
        if v5 {
            return refuse(code);
        }
    }
    if c.client_id.is_empty() {
        // 3.1 has no assigned ids; 3.1.1 only with a clean session [MQTT-3.1.3-8].
        if v == ProtocolVersion::V31 || (v == ProtocolVersion::V311 && !c.clean_start) {
            return refuse(ReasonCode::ClientIdentifierNotValid);
        }
        if !settings.listeners[listener].allow_zero_length_clientid {
            // Mosquitto's answers: "identifier rejected" for 3.1.1, "unspecified error" for 5.0.
            return refuse(if v5 {
                ReasonCode::UnspecifiedError
            } else {
                ReasonCode::ClientIdentifierNotValid
            });
        }
    }
    if !v5 && c.keep_alive > settings.max_keepalive_s {
        // What Mosquitto answers a 3.x client asking for more than `max_keepalive`.
        return refuse(ReasonCode::ClientIdentifierNotValid);
    }
    if let Some(will) = &c.will {
        if topic::validate_topic_name(&will.topic).is_err() {
            return if v5 {
                refuse(ReasonCode::TopicNameInvalid)
            } else {
                Err(Refusal::Close("invalid will topic"))
            };
        }
        if will.retain && !settings.retain_available {
            return if v5 {
                refuse(ReasonCode::RetainNotSupported)
            } else {
                Err(Refusal::Close(
                    "retained will while retain_available is false",
                ))
            };
        }
    }
    Ok(())
}

/// The login check, last as in Mosquitto (after the will is read): a refused login answers "not
/// authorised" in every version (3.x return code 5, v5 0x87), whether the user is unknown or the password
/// wrong. A costly hash (see [`Security::costly_check`]) is checked on glommio's blocking thread pool.
/// The listener's own files and `allow_anonymous` under `per_listener_settings true`.
pub(super) async fn authorise(
    settings: &Settings,
    security: Arc<Security>,
    listener: usize,
    c: &Connect,
) -> bool {
    let username = c.username.as_ref().map(|u| u.as_str());
    let allow_anonymous = settings.listeners[listener].allow_anonymous;
    let scope = security.scope(listener);
    if !scope.costly_check(username) {
        return scope.authenticate(allow_anonymous, username, c.password.as_deref());
    }
    let username = username.map(str::to_owned);
    let password = c.password.clone();
    tracing::debug!(target: log_type::DEBUG,
        "Checking the password of {} on the blocking thread pool.", c.client_id);
    glommio::executor()
        .spawn_blocking(move || {
            security.scope(listener).authenticate(
                allow_anonymous,
                username.as_deref(),
                password.as_deref(),
            )
        })
        .await
}

/// The v5 CONNACK properties for an accepted CONNECT, and the keep-alive actually in force.
pub(super) fn connack_properties(
    settings: &Settings,
    listener: usize,
    c: &Connect,
    assigned_id: bool,
) -> (Properties, u16) {
    let mut keep_alive = c.keep_alive;
    let mut p = Properties::default();
    if c.protocol != ProtocolVersion::V5 {
        return (p, keep_alive);
    }
    if c.keep_alive > settings.max_keepalive_s
        || (c.keep_alive == 0 && settings.max_keepalive_s < u16::MAX)
    {
        keep_alive = settings.max_keepalive_s;
        p.server_keep_alive = Some(keep_alive);
    }
    if assigned_id {
        p.assigned_client_identifier = Some(c.client_id.clone());
    }
    // Enhanced authentication succeeded: the CONNACK names the method (§3.2.2.3.17) and carries its
    // last data (SCRAM's server signature), put there by `enhanced_auth::exchange`.
    if let Some(method) = &c.properties.authentication_method {
        p.authentication_method = Some(method.clone());
        p.authentication_data = c.properties.authentication_data.clone();
    }
    if !settings.retain_available {
        p.retain_available = Some(0);
    }
    // Subscription identifiers and shared subscriptions are available: the properties' absence says
    // so (§3.2.2.3.11-12), as in Mosquitto's CONNACK.
    // Inbound topic aliases up to the listener's `max_topic_alias`; absent means 0, none.
    let max_topic_alias = settings
        .listeners
        .get(listener)
        .map_or(0, |l| l.max_topic_alias);
    if max_topic_alias > 0 {
        p.topic_alias_maximum = Some(max_topic_alias);
    }
    // What Mosquitto advertises: `max_inflight_messages` bounds the QoS 2 messages a v5 client may have
    // awaiting PUBREL here, as well as what the broker sends it unacknowledged.
    if settings.limits.max_inflight < usize::from(u16::MAX) {
        p.receive_maximum = Some(settings.limits.max_inflight as u16);
    }
    if settings.max_packet_size < PROTOCOL_MAX_PACKET {
        p.maximum_packet_size = Some(settings.max_packet_size as u32);
    }
    (p, keep_alive)
}
