//! The listener and the worker threads: accepts clients, enforces
//! `max_clients`, runs one session task per connection on a worker, and
//! shuts down gracefully.
//!
//! Threading: `threads` workers, each a single-threaded tokio runtime with
//! its own [`Context`] (so its own shared links to Redis). The listener hands
//! each accepted connection to the next worker in turn, and the session
//! lives on that worker for good. A session, its shared link's writer and
//! reader tasks then always run on one thread: a request and its reply never
//! cross threads, and no work-stealing scheduler sits in between. Measured on
//! 2 cores with `bench/ab.sh 1 5`, this cut the proxy's CPU per request at
//! pipeline depth 1 from 13.8 to 11.4 µs compared with one multi-threaded
//! runtime of two workers. Before a worker waits for I/O it yields the CPU
//! once, unless CPU-bound neighbours make that costly ([`crate::idle`]).
//!
//! Shutdown comes from outside as a future (signals in `main`, a oneshot in
//! tests). When it fires the listener closes, every session stops reading new
//! commands and finishes what is in flight, and after the grace period the
//! stragglers are dropped with their workers.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::idle::IdleYield;
use crate::session::{Context, Drain, Session};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Most clients connected at once; more are answered with an error and
    /// closed.
    pub max_clients: usize,
    /// How long sessions get to finish in-flight commands at shutdown.
    pub shutdown_grace: Duration,
}

/// Longest a client gets to finish its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once. They have their own budget:
/// a client takes one of `max_clients` only once its handshake is done, so
/// half-open handshakes cannot shut out connected or plaintext clients.
/// One past it is closed at once.
pub const MAX_TLS_HANDSHAKES: usize = 64;

/// An accepted client on its way to a worker.
struct Job {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    id: u64,
    /// A client slot; on a TLS listener, a handshake slot until the
    /// handshake is done.
    permit: OwnedSemaphorePermit,
    /// The TLS acceptor current when it was accepted, on a TLS listener,
    /// and the client slots to take one from after the handshake.
    tls: Option<(crate::tls::Acceptor, Arc<Semaphore>)>,
}

/// Refuse a client past `max_clients` with Redis's words.
async fn refuse_max_clients<S: tokio::io::AsyncWrite + Unpin>(mut stream: S, peer: SocketAddr) {
    tracing::warn!(%peer, "max clients reached; refusing connection");
    metrics::counter!("respseal_clients_refused_total", "reason" => "max_clients").increment(1);
    let reply = crate::error::Error::from(crate::error::Refusal::MaxClients).rescue();
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// The client listeners: the main one (TLS when configured) and an
/// optional plaintext one beside it.
pub struct Listeners {
    /// `listen`.
    pub main: TcpListener,
    /// Whether `main` speaks TLS.
    pub main_tls: bool,
    /// `tls.plaintext_listen`.
    pub plaintext: Option<TcpListener>,
}

/// The worker threads.
pub struct Workers {
    jobs: Vec<mpsc::UnboundedSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    tracker: TaskTracker,
    /// Tells sessions to finish what is in flight and close.
    drain: Drain,
    /// Tells workers to stop, dropping whatever is left.
    stop: CancellationToken,
}

impl Workers {
    /// Start one worker thread per context; `idle_yield`: workers yield the
    /// CPU before waiting for I/O ([`crate::idle`]).
    ///
    /// # Errors
    /// When a thread or its runtime cannot be created.
    pub fn start(contexts: Vec<Arc<Context>>, idle_yield: bool) -> io::Result<Self> {
        let tracker = TaskTracker::new();
        let drain = Drain::default();
        let stop = CancellationToken::new();
        let mut jobs = Vec::with_capacity(contexts.len());
        let mut threads = Vec::with_capacity(contexts.len());
        for (n, ctx) in contexts.into_iter().enumerate() {
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all();
            if idle_yield {
                builder.on_thread_park(before_wait);
            }
            let rt = builder.build()?;
            let (tx, rx) = mpsc::unbounded_channel();
            let (tracker, drain, stop) = (tracker.clone(), drain.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("respseal-worker-{n}"))
                .spawn(move || rt.block_on(worker(ctx, rx, tracker, drain, stop)))?;
            jobs.push(tx);
            threads.push(thread);
        }
        Ok(Workers { jobs, threads, tracker, drain, stop })
    }
}

async fn accept_or_never(l: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Called each time a worker has nothing left to run, just before it waits
/// for I/O; see [`crate::idle`].
fn before_wait() {
    thread_local! {
        static IDLE: RefCell<IdleYield> = RefCell::new(IdleYield::default());
    }
    IDLE.with(|y| y.borrow_mut().before_wait());
}

async fn worker(
    ctx: Arc<Context>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    tracker: TaskTracker,
    drain: Drain,
    stop: CancellationToken,
) {
    while let Some(job) = jobs.recv().await {
        let Job { stream, peer, id, permit, tls } = job;
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot register connection");
                continue;
            }
        };
        let ctx = Arc::clone(&ctx);
        let drain = drain.clone();
        let span = tracing::info_span!("conn", id, %peer);
        tracker.spawn(
            async move {
                tracing::debug!("accepted");
                metrics::gauge!("respseal_clients_connected").increment(1.0);
                match tls {
                    None => {
                        let (rd, wr) = stream.into_split();
                        Session::new(ctx, id, rd, wr).with_peer(peer.ip()).run(drain).await;
                        drop(permit);
                    }
                    // Boxed: the handshake and the TLS session's state stay
                    // out of every plaintext connection's task.
                    Some((acceptor, slots)) => {
                        Box::pin(async move {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.0.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    // The handshake slot goes back; a client slot is taken.
                                    drop(permit);
                                    let Ok(_client) = slots.try_acquire_owned() else {
                                        return refuse_max_clients(tls, peer).await;
                                    };
                                    let (rd, wr) = tokio::io::split(tls);
                                    Session::new(ctx, id, rd, wr).with_peer(peer.ip()).run(drain).await;
                                }
                                Ok(Err(e)) => {
                                    metrics::counter!("respseal_tls_handshake_failures_total").increment(1);
                                    tracing::info!(error = %e, "TLS handshake failed");
                                }
                                Err(_) => {
                                    metrics::counter!("respseal_tls_handshake_failures_total").increment(1);
                                    tracing::info!("TLS handshake timed out");
                                }
                            }
                        })
                        .await
                    }
                }
                metrics::gauge!("respseal_clients_connected").decrement(1.0);
                tracing::debug!("closed");
            }
            .instrument(span),
        );
    }
    // The listener is closed; keep serving the draining sessions until told
    // to stop (dropping the runtime then drops what is left).
    stop.cancelled().await;
}

