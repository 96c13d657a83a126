//! A shared link: one backend connection multiplexed among many sessions.
//!
//! Sessions hand [`SharedRequest`]s (a run of complete request frames and how
//! many replies they produce) to the link's writer, which takes everything
//! queued and writes it with one vectored write, so Redis reads tens of
//! commands per syscall. Before writing, the writer appends one pending entry
//! per request to a FIFO shared with the reader; the reader finds reply frame
//! boundaries and hands each session its replies, in order, as slices of its
//! read buffer (no copy).
//!
//! When the connection fails, every pending request gets one error per reply
//! it still expected, and the link reconnects with exponential backoff.
//! While it is down, requests are answered with an error at once: a client
//! never hangs on an unreachable Redis.
//!
//! The FIFO is a `std::sync::Mutex`: it is held for a few pointer moves, never
//! across an await, and taken once per write batch or read, not per command.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::stream::{BackendStream, ReadHalf};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::conn::{self, BackendError, ConnSettings};
use crate::outbuf::OutBuf;
use crate::protocol::Proto;
use crate::protocol::framed::FrameReader;
use crate::protocol::reply;

/// Depth of a link's request queue; a full queue makes sessions wait.
const QUEUE_DEPTH: usize = 4096;
/// Most requests taken from the queue into one write.
const MAX_BATCH: usize = 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Behind Sentinel, how long new requests wait for a new master before
/// they fail (a failover takes the sentinels' down-after time plus a few
/// seconds).
const FAILOVER_HOLD: Duration = Duration::from_secs(10);

/// What a link sends back to a session.
#[derive(Debug)]
pub enum LinkEvent {
    /// `frames` complete reply frames, contiguous, in order.
    Replies {
        /// The frames' bytes.
        data: Bytes,
        /// How many frames `data` holds.
        frames: u32,
        /// How many of them are error replies (for the command counters).
        errors: u32,
    },
    /// `frames` expected replies will never come.
    Failed {
        /// How many replies are lost.
        frames: u32,
        /// Why, for the error reply.
        error: BackendError,
    },
}

impl LinkEvent {
    /// Reply bytes the event carries.
    pub fn bytes(&self) -> usize {
        match self {
            LinkEvent::Replies { data, .. } => data.len(),
            LinkEvent::Failed { .. } => 0,
        }
    }
}

/// Where a link delivers one session's replies, and (for a session's own
/// sender) the bytes held for that session: a shared link cannot stop
/// reading for one client, so what it hands over for a client that does not
/// read is charged to that client, never to the link. Past the session's
/// limit, the link answers that session's further replies with failures
/// instead of holding them, and marks it overflowed; the session then
/// closes its client (logged, counted).
#[derive(Debug, Clone)]
pub struct ReplyTx {
    tx: mpsc::UnboundedSender<LinkEvent>,
    held: Option<Arc<Held>>,
}

/// Bytes held for one session: handed over by links and not taken yet,
/// plus what waits in the session's output queue (published by the
/// session once per loop turn).
#[derive(Debug, Default)]
pub struct Held {
    channel: AtomicUsize,
    out: AtomicUsize,
    /// Zero: no limit.
    limit: usize,
    overflowed: AtomicBool,
}

impl Held {
    /// The session took an event of `n` bytes from its channel.
    pub fn taken(&self, n: usize) {
        self.channel.fetch_sub(n, Ordering::Relaxed);
    }

    /// The session's output queue holds `n` bytes now.
    pub fn set_out(&self, n: usize) {
        self.out.store(n, Ordering::Relaxed);
    }

    /// Whether a link refused replies for being past the limit.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Bytes held now (handed over and queued for output).
    pub fn bytes(&self) -> usize {
        self.channel.load(Ordering::Relaxed) + self.out.load(Ordering::Relaxed)
    }
}

impl ReplyTx {
    /// A sender with no accounting (the cluster router's own collectors).
    pub fn new(tx: mpsc::UnboundedSender<LinkEvent>) -> Self {
        ReplyTx { tx, held: None }
    }

    /// A session's sender: replies past `limit` bytes held (0: none) are
    /// failed instead of held.
    pub fn bounded(tx: mpsc::UnboundedSender<LinkEvent>, limit: usize) -> (Self, Arc<Held>) {
        let held = Arc::new(Held { limit, ..Held::default() });
        (ReplyTx { tx, held: Some(Arc::clone(&held)) }, held)
    }

