//! [`TestBroker`]: one broker per test case, listening on an unused port of 127.0.0.1.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when `SHARDMQ_TEST_BROKER=mosquitto`: tests run against a real Mosquitto instead of shardmq.
pub fn external_mosquitto() -> bool {
    std::env::var("SHARDMQ_TEST_BROKER")
        .map(|v| v == "mosquitto")
        .unwrap_or(false)
}

/// A running broker, stopped (listeners closed, connections dropped, threads joined) on drop.
pub struct TestBroker {
    /// The address clients connect to: 127.0.0.1 and the port the kernel picked.
    addr: SocketAddr,
    /// How many shards the broker was started with (1 for an external Mosquitto).
    shards: usize,
    /// The embedded broker; dropping it shuts it down.
    handle: Option<shardmq::server::BrokerHandle>,
    /// Its configuration, for [`TestBroker::reload`].
    config: Option<shardmq::config::Config>,
    /// An external Mosquitto's other listeners (those the test's `extra_config` adds).
    mosquitto_addrs: Vec<SocketAddr>,
    /// The external Mosquitto process and its scratch directory, when `SHARDMQ_TEST_BROKER=mosquitto`.
    mosquitto: Option<(Child, PathBuf)>,
}

impl TestBroker {
    /// Starts a broker on 127.0.0.1 port 0 with anonymous access, `shards` shards and the extra
    /// mosquitto.conf-style lines in `extra_config` (e.g. `"max_inflight_messages 2\n"`).
    /// Returns once the broker is listening.
    pub fn start(shards: usize, extra_config: &str) -> TestBroker {
        if external_mosquitto() {
            return Self::start_mosquitto(extra_config);
        }
        // Mosquitto's config grammar refuses `listener 0`, so the listener is declared with a placeholder
        // port and switched to 0 (kernel-chosen, unique per test) after parsing. No pinning: parallel
        // tests would stack their shards on the same CPUs.
        let (first, extra_config) = hoist_per_listener_settings(extra_config);
        let text = format!(
            "{first}listener 1883 127.0.0.1\nallow_anonymous true\nshards {shards}\ncpu_affinity false\n{extra_config}\n"
        );
        let mut config =
            shardmq::config::Config::parse_str(&text, std::path::Path::new("test.conf"))
                .unwrap_or_else(|e| panic!("test config rejected: {e}\n--- config ---\n{text}"));
        for listener in &mut config.listeners {
            listener.port = 0;
        }
        let handle = shardmq::server::start(config.clone()).expect("broker failed to start");
        let addr = *handle
            .local_addrs()
            .first()
            .expect("broker reports no listener address");
        assert_ne!(
            addr.port(),
            0,
            "local_addrs() must report the real port, not 0"
        );
        TestBroker {
            addr,
            shards,
            handle: Some(handle),
            config: Some(config),
            mosquitto_addrs: Vec::new(),
            mosquitto: None,
        }
    }

    /// What a SIGHUP does to the embedded broker: read the password, ACL and TLS files again and hand
    /// them to every shard. Panics if they do not load or a shard does not take them within 10 s.
    pub fn reload(&self) {
        let (Some(handle), Some(config)) = (&self.handle, &self.config) else {
            panic!("reload needs the embedded broker");
        };
        let security = shardmq::server::load_security(config).expect("files reload");
        assert!(
            handle.reload_security(std::sync::Arc::new(security), Duration::from_secs(10)),
            "every shard took the reloaded files"
        );
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every listener's address, in config order (the test's `extra_config` may add listeners).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        match &self.handle {
            Some(h) => h.local_addrs().to_vec(),
            None => std::iter::once(self.addr)
                .chain(self.mosquitto_addrs.iter().copied())
                .collect(),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Mosquitto cannot listen on port 0 and report the port, so take one the kernel hands out and
    /// release it (a small race, acceptable for this manual validation mode only).
    fn start_mosquitto(extra_config: &str) -> TestBroker {
        let free_port = || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let port = free_port();
        // Listeners the test adds get free ports too (their placeholder ports are replaced), and
        // clients reach them on their bind address, 127.0.0.1 when they have none.
        let mut more_addrs = Vec::new();
        let dir =
            std::env::temp_dir().join(format!("shardmq-test-mosq-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read the files
        // the tests write (0600, like a password file from `shardmq passwd`): `user root` keeps it root.
        // (Only when started as root; the directory is opened to everyone in case it is not.)
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (first, extra_config) = hoist_per_listener_settings(extra_config);
        let extra: String = extra_config
            .lines()
            .filter(|l| {
                !l.trim_start().starts_with("shards") && !l.trim_start().starts_with("cpu_affinity")
            })
            .map(
                |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["listener", _, rest @ ..] => {
                        let port = free_port();
                        let host = rest.first().copied().unwrap_or("127.0.0.1");
                        let ip: std::net::IpAddr = host.parse().expect("a test listener's address");
                        more_addrs.push(SocketAddr::new(ip, port));
                        format!("listener {port} {}\n", rest.join(" "))
                    }
                    _ => format!("{l}\n"),
                },
            )
            .collect();
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        std::fs::write(
            &conf,
            format!(
                "{first}listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nlog_dest file {}\nlog_type all\n{extra}",
                log.display()
            ),
        )
        .unwrap();
        // Configuration errors go to stderr, before the log file is open.
        let stderr = dir.join("stderr.txt");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("SHARDMQ_TEST_BROKER=mosquitto but `mosquitto` could not be started");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Wait for the listener (the event), polling the port.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "mosquitto exited with {status}: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        TestBroker {
            addr,
            shards: 1,
            handle: None,
            config: None,
            mosquitto_addrs: more_addrs,
            mosquitto: Some((child, dir)),
        }
    }
}

/// A test's `per_listener_settings` line goes first: it must come before every security option
/// (Mosquitto refuses it after one), and the broker's own `allow_anonymous true` then applies to the
/// first listener. Returns (that line, the rest).
fn hoist_per_listener_settings(extra_config: &str) -> (String, String) {
    let (first, rest): (Vec<&str>, Vec<&str>) = extra_config
        .lines()
        .partition(|l| l.trim_start().starts_with("per_listener_settings"));
    let lines = |v: Vec<&str>| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    (lines(first), lines(rest))
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Closes the listeners and every connection and joins the shard threads.
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
        if let Some((mut child, dir)) = self.mosquitto.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("mosquitto's log is kept in {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
