//! `shardmq [-c FILE] [-p PORT] [-v] [-d]`: the broker binary, with Mosquitto's command line.
//! `shardmq passwd ...` (or the binary run as `shardmq-passwd`) is `mosquitto_passwd`.

use std::process::ExitCode;

use clap::Parser;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shardmq::cli::{self, Args, CONFIG_OK_MESSAGE};
use shardmq::config::DEFAULT_CONFIG_TEXT;
use shardmq::logging::{self, log_type, LogDest};
use shardmq::{process, server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    // `shardmq passwd ARGS` and a `shardmq-passwd` link manage password files instead of serving.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called_as_passwd = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name == "shardmq-passwd");
    let passwd_args = if called_as_passwd {
        Some(&argv[1..])
    } else if argv.get(1).is_some_and(|a| a == "passwd") {
        Some(&argv[2..])
    } else {
        None
    };
    if let Some(rest) = passwd_args {
        let Some(rest) = rest
            .iter()
            .map(|a| a.clone().into_string().ok())
            .collect::<Option<Vec<String>>>()
        else {
            eprintln!("Error: arguments must be valid UTF-8.");
            return ExitCode::FAILURE;
        };
        return ExitCode::from(shardmq::passwd::run(&rest));
    }
    // No transparent huge pages for this process. Every thread (a shard and its blocking-pool
    // thread) has its own small mimalloc heap, and with THP set to `always` (as on this VM and
    // many distributions) the first touch of each heap's 2 MiB region made all of it resident:
    // 13 MB per idle shard at 64 shards (5.6 MB without), 3.5 KB per idle client (2.8 KB without),
    // and no measurable throughput difference (docs/PERFORMANCE.md, "Issue 18"). Only child
    // processes would inherit the flag, and the broker starts none.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // A write past RLIMIT_FSIZE fails with EFBIG instead of killing the broker: a persistence log
    // that cannot grow is handled like a full disk (acknowledgements wait, `shard::journal`).
    // SAFETY: setting a signal's disposition to SIG_IGN before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG_TEXT}");
        return ExitCode::SUCCESS;
    }
    if args.test_config {
        return match cli::check_config(&args) {
            Ok(_) => {
                println!("{CONFIG_OK_MESSAGE}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match cli::load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.daemon {
        if let Err(e) = daemonise() {
            eprintln!("Error: cannot run in the background: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Signals are taken synchronously by this thread (sigwait below); block them before any other
    // thread exists so every shard thread inherits the mask.
    let signals = signal_set(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    // SAFETY: a valid, initialised sigset; blocking signals for the calling thread.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };

    // Log files that do not exist yet are created (as root, when started as root) by logging::init;
    // they are handed to the `user` account with the pid file.
    let new_log_files: Vec<PathBuf> = config
        .log_dest
        .iter()
        .filter_map(|d| match d {
            LogDest::File(path) if !path.exists() => Some(path.clone()),
            _ => None,
        })
        .collect();
    let log = match logging::init(&config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(target: log_type::NOTICE, "shardmq version {VERSION} starting");
    match &config.config_file {
        Some(path) => {
            tracing::info!(target: log_type::NOTICE, "Config loaded from {}.", path.display())
        }
        None => tracing::info!(target: log_type::NOTICE, "Using default config."),
    }
    logging::log_config_notices(&config);
    // Decided before binding: an unknown `user` stops the broker before it serves anyone.
    let user_plan = match process::plan_user(config.user.as_deref()) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(target: log_type::ERROR, "{e}");
            log.flush();
            return ExitCode::FAILURE;
        }
    };
    // Re-read on SIGHUP, as Mosquitto does: the password, ACL and TLS files it names.
    let reload = config.clone();
    let log_files: Vec<PathBuf> = config
        .log_dest
        .iter()
        .filter_map(|d| match d {
            LogDest::File(path) => Some(path.clone()),
            _ => None,
        })
        .collect();
    let pid_path = config.pid_file.clone();
    let broker = match server::start_held(config) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(target: log_type::ERROR, "Error: {e}");
            log.flush();
            return ExitCode::FAILURE;
        }
    };
    for addr in broker.bound_addrs() {
        let family = if addr.is_ipv6() { "ipv6" } else { "ipv4" };
        tracing::info!(target: log_type::NOTICE, "Opening {family} listen socket on port {} ({}).", addr.port(), addr.ip());
    }
    // Created as the starting user (root: a root-owned /run works); the pid goes in once the broker is
    // up and runs as its final user (after -d forked, so the daemon's pid).
    let mut pid_file = match pid_path
        .as_deref()
        .map(process::PidFile::create)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(target: log_type::ERROR, "{e}");
            broker.shutdown();
            log.flush();
            return ExitCode::FAILURE;
        }
    };
    let mut hand_over: Vec<&Path> = new_log_files.iter().map(PathBuf::as_path).collect();
    hand_over.extend(pid_file.iter().filter(|p| p.created()).map(|p| p.path()));
    // Created as root, appended to and replaced (compaction) by the user the broker runs as.
    hand_over.extend(broker.persistence_paths().iter().map(PathBuf::as_path));
    match process::drop_privileges(&user_plan, &hand_over) {
        Ok(Some(account)) => {
            let mut later = process::LaterAccess {
                log_files: log_files.iter().map(PathBuf::as_path).collect(),
                pid_file: pid_file.as_ref().map(|p| p.path()),
                ..Default::default()
            };
            later.reread.extend(
                reload
                    .password_file
                    .as_deref()
                    .map(|p| ("password_file", p)),
            );
            later
                .reread
                .extend(reload.acl_file.as_deref().map(|p| ("acl_file", p)));
            later
                .reread
                .extend(reload.scram_file.as_deref().map(|p| ("scram_file", p)));
            for own in reload.listeners.iter().filter_map(|l| l.security.as_ref()) {
                later
                    .reread
                    .extend(own.password_file.as_deref().map(|p| ("password_file", p)));
                later
                    .reread
                    .extend(own.acl_file.as_deref().map(|p| ("acl_file", p)));
            }
            for tls in reload.listeners.iter().map(|l| &l.tls) {
                for (key, path) in [
                    ("certfile", &tls.certfile),
                    ("keyfile", &tls.keyfile),
                    ("cafile", &tls.cafile),
                    ("crlfile", &tls.crlfile),
                ] {
                    later.reread.extend(path.as_deref().map(|p| (key, p)));
                }
            }
            process::check_access_after_drop(&account, &later);
        }
        Ok(None) => {}
        Err(e) => return abort_start(&e, broker, pid_file, &log),
    }
    broker.begin_writing();
    if let Some(Err(e)) = pid_file.as_mut().map(process::PidFile::write_pid) {
        return abort_start(&e, broker, pid_file, &log);
    }
    tracing::info!(target: log_type::NOTICE, "shardmq version {VERSION} running");
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the blocked signals in `signals`.
        if unsafe { libc::sigwait(&signals, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGHUP {
            // As Mosquitto does on SIGHUP: reopen the log files, read the password, ACL and TLS files
            // again. The rest of the configuration is not reloaded yet.
            tracing::info!(target: log_type::NOTICE, "Reloading config.");
            log.reopen_files();
            match server::load_security(&reload) {
                Ok(security) => {
                    if broker.reload_security(Arc::new(security), Duration::from_secs(10)) {
                        tracing::info!(target: log_type::NOTICE, "Password, ACL and TLS files reloaded.");
                    } else {
                        tracing::warn!(target: log_type::WARNING,
                            "Warning: a shard did not apply the reloaded password, ACL and TLS files within 10 s.");
                    }
                }
                // Keep serving with the files as they were; Mosquitto also keeps running.
                Err(e) => tracing::error!(target: log_type::ERROR,
                    "Error: {e}; keeping the password, ACL and TLS files loaded before."),
            }
            continue;
        }
        break;
    }
    // SIGINT or SIGTERM: as Mosquitto, publish the wills of the connected clients, then close.
    tracing::info!(target: log_type::NOTICE, "shardmq version {VERSION} terminating");
    broker.shutdown();
    if let Some(p) = pid_file {
        p.remove();
    }
    log.flush();
    ExitCode::SUCCESS
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Detach from the terminal like `mosquitto -d`: fork, new session, stdio to /dev/null. Called before
/// any thread is started.
fn daemonise() -> std::io::Result<()> {
    // SAFETY: single-threaded at this point; the parent exits immediately after a successful fork.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// A start-up step after the listeners opened failed: log why, stop the shards, take the pid file
/// back, and exit with failure.
fn abort_start(
    e: &dyn std::fmt::Display,
    broker: server::BrokerHandle,
    pid_file: Option<process::PidFile>,
    log: &logging::LogGuard,
) -> ExitCode {
    tracing::error!(target: log_type::ERROR, "{e}");
    broker.shutdown();
    if let Some(p) = pid_file {
        p.remove();
    }
    log.flush();
    ExitCode::FAILURE
}
