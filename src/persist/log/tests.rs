//! The log on a real file, driven by a glommio executor as a shard drives it: what is committed
//! replays, in order; what was only appended is not on disk; a torn write is seen as such.

use std::path::PathBuf;

use glommio::{LocalExecutorBuilder, Placement};

use super::*;
use crate::codec::{QoS, SubscriptionOptions, Utf8Bytes};
use crate::persist::record::{replay, Tail};

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

#[test]
fn committed_records_replay_in_order_and_appended_ones_wait_for_the_commit() {
    let dir = scratch("commit");
    let path = dir.join("shard-1.log");
    let p = path.clone();
    let offsets = on_a_shard(move || async move {
        let mut log = LogWriter::create(&p, 1, 4).await.expect("created");
        let a = log.append(&subscribe("c1", "a/#")).unwrap();
        let b = log.append(&subscribe("c2", "b/+")).unwrap();
        assert!(a < b);
        assert_eq!(log.durable(), 0, "nothing is durable before a commit");
        // Group commit: one write and one sync for both.
        assert_eq!(log.commit().await.expect("committed"), b);
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(on_disk.len() as u64, b);
        // Appended after the commit: not on disk until the next one.
        let c = log
            .append(&Record::RetainClear {
                topic: Utf8Bytes::from_static("r/x"),
            })
            .unwrap();
        assert_eq!(std::fs::read(&p).unwrap().len() as u64, b);
        log.close().await.expect("closed");
        (a, b, c)
    });
    let file = std::fs::read(&path).unwrap();
    assert_eq!(
        file.len() as u64,
        offsets.2,
        "close commits what is pending"
    );
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
    assert_eq!(r.good_len as u64, offsets.1);
    assert!(matches!(r.tail, Tail::Torn { .. }), "{:?}", r.tail);
    let _ = std::fs::remove_dir_all(&dir);
}
