//! What in a [`HostReport`] limits the broker, and the command that fixes each thing. Pure: the same
//! report always gives the same findings, so every threshold is unit-tested.

use serde::Serialize;

use crate::probe::{kernel_version, kib, HostReport};
use crate::topology::format_cpu_list;

/// Below this many open files per process a large broker runs out of descriptors before anything else.
pub const NOFILE_TARGET: u64 = 1_000_000;
/// The value the fixes suggest: the kernel's default `fs.nr_open`, the most a hard limit can be without
/// raising that too.
pub const NOFILE_SUGGESTED: u64 = 1_048_576;
/// The broker's default `listen_backlog` (`DEFAULT_LISTEN_BACKLOG` in src/config/mod.rs; mirrored here so
/// that this tool builds without the broker crate).
pub const BROKER_LISTEN_BACKLOG: u64 = 1024;
/// Connection-tracking entries a million clients need (one per connection) with room for the host's
/// other traffic.
pub const CONNTRACK_TARGET: u64 = 1_100_000;
/// Fewer ephemeral ports than this per source address is noticeably less than the 64k a port number
/// allows.
pub const LOCAL_PORTS_TARGET: u64 = 60_000;
/// glommio 0.9 refuses to create an executor when RLIMIT_MEMLOCK (soft, which the broker first raises
/// to the hard limit) is below 512 KiB (`MIN_MEMLOCK_LIMIT` in glommio's sys/uring.rs); this does not
/// depend on privileges. Measured: `ulimit -l 511` leaves the broker without shards, 512 runs 8 shards.
pub const MEMLOCK_MIN_KIB: u64 = 512;
/// Before Linux 5.12 each shard's rings were charged to RLIMIT_MEMLOCK too; allow glommio's documented
/// 512 KiB per shard then.
pub const MEMLOCK_PER_SHARD_OLD_KERNEL_KIB: u64 = 512;
/// glommio's oldest supported kernel.
pub const MIN_KERNEL: (u32, u32) = (5, 8);

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The broker cannot run.
    Error,
    /// The broker runs but hits this limit under load.
    Warning,
    /// Worth knowing; nothing to fix.
    Note,
}

/// One thing the probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Short machine-readable topic (`nofile`, `somaxconn`, ...).
    pub topic: &'static str,
    /// What is wrong and what it costs.
    pub message: String,
    /// Commands (or config lines) that fix it, to be run as root where they change the system.
    pub fix: Vec<String>,
}

fn finding(severity: Severity, topic: &'static str, message: String, fix: &[&str]) -> Finding {
    Finding {
        severity,
        topic,
        message,
        fix: fix.iter().map(|s| s.to_string()).collect(),
    }
}

