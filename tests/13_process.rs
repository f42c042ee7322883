//! The broker binary as a Unix process: `user`, `pid_file`, SIGTERM/SIGINT and Debian's stock config.
//!
//! What is checked:
//! - Debian's stock `/etc/mosquitto/mosquitto.conf` (tests/fixtures/debian, byte for byte) starts
//!   shardmq unchanged but for its absolute paths, moved into a scratch directory: `pid_file`,
//!   `persistence true` + `persistence_location`, `log_dest file`, `include_dir` (where the test's
//!   listener is). The pid file appears with the broker's pid once it serves, the persistence files
//!   in the Debian directory belong to the user the broker runs as, SIGTERM ends it with status 0 and
//!   the pid file is gone.
//! - `user nobody`, started as root: every thread of the broker runs as nobody, with nobody's groups,
//!   and the log says so; an unknown user stops the broker. Not root (`user root` then): the log says
//!   the option was not applied and the broker keeps its user. (Without root, a broker of more than
//!   one shard needs more locked memory than the usual 8 MiB per user: the tests that run four shards
//!   fail there, as the rest of the suite does.)
//! - SIGTERM and SIGINT: the wills of the connected clients reach the subscribers that are still
//!   connected (as in Mosquitto 2.0, which publishes every will when it stops), then the connections
//!   close, the process exits 0 and removes its pid file.
//!
//! These tests always run shardmq's binary, also under `SHARDMQ_TEST_BROKER=mosquitto`.
//!
//! Every wait is for an event (a log line, a file appearing, a packet, the exit) with a deadline.
//! Started as root (CI), the scratch directories that the broker writes after dropping privileges are
//! given to the user it drops to, as Debian's systemd unit does for /run/mosquitto and /var/log/mosquitto.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::{kind, Connect, RawClient};
use common::{unique_id, Proto, EVENT_TIMEOUT};

/// How long a broker process may take to start or to stop: a fresh debug binary on a loaded 2-core
/// CI machine can take seconds before its first log line.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);

/// Upper bound for one test: a start, a few events and a stop.
const CASE_TIMEOUT: Duration = Duration::from_secs(45);

