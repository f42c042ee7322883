//! Authentication (`password_file`) and authorisation (`acl_file`), as Mosquitto 2.0 does them.
//!
//! What is checked (mosquitto.conf(5) `password_file`, `acl_file`, `allow_anonymous`; mosquitto_passwd(1);
//! Mosquitto 2.0's src/security_default.c; MQTT 3.1.1 3.2.2.3 return code 5 and MQTT 5.0 reason 0x87 "Not
//! authorized"):
//! - A password file written by Debian's `mosquitto_passwd` (PBKDF2-SHA512 `$7$` and SHA-512 `$6$`
//!   hashes) admits its users with their passwords, and refuses a wrong password, a missing password and
//!   an unknown user with "not authorised" (3.1.1 return code 5, 5.0 reason 0x87), then closes.
//! - Clients without a username are admitted only with `allow_anonymous true`; a refused login disturbs
//!   nobody else.
//! - `mosquitto_pub` / `mosquitto_sub` log in with `-u` / `-P`.
//! - ACL write rules: a PUBLISH to a topic the client may not write is dropped but acknowledged (v5
//!   PUBACK / PUBREC reason 0x87), as Mosquitto answers; `$SYS` is never writable by clients.
//! - ACL read rules: SUBSCRIBE is granted (Mosquitto 2.0 does not check it against the ACL file), and
//!   each message, live or retained, reaches only subscribers who may read its topic.
//! - `pattern` rules expand `%c` (client id) and `%u` (username).
//! - A persistent session resumed under another username loses the queued messages that username may
//!   not read (Mosquitto's `connection_check_acl`), and gets only what it may read from then on.
//! - A will is published only if its client may write its topic.
//! - SIGHUP re-reads both files: a connected client no longer in the password file is disconnected,
//!   and the new read rules apply to the clients that stay.
//! - A malformed ACL file stops the broker from starting, naming the line.
//!
//! Each case runs for 3.1.1 and 5.0 with 1 and 4 shards (so publishers and subscribers also sit on
//! different shards).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::raw::{self, kind, Connect, RawClient};
use common::{for_each_case, skip_missing_tool, unique_id, Case, Proto, ABSENCE_WAIT, BOTH};

/// A scratch directory for one test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("shardmq-auth-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `mosquitto_passwd -b FILE USER PASSWORD` (with `-c` to create, `-H sha512` for `$6$`).
fn mosquitto_passwd(file: &Path, user: &str, password: &str, create: bool, sha512: bool) {
    let mut cmd = Command::new("mosquitto_passwd");
    if sha512 {
        cmd.args(["-H", "sha512"]);
    }
    if create {
        cmd.arg("-c");
    }
    cmd.arg("-b").arg(file).arg(user).arg(password);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run mosquitto_passwd");
    assert!(
        out.status.success(),
        "mosquitto_passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have_tool(tool: &str, package: &str) -> bool {
    match Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            !skip_missing_tool(tool, &format!("apt-get install {package}"))
        }
        _ => true,
    }
}

/// A password file for alice (PBKDF2, mosquitto_passwd's default), carol (`-H sha512`) and writer /
/// reader (PBKDF2), all written by the real tool.
fn password_file(dir: &Scratch) -> PathBuf {
    let file = dir.path("passwd");
    mosquitto_passwd(&file, "alice", "s3cret", true, false);
    mosquitto_passwd(&file, "carol", "hunter2", false, true);
    mosquitto_passwd(&file, "writer", "w", false, false);
    mosquitto_passwd(&file, "reader", "r", false, false);
    file
}

/// "Not authorised" as each version says it in CONNACK.
fn not_authorised(proto: Proto) -> u8 {
    if proto.is_v5() {
        0x87
    } else {
        5
    }
}

