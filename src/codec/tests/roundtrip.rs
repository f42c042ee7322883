//! Encode → decode round trips of every packet type in every version it exists in; for 5.0 with every
//! property allowed on that packet (checked against the property table itself).

use bytes::Bytes;
use smallvec::smallvec;

use super::*;
use crate::codec::properties::{allowed_in, id};

fn u(s: &str) -> Option<Utf8Bytes> {
    Some(s.into())
}

fn users() -> Vec<(Utf8Bytes, Utf8Bytes)> {
    vec![
        ("k".into(), "v".into()),
        ("k".into(), "v2".into()),
        ("".into(), "ü".into()),
    ]
}

/// Property identifiers set in `p`.
fn present_ids(p: &Properties) -> Vec<u8> {
    let flags = [
        (
            p.payload_format_indicator.is_some(),
            id::PAYLOAD_FORMAT_INDICATOR,
        ),
        (
            p.message_expiry_interval.is_some(),
            id::MESSAGE_EXPIRY_INTERVAL,
        ),
        (p.content_type.is_some(), id::CONTENT_TYPE),
        (p.response_topic.is_some(), id::RESPONSE_TOPIC),
        (p.correlation_data.is_some(), id::CORRELATION_DATA),
        (
            !p.subscription_identifiers.is_empty(),
            id::SUBSCRIPTION_IDENTIFIER,
        ),
        (
            p.session_expiry_interval.is_some(),
            id::SESSION_EXPIRY_INTERVAL,
        ),
        (
            p.assigned_client_identifier.is_some(),
            id::ASSIGNED_CLIENT_IDENTIFIER,
        ),
        (p.server_keep_alive.is_some(), id::SERVER_KEEP_ALIVE),
        (p.authentication_method.is_some(), id::AUTHENTICATION_METHOD),
        (p.authentication_data.is_some(), id::AUTHENTICATION_DATA),
        (
            p.request_problem_information.is_some(),
            id::REQUEST_PROBLEM_INFORMATION,
        ),
        (p.will_delay_interval.is_some(), id::WILL_DELAY_INTERVAL),
        (
            p.request_response_information.is_some(),
            id::REQUEST_RESPONSE_INFORMATION,
        ),
        (p.response_information.is_some(), id::RESPONSE_INFORMATION),
        (p.server_reference.is_some(), id::SERVER_REFERENCE),
        (p.reason_string.is_some(), id::REASON_STRING),
        (p.receive_maximum.is_some(), id::RECEIVE_MAXIMUM),
        (p.topic_alias_maximum.is_some(), id::TOPIC_ALIAS_MAXIMUM),
        (p.topic_alias.is_some(), id::TOPIC_ALIAS),
        (p.maximum_qos.is_some(), id::MAXIMUM_QOS),
        (p.retain_available.is_some(), id::RETAIN_AVAILABLE),
        (!p.user_properties.is_empty(), id::USER_PROPERTY),
        (p.maximum_packet_size.is_some(), id::MAXIMUM_PACKET_SIZE),
        (
            p.wildcard_subscription_available.is_some(),
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        ),
        (
            p.subscription_identifier_available.is_some(),
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        ),
        (
            p.shared_subscription_available.is_some(),
            id::SHARED_SUBSCRIPTION_AVAILABLE,
        ),
    ];
    flags.iter().filter(|x| x.0).map(|x| x.1).collect()
}

/// Asserts `p` carries exactly the properties Table 2-4 allows in `ctx`.
#[track_caller]
fn assert_all_allowed(p: &Properties, ctx: PropertyContext) {
    let allowed: Vec<u8> = (0..=0x7F)
        .filter(|&i| allowed_in(i).is_some_and(|m| m & ctx.bit() != 0))
        .collect();
    assert_eq!(present_ids(p), allowed, "{ctx:?}");
}

pub(super) fn connect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(3600),
        authentication_method: u("SCRAM-SHA-1"),
        authentication_data: Some(Bytes::from_static(b"\x00\x01")),
        request_problem_information: Some(0),
        request_response_information: Some(1),
        receive_maximum: Some(100),
        topic_alias_maximum: Some(10),
        user_properties: users(),
        maximum_packet_size: Some(1 << 20),
        ..Default::default()
    }
}

pub(super) fn will_props() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: u("text/plain"),
        response_topic: u("reply/here"),
        correlation_data: Some(Bytes::from_static(b"cd")),
        will_delay_interval: Some(5),
        user_properties: users(),
        ..Default::default()
    }
}

pub(super) fn connack_props() -> Properties {
    Properties {
        session_expiry_interval: Some(0xFFFF_FFFF),
        assigned_client_identifier: u("auto-1"),
        server_keep_alive: Some(30),
        authentication_method: u("m"),
        authentication_data: Some(Bytes::new()),
        response_information: u("resp"),
        server_reference: u("other:1883"),
        reason_string: u("why"),
        receive_maximum: Some(65_535),
        topic_alias_maximum: Some(0),
        maximum_qos: Some(1),
        retain_available: Some(0),
        user_properties: users(),
        maximum_packet_size: Some(268_435_460),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
        ..Default::default()
    }
}

