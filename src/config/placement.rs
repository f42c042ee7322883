//! Where the shards run: how many there are and which CPU each is pinned to, decided from `shards`,
//! `cpu_affinity` and `cpu_set` on the CPUs this process may use (its sched_getaffinity(2) mask).
//! `crate::server` asks for it through [`super::Config::shard_placement`] when the broker starts; the
//! parser (`parser.rs`) uses [`parse_cpu_list`] to read `cpu_set`.

use std::io;

use super::{Config, ConfigError, ValueProblem};

/// How shards map onto CPUs; from [`Config::shard_placement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlacement {
    /// Number of shards to start (at least 1).
    pub shards: usize,
    /// CPU each shard is pinned to, indexed by shard id; all `None` unless pinning is asked for (`cpu_set`
    /// or `cpu_affinity true`), and when there are more shards than CPUs (pinning two executors to one
    /// core would make them fight).
    pub cpus: Vec<Option<usize>>,
}

/// CPUs this process may run on (its sched_getaffinity(2) mask), ascending.
pub fn available_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data for which all-zeroes is the empty set; sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

/// The placement `config` asks for on the usable CPUs `available` (sorted ascending): the shards run on
/// `cpu_set`'s CPUs, or on every available one, one shard per CPU unless `shards` says how many; they are
/// pinned when `cpu_affinity` (by default: whether `cpu_set` is given) asks for it and there are no more
/// shards than CPUs. [`Config::shard_placement_on`] is the public entry point.
pub(super) fn place(config: &Config, available: &[usize]) -> Result<ShardPlacement, ConfigError> {
    let cores: Vec<usize> = match &config.cpu_set {
        Some(set) => {
            if let Some(&cpu) = set.iter().find(|c| !available.contains(c)) {
                return Err(ConfigError::CpuNotAvailable {
                    cpu,
                    available: available.to_vec(),
                });
            }
            set.clone()
        }
        None => available.to_vec(),
    };
    let shards = match config.shards {
        Some(n) => n.get(),
        // One per CPU, up to what a `ShardSet` holds (`shards` is refused above that), less the
        // cluster link's id in cluster mode.
        None => cores.len().clamp(
            1,
            crate::index::MAX_SHARDS - usize::from(config.cluster.is_some()),
        ),
    };
    let pin = config.cpu_affinity.unwrap_or(config.cpu_set.is_some()) && shards <= cores.len();
    let cpus = (0..shards)
        .map(|i| if pin { cores.get(i).copied() } else { None })
        .collect();
    Ok(ShardPlacement { shards, cpus })
}

/// Parses a CPU list such as `0-3,8-11` (spaces allowed after commas).
pub(super) fn parse_cpu_list(text: &str) -> Result<Vec<usize>, ValueProblem> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| ValueProblem::BadCpuList)?;
        let hi: usize = hi.parse().map_err(|_| ValueProblem::BadCpuList)?;
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            return Err(ValueProblem::BadCpuList);
        }
        for cpu in lo..=hi {
            if cpus.contains(&cpu) {
                return Err(ValueProblem::RepeatedCpu(cpu));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_cpus_is_not_empty() {
        let cpus = available_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}
