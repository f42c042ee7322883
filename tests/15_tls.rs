//! TLS listeners (`certfile`, `keyfile`, `cafile`, `require_certificate`, `use_identity_as_username`,
//! `use_subject_as_username`) with real clients nobody here wrote: Debian's `mosquitto_pub` /
//! `mosquitto_sub` (`--cafile`, `--cert`, `--key`), rumqttc over rustls, and paho-mqtt (Python).
//! Certificates are made by the tests with rcgen: a CA, a server certificate for 127.0.0.1/localhost,
//! a client certificate, one from another CA and an expired one.
//!
//! Refusals: a client certificate from an unknown CA, an expired one, none where one is required, and
//! a plain TCP client on the TLS port each fail (the handshake, or the CONNECT) while a subscriber
//! already connected over TLS keeps receiving. With 1 and 4 shards, so that TLS sessions are handed to
//! their client's home shard. A reload serves a renewed certificate to new connections.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::broker::TestBroker;
use common::{skip_missing_tool, unique_id, with_timeout};
use rcgen::{CertificateParams, DnType, IsCa, KeyPair};

/// The serial number of the client certificate `crl.pem` revokes.
const REVOKED_SERIAL: u64 = 4242;

/// The files of one test's PKI.
struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// ca.crt; server.crt/.key; client.crt/.key (CN tls-client, O Example); stranger.crt/.key (from
    /// another CA); expired.crt/.key (from the CA, expired in 2020); revoked.crt/.key and crl.pem,
    /// the CA's revocation list naming it.
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(unique_id("pki"));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        let make_ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca, ca_key) = make_ca("shardmq test CA");
        let (other_ca, other_key) = make_ca("someone else's CA");
        write("ca.crt", ca.pem());
        let server_key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        write(
            "server.crt",
            p.signed_by(&server_key, &ca, &ca_key).unwrap().pem(),
        );
        write("server.key", server_key.serialize_pem());
        let client = |name: &str,
                      cn: &str,
                      issuer: &rcgen::Certificate,
                      issuer_key: &KeyPair,
                      expired: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            if name == "revoked" {
                p.serial_number = Some(rcgen::SerialNumber::from(REVOKED_SERIAL));
            }
            p.distinguished_name
                .push(DnType::OrganizationName, "Example");
            p.distinguished_name.push(DnType::CommonName, cn);
            if expired {
                p.not_before = rcgen::date_time_ymd(2019, 1, 1);
                p.not_after = rcgen::date_time_ymd(2020, 1, 1);
            }
            write(
                &format!("{name}.crt"),
                p.signed_by(&key, issuer, issuer_key).unwrap().pem(),
            );
            write(&format!("{name}.key"), key.serialize_pem());
        };
        client("client", "tls-client", &ca, &ca_key, false);
        client("stranger", "tls-client", &other_ca, &other_key, false);
        client("expired", "tls-client", &ca, &ca_key, true);
        client("revoked", "tls-client", &ca, &ca_key, false);
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2036, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(REVOKED_SERIAL),
                revocation_time: rcgen::date_time_ymd(2026, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        write(
            "crl.pem",
            crl.signed_by(&ca, &ca_key).unwrap().pem().unwrap(),
        );
        Pki { dir }
    }

    /// The listener lines: the server certificate, and the CA with `extra` lines.
    fn listener(&self, extra: &str) -> String {
        format!(
            "certfile {}\nkeyfile {}\ncafile {}\n{extra}",
            self.path("server.crt"),
            self.path("server.key"),
            self.path("ca.crt")
        )
    }
}

fn tools_present() -> bool {
    for tool in ["mosquitto_pub", "mosquitto_sub", "stdbuf"] {
        if let Err(e) = Command::new(tool).arg("--help").output() {
            if e.kind() == std::io::ErrorKind::NotFound {
                return !skip_missing_tool(tool, "apt-get install mosquitto-clients");
            }
        }
    }
    true
}

/// `--cafile` and, with `cert`, `--cert`/`--key` from the PKI. `--insecure` skips only the host name
/// check (OpenSSL matches "127.0.0.1" against DNS names); the chain is still verified.
fn tls_args(pki: &Pki, port: u16, cert: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "--cafile".into(),
        pki.path("ca.crt"),
        "--insecure".into(),
    ];
    if let Some(name) = cert {
        args.extend([
            "--cert".into(),
            pki.path(&format!("{name}.crt")),
            "--key".into(),
            pki.path(&format!("{name}.key")),
        ]);
    }
    args
}

