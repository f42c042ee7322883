//! Starting the broker binary: a shard that cannot start is a start-up error, not a silent broker.
//!
//! What is checked: with a memlock limit under glommio's 512 KiB minimum, no executor can be built;
//! `shardmq` must then exit non-zero with an error naming the shard and the limit, instead of logging
//! that it runs while no shard accepts connections.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn a_memlock_limit_too_low_for_glommio_is_a_startup_error() {
    let bin = env!("CARGO_BIN_EXE_shardmq");
    // A free port (the command line takes no port 0); the broker fails before serving on it anyway.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // Soft and hard limit both: the broker raises its soft limit to the hard one at start.
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sl 511 && ulimit -Hl 511 && exec {bin} -p {port}"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("wait for shardmq"),
        Err(_) => {
            // Still running: the failure went unnoticed. Stop the process we started, by its PID.
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("shardmq kept running with no shard able to start");
        }
    };
    let log = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "exit status {:?}: {log}",
        output.status
    );
    assert!(
        log.contains("cannot start shard") && log.contains("memlock"),
        "log: {log}"
    );
}
