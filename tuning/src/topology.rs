//! CPU topology: which CPUs this process may use, how they group into physical cores (SMT siblings), and
//! which NUMA node each belongs to. Read from sysfs; tests build synthetic ones.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::TuneError;
use crate::hostfs::HostFs;

/// A malformed kernel CPU list (the `cpulist` / `thread_siblings_list` format, e.g. `0-3,8-11`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// A part that is not `N` or `N-M`.
    #[error("bad CPU list part {0:?} (expected N or N-M)")]
    BadPart(String),
    /// A range whose end is below its start.
    #[error("CPU range {0}-{1} runs backwards")]
    Backwards(usize, usize),
}

/// Parses a kernel CPU list: comma-separated CPU numbers and inclusive ranges, e.g. `0-3,8-11`. An empty
/// string is the empty list (a memory-only NUMA node has an empty `cpulist`). The order is kept.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, CpuListError> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Ok(cpus);
    }
    for part in text.split(',') {
        let part = part.trim();
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| CpuListError::BadPart(part.to_owned()))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if hi < lo {
                    return Err(CpuListError::Backwards(lo, hi));
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(number(part)?),
        }
    }
    Ok(cpus)
}

/// Writes `cpus` as a CPU list in the given order, folding ascending runs into ranges: `[0,1,2,3,8]` is
/// `0-3,8`. The order matters to the broker (`cpu_set` pins shard i to the i-th CPU), so nothing is sorted.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if j > i {
            parts.push(format!("{start}-{}", cpus[j]));
        } else {
            parts.push(start.to_string());
        }
        i = j + 1;
    }
    parts.join(",")
}

/// Groups CPUs into physical cores from each CPU's `thread_siblings_list`. Only CPUs in `available` are
/// kept (a sibling outside this process's mask cannot run a shard anyway). Two CPUs share a core when
/// their sibling lists, restricted to `available`, are equal; a CPU missing from its own list (which
/// sysfs never does) is added so that every CPU lands in exactly one core. Cores are ordered by their
/// lowest CPU, CPUs within a core ascending.
pub fn group_siblings(siblings: &[(usize, Vec<usize>)], available: &[usize]) -> Vec<Vec<usize>> {
    let mut cores: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for (cpu, list) in siblings {
        if !available.contains(cpu) {
            continue;
        }
        let mut key: Vec<usize> = list
            .iter()
            .copied()
            .filter(|c| available.contains(c))
            .collect();
        if !key.contains(cpu) {
            key.push(*cpu);
        }
        key.sort_unstable();
        key.dedup();
        cores.entry(key).or_default().push(*cpu);
    }
    let mut out: Vec<Vec<usize>> = cores
        .into_values()
        .map(|mut members| {
            members.sort_unstable();
            members
        })
        .collect();
    out.sort_by_key(|core| core[0]);
    out
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    /// Node number (`nodeN`).
    pub id: usize,
    /// The node's CPUs that this process may use, ascending.
    pub cpus: Vec<usize>,
    /// All of the node's CPUs, as sysfs lists them.
    pub all_cpus: Vec<usize>,
    /// `MemTotal` of the node in KiB, when its meminfo is readable.
    pub mem_total_kib: Option<u64>,
    /// `MemFree` of the node in KiB.
    pub mem_free_kib: Option<u64>,
}

/// The CPUs a sweep can place shards on, and their structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// CPUs this process may run on (its sched_getaffinity mask), ascending.
    pub cpus: Vec<usize>,
    /// Physical cores made of those CPUs: each core's SMT siblings, see [`group_siblings`].
    pub cores: Vec<Vec<usize>>,
    /// NUMA nodes, ascending by id; one node 0 holding every CPU when the kernel shows none.
    pub nodes: Vec<NumaNode>,
}