/// mosquitto_pub to completion: whether it succeeded, and its stderr.
fn mosquitto_pub(
    pki: &Pki,
    port: u16,
    cert: Option<&str>,
    topic: &str,
    msg: &str,
) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(tls_args(pki, port, cert))
        .args(["-i", &unique_id("tpub"), "-q", "1", "-t", topic, "-m", msg])
        .output()
        .expect("run mosquitto_pub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A mosquitto_sub over TLS that waits for `count` messages (at most 20 s).
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    fn start(pki: &Pki, port: u16, cert: Option<&str>, topic: &str, count: usize) -> Sub {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(tls_args(pki, port, cert))
            .args(["-i", &unique_id("tsub"), "-d", "-q", "1", "-t", topic])
            .args(["-C", &count.to_string(), "-W", "20", "-F", "MSG|%t|%p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mosquitto_sub");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let sub = Sub { child, lines };
        sub.wait(|l| l.contains("received SUBACK"), "SUBACK");
        sub
    }

    fn wait(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("mosquitto_sub over TLS: no {what} ({e:?})"),
            }
        }
    }

    fn message(&self) -> String {
        self.wait(|l| l.starts_with("MSG|"), "message")
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_clients_publish_and_subscribe_over_tls_on_every_shard_count() {
    if !tools_present() {
        return;
    }
    with_timeout(
        "mosquitto clients over TLS",
        Duration::from_secs(120),
        || {
            let pki = Pki::new();
            for &shards in common::shard_counts() {
                let broker = TestBroker::start(shards, &pki.listener(""));
                let port = broker.port();
                // Server authentication only, then with a client certificate (optional here).
                let sub = Sub::start(&pki, port, None, "tls/#", 3);
                for (i, cert) in [None, Some("client"), None].into_iter().enumerate() {
                    let (ok, err) = mosquitto_pub(&pki, port, cert, "tls/a", &format!("m{i}"));
                    assert!(
                        ok,
                        "{shards} shard(s), cert {cert:?}: mosquitto_pub failed: {err}"
                    );
                    assert_eq!(sub.message(), format!("MSG|tls/a|m{i}"));
                }
            }
        },
    );
}

/// A TLS subscriber idle for a second gives up its task (`src/shard/parking.rs`): it still gets
/// what is published to it, and parks again after.
#[test]
fn a_parked_tls_subscriber_gets_its_messages() {
    if !tools_present() || common::broker::external_mosquitto() {
        return;
    }
    with_timeout("parked TLS subscriber", Duration::from_secs(120), || {
        let pki = Pki::new();
        for &shards in common::shard_counts() {
            // A plain listener beside, for `$SYS`.
            let config = format!(
                "{}sys_interval 1\nlistener 1884 127.0.0.1\n",
                pki.listener("")
            );
            let broker = TestBroker::start(shards, &config);
            let (port, plain) = (broker.port(), broker.addrs()[1]);
            let sub = Sub::start(&pki, port, None, "tls/idle", 2);
            for i in 0..2 {
                common::wait_parked(plain, 1);
                let (ok, err) = mosquitto_pub(&pki, port, None, "tls/idle", &format!("m{i}"));
                assert!(ok, "{shards} shard(s): mosquitto_pub failed: {err}");
                assert_eq!(sub.message(), format!("MSG|tls/idle|m{i}"));
            }
        }
    });
}

#[test]
fn bad_certificates_and_plain_clients_are_refused_and_disturb_nobody() {
    if !tools_present() {
        return;
    }
    with_timeout("TLS refusals", Duration::from_secs(120), || {
        let pki = Pki::new();
        for &shards in common::shard_counts() {
            let crl = format!(
                "require_certificate true\ncrlfile {}\n",
                pki.path("crl.pem")
            );
            let broker = TestBroker::start(shards, &pki.listener(&crl));
            let port = broker.port();
            let sub = Sub::start(&pki, port, Some("client"), "guard/#", 2);
            for (cert, why) in [
                (None, "no client certificate"),
                (Some("stranger"), "a certificate from an unknown CA"),
                (Some("expired"), "an expired certificate"),
                (Some("revoked"), "a revoked certificate"),
            ] {
                let (ok, _) = mosquitto_pub(&pki, port, cert, "guard/x", "must not arrive");
                assert!(!ok, "{shards} shard(s): a client with {why} was let in");
            }
            // A plain MQTT client on the TLS port: its CONNECT is not a TLS ClientHello. It gets no
            // CONNACK: at most a TLS alert record (content type 21), then the connection closes.
            let mut plain = std::net::TcpStream::connect(broker.addr()).unwrap();
            plain
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            use std::io::{Read, Write};
            // CONNECT, MQTT 3.1.1, clean session, keep-alive 30, client id "plain".
            let connect = [
                0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 5, b'p', b'l', b'a', b'i',
                b'n',
            ];
            plain.write_all(&connect).unwrap();
            let mut got = Vec::new();
            let _ = plain.read_to_end(&mut got);
            assert!(
                got.is_empty() || got[0] == 21,
                "a plain client got {got:?} from the TLS port"
            );
            // Everyone else was undisturbed.
            let (ok, err) = mosquitto_pub(&pki, port, Some("client"), "guard/x", "after");
            assert!(ok, "{err}");
            assert_eq!(sub.message(), "MSG|guard/x|after");
            let (ok, err) = mosquitto_pub(&pki, port, Some("client"), "guard/y", "again");
            assert!(ok, "{err}");
            assert_eq!(sub.message(), "MSG|guard/y|again");
        }
    });
}

/// rumqttc (rustls) with a client certificate whose Common Name (`use_identity_as_username`) or
/// subject (`use_subject_as_username`) is the username, with `require_certificate` as Mosquitto needs
/// it: with a password file and no anonymous access, it needs no password, and the ACL applies to that
/// name; a client without a certificate is refused.
#[test]
fn use_identity_as_username_makes_the_certificate_the_credential() {
    with_timeout("use_identity_as_username", Duration::from_secs(60), || {
        let pki = Pki::new();
        std::fs::write(pki.dir.join("passwd"), "someone:$6$abcd$x\n").unwrap();
        // The Common Name, or the whole subject as OpenSSL prints it (RFC 2253, last RDN first: rcgen
        // keeps its default CN first, so the O comes out first).
        std::fs::write(
            pki.dir.join("acl"),
            "user tls-client\ntopic readwrite cert/#\nuser O=Example,CN=tls-client\ntopic readwrite cert/#\n",
        )
        .unwrap();
        for option in ["use_identity_as_username", "use_subject_as_username"] {
            let extra = format!(
                "require_certificate true\n{option} true\nallow_anonymous false\n\
                 password_file {}\nacl_file {}\n",
                pki.path("passwd"),
                pki.path("acl")
            );
            for &shards in common::shard_counts() {
                let broker = TestBroker::start(shards, &pki.listener(&extra));
                common::block_on(rumqttc_checks(&pki, broker.port()));
            }
        }
    });
}

async fn rumqttc_checks(pki: &Pki, port: u16) {
    use rumqttc::{Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};
    let read = |name: &str| std::fs::read(pki.dir.join(name)).unwrap();
    let options = |cert: bool| {
        let mut o = MqttOptions::new(unique_id("rq"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: read("ca.crt"),
            alpn: None,
            client_auth: cert.then(|| (read("client.crt"), read("client.key"))),
        }));
        o
    };
    // Without a certificate: refused (at the handshake, as the listener requires one).
    let (_c, mut events) = rumqttc::AsyncClient::new(options(false), 10);
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(a))) => return format!("{:?}", a.code),
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
    })
    .await
    .expect("an answer");
    assert!(
        !refused.contains("Success"),
        "a client without a certificate was let in: {refused}"
    );
    // With one: connected as tls-client, which may use cert/# only.
    let (client, mut events) = rumqttc::AsyncClient::new(options(true), 10);
    client.subscribe("cert/#", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("elsewhere", QoS::AtLeastOnce, false, "denied")
        .await
        .unwrap();
    client
        .publish("cert/ok", QoS::AtLeastOnce, false, "allowed")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => return p,
                Ok(_) => {}
                Err(e) => panic!("rumqttc over TLS: {e}"),
            }
        }
    })
    .await
    .expect("a message within 10 s");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("cert/ok", &b"allowed"[..])
    );
}

