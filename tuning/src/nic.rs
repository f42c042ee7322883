//! Network interfaces backed by a device (NICs) and the CPUs their interrupts are delivered to.
//!
//! A NIC's IRQs are found two ways, because drivers name them inconsistently: the device's MSI vectors
//! (`device/msi_irqs`, or the parent PCI function's for virtio) and `/proc/interrupts` lines whose name
//! mentions the interface (`eth0-TxRx-0`), the device (`virtio2-input.0`) or its PCI address
//! (`mlx5_comp0@pci:0000:3b:00.0`).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::hostfs::{file_name, HostFs};
use crate::topology::parse_cpu_list;

/// One line of `/proc/interrupts` for a numbered IRQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqLine {
    /// The IRQ number.
    pub irq: u32,
    /// Interrupts taken per CPU column (column i is the i-th CPU of the header line).
    pub counts: Vec<u64>,
    /// Everything after the counts: controller, trigger and the action names.
    pub description: String,
}

/// Parses `/proc/interrupts`, keeping numbered IRQs only (not `NMI:`, `LOC:` ...).
pub fn parse_interrupts(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let columns = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    lines
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            let irq = irq.parse().ok()?;
            let mut words = rest.split_whitespace().peekable();
            let mut counts = Vec::with_capacity(columns);
            while counts.len() < columns {
                match words.peek().and_then(|w| w.parse::<u64>().ok()) {
                    Some(n) => {
                        counts.push(n);
                        words.next();
                    }
                    None => break,
                }
            }
            let description = words.collect::<Vec<_>>().join(" ");
            Some(IrqLine {
                irq,
                counts,
                description,
            })
        })
        .collect()
}

/// Whether an interrupt description names the interface `ifname` or one of `device_names`.
pub fn description_names(description: &str, ifname: &str, device_names: &[String]) -> bool {
    description
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .any(|word| {
            let starts = |name: &str| {
                word == name
                    || word
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(['-', '_', '@', ':', '.']))
            };
            // PCI addresses appear inside the word (`mlx5_comp0@pci:0000:3b:00.0`).
            starts(ifname)
                || device_names.iter().any(|d| {
                    starts(d) || (d.contains(':') && d.len() >= 7 && word.contains(d.as_str()))
                })
        })
}

/// One IRQ of a NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicIrq {
    /// IRQ number.
    pub irq: u32,
    /// Its name in `/proc/interrupts`.
    pub name: String,
    /// CPUs it may be delivered to (`effective_affinity_list`, else `smp_affinity_list`).
    pub affinity: Vec<usize>,
    /// Interrupts taken so far, all CPUs together.
    pub total: u64,
}

/// A network interface with a device behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    /// Interface name.
    pub name: String,
    /// The device directory's name (`0000:3b:00.0`, `virtio2`).
    pub device: String,
    /// Its interrupts; empty when none could be found.
    pub irqs: Vec<NicIrq>,
}

impl Nic {
    /// CPUs any of this NIC's IRQs are delivered to, ascending.
    pub fn irq_cpus(&self) -> Vec<usize> {
        let set: BTreeSet<usize> = self
            .irqs
            .iter()
            .flat_map(|i| i.affinity.iter().copied())
            .collect();
        set.into_iter().collect()
    }
}

