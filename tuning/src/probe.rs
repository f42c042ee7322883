//! `shardmq-tune probe`: what the host offers the broker (CPUs, NUMA, limits, socket sysctls, io_uring,
//! frequency governor, NIC interrupts), gathered into one [`HostReport`] and printed as text or JSON.
//! What is wrong with it is decided separately, in [`crate::checks`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::checks::{Finding, Severity};
use crate::error::TuneError;
use crate::hostfs::HostFs;
use crate::io_uring::{self, IoUringReport};
use crate::nic::{self, Nic};
use crate::topology::{available_cpus, format_cpu_list, Topology};

/// A resource limit; `None` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// The soft (current) limit.
    pub soft: Option<u64>,
    /// The hard limit; the broker raises its soft limit to this at start-up.
    pub hard: Option<u64>,
}

/// getrlimit's resource argument: an enum in glibc, an int elsewhere.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

impl Rlimit {
    /// getrlimit(2) of `resource`.
    fn get(resource: Resource) -> Option<Rlimit> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the local struct.
        if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
            return None;
        }
        let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
        Some(Rlimit {
            soft: finite(lim.rlim_cur),
            hard: finite(lim.rlim_max),
        })
    }
}

/// The limits the broker runs into first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// RLIMIT_NOFILE: every client connection is a descriptor.
    pub nofile: Option<Rlimit>,
    /// RLIMIT_MEMLOCK: io_uring registered buffers (and, before Linux 5.12, the rings) are charged here.
    pub memlock: Option<Rlimit>,
    /// `fs.nr_open`: the largest hard nofile limit the kernel allows.
    pub nr_open: Option<u64>,
}

/// Socket sysctls that bound accepting and opening connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetSysctls {
    /// `net.core.somaxconn`: the kernel caps every listen(2) backlog at this.
    pub somaxconn: Option<u64>,
    /// `net.ipv4.tcp_max_syn_backlog`: half-open connections queued per listener.
    pub tcp_max_syn_backlog: Option<u64>,
    /// `net.ipv4.ip_local_port_range`: ephemeral ports for outgoing connections, inclusive.
    pub ip_local_port_range: Option<(u64, u64)>,
    /// `net.netfilter.nf_conntrack_max`, present only while connection tracking is loaded: every TCP
    /// connection through the host takes an entry, and a full table drops new connections.
    pub conntrack_max: Option<u64>,
}

impl NetSysctls {
    /// Ephemeral ports available per (source address, destination) pair.
    pub fn local_ports(&self) -> Option<u64> {
        self.ip_local_port_range
            .map(|(lo, hi)| hi.saturating_sub(lo) + 1)
    }
}

/// CPUs running one cpufreq governor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GovernorGroup {
    /// The governor (`performance`, `powersave`, `schedutil`, ...).
    pub governor: String,
    /// The usable CPUs running it.
    pub cpus: Vec<usize>,
}

/// Everything `probe` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// `kernel.hostname`.
    pub hostname: String,
    /// uname release, e.g. `6.8.0-45-generic`.
    pub kernel: String,
    /// Online CPUs as the kernel lists them (`/sys/devices/system/cpu/online`).
    pub online_cpus: Option<String>,
    /// Usable CPUs, cores and NUMA nodes.
    pub topology: Topology,
    /// nofile and memlock.
    pub limits: Limits,
    /// Listen backlog and port range sysctls.
    pub net: NetSysctls,
    /// io_uring availability.
    pub io_uring: IoUringReport,
    /// cpufreq governors of the usable CPUs; empty when there is no cpufreq (typical of VMs).
    pub governors: Vec<GovernorGroup>,
    /// NICs and their interrupts; empty on a loopback-only machine.
    pub nics: Vec<Nic>,
}

impl HostReport {
    /// Reads the running host. Fails only when the CPU mask or topology cannot be read: everything else
    /// is reported as unknown instead.
    pub fn gather() -> Result<HostReport, TuneError> {
        let fs = HostFs::real();
        let cpus = available_cpus()?;
        let topology = Topology::read(&fs, &cpus)?;
        Ok(HostReport {
            hostname: fs
                .read("proc/sys/kernel/hostname")
                .unwrap_or_else(|_| "unknown".into()),
            kernel: kernel_release(),
            online_cpus: fs.read("sys/devices/system/cpu/online").ok(),
            limits: Limits {
                nofile: Rlimit::get(libc::RLIMIT_NOFILE),
                memlock: Rlimit::get(libc::RLIMIT_MEMLOCK),
                nr_open: fs.read_u64("proc/sys/fs/nr_open"),
            },
            net: NetSysctls {
                somaxconn: fs.read_u64("proc/sys/net/core/somaxconn"),
                tcp_max_syn_backlog: fs.read_u64("proc/sys/net/ipv4/tcp_max_syn_backlog"),
                ip_local_port_range: fs
                    .read("proc/sys/net/ipv4/ip_local_port_range")
                    .ok()
                    .and_then(|t| parse_port_range(&t)),
                conntrack_max: fs.read_u64("proc/sys/net/netfilter/nf_conntrack_max"),
            },
            io_uring: io_uring::probe(&fs),
            governors: read_governors(&fs, &topology.cpus),
            nics: nic::read_nics(&fs),
            topology,
        })
    }

