//! The `listener` line and the options that go to the listener above it (`parser/listener.rs`):
//! bind addresses, the implicit default listener, `max_connections`, TLS, `protocol`,
//! `socket_domain`, `mount_point` and `per_listener_settings`.

use super::*;

#[test]
fn listener_turns_off_local_only_and_anonymous() {
    let c = ok("listener 1883\n");
    assert!(!c.local_only);
    assert!(
        !c.allow_anonymous,
        "Mosquitto 2.0: false once a listener is defined"
    );
    assert_eq!(c.listeners, vec![ListenerConfig::any_interface(1883)]);
    assert!(!c.notices.contains(&ConfigNotice::LocalOnlyMode));
    let c = ok("listener 1883\nallow_anonymous true\n");
    assert!(c.allow_anonymous);
}

#[test]
fn several_listeners_with_bind_addresses_and_max_connections() {
    let c = ok("listener 1883 0.0.0.0\nmax_connections 10\nlistener 8883 ::1\nlistener 1884 # tls later\nmax_connections -1\n");
    assert_eq!(
        c.listeners,
        vec![
            ListenerConfig {
                bind_address: Some("0.0.0.0".into()),
                max_connections: Some(10),
                ..ListenerConfig::any_interface(1883)
            },
            ListenerConfig {
                bind_address: Some("::1".into()),
                max_connections: None,
                ..ListenerConfig::any_interface(8883)
            },
            ListenerConfig::any_interface(1884),
        ]
    );
}

#[test]
fn listener_errors() {
    assert!(matches!(
        err("listener\n"),
        ConfigError::Arity {
            key: "listener",
            expected: Arity::OneOrTwo,
            found: 0,
            ..
        }
    ));
    assert!(matches!(
        err("listener 1 2 3\n"),
        ConfigError::Arity {
            key: "listener",
            found: 3,
            ..
        }
    ));
    assert!(matches!(
        err("listener 70000\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::OutOfRange { min: 1, max: 65535 },
            ..
        }
    ));
    assert!(matches!(
        err("listener abc\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::NotAnInteger,
            ..
        }
    ));
    assert!(matches!(
        err("listener 0\n"),
        ConfigError::InvalidValue {
            reason: ValueProblem::PortZero,
            ..
        }
    ));
    assert!(matches!(
        err("listener 0 /run/mqtt.sock\n"),
        ConfigError::Unsupported { .. }
    ));
    assert!(matches!(
        err("listener 1883\nlistener 1883\n"),
        ConfigError::DuplicateListener {
            port: 1883,
            bind_address: None
        }
    ));
}

#[test]
fn deprecated_port_and_bind_address_make_the_default_listener() {
    let c = ok("port 1884\n");
    assert!(!c.local_only);
    assert_eq!(c.listeners, vec![ListenerConfig::any_interface(1884)]);
    assert!(matches!(
        c.notices[0],
        ConfigNotice::Deprecated {
            key: "port",
            line: 1,
            ..
        }
    ));

    let c = ok("bind_address 10.0.0.1\n");
    assert_eq!(
        c.listeners,
        vec![ListenerConfig {
            bind_address: Some("10.0.0.1".into()),
            max_connections: None,
            ..ListenerConfig::any_interface(1883)
        }]
    );

    // The default listener comes after explicit ones, like Mosquitto, and takes the options given
    // before the first `listener`.
    let c = ok("max_connections 5\nport 1884\nlistener 1885\nmax_connections 7\n");
    assert_eq!(
        c.listeners,
        vec![
            ListenerConfig {
                bind_address: None,
                max_connections: Some(7),
                ..ListenerConfig::any_interface(1885)
            },
            ListenerConfig {
                bind_address: None,
                max_connections: Some(5),
                ..ListenerConfig::any_interface(1884)
            },
        ]
    );

    let c = ok("port 1884\nport 1885\n");
    assert_eq!(c.listeners[0].port, 1885);
    assert!(c
        .notices
        .iter()
        .any(|n| matches!(n, ConfigNotice::PortRepeated { line: 2, .. })));
    assert!(matches!(
        err("port 0\n"),
        ConfigError::InvalidValue { key: "port", .. }
    ));
    assert!(matches!(
        err("bind_address a\nbind_address b\n"),
        ConfigError::Duplicate {
            key: "bind_address",
            line: 2,
            ..
        }
    ));
}