    /// Deliver an event (dropped if the session is gone).
    pub fn send(&self, ev: LinkEvent) {
        if let (Some(h), LinkEvent::Replies { data, frames, .. }) = (&self.held, &ev) {
            let n = data.len();
            let before = h.channel.fetch_add(n, Ordering::Relaxed);
            if h.limit > 0 && before + n + h.out.load(Ordering::Relaxed) > h.limit {
                h.channel.fetch_sub(n, Ordering::Relaxed);
                h.overflowed.store(true, Ordering::Relaxed);
                let _ = self.tx.send(LinkEvent::Failed { frames: *frames, error: BackendError::Lost });
                return;
            }
        }
        let _ = self.tx.send(ev);
    }
}

/// A run of complete request frames from one session.
#[derive(Debug)]
pub struct SharedRequest {
    /// The frames, as the client sent them (or as the proxy rewrote them),
    /// in order.
    pub data: Vec<Bytes>,
    /// How many reply frames they produce.
    pub frames: u32,
    /// Where the replies go. The channel is unbounded but each session
    /// limits the replies it has outstanding (`max_inflight`).
    pub reply: ReplyTx,
}

struct Pending {
    frames_left: u32,
    reply: ReplyTx,
    /// When it was written, or when its last reply arrived: the command
    /// timeout counts from here.
    since: tokio::time::Instant,
}

/// Handle to a shared link; cheap to clone.
#[derive(Clone)]
pub struct SharedLink {
    tx: mpsc::Sender<SharedRequest>,
}

impl SharedLink {
    /// Start a link to the given database and protocol. It connects at once
    /// and keeps reconnecting until every handle is dropped.
    pub fn spawn(settings: Arc<ConnSettings>, db: u32, proto: Proto) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(supervise(settings, db, proto, rx));
        SharedLink { tx }
    }

    /// Whether the link has ended (behind Redis Cluster, its node left the
    /// slot map).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queue a request. If the link task is gone (only at shutdown), the
    /// request's replies are failed immediately.
    pub async fn send(&self, req: SharedRequest) {
        if let Err(mpsc::error::SendError(req)) = self.tx.send(req).await {
            fail(&req.reply, req.frames, BackendError::Lost);
        }
    }
}

/// Behind Redis Cluster, how long a node's links live on once the slot map
/// stops naming it (requests in flight finish; a node that comes back is
/// used again).
pub const LEAVE_GRACE: Duration = Duration::from_secs(5);
/// How often a connected node link checks that the map still names it.
const MEMBERSHIP_CHECK: Duration = Duration::from_secs(1);

/// Since when the slot map has not named a node link's address.
#[derive(Default)]
struct Membership {
    missing_since: Option<tokio::time::Instant>,
}

impl Membership {
    /// Whether the link's node has been out of the slot map for longer than
    /// [`LEAVE_GRACE`] (never for a link that is not a cluster node's, nor
    /// before the map is known).
    fn gone(&mut self, settings: &ConnSettings) -> bool {
        let Some(cluster) = &settings.member_of else { return false };
        if cluster.version() == 0 || cluster.map().names(&settings.url.addr) {
            self.missing_since = None;
            return false;
        }
        let since = *self.missing_since.get_or_insert_with(tokio::time::Instant::now);
        since.elapsed() >= LEAVE_GRACE
    }
}

/// End a node link whose node left the cluster: what is queued fails, and
/// no connection (nor password) goes to that address any more.
fn leave(mut rx: mpsc::Receiver<SharedRequest>, settings: &ConnSettings) {
    tracing::info!(node = %settings.url.addr, "a cluster node left the slot map; its links are closed");
    metrics::counter!("respseal_cluster_links_closed_total").increment(1);
    rx.close();
    while let Ok(req) = rx.try_recv() {
        fail(&req.reply, req.frames, BackendError::Lost);
    }
}

async fn epoch_ended(epoch: Option<&tokio_util::sync::CancellationToken>) {
    match epoch {
        Some(e) => e.cancelled().await,
        None => std::future::pending().await,
    }
}

fn fail(reply: &ReplyTx, frames: u32, error: BackendError) {
    if frames > 0 {
        reply.send(LinkEvent::Failed { frames, error });
    }
}

