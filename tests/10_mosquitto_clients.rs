//! Interoperability with Debian's `mosquitto_pub` / `mosquitto_sub` (package mosquitto-clients), the
//! tools most Mosquitto users script against, for MQTT 3.1, 3.1.1 and 5.0 (`-V mqttv31|mqttv311|mqttv5`).
//!
//! What is checked: publish/subscribe at QoS 0, 1 and 2; retained messages (`-r`, cleared with `-r -n`)
//! delivered with the retain flag set ([MQTT-3.3.1-6], [MQTT-3.3.1-8]); `+` / `#` filters (4.7.1);
//! payload bytes preserved exactly (`-f` binary file in, `-N` raw bytes out).
//!
//! Every subscriber runs with `-C N -W T` so it exits by itself, and with `-d` so the test can wait
//! for its "received SUBACK" line before publishing (no sleeps). A missing tool fails the tests, unless
//! `SHARDMQ_SKIP_INTEROP=1` is set, which skips them loudly.

mod common;

use common::{for_each_case, skip_missing_tool, unique_id, Case, ALL};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn tools_present() -> bool {
    for (tool, package) in [
        ("mosquitto_pub", "mosquitto-clients"),
        ("mosquitto_sub", "mosquitto-clients"),
        ("stdbuf", "coreutils"),
    ] {
        if let Err(e) = Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            if e.kind() == std::io::ErrorKind::NotFound {
                return !skip_missing_tool(tool, &format!("apt-get install {package}"));
            }
        }
    }
    true
}

fn base_args(cmd: &mut Command, case: &Case, role: &str) {
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &case.port().to_string(),
        "-V",
        case.proto.mosquitto_arg(),
    ]);
    cmd.args(["-i", &unique_id(role)]);
}

/// Runs mosquitto_pub to completion and asserts it succeeded.
fn publish(case: &Case, args: &[&str]) {
    let mut cmd = Command::new("mosquitto_pub");
    base_args(&mut cmd, case, "cpub");
    cmd.args(args);
    let out = cmd.output().expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running mosquitto_sub with `-d` and a line format that marks messages, read line by line.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

const FORMAT: &str = "MSG|%t|%q|%r|%p";

impl Sub {
    /// Starts `mosquitto_sub -d -F FORMAT -C count -W 10 <args>` and waits for its SUBACK.
    fn start(case: &Case, count: usize, args: &[&str]) -> Sub {
        // stdbuf -oL: mosquitto_sub's stdout is block-buffered on a pipe, and we must see the SUBACK line
        // while it runs (stdbuf is in coreutils, always present on Debian).
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub"]);
        base_args(&mut cmd, case, "csub");
        cmd.args(["-d", "-F", FORMAT, "-C", &count.to_string(), "-W", "10"]);
        cmd.args(args);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = Sub { child, lines };
        sub.wait_line(|l| l.contains("received SUBACK"), "SUBACK");
        sub
    }

    fn wait_line(&mut self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(_) => panic!("mosquitto_sub: no {what} line (stderr: {})", self.stderr()),
            }
        }
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Collects the message lines until the process exits (after its -C count), asserting success.
    fn finish(mut self) -> Vec<String> {
        let mut msgs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(m) = l.strip_prefix("MSG|") {
                        msgs.push(m.to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break, // stdout closed: process exiting
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("mosquitto_sub did not finish; got {msgs:?}")
                }
            }
        }
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "mosquitto_sub exited with {status:?} after {msgs:?}"
        );
        msgs
    }
}

#[test]
fn pub_sub_at_each_qos() {
    if !tools_present() {
        return;
    }
    for_each_case(ALL, "", |case| {
        for qos in 0..=2 {
            let topic = format!("cli/q{qos}");
            let q = qos.to_string();
            let sub = Sub::start(&case, 1, &["-t", &topic, "-q", &q]);
            publish(
                &case,
                &["-t", &topic, "-q", &q, "-m", &format!("hello at {qos}")],
            );
            assert_eq!(
                sub.finish(),
                vec![format!("{topic}|{qos}|0|hello at {qos}")]
            );
        }
    });
}