    /// CPUs that any NIC's interrupts are delivered to, ascending.
    pub fn nic_irq_cpus(&self) -> Vec<usize> {
        let mut cpus: Vec<usize> = self.nics.iter().flat_map(Nic::irq_cpus).collect();
        cpus.sort_unstable();
        cpus.dedup();
        cpus
    }

    /// One line for config comments and table headers.
    pub fn summary(&self) -> String {
        format!(
            "{}: {}, Linux {}",
            self.hostname,
            self.topology.summary(),
            self.kernel
        )
    }
}

/// `uname -r`.
fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed utsname; `release` is NUL-terminated by the kernel.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Major and minor of a kernel release string: `6.8.0-45-generic` is (6, 8).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `ip_local_port_range` is two numbers separated by a tab.
fn parse_port_range(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace().map(|w| w.parse::<u64>());
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => Some((lo, hi)),
        _ => None,
    }
}

/// Governors of `cpus`, grouped; empty when no CPU has cpufreq.
fn read_governors(fs: &HostFs, cpus: &[usize]) -> Vec<GovernorGroup> {
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &cpu in cpus {
        if let Ok(g) = fs.read(&format!(
            "sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        )) {
            by.entry(g).or_default().push(cpu);
        }
    }
    by.into_iter()
        .map(|(governor, cpus)| GovernorGroup { governor, cpus })
        .collect()
}

/// A size in KiB, readable: `6.0 GiB`, `512 KiB`.
pub fn kib(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} GiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} MiB", n as f64 / 1024.0)
    } else {
        format!("{n} KiB")
    }
}

