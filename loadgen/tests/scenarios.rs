//! Every scenario of the load generator, run as a user runs it (the binary, with `--json`), against a
//! shardmq broker started in this process with 2 shards so that traffic crosses shards.
//!
//! What is checked: each run exits 0 and its last stdout line is one JSON object with the documented
//! keys; nothing is lost, duplicated or reordered at QoS 1 (with `slow_subscriber_policy hold` shardmq
//! holds publishers rather than drop QoS 1); a fixed rate is met; `--hgrm` writes an HDR percentile
//! file and an SVG; `--compare` runs both sides and reports ratios; `shared` fails at setup with the
//! broker's refusal (shardmq has no $share); p2p runs over TLS with a client certificate (certificates
//! made with rcgen) and fails at setup without one.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

struct Broker {
    addr: SocketAddr,
    handle: Option<shardmq::server::BrokerHandle>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

fn broker() -> Broker {
    broker_with("")
}

/// A broker whose listener also has the `listener_options` lines (TLS).
fn broker_with(listener_options: &str) -> Broker {
    // The config grammar refuses `listener 0`: parse with a placeholder, then let the kernel pick.
    // `slow_subscriber_policy hold`: the max-rate scenarios drive every subscriber flat out, and with
    // several subscribers the default (`hold_if_all_behind`) drops for one that is behind while
    // another has room for a moment (as Mosquitto drops); zero loss at QoS 1 is then the broker's
    // `hold` behaviour, which is what these checks of the load generator's counting rely on.
    let text = format!("listener 1883 127.0.0.1\n{listener_options}allow_anonymous true\nshards 2\ncpu_affinity false\nconnection_messages false\nslow_subscriber_policy hold\n");
    let mut config =
        shardmq::config::Config::parse_str(&text, std::path::Path::new("test.conf")).unwrap();
    for l in &mut config.listeners {
        l.port = 0;
    }
    let handle = shardmq::server::start(config).expect("broker starts");
    let addr = handle.local_addrs()[0];
    Broker {
        addr,
        handle: Some(handle),
    }
}

/// Runs the load generator with a time limit; returns its output.
fn loadgen(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_shardmq-loadgen"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("loadgen starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("loadgen output"),
        Err(_) => {
            // SAFETY: kill(2) of the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("loadgen {args:?} ran past 60 s");
        }
    }
}

fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "last line is not JSON ({e}): {line:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn run_json(b: &Broker, scenario: &str, extra: &[&str]) -> Value {
    let port = b.addr.port().to_string();
    let mut args = vec![
        scenario,
        "--port",
        &port,
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--json",
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = loadgen(&args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    for key in [
        "msgs_per_s",
        "sent",
        "received",
        "lost",
        "dup",
        "out_of_order",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "connect_per_s",
    ] {
        assert!(j.get(key).is_some(), "{scenario}: no {key} in {j}");
    }
    j
}

fn n(j: &Value, key: &str) -> f64 {
    j[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {j}"))
}

fn assert_clean(scenario: &str, j: &Value) {
    assert!(n(j, "sent") > 0.0, "{scenario}: nothing sent: {j}");
    assert_eq!(n(j, "lost"), 0.0, "{scenario}: lost messages: {j}");
    assert_eq!(n(j, "dup"), 0.0, "{scenario}: duplicates: {j}");
    assert_eq!(n(j, "out_of_order"), 0.0, "{scenario}: reordered: {j}");
    assert!(n(j, "p99_us") >= n(j, "p50_us"), "{scenario}: {j}");
    assert!(n(j, "msgs_per_s") > 0.0, "{scenario}: {j}");
}

#[test]
fn max_rate_scenarios_lose_nothing_at_qos1() {
    let b = broker();
    for (scenario, extra) in [
        ("p2p", &["--pairs", "4"][..]),
        ("fanin", &["--pubs", "4", "--subs", "2"][..]),
        ("fanout", &["--subs", "8"][..]),
    ] {
        let mut args = vec!["--qos", "1"];
        args.extend_from_slice(extra);
        let j = run_json(&b, scenario, &args);
        assert_clean(scenario, &j);
        assert_eq!(n(&j, "received"), n(&j, "expected"), "{scenario}: {j}");
    }
}

#[test]
fn a_fixed_rate_is_met_and_written_as_hdr_and_svg() {
    let b = broker();
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("p2p.hgrm");
    let j = run_json(
        &b,
        "p2p",
        &[
            "--pairs",
            "2",
            "--rate",
            "500",
            "--qos",
            "1",
            "--hgrm",
            hgrm.to_str().unwrap(),
        ],
    );
    assert_clean("p2p fixed", &j);
    // 2 publishers x 500/s over a 1 s window.
    let rate = n(&j, "msgs_per_s");
    assert!((800.0..=1200.0).contains(&rate), "rate {rate}: {j}");
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(
        text.lines().next().unwrap().contains("Percentile"),
        "{text}"
    );
    assert!(text.contains("#[Max     ="), "{text}");
    let svg = std::fs::read_to_string(dir.join("p2p.hgrm.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn conn_and_retained_scenarios_run() {
    let b = broker();
    let j = run_json(&b, "conn", &["--connections", "200", "--rate", "200"]);
    assert_clean("conn", &j);
    assert_eq!(j["connect"]["clients"].as_u64(), Some(202), "{j}");
    let j = run_json(
        &b,
        "retained",
        &["--topics", "50", "--subs", "3", "--qos", "1"],
    );
    assert_clean("retained", &j);
    // Whole storms only: every SUBSCRIBE brought all 50 retained messages.
    assert_eq!(n(&j, "received") % 50.0, 0.0, "{j}");
}

#[test]
fn shared_runs_and_each_message_reaches_one_member() {
    let b = broker();
    let j = run_json(&b, "shared", &["--pubs", "4", "--subs", "3", "--qos", "1"]);
    assert_clean("shared", &j);
    assert_eq!(n(&j, "received"), n(&j, "expected"), "{j}");
    assert_eq!(
        n(&j, "expected"),
        n(&j, "sent"),
        "one copy per message: {j}"
    );
}

#[test]
fn compare_runs_both_brokers_and_reports_ratios() {
    let a = broker();
    let b = broker();
    let port = a.addr.port().to_string();
    let other = format!("127.0.0.1:{}", b.addr.port());
    let out = loadgen(&[
        "p2p",
        "--port",
        &port,
        "--compare",
        &other,
        "--rounds",
        "1",
        "--pairs",
        "2",
        "--rate",
        "200",
        "--duration",
        "500ms",
        "--warmup",
        "200ms",
        "--json",
        "-q",
    ]);
    assert!(out.status.success(), "{out:?}");
    let j = last_json(&out);
    assert_eq!(j["compare"], Value::Bool(true));
    assert_eq!(j["a"]["runs"].as_array().unwrap().len(), 1);
    assert_eq!(j["b"]["runs"].as_array().unwrap().len(), 1);
    let ratio = j["ratio_a_over_b"]["msgs_per_s"].as_f64().unwrap();
    assert!((0.7..1.4).contains(&ratio), "same rate on both: {j}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in a fresh
/// directory (removed on drop).
struct Pki(std::path::PathBuf);

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!(
            "loadgen-pki-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "loadgen test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        write("ca.crt", ca.pem());
        for (name, sans) in [
            ("server", vec!["127.0.0.1".to_string()]),
            ("client", vec![]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            write(
                &format!("{name}.crt"),
                p.signed_by(&key, &ca, &ca_key).unwrap().pem(),
            );
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn p2p_over_tls_with_a_client_certificate_loses_nothing() {
    let pki = Pki::new();
    let b = broker_with(&format!(
        "certfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true\n",
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt")
    ));
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let j = run_json(
        &b,
        "p2p",
        &[
            "--pairs",
            "2",
            "--qos",
            "1",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert_clean("p2p over TLS", &j);
    assert_eq!(n(&j, "received"), n(&j, "expected"), "{j}");
    assert_eq!(j["tls"], Value::Bool(true), "{j}");
    assert!(n(&j, "connect_per_s") > 0.0, "{j}");

    // The broker requires a client certificate: without one the handshake fails at setup.
    let port = b.addr.port().to_string();
    let out = loadgen(&[
        "p2p",
        "--port",
        &port,
        "--pairs",
        "1",
        "--tls-ca",
        &ca,
        "--duration",
        "1s",
        "--connect-timeout",
        "3s",
        "--json",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(last_json(&out)["setup_failed"], Value::Bool(true));
}
