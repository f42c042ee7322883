//! The process limits the broker depends on: at start-up, the soft memlock and open-files limits
//! are raised to the hard ones (io_uring needs the first, every client is a descriptor of the
//! second), and a `max_connections` that the open-files limit cannot give is said in the log, with
//! how to raise it (issue 18: the same findings as `shardmq-tune probe`, tuning/src/checks.rs).

/// Descriptors the broker holds besides its clients': per shard its io_uring rings, eventfds and
/// listening sockets (one per listener address), and a persistence log; and for the process its
/// log file, `pid_file`, the ticker. Generous: a shortfall warning that comes a little early is
/// better than one that does not come.
const SPARE_PER_SHARD: usize = 16;
const SPARE_FOR_PROCESS: usize = 64;

/// glommio registers io_uring memory; raise the soft memlock limit to the hard one (glommio refuses to
/// start under 512 KiB). Failure is harmless when the limit is already large enough (root, or a
/// generous default).
pub fn raise_memlock_limit() {
    raise_soft_limit(libc::RLIMIT_MEMLOCK);
}

/// Every client is a file descriptor: raise the soft open-files limit to the hard one so the broker can
/// hold as many connections as the system allows (the usual soft default, 1024, is far too low).
pub fn raise_nofile_limit() {
    raise_soft_limit(libc::RLIMIT_NOFILE);
}

fn raise_soft_limit(resource: libc::__rlimit_resource_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a local struct.
    unsafe {
        if libc::getrlimit(resource, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(resource, &lim);
        }
    }
}

/// The soft open-files limit now (after [`raise_nofile_limit`]); None when it cannot be read or is
/// unlimited.
fn nofile_soft() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid resource and a pointer to a local struct.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The warning for listeners whose `max_connections` add up to `wanted` clients (0: all unlimited)
/// on `shards` shards when this process may not open that many files; None when it may.
pub fn nofile_shortfall(wanted: usize, shards: usize) -> Option<String> {
    shortfall(wanted, shards, nofile_soft()?)
}

fn shortfall(wanted: usize, shards: usize, soft: u64) -> Option<String> {
    let spare = SPARE_FOR_PROCESS + SPARE_PER_SHARD * shards;
    let need = (wanted + spare) as u64;
    if wanted == 0 || soft >= need {
        return None;
    }
    let clients = soft.saturating_sub(spare as u64);
    let want = need.next_power_of_two().max(1 << 20);
    Some(format!(
        "Warning: max_connections adds up to {wanted}, but this process may open only {soft} files \
         (RLIMIT_NOFILE), about {clients} clients: the broker cannot accept more. \
         Raise it before starting the broker: `ulimit -n {want}` in its shell, \
         `LimitNOFILE={want}` in its systemd unit, or `<user> hard nofile {want}` in \
         /etc/security/limits.conf (above fs.nr_open, raise that first: `sysctl -w fs.nr_open={want}`)."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_descriptors_or_no_limit_says_nothing() {
        assert_eq!(
            shortfall(0, 64, 1024),
            None,
            "unlimited listeners: nothing to reach"
        );
        assert_eq!(shortfall(1000, 2, 1_048_576), None);
        // Exactly enough, spares included.
        assert_eq!(shortfall(1000, 2, 1000 + 64 + 32), None);
    }

    #[test]
    fn a_shortfall_says_how_many_clients_fit_and_how_to_raise_the_limit() {
        let w = shortfall(100_000, 4, 65_536).expect("a warning");
        assert!(w.contains("adds up to 100000"), "{w}");
        assert!(w.contains("only 65536 files"), "{w}");
        assert!(
            w.contains(&format!("about {} clients", 65_536 - 64 - 64)),
            "{w}"
        );
        assert!(w.contains("ulimit -n 1048576"), "{w}");
        assert!(w.contains("LimitNOFILE=1048576"), "{w}");
        let w = shortfall(2_000_000, 64, 1_048_576).expect("a warning");
        assert!(w.contains("ulimit -n 2097152"), "{w}");
    }
}