/// Every finding about `r`, errors first.
pub fn findings(r: &HostReport) -> Vec<Finding> {
    let mut out = Vec::new();
    let shards = r.topology.cpus.len().max(1) as u64;
    let version = kernel_version(&r.kernel);

    if let Some(v) = version.filter(|&v| v < MIN_KERNEL) {
        out.push(finding(
            Severity::Error,
            "kernel",
            format!(
                "Linux {}.{} is older than {}.{}, the oldest kernel glommio (the broker's runtime) supports",
                v.0, v.1, MIN_KERNEL.0, MIN_KERNEL.1
            ),
            &["upgrade the kernel"],
        ));
    }

    let iou = &r.io_uring;
    if !iou.available {
        let err = iou.error.as_deref().unwrap_or("unknown error");
        let (why, fix): (&str, Vec<&str>) = match (iou.errno, iou.disabled_sysctl) {
            (Some(libc::EPERM | libc::EACCES), Some(2)) => (
                "kernel.io_uring_disabled is 2 (io_uring off for everyone)",
                vec!["sysctl -w kernel.io_uring_disabled=0"],
            ),
            (Some(libc::EPERM | libc::EACCES), Some(1)) => (
                "kernel.io_uring_disabled is 1 (only root and kernel.io_uring_group may use it)",
                vec![
                    "run the broker as root or as a member of the group whose id is in kernel.io_uring_group",
                    "sysctl -w kernel.io_uring_disabled=0",
                ],
            ),
            (Some(libc::EPERM | libc::EACCES), _) => (
                "a seccomp filter blocks it (container runtimes' default profiles do)",
                vec![
                    "docker/podman: --security-opt seccomp=unconfined, or a profile allowing io_uring_setup, io_uring_enter and io_uring_register",
                ],
            ),
            (Some(libc::ENOSYS), _) => (
                "the kernel has no io_uring",
                vec!["use Linux 5.8 or later built with CONFIG_IO_URING=y"],
            ),
            (Some(libc::ENOMEM), _) => (
                "the memlock limit is too small for even a 4-entry ring (kernels before 5.12 charge rings to it)",
                vec![
                    "ulimit -l unlimited",
                    "/etc/security/limits.conf: `USER soft memlock unlimited` and `USER hard memlock unlimited`",
                    "systemd unit: LimitMEMLOCK=infinity",
                ],
            ),
            _ => ("", vec![]),
        };
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        };
        out.push(Finding {
            severity: Severity::Error,
            topic: "io_uring",
            message: format!(
                "io_uring_setup failed ({err}){why}. The broker cannot run without io_uring"
            ),
            fix: fix.into_iter().map(String::from).collect(),
        });
    } else if iou.disabled_sysctl == Some(1) {
        out.push(finding(
            Severity::Note,
            "io_uring",
            "kernel.io_uring_disabled is 1: io_uring worked for this user, but a broker started as \
             another unprivileged user needs to be in kernel.io_uring_group"
                .into(),
            &["sysctl -w kernel.io_uring_disabled=0"],
        ));
    }

    if let Some(l) = r.limits.nofile {
        if let Some(hard) = l.hard.filter(|&h| h < NOFILE_TARGET) {
            let mut fix = vec![
                format!("ulimit -n {NOFILE_SUGGESTED}   (in the shell that starts shardmq; raising the hard limit needs root)"),
                format!("/etc/security/limits.conf: `USER soft nofile {NOFILE_SUGGESTED}` and `USER hard nofile {NOFILE_SUGGESTED}` (next login)"),
                format!("systemd unit: LimitNOFILE={NOFILE_SUGGESTED}"),
            ];
            if r.limits.nr_open.is_some_and(|n| n < NOFILE_SUGGESTED) {
                fix.insert(0, format!("sysctl -w fs.nr_open={NOFILE_SUGGESTED}"));
            }
            out.push(Finding {
                severity: Severity::Warning,
                topic: "nofile",
                message: format!(
                    "open files hard limit is {hard}: the broker raises its soft limit to it and then holds \
                     at most about {hard} connections (one descriptor each), below the {NOFILE_TARGET} a \
                     large broker needs"
                ),
                fix,
            });
        }
    }

    if let Some(hard) = r.limits.memlock.and_then(|l| l.hard) {
        let fix = [
            "ulimit -l unlimited   (in the shell that starts shardmq; raising the hard limit needs root)",
            "/etc/security/limits.conf: `USER soft memlock unlimited` and `USER hard memlock unlimited`",
            "systemd unit: LimitMEMLOCK=infinity",
        ];
        let old_kernel_need = MEMLOCK_PER_SHARD_OLD_KERNEL_KIB * shards;
        if hard / 1024 < MEMLOCK_MIN_KIB {
            out.push(finding(
                Severity::Error,
                "memlock",
                format!(
                    "locked memory hard limit is {}: glommio refuses to start a shard when RLIMIT_MEMLOCK is \
                     below {} (root included; the broker raises its soft limit to the hard one first), so \
                     the broker starts no shard and accepts no connection",
                    kib(hard / 1024),
                    kib(MEMLOCK_MIN_KIB)
                ),
                &fix,
            ));
        } else if version.is_some_and(|v| v < (5, 12)) && hard / 1024 < old_kernel_need {
            out.push(finding(
                Severity::Warning,
                "memlock",
                format!(
                    "locked memory hard limit is {}: kernels before 5.12 charge io_uring rings to it, and \
                     {shards} shards need about {}; shards beyond the limit fail to start",
                    kib(hard / 1024),
                    kib(old_kernel_need)
                ),
                &fix,
            ));
        }
    }

    if let Some(n) = r.net.somaxconn.filter(|&n| n < BROKER_LISTEN_BACKLOG) {
        out.push(finding(
            Severity::Warning,
            "somaxconn",
            format!(
                "net.core.somaxconn is {n}, below the broker's listen backlog ({BROKER_LISTEN_BACKLOG}, \
                 `listen_backlog`): the kernel cuts the backlog to {n}, and a burst of (re)connecting \
                 clients overflows the accept queue, so SYNs are dropped and clients retry seconds later"
            ),
            &[
                "sysctl -w net.core.somaxconn=4096",
                "persist: echo 'net.core.somaxconn = 4096' > /etc/sysctl.d/90-shardmq.conf",
            ],
        ));
    }
    if let Some(n) = r
        .net
        .tcp_max_syn_backlog
        .filter(|&n| n < BROKER_LISTEN_BACKLOG)
    {
        out.push(finding(
            Severity::Warning,
            "tcp_max_syn_backlog",
            format!(
                "net.ipv4.tcp_max_syn_backlog is {n}: fewer half-open connections than the broker's \
                 listen backlog ({BROKER_LISTEN_BACKLOG}) can wait for the handshake to finish"
            ),
            &[
                "sysctl -w net.ipv4.tcp_max_syn_backlog=4096",
                "persist: echo 'net.ipv4.tcp_max_syn_backlog = 4096' >> /etc/sysctl.d/90-shardmq.conf",
            ],
        ));
    }
    if let Some(n) = r.net.conntrack_max.filter(|&n| n < CONNTRACK_TARGET) {
        out.push(finding(
            Severity::Warning,
            "conntrack",
            format!(
                "connection tracking (nf_conntrack) is loaded with net.netfilter.nf_conntrack_max = {n}: \
                 every client connection takes an entry, and once the table is full the kernel drops new \
                 connections (\"nf_conntrack: table full, dropping packet\" in dmesg), so no more than \
                 about {n} clients connect. Raise the table, or exempt the broker's ports from tracking"
            ),
            &[
                "sysctl -w net.netfilter.nf_conntrack_max=2097152",
                "persist: echo 'net.netfilter.nf_conntrack_max = 2097152' >> /etc/sysctl.d/90-shardmq.conf",
                "or: iptables -t raw -A PREROUTING -p tcp --dport 1883 -j NOTRACK \
                 (and -A OUTPUT -p tcp --sport 1883 -j NOTRACK; per listener port)",
            ],
        ));
    }
    if let Some(ports) = r.net.local_ports().filter(|&p| p < LOCAL_PORTS_TARGET) {
        out.push(finding(
            Severity::Warning,
            "ip_local_port_range",
            format!(
                "net.ipv4.ip_local_port_range gives {ports} ephemeral ports: one source address can open \
                 at most about {ports} connections to one broker address and port. This limits load \
                 generators, bridges and benchmarks on this host, not the connections the broker accepts. \
                 On loopback every 127.0.0.x is a separate source address, so a client can spread its \
                 connections over several (shardmq-loadgen --source-addrs 127.0.0.1-127.0.0.16) instead"
            ),
            &[
                "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"",
                "persist: echo 'net.ipv4.ip_local_port_range = 1024 65535' >> /etc/sysctl.d/90-shardmq.conf",
            ],
        ));
    }

    if r.governors.is_empty() {
        out.push(finding(
            Severity::Note,
            "governor",
            "no CPU frequency scaling (cpufreq) is exposed: normal on VMs, where the hypervisor sets the \
             frequency; nothing to change here"
                .into(),
            &[],
        ));
    }
    for g in r.governors.iter().filter(|g| g.governor != "performance") {
        out.push(finding(
            Severity::Warning,
            "governor",
            format!(
                "CPUs {} use the '{}' frequency governor: clocking up from idle adds latency to the first \
                 messages after a pause and makes sweep results noisy",
                format_cpu_list(&g.cpus),
                g.governor
            ),
            &[
                "cpupower frequency-set -g performance",
                "or: echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
            ],
        ));
    }

    if r.nics.is_empty() {
        out.push(finding(
            Severity::Note,
            "nic",
            "no NIC (loopback only): there are no network interrupts to keep away from the shards"
                .into(),
            &[],
        ));
    }
    for n in &r.nics {
        let cpus = n.irq_cpus();
        if n.irqs.len() > 1 && cpus.len() == 1 && r.topology.cpus.len() >= 4 {
            out.push(finding(
                Severity::Warning,
                "nic_irq",
                format!(
                    "all {} interrupts of {} go to CPU {}: that CPU does all its receive work; spread them \
                     or keep that CPU out of cpu_set (`shardmq-tune sweep` measures that placement)",
                    n.irqs.len(),
                    n.name,
                    cpus[0]
                ),
                &[
                    "systemctl start irqbalance",
                    "or per IRQ N: echo CPU_LIST > /proc/irq/N/smp_affinity_list",
                ],
            ));
        } else if !cpus.is_empty() {
            let usable = &r.topology.cpus;
            let message = if usable.iter().all(|c| cpus.contains(c)) {
                format!(
                    "{} interrupts go to CPUs {}, every usable CPU: no CPU is free of them, so no \
                     placement can avoid them",
                    n.name,
                    format_cpu_list(&cpus)
                )
            } else {
                format!(
                    "{} interrupts go to CPUs {}; `shardmq-tune sweep` also tries a placement that \
                     leaves those CPUs out (irq-free)",
                    n.name,
                    format_cpu_list(&cpus)
                )
            };
            out.push(finding(Severity::Note, "nic_irq", message, &[]));
        }
    }

    let nodes = r.topology.cpu_nodes().count();
    if nodes > 1 {
        out.push(finding(
            Severity::Note,
            "numa",
            format!(
                "{nodes} NUMA nodes: shards pinned within one node avoid cross-node memory traffic, shards \
                 across nodes get more memory bandwidth; `shardmq-tune sweep` measures both"
            ),
            &[],
        ));
    }

    out.sort_by_key(|f| f.severity);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_uring::IoUringReport;
    use crate::nic::{Nic, NicIrq};
    use crate::probe::{GovernorGroup, Limits, NetSysctls, Rlimit};
    use crate::topology::Topology;

    /// A host with nothing to fix: big limits, modern kernel, performance governor, one NIC spread.
    fn good() -> HostReport {
        HostReport {
            hostname: "h".into(),
            kernel: "6.8.0".into(),
            online_cpus: Some("0-3".into()),
            topology: Topology::synthetic(1, 4, 1),
            limits: Limits {
                nofile: Some(Rlimit {
                    soft: Some(1024),
                    hard: Some(1_048_576),
                }),
                memlock: Some(Rlimit {
                    soft: Some(8 << 20),
                    hard: Some(8 << 20),
                }),
                nr_open: Some(1_048_576),
            },
            net: NetSysctls {
                somaxconn: Some(4096),
                tcp_max_syn_backlog: Some(4096),
                ip_local_port_range: Some((1024, 65535)),
                conntrack_max: None,
            },
            io_uring: IoUringReport {
                available: true,
                errno: None,
                error: None,
                features: Some(0x3fff),
                disabled_sysctl: Some(0),
            },
            governors: vec![GovernorGroup {
                governor: "performance".into(),
                cpus: vec![0, 1, 2, 3],
            }],
            nics: vec![Nic {
                name: "eth0".into(),
                device: "0000:00:03.0".into(),
                irqs: vec![
                    NicIrq {
                        irq: 40,
                        name: "eth0-0".into(),
                        affinity: vec![0],
                        total: 1,
                    },
                    NicIrq {
                        irq: 41,
                        name: "eth0-1".into(),
                        affinity: vec![1],
                        total: 1,
                    },
                ],
            }],
        }
    }

    fn topics(r: &HostReport) -> Vec<(Severity, &'static str)> {
        findings(r).iter().map(|f| (f.severity, f.topic)).collect()
    }

    #[test]
    fn a_good_host_only_gets_notes() {
        let r = good();
        assert_eq!(topics(&r), vec![(Severity::Note, "nic_irq")]);
        assert!(findings(&r)[0].message.contains("irq-free"));
    }

    #[test]
    fn interrupts_on_every_cpu_cannot_be_avoided() {
        let mut r = good();
        r.topology = Topology::synthetic(1, 2, 1);
        let f = findings(&r);
        assert!(
            f[0].message.contains("every usable CPU"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn low_nofile_warns_with_the_connection_figure() {
        let mut r = good();
        r.limits.nofile = Some(Rlimit {
            soft: Some(1024),
            hard: Some(524_288),
        });
        let f = findings(&r);
        let w = f.iter().find(|f| f.topic == "nofile").unwrap();
        assert_eq!(w.severity, Severity::Warning);
        assert!(
            w.message.contains("about 524288 connections"),
            "{}",
            w.message
        );
        assert!(w.fix.iter().any(|x| x.starts_with("ulimit -n 1048576")));
        assert!(w
            .fix
            .iter()
            .any(|x| x.contains("/etc/security/limits.conf")));
        // Exactly at the target is fine; unlimited is fine.
        r.limits.nofile.as_mut().unwrap().hard = Some(NOFILE_TARGET);
        assert!(!topics(&r).contains(&(Severity::Warning, "nofile")));
        r.limits.nofile.as_mut().unwrap().hard = None;
        assert!(!topics(&r).contains(&(Severity::Warning, "nofile")));
    }

    #[test]
    fn a_small_conntrack_table_warns_and_no_table_is_fine() {
        let mut r = good();
        assert!(findings(&r).iter().all(|f| f.topic != "conntrack"));
        r.net.conntrack_max = Some(262_144);
        let f = findings(&r);
        let w = f.iter().find(|f| f.topic == "conntrack").unwrap();
        assert_eq!(w.severity, Severity::Warning);
        assert!(w.message.contains("262144"), "{}", w.message);
        assert!(w.fix[0].contains("nf_conntrack_max=2097152"));
        r.net.conntrack_max = Some(2_097_152);
        assert!(findings(&r).iter().all(|f| f.topic != "conntrack"));
    }

    #[test]
    fn somaxconn_below_the_backlog_warns() {
        let mut r = good();
        r.net.somaxconn = Some(128);
        let f = findings(&r);
        let w = f.iter().find(|f| f.topic == "somaxconn").unwrap();
        assert!(w.fix[0] == "sysctl -w net.core.somaxconn=4096");
        r.net.somaxconn = Some(1024);
        assert!(findings(&r).iter().all(|f| f.topic != "somaxconn"));
    }

    #[test]
    fn narrow_port_range_warns_and_explains_loopback_sources() {
        let mut r = good();
        r.net.ip_local_port_range = Some((32768, 60999));
        let f = findings(&r);
        let w = f.iter().find(|f| f.topic == "ip_local_port_range").unwrap();
        assert!(w.message.contains("28232"));
        assert!(w.message.contains("127.0.0.x"));
        assert_eq!(
            w.fix[0],
            "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\""
        );
    }

    #[test]
    fn governor_other_than_performance_warns_and_absent_is_a_note() {
        let mut r = good();
        r.governors[0].governor = "powersave".into();
        let f = findings(&r);
        let w = f.iter().find(|f| f.topic == "governor").unwrap();
        assert_eq!(w.severity, Severity::Warning);
        assert_eq!(w.fix[0], "cpupower frequency-set -g performance");
        r.governors.clear();
        assert!(topics(&r).contains(&(Severity::Note, "governor")));
    }

    #[test]
    fn io_uring_unavailable_is_an_error_with_a_cause() {
        let mut r = good();
        r.io_uring = IoUringReport {
            available: false,
            errno: Some(libc::EPERM),
            error: Some("Operation not permitted".into()),
            features: None,
            disabled_sysctl: Some(2),
        };
        let f = findings(&r);
        assert_eq!(f[0].severity, Severity::Error, "errors come first");
        assert_eq!(f[0].topic, "io_uring");
        assert!(f[0].message.contains("cannot run"));
        assert_eq!(f[0].fix, vec!["sysctl -w kernel.io_uring_disabled=0"]);
        r.io_uring.disabled_sysctl = None;
        assert!(findings(&r)[0].message.contains("seccomp"));
    }

    #[test]
    fn memlock_below_glommios_floor_is_an_error() {
        let mut r = good();
        let set = |r: &mut HostReport, hard: Option<u64>| {
            r.limits.memlock = Some(Rlimit { soft: hard, hard });
        };
        set(&mut r, Some(511 << 10));
        assert_eq!(topics(&r)[0], (Severity::Error, "memlock"));
        set(&mut r, Some(512 << 10));
        assert!(findings(&r).iter().all(|f| f.topic != "memlock"));
        // Before 5.12 the rings count too: 4 shards × 512 KiB.
        r.kernel = "5.10.0".into();
        assert!(topics(&r).contains(&(Severity::Warning, "memlock")));
        set(&mut r, Some(2048 << 10));
        assert!(findings(&r).iter().all(|f| f.topic != "memlock"));
        set(&mut r, None);
        assert!(findings(&r).iter().all(|f| f.topic != "memlock"));
    }

    #[test]
    fn loopback_only_and_concentrated_irqs() {
        let mut r = good();
        r.nics[0].irqs[1].affinity = vec![0];
        assert!(topics(&r).contains(&(Severity::Warning, "nic_irq")));
        r.nics.clear();
        let f = findings(&r);
        let n = f.iter().find(|f| f.topic == "nic").unwrap();
        assert!(n.message.contains("no NIC"));
    }

    #[test]
    fn old_kernel_is_an_error() {
        let mut r = good();
        r.kernel = "4.19.0".into();
        assert_eq!(topics(&r)[0], (Severity::Error, "kernel"));
    }
}
