//! One client's task: its handshake within the setup's concurrency limit and connect timeout, reported to
//! the setup, then its role (idle, subscriber, retained-storm subscriber or paced publisher) until the run
//! stops, and a DISCONNECT.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::conn::{drive, handshake, ClientSpec, Target};
use crate::pacer::Pacer;
use crate::retained;
use crate::roles::{Idle, Publisher, Subscriber};
use crate::shared::{Phase, Shared};
use crate::track::SubTrack;

pub(crate) enum Kind {
    Idle,
    Subscriber(Arc<Mutex<SubTrack>>, usize),
    Publisher(u32, String),
    /// A retained-storm subscriber: (topics, index).
    Storm(usize, usize),
}

pub(crate) async fn client_task(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<Result<Duration, String>>,
    target: Target,
    connect_timeout: Duration,
    spec: ClientSpec,
    kind: Kind,
) {
    let Ok(permit) = permits.acquire_owned().await else {
        return;
    };
    let t0 = Instant::now();
    let mut stage = "TCP connect";
    let result = tokio::time::timeout(
        connect_timeout,
        handshake(&shared, &target, &spec, &mut stage),
    )
    .await;
    drop(permit);
    let (mut conn, session) = match result {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let _ = ready.send(Err(format!("{}: {e}", spec.client_id)));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(format!(
                "{}: {stage} timed out after {:?}",
                spec.client_id, connect_timeout
            )));
            return;
        }
    };
    let _ = ready.send(Ok(t0.elapsed()));
    drop(ready);

    let result = match kind {
        Kind::Idle => drive(&mut conn, &mut Idle, &shared, None).await,
        Kind::Subscriber(track, index) => {
            let mut role = Subscriber::new(shared.clone(), track, index);
            drive(&mut conn, &mut role, &shared, None).await
        }
        Kind::Storm(topics, index) => {
            let mut role = retained::Storm::new(shared.clone(), topics, index);
            drive(&mut conn, &mut role, &shared, None).await
        }
        Kind::Publisher(id, topic) => {
            let mut role = Publisher::new(shared.clone(), id, &topic, session.receive_maximum);
            let mut pacer = if shared.settings.rate > 0 {
                match Pacer::new(shared.mono_at_epoch) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("loadgen: timerfd unavailable ({e}); using tokio's 1 ms timer");
                        None
                    }
                }
            } else {
                None
            };
            drive(&mut conn, &mut role, &shared, pacer.as_mut()).await
        }
    };
    match result {
        Ok(()) => conn.disconnect(Duration::from_secs(1)).await,
        Err(e) => {
            if shared.phase() != Phase::Stop {
                shared.record_error(format!("{}: {e}", spec.client_id));
            }
        }
    }
}
