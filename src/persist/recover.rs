//! Start-up: read the current generation's logs (one thread per file, before the shards' executors
//! run), merge what they describe, give each session to its home under the shard count of this run
//! (which may differ from the one that wrote the files), and write a new generation: one compacted
//! log per shard, made current atomically, the old generation removed after.
//!
//! A log that ends in a partial record (a crash while it was written) loses that record and says so;
//! a log damaged elsewhere keeps the records before the damage and is moved aside with an error line;
//! a log of the current generation that is missing is an error line too. None of these stops the
//! broker: it starts with everything that could be read.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ahash::{AHashMap, AHashSet};

use super::files::{self, Files, Generation};
use super::image::{Owed, SessionImage, ShardImage, SnapshotWriter};
use super::record::{self, Tail};
use crate::codec::{SubscriptionOptions, Utf8Bytes};
use crate::logging::log_type;
use crate::message::{DurableKey, Message};
use crate::shard::home_of;
use crate::topic;

/// Why the persistence directory could not be used; the broker does not start.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("Error: persistence_location {}: {source}", .path.display())]
    Dir { path: PathBuf, source: io::Error },
    #[error("Error: persistence file {}: {source}", .path.display())]
    File { path: PathBuf, source: io::Error },
}

/// What the shards start with.
pub struct Recovered {
    /// The generation the shards append to.
    pub generation: u64,
    /// Per shard: the sessions whose home it is, with their message ids as written in its new log.
    pub shards: Vec<ShardImage>,
    /// Every retained message (each shard keeps the whole set, see `shard::retained`).
    pub retained: Arc<Vec<Arc<Message>>>,
    /// Per shard: the length of its new log, where its appends start.
    pub log_lens: Vec<u64>,
}

/// How one file read went, reported after all were read.
struct FileRead {
    image: ShardImage,
    records: usize,
}

/// Read, merge, re-home and rewrite (see the module doc) for a broker of `shards` shards.
pub fn recover(files: &Files, shards: u16) -> Result<Recovered, PersistError> {
    let started = Instant::now();
    std::fs::create_dir_all(&files.dir).map_err(|source| PersistError::Dir {
        path: files.dir.clone(),
        source,
    })?;
    let current = files.current().map_err(|source| PersistError::File {
        path: files.dir.join(format!("{}.current", files.prefix)),
        source,
    })?;
    let reads = match current {
        Some(g) => read_generation(files, g)?,
        None => Vec::new(),
    };
    // Merge: a client id has one home per generation, so sessions meet at most once; a retained
    // topic likewise has one owner. Each session remembers the file it came from (for `reconcile`).
    let mut sessions: AHashMap<Utf8Bytes, (usize, SessionImage)> = AHashMap::new();
    let mut retained: AHashMap<Utf8Bytes, Arc<Message>> = AHashMap::new();
    let mut seen = Vec::new();
    let mut keyed = Vec::new();
    let mut routed = AHashSet::new();
    let mut done = AHashSet::new();
    let mut orphans = 0;
    let mut records = 0;
    for (file, read) in reads.into_iter().enumerate() {
        records += read.records;
        orphans += read.image.orphans;
        sessions.extend(
            read.image
                .sessions
                .into_iter()
                .map(|(id, s)| (id, (file, s))),
        );
        retained.extend(read.image.retained);
        seen.push(read.image.keyed.iter().map(|(k, _)| k.key).collect());
        keyed.extend(read.image.keyed);
        routed.extend(read.image.routed);
        done.extend(read.image.done);
    }
    let reconciled = reconcile(&mut sessions, keyed, &seen, &routed, &done);
    if orphans > 0 {
        tracing::error!(target: log_type::ERROR,
            "Error: {orphans} persistence records named a session or message that their log never \
             created; they were skipped.");
    }
    // Re-home, and number each shard's messages afresh (ids are per file).
    let mut images: Vec<ShardImage> = (0..shards).map(|_| ShardImage::default()).collect();
    let mut ids: Vec<AHashMap<*const Message, u64>> = vec![AHashMap::new(); usize::from(shards)];
    for (client_id, (_, mut s)) in sessions {
        let home = usize::from(home_of(client_id.as_bytes(), usize::from(shards)));
        let image = &mut images[home];
        for o in &mut s.owed {
            let next = &mut image.next_message_id;
            o.message_id = *ids[home].entry(Arc::as_ptr(&o.message)).or_insert_with(|| {
                *next += 1;
                *next
            });
        }
        image.sessions.insert(client_id, s);
    }
    for image in &mut images {
        image.next_message_id += 1;
    }
    let generation = current.map_or(1, |g| g.number + 1);
    let log_lens = write_generation(files, generation, &images, &retained)?;
    files
        .set_current(Generation {
            number: generation,
            shards,
        })
        .map_err(|source| PersistError::File {
            path: files.dir.join(format!("{}.current", files.prefix)),
            source,
        })?;
    files
        .remove_others(generation)
        .map_err(|source| PersistError::Dir {
            path: files.dir.clone(),
            source,
        })?;
    let session_count: usize = images.iter().map(|i| i.sessions.len()).sum();
    let owed: usize = images.iter().map(|i| i.owed_count()).sum();
    if current.is_some() {
        tracing::info!(target: log_type::NOTICE,
            "Restored {session_count} persistent sessions, {owed} queued messages and {} retained \
             messages ({records} records) from {} in {} ms.",
            retained.len(), files.dir.display(), started.elapsed().as_millis());
    }
    if reconciled > 0 {
        tracing::info!(target: log_type::NOTICE,
            "Gave {reconciled} QoS 2 messages accepted before the stop to the sessions whose shards \
             had not written them yet.");
    }
    Ok(Recovered {
        generation,
        shards: images,
        retained: Arc::new(retained.into_values().collect()),
        log_lens,
    })
}

