#![recursion_limit = "256"]
//! loadgen: the MQTT load generator bundled with shardmq.
//!
//! Connects publishers, subscribers and idle clients, runs a warmup then a measure window, drains, and
//! reports throughput, loss, duplicates, ordering and end-to-end latency (HDR histogram). Every packet
//! goes through shardmq's sans-IO codec. See loadgen/README.md.
//!
//! Exit codes: 0 = the run completed; 1 = setup failed (could not resolve, connect, subscribe, ...);
//! 2 = bad arguments; 3 = the run completed but connections failed during it (the report says which).

mod args;
mod client;
mod compare;
mod conn;
mod hgrm;
mod pacer;
mod report;
mod retained;
mod roles;
mod run;
mod scenario;
mod shared;
mod tls;
mod track;
mod workers;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::args::Args;
use crate::run::run_single;
use crate::scenario::Plan;
use crate::tls::TlsSetup;
use crate::workers::Workers;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
fn raise_nofile_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(lim.rlim_cur)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shardmq-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(ca) = &args.tls_ca {
        let cert_key = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
        match TlsSetup::load(ca, cert_key, args.tls_server_name.as_deref()) {
            Ok(t) => args.tls = Some(Arc::new(t)),
            Err(e) => {
                eprintln!("shardmq-loadgen: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let total = plan.publishers + plan.subscribers + plan.idle;
    if let Some(limit) = raise_nofile_limit() {
        if (total as libc::rlim_t).saturating_add(64) > limit {
            eprintln!(
                "shardmq-loadgen: warning: {total} connections but the open files limit is {limit}; raise it (ulimit -Hn)"
            );
        }
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let workers = match Workers::start(threads) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("shardmq-loadgen: cannot start the worker threads: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardmq-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        if args.compare.is_empty() {
            run_single(&args, &plan, &workers).await
        } else {
            compare::run(&args, &plan, &workers, &args.compare).await
        }
    });
    workers.stop();
    code
}

/// Prints a setup failure (as JSON too when asked) and returns exit code 1.
fn setup_failed(json: bool, message: &str) -> ExitCode {
    eprintln!("shardmq-loadgen: setup failed: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "setup_failed": true, "error": message})
        );
    }
    ExitCode::from(1)
}