/// Sends `connect` and returns the CONNACK code; a refused client must then be closed by the broker.
fn connack_code(case: &Case, connect: &Connect) -> u8 {
    let mut c = RawClient::open(case.addr, case.proto);
    c.send(&connect.encode());
    let ack = c.read_packet().connack(case.proto);
    if ack.code != 0 {
        c.expect_closed();
    }
    ack.code
}

fn login(case: &Case, user: &str, password: &str) -> RawClient {
    login_as(case, &unique_id(user), user, password)
}

fn login_as(case: &Case, id: &str, user: &str, password: &str) -> RawClient {
    let connect = Connect::new(case.proto, id).login(user, password.as_bytes());
    RawClient::connect(case.addr, &connect).0
}

#[test]
fn a_password_file_from_mosquitto_passwd_admits_its_users_only() {
    for_each_auth_case("pw", "allow_anonymous false\n", false, |case| {
        let c = |id: &str| Connect::new(case.proto, &unique_id(id));
        let refused = not_authorised(case.proto);
        assert_eq!(connack_code(&case, &c("a").login("alice", b"s3cret")), 0);
        assert_eq!(
            connack_code(&case, &c("c").login("carol", b"hunter2")),
            0,
            "$6$ hash"
        );
        assert_eq!(
            connack_code(&case, &c("a").login("alice", b"wrong")),
            refused
        );
        assert_eq!(connack_code(&case, &c("a").login("alice", b"")), refused);
        assert_eq!(
            connack_code(&case, &c("a").username("alice")),
            refused,
            "no password"
        );
        assert_eq!(
            connack_code(&case, &c("x").login("mallory", b"s3cret")),
            refused
        );
        assert_eq!(
            connack_code(&case, &c("anon")),
            refused,
            "allow_anonymous false"
        );
        assert_eq!(
            connack_code(&case, &c("empty").username("")),
            refused,
            "a zero-length username is no username: allow_anonymous false applies"
        );
        // The users that did log in are served: a publish from one reaches the other.
        let mut sub = login(&case, "alice", "s3cret");
        assert_eq!(sub.subscribe(&[("auth/t", 1)]), vec![1]);
        let mut publ = login(&case, "carol", "hunter2");
        publ.publish("auth/t", 1, false, b"hello");
        assert_eq!(sub.recv_publish().payload, b"hello");
    });
}

#[test]
fn anonymous_clients_beside_a_password_file_follow_allow_anonymous() {
    for_each_auth_case("anon", "allow_anonymous true\n", false, |case| {
        let mut witness = raw::Witness::new(case.addr, case.proto);
        let c = |id: &str| Connect::new(case.proto, &unique_id(id));
        assert_eq!(connack_code(&case, &c("anon")), 0, "no username: anonymous");
        assert_eq!(
            connack_code(&case, &c("empty").username("")),
            0,
            "a zero-length username is no username: anonymous"
        );
        // A username is still checked: anonymous access is not a way around a wrong password.
        assert_eq!(
            connack_code(&case, &c("a").login("alice", b"nope")),
            not_authorised(case.proto)
        );
        witness.check();
        assert_eq!(connack_code(&case, &c("a").login("alice", b"s3cret")), 0);
        witness.check();
    });
}

#[test]
fn mosquitto_pub_and_sub_log_in_with_u_and_p() {
    if !have_tool("mosquitto_pub", "mosquitto-clients")
        || !have_tool("mosquitto_sub", "mosquitto-clients")
    {
        return;
    }
    for_each_auth_case("tools", "allow_anonymous false\n", false, |case| {
        let version = case.proto.mosquitto_arg();
        let port = case.port().to_string();
        let topic = format!("auth/tools/{}", unique_id("t"));
        // A retained message, so the subscriber started after it needs no synchronisation to get it.
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-q",
                "1",
                "-r",
            ])
            .args([
                "-u",
                "alice",
                "-P",
                "s3cret",
                "-t",
                &topic,
                "-m",
                "via tools",
            ])
            .status()
            .expect("run mosquitto_pub");
        assert!(status.success(), "mosquitto_pub with the right password");
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-C",
                "1",
                "-W",
                "5",
            ])
            .args(["-u", "carol", "-P", "hunter2", "-t", &topic])
            .output()
            .expect("run mosquitto_sub");
        assert!(out.status.success(), "mosquitto_sub: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via tools");
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", version])
            .args(["-u", "alice", "-P", "bad", "-t", &topic, "-m", "x"])
            .output()
            .expect("run mosquitto_pub");
        assert!(!out.status.success(), "mosquitto_pub with a wrong password");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains("not authori"), "mosquitto_pub says why: {err}");
    });
}

