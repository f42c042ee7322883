//! The shard counts and placements a sweep measures, derived from the topology, with the ones that are
//! the same on this machine removed.
//!
//! A *placement* is an ordered list of CPUs; pinning N shards on it uses its first N CPUs (the broker
//! pins shard i to the i-th CPU of `cpu_set`). Placements, for each NUMA node and (on multi-node hosts)
//! spanning all of them:
//!
//! * `cores`: one hardware thread per physical core, so no two shards share a core;
//! * `smt`: both (all) threads of a core before the next core, so N shards use N/2 cores fully
//!   (only on SMT hosts);
//! * one placement that leaves CPUs to interrupts: every CPU except those NIC interrupts go to
//!   (`irq-free`), or, without such a split, every CPU but the first (`all-but-N`, on 4 CPUs or more:
//!   with 2 or 3 the remaining shards are already covered by the smaller counts).
//!
//! Spanning placements take cores from the nodes in turn (node 0, node 1, node 0, ...) so that they
//! differ from the per-node ones at every count. Each count is measured pinned on each placement and,
//! once, unpinned (the broker's default, where the kernel places the shard threads). Two candidates are
//! the same when they have the same shard count and pin to the same *set* of CPUs (which shard gets
//! which CPU does not matter: shards are symmetric).

use std::collections::HashSet;

use serde::Serialize;

use crate::topology::Topology;

/// One broker configuration to measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The placement it was made from (`unpinned`, `all/cores`, `node1/smt`, `irq-free`, ...).
    pub placement: String,
    /// `shards N`.
    pub shards: usize,
    /// `cpu_set`: the CPU each shard is pinned to; `None` = unpinned (`cpu_affinity false`).
    pub cpu_set: Option<Vec<usize>>,
}

impl Candidate {
    /// Whether the shards are pinned.
    pub fn pinned(&self) -> bool {
        self.cpu_set.is_some()
    }

    /// What makes two candidates the same on a machine: shard count and the set of CPUs pinned to.
    fn key(&self) -> (usize, Option<Vec<usize>>) {
        let set = self.cpu_set.as_ref().map(|s| {
            let mut s = s.clone();
            s.sort_unstable();
            s
        });
        (self.shards, set)
    }
}

/// An ordered list of CPUs to pin shards on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its name in the results table.
    pub name: String,
    /// CPUs in the order shards take them.
    pub cpus: Vec<usize>,
}

/// Shard counts measured on `n` CPUs: 1, 2, 4, ... below n, and n itself. `quick` keeps only 1, the
/// largest power of two up to n/2, and n.
pub fn shard_counts(n: usize, quick: bool) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut c = 1;
    while c < n {
        counts.push(c);
        c *= 2;
    }
    if n > 0 {
        counts.push(n);
    }
    if quick && counts.len() > 3 {
        let half = counts[counts.len() - 2];
        let half = if half * 2 > n { half / 2 } else { half };
        counts = vec![1, half, n];
        counts.dedup();
    }
    counts
}

/// Cores of the given nodes, taken from the nodes in turn so that a prefix spreads over all of them.
fn interleaved_cores<'a>(topo: &'a Topology, nodes: &[usize]) -> Vec<&'a Vec<usize>> {
    let per_node: Vec<Vec<&Vec<usize>>> = nodes
        .iter()
        .map(|&n| {
            topo.cores
                .iter()
                .filter(|core| topo.node_of(core[0]) == n)
                .collect()
        })
        .collect();
    let longest = per_node.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| {
            per_node
                .iter()
                .filter_map(move |cores| cores.get(i).copied())
        })
        .collect()
}

/// The placements of a scope (one node, or all of them).
fn scope_placements(topo: &Topology, scope: &str, nodes: &[usize], out: &mut Vec<Placement>) {
    let cores = interleaved_cores(topo, nodes);
    out.push(Placement {
        name: format!("{scope}/cores"),
        cpus: cores.iter().map(|c| c[0]).collect(),
    });
    if cores.iter().any(|c| c.len() > 1) {
        out.push(Placement {
            name: format!("{scope}/smt"),
            cpus: cores.iter().flat_map(|c| c.iter().copied()).collect(),
        });
    }
}

