//! This shard's copy of the retained store: every shard holds the whole retained set, kept the same by
//! `Mail::Retain` (see `router`). One per shard, owned by its [`Shard`](super::Shard) and touched on
//! that shard's thread only: routing (`packets/publish.rs`) and other shards' retain mail
//! (`executor.rs`) change it, a new subscription (`packets/subscribe.rs`) reads it, and `$SYS` counts
//! it.

use std::sync::Arc;

use crate::index::RetainedStore;
use crate::message::Message;

pub(super) struct Retained {
    /// Topic → the message retained there.
    store: RetainedStore<Arc<Message>>,
}

impl Retained {
    pub(super) fn new() -> Retained {
        Retained {
            store: RetainedStore::new(),
        }
    }

    /// Store, replace or (empty payload) clear a retained message in this shard's copy.
    pub(super) fn store(&mut self, msg: Arc<Message>) {
        if msg.payload.is_empty() {
            self.store.remove(&msg.topic);
        } else {
            let topic = msg.topic.clone();
            self.store.set(&topic, msg);
        }
    }

    /// Each retained message whose topic matches `filter`.
    pub(super) fn for_each_match(&self, filter: &str, mut f: impl FnMut(&Arc<Message>)) {
        self.store.for_each_match(filter, |_, m| f(m));
    }

    /// Every retained message, `$` topics included.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Arc<Message>)) {
        self.store.for_each(|_, m| f(m));
    }

    pub(super) fn len(&self) -> usize {
        self.store.len()
    }
}