/// Reads the next packet and checks it is the acknowledgement `kind` for `pkid`, with reason `code`
/// (v5; 3.x acknowledgements carry none).
fn expect_ack(c: &mut RawClient, kind: u8, pkid: u16, code: u8) {
    let p = c.expect(kind);
    assert_eq!(p.ack_pkid(), pkid);
    if c.proto.is_v5() {
        let reason = p.body.get(2).copied().unwrap_or(0);
        assert_eq!(reason, code, "v5 reason code of {kind}");
    } else {
        assert_eq!(p.body.len(), 2, "a 3.x acknowledgement has no reason code");
    }
}

const ACL: &str = "\
# anonymous clients: read-only on public/
topic read public/#

user writer
topic write data/#
topic read replies/#
topic deny data/secret

user reader
topic read data/#
topic read public/#
topic read $SYS/broker/uptime

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

/// Runs `body` for each case on a broker with [`password_file`]'s users, the config lines `extra`, and
/// with `acl` the test [`ACL`] too. Without `mosquitto_passwd` it fails or skips, as [`have_tool`] says.
fn for_each_auth_case<F>(name: &str, extra: &str, acl: bool, body: F)
where
    F: Fn(Case) + Send + Sync + 'static,
{
    if !have_tool("mosquitto_passwd", "mosquitto") {
        return;
    }
    let dir = Scratch::new(name);
    let mut config = format!("password_file {}\n", password_file(&dir).display());
    if acl {
        config += &format!("acl_file {}\n", dir.write("acl", ACL).display());
    }
    config += extra;
    for_each_case(BOTH, &config, body);
}

#[test]
fn acl_write_rules_drop_denied_publishes_but_acknowledge_them() {
    for_each_auth_case("aclw", "allow_anonymous true\n", true, |case| {
        let mut reader = login(&case, "reader", "r");
        assert_eq!(
            reader.subscribe(&[("data/#", 1), ("public/#", 1)]),
            vec![1, 1]
        );
        let mut writer = login(&case, "writer", "w");
        let denied = 0x87;
        // Denied: not in writer's rules (public/ is read-only for anonymous, nothing for writer), an
        // explicit deny, and $SYS. Each is acknowledged with "not authorized" (v5) and dropped.
        for (topic, qos) in [("public/x", 1), ("data/secret", 1), ("$SYS/fake", 1)] {
            let pkid = writer.pkid();
            writer.send(&raw::publish(
                case.proto, topic, qos, false, false, pkid, b"no",
            ));
            expect_ack(&mut writer, kind::PUBACK, pkid, denied);
        }
        // QoS 2: PUBREC "not authorized"; a 3.x client finishes the flow and gets its PUBCOMP.
        let pkid = writer.pkid();
        writer.send(&raw::publish(
            case.proto,
            "data/secret",
            2,
            false,
            false,
            pkid,
            b"no",
        ));
        expect_ack(&mut writer, kind::PUBREC, pkid, denied);
        if !case.proto.is_v5() {
            writer.send(&raw::ack(kind::PUBREL, pkid));
            expect_ack(&mut writer, kind::PUBCOMP, pkid, 0);
        }
        // Allowed: reaches the reader, and is the first thing it receives (nothing denied got through).
        writer.publish("data/ok", 1, false, b"yes");
        let p = reader.recv_publish();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            ("data/ok", &b"yes"[..])
        );
        reader.send(&raw::ack(kind::PUBACK, p.pkid));
        // An anonymous client may not write public/ either (read-only).
        let mut anon = RawClient::connect_clean(case.addr, case.proto, &unique_id("anon"));
        anon.publish("public/news", 0, false, b"no");
        writer.publish("data/ok2", 1, false, b"marker");
        let p = reader.recv_publish();
        assert_eq!(
            p.topic, "data/ok2",
            "the anonymous write to public/ was dropped"
        );
    });
}

