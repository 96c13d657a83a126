//! The listener: accepts clients, enforces `max_clients`, runs one session
//! task per connection, and shuts down gracefully.
//!
//! Shutdown comes from outside as a future (signals in `main`, a oneshot in
//! tests). When it fires the listener closes, every session stops reading new
//! commands and finishes what is in flight, and after the grace period the
//! stragglers are dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::session::{Context, Session};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Most clients connected at once; more are answered with an error and
    /// closed.
    pub max_clients: usize,
    /// How long sessions get to finish in-flight commands at shutdown.
    pub shutdown_grace: Duration,
}

/// Serve clients from `listener` until `shutdown` completes, then drain.
pub async fn run(listener: TcpListener, ctx: Arc<Context>, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(opts.max_clients));
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "max clients reached; refusing connection");
            tracker.spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let token = token.clone();
        let span = tracing::info_span!("conn", id, %peer);
        tracker.spawn(
            async move {
                tracing::debug!("accepted");
                let (rd, wr) = stream.into_split();
                Session::new(ctx, id, rd, wr).run(token).await;
                tracing::debug!("closed");
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracing::info!(sessions = tracker.len(), "shutting down: draining sessions");
    token.cancel();
    tracker.close();
    if tokio::time::timeout(opts.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!(remaining = tracker.len(), "grace period over; closing remaining connections");
    }
}