/// Serve clients from `listeners` on `workers` until `shutdown` completes,
/// then drain. TLS clients get the acceptor current in `live` when they
/// connect (a reload changes it for new connections).
pub async fn run(
    listeners: Listeners,
    workers: Workers,
    opts: ServeOptions,
    live: Arc<crate::live::Live>,
    shutdown: impl Future<Output = ()>,
) {
    let Listeners { main, main_tls, plaintext } = listeners;
    let Workers { jobs, threads, tracker, drain, stop } = workers;
    let slots = Arc::new(Semaphore::new(opts.max_clients));
    let handshakes = Arc::new(Semaphore::new(MAX_TLS_HANDSHAKES));
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (accepted, tls) = tokio::select! {
            _ = &mut shutdown => break,
            r = main.accept() => (r, main_tls),
            r = accept_or_never(plaintext.as_ref()) => (r, false),
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
        metrics::counter!("respseal_clients_accepted_total").increment(1);
        next_id += 1;
        let id = next_id;
        let permit = if tls {
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                // Nothing can be said before a handshake: closed.
                tracing::warn!(%peer, "too many TLS handshakes in progress; closing connection");
                metrics::counter!("respseal_clients_refused_total", "reason" => "tls_handshakes").increment(1);
                continue;
            };
            permit
        } else {
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracker.spawn(refuse_max_clients(stream, peer));
                continue;
            };
            permit
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // Round robin; a worker that is gone (it cannot be, short of a
        // panic) drops the connection.
        let worker = &jobs[(id % jobs.len() as u64) as usize];
        let tls = if tls { live.load().1.tls.clone().map(|a| (a, Arc::clone(&slots))) } else { None };
        let _ = worker.send(Job { stream, peer, id, permit, tls });
    }
    drop(main);
    drop(plaintext);
    drop(jobs);
    tracing::info!(sessions = tracker.len(), "shutting down: draining sessions");
    drain.fire();
    tracker.close();
    if tokio::time::timeout(opts.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!(remaining = tracker.len(), "grace period over; closing remaining connections");
    }
    stop.cancel();
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}