async fn supervise(settings: Arc<ConnSettings>, db: u32, proto: Proto, mut rx: mpsc::Receiver<SharedRequest>) {
    let mut backoff = BACKOFF_MIN;
    let mut was_up = true;
    let mut down_since = tokio::time::Instant::now();
    let mut member = Membership::default();
    loop {
        if member.gone(&settings) {
            return leave(rx, &settings);
        }
        let epoch = settings.epoch();
        let error = match conn::open(&settings, db, proto).await {
            Ok((stream, leftover)) => {
                if !was_up {
                    tracing::info!(db, proto = proto.number(), "shared link reconnected");
                    metrics::counter!("respseal_backend_reconnects_total", "link" => "shared").increment(1);
                }
                was_up = true;
                backoff = BACKOFF_MIN;
                metrics::gauge!("respseal_backend_links_up", "link" => "shared").increment(1.0);
                let ended = run_connected(stream, leftover, proto, &settings, epoch, &mut rx, &mut member).await;
                metrics::gauge!("respseal_backend_links_up", "link" => "shared").decrement(1.0);
                match ended {
                    Some(BackendError::Unlisted) => return leave(rx, &settings),
                    Some(e) => e,
                    None => return,
                }
            }
            Err(e) => e,
        };
        if was_up {
            metrics::counter!("respseal_backend_link_failures_total", "link" => "shared", "kind" => error.kind())
                .increment(1);
            tracing::warn!(db, proto = proto.number(), error = %error, "shared link down");
            was_up = false;
            down_since = tokio::time::Instant::now();
        }
        // Behind Sentinel a master that went away is replaced within
        // seconds: new requests wait for it (in the bounded queue, which
        // holds their sessions back) for up to FAILOVER_HOLD, as a Sentinel
        // client queues its commands, instead of failing at once.
        // Otherwise: answer everything at once until it is time to retry.
        let now = tokio::time::Instant::now();
        let hold_until = if settings.topology.is_some() { down_since + FAILOVER_HOLD } else { now };
        let retry_at = now + if now < hold_until { BACKOFF_MIN } else { backoff };
        loop {
            tokio::select! {
                req = rx.recv(), if tokio::time::Instant::now() >= hold_until => match req {
                    Some(req) => fail(&req.reply, req.frames, error.clone()),
                    None => return,
                },
                _ = tokio::time::sleep_until(retry_at) => break,
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Serve one connection until it fails (`Some(error)`) or every handle is
/// gone (`None`).
async fn run_connected(
    stream: BackendStream,
    leftover: BytesMut,
    proto: Proto,
    settings: &ConnSettings,
    epoch: Option<tokio_util::sync::CancellationToken>,
    rx: &mut mpsc::Receiver<SharedRequest>,
    member: &mut Membership,
) -> Option<BackendError> {
    let command_timeout = settings.command_timeout;
    let mut membership = tokio::time::interval(MEMBERSHIP_CHECK);
    membership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (rd, mut wr) = stream.into_split();
    // One entry per request batch in flight: bounded by the sessions'
    // `max_inflight` times `max_clients`, the queue in front by QUEUE_DEPTH.
    let pending: Arc<Mutex<VecDeque<Pending>>> = Arc::default();
    let mut reader = tokio::spawn(read_loop(rd, leftover, proto, Arc::clone(&pending)));
    let mut out = OutBuf::default();
    let mut batch: Vec<SharedRequest> = Vec::with_capacity(64);
    // The command timeout is checked a few times per period, not with a
    // timer per request: a request's timer would cost more than the check.
    let check_every = command_timeout.map_or(Duration::from_secs(3600), |t| (t / 4).max(Duration::from_millis(5)));
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            biased;
            _ = &mut reader => break Some(BackendError::Lost),
            _ = epoch_ended(epoch.as_ref()) => {
                tracing::info!("the master changed; the shared link moves to the new one");
                break Some(BackendError::Lost);
            }
            _ = membership.tick(), if settings.member_of.is_some() => {
                if member.gone(settings) {
                    break Some(BackendError::Unlisted);
                }
            }
            now = check.tick(), if command_timeout.is_some() => {
                let limit = command_timeout.expect("checked is_some");
                let stuck = {
                    let mut q = pending.lock().expect("pending FIFO lock is never poisoned");
                    match q.front_mut() {
                        // While code runs in Redis, Redis answers nobody
                        // until its busy-reply-threshold: the wait starts
                        // over once the code is done.
                        Some(p) if settings.code.any() => {
                            p.since = now;
                            false
                        }
                        Some(p) => now.duration_since(p.since) >= limit,
                        None => false,
                    }
                };
                if stuck {
                    tracing::warn!(timeout_ms = limit.as_millis() as u64, "no reply from Redis in time; replacing the shared link");
                    break Some(BackendError::CommandTimeout);
                }
            }
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    break None;
                }
                // Let the sessions that became ready in the same tick queue
                // their requests too, so they share this write: without it a
                // lightly loaded link writes once per request.
                if n < MAX_BATCH {
                    tokio::task::yield_now().await;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(req) => batch.push(req),
                            Err(_) => break,
                        }
                    }
                }
                {
                    let since = tokio::time::Instant::now();
                    let mut q = pending.lock().expect("pending FIFO lock is never poisoned: no panics while held");
                    for req in batch.drain(..) {
                        for part in req.data {
                            out.push(part);
                        }
                        if req.frames > 0 {
                            q.push_back(Pending { frames_left: req.frames, reply: req.reply, since });
                        }
                    }
                }
                if out.write_to(&mut wr).await.is_err() {
                    break Some(BackendError::Lost);
                }
            }
        }
    };
    reader.abort();
    let drained: Vec<Pending> = pending.lock().expect("pending FIFO lock is never poisoned").drain(..).collect();
    let error = result.clone().unwrap_or(BackendError::Lost);
    for p in drained {
        fail(&p.reply, p.frames_left, error.clone());
    }
    result
}