/// paho-mqtt (Python's ssl module, OpenSSL) with a client certificate, host name checked.
#[test]
fn paho_publishes_and_subscribes_over_tls() {
    if !common::paho_present() {
        return;
    }
    with_timeout("paho over TLS", Duration::from_secs(60), || {
        let pki = Pki::new();
        for &shards in common::shard_counts() {
            let broker = TestBroker::start(shards, &pki.listener("require_certificate true\n"));
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/transport.py");
            let out = Command::new("python3")
                .arg(&script)
                .args(["127.0.0.1", &broker.port().to_string()])
                .args(["--cafile", &pki.path("ca.crt")])
                .args(["--cert", &pki.path("client.crt")])
                .args(["--key", &pki.path("client.key")])
                .output()
                .expect("run python3");
            assert!(
                out.status.success(),
                "{shards} shard(s): transport.py over TLS failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

/// SIGHUP (here the embedded broker's reload) reads the certificate and key again: new connections get
/// the new ones, which a client trusting only the old CA refuses.
#[test]
fn a_reload_serves_the_new_certificate() {
    if !tools_present() || common::broker::external_mosquitto() {
        return;
    }
    with_timeout("TLS reload", Duration::from_secs(60), || {
        let pki = Pki::new();
        let broker = TestBroker::start(2, &pki.listener(""));
        let port = broker.port();
        let (ok, err) = mosquitto_pub(&pki, port, None, "reload/a", "old");
        assert!(ok, "{err}");
        // A new CA, and a server certificate from it, in the files the listener names.
        let renewed = Pki::new();
        for name in ["server.crt", "server.key"] {
            std::fs::copy(renewed.dir.join(name), pki.dir.join(name)).unwrap();
        }
        broker.reload();
        let (ok, _) = mosquitto_pub(&pki, port, None, "reload/a", "old CA");
        assert!(
            !ok,
            "a client trusting the old CA accepted the renewed certificate"
        );
        let (ok, err) = mosquitto_pub(&renewed, port, None, "reload/a", "new CA");
        assert!(ok, "the renewed certificate: {err}");
    });
}