pub(super) fn publish_props() -> Properties {
    Properties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(10),
        content_type: u("application/json"),
        response_topic: u("r/t"),
        correlation_data: Some(Bytes::from_static(b"\xFF\x00")),
        subscription_identifiers: smallvec![1, 127, 128, 16_384, MAX_VAR_INT],
        topic_alias: Some(3),
        user_properties: users(),
        ..Default::default()
    }
}

fn reason_props() -> Properties {
    Properties {
        reason_string: u("because"),
        user_properties: users(),
        ..Default::default()
    }
}

fn disconnect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(7),
        server_reference: u("elsewhere"),
        reason_string: u("bye"),
        user_properties: users(),
        ..Default::default()
    }
}

fn auth_props() -> Properties {
    Properties {
        authentication_method: u("SCRAM-SHA-1"),
        authentication_data: Some(Bytes::from_static(b"challenge")),
        reason_string: u("continue"),
        user_properties: users(),
        ..Default::default()
    }
}

#[test]
fn fixtures_carry_every_allowed_property() {
    use PropertyContext as C;
    assert_all_allowed(&connect_props(), C::Connect);
    assert_all_allowed(&will_props(), C::Will);
    assert_all_allowed(&connack_props(), C::ConnAck);
    assert_all_allowed(&publish_props(), C::Publish);
    for c in [
        C::PubAck,
        C::PubRec,
        C::PubRel,
        C::PubComp,
        C::SubAck,
        C::UnsubAck,
    ] {
        assert_all_allowed(&reason_props(), c);
    }
    assert_all_allowed(
        &Properties {
            subscription_identifiers: smallvec![9],
            user_properties: users(),
            ..Default::default()
        },
        C::Subscribe,
    );
    assert_all_allowed(
        &Properties {
            user_properties: users(),
            ..Default::default()
        },
        C::Unsubscribe,
    );
    assert_all_allowed(&disconnect_props(), C::Disconnect);
    assert_all_allowed(&auth_props(), C::Auth);
}

fn props_for(v: ProtocolVersion, p: Properties) -> Properties {
    if v == V5 {
        p
    } else {
        Properties::default()
    }
}

pub(super) fn full_connect(v: ProtocolVersion) -> Connect {
    Connect {
        protocol: v,
        clean_start: false,
        keep_alive: 65_535,
        client_id: "a-rather-long-client-identifier-longer-than-23".into(),
        will: Some(Box::new(LastWill {
            topic: "clients/x/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: props_for(v, will_props()),
        })),
        username: u("user"),
        password: Some(Bytes::from_static(b"\x00secret\xFF")),
        properties: props_for(v, connect_props()),
    }
}

#[test]
fn connect_roundtrips() {
    for v in ALL_VERSIONS {
        let full = full_connect(v);
        assert_roundtrip(&Packet::Connect(Box::new(full.clone())), v);
        // Minimal: empty client id, no will, no credentials.
        let min = Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 0,
            client_id: "".into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        assert_roundtrip(&Packet::Connect(Box::new(min)), v);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let mut c = full.clone();
            c.password = None;
            if let Some(w) = c.will.as_mut() {
                w.qos = qos;
                w.retain = false;
            }
            assert_roundtrip(&Packet::Connect(Box::new(c)), v);
        }
    }
}

#[test]
fn connack_roundtrips() {
    for v in ALL_VERSIONS {
        let codes: &[ReasonCode] = if v == V5 {
            &[
                ReasonCode::Success,
                ReasonCode::ServerMoved,
                ReasonCode::QuotaExceeded,
            ]
        } else {
            &[
                ReasonCode::Success,
                ReasonCode::UnsupportedProtocolVersion,
                ReasonCode::NotAuthorized,
            ]
        };
        for &code in codes {
            let sp = code == ReasonCode::Success && v != V31;
            assert_roundtrip(
                &Packet::ConnAck(ConnAck {
                    session_present: sp,
                    code,
                    properties: props_for(v, connack_props()),
                }),
                v,
            );
        }
    }
}

#[test]
fn publish_roundtrips() {
    for v in ALL_VERSIONS {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (dup, retain) in [(false, false), (true, true)] {
                let p = Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic: "sensors/ü/temp".into(),
                    packet_id: if qos == QoS::AtMostOnce { 0 } else { 65_535 },
                    properties: props_for(v, publish_props()),
                    payload: Bytes::from(vec![0x5A; 300]),
                };
                assert_roundtrip(&Packet::Publish(p), v);
            }
        }
        // Empty payload, one-character topic.
        assert_roundtrip(&Packet::Publish(publish("/", QoS::AtMostOnce, 0, b"")), v);
    }
}