#[test]
fn acl_read_rules_filter_each_delivery_and_retained_message() {
    for_each_auth_case("aclr", "allow_anonymous true\n", true, |case| {
        let writer_id = unique_id("wr");
        let mut writer = login_as(&case, &writer_id, "writer", "w");
        // Retained before anyone subscribes: one readable by reader, one not: writer's own client-id
        // space (pattern clients/%c/#) is read-write for writer and unreadable for everyone else.
        writer.publish("data/kept", 1, true, b"retained");
        let own = format!("clients/{writer_id}/state");
        writer.publish(&own, 1, true, b"private");

        let mut reader = login(&case, "reader", "r");
        // Granted whatever the ACL says: Mosquitto 2.0 checks messages, not subscriptions.
        assert_eq!(reader.subscribe(&[("#", 1)]), vec![1]);
        let p = reader.recv_publish();
        assert_eq!(p.topic, "data/kept", "only the readable retained message");
        assert!(p.retain);
        reader.send(&raw::ack(kind::PUBACK, p.pkid));
        writer.publish(&own, 1, false, b"live, unreadable");
        writer.publish("data/live", 1, false, b"live");
        let p = reader.recv_publish();
        assert_eq!(
            p.topic, "data/live",
            "the unreadable live message was not delivered"
        );
        reader.send(&raw::ack(kind::PUBACK, p.pkid));
        reader.expect_silence(ABSENCE_WAIT);
    });
}

#[test]
fn acl_patterns_expand_client_id_and_username() {
    for_each_auth_case("aclp", "allow_anonymous true\n", true, |case| {
        // alice has no user section: only the patterns apply to her.
        let id = unique_id("al");
        let mut alice = login_as(&case, &id, "alice", "s3cret");
        let mine = format!("clients/{id}/x");
        let inbox = "users/alice/inbox";
        assert_eq!(alice.subscribe(&[(&mine, 1), (inbox, 1)]), vec![1, 1]);
        // Her own client-id space is read-write for her.
        // (QoS 0: at QoS 1 the copy to herself may come before her PUBACK.)
        alice.publish(&mine, 0, false, b"to myself");
        let p = alice.recv_publish();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (mine.as_str(), &b"to myself"[..])
        );
        // users/alice/inbox is readable by her, writable by nobody but the pattern owner of clients/...;
        // carol (no user section either) cannot write it, and cannot write alice's client space.
        let mut carol = login(&case, "carol", "hunter2");
        carol.publish(inbox, 1, false, b"no");
        carol.publish(&mine, 1, false, b"no");
        // writer may write data/, not users/: nothing reaches alice's inbox from anyone here.
        alice.expect_silence(ABSENCE_WAIT);
    });
}