async fn read_loop(mut rd: ReadHalf, buf: BytesMut, proto: Proto, pending: Arc<Mutex<VecDeque<Pending>>>) {
    // Kept across reads: a reply arriving in many reads is scanned once.
    let mut reader = FrameReader::new(buf, READ_CHUNK);
    loop {
        if !route(&mut reader, proto, &pending) {
            metrics::counter!("respseal_backend_errors_total", "kind" => "malformed_reply").increment(1);
            return;
        }
        match rd.read_buf(reader.buf_mut()).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Hand every complete frame in `buf` to the session waiting for it.
/// Returns false if the stream is broken (invalid RESP or a reply nobody
/// asked for), which ends this connection only: its in-flight commands get
/// errors, the link reconnects, other links are not touched.
///
/// Complete frames are split off before returning, so the frame in
/// progress always starts at the front of the reader on the next call.
fn route(reader: &mut FrameReader, proto: Proto, pending: &Mutex<VecDeque<Pending>>) -> bool {
    let mut q = pending.lock().expect("pending FIFO lock is never poisoned");
    // The time of this read: progress made by it restarts the wait.
    let mut now = None;
    loop {
        let mut end = 0;
        let mut frames = 0u32;
        let mut errors = 0u32;
        let Some(front) = q.front_mut() else {
            return match reader.frame_at(0, proto) {
                Ok(None) => true,
                Ok(Some(len)) if reply::is_push(&reader.buffered()[..len]) => {
                    let _ = reader.split_to(len);
                    continue;
                }
                Ok(Some(_)) => {
                    tracing::error!("reply from Redis that no command asked for; closing shared link");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "closing shared link");
                    false
                }
            };
        };
        while frames < front.frames_left {
            match reader.frame_at(end, proto) {
                Ok(Some(len)) => {
                    let push = reply::is_push(&reader.buffered()[end..end + len]);
                    if push && frames == 0 {
                        // Out-of-band push on a shared link: nobody to give it to.
                        let _ = reader.split_to(len);
                        continue;
                    }
                    if push {
                        break;
                    }
                    if matches!(reader.buffered()[end], b'-' | b'!') {
                        errors += 1;
                    }
                    end += len;
                    frames += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "closing shared link");
                    return false;
                }
            }
        }
        if frames == 0 {
            return true;
        }
        let data = reader.split_to(end);
        front.frames_left -= frames;
        front.reply.send(LinkEvent::Replies { data, frames, errors });
        if front.frames_left == 0 {
            q.pop_front();
        }
        // Progress: the wait for the next reply starts over.
        if let Some(next) = q.front_mut() {
            next.since = *now.get_or_insert_with(tokio::time::Instant::now);
        }
    }
}

/// `n` shared links to the backend of `settings`, group (db, proto).
pub fn group(settings: &Arc<ConnSettings>, n: usize, db: u32, proto: Proto) -> Arc<[SharedLink]> {
    (0..n).map(|_| SharedLink::spawn(Arc::clone(settings), db, proto)).collect::<Vec<_>>().into()
}

/// The link of a group that session `id` keeps to (its commands stay in order).
pub fn pick(links: &[SharedLink], id: u64) -> SharedLink {
    links[(id % links.len() as u64) as usize].clone()
}
