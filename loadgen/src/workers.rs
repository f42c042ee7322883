//! The worker threads: one single-threaded tokio runtime each, which the clients are spread over.

use std::time::Duration;

/// Thread per core: one single-threaded tokio runtime per worker thread, each client task pinned to one
/// of them (round robin), so a connection's reads, decoding and writes stay on one thread with no
/// work-stealing hand-offs between cores.
pub(crate) struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub(crate) fn start(n: usize) -> std::io::Result<Workers> {
        let mut w = Workers {
            handles: Vec::new(),
            stop: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            w.stop.push(tx);
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("loadgen-{i}"))
                    .spawn(move || {
                        let _ = rt.block_on(rx);
                        rt.shutdown_timeout(Duration::from_secs(1));
                    })?,
            );
        }
        Ok(w)
    }

    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }

    pub(crate) fn handle(&self, i: usize) -> &tokio::runtime::Handle {
        &self.handles[i % self.handles.len()]
    }

    pub(crate) fn stop(self) {
        for tx in self.stop {
            let _ = tx.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
