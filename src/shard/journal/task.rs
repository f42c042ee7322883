//! The journal's I/O: the task that writes what the shard appended, in batches (group commit), syncs
//! it (`persistence_sync`), lets what waited for it go ([`Shard::journal_written`]), and compacts the
//! log into a snapshot of the shard's state when it has grown ([`Shard::snapshot`]).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::{owns_retained, write_session, Batch, RETRY};
use crate::config::PersistenceSync;
use crate::logging::log_type;
use crate::persist::image::SnapshotWriter;
use crate::persist::log::{LogError, LogWriter, Syncer};
use crate::persist::Persistence;
use crate::router::Mail;
use crate::shard::Shard;

impl Shard {
    /// A snapshot of what this shard keeps: its durable sessions and the retained messages it owns.
    fn snapshot(&self) -> BytesMut {
        let mut w = SnapshotWriter::new(self.id, self.shards as u16);
        for s in self.sessions.iter().filter(|s| s.durable) {
            write_session(&mut w, s, false);
        }
        // Accepted messages not yet on disk everywhere: with the message, after (over) the above.
        for (&key, (client_id, packet_id, m)) in &self.journal.unrouted {
            let durable = self
                .sessions
                .slot_of(client_id)
                .and_then(|slot| self.sessions.at(slot))
                .is_some_and(|s| s.durable);
            if durable {
                w.accepted(client_id, *packet_id, key, Some(m.clone()));
            }
        }
        for (_, key) in &self.journal.recent_keys {
            w.seen(key);
        }
        let (me, shards) = (self.id, self.shards);
        self.retained.for_each_own(|m| {
            if owns_retained(&m.topic, me, shards) {
                w.retained(m);
            }
        });
        w.finish()
    }

    /// A batch was written: acknowledgements and staged writes go out, other shards learn what is
    /// covered.
    fn journal_written(&mut self, batch: &Batch) {
        let me = self.id;
        for (to, count) in self.journal.written(batch) {
            self.mail.send(to, Mail::Durable { from: me, count });
        }
        let durable = self.journal.durable;
        let mut staged = std::mem::take(&mut self.journal.staged);
        staged.retain(|id| {
            self.sessions
                .slot_of(id)
                .and_then(|slot| self.sessions.at_mut(slot))
                .is_some_and(|s| s.release_staged(durable))
        });
        staged.dedup();
        self.journal.staged = staged;
    }
}