fn limit(v: Option<u64>, unit_kib: bool) -> String {
    match v {
        None => "unlimited".into(),
        Some(n) if unit_kib => kib(n / 1024),
        Some(n) => n.to_string(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

/// The human-readable report, findings last.
pub fn render_text(r: &HostReport, findings: &[Finding]) -> String {
    let mut s = String::new();
    let t = &r.topology;
    let _ = writeln!(s, "shardmq-tune probe: {}", r.hostname);
    let _ = writeln!(s, "  kernel            Linux {}", r.kernel);
    let _ = writeln!(s, "\nCPUs");
    let _ = writeln!(
        s,
        "  usable            {} ({}; online: {})",
        format_cpu_list(&t.cpus),
        t.summary(),
        r.online_cpus.as_deref().unwrap_or("unknown")
    );
    if t.has_smt() {
        let groups: Vec<String> = t
            .cores
            .iter()
            .filter(|c| c.len() > 1)
            .map(|c| format_cpu_list(c))
            .take(8)
            .collect();
        let more = t.cores.len().saturating_sub(groups.len());
        let tail = if more > 0 {
            format!(" ... ({more} more)")
        } else {
            String::new()
        };
        let _ = writeln!(s, "  SMT siblings      {}{tail}", groups.join(" "));
    } else {
        let _ = writeln!(s, "  SMT siblings      none (one thread per core)");
    }
    for n in &t.nodes {
        let mem = match (n.mem_total_kib, n.mem_free_kib) {
            (Some(total), Some(free)) => format!("{} memory, {} free", kib(total), kib(free)),
            (Some(total), None) => format!("{} memory", kib(total)),
            _ => "memory unknown".into(),
        };
        let cpus = if n.all_cpus.is_empty() {
            "no CPUs".to_owned()
        } else {
            format!("CPUs {}", format_cpu_list(&n.all_cpus))
        };
        let _ = writeln!(s, "  NUMA node {:<7} {cpus}, {mem}", n.id);
    }
    let _ = writeln!(
        s,
        "\nLimits (inherited from the shell; the broker raises soft to hard)"
    );
    match r.limits.nofile {
        Some(l) => {
            let _ = writeln!(
                s,
                "  nofile            soft {}, hard {} (fs.nr_open {})",
                limit(l.soft, false),
                limit(l.hard, false),
                opt(r.limits.nr_open)
            );
        }
        None => s.push_str("  nofile            unknown\n"),
    }
    match r.limits.memlock {
        Some(l) => {
            let _ = writeln!(
                s,
                "  memlock           soft {}, hard {}",
                limit(l.soft, true),
                limit(l.hard, true)
            );
        }
        None => s.push_str("  memlock           unknown\n"),
    }
    let _ = writeln!(s, "\nNetwork sysctls");
    let _ = writeln!(
        s,
        "  net.core.somaxconn            {}",
        opt(r.net.somaxconn)
    );
    let _ = writeln!(
        s,
        "  net.ipv4.tcp_max_syn_backlog  {}",
        opt(r.net.tcp_max_syn_backlog)
    );
    let _ = writeln!(
        s,
        "  net.netfilter.nf_conntrack_max {}",
        r.net
            .conntrack_max
            .map_or("(connection tracking not loaded)".to_string(), |n| n
                .to_string())
    );
    match r.net.ip_local_port_range {
        Some((lo, hi)) => {
            let _ = writeln!(
                s,
                "  net.ipv4.ip_local_port_range  {lo} {hi} ({} ports)",
                hi.saturating_sub(lo) + 1
            );
        }
        None => s.push_str("  net.ipv4.ip_local_port_range  unknown\n"),
    }
    let _ = writeln!(s, "\nio_uring");
    if r.io_uring.available {
        let _ = writeln!(
            s,
            "  io_uring_setup    ok (features 0x{:x})",
            r.io_uring.features.unwrap_or(0)
        );
    } else {
        let _ = writeln!(
            s,
            "  io_uring_setup    FAILED: {}",
            r.io_uring.error.as_deref().unwrap_or("unknown error")
        );
    }
    let _ = writeln!(
        s,
        "  io_uring_disabled {}",
        r.io_uring
            .disabled_sysctl
            .map_or_else(|| "absent (kernel before 6.6)".into(), |v| v.to_string())
    );
    let _ = writeln!(s, "\nCPU frequency");
    if r.governors.is_empty() {
        s.push_str("  no cpufreq on any CPU (usual on VMs: the hypervisor sets the frequency)\n");
    } else {
        for g in &r.governors {
            let _ = writeln!(
                s,
                "  governor {:<16} CPUs {}",
                g.governor,
                format_cpu_list(&g.cpus)
            );
        }
    }
    let _ = writeln!(s, "\nNICs and their interrupts");
    if r.nics.is_empty() {
        s.push_str("  no NIC (loopback only): interrupt placement does not matter here\n");
    }
    for n in &r.nics {
        if n.irqs.is_empty() {
            let _ = writeln!(
                s,
                "  {} ({}): no interrupts found in /proc/interrupts",
                n.name, n.device
            );
            continue;
        }
        let _ = writeln!(
            s,
            "  {} ({}): {} IRQ{} on CPUs {}",
            n.name,
            n.device,
            n.irqs.len(),
            if n.irqs.len() == 1 { "" } else { "s" },
            format_cpu_list(&n.irq_cpus())
        );
        for irq in &n.irqs {
            let _ = writeln!(
                s,
                "    IRQ {:<5} {:<28} affinity {:<10} {} interrupts",
                irq.irq,
                irq.name,
                format_cpu_list(&irq.affinity),
                irq.total
            );
        }
    }
    let _ = writeln!(s, "\nFindings");
    if findings.is_empty() {
        s.push_str("  none: nothing to change\n");
    }
    for f in findings {
        let tag = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Note => "note",
        };
        let _ = writeln!(s, "  {tag}: {}", f.message);
        for fix in &f.fix {
            let _ = writeln!(s, "      fix: {fix}");
        }
    }
    s
}

/// The JSON form: `{"host": {...}, "findings": [...]}` on one line.
pub fn render_json(r: &HostReport, findings: &[Finding]) -> String {
    serde_json::json!({ "host": r, "findings": findings }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("weird"), None);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("32768\t60999"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024"), None);
        let net = NetSysctls {
            somaxconn: None,
            tcp_max_syn_backlog: None,
            ip_local_port_range: Some((32768, 60999)),
            conntrack_max: None,
        };
        assert_eq!(net.local_ports(), Some(28232));
    }

    #[test]
    fn gathers_this_host_and_renders_both_forms() {
        let r = HostReport::gather().unwrap();
        let text = render_text(&r, &[]);
        assert!(text.contains("io_uring_setup"));
        let json: serde_json::Value = serde_json::from_str(&render_json(&r, &[])).unwrap();
        assert_eq!(
            json["host"]["topology"]["cpus"].as_array().unwrap().len(),
            r.topology.cpus.len()
        );
    }
}