#[test]
fn pubresp_roundtrips() {
    type Make = fn(PubResponse) -> Packet;
    let kinds: [(Make, ReasonCode); 4] = [
        (Packet::PubAck, ReasonCode::NoMatchingSubscribers),
        (Packet::PubRec, ReasonCode::QuotaExceeded),
        (Packet::PubRel, ReasonCode::PacketIdentifierNotFound),
        (Packet::PubComp, ReasonCode::PacketIdentifierNotFound),
    ];
    for (make, code) in kinds {
        for v in ALL_VERSIONS {
            assert_roundtrip(&make(PubResponse::new(1)), v);
            assert_roundtrip(&make(PubResponse::new(65_535)), v);
        }
        assert_roundtrip(
            &make(PubResponse {
                reason: code,
                ..PubResponse::new(2)
            }),
            V5,
        );
        assert_roundtrip(
            &make(PubResponse {
                reason: code,
                properties: reason_props(),
                packet_id: 3,
            }),
            V5,
        );
        assert_roundtrip(
            &make(PubResponse {
                reason: ReasonCode::Success,
                properties: reason_props(),
                packet_id: 3,
            }),
            V5,
        );
    }
}

#[test]
fn subscribe_roundtrips() {
    for v in ALL_VERSIONS {
        let mut filters = Vec::new();
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let options = if v == V5 {
                SubscriptionOptions {
                    qos,
                    no_local: i == 1,
                    retain_as_published: i != 1,
                    retain_handling: [
                        RetainHandling::SendAtSubscribe,
                        RetainHandling::SendAtSubscribeIfNew,
                        RetainHandling::DoNotSend,
                    ][i],
                    identifier: 0,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                }
            };
            filters.push(SubscribeFilter {
                filter: ["a/+/c", "#", "$SYS/x"][i].into(),
                options,
            });
        }
        let properties = props_for(
            v,
            Properties {
                subscription_identifiers: smallvec![268_435_455],
                user_properties: users(),
                ..Default::default()
            },
        );
        assert_roundtrip(
            &Packet::Subscribe(Subscribe {
                packet_id: 9,
                filters,
                properties,
            }),
            v,
        );
    }
}

#[test]
fn suback_unsubscribe_unsuback_roundtrips() {
    for v in ALL_VERSIONS {
        let codes = if v == V5 {
            vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS2,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ]
        } else {
            vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ]
        };
        assert_roundtrip(
            &Packet::SubAck(SubAck {
                packet_id: 4,
                codes,
                properties: props_for(v, reason_props()),
            }),
            v,
        );
        let props = props_for(
            v,
            Properties {
                user_properties: users(),
                ..Default::default()
            },
        );
        let unsub = Unsubscribe {
            packet_id: 5,
            filters: vec!["a".into(), "b/#".into()],
            properties: props,
        };
        assert_roundtrip(&Packet::Unsubscribe(unsub), v);
        let codes = if v == V5 {
            vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        } else {
            vec![]
        };
        assert_roundtrip(
            &Packet::UnsubAck(UnsubAck {
                packet_id: 6,
                codes,
                properties: props_for(v, reason_props()),
            }),
            v,
        );
    }
}

#[test]
fn ping_disconnect_auth_roundtrips() {
    for v in ALL_VERSIONS {
        assert_roundtrip(&Packet::PingReq, v);
        assert_roundtrip(&Packet::PingResp, v);
        assert_roundtrip(
            &Packet::Disconnect(Disconnect {
                reason: ReasonCode::Success,
                properties: Properties::default(),
            }),
            v,
        );
    }
    for reason in [
        ReasonCode::Success,
        ReasonCode::ServerShuttingDown,
        ReasonCode::DisconnectWithWillMessage,
    ] {
        assert_roundtrip(
            &Packet::Disconnect(Disconnect {
                reason,
                properties: disconnect_props(),
            }),
            V5,
        );
        assert_roundtrip(
            &Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            }),
            V5,
        );
    }
    for reason in [
        ReasonCode::Success,
        ReasonCode::ContinueAuthentication,
        ReasonCode::ReAuthenticate,
    ] {
        assert_roundtrip(
            &Packet::Auth(Auth {
                reason,
                properties: auth_props(),
            }),
            V5,
        );
        assert_roundtrip(
            &Packet::Auth(Auth {
                reason,
                properties: Properties::default(),
            }),
            V5,
        );
    }
}

/// The helpers themselves must catch a wrong expectation.
#[test]
#[should_panic]
fn helper_rejects_wrong_packet() {
    assert_decodes(&[0xC0, 0x00], V311, &[Packet::PingResp]);
}

#[test]
#[should_panic]
fn helper_rejects_wrong_error() {
    assert_decode_err(&[0x00, 0x00], V311, DecodeError::Truncated);
}
