//! Starting and stopping one broker per candidate: a temporary config on a free loopback port, a
//! bounded wait until the port accepts connections, and a stop by PID (SIGTERM, then SIGKILL).

use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::candidates::Candidate;
use crate::error::TuneError;
use crate::process::{die_with_parent, interrupted, tail, wait_until, POLL};
use crate::topology::format_cpu_list;

/// Longest wait for a started broker to accept TCP connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a broker to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts to start a broker: another process may take the free port between choosing and binding it.
const START_ATTEMPTS: usize = 3;

/// A loopback port nobody is listening on right now: bind port 0, note the port, release it.
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// The config the broker runs a candidate with: loopback only, anonymous, quiet, and the candidate's
/// `shards` / `cpu_set` / `cpu_affinity` exactly as the written snippet would set them.
pub fn broker_config(c: &Candidate, port: u16) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# shardmq-tune sweep candidate ({})", c.placement);
    let _ = writeln!(s, "listener {port} 127.0.0.1");
    s.push_str("allow_anonymous true\n");
    s.push_str("log_dest stderr\nlog_type error\nconnection_messages false\n");
    s.push_str(&placement_lines(c.shards, c.cpu_set.as_deref()));
    s
}

/// `shards N` and then `cpu_affinity true` + `cpu_set LIST` (pinned) or `cpu_affinity false`
/// (unpinned). Both affinity lines are explicit so that the result does not depend on what an including
/// config said earlier.
pub fn placement_lines(shards: usize, cpu_set: Option<&[usize]>) -> String {
    match cpu_set {
        Some(cpus) => format!(
            "shards {shards}\ncpu_affinity true\ncpu_set {}\n",
            format_cpu_list(cpus)
        ),
        None => format!("shards {shards}\ncpu_affinity false\n"),
    }
}

/// Why a candidate's broker did not come up.
#[derive(Debug)]
pub enum StartError {
    /// The broker binary cannot be run at all: the sweep stops.
    Fatal(TuneError),
    /// This candidate's broker failed (bad cpu_set on this host, memlock, ...): the candidate is
    /// rejected and the sweep goes on.
    Candidate(String),
}

/// A running broker this tool started. Dropping it stops it.
pub struct Broker {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    log: PathBuf,
}

impl Broker {
    /// Starts `bin` for candidate `c` with its config and log in `dir` (named after `index`) and waits
    /// until it accepts connections.
    pub fn start(
        bin: &Path,
        c: &Candidate,
        dir: &Path,
        index: usize,
    ) -> Result<Broker, StartError> {
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let io = |what: &str, source| {
                StartError::Fatal(TuneError::Io {
                    what: what.to_owned(),
                    source,
                })
            };
            let port = free_port().map_err(|e| io("choosing a free port", e))?;
            let conf = dir.join(format!("candidate-{index}.conf"));
            let log = dir.join(format!("candidate-{index}.log"));
            std::fs::write(&conf, broker_config(c, port)).map_err(|e| io("writing a config", e))?;
            let log_file = File::create(&log).map_err(|e| io("creating a log", e))?;
            let mut cmd = Command::new(bin);
            cmd.arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file);
            // SIGTERM, not SIGKILL: the broker shuts down cleanly on it.
            die_with_parent(&mut cmd, libc::SIGTERM);
            let child = cmd.spawn().map_err(|source| {
                StartError::Fatal(TuneError::Spawn {
                    program: bin.to_owned(),
                    source,
                })
            })?;
            let mut broker = Broker {
                child: Some(child),
                port,
                log,
            };
            match broker.wait_ready() {
                Ok(()) => return Ok(broker),
                Err(reason) => {
                    broker.stop();
                    let port_taken = reason.contains("in use");
                    last = reason;
                    if !port_taken || attempt == START_ATTEMPTS {
                        break;
                    }
                }
            }
        }
        Err(StartError::Candidate(last))
    }

    /// Polls until the port accepts a TCP connection, the broker exits, or [`READY_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if interrupted() {
                return Err("interrupted".into());
            }
            self.check_alive()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            thread::sleep(POLL);
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Err(format!(
            "broker did not accept connections on port {} within {READY_TIMEOUT:?} (log: {})",
            self.port,
            tail(&log, 2)
        ))
    }

    /// `Err` with the broker's last log lines if it has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err("broker already stopped".into());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                Err(format!("broker exited ({status}): {}", tail(&log, 2)))
            }
            Err(e) => Err(format!("cannot check the broker: {e}")),
        }
    }

    /// Stops the broker: SIGTERM to its PID, up to [`STOP_TIMEOUT`] for it to exit, then SIGKILL.
    /// Returns whether it had to be killed.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        // The PID is our child's and has not been reaped yet, so it cannot have been reused.
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a valid signal number on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        match wait_until(&mut child, Instant::now() + STOP_TIMEOUT, false) {
            Ok(Some(_)) => false,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_configs() {
        let pinned = Candidate {
            placement: "all/cores".into(),
            shards: 2,
            cpu_set: Some(vec![0, 1]),
        };
        let text = broker_config(&pinned, 4321);
        assert!(text.contains("\nlistener 4321 127.0.0.1\n"));
        assert!(text.contains("\nallow_anonymous true\n"));
        assert!(
            text.ends_with("shards 2\ncpu_affinity true\ncpu_set 0-1\n"),
            "{text}"
        );
        let unpinned = Candidate {
            placement: "unpinned".into(),
            shards: 1,
            cpu_set: None,
        };
        let text = broker_config(&unpinned, 4321);
        assert!(text.ends_with("shards 1\ncpu_affinity false\n"), "{text}");
        assert!(!text.contains("cpu_set"));
    }

    #[test]
    fn free_ports_are_bindable() {
        // A port free a moment ago is in the ephemeral range: a connection of a test running
        // beside this one may take it as its local port before the bind below (CI saw
        // AddrInUse once). Ten tries: a `free_port` that handed out taken ports fails them all.
        let bound = (0..10).any(|_| {
            let p = free_port().unwrap();
            assert_ne!(p, 0);
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
        });
        assert!(bound, "no port free_port gave could be bound");
    }

    #[test]
    fn a_broker_that_exits_is_a_candidate_failure() {
        // `false` exits at once: the start must report it, not wait out READY_TIMEOUT.
        let dir = tempfile::tempdir().unwrap();
        let c = Candidate {
            placement: "unpinned".into(),
            shards: 1,
            cpu_set: None,
        };
        let started = Instant::now();
        match Broker::start(Path::new("false"), &c, dir.path(), 0) {
            Err(StartError::Candidate(reason)) => assert!(reason.contains("exited"), "{reason}"),
            Err(StartError::Fatal(e)) => panic!("fatal: {e}"),
            Ok(_) => panic!("`false` cannot be a broker"),
        }
        assert!(started.elapsed() < READY_TIMEOUT);
        assert!(matches!(
            Broker::start(Path::new("/nonexistent/shardmq"), &c, dir.path(), 1),
            Err(StartError::Fatal(TuneError::Spawn { .. }))
        ));
    }
}
