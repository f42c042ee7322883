//! A shard's append-only log file, written through glommio's file API (io_uring: never a blocking
//! call on the shard's thread), with group commit: the shard appends records to a buffer as its state
//! changes (`shard::journal`, no I/O), and its journal task hands everything appended since the last
//! write to [`LogWriter::write`]: one write and, when durability is asked for, one `fdatasync` for
//! however many records. [`LogWriter::replace`] swaps in a compacted file (a snapshot of the shard's
//! state) when the log has grown.
//!
//! Runs on its shard's thread only (glommio files are `!Send`). The format is [`super::record`]'s;
//! reading a log back is [`super::record::scan`] over the file's bytes.

use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use glommio::io::{BufferedFile, OpenOptions};

use super::record;

/// Why the log could not be written; the shard must then stop acknowledging what needs durability.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Creating, writing or syncing the file failed (disk full, I/O error).
    #[error("persistence log: {0}")]
    Io(#[from] glommio::GlommioError<()>),
    /// The kernel wrote nothing where something was due.
    #[error("persistence log: a write made no progress at offset {0}")]
    NoProgress(u64),
}

/// One shard's log, open for appending (see the module doc).
pub struct LogWriter {
    /// Shared with the [`Syncer`]s of syncs in flight.
    file: Rc<BufferedFile>,
    /// Where the next write goes: the end of the records.
    end: u64,
    /// The file's size: zeros written ahead of `end` (see [`PREALLOCATE`]).
    allocated: u64,
}

/// Bytes of zeros written ahead of the records at a time. A sync of a write that grows the file
/// must also commit its new size (a file-system journal commit, measured at 1.8x the time of a sync
/// within allocated blocks on this machine's ext4), so the file grows a mebibyte at a time and
/// records overwrite zeros. Replay reads the zeros after the last record as unused space.
pub const PREALLOCATE: u64 = 1 << 20;

impl LogWriter {
    /// Create (or truncate) the log at `path` for shard `shard` of `shards`, with its header written
    /// and synced.
    pub async fn create(path: &Path, shard: u16, shards: u16) -> Result<LogWriter, LogError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(path)
            .await?;
        let mut header = BytesMut::new();
        record::encode_header(shard, shards, &mut header);
        let mut log = LogWriter {
            file: Rc::new(file),
            end: 0,
            allocated: 0,
        };
        log.write(&header, true).await?;
        Ok(log)
    }

    /// Open the existing log at `path` (written at start-up, `super::recover`) to append after its
    /// first `len` bytes.
    pub async fn open(path: &Path, len: u64) -> Result<LogWriter, LogError> {
        let file = OpenOptions::new().write(true).buffered_open(path).await?;
        let allocated = file.file_size().await?.max(len);
        Ok(LogWriter {
            file: Rc::new(file),
            end: len,
            allocated,
        })
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Append `batch` (whole records) and, with `sync`, `fdatasync` it. On an error the file may hold
    /// part of the batch after its old end; the next write goes to the same offset again, over it.
    pub async fn write(&mut self, batch: &[u8], sync: bool) -> Result<(), LogError> {
        let needed = self.end + batch.len() as u64;
        if needed > self.allocated {
            let target = needed.next_multiple_of(PREALLOCATE) + PREALLOCATE;
            self.write_all(&vec![0; (target - self.allocated) as usize], self.allocated)
                .await?;
            self.allocated = target;
        }
        self.write_all(batch, self.end).await?;
        if sync {
            self.file.fdatasync().await?;
        }
        self.end += batch.len() as u64;
        Ok(())
    }

    async fn write_all(&self, bytes: &[u8], at: u64) -> Result<(), LogError> {
        let mut written = 0usize;
        while written < bytes.len() {
            let pos = at + written as u64;
            let n = self.file.write_at(bytes[written..].to_vec(), pos).await?;
            if n == 0 {
                return Err(LogError::NoProgress(pos));
            }
            written += n;
        }
        Ok(())
    }

    /// Make what was written durable.
    pub async fn sync(&self) -> Result<(), LogError> {
        self.file.fdatasync().await?;
        Ok(())
    }

    /// A handle that syncs this file while the writer goes on writing: an `fdatasync` covers every
    /// write completed before it was issued, so syncs may overlap the next batch's write (and each
    /// other, the file system joining them into one journal commit).
    pub fn syncer(&self) -> Syncer {
        Syncer(self.file.clone())
    }

    /// Compaction: write `snapshot` (a whole file: header and records) to `aside`, sync it, rename
    /// it over `path` (this log) and sync the directory; the writer then appends to the new file.
    /// On an error this log is unchanged and stays in use.
    pub async fn replace(
        &mut self,
        snapshot: &[u8],
        aside: &Path,
        path: &Path,
    ) -> Result<(), LogError> {
        let mut next = LogWriter {
            file: Rc::new(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .buffered_open(aside)
                    .await?,
            ),
            end: 0,
            allocated: 0,
        };
        next.write(snapshot, true).await?;
        glommio::io::rename(aside, path).await?;
        if let Some(dir) = path.parent() {
            let dir = glommio::io::Directory::open(dir).await?;
            dir.sync().await?;
            dir.close().await?;
        }
        let old = std::mem::replace(self, next);
        old.close_file().await
    }

    /// Cut the zeros written ahead, sync and close the file (no [`Syncer`] may be left).
    pub async fn close(self) -> Result<(), LogError> {
        if self.allocated > self.end {
            self.file.truncate(self.end).await?;
        }
        self.file.fdatasync().await?;
        self.close_file().await
    }

    async fn close_file(self) -> Result<(), LogError> {
        // A syncer still in flight keeps the file open; it closes when the last handle goes.
        if let Ok(file) = Rc::try_unwrap(self.file) {
            file.close().await?;
        }
        Ok(())
    }
}

/// Syncs a log's file (see [`LogWriter::syncer`]).
pub struct Syncer(Rc<BufferedFile>);

impl Syncer {
    pub async fn sync(&self) -> Result<(), LogError> {
        self.0.fdatasync().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