/// Exactly once across a crash for QoS 2 (see `Record::Accepted`). An accepted message reaches several
/// shards' logs, which a crash may leave in any combination; every log that has it names it by its
/// key, its publisher and packet id. For each key whose exchange had not ended (`AcceptedDone`):
/// - the publisher's packet id stays in use, whichever log named it: a repeat of its PUBLISH is
///   acknowledged, not routed again (the publisher's own `Accepted` may be the record the crash lost);
/// - unless every shard it went to had it (`Routed`), it is owed now to each matching session whose
///   log lacks it. Those logs lack it only at their end (a shard's records from one publisher's
///   shard are in order), so it is owed last, keys in order.
///
/// Returns how many deliveries were added.
fn reconcile(
    sessions: &mut AHashMap<Utf8Bytes, (usize, SessionImage)>,
    keyed: Vec<(DurableKey, Option<Arc<Message>>)>,
    seen: &[AHashSet<u64>],
    routed: &AHashSet<u64>,
    done: &AHashSet<u64>,
) -> usize {
    struct Accepted {
        publisher: Utf8Bytes,
        packet_id: u16,
        message: Option<Arc<Message>>,
    }
    let mut keys: AHashMap<u64, Accepted> = AHashMap::new();
    for (id, (_, s)) in sessions.iter_mut() {
        for (&packet_id, (key, message)) in s.accepted.iter_mut() {
            let message = message.take();
            if *key == 0 {
                continue;
            }
            let a = keys.entry(*key).or_insert_with(|| Accepted {
                publisher: id.clone(),
                packet_id,
                message: None,
            });
            a.message = a.message.take().or(message);
        }
    }
    for (k, message) in keyed {
        let a = keys.entry(k.key).or_insert_with(|| Accepted {
            publisher: k.publisher,
            packet_id: k.packet_id,
            message: None,
        });
        a.message = a.message.take().or(message);
    }
    let mut keys: Vec<(u64, Accepted)> = keys
        .into_iter()
        .filter(|(k, _)| !done.contains(k))
        .collect();
    keys.sort_unstable_by_key(|(k, _)| *k);
    let mut added = 0;
    for (key, a) in keys {
        if let Some((_, p)) = sessions.get_mut(&a.publisher) {
            p.completed.remove(&a.packet_id);
            let slot = p.accepted.entry(a.packet_id).or_insert((key, None));
            // A later exchange that reused the packet id wins (keys grow on one publisher's shard).
            if slot.0 < key {
                *slot = (key, None);
            }
        }
        let Some(message) = a.message.filter(|_| !routed.contains(&key)) else {
            continue;
        };
        for (id, (file, s)) in sessions.iter_mut() {
            if seen.get(*file).is_some_and(|keys| keys.contains(&key)) {
                continue;
            }
            let mut best: Option<SubscriptionOptions> = None;
            for (filter, o) in &s.subscriptions {
                if (o.no_local && *id == a.publisher) || !topic::matches(filter, &message.topic) {
                    continue;
                }
                let b = best.get_or_insert(*o);
                b.qos = b.qos.max(o.qos);
                b.retain_as_published |= o.retain_as_published;
            }
            let Some(o) = best else { continue };
            s.owed.push_back(Owed {
                message: message.clone(),
                qos: message.qos.min(o.qos),
                retain: o.retain_as_published && message.retain,
                packet_id: None,
                released: false,
                message_id: 0,
            });
            added += 1;
        }
    }
    added
}