impl Topology {
    /// Reads the topology of `available` CPUs from `fs` (`/sys/devices/system/{cpu,node}`).
    pub fn read(fs: &HostFs, available: &[usize]) -> Result<Topology, TuneError> {
        let mut siblings = Vec::with_capacity(available.len());
        for &cpu in available {
            let rel = format!("sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
            // Without the file (very old kernels, some containers) the CPU is its own core.
            let list = match fs.read(&rel) {
                Ok(text) => parse_cpu_list(&text).map_err(|source| TuneError::CpuList {
                    path: fs.path(&rel),
                    source,
                })?,
                Err(_) => vec![cpu],
            };
            siblings.push((cpu, list));
        }
        let cores = group_siblings(&siblings, available);

        let mut nodes = Vec::new();
        // A kernel without CONFIG_NUMA has no node directory: one node, memory from /proc/meminfo.
        if let Ok(entries) = fs.numbered_entries("sys/devices/system/node", "node") {
            for (id, name) in entries {
                let rel = format!("sys/devices/system/node/{name}/cpulist");
                let text = fs.read(&rel).map_err(|source| TuneError::Read {
                    path: fs.path(&rel),
                    source,
                })?;
                let all_cpus = parse_cpu_list(&text).map_err(|source| TuneError::CpuList {
                    path: fs.path(&rel),
                    source,
                })?;
                let meminfo = fs
                    .read(&format!("sys/devices/system/node/{name}/meminfo"))
                    .unwrap_or_default();
                nodes.push(NumaNode {
                    id,
                    cpus: all_cpus
                        .iter()
                        .copied()
                        .filter(|c| available.contains(c))
                        .collect(),
                    all_cpus,
                    mem_total_kib: meminfo_kib(&meminfo, "MemTotal"),
                    mem_free_kib: meminfo_kib(&meminfo, "MemFree"),
                });
            }
        }
        if nodes.is_empty() {
            let meminfo = fs.read("proc/meminfo").unwrap_or_default();
            nodes.push(NumaNode {
                id: 0,
                cpus: available.to_vec(),
                all_cpus: available.to_vec(),
                mem_total_kib: meminfo_kib(&meminfo, "MemTotal"),
                mem_free_kib: meminfo_kib(&meminfo, "MemFree"),
            });
        }
        Ok(Topology {
            cpus: available.to_vec(),
            cores,
            nodes,
        })
    }

    /// A machine numbered the way Linux numbers x86 servers: `nodes` × `cores_per_node` cores with
    /// `threads` SMT threads each; CPU `t*N + n*C + c` is thread t of core c on node n (so with 2 nodes
    /// of 8 cores and 2 threads, node 0 is `0-7,16-23` and CPU 0's sibling is 16). For tests and
    /// `sweep --list --synthetic`.
    pub fn synthetic(nodes: usize, cores_per_node: usize, threads: usize) -> Topology {
        let per_thread = nodes * cores_per_node;
        let id = |n: usize, c: usize, t: usize| t * per_thread + n * cores_per_node + c;
        let mut cores = Vec::new();
        let mut node_list = Vec::new();
        for n in 0..nodes {
            let mut cpus = Vec::new();
            for c in 0..cores_per_node {
                let core: Vec<usize> = (0..threads).map(|t| id(n, c, t)).collect();
                cpus.extend(&core);
                cores.push(core);
            }
            cpus.sort_unstable();
            node_list.push(NumaNode {
                id: n,
                cpus: cpus.clone(),
                all_cpus: cpus,
                mem_total_kib: None,
                mem_free_kib: None,
            });
        }
        cores.sort_by_key(|core| core[0]);
        Topology {
            cpus: (0..per_thread * threads).collect(),
            cores,
            nodes: node_list,
        }
    }

    /// Whether any core runs more than one hardware thread.
    pub fn has_smt(&self) -> bool {
        self.cores.iter().any(|c| c.len() > 1)
    }

    /// Nodes that have at least one usable CPU.
    pub fn cpu_nodes(&self) -> impl Iterator<Item = &NumaNode> {
        self.nodes.iter().filter(|n| !n.cpus.is_empty())
    }

    /// The node `cpu` belongs to (0 when no node lists it).
    pub fn node_of(&self, cpu: usize) -> usize {
        self.nodes
            .iter()
            .find(|n| n.all_cpus.contains(&cpu))
            .map_or(0, |n| n.id)
    }

    /// One line: "2 CPUs (2 cores, no SMT), 1 NUMA node".
    pub fn summary(&self) -> String {
        let threads = self.cores.iter().map(Vec::len).max().unwrap_or(1);
        let smt = if threads > 1 {
            format!("{threads} threads per core")
        } else {
            "no SMT".to_owned()
        };
        let nodes = self.cpu_nodes().count();
        format!(
            "{} CPU{} ({} core{}, {smt}), {nodes} NUMA node{}",
            self.cpus.len(),
            plural(self.cpus.len()),
            self.cores.len(),
            plural(self.cores.len()),
            plural(nodes),
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A `... KEY: N kB` figure from a (node) meminfo text, in KiB.
fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        // Node meminfo lines read "Node 0 MemTotal:", /proc/meminfo lines "MemTotal:".
        if name.split_whitespace().last()? != key {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// CPUs this process may run on: its sched_getaffinity(2) mask, ascending. The broker counts the same
/// way when `shards` is not set, so the sweep's "all CPUs" is the broker's.
pub fn available_cpus() -> Result<Vec<usize>, TuneError> {
    // SAFETY: cpu_set_t is plain data for which all-zeroes is the empty set; sched_getaffinity writes at
    // most size_of::<cpu_set_t>() bytes into it and CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(TuneError::Affinity(std::io::Error::last_os_error()));
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8-11\n").unwrap(),
            vec![0, 1, 2, 3, 8, 9, 10, 11]
        );
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        assert_eq!(parse_cpu_list("0,2 , 4").unwrap(), vec![0, 2, 4]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("  \n").unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn rejects_malformed_cpu_lists() {
        assert_eq!(parse_cpu_list("3-1"), Err(CpuListError::Backwards(3, 1)));
        assert!(matches!(parse_cpu_list("a"), Err(CpuListError::BadPart(_))));
        assert!(matches!(
            parse_cpu_list("1,,2"),
            Err(CpuListError::BadPart(_))
        ));
        assert!(matches!(
            parse_cpu_list("1-"),
            Err(CpuListError::BadPart(_))
        ));
    }

    #[test]
    fn formats_cpu_lists_in_order() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 9, 10, 11]), "0-3,8-11");
        assert_eq!(format_cpu_list(&[0, 16, 1, 17]), "0,16,1,17");
        assert_eq!(format_cpu_list(&[4]), "4");
        assert_eq!(format_cpu_list(&[]), "");
        for text in ["0-3,8-11", "0,16,1,17", "7", "0-1"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(text).unwrap()), text);
        }
    }

    #[test]
    fn groups_smt_siblings_into_cores() {
        // 4 cores × 2 threads, Linux numbering: CPU n and n+4 are siblings.
        let siblings: Vec<(usize, Vec<usize>)> = (0..8)
            .map(|cpu| (cpu, vec![cpu % 4, cpu % 4 + 4]))
            .collect();
        let all: Vec<usize> = (0..8).collect();
        assert_eq!(
            group_siblings(&siblings, &all),
            vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]]
        );
        // A mask without CPU 5 and 6: core 1 keeps CPU 1 only, core 2 CPU 2 only.
        let some = [0, 1, 2, 3, 4, 7];
        assert_eq!(
            group_siblings(&siblings, &some),
            vec![vec![0, 4], vec![1], vec![2], vec![3, 7]]
        );
    }

    #[test]
    fn no_smt_gives_one_cpu_per_core() {
        let siblings = vec![(0, vec![0]), (1, vec![1])];
        assert_eq!(group_siblings(&siblings, &[0, 1]), vec![vec![0], vec![1]]);
    }

    #[test]
    fn synthetic_topology_matches_linux_numbering() {
        let t = Topology::synthetic(2, 8, 2);
        assert_eq!(t.cpus.len(), 32);
        assert_eq!(t.cores.len(), 16);
        assert_eq!(t.cores[0], vec![0, 16]);
        assert_eq!(t.nodes[0].cpus, parse_cpu_list("0-7,16-23").unwrap());
        assert_eq!(t.nodes[1].cpus, parse_cpu_list("8-15,24-31").unwrap());
        assert_eq!(t.node_of(24), 1);
        assert!(t.has_smt());
        assert_eq!(
            t.summary(),
            "32 CPUs (16 cores, 2 threads per core), 2 NUMA nodes"
        );
        assert!(!Topology::synthetic(1, 2, 1).has_smt());
    }

    #[test]
    fn reads_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let fs = HostFs::at(dir.path());
        let write = |rel: &str, text: &str| {
            let p = fs.path(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        for cpu in 0..4 {
            write(
                &format!("sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
                &format!("{},{}\n", cpu % 2, cpu % 2 + 2),
            );
        }
        write("sys/devices/system/node/node0/cpulist", "0-3\n");
        write(
            "sys/devices/system/node/node0/meminfo",
            "Node 0 MemTotal:        6252280 kB\nNode 0 MemFree:         4252012 kB\n",
        );
        write("sys/devices/system/node/node1/cpulist", "\n");
        let t = Topology::read(&fs, &[0, 1, 2, 3]).unwrap();
        assert_eq!(t.cores, vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.nodes[0].mem_total_kib, Some(6_252_280));
        assert_eq!(t.nodes[0].mem_free_kib, Some(4_252_012));
        assert_eq!(t.cpu_nodes().count(), 1, "the memory-only node has no CPUs");
    }

    #[test]
    fn reads_the_real_host() {
        let cpus = available_cpus().unwrap();
        assert!(!cpus.is_empty());
        let t = Topology::read(&HostFs::real(), &cpus).unwrap();
        let in_cores: usize = t.cores.iter().map(Vec::len).sum();
        assert_eq!(in_cores, cpus.len(), "every CPU is in exactly one core");
    }
}
