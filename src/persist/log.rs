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
    file: BufferedFile,
    /// Where the next write goes: the file's length as far as this writer knows.
    end: u64,
}

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
        let mut log = LogWriter { file, end: 0 };
        log.write(&header, true).await?;
        Ok(log)
    }

    /// Open the existing log at `path` (written at start-up, `super::recover`) to append after its
    /// first `len` bytes.
    pub async fn open(path: &Path, len: u64) -> Result<LogWriter, LogError> {
        let file = OpenOptions::new().write(true).buffered_open(path).await?;
        Ok(LogWriter { file, end: len })
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
        let mut written = 0usize;
        while written < batch.len() {
            let at = self.end + written as u64;
            let n = self.file.write_at(batch[written..].to_vec(), at).await?;
            if n == 0 {
                return Err(LogError::NoProgress(at));
            }
            written += n;
        }
        if sync {
            self.file.fdatasync().await?;
        }
        self.end += batch.len() as u64;
        Ok(())
    }

    /// Make what was written durable (`persistence_sync interval`).
    pub async fn sync(&mut self) -> Result<(), LogError> {
        self.file.fdatasync().await?;
        Ok(())
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
            file: OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .buffered_open(aside)
                .await?,
            end: 0,
        };
        next.write(snapshot, true).await?;
        glommio::io::rename(aside, path).await?;
        if let Some(dir) = path.parent() {
            let dir = glommio::io::Directory::open(dir).await?;
            dir.sync().await?;
            dir.close().await?;
        }
        let old = std::mem::replace(self, next);
        old.file.close().await?;
        Ok(())
    }

    /// Sync and close the file.
    pub async fn close(self) -> Result<(), LogError> {
        self.file.fdatasync().await?;
        self.file.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