#[test]
fn a_session_resumed_under_another_username_loses_what_it_may_no_longer_read() {
    for_each_auth_case("aclresume", "allow_anonymous true\n", true, |case| {
        let id = unique_id("rs");
        let persistent = |user: &str, password: &[u8]| {
            Connect::new(case.proto, &id)
                .persistent()
                .login(user, password)
        };
        // As reader (data/# readable), subscribe and go away, keeping the session.
        let (mut c, _) = RawClient::connect(case.addr, &persistent("reader", b"r"));
        assert_eq!(c.subscribe(&[("data/#", 1)]), vec![1]);
        c.send(&raw::disconnect());
        c.expect_closed();
        // Queued for the absent session.
        let mut writer = login(&case, "writer", "w");
        writer.publish("data/queued", 1, false, b"for reader");
        // Back as carol, who may read nothing under data/: the queued message is dropped, and so is
        // what arrives from now on; a reconnect as reader gets live messages again.
        let (mut c, ack) = RawClient::connect(case.addr, &persistent("carol", b"hunter2"));
        assert!(ack.session_present);
        writer.publish("data/live", 1, false, b"for reader only");
        c.expect_silence(ABSENCE_WAIT);
        c.send(&raw::disconnect());
        c.expect_closed();
        let (mut c, ack) = RawClient::connect(case.addr, &persistent("reader", b"r"));
        assert!(ack.session_present);
        writer.publish("data/again", 1, false, b"readable");
        let p = c.recv_publish();
        assert_eq!(
            p.topic, "data/again",
            "nothing from while carol held the session"
        );
    });
}

#[test]
fn a_will_is_published_only_where_its_client_may_write() {
    for_each_auth_case("aclwill", "allow_anonymous true\n", true, |case| {
        let mut reader = login(&case, "reader", "r");
        assert_eq!(reader.subscribe(&[("data/#", 1)]), vec![1]);
        // writer may not write data/secret: that will is dropped; data/will goes out.
        for (topic, delivered) in [("data/secret", false), ("data/will", true)] {
            let connect = Connect::new(case.proto, &unique_id("wl"))
                .login("writer", b"w")
                .will(topic, b"gone", 1, false);
            let (c, _) = RawClient::connect(case.addr, &connect);
            drop(c); // closed without DISCONNECT: the will is due
            if delivered {
                let p = reader.recv_publish();
                assert_eq!(p.topic, "data/will", "the denied will did not come first");
                assert_eq!(p.payload, b"gone");
            }
        }
    });
}

#[test]
fn a_malformed_acl_file_stops_the_broker_from_starting() {
    let dir = Scratch::new("aclbad");
    let acl = dir.write("acl", "user a\ntopic readwrite ok/#\ntopic rw bad\n");
    let text = format!(
        "listener 1883 127.0.0.1\nallow_anonymous true\nacl_file {}\n",
        acl.display()
    );
    let mut config = shardmq::config::Config::parse_str(&text, Path::new("test.conf")).unwrap();
    config.listeners[0].port = 0;
    let err = match shardmq::server::start(config) {
        Ok(_) => panic!("a broker started with a malformed acl_file"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("acl_file") && err.contains("line 3") && err.contains("\"rw\""),
        "the error names the line and the bad word: {err}"
    );
    let missing = dir.path("nope");
    let text = format!(
        "listener 1883 127.0.0.1\npassword_file {}\n",
        missing.display()
    );
    let mut config = shardmq::config::Config::parse_str(&text, Path::new("test.conf")).unwrap();
    config.listeners[0].port = 0;
    assert!(
        shardmq::server::start(config).is_err(),
        "a missing password_file is an error"
    );
}

/// The broker binary, started with `config` (which must name a listener on `port`), stopped (SIGTERM,
/// then waited for) on drop.
struct BrokerProcess {
    child: std::process::Child,
    /// The broker's log lines, as it writes them.
    lines: std::sync::mpsc::Receiver<String>,
}

impl BrokerProcess {
    /// Starts `shardmq -c FILE` and returns once it logged that it runs (its listeners are bound then).
    fn start(config_file: &Path) -> BrokerProcess {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .arg("-c")
            .arg(config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardmq");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[shardmq] {line}");
                let _ = tx.send(line);
            }
        });
        let broker = BrokerProcess { child, lines };
        broker.wait_for_log(" running");
        broker
    }

    /// Waits for a log line containing `text`.
    fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + common::EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("shardmq did not log {text:?}"),
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) of the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