/// Every placement for `topo`. `irq_cpus` are the CPUs NIC interrupts go to (empty when unknown or
/// loopback only). `quick` measures only the first node of a multi-node host on its own (nodes are
/// normally alike).
pub fn placements(topo: &Topology, irq_cpus: &[usize], quick: bool) -> Vec<Placement> {
    let nodes: Vec<usize> = topo.cpu_nodes().map(|n| n.id).collect();
    let mut out = Vec::new();
    if nodes.len() > 1 {
        let per_node = if quick { &nodes[..1] } else { &nodes[..] };
        for &n in per_node {
            scope_placements(topo, &format!("node{n}"), &[n], &mut out);
        }
    }
    scope_placements(topo, "all", &nodes, &mut out);

    // Threads in "one per core first, then the siblings" order, so that a prefix avoids SMT sharing.
    let cores = interleaved_cores(topo, &nodes);
    let threads = cores.iter().map(|c| c.len()).max().unwrap_or(1);
    let by_thread: Vec<usize> = (0..threads)
        .flat_map(|t| cores.iter().filter_map(move |c| c.get(t).copied()))
        .collect();
    let irq: Vec<usize> = irq_cpus
        .iter()
        .copied()
        .filter(|c| topo.cpus.contains(c))
        .collect();
    let (name, reserved) = if !irq.is_empty() && irq.len() < topo.cpus.len() {
        ("irq-free".to_owned(), irq)
    } else if topo.cpus.len() >= 4 {
        (format!("all-but-{}", topo.cpus[0]), vec![topo.cpus[0]])
    } else {
        (String::new(), Vec::new())
    };
    if !reserved.is_empty() {
        out.push(Placement {
            name,
            cpus: by_thread
                .into_iter()
                .filter(|c| !reserved.contains(c))
                .collect(),
        });
    }
    out
}

/// The candidates for `topo`, unpinned ones first (the broker's default), duplicates removed.
pub fn candidates(topo: &Topology, irq_cpus: &[usize], quick: bool) -> Vec<Candidate> {
    let mut all = Vec::new();
    for shards in shard_counts(topo.cpus.len(), quick) {
        all.push(Candidate {
            placement: "unpinned".into(),
            shards,
            cpu_set: None,
        });
    }
    for p in placements(topo, irq_cpus, quick) {
        for shards in shard_counts(p.cpus.len(), quick) {
            all.push(Candidate {
                placement: p.name.clone(),
                shards,
                cpu_set: Some(p.cpus[..shards].to_vec()),
            });
        }
    }
    dedup(all)
}