/// Writes what the shard appends, in batches (group commit), until shutdown; compacts the log when it
/// has grown.
pub(in crate::shard) async fn journal_task(
    shard: Rc<RefCell<Shard>>,
    persistence: Persistence,
    generation: u64,
    log_len: u64,
) {
    let (me, sync) = {
        let s = shard.borrow();
        (s.id, persistence.sync)
    };
    let path = persistence.files.log(generation, me);
    std::future::poll_fn(|cx| shard.borrow_mut().journal.poll_begun(cx)).await;
    let mut log = loop {
        match LogWriter::open(&path, log_len).await {
            Ok(log) => break log,
            Err(_) if shard.borrow().journal.stopping => return,
            Err(e) => {
                tracing::error!(target: log_type::ERROR,
                    "Error: cannot open {}: {e}. QoS 1/2 acknowledgements are held until it can \
                     be opened; retrying every {} s.", path.display(), RETRY.as_secs());
                glommio::timer::sleep(RETRY).await;
            }
        }
    };
    let aside = persistence.files.compacting(generation, me);
    let mut snapshot_len = log.len();
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let timeout = match sync {
            PersistenceSync::Interval(every) if unsynced => Some(last_sync + every),
            _ => None,
        };
        let work = std::future::poll_fn(|cx| shard.borrow_mut().journal.poll_work(cx));
        match timeout {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                futures_lite::future::or(work, glommio::timer::sleep(wait)).await;
            }
            None => work.await,
        }
        let (batch, stopping) = {
            let mut s = shard.borrow_mut();
            (s.journal.take_batch(), s.journal.stopping)
        };
        match sync {
            PersistenceSync::Always => {
                write(&shard, &mut log, &batch.bytes, &path).await;
                if batch.bytes.is_empty() && shard.borrow().journal.syncing == 0 {
                    // Only receipts to report, and everything before them is synced.
                    shard.borrow_mut().journal_written(&batch);
                } else {
                    // Synced while the next batch is written (see `LogWriter::syncer`).
                    shard.borrow_mut().journal.syncing += 1;
                    glommio::spawn_local(sync_batch(
                        shard.clone(),
                        log.syncer(),
                        batch,
                        path.clone(),
                    ))
                    .detach();
                }
            }
            PersistenceSync::Interval(every) => {
                write(&shard, &mut log, &batch.bytes, &path).await;
                if last_sync.elapsed() >= every || stopping {
                    sync_retrying(&shard, &log.syncer(), &path).await;
                    last_sync = Instant::now();
                    unsynced = false;
                } else if !batch.bytes.is_empty() {
                    unsynced = true;
                }
                shard.borrow_mut().journal_written(&batch);
            }
            PersistenceSync::None => {
                write(&shard, &mut log, &batch.bytes, &path).await;
                shard.borrow_mut().journal_written(&batch);
            }
        }
        if log.len() > persistence.compact_min.max(snapshot_len.saturating_mul(4)) && !stopping {
            std::future::poll_fn(|cx| shard.borrow_mut().journal.poll_synced(cx)).await;
            // The snapshot is the state with every record appended so far applied: those records
            // are taken with it and not written again (applied twice, a `Queue` would owe its
            // message twice); what is appended from now on goes to the new file.
            let (snapshot, covered) = {
                let mut s = shard.borrow_mut();
                s.journal.forget_old_keys(Instant::now());
                (s.snapshot(), s.journal.take_batch())
            };
            match log.replace(&snapshot, &aside, &path).await {
                Ok(()) => {
                    snapshot_len = log.len();
                    shard.borrow_mut().journal_written(&covered);
                    tracing::info!(target: log_type::INFORMATION,
                        "Compacted {} to {} bytes.", path.display(), snapshot_len);
                }
                Err(e) => {
                    tracing::error!(target: log_type::ERROR,
                        "Error: cannot compact {}: {e}; the log keeps growing until it can.",
                        path.display());
                    // The records the snapshot would have covered go to the log after all.
                    shard.borrow_mut().journal.put_back(covered);
                    // Try again once it has grown as much again.
                    snapshot_len = log.len() / 4 + 1;
                }
            }
        }
        if stopping && shard.borrow().journal.pending.is_empty() {
            break;
        }
    }
    std::future::poll_fn(|cx| shard.borrow_mut().journal.poll_synced(cx)).await;
    if let Err(e) = log.close().await {
        tracing::error!(target: log_type::ERROR, "Error: closing {}: {e}", path.display());
    }
}

/// Append `bytes` to the log, retrying (acknowledgements held, publishers waiting) while it fails.
async fn write(shard: &Rc<RefCell<Shard>>, log: &mut LogWriter, bytes: &[u8], path: &Path) {
    if bytes.is_empty() {
        return;
    }
    while let Err(e) = log.write(bytes, false).await {
        write_failed(shard, path, &e);
        glommio::timer::sleep(RETRY).await;
    }
}

/// Sync the log, retrying while it fails.
async fn sync_retrying(shard: &Rc<RefCell<Shard>>, syncer: &Syncer, path: &Path) {
    while let Err(e) = syncer.sync().await {
        write_failed(shard, path, &e);
        glommio::timer::sleep(RETRY).await;
    }
}

fn write_failed(shard: &Rc<RefCell<Shard>>, path: &Path, e: &LogError) {
    let mut s = shard.borrow_mut();
    if !s.journal.failing {
        s.journal.failing = true;
        tracing::error!(target: log_type::ERROR,
            "Error: cannot write {}: {e}. QoS 1/2 acknowledgements are held (publishers wait) \
             until it can be written; retrying every {} s.", path.display(), RETRY.as_secs());
    }
}

/// `persistence_sync always`: sync what `batch` wrote, then let what waited for it go.
async fn sync_batch(shard: Rc<RefCell<Shard>>, syncer: Syncer, batch: Batch, path: PathBuf) {
    sync_retrying(&shard, &syncer, &path).await;
    let mut s = shard.borrow_mut();
    s.journal_written(&batch);
    s.journal.syncing -= 1;
    s.journal.wake();
}