/// A port nobody listens on now, for a broker binary (whose command line takes no port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reloads_the_password_and_acl_files() {
    if !have_tool("mosquitto_passwd", "mosquitto") {
        return;
    }
    common::with_timeout("sighup reload", common::CASE_TIMEOUT, || {
        let dir = Scratch::new("hup");
        let pw = dir.path("passwd");
        mosquitto_passwd(&pw, "alice", "a", true, false);
        mosquitto_passwd(&pw, "carol", "c", false, false);
        let acl = dir.write(
            "acl",
            "user alice\ntopic write #\nuser carol\ntopic read a/#\n",
        );
        let port = free_port();
        let conf = dir.write(
            "shardmq.conf",
            &format!(
                "listener {port} 127.0.0.1\nshards 2\nallow_anonymous false\npassword_file {}\n\
                 acl_file {}\n",
                pw.display(),
                acl.display()
            ),
        );
        let broker = BrokerProcess::start(&conf);
        let case = Case {
            addr: ([127, 0, 0, 1], port).into(),
            shards: 2,
            proto: Proto::V311,
        };
        let mut carol = login(&case, "carol", "c");
        assert_eq!(carol.subscribe(&[("#", 1)]), vec![1]);
        let mut alice = login(&case, "alice", "a");
        alice.publish("a/before", 1, false, b"1");
        assert_eq!(carol.recv_publish().topic, "a/before");

        // alice leaves the password file; carol may now read b/ only.
        let out = Command::new("mosquitto_passwd")
            .arg("-D")
            .arg(&pw)
            .arg("alice")
            .output()
            .expect("mosquitto_passwd -D");
        assert!(out.status.success());
        mosquitto_passwd(&pw, "writer", "w", false, false);
        dir.write(
            "acl",
            "user writer\ntopic write #\nuser carol\ntopic read b/#\n",
        );
        broker.signal(libc::SIGHUP);
        broker.wait_for_log("Password, ACL and TLS files reloaded.");

        // alice, connected, is disconnected as no longer authorised; a new login is refused.
        alice.expect_closed();
        assert_eq!(
            connack_code(
                &case,
                &Connect::new(Proto::V311, &unique_id("al")).login("alice", b"a")
            ),
            5
        );
        // carol stays connected under the new rules.
        let mut writer = login(&case, "writer", "w");
        writer.publish("a/after", 1, false, b"unreadable now");
        writer.publish("b/after", 1, false, b"readable");
        let p = carol.recv_publish();
        assert_eq!(
            p.topic, "b/after",
            "the reloaded ACL filters carol's deliveries"
        );
    });
}

#[test]
fn a_costly_password_hash_is_checked_on_the_blocking_pool() {
    common::with_timeout("costly hash", common::CASE_TIMEOUT, || {
        let dir = Scratch::new("costly");
        // 20,000 PBKDF2 rounds (~9 ms), above what a shard checks inline; mosquitto_passwd 2.0.11 has
        // no option for the count, so the entry comes from the broker's own generator.
        let entry = shardmq::auth::password::hash_password_pbkdf2(b"pw", 20_000).unwrap();
        let pw = dir.write("passwd", &format!("slow:{entry}\n"));
        let port = free_port();
        let conf = dir.write(
            "shardmq.conf",
            &format!(
                "listener {port} 127.0.0.1\nshards 2\nallow_anonymous false\nlog_type all\n\
                 password_file {}\n",
                pw.display()
            ),
        );
        let broker = BrokerProcess::start(&conf);
        let case = Case {
            addr: ([127, 0, 0, 1], port).into(),
            shards: 2,
            proto: Proto::V311,
        };
        let mut c = login(&case, "slow", "pw");
        broker.wait_for_log("Checking the password of");
        c.ping();
        let wrong = Connect::new(Proto::V311, &unique_id("sl")).login("slow", b"nope");
        assert_eq!(connack_code(&case, &wrong), 5);
    });
}

