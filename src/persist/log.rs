//! A shard's append-only log file, written through glommio's file API (io_uring: never a blocking
//! call on the shard's thread), with group commit: records are appended to a buffer as the shard's
//! state changes ([`LogWriter::append`], no I/O), and one [`LogWriter::commit`] writes everything
//! appended since the last one and makes it durable with one `fdatasync`. What waits for durability
//! (a QoS 1/2 PUBACK under `persistence_sync always`) waits for the commit that covers its record's
//! offset ([`LogWriter::durable`]); when to commit (after each batch of packets, or every N ms) is
//! the shard's decision.
//!
//! Runs on its shard's thread only (glommio files are `!Send`). The format is [`super::record`]'s;
//! reading a log back is [`super::record::replay`] over the file's bytes.

use std::path::Path;

use bytes::BytesMut;
use glommio::io::{BufferedFile, OpenOptions};

use super::record::{self, Record, RecordEncodeError};

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
    /// Records appended and not yet written.
    pending: BytesMut,
    /// Bytes of the file written and synced: every record below this offset is durable.
    durable: u64,
}

impl LogWriter {
    /// Create (or truncate) the log at `path` for shard `shard` of `shards`, its header appended and
    /// committed with the first [`Self::commit`].
    pub async fn create(path: &Path, shard: u16, shards: u16) -> Result<LogWriter, LogError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(path)
            .await?;
        let mut pending = BytesMut::new();
        record::encode_header(shard, shards, &mut pending);
        Ok(LogWriter {
            file,
            pending,
            durable: 0,
        })
    }

    /// Append one record (no I/O). Returns the offset its end will have in the file: it is durable once
    /// [`Self::durable`] reaches it. Nothing is appended when the record cannot be encoded.
    pub fn append(&mut self, record: &Record) -> Result<u64, RecordEncodeError> {
        record::encode(record, &mut self.pending)?;
        Ok(self.durable + self.pending.len() as u64)
    }

    /// Bytes appended and not yet committed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Every record ending at or below this offset is on disk.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Write what was appended since the last commit and `fdatasync` it: one write and one sync for
    /// however many records (group commit). Returns the new durable offset. On an error nothing of
    /// this batch counts as durable (the caller stops acknowledging; a retry writes it again).
    pub async fn commit(&mut self) -> Result<u64, LogError> {
        if self.pending.is_empty() {
            return Ok(self.durable);
        }
        let batch = self.pending.split().freeze();
        let mut written = 0usize;
        while written < batch.len() {
            let at = self.durable + written as u64;
            let n = match self.file.write_at(batch[written..].to_vec(), at).await {
                Ok(n) => n,
                Err(e) => {
                    self.restore(&batch);
                    return Err(e.into());
                }
            };
            if n == 0 {
                self.restore(&batch);
                return Err(LogError::NoProgress(at));
            }
            written += n;
        }
        if let Err(e) = self.file.fdatasync().await {
            self.restore(&batch);
            return Err(e.into());
        }
        self.durable += batch.len() as u64;
        Ok(self.durable)
    }

    /// A failed batch goes back in front of what was appended meanwhile, to be written again.
    fn restore(&mut self, batch: &[u8]) {
        let mut again = BytesMut::with_capacity(batch.len() + self.pending.len());
        again.extend_from_slice(batch);
        again.extend_from_slice(&self.pending);
        self.pending = again;
    }

    /// Commit what is pending, then close the file.
    pub async fn close(mut self) -> Result<(), LogError> {
        self.commit().await?;
        self.file.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