#[test]
fn max_connections_before_listener_creates_default_listener_which_can_clash() {
    // Mosquitto opens the default listener (1883, all interfaces) here too; the explicit 1883
    // would then fail to bind. We say so up front.
    assert!(matches!(
        err("max_connections 10\nlistener 1883\n"),
        ConfigError::DuplicateListener { port: 1883, .. }
    ));
    // Alone, it stays in local only mode and limits the loopback listener.
    let c = ok("max_connections 10\n");
    assert!(c.local_only);
    assert_eq!(c.listeners[0].max_connections, Some(10));
    assert!(matches!(
        err("max_connections x\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("max_connections 99999999999\n"),
        ConfigError::InvalidValue { .. }
    ));
}

#[test]
fn per_listener_settings_gives_each_listener_its_own_security_options() {
    let c = ok(
        "per_listener_settings true\nlistener 1883\nallow_anonymous true\n\
                listener 1884\npassword_file /p\nacl_file /a\nauto_id_prefix x-\n\
                allow_zero_length_clientid false\n",
    );
    assert!(c.per_listener_settings);
    let first = c.listeners[0].security.as_ref().expect("its own");
    assert_eq!(first.allow_anonymous, Some(true));
    assert_eq!(first.password_file, None);
    let second = c.listeners[1].security.as_ref().expect("its own");
    assert_eq!(
        second.allow_anonymous, None,
        "Mosquitto's default (false) applies"
    );
    assert_eq!(second.password_file.as_deref(), Some(Path::new("/p")));
    assert_eq!(second.acl_file.as_deref(), Some(Path::new("/a")));
    assert_eq!(second.auto_id_prefix.as_deref(), Some("x-"));
    assert_eq!(second.allow_zero_length_clientid, Some(false));
    // The global options are untouched, and without per_listener_settings nobody has their own.
    assert_eq!(
        (c.password_file.as_deref(), c.allow_anonymous),
        (None, false)
    );
    let c = ok("listener 1883\npassword_file /p\n");
    assert!(c.listeners[0].security.is_none());
    assert_eq!(c.password_file.as_deref(), Some(Path::new("/p")));
    // After a security option it is refused, as Mosquitto refuses it.
    assert!(matches!(
        err("allow_anonymous true\nper_listener_settings true\n"),
        ConfigError::PerListenerSettingsTooLate { line: 2, .. }
    ));
    // Local only mode still lets anonymous local clients in.
    let c = ok("per_listener_settings true\n");
    assert_eq!(
        c.listeners[0]
            .security
            .as_ref()
            .and_then(|s| s.allow_anonymous),
        Some(true)
    );
}

#[test]
fn mount_point_applies_to_its_listener_and_has_no_wildcards() {
    let c = ok("listener 1883\nlistener 1884\nmount_point site/a/\n");
    assert_eq!(c.listeners[0].mount_point, None);
    assert_eq!(c.listeners[1].mount_point.as_deref(), Some("site/a/"));
    for bad in ["site/+/", "site/#"] {
        assert!(matches!(
            err(&format!("listener 1883\nmount_point {bad}\n")),
            ConfigError::InvalidValue {
                key: "mount_point",
                reason: ValueProblem::InvalidMountPoint,
                ..
            }
        ));
    }
}

#[test]
fn socket_domain_applies_to_its_listener() {
    let c = ok("listener 1883\nsocket_domain ipv6\nlistener 1884 ::1\n");
    assert_eq!(c.listeners[0].socket_domain, Some(SocketDomain::Ipv6));
    assert_eq!(c.listeners[1].socket_domain, None);
    assert_eq!(c.listeners[1].bind_address.as_deref(), Some("::1"));
    assert!(matches!(
        err("listener 1883\nsocket_domain ipx\n"),
        ConfigError::InvalidValue {
            key: "socket_domain",
            reason: ValueProblem::UnknownSocketDomain,
            ..
        }
    ));
}

#[test]
fn protocol_websockets_applies_to_its_listener() {
    let c = ok("listener 1883\nlistener 9001\nprotocol websockets\nlistener 9002\nprotocol mqtt\n");
    let ws: Vec<bool> = c.listeners.iter().map(|l| l.websockets).collect();
    assert_eq!(ws, [false, true, false]);
    assert!(matches!(
        err("listener 9001\nprotocol http\n"),
        ConfigError::InvalidValue {
            key: "protocol",
            reason: ValueProblem::UnknownProtocol,
            ..
        }
    ));
}

#[test]
fn tls_options_apply_to_their_listener_and_must_fit_together() {
    let c = ok(
        "listener 1883\nlistener 8883\ncertfile /c.pem\nkeyfile /k.pem\ncafile /ca.pem\n\
                require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.3\n",
    );
    assert!(!c.listeners[0].tls.enabled());
    let tls = &c.listeners[1].tls;
    assert!(tls.enabled() && tls.require_certificate && tls.use_identity_as_username);
    assert_eq!(tls.certfile.as_deref(), Some(Path::new("/c.pem")));
    assert_eq!(tls.tls_version, Some(TlsVersion::Tls13));
    // Before any `listener`: the default listener, which then exists.
    let c = ok("port 8883\ncertfile /c.pem\nkeyfile /k.pem\n");
    assert_eq!(c.listeners.len(), 1);
    assert!(c.listeners[0].tls.enabled());
    for (text, problem) in [
        (
            "listener 8883\ncertfile /c.pem\n",
            TlsOptionsProblem::HalfACertificate {
                present: "certfile",
                missing: "keyfile",
            },
        ),
        (
            "listener 8883\nkeyfile /k.pem\n",
            TlsOptionsProblem::HalfACertificate {
                present: "keyfile",
                missing: "certfile",
            },
        ),
        (
            "listener 1883\ncafile /ca.pem\n",
            TlsOptionsProblem::WithoutCertificate("cafile"),
        ),
        (
            "listener 8883\ncertfile c\nkeyfile k\nrequire_certificate true\n",
            TlsOptionsProblem::WithoutCa("require_certificate"),
        ),
        (
            "listener 8883\ncertfile c\nkeyfile k\ncafile a\nuse_identity_as_username true\n\
             use_subject_as_username true\n",
            TlsOptionsProblem::TwoIdentities,
        ),
    ] {
        match parse(text) {
            Err(ConfigError::ListenerTls { port, problem: p }) => {
                assert_eq!(
                    (port, p),
                    (if port == 1883 { 1883 } else { 8883 }, problem),
                    "{text}"
                )
            }
            other => panic!("{text}: expected a TLS problem, got {other:?}"),
        }
    }
    assert!(matches!(
        parse("listener 8883\ntls_version tlsv1.1\n"),
        Err(ConfigError::InvalidValue {
            key: "tls_version",
            reason: ValueProblem::UnknownTlsVersion,
            ..
        })
    ));
}

#[test]
fn max_topic_alias_goes_to_the_listener_above_it() {
    let c = ok(
        "listener 1883\nmax_topic_alias 0\nlistener 1884\nlistener 1885\nmax_topic_alias 65535\n",
    );
    let got: Vec<u16> = c.listeners.iter().map(|l| l.max_topic_alias).collect();
    assert_eq!(got, [0, 10, 65535], "Mosquitto's default is 10");
    // Local only mode: the implicit listener's.
    let c = ok("max_topic_alias 3\n");
    assert_eq!(c.listeners[0].max_topic_alias, 3);
    assert!(matches!(
        err("listener 1883\nmax_topic_alias 65536\n"),
        ConfigError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("listener 1883\nmax_topic_alias -1\n"),
        ConfigError::InvalidValue { .. }
    ));
}
