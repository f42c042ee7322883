//! Read-only access to the host's `/sys` and `/proc`, rooted at a directory so that tests can point the
//! readers at a synthetic tree instead of the real machine.

use std::io;
use std::path::{Path, PathBuf};

/// A root under which `sys/...` and `proc/...` are read; `/` on a real host.
#[derive(Debug, Clone)]
pub struct HostFs {
    root: PathBuf,
}

impl HostFs {
    /// The running host.
    pub fn real() -> Self {
        HostFs::at("/")
    }

    /// A tree rooted at `root` (tests build one in a temporary directory).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        HostFs { root: root.into() }
    }

    /// The absolute path of `rel` (e.g. `sys/devices/system/cpu/online`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The contents of `rel`, trailing whitespace removed. sysfs and procfs files end with a newline.
    pub fn read(&self, rel: &str) -> io::Result<String> {
        let text = std::fs::read_to_string(self.path(rel))?;
        Ok(text.trim_end().to_owned())
    }

    /// `rel` parsed as one number, `None` when the file is absent or not a number (a kernel without the
    /// knob, or a container hiding it).
    pub fn read_u64(&self, rel: &str) -> Option<u64> {
        self.read(rel).ok()?.trim().parse().ok()
    }

    /// Whether `rel` exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Names of the entries of directory `rel` that start with `prefix` and continue with a number,
    /// with that number, sorted by it (`cpu0`, `cpu1`, ..., `cpu10`; `cpufreq` and `online` are skipped).
    pub fn numbered_entries(&self, rel: &str, prefix: &str) -> io::Result<Vec<(usize, String)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path(rel))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name.strip_prefix(prefix).and_then(|s| s.parse().ok()) {
                out.push((n, name.to_owned()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Names of every entry of directory `rel`, sorted.
    pub fn entries(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path(rel))? {
            if let Some(name) = entry?.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the symlink (or path) `rel` really points, as an absolute path.
    pub fn canonicalize(&self, rel: &str) -> io::Result<PathBuf> {
        std::fs::canonicalize(self.path(rel))
    }
}

/// The last component of `path` as a string ("" when there is none).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned()
}