/// The NICs of the host: interfaces under `/sys/class/net` that have a `device` link (so not `lo`,
/// bridges, `ifb`, veth ...).
pub fn read_nics(fs: &HostFs) -> Vec<Nic> {
    let interrupts = fs
        .read("proc/interrupts")
        .map(|t| parse_interrupts(&t))
        .unwrap_or_default();
    let Ok(names) = fs.entries("sys/class/net") else {
        return Vec::new();
    };
    let mut nics = Vec::new();
    for name in names {
        let device_rel = format!("sys/class/net/{name}/device");
        if !fs.exists(&device_rel) {
            continue;
        }
        let device_path = fs.canonicalize(&device_rel).unwrap_or_default();
        let device = file_name(&device_path);
        let mut device_names = vec![device.clone()];
        let mut irq_numbers: BTreeSet<u32> = BTreeSet::new();
        // MSI vectors of the device, or of the PCI function a virtio device sits on.
        let parent = device_path.parent().map(|p| p.to_path_buf());
        for dir in [Some(device_path.clone()), parent].into_iter().flatten() {
            if let Ok(entries) = std::fs::read_dir(dir.join("msi_irqs")) {
                for e in entries.flatten() {
                    if let Some(n) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                        irq_numbers.insert(n);
                    }
                }
                let pci = file_name(&dir);
                if !device_names.contains(&pci) {
                    device_names.push(pci);
                }
                break;
            }
        }
        for line in &interrupts {
            if description_names(&line.description, &name, &device_names) {
                irq_numbers.insert(line.irq);
            }
        }
        let irqs = irq_numbers
            .into_iter()
            .map(|irq| {
                let line = interrupts.iter().find(|l| l.irq == irq);
                let affinity = ["effective_affinity_list", "smp_affinity_list"]
                    .iter()
                    .find_map(|f| {
                        let text = fs.read(&format!("proc/irq/{irq}/{f}")).ok()?;
                        parse_cpu_list(&text).ok().filter(|l| !l.is_empty())
                    })
                    .unwrap_or_default();
                NicIrq {
                    irq,
                    name: line
                        .and_then(|l| l.description.split_whitespace().last())
                        .unwrap_or("")
                        .to_owned(),
                    affinity,
                    total: line.map_or(0, |l| l.counts.iter().sum()),
                }
            })
            .collect();
        nics.push(Nic { name, device, irqs });
    }
    nics
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "           CPU0       CPU1       \n \
 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n \
 38:          0       1182 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n \
 39:        918          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n \
 41:       2047          0 PCI-MSIX-0000:00:04.0   1-edge      virtio21-rx\n \
 90:          5          7  IR-PCI-MSI 524288-edge  eth1-TxRx-0\n \
 91:          0          3  IR-PCI-MSI 524289-edge  mlx5_comp0@pci:0000:3b:00.0\n\
NMI:          0          0   Non-maskable interrupts\n\
ERR:          0\n";

    #[test]
    fn parses_proc_interrupts() {
        let lines = parse_interrupts(INTERRUPTS);
        assert_eq!(lines.len(), 6, "NMI and ERR are not numbered IRQs");
        assert_eq!(lines[1].irq, 38);
        assert_eq!(lines[1].counts, vec![0, 1182]);
        assert!(lines[1].description.ends_with("virtio2-input.0"));
    }

    #[test]
    fn matches_nic_interrupt_names() {
        let lines = parse_interrupts(INTERRUPTS);
        let named = |ifname: &str, dev: &[&str]| -> Vec<u32> {
            let dev: Vec<String> = dev.iter().map(|s| s.to_string()).collect();
            lines
                .iter()
                .filter(|l| description_names(&l.description, ifname, &dev))
                .map(|l| l.irq)
                .collect()
        };
        // virtio2 must not match virtio21.
        assert_eq!(named("eth0", &["virtio2"]), vec![38, 39]);
        assert_eq!(named("eth1", &["0000:00:09.0"]), vec![90]);
        assert_eq!(named("ens1", &["0000:3b:00.0"]), vec![91]);
        assert_eq!(named("eth9", &["virtio9"]), Vec::<u32>::new());
    }

    #[test]
    fn finds_nics_and_irq_affinity_in_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let fs = HostFs::at(dir.path());
        let mkdir = |rel: &str| std::fs::create_dir_all(fs.path(rel)).unwrap();
        let write = |rel: &str, text: &str| {
            let p = fs.path(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        mkdir("sys/devices/pci0000:00/0000:00:03.0/virtio2");
        mkdir("sys/devices/pci0000:00/0000:00:03.0/msi_irqs/37");
        mkdir("sys/class/net/eth0");
        mkdir("sys/class/net/lo");
        std::os::unix::fs::symlink(
            fs.path("sys/devices/pci0000:00/0000:00:03.0/virtio2"),
            fs.path("sys/class/net/eth0/device"),
        )
        .unwrap();
        write("proc/interrupts", INTERRUPTS);
        write("proc/irq/37/smp_affinity_list", "0-1\n");
        write("proc/irq/38/effective_affinity_list", "1\n");
        write("proc/irq/38/smp_affinity_list", "0-1\n");
        write("proc/irq/39/smp_affinity_list", "0\n");
        let nics = read_nics(&fs);
        assert_eq!(nics.len(), 1, "lo has no device");
        let eth0 = &nics[0];
        assert_eq!(eth0.device, "virtio2");
        let irqs: Vec<u32> = eth0.irqs.iter().map(|i| i.irq).collect();
        assert_eq!(irqs, vec![37, 38, 39]);
        assert_eq!(eth0.irqs[1].affinity, vec![1], "effective affinity wins");
        assert_eq!(eth0.irqs[1].total, 1182);
        assert_eq!(eth0.irq_cpus(), vec![0, 1]);
    }
}
