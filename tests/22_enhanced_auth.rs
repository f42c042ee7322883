//! MQTT 5.0 enhanced authentication (§4.12, the AUTH packet) with the method shardmq builds in,
//! SCRAM-SHA-256 (RFC 5802, RFC 7677), against a `scram_file`.
//!
//! The client side of SCRAM is written here from the RFCs with RustCrypto primitives (`sha2`, `hmac`,
//! `pbkdf2`), and so are the `scram_file` entries: nothing of the broker's own SCRAM code is used, so
//! a test cannot agree with its bugs. Packets go through the hand-written raw client.
//!
//! What is checked:
//! - CONNECT (method + client-first) → AUTH 0x18 (server-first) → AUTH 0x18 (client-final) →
//!   CONNACK 0x00 naming the method and carrying server-final, whose signature the client verifies.
//! - A wrong password and an unknown user get CONNACK 0x87 (Not authorized; what Mosquitto answers a
//!   failed plugin login, and shardmq a wrong password) and the close; others are not disturbed.
//! - An Authentication Method nobody offers gets CONNACK 0x8C, with or without a `scram_file`.
//! - Re-authentication (AUTH 0x19) on a live connection ends with AUTH 0x00; a failed one, or one
//!   that proves another user, with DISCONNECT 0x87 and the close.
//! - `acl_file` rules apply to the SCRAM username as to a password login.
//! - A packet other than AUTH in the middle of the exchange is a protocol error that closes only
//!   that connection; AUTH from a client that did not use enhanced authentication too.
//! - A SIGHUP re-reads the file (a removed user is disconnected), and the entries the built
//!   `shardmq passwd -S` writes log in.
//!
//! Against Mosquitto (SHARDMQ_TEST_BROKER=mosquitto) only the cases that need no `scram_file` run:
//! Mosquitto 2.0 has no SCRAM without a plugin.

mod common;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use common::broker::external_mosquitto;
use common::raw::{
    self, kind, prop, ConnAck, Connect, Packet, PropValue, Props, RawClient, Witness,
};
use common::{for_each_case, unique_id, Case, Proto};

const METHOD: &str = "SCRAM-SHA-256";
/// The users of every test's `scram_file`.
const USERS: [(&str, &str); 2] = [("alice", "correct horse"), ("bob", "hunter2")];

