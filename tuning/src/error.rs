//! The tool's errors. Each names what was being done and on which file or program, so that the message
//! printed by `main` is enough to act on.

use std::path::PathBuf;
use std::time::Duration;

use crate::topology::CpuListError;

/// Everything that stops `probe` or `sweep`.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// sched_getaffinity(2) failed: without the CPU mask nothing can be planned.
    #[error("cannot read this process's CPU affinity: {0}")]
    Affinity(#[source] std::io::Error),
    /// A topology file that must exist could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CPU list in sysfs was not in the kernel's list format.
    #[error("{}: {source}", path.display())]
    CpuList {
        /// The file holding the list.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: CpuListError,
    },
    /// A program the sweep needs was not found.
    #[error("{what} not found: looked for {name} next to {} and on PATH; pass {flag} PATH (build it with `cargo build --release -p {package}`)", beside.display())]
    NotFound {
        /// "broker" or "load generator".
        what: &'static str,
        /// The executable name looked for.
        name: &'static str,
        /// The directory looked in first (this tool's own).
        beside: PathBuf,
        /// The command-line flag that names it.
        flag: &'static str,
        /// The cargo package that builds it.
        package: &'static str,
    },
    /// A program could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A child did not finish in time and was killed.
    #[error("{what} did not finish within {after:?}; killed it")]
    Timeout {
        /// What was running.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The load generator refused its arguments (exit status 2): its command line is not the one this
    /// tool speaks, so every further run would fail the same way.
    #[error("{} rejected its arguments ({args}): {stderr}", program.display())]
    LoadgenUsage {
        /// The load generator.
        program: PathBuf,
        /// The arguments it was given.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker refused the snippet this tool wrote (`shardmq -t -c FILE`).
    #[error("the broker rejects the written config {}: {output}", path.display())]
    SnippetRejected {
        /// The snippet file.
        path: PathBuf,
        /// What the broker said.
        output: String,
    },
    /// Some other I/O failure (temporary directory, pipes).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// SIGINT, SIGTERM or SIGHUP arrived; what was running has been stopped.
    #[error("interrupted")]
    Interrupted,
    /// A command-line value made no sense.
    #[error("{0}")]
    Usage(String),
}
