//! Running child processes with bounded waits: every child this tool starts is waited for with a
//! deadline, killed by its own PID when the deadline passes, and dies with this tool if it is killed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::TuneError;

/// How often a waiting loop looks at its child again. Short enough not to add measurable time to a
/// sweep, long enough not to burn a CPU the broker is being measured on.
pub const POLL: Duration = Duration::from_millis(20);

/// Set by SIGINT, SIGTERM or SIGHUP. Waiting loops look at it, so that an interrupted sweep unwinds
/// normally: its broker is stopped and its temporary directory removed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to [`interrupted`] instead of killing the process.
pub fn install_interrupt_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: on_signal is an extern "C" fn that only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Whether a stop was asked for (Ctrl-C, kill).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Asks the kernel to send `signal` to the child when this process dies, so that an interrupted sweep
/// (Ctrl-C, kill) leaves no broker or load generator behind.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: the closure runs between fork and exec and only makes the async-signal-safe prctl call.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Restricts the child (and every thread it starts) to `cpus`.
pub fn restrict_cpus(cmd: &mut Command, cpus: &[usize]) {
    // Built before fork: nothing may allocate between fork and exec.
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET only writes within it for cpu < CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity is async-signal-safe and reads the copied set only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Waits for `child` until `deadline`; `None` if it is still running then. When `interruptible`, fails
/// with `ErrorKind::Interrupted` as soon as [`interrupted`] (the child is left running for the caller to
/// stop); stopping a child after an interrupt waits without that check.
pub fn wait_until(
    child: &mut Child,
    deadline: Instant,
    interruptible: bool,
) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if interruptible && interrupted() {
            return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Captured {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `cmd` to completion with its output captured, killing it (SIGKILL, by PID) after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Result<Captured, TuneError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(cmd, libc::SIGKILL);
    let program = std::path::PathBuf::from(cmd.get_program());
    let mut child = cmd
        .spawn()
        .map_err(|source| TuneError::Spawn { program, source })?;
    // Pipes are drained on their own threads so that a chatty child cannot block on a full pipe while
    // this thread waits for it to exit.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let mut bytes = Vec::new();
                let _ = p.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let waited = wait_until(&mut child, Instant::now() + limit, true);
    let status = match waited {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = out.join();
            let _ = err.join();
            return Err(match waited {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => TuneError::Interrupted,
                Err(source) => TuneError::Io {
                    what: format!("waiting for {what}"),
                    source,
                },
                Ok(_) => TuneError::Timeout {
                    what: what.to_owned(),
                    after: limit,
                },
            });
        }
    };
    Ok(Captured {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The last `n` lines of `text`, for error messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let c = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
            "sh",
        )
        .unwrap();
        assert_eq!(c.status.code(), Some(3));
        assert_eq!(c.stdout, "out\n");
        assert_eq!(c.stderr, "err\n");
    }

    #[test]
    fn kills_a_child_that_overruns() {
        let started = Instant::now();
        let r = run_bounded(
            Command::new("sleep").arg("30"),
            Duration::from_millis(200),
            "sleep",
        );
        assert!(matches!(r, Err(TuneError::Timeout { .. })), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn tails_lines() {
        assert_eq!(tail("a\nb\n\nc\n", 2), "b | c");
        assert_eq!(tail("", 2), "");
    }
}
