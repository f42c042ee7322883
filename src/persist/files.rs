//! Where a broker's durable state lives: the file names under `persistence_location` and the
//! generation that is current.
//!
//! - `<persistence_file>.<generation>.<shard>.log`: shard `shard`'s log of generation `generation`
//!   (a snapshot followed by the records appended since).
//! - `<persistence_file>.current`: `<generation> <shards>\n`, the generation to read at start-up and
//!   how many shards wrote it. Replaced atomically (written aside, synced, renamed, directory synced),
//!   so a crash while a new generation is written leaves the previous one current and complete.
//! - `<persistence_file>.<generation>.<shard>.log.corrupt-<unix seconds>`: a damaged log moved aside
//!   at start-up, kept for inspection and never read again.
//!
//! Blocking `std::fs` calls: only at start-up (before the shards' executors run) and from the CLI,
//! never on a shard's thread (docs/ARCHITECTURE.md, invariant 7).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The persistence directory and file-name prefix.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub prefix: String,
}

/// A generation and the shard count that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub shards: u16,
}

impl Files {
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Files {
        Files {
            dir: dir.into(),
            prefix: prefix.into(),
        }
    }

    /// Shard `shard`'s log of generation `generation`.
    pub fn log(&self, generation: u64, shard: u16) -> PathBuf {
        self.dir
            .join(format!("{}.{generation}.{shard}.log", self.prefix))
    }

    /// Where a shard's compacted log is written before it replaces the log.
    pub fn compacting(&self, generation: u64, shard: u16) -> PathBuf {
        self.dir
            .join(format!("{}.{generation}.{shard}.log.new", self.prefix))
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}.current", self.prefix))
    }

    /// The current generation, if the broker ever wrote one here.
    pub fn current(&self) -> io::Result<Option<Generation>> {
        let text = match fs::read_to_string(self.current_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut words = text.split_whitespace();
        let parsed = (|| {
            let number = words.next()?.parse().ok()?;
            let shards = words.next()?.parse().ok().filter(|&n: &u16| n > 0)?;
            Some(Generation { number, shards })
        })();
        parsed.map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not name a generation and a shard count: {text:?}",
                    self.current_path().display()
                ),
            )
        })
    }

    /// Make `generation` current: its logs must be complete and synced.
    pub fn set_current(&self, generation: Generation) -> io::Result<()> {
        let aside = self.dir.join(format!("{}.current.new", self.prefix));
        {
            let mut f = fs::File::create(&aside)?;
            writeln!(f, "{} {}", generation.number, generation.shards)?;
            f.sync_all()?;
        }
        fs::rename(&aside, self.current_path())?;
        sync_dir(&self.dir)
    }

    /// Remove the logs of every generation but `keep` (and leftovers of unfinished compactions).
    /// Moved-aside corrupt files stay.
    pub fn remove_others(&self, keep: u64) -> io::Result<()> {
        let keep_prefix = format!("{}.{keep}.", self.prefix);
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix(&format!("{}.", self.prefix)) else {
                continue;
            };
            let ours = rest.ends_with(".log") || rest.ends_with(".log.new");
            let numbered = rest
                .split('.')
                .next()
                .is_some_and(|g| g.parse::<u64>().is_ok());
            if ours && numbered && !(name.starts_with(&keep_prefix) && name.ends_with(".log")) {
                fs::remove_file(self.dir.join(name))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Move a damaged log aside; returns where it went.
    pub fn move_aside(&self, path: &Path) -> io::Result<PathBuf> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut to = PathBuf::from(format!("{}.corrupt-{secs}", path.display()));
        let mut n = 1;
        while to.exists() {
            to = PathBuf::from(format!("{}.corrupt-{secs}-{n}", path.display()));
            n += 1;
        }
        fs::rename(path, &to)?;
        sync_dir(&self.dir)?;
        Ok(to)
    }
}

/// Write `bytes` as the whole of `path` and sync it (start-up snapshots).
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Make a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