/// `per_listener_settings true`: each listener has its own `allow_anonymous`, `password_file` and
/// `acl_file` (Mosquitto's defaults where unset: no anonymous clients), none of the other's.
#[test]
fn per_listener_settings_give_each_listener_its_own_users_and_rules() {
    if !have_tool("mosquitto_passwd", "mosquitto") {
        return;
    }
    common::with_timeout("per_listener_settings", common::CASE_TIMEOUT, || {
        let dir = Scratch::new("per-listener");
        let pw = password_file(&dir);
        let acl = dir.write(
            "acl",
            "user alice\ntopic write only/alice/#\ntopic read #\n",
        );
        // The test broker's first listener (its `allow_anonymous true`), then a second one with its
        // own files. (TestBroker puts per_listener_settings first, as Mosquitto requires.)
        let extra = format!(
            "per_listener_settings true\nlistener 1884 127.0.0.1\npassword_file {}\nacl_file {}\n",
            pw.display(),
            acl.display()
        );
        for shards in [1, 4] {
            let broker = common::broker::TestBroker::start(shards, &extra);
            let open = Case {
                addr: broker.addr(),
                shards,
                proto: Proto::V311,
            };
            let guarded = Case {
                addr: broker.addrs()[1],
                ..open
            };
            // Anonymous: welcome on the first listener, not on the second (its default).
            let anonymous = Connect::new(Proto::V311, &unique_id("anon"));
            assert_eq!(connack_code(&open, &anonymous), 0);
            assert_eq!(
                connack_code(&guarded, &anonymous),
                not_authorised(Proto::V311)
            );
            // The second listener's password file and ACL apply there only.
            let wrong = Connect::new(Proto::V311, &unique_id("a")).login("alice", b"nope");
            assert_eq!(connack_code(&guarded, &wrong), not_authorised(Proto::V311));
            let mut watcher = RawClient::connect_clean(open.addr, Proto::V311, &unique_id("w"));
            assert_eq!(watcher.subscribe(&[("only/#", 0)]), vec![0]);
            let mut alice = login(&guarded, "alice", "s3cret");
            alice.publish("only/bob/x", 0, false, b"denied");
            alice.publish("only/alice/x", 0, false, b"allowed");
            let m = watcher.recv_publish();
            assert_eq!(
                (m.topic.as_str(), &m.payload[..]),
                ("only/alice/x", &b"allowed"[..])
            );
            // On the first listener there is no password file or ACL: alice's publish goes anywhere.
            let mut free = login(&open, "alice", "whatever");
            free.publish("only/bob/y", 0, false, b"free");
            assert_eq!(watcher.recv_publish().topic, "only/bob/y");
        }
    });
}

#[test]
fn refuse_unreadable_subscriptions_answers_a_subscribe_to_nothing_readable_with_0x87() {
    for_each_auth_case(
        "aclsub",
        "allow_anonymous true\nrefuse_unreadable_subscriptions true\n",
        true,
        |case| {
            let mut writer = login(&case, "writer", "w");
            // SUBACK: 0x87 Not authorized (5.0), 0x80 Failure (3.1.1).
            let refused = if case.proto.is_v5() { 0x87 } else { 0x80 };
            assert_eq!(
                writer.subscribe(&[
                    ("replies/x", 1),
                    ("data/secret", 1),
                    ("replies/+", 1),
                    ("data/#", 1),
                    ("$share/g/replies/#", 1),
                    ("$share/g/data/x", 1),
                ]),
                vec![1, refused, 1, refused, 1, refused],
                "read rules grant, write-only and denied filters are refused"
            );
        },
    );
    // Off (the default, as in Mosquitto): granted, and each message is checked instead.
    for_each_auth_case("aclsub-off", "allow_anonymous true\n", true, |case| {
        let mut writer = login(&case, "writer", "w");
        assert_eq!(writer.subscribe(&[("data/secret", 1)]), vec![1]);
    });
}