/// Debian's stock mosquitto.conf, as the package installs it.
const DEBIAN_CONF: &str = include_str!("fixtures/debian/mosquitto.conf");

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The account the broker drops to when started as root without `user`: mosquitto, else nobody.
fn default_account() -> shardmq::process::Account {
    shardmq::process::lookup_user("mosquitto")
        .unwrap()
        .or_else(|| shardmq::process::lookup_user("nobody").unwrap())
        .expect("a mosquitto or nobody account")
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("shardmq-process-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// A subdirectory the broker may write in after it dropped privileges (given to `account` when
    /// running as root).
    fn dir_for_broker(&self, name: &str, account: &shardmq::process::Account) -> PathBuf {
        let d = self.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        if is_root() {
            std::os::unix::fs::chown(&d, Some(account.uid), Some(account.gid)).unwrap();
        }
        d
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The broker binary started with `-c FILE`; killed on drop if still running.
struct Broker {
    child: Child,
    /// Every line written to stderr so far.
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Broker {
    fn start(config: &Path) -> Broker {
        Broker::start_with(config, &[])
    }

    fn start_with(config: &Path, args: &[&str]) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .arg("-c")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardmq");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[shardmq] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        Broker {
            child,
            stderr,
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Polls (with a deadline) until `ready` holds, failing early if the broker exits.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Broker) -> bool) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if ready(self) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "shardmq exited ({status}) before {what}:\n{}",
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {PROCESS_TIMEOUT:?}:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for_stderr(&mut self, text: &str) {
        self.wait_until(&format!("log line {text:?}"), |b| {
            b.stderr_text().contains(text)
        });
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) of the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    /// Waits for the process to end (polling, with a deadline) and returns its exit status.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shardmq still runs {PROCESS_TIMEOUT:?} after the signal:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `Uid:`, `Gid:` and `Groups:` lines of every thread of `pid`.
fn thread_credentials(pid: u32) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        out.push((field("Uid:"), field("Gid:"), field("Groups:")));
    }
    out
}

/// The supplementary groups initgroups(3) gives `account`, sorted, space-separated.
fn groups_of(account: &shardmq::process::Account) -> String {
    let name = std::ffi::CString::new(account.name.as_str()).unwrap();
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: `groups` has room for `n` entries; getgrouplist writes at most that many.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), account.gid, groups.as_mut_ptr(), &mut n) };
    assert!(rc >= 0, "getgrouplist");
    groups.truncate(n as usize);
    groups.sort_unstable();
    groups.dedup();
    groups
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn debian_stock_config_starts_writes_its_pid_file_and_stops_cleanly() {
    common::with_timeout("debian stock config", CASE_TIMEOUT, || {
        // The exact file; the test only moves its absolute paths. Each must be there to be moved.
        let dir = Scratch::new("debian");
        let account = default_account();
        let run = dir.dir_for_broker("run/mosquitto", &account);
        let log = dir.dir_for_broker("log/mosquitto", &account);
        let lib = dir.dir_for_broker("lib/mosquitto", &account);
        let conf_d = dir.0.join("etc/mosquitto/conf.d");
        let mut text = DEBIAN_CONF.to_owned();
        for (from, to) in [
            ("/run/mosquitto/", &run),
            ("/var/lib/mosquitto/", &lib),
            ("/var/log/mosquitto/", &log),
            ("/etc/mosquitto/conf.d", &conf_d),
        ] {
            assert!(text.contains(from), "Debian's file names {from}");
            let to = to.display().to_string();
            let to = if from.ends_with('/') { to + "/" } else { to };
            text = text.replace(from, &to);
        }
        let port = free_port();
        // One shard: without root, glommio's locked memory (8 MiB by default per user) fits one.
        dir.write(
            "etc/mosquitto/conf.d/listener.conf",
            &format!("listener {port} 127.0.0.1\nallow_anonymous true\nshards 1\n"),
        );
        let conf = dir.write("etc/mosquitto/mosquitto.conf", &text);
        let pid_file = run.join("mosquitto.pid");
        let log_file = log.join("mosquitto.log");

        let mut broker = Broker::start(&conf);
        broker.wait_until("pid file", |_| {
            std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
        });
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap(),
            format!("{}\n", broker.pid()),
            "the pid file holds the broker's pid"
        );
        // It serves once the pid file is there.
        let mut c = RawClient::connect_clean(
            ([127, 0, 0, 1], port).into(),
            Proto::V311,
            &unique_id("deb"),
        );
        c.ping();
        if is_root() {
            let creds = thread_credentials(broker.pid());
            let uid = account.uid.to_string();
            assert!(
                creds.iter().all(|(u, _, _)| u.split(' ').all(|x| x == uid)),
                "started as root without `user`, every thread runs as {}: {creds:?}",
                account.name
            );
        }
        // persistence true: the current generation and the shard's log, the broker's to write.
        for name in ["mosquitto.db.current", "mosquitto.db.1.0.log"] {
            let meta = std::fs::metadata(lib.join(name))
                .unwrap_or_else(|e| panic!("{name} in persistence_location: {e}"));
            if is_root() {
                use std::os::unix::fs::MetadataExt;
                assert_eq!(
                    meta.uid(),
                    account.uid,
                    "{name} belongs to {}",
                    account.name
                );
            }
        }
        broker.signal(libc::SIGTERM);
        assert_eq!(broker.wait_exit().code(), Some(0), "SIGTERM exits 0");
        assert!(!pid_file.exists(), "the pid file is removed at exit");
        let logged = std::fs::read_to_string(&log_file).expect("log_dest file written");
        assert!(!logged.contains("Warning: persistence"), "{logged}");
        for line in [
            &format!(
                "Loading config file {}",
                conf_d.join("listener.conf").display()
            ),
            &format!("Opening ipv4 listen socket on port {port} (127.0.0.1)."),
            " running",
            " terminating",
        ] {
            assert!(logged.contains(line), "log lacks {line:?}:\n{logged}");
        }
        if is_root() {
            assert!(
                logged.contains(&format!(
                    "Dropped privileges to user '{}' (uid {}, gid {}).",
                    account.name, account.uid, account.gid
                )),
                "{logged}"
            );
            assert!(!logged.contains("Warning: user '"), "{logged}");
        }
        assert!(
            broker.stderr_text().is_empty(),
            "all logging goes to the file"
        );
    });
}

