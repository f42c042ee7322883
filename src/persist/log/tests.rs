//! The log on a real file, driven by a glommio executor as a shard drives it: what is committed
//! replays, in order; what was only appended is not on disk; a torn write is seen as such.

use std::path::PathBuf;

use glommio::{LocalExecutorBuilder, Placement};

use super::*;
use crate::codec::{QoS, SubscriptionOptions, Utf8Bytes};
use crate::persist::record::{replay, Record, Tail};
use bytes::BytesMut;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmq-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `f` on a glommio executor of its own (a shard's thread) and returns its result.
fn on_a_shard<T: Send + 'static, F, Fut>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(64 << 10)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor ran")
}

fn subscribe(client: &'static str, filter: &'static str) -> Record {
    Record::Subscribe {
        client_id: Utf8Bytes::from_static(client),
        filter: Utf8Bytes::from_static(filter),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        },
    }
}

fn encoded(records: &[Record]) -> BytesMut {
    let mut out = BytesMut::new();
    for r in records {
        record::encode(r, &mut out).unwrap();
    }
    out
}

#[test]
fn written_batches_replay_in_order_and_a_reopened_log_appends_after_them() {
    let dir = scratch("write");
    let path = dir.join("shard-1.log");
    let p = path.clone();
    let lens = on_a_shard(move || async move {
        let mut log = LogWriter::create(&p, 1, 4).await.expect("created");
        assert_eq!(
            log.len(),
            record::HEADER_LEN as u64,
            "the header is written at once"
        );
        // Group commit: one write and one sync for both.
        let batch = encoded(&[subscribe("c1", "a/#"), subscribe("c2", "b/+")]);
        log.write(&batch, true).await.expect("written");
        let first = log.len();
        assert_eq!(std::fs::read(&p).unwrap().len() as u64, first);
        log.close().await.expect("closed");
        // Opened again where it ended (as after start-up), it appends after what is there.
        let mut log = LogWriter::open(&p, first).await.expect("opened");
        let more = encoded(&[Record::RetainClear {
            topic: Utf8Bytes::from_static("r/x"),
        }]);
        log.write(&more, false).await.expect("written");
        log.sync().await.expect("synced");
        let second = log.len();
        log.close().await.expect("closed");
        (first, second)
    });
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.len() as u64, lens.1);
    let r = replay(&file);
    assert!(matches!(r.tail, Tail::Clean), "{:?}", r.tail);
    let header = r.header.expect("a header");
    assert_eq!((header.shard, header.shards), (1, 4));
    assert_eq!(
        r.records,
        vec![
            subscribe("c1", "a/#"),
            subscribe("c2", "b/+"),
            Record::RetainClear {
                topic: Utf8Bytes::from_static("r/x")
            }
        ]
    );
    // A write torn inside the last record: the first two replay, the tail is dropped.
    std::fs::write(&path, &file[..file.len() - 3]).unwrap();
    let r = replay(&std::fs::read(&path).unwrap());
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.good_len as u64, lens.0);
    assert!(matches!(r.tail, Tail::Torn { .. }), "{:?}", r.tail);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_compacted_file_replaces_the_log_and_takes_the_next_appends() {
    let dir = scratch("replace");
    let path = dir.join("shard-0.log");
    let aside = dir.join("shard-0.log.new");
    let (p, a) = (path.clone(), aside.clone());
    on_a_shard(move || async move {
        let mut log = LogWriter::create(&p, 0, 1).await.expect("created");
        let churn: Vec<Record> = (0..50)
            .flat_map(|_| {
                [
                    subscribe("c", "x"),
                    Record::Unsubscribe {
                        client_id: Utf8Bytes::from_static("c"),
                        filter: Utf8Bytes::from_static("x"),
                    },
                ]
            })
            .collect();
        log.write(&encoded(&churn), true).await.unwrap();
        let mut snapshot = BytesMut::new();
        record::encode_header(0, 1, &mut snapshot);
        record::encode(&subscribe("c", "kept"), &mut snapshot).unwrap();
        log.replace(&snapshot, &a, &p).await.expect("replaced");
        assert_eq!(log.len(), snapshot.len() as u64);
        log.write(&encoded(&[subscribe("c", "after")]), true)
            .await
            .unwrap();
        log.close().await.unwrap();
    });
    assert!(
        !aside.exists(),
        "the compacted file was renamed over the log"
    );
    let r = replay(&std::fs::read(&path).unwrap());
    assert_eq!(r.tail, Tail::Clean);
    assert_eq!(
        r.records,
        vec![subscribe("c", "kept"), subscribe("c", "after")]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