#[test]
fn retained_messages() {
    if !tools_present() {
        return;
    }
    for_each_case(ALL, "", |case| {
        publish(&case, &["-t", "cli/ret", "-q", "1", "-r", "-m", "kept"]);
        // Subscribing afterwards: the retained copy, retain flag 1.
        let sub = Sub::start(&case, 1, &["-t", "cli/ret", "-q", "1"]);
        assert_eq!(sub.finish(), vec!["cli/ret|1|1|kept".to_string()]);

        // Live delivery of a retained publish: retain flag 0.
        let sub = Sub::start(&case, 1, &["-t", "cli/live", "-q", "1"]);
        publish(&case, &["-t", "cli/live", "-q", "1", "-r", "-m", "now"]);
        assert_eq!(sub.finish(), vec!["cli/live|1|0|now".to_string()]);

        // `-r -n` clears it: a wildcard subscriber now gets cli/live's retained message only.
        publish(&case, &["-t", "cli/ret", "-q", "1", "-r", "-n"]);
        let sub = Sub::start(&case, 1, &["-t", "cli/+", "-q", "1"]);
        assert_eq!(sub.finish(), vec!["cli/live|1|1|now".to_string()]);
    });
}

#[test]
fn wildcard_filters() {
    if !tools_present() {
        return;
    }
    for_each_case(ALL, "", |case| {
        for (filters, non_matching, matching) in [
            (
                vec!["clw/+/x"],
                vec!["clw/a/y", "clw/x"],
                vec!["clw/a/x", "clw/b/x"],
            ),
            (
                vec!["clh/#"],
                vec!["clhx", "other/clh"],
                vec!["clh", "clh/a/b"],
            ),
            (
                vec!["s1/+", "s2/#"],
                vec!["s1/a/b", "s3"],
                vec!["s1/a", "s2/b/c"],
            ),
        ] {
            let mut args = Vec::new();
            for f in &filters {
                args.extend(["-t", f]);
            }
            args.extend(["-q", "1"]);
            let sub = Sub::start(&case, matching.len(), &args);
            // Non-matching first: a wrongly delivered one would take one of the counted slots.
            for t in non_matching.iter().chain(&matching) {
                publish(&case, &["-t", t, "-q", "1", "-m", t]);
            }
            let mut got = sub.finish();
            got.sort();
            let mut want: Vec<String> = matching.iter().map(|t| format!("{t}|1|0|{t}")).collect();
            want.sort();
            assert_eq!(got, want, "filters {filters:?}");
        }
    });
}

#[test]
fn payload_bytes_are_preserved() {
    if !tools_present() {
        return;
    }
    for_each_case(ALL, "", |case| {
        let dir = std::env::temp_dir().join(unique_id("shardmq-cli"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, payload) in [
            (
                "every-byte",
                (0..=255u8).cycle().take(1024).collect::<Vec<u8>>(),
            ),
            (
                "large",
                (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect(),
            ),
            ("utf8", "grüße, 世界 ✓".as_bytes().to_vec()),
        ] {
            let file = dir.join(name);
            std::fs::write(&file, &payload).unwrap();
            let topic = format!("bin/{name}");
            // Retained, so the subscriber needs no SUBACK handshake and its stdout is the payload alone.
            publish(
                &case,
                &["-t", &topic, "-q", "1", "-r", "-f", file.to_str().unwrap()],
            );
            let mut cmd = Command::new("mosquitto_sub");
            base_args(&mut cmd, &case, "craw");
            cmd.args(["-t", &topic, "-q", "1", "-C", "1", "-W", "10", "-N"]);
            let out = cmd.output().expect("run mosquitto_sub");
            assert!(
                out.status.success(),
                "mosquitto_sub -N: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout.len(), payload.len(), "{name}: payload length");
            assert!(out.stdout == payload, "{name}: payload bytes differ");
            publish(&case, &["-t", &topic, "-q", "1", "-r", "-n"]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