#[test]
fn user_option_drops_every_thread_to_that_user_and_its_groups() {
    common::with_timeout("user nobody", CASE_TIMEOUT, || {
        let dir = Scratch::new("user");
        let port = free_port();
        let conf = dir.write(
            "shardmq.conf",
            // Not root: a user other than ours (root is one), which cannot be applied.
            &format!(
                "listener {port} 127.0.0.1\nshards 1\nuser {}\n",
                if is_root() { "nobody" } else { "root" }
            ),
        );
        let mut broker = Broker::start(&conf);
        broker.wait_for_stderr(" running");
        let creds = thread_credentials(broker.pid());
        assert!(
            creds.len() >= 3,
            "shards, ticker and log threads: {creds:?}"
        );
        if is_root() {
            let nobody = shardmq::process::lookup_user("nobody")
                .unwrap()
                .expect("a nobody account");
            let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
            let groups = groups_of(&nobody);
            for (u, g, gs) in &creds {
                assert!(u.split(' ').all(|x| x == uid), "Uid {u}: {creds:?}");
                assert!(g.split(' ').all(|x| x == gid), "Gid {g}: {creds:?}");
                let mut gs: Vec<&str> = gs.split(' ').collect();
                gs.sort_by_key(|g| g.parse::<u32>().unwrap_or(0));
                assert_eq!(gs.join(" "), groups, "Groups: {creds:?}");
            }
            assert!(
                broker.stderr_text().contains(&format!(
                    "Dropped privileges to user 'nobody' (uid {}, gid {}).",
                    nobody.uid, nobody.gid
                )),
                "{}",
                broker.stderr_text()
            );
        } else {
            eprintln!("not root: checking that `user root` is reported as not applied");
            // SAFETY: getuid cannot fail.
            let me = unsafe { libc::getuid() }.to_string();
            assert!(creds.iter().all(|(u, _, _)| u.split(' ').all(|x| x == me)));
            assert!(
                broker
                    .stderr_text()
                    .contains("Not started as root: user 'root' not applied, running as user '"),
                "{}",
                broker.stderr_text()
            );
        }
        broker.signal(libc::SIGTERM);
        assert_eq!(broker.wait_exit().code(), Some(0));
    });
}

#[test]
fn an_unknown_user_stops_the_broker_when_root() {
    if !is_root() {
        eprintln!(
            "SKIPPED: not root, so the `user` option is not applied (checked by the test above)"
        );
        return;
    }
    common::with_timeout("unknown user", CASE_TIMEOUT, || {
        let dir = Scratch::new("ghost");
        let conf = dir.write(
            "shardmq.conf",
            &format!(
                "listener {} 127.0.0.1\nuser no-such-user-shardmq\n",
                free_port()
            ),
        );
        let mut broker = Broker::start(&conf);
        let status = broker.wait_exit();
        assert_eq!(status.code(), Some(1), "{}", broker.stderr_text());
        assert!(broker.stderr_text().contains(
            "Error: Unable to drop privileges to 'no-such-user-shardmq' because this user does not exist."
        ));
        assert!(!broker.stderr_text().contains(" running"));
    });
}

/// SIGTERM or SIGINT: every connected client's will reaches a subscriber still connected, before the
/// broker closes the connections; then the process exits 0 and removes its pid file.
fn wills_are_published_on(sig: i32) {
    let dir = Scratch::new(&format!("wills-{sig}"));
    let account = default_account();
    let run = dir.dir_for_broker("run", &account);
    let pid_file = run.join("shardmq.pid");
    let port = free_port();
    let conf = dir.write(
        "shardmq.conf",
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nshards 4\ncpu_affinity false\n\
             pid_file {}\n",
            pid_file.display()
        ),
    );
    let mut broker = Broker::start(&conf);
    broker.wait_until("pid file", |_| pid_file.exists());
    let addr = ([127, 0, 0, 1], port).into();
    let mut sub = RawClient::connect_clean(addr, Proto::V5, &unique_id("sub"));
    assert_eq!(sub.subscribe(&[("will/#", 1)]), vec![1]);
    // Eight clients, spread over the four shards by their ids, half 3.1.1 and half 5.0, each with a will.
    let mut expected = Vec::new();
    let mut clients = Vec::new();
    for i in 0..8 {
        let proto = if i % 2 == 0 { Proto::V311 } else { Proto::V5 };
        let id = unique_id("w");
        let topic = format!("will/{id}");
        let (c, _) = RawClient::connect(
            addr,
            &Connect::new(proto, &id).will(&topic, b"broker stopped", 1, false),
        );
        clients.push(c);
        expected.push(topic);
    }
    // A client that disconnected normally has no will left.
    let mut gone = RawClient::connect(
        addr,
        &Connect::new(Proto::V311, &unique_id("gone")).will("will/gone", b"no", 1, false),
    )
    .0;
    gone.send(&common::raw::disconnect());
    gone.expect_closed();

    broker.signal(sig);
    let before_close = sub.expect_closed_within(EVENT_TIMEOUT);
    let mut got: Vec<String> = before_close
        .iter()
        .filter(|p| p.kind() == kind::PUBLISH)
        .map(|p| {
            let m = p.publish(Proto::V5);
            assert_eq!(m.payload, b"broker stopped");
            m.topic
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(
        got, expected,
        "every connected client's will, once, before the close"
    );
    let last = before_close.last().expect("packets before the close");
    assert!(
        last.kind() == kind::DISCONNECT && last.disconnect_reason() == 0x8B,
        "a 5.0 subscriber is told the server is shutting down, after the wills: {before_close:?}"
    );
    for mut c in clients {
        c.expect_closed();
    }
    assert_eq!(
        broker.wait_exit().code(),
        Some(0),
        "{}",
        broker.stderr_text()
    );
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    assert!(broker.stderr_text().contains(" terminating"));
}

#[test]
fn sigterm_publishes_the_wills_then_exits_0() {
    common::with_timeout("sigterm", CASE_TIMEOUT, || {
        wills_are_published_on(libc::SIGTERM)
    });
}

#[test]
fn sigint_publishes_the_wills_then_exits_0() {
    common::with_timeout("sigint", CASE_TIMEOUT, || {
        wills_are_published_on(libc::SIGINT)
    });
}

/// The configurations shipped in packaging/ load (their include_dir moved to an empty scratch
/// directory), and the unit and the image start the broker on them.
#[test]
fn packaged_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap();
    let dir = Scratch::new("packaging");
    let conf_d = dir.0.join("conf.d");
    std::fs::create_dir_all(&conf_d).unwrap();
    for (file, include) in [
        ("packaging/systemd/shardmq.conf", "/etc/shardmq/conf.d"),
        ("packaging/docker/shardmq.conf", "/shardmq/config/conf.d"),
    ] {
        let text = read(file);
        assert!(text.contains(&format!("include_dir {include}\n")), "{file}");
        let text = text.replace(include, &conf_d.display().to_string());
        if let Err(e) = shardmq::config::Config::parse_str(&text, &root.join(file)) {
            panic!("{file}: {e}");
        }
    }
    assert!(read("packaging/systemd/shardmq.service")
        .contains("\nExecStart=/usr/local/sbin/shardmq -c /etc/shardmq/shardmq.conf\n"));
    assert!(read("packaging/docker/Dockerfile")
        .contains("\nCOPY packaging/docker/shardmq.conf /shardmq/config/shardmq.conf\n"));
}