/// Drops every candidate that is the same (see the module comment) as an earlier one.
pub fn dedup(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    candidates
        .into_iter()
        .filter(|c| seen.insert(c.key()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::parse_cpu_list;

    fn pinned(placement: &str, cpus: &str) -> Candidate {
        let cpus = parse_cpu_list(cpus).unwrap();
        Candidate {
            placement: placement.into(),
            shards: cpus.len(),
            cpu_set: Some(cpus),
        }
    }

    fn unpinned(shards: usize) -> Candidate {
        Candidate {
            placement: "unpinned".into(),
            shards,
            cpu_set: None,
        }
    }

    #[test]
    fn shard_count_ladders() {
        assert_eq!(shard_counts(1, false), vec![1]);
        assert_eq!(shard_counts(2, false), vec![1, 2]);
        assert_eq!(shard_counts(6, false), vec![1, 2, 4, 6]);
        assert_eq!(shard_counts(32, false), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(shard_counts(2, true), vec![1, 2]);
        assert_eq!(shard_counts(4, true), vec![1, 2, 4]);
        assert_eq!(shard_counts(6, true), vec![1, 2, 6]);
        assert_eq!(shard_counts(32, true), vec![1, 16, 32]);
        assert_eq!(shard_counts(31, true), vec![1, 8, 31]);
    }

    #[test]
    fn two_cores_collapse_to_four_candidates() {
        let topo = Topology::synthetic(1, 2, 1);
        let expect = vec![
            unpinned(1),
            unpinned(2),
            pinned("all/cores", "0"),
            pinned("all/cores", "0-1"),
        ];
        assert_eq!(candidates(&topo, &[], false), expect);
        assert_eq!(candidates(&topo, &[], true), expect);
        // NIC interrupts on every CPU leave no CPU free: nothing added.
        assert_eq!(candidates(&topo, &[0, 1], false), expect);
        // NIC interrupts on CPU 0 only: CPU 1 on its own is new.
        let with_irq = candidates(&topo, &[0], false);
        assert_eq!(with_irq.len(), 5);
        assert_eq!(with_irq[4], pinned("irq-free", "1"));
    }

    #[test]
    fn two_numa_nodes_with_smt() {
        // 2 nodes × 8 cores × 2 threads: node 0 = 0-7,16-23, node 1 = 8-15,24-31, 0 and 16 siblings.
        let topo = Topology::synthetic(2, 8, 2);
        let p = placements(&topo, &[], false);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node0/cores",
                "node0/smt",
                "node1/cores",
                "node1/smt",
                "all/cores",
                "all/smt",
                "all-but-0"
            ]
        );
        assert_eq!(p[0].cpus, parse_cpu_list("0-7").unwrap());
        assert_eq!(p[1].cpus[..4], [0, 16, 1, 17]);
        assert_eq!(p[4].cpus[..4], [0, 8, 1, 9], "spanning takes nodes in turn");
        assert_eq!(p[5].cpus[..4], [0, 16, 8, 24]);
        assert_eq!(p[6].cpus.len(), 31);
        assert_eq!(
            p[6].cpus[..3],
            [8, 1, 9],
            "one thread per core first, CPU 0 left out"
        );

        let c = candidates(&topo, &[], false);
        // No two candidates alike.
        let keys: HashSet<_> = c.iter().map(Candidate::key).collect();
        assert_eq!(keys.len(), c.len());
        // Unpinned: 1, 2, 4, 8, 16, 32.
        assert_eq!(c.iter().filter(|c| !c.pinned()).count(), 6);
        // node0/cores 1,2,4,8 (4) + node0/smt 2,4,8,16 (1 is node0/cores' CPU 0) (4) + the same on
        // node 1 (8) + all/cores 2,4,8,16 (4) + all/smt 4,8,16,32 (2 is node0/smt's 0,16) (4) +
        // all-but-0 2,4,8,16,31 (1 is node1/cores' CPU 8) (5) = 29.
        assert_eq!(c.iter().filter(|c| c.pinned()).count(), 29);
        for cand in &c {
            if let Some(set) = &cand.cpu_set {
                assert_eq!(set.len(), cand.shards);
                assert!(set.iter().all(|cpu| topo.cpus.contains(cpu)));
                if cand.placement.starts_with("node1") {
                    assert!(set.iter().all(|&cpu| topo.node_of(cpu) == 1));
                }
            }
        }
        assert!(c.contains(&pinned("node0/smt", "0,16,1,17")));
        assert!(c.iter().any(|x| x.placement == "all/smt" && x.shards == 32));
    }

    #[test]
    fn quick_measures_fewer() {
        let topo = Topology::synthetic(2, 8, 2);
        let quick = candidates(&topo, &[], true);
        let full = candidates(&topo, &[], false);
        assert!(
            quick.len() < full.len() / 2,
            "{} vs {}",
            quick.len(),
            full.len()
        );
        assert!(quick.iter().all(|c| !c.placement.starts_with("node1")));
    }

    #[test]
    fn irq_cpus_are_left_out() {
        let topo = Topology::synthetic(1, 4, 2); // cores {0,4} {1,5} {2,6} {3,7}
        let p = placements(&topo, &[0, 4], false);
        let free = p.iter().find(|p| p.name == "irq-free").unwrap();
        assert_eq!(free.cpus, vec![1, 2, 3, 5, 6, 7]);
    }

    #[test]
    fn same_cpus_in_another_order_are_duplicates() {
        let c = dedup(vec![
            pinned("a", "0,1"),
            pinned("b", "1,0"),
            unpinned(2),
            unpinned(2),
        ]);
        assert_eq!(c, vec![pinned("a", "0,1"), unpinned(2)]);
    }
}