/// Read every log of generation `g`, one thread each.
fn read_generation(files: &Files, g: Generation) -> Result<Vec<FileRead>, PersistError> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..g.shards)
            .map(|shard| {
                let path = files.log(g.number, shard);
                std::thread::Builder::new()
                    .name(format!("restore-{shard}"))
                    .spawn_scoped(scope, move || read_log(files, path))
                    .expect("spawn a start-up reader thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("start-up reader thread panicked"))
            .collect()
    })
}

fn read_log(files: &Files, path: PathBuf) -> Result<FileRead, PersistError> {
    let mut image = ShardImage::default();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::error!(target: log_type::ERROR,
                "Error: {} is missing: the sessions and retained messages it held are lost.",
                path.display());
            return Ok(FileRead { image, records: 0 });
        }
        Err(source) => return Err(PersistError::File { path, source }),
    };
    let scan = record::scan(&bytes, |r| image.apply(r));
    image.finish();
    let damaged = |offset: u64, what: &dyn std::fmt::Display| -> Result<(), PersistError> {
        let aside = files
            .move_aside(&path)
            .map_err(|source| PersistError::File {
                path: path.clone(),
                source,
            })?;
        tracing::error!(target: log_type::ERROR,
            "Error: {} is corrupt at offset {offset} ({what}): kept the {} records before it and \
             moved the file to {}.",
            path.display(), scan.records, aside.display());
        Ok(())
    };
    match scan.tail {
        Tail::Clean => {}
        // Zeros written ahead of the records (`log::PREALLOCATE`), left by a stop without a close.
        Tail::Torn { .. } if bytes[scan.good_len..].iter().all(|&b| b == 0) => {}
        Tail::Torn { dropped, .. } => {
            tracing::warn!(target: log_type::WARNING,
                "Warning: {}: torn tail, dropped {dropped} bytes after the last good record at \
                 offset {} (a write the crash interrupted; it was never acknowledged).",
                path.display(), scan.good_len);
        }
        Tail::Corrupt(e) => damaged(e.offset(), &e)?,
        Tail::BadHeader(e) => damaged(0, &e)?,
    }
    Ok(FileRead {
        image,
        records: scan.records,
    })
}

/// Write every shard's snapshot of generation `generation`, one thread each; returns their lengths.
fn write_generation(
    files: &Files,
    generation: u64,
    images: &[ShardImage],
    retained: &AHashMap<Utf8Bytes, Arc<Message>>,
) -> Result<Vec<u64>, PersistError> {
    let shards = images.len();
    std::thread::scope(|scope| {
        let handles: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(shard, image)| {
                std::thread::Builder::new()
                    .name(format!("snapshot-{shard}"))
                    .spawn_scoped(scope, move || {
                        let mut w = SnapshotWriter::new(shard as u16, shards as u16);
                        w.image(image, |_| false);
                        for (topic, m) in retained {
                            if usize::from(home_of(topic.as_bytes(), shards)) == shard {
                                w.retained(m);
                            }
                        }
                        let bytes = w.finish();
                        let path = files.log(generation, shard as u16);
                        files::write_synced(&path, &bytes)
                            .map(|()| bytes.len() as u64)
                            .map_err(|source| PersistError::File { path, source })
                    })
                    .expect("spawn a start-up writer thread")
            })
            .collect();
        let lens = handles
            .into_iter()
            .map(|h| h.join().expect("start-up writer thread panicked"))
            .collect::<Result<Vec<_>, _>>()?;
        files::sync_dir(&files.dir).map_err(|source| PersistError::Dir {
            path: files.dir.clone(),
            source,
        })?;
        Ok(lens)
    })
}

#[cfg(test)]
mod tests;