// ---------------------------------------------------------------------------------------------
// SCRAM-SHA-256, client side and entries, from RFC 5802 §3 and RFC 7677.

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// A `scram_file` line: `user:SCRAM-SHA-256:salt:iterations:StoredKey:ServerKey`.
fn entry(user: &str, password: &str) -> String {
    let salt = Sha256::digest(format!("salt for {user}"));
    let salt = &salt[..16];
    let iterations = 4096;
    let salted = salted_password(password, salt, iterations);
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "{user}:{METHOD}:{}:{iterations}:{}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

/// One client's side of an exchange.
struct ScramClient {
    password: String,
    client_first_bare: String,
    nonce: String,
    /// server-final's expected `v=`, once client-final was made.
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    fn new(user: &str, password: &str) -> ScramClient {
        let nonce = B64.encode(&Sha256::digest(unique_id("nonce"))[..18]);
        ScramClient {
            password: password.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            server_signature: None,
        }
    }

    fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// client-final for server-first (checked as RFC 5802 §5.1 asks of a client).
    fn client_final(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).expect("server-first is UTF-8");
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name))
                .unwrap_or_else(|| panic!("server-first {server_first:?} lacks {name}"))
        };
        let nonce = attr("r=");
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "the server's nonce extends ours: {server_first:?}"
        );
        let salt = B64.decode(attr("s=")).expect("salt is base64");
        let iterations: u32 = attr("i=").parse().expect("iteration count");
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = Some(hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes()));
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    }

    /// Checks server-final against the signature the client expects.
    fn verify(&self, server_final: &[u8]) {
        let want = format!(
            "v={}",
            B64.encode(self.server_signature.expect("client-final made"))
        );
        assert_eq!(
            String::from_utf8_lossy(server_final),
            want,
            "server-final proves the server knows the password's keys"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT side.

fn props_of(props: &[(u8, PropValue)], id: u8) -> Option<&PropValue> {
    props.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
}

fn auth_props(data: &[u8]) -> Props {
    Props::default()
        .str(prop::AUTHENTICATION_METHOD, METHOD)
        .bin(prop::AUTHENTICATION_DATA, data)
}

/// Reads an AUTH 0x18 (Continue authentication) for our method and returns its data.
fn expect_continue(c: &mut RawClient) -> Vec<u8> {
    let (reason, props) = c.expect(kind::AUTH).auth();
    assert_eq!(reason, 0x18, "AUTH Continue authentication");
    assert_eq!(
        props_of(&props, prop::AUTHENTICATION_METHOD),
        Some(&PropValue::Str(METHOD.into())),
        "AUTH names the method [MQTT-4.12.0-1]"
    );
    match props_of(&props, prop::AUTHENTICATION_DATA) {
        Some(PropValue::Bin(d)) => d.clone(),
        other => panic!("AUTH 0x18 without Authentication Data: {other:?}"),
    }
}

/// CONNECT with SCRAM as `user`, through to the CONNACK (whatever its code). On success the server's
/// signature has been verified.
fn scram_connect(case: &Case, id: &str, user: &str, password: &str) -> (RawClient, ConnAck) {
    let mut scram = ScramClient::new(user, password);
    let mut c = RawClient::open(case.addr, Proto::V5);
    let connect = Connect::new(Proto::V5, id)
        .prop_str(prop::AUTHENTICATION_METHOD, METHOD)
        .prop_bin(prop::AUTHENTICATION_DATA, &scram.client_first());
    c.send(&connect.encode());
    let server_first = expect_continue(&mut c);
    c.send(&raw::auth(
        0x18,
        &auth_props(&scram.client_final(&server_first)),
    ));
    let ack = c.expect(kind::CONNACK).connack(Proto::V5);
    if ack.code == 0 {
        assert_eq!(
            ack.prop(prop::AUTHENTICATION_METHOD),
            Some(&PropValue::Str(METHOD.into())),
            "the CONNACK names the method"
        );
        match ack.prop(prop::AUTHENTICATION_DATA) {
            Some(PropValue::Bin(d)) => scram.verify(d),
            other => panic!("CONNACK without server-final: {other:?}"),
        }
    }
    (c, ack)
}

/// Re-authenticates as `user`; returns the packet that ends it (AUTH 0x00 verified, or DISCONNECT).
fn scram_reauth(c: &mut RawClient, user: &str, password: &str) -> Packet {
    let mut scram = ScramClient::new(user, password);
    c.send(&raw::auth(0x19, &auth_props(&scram.client_first())));
    let server_first = expect_continue(c);
    c.send(&raw::auth(
        0x18,
        &auth_props(&scram.client_final(&server_first)),
    ));
    let end = c.read_packet();
    if end.kind() == kind::AUTH {
        let (reason, props) = end.auth();
        assert_eq!(reason, 0x00, "AUTH Success ends a re-authentication");
        match props_of(&props, prop::AUTHENTICATION_DATA) {
            Some(PropValue::Bin(d)) => scram.verify(d),
            other => panic!("AUTH 0x00 without server-final: {other:?}"),
        }
    }
    end
}

/// A scratch `scram_file` (and `acl_file`), removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(name: &str, acl: Option<&str>) -> (Files, String) {
        let dir = std::env::temp_dir().join(format!("shardmq-scram-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lines: Vec<String> = USERS.iter().map(|(u, p)| entry(u, p)).collect();
        let scram = dir.join("scram");
        std::fs::write(&scram, format!("# test users\n{}\n", lines.join("\n"))).unwrap();
        let mut config = format!("scram_file {}\n", scram.display());
        if let Some(acl) = acl {
            let path = dir.join("acl");
            std::fs::write(&path, acl).unwrap();
            config.push_str(&format!("acl_file {}\n", path.display()));
        }
        (Files(dir), config)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mosquitto has no SCRAM (nor `scram_file`): the cases that need it are shardmq's only.
fn skip_on_mosquitto(what: &str) -> bool {
    if external_mosquitto() {
        eprintln!("skipped against Mosquitto: {what} needs scram_file, which Mosquitto 2.0 lacks");
    }
    external_mosquitto()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn scram_login_succeeds_and_the_server_proves_itself() {
    if skip_on_mosquitto("a SCRAM login") {
        return;
    }
    let (_files, config) = Files::new("ok", None);
    for_each_case(&[Proto::V5], &config, |case| {
        let (user, password) = USERS[0];
        let (mut c, ack) = scram_connect(&case, &unique_id("scram"), user, password);
        assert_eq!(ack.code, 0, "{ack:?}");
        // The connection is an ordinary one from now on.
        let topic = unique_id("scram/t");
        assert_eq!(c.subscribe(&[(&topic, 1)]), vec![1]);
        let mut p = RawClient::connect_clean(case.addr, Proto::V5, &unique_id("pub"));
        p.publish(&topic, 1, false, b"hello");
        assert_eq!(c.recv_publish().payload, b"hello");
    });
}

#[test]
fn a_wrong_password_or_unknown_user_is_not_authorised() {
    if skip_on_mosquitto("a SCRAM login") {
        return;
    }
    let (_files, config) = Files::new("wrong", None);
    for_each_case(&[Proto::V5], &config, |case| {
        let mut w = Witness::new(case.addr, case.proto);
        for (user, password) in [("alice", "wrong horse"), ("mallory", "correct horse")] {
            let (mut c, ack) = scram_connect(&case, &unique_id("bad"), user, password);
            assert_eq!(ack.code, 0x87, "{user}: CONNACK Not authorized: {ack:?}");
            assert!(
                ack.prop(prop::AUTHENTICATION_DATA).is_none(),
                "no server-final for a failed login"
            );
            assert!(c.expect_closed().is_empty(), "closed after the CONNACK");
            w.check();
        }
    });
}

#[test]
fn an_unknown_method_is_refused_with_0x8c() {
    if skip_on_mosquitto("a configured method") {
        return;
    }
    let (_files, config) = Files::new("method", None);
    for_each_case(&[Proto::V5], &config, |case| {
        let mut c = RawClient::open(case.addr, Proto::V5);
        let connect = Connect::new(Proto::V5, &unique_id("m"))
            .prop_str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1")
            .prop_bin(prop::AUTHENTICATION_DATA, b"n,,n=alice,r=abc");
        c.send(&connect.encode());
        assert_eq!(c.expect(kind::CONNACK).connack(Proto::V5).code, 0x8C);
        assert!(c.expect_closed().is_empty());
    });
}

/// Runs against Mosquitto too: without plugins it refuses every method with 0x8C.
#[test]
fn any_method_is_refused_with_0x8c_when_none_is_configured() {
    for_each_case(&[Proto::V5], "", |case| {
        let mut w = Witness::new(case.addr, case.proto);
        let mut c = RawClient::open(case.addr, Proto::V5);
        let scram = ScramClient::new("alice", "x");
        let connect = Connect::new(Proto::V5, &unique_id("m"))
            .prop_str(prop::AUTHENTICATION_METHOD, METHOD)
            .prop_bin(prop::AUTHENTICATION_DATA, &scram.client_first());
        c.send(&connect.encode());
        assert_eq!(c.expect(kind::CONNACK).connack(Proto::V5).code, 0x8C);
        c.expect_closed();
        w.check();
    });
}

#[test]
fn reauthentication_succeeds_and_a_failed_one_disconnects_with_0x87() {
    if skip_on_mosquitto("re-authentication") {
        return;
    }
    let (_files, config) = Files::new("reauth", None);
    for_each_case(&[Proto::V5], &config, |case| {
        let (alice, alice_pw) = USERS[0];
        let (bob, bob_pw) = USERS[1];
        let mut w = Witness::new(case.addr, case.proto);
        // Twice in a row, then with the connection still serving.
        let (mut c, ack) = scram_connect(&case, &unique_id("re"), alice, alice_pw);
        assert_eq!(ack.code, 0);
        for _ in 0..2 {
            let end = scram_reauth(&mut c, alice, alice_pw);
            assert_eq!(end.kind(), kind::AUTH, "{end:?}");
        }
        c.ping();
        // A wrong password: DISCONNECT 0x87, then the close.
        let end = scram_reauth(&mut c, alice, "wrong");
        assert_eq!(end.disconnect_reason(), 0x87, "{end:?}");
        assert!(c.expect_closed().is_empty());
        // Another user's valid credentials do not make a connection that user's.
        let (mut c, _) = scram_connect(&case, &unique_id("re"), alice, alice_pw);
        let end = scram_reauth(&mut c, bob, bob_pw);
        assert_eq!(end.disconnect_reason(), 0x87, "{end:?}");
        assert!(c.expect_closed().is_empty());
        w.check();
    });
}

#[test]
fn acl_rules_apply_to_the_scram_username() {
    if skip_on_mosquitto("a SCRAM login") {
        return;
    }
    // Anonymous clients may write anything; alice may read and write only alice/#.
    let acl = "topic write #\nuser alice\ntopic readwrite alice/#\n";
    let (_files, config) = Files::new("acl", Some(acl));
    for_each_case(&[Proto::V5], &config, |case| {
        let (user, password) = USERS[0];
        let (mut alice, ack) = scram_connect(&case, &unique_id("acl"), user, password);
        assert_eq!(ack.code, 0);
        // Mosquitto 2.0 grants SUBSCRIBE and checks read access per message.
        assert_eq!(
            alice.subscribe(&[("other/#", 1), ("alice/#", 1)]),
            vec![1, 1]
        );
        let mut p = RawClient::connect_clean(case.addr, Proto::V5, &unique_id("apub"));
        // From one publisher, in order: the unreadable one would arrive first.
        p.publish("other/x", 1, false, b"not for alice");
        p.publish("alice/x", 1, false, b"for alice");
        let m = alice.recv_publish();
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("alice/x", &b"for alice"[..])
        );
        alice.send(&raw::ack(kind::PUBACK, m.pkid));
        // Writing outside alice/#: acknowledged with 0x87 and dropped.
        let pkid = alice.pkid();
        alice.send(&raw::publish(
            Proto::V5,
            "other/y",
            1,
            false,
            false,
            pkid,
            b"no",
        ));
        let ack = alice.expect(kind::PUBACK);
        assert_eq!(ack.ack_pkid(), pkid);
        assert_eq!(
            ack.body.get(2),
            Some(&0x87),
            "PUBACK Not authorized: {ack:?}"
        );
    });
}

#[test]
fn a_protocol_error_mid_exchange_closes_only_that_connection() {
    if skip_on_mosquitto("an exchange") {
        return;
    }
    let (_files, config) = Files::new("proto", None);
    for_each_case(&[Proto::V5], &config, |case| {
        let mut w = Witness::new(case.addr, case.proto);
        let publish = raw::publish(Proto::V5, "t", 0, false, false, 0, b"x");
        let restart = raw::auth(0x19, &auth_props(b"n,,n=alice,r=abc"));
        let other_method = raw::auth(
            0x18,
            &Props::default().str(prop::AUTHENTICATION_METHOD, "PLAIN"),
        );
        for bad in [publish, restart, other_method] {
            let scram = ScramClient::new("alice", "correct horse");
            let mut c = RawClient::open(case.addr, Proto::V5);
            let connect = Connect::new(Proto::V5, &unique_id("pe"))
                .prop_str(prop::AUTHENTICATION_METHOD, METHOD)
                .prop_bin(prop::AUTHENTICATION_DATA, &scram.client_first());
            c.send(&connect.encode());
            expect_continue(&mut c);
            c.send_lenient(&bad);
            let before = c.expect_closed();
            assert!(
                before.len() == 1
                    && before[0].kind() == kind::CONNACK
                    && before[0].connack(Proto::V5).code == 0x82,
                "CONNACK 0x82 (Protocol error), then the close: {before:?}"
            );
            w.check();
        }
    });
}

/// Runs against Mosquitto too: AUTH without an Authentication Method at CONNECT is a protocol error
/// [MQTT-4.12.0-6] wherever enhanced authentication exists.
#[test]
fn auth_without_enhanced_authentication_at_connect_is_a_protocol_error() {
    for_each_case(&[Proto::V5], "", |case| {
        let mut w = Witness::new(case.addr, case.proto);
        let mut c = RawClient::connect_clean(case.addr, Proto::V5, &unique_id("noauth"));
        c.send_lenient(&raw::auth(0x19, &auth_props(b"n,,n=alice,r=abc")));
        c.expect_closed_for_violation();
        w.check();
    });
}

/// A SIGHUP re-reads the `scram_file`: a connected client whose user was removed is disconnected;
/// another stays, and the removed user can no longer log in.
#[test]
fn a_user_removed_from_the_scram_file_is_disconnected_on_reload() {
    if skip_on_mosquitto("a SCRAM login") {
        return;
    }
    for &shards in common::shard_counts() {
        common::with_timeout("scram reload", common::CASE_TIMEOUT, move || {
            let (files, config) = Files::new(&format!("hup{shards}"), None);
            let broker = common::broker::TestBroker::start(shards, &config);
            let case = Case {
                addr: broker.addr(),
                shards,
                proto: Proto::V5,
            };
            let (alice, alice_pw) = USERS[0];
            let (bob, bob_pw) = USERS[1];
            let (mut a, ack) = scram_connect(&case, &unique_id("hupa"), alice, alice_pw);
            assert_eq!(ack.code, 0);
            let (mut b, ack) = scram_connect(&case, &unique_id("hupb"), bob, bob_pw);
            assert_eq!(ack.code, 0);
            std::fs::write(files.0.join("scram"), entry(bob, bob_pw) + "\n").unwrap();
            broker.reload();
            a.expect_closed();
            b.ping();
            let (_, ack) = scram_connect(&case, &unique_id("hupa"), alice, alice_pw);
            assert_eq!(ack.code, 0x87, "alice is gone from the file");
        });
    }
}

/// Runs the built `shardmq passwd` with `args` (and `stdin`), asserting success.
fn shardmq_passwd(args: &[&std::ffi::OsStr], stdin: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardmq passwd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "shardmq passwd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `shardmq passwd -S` writes (batch and prompted) is what the broker checks logins against.
#[test]
fn entries_made_by_passwd_dash_s_log_in() {
    if skip_on_mosquitto("a SCRAM login") {
        return;
    }
    let (files, _) = Files::new("cli", None);
    let path = files.0.join("made");
    let p = path.as_os_str();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    shardmq_passwd(
        &[os("-S"), os("-c"), os("-b"), p, os("carol"), os("pw one")],
        "",
    );
    shardmq_passwd(
        &[os("--scram"), os("-I"), os("5000"), p, os("dave")],
        "pw two\npw two\n",
    );
    let config = format!("scram_file {}\n", path.display());
    for_each_case(&[Proto::V5], &config, |case| {
        for (user, password, code) in [
            ("carol", "pw one", 0),
            ("dave", "pw two", 0),
            ("dave", "pw one", 0x87),
        ] {
            let (_, ack) = scram_connect(&case, &unique_id("cli"), user, password);
            assert_eq!(ack.code, code, "{user} with {password:?}");
        }
    });
}

/// On a live connection: AUTH naming another method [MQTT-4.12.1-1], AUTH 0x18 with no
/// re-authentication under way, and AUTH 0x00 from the client are protocol errors (DISCONNECT 0x82).
#[test]
fn reauthentication_out_of_sequence_is_a_protocol_error() {
    if skip_on_mosquitto("a SCRAM login") {
        return;
    }
    let (_files, config) = Files::new("reseq", None);
    for_each_case(&[Proto::V5], &config, |case| {
        let (user, password) = USERS[0];
        let mut w = Witness::new(case.addr, case.proto);
        let scram = ScramClient::new(user, password);
        let bad = [
            raw::auth(
                0x19,
                &Props::default()
                    .str(prop::AUTHENTICATION_METHOD, "PLAIN")
                    .bin(prop::AUTHENTICATION_DATA, &scram.client_first()),
            ),
            raw::auth(0x18, &auth_props(b"c=biws,r=x,p=AAAA")),
            raw::auth(0x00, &auth_props(b"")),
        ];
        for packet in bad {
            let (mut c, ack) = scram_connect(&case, &unique_id("seq"), user, password);
            assert_eq!(ack.code, 0);
            c.send_lenient(&packet);
            let before = c.expect_closed();
            assert!(
                before.len() == 1 && before[0].disconnect_reason() == 0x82,
                "DISCONNECT 0x82 (Protocol error), then the close: {before:?}"
            );
            w.check();
        }
    });
}