/// `-d`: the command returns at once, and the pid file holds the daemon's pid (the forked child's,
/// not the command's); SIGTERM to that pid removes the pid file.
#[test]
fn daemon_mode_writes_the_daemons_pid() {
    common::with_timeout("daemon", CASE_TIMEOUT, || {
        let dir = Scratch::new("daemon");
        let account = default_account();
        let run = dir.dir_for_broker("run", &account);
        let log = dir.dir_for_broker("log", &account);
        let pid_file = run.join("shardmq.pid");
        let log_file = log.join("shardmq.log");
        let port = free_port();
        let conf = dir.write(
            "shardmq.conf",
            &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nshards 1\npid_file {}\n\
                 log_dest file {}\n",
                pid_file.display(),
                log_file.display()
            ),
        );
        let mut launcher = Broker::start_with(&conf, &["-d"]);
        assert_eq!(launcher.wait_exit().code(), Some(0), "the launcher exits 0");
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let daemon: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.strip_suffix('\n').and_then(|p| p.parse().ok()))
            {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "no pid in {}",
                pid_file.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_ne!(
            daemon as u32,
            launcher.pid(),
            "the daemon's pid, not the launcher's"
        );
        RawClient::connect_clean(([127, 0, 0, 1], port).into(), Proto::V311, &unique_id("d"))
            .ping();
        // SAFETY: kill(2) of the daemon this test started, by the pid it wrote.
        assert_eq!(unsafe { libc::kill(daemon, libc::SIGTERM) }, 0);
        // Not our child: wait for it to remove its pid file and end (gone, or a zombie left to init).
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let status = std::fs::read_to_string(format!("/proc/{daemon}/status")).ok();
            let ended = match status {
                None => true,
                Some(s) => s.lines().any(|l| l.starts_with("State:\tZ")),
            };
            if ended && !pid_file.exists() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {daemon} still runs or left its pid file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let logged = std::fs::read_to_string(&log_file).unwrap();
        assert!(logged.contains(" terminating"), "{logged}");
    });
}

/// The systemd unit in packaging/ is one systemd accepts (`systemd-analyze verify`, with ExecStart
/// pointed at this build) and keeps the sandboxing its comment promises (`systemd-analyze security`
/// exposure at most 2.0, "OK").
#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        if common::skip_missing_tool("systemd-analyze", "apt-get install systemd") {
            return;
        }
        panic!("systemd-analyze is missing");
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/shardmq.service"),
    )
    .expect("the unit file");
    let dir = std::env::temp_dir().join(unique_id("unit"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shardmq-test.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/sbin/shardmq", env!("CARGO_BIN_EXE_shardmq")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let said = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(
        verify.status.success() && !said.contains(&*path.to_string_lossy()),
        "systemd-analyze verify: {said}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(exposure <= 2.0, "exposure {exposure}: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
