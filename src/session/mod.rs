//! One client connection: the session task.
//!
//! A session reads every complete request that is buffered, classifies each
//! with the command table, and forwards runs of requests on its link in one
//! go (the client's own bytes, not re-encoded). Each request leaves a reply
//! plan in a FIFO; replies coming back are matched to plans in order and
//! written to the client together. The session starts on a shared link of
//! its (database, protocol) group and is pinned to a dedicated link for good
//! when a command needs connection state (docs/design.md §1), after its in-flight
//! commands are answered.
//!
//! Errors stay inside the session: a client's protocol error closes only that
//! client, a backend failure becomes error replies; every error of
//! respseal's own goes through [`crate::error::Error::rescue`].
//!
//! One concept per file:
//! * this file: the connection's state, its event loop, links and pinning,
//!   and the memory checks (output limits, input budget);
//! * `input`: parsing and routing client requests;
//! * `replies`: the socket-free reply queue (plans, EXEC accounting,
//!   pub/sub, `CLIENT REPLY` modes), with its own unit tests;
//! * `local`: the connection commands respseal answers itself;
//! * `batch`: the batch of requests handed to a shared link.

mod batch;
mod input;
mod local;

mod replies;
mod txn;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, DedicatedLink, Held, LinkEvent, ReplyTx, Shared};
use crate::commands::{Args, Command, Route, own};
use crate::error::{ClientError, CryptoError, Error, Refusal};
use crate::limits::{Budget, OutputClass, OutputLimits, OutputWatch};
use crate::live::{Live, Reloadable};
use crate::plan::Plan;
use crate::protocol::request::{Limits, ProtocolError};
use crate::protocol::{Proto, encode};
use crate::sealing::{OpenPlan, Sealer};
use crate::stats::{self, Counter};
use replies::{Replies, ReplyMode};
use txn::Transaction;

/// A blocking command that can follow its slot to another master.
struct Retry {
    frame: Bytes,
    /// Where a `MOVED` just sent it.
    moved_to: Option<String>,
    redirects: usize,
}

/// Stop reading from a client while this many bytes of replies wait to be
/// written to it.
const OUT_HIGH_WATER: usize = 32 * 1024 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Read buffer of a client whose reads so far were small: an idle client
/// then holds a quarter of a page instead of a page of a 16 KiB buffer
/// (memory per idle connection 11.0 -> 7.9 KiB). A read that brings at
/// least a quarter of it (one that fills it does) switches the session to
/// `READ_CHUNK` steps for good.
const READ_SMALL: usize = 1024;
/// Most room reserved in `shared_tail` for requests not parsed yet.
const TAIL_RESERVE_MAX: usize = 256 * 1024;

/// The signal that tells sessions to finish what is in flight and close.
///
/// A session checks it with one atomic load per loop turn. The token's
/// waiter is polled only once, to hold the session's waker (its task's
/// waker never changes), and again once the flag is up: polling a
/// `CancellationToken` takes two locks, every turn.
#[derive(Clone, Default)]
pub struct Drain {
    token: CancellationToken,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

impl Drain {
    /// Tell every session watching this signal to drain.
    pub fn fire(&self) {
        self.fired.store(true, std::sync::atomic::Ordering::Release);
        self.token.cancel();
    }

    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// What every session shares: the backend and the settings that shape a
/// session's behaviour.
pub struct Context {
    /// The Redis behind the proxy.
    pub backend: Backend,
    /// Request size limits.
    pub limits: Limits,
    /// Most replies a session may have outstanding before it stops reading
    /// from its client.
    pub max_inflight: usize,
    /// Per-client output limits, by class.
    pub output: OutputLimits,
    /// Longest wait for the next reply on a dedicated link (shared links
    /// check their own); none: forever.
    pub command_timeout: Option<Duration>,
    /// Bytes buffered from all clients together (shared by every worker).
    pub budget: Arc<Budget>,
    /// Pin every session to a dedicated link at connect.
    pub dedicated_mode: bool,
    /// Close a client that sent nothing for this long (never while it waits
    /// for replies, is subscribed or is monitoring).
    pub idle_timeout: Option<Duration>,
    /// Sealer, users and TLS: replaced by a reload, picked up by each
    /// session before its next batch of requests.
    pub live: Arc<Live>,
    /// AUTH attempts per source address (shared by every worker).
    pub auth_throttle: Arc<crate::auth::AuthThrottle>,
}

enum Link {
    /// No backend connection yet (dedicated mode before the first command).
    None,
    /// A shared link of group (db, proto).
    Shared { link: Shared, db: u32, proto: Proto },
    /// The session's own backend connection.
    Dedicated(Box<DedicatedLink>),
}

/// A request the session could not handle yet because it must first wait
/// for its in-flight replies (a pin, a group switch).
struct Deferred {
    frame: Bytes,
    args: Vec<Range<usize>>,
    route: Route,
    cmd: Option<&'static Command>,
}

/// A client session.
pub struct Session<R, W> {
    ctx: Arc<Context>,
    /// The reloadable settings this session uses now, and their generation.
    cur: Arc<Reloadable>,
    generation: u64,
    id: u64,
    rd: R,
    wr: W,
    rbuf: BytesMut,
    /// Buffer length below which parsing cannot make progress.
    need: usize,
    /// Where parsing the incomplete request at the start of `rbuf` stopped
    /// (its arguments so far are in `args`).
    resume: Option<crate::protocol::request::Resume>,
    /// A read was not small: grow the buffer in `READ_CHUNK` steps from
    /// now on.
    big_reads: bool,
    args: Vec<Range<usize>>,
    /// What the client is owed, in order, and the state replies change.
    replies: Replies,
    authenticated: bool,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    link: Link,
    /// Requests for the shared link not handed over yet: everything one
    /// read produced goes to the link as one request (the link's writer
    /// copies small frames together, so they are not copied here).
    shared_batch: Vec<Bytes>,
    /// Requests with a sealed key queued after `shared_batch`
    /// ([`Session::queue_sealed`]), encoded (and sealed) straight into one
    /// buffer: consecutive ones reach the link as one part, large enough for
    /// its writer to pass on without a copy, and cost one allocation per
    /// batch instead of one per request.
    shared_tail: BytesMut,
    /// Replies the requests in `shared_batch` and `shared_tail` produce.
    shared_frames: u32,
    /// Replies from shared links. Unbounded as a channel, but a link only
    /// sends replies to requests this session sent, and the session keeps
    /// at most `max_inflight` of those outstanding.
    reply_tx: ReplyTx,
    /// Bytes the shared links handed over for this client and its output
    /// queue, against `limits.output_shared`.
    held: Arc<Held>,
    reply_rx: mpsc::UnboundedReceiver<LinkEvent>,
    /// No new requests until the plans drain (a group switch or pin).
    stalled: bool,
    deferred: Option<Deferred>,
    /// The client shut down its sending side: answer what it sent, then close.
    eof: bool,
    draining: bool,
    /// MULTI and WATCH.
    txn: Transaction,
    /// Held while the session has a dedicated link of its own (not a lent
    /// one): counts it in `respseal_pinned_sessions`.
    pinned: Option<Pinned>,
    /// The client's address (AUTH attempts are throttled per address).
    peer: Option<std::net::IpAddr>,
    /// Time over the soft output limit.
    out_watch: OutputWatch,
    /// Since when the dedicated link owes replies without sending any.
    wait_start: Option<tokio::time::Instant>,
    /// A blocking command is in flight on the dedicated link: it may wait
    /// for as long as it likes (no command timeout).
    blocking_sent: bool,
    /// Behind Redis Cluster, the blocking command alone in flight on the
    /// dedicated link, sent again on its slot's new master if the slot
    /// moves while it waits (Redis answers it `MOVED`).
    retry: Option<Box<Retry>>,
    /// Bytes of `rbuf` taken from the proxy-wide budget.
    charged: usize,
    /// Open plan for the request being forwarded by `forward_one`.
    next_open: Option<OpenPlan>,
    /// The dedicated link carries a replication stream (after SYNC/PSYNC):
    /// bytes are relayed as they come.
    raw: bool,
    /// Behind Redis Cluster: the node the dedicated link is connected to.
    node: Option<String>,
    /// The dedicated link is lent by the backend for code (scripts,
    /// functions) and goes back once nothing is in flight on it; this is
    /// the shared link the session returns to.
    lent: Option<Link>,
    /// A request that runs code is in flight (counted in the backend's
    /// [`crate::backend::conn::CodeRunning`]).
    code_running: bool,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// A new session on an accepted connection.
    pub fn new(ctx: Arc<Context>, id: u64, rd: R, wr: W) -> Self {
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        let (reply_tx, held) = ReplyTx::bounded(reply_tx, ctx.output.shared.hard);
        let db = ctx.backend.default_db();
        let (generation, cur) = ctx.live.load();
        let authenticated = !cur.users.required();
        let sealer = cur.sealer.clone();
        Session {
            ctx,
            cur,
            generation,
            id,
            rd,
            wr,
            rbuf: BytesMut::with_capacity(READ_SMALL),
            need: 0,
            resume: None,
            big_reads: false,
            args: Vec::new(),
            replies: Replies::new(sealer, db),
            authenticated,
            lib_name: None,
            lib_ver: None,
            link: Link::None,
            shared_batch: Vec::new(),
            shared_tail: BytesMut::new(),
            shared_frames: 0,
            reply_tx,
            held,
            reply_rx,
            stalled: false,
            deferred: None,
            eof: false,
            draining: false,
            txn: Transaction::default(),
            pinned: None,
            peer: None,
            out_watch: OutputWatch::default(),
            wait_start: None,
            blocking_sent: false,
            retry: None,
            charged: 0,
            next_open: None,
            raw: false,
            node: None,
            lent: None,
            code_running: false,
        }
    }

    /// The client's address, for the per-address AUTH throttle.
    pub fn with_peer(mut self, ip: std::net::IpAddr) -> Self {
        self.peer = Some(ip);
        self
    }

    /// Serve the client until it leaves, the connection fails, or `shutdown`
    /// fires and everything in flight has been answered.
    pub async fn run(mut self, shutdown: Drain) {
        // One waiter for the whole session, not one per loop turn.
        let cancelled = shutdown.token.cancelled();
        tokio::pin!(cancelled);
        // The waiter has been polled (and holds this task's waker).
        let mut armed = false;
        if !self.ctx.dedicated_mode {
            self.link = self.shared_link();
        }
        loop {
            if !self.replies.reseal.is_empty() {
                self.send_reseals().await;
            }
            self.flush_shared().await;
            if let Err(e) = self.flush_backend().await {
                self.backend_lost(e);
            }
            if (self.replies.closing || self.draining || (self.eof && !self.stalled)) && self.replies.is_empty() {
                let _ = self.replies.out.write_to(&mut self.wr).await;
                let _ = self.wr.shutdown().await;
                return;
            }
            let below_high_water = self.replies.out.len() < OUT_HIGH_WATER;
            let can_read = !self.eof
                && !self.replies.closing
                && !self.draining
                && !self.stalled
                && self.replies.inflight() < self.ctx.max_inflight
                && below_high_water;
            let idle = self
                .ctx
                .idle_timeout
                .filter(|_| self.replies.is_empty() && !self.replies.monitor && !self.replies.subscribed());
            let step = if self.big_reads { READ_CHUNK } else { READ_SMALL };
            if can_read && self.rbuf.capacity() - self.rbuf.len() < step / 4 {
                self.rbuf.reserve(step);
                if !self.charge_rbuf() {
                    // Many clients announcing huge requests together: this
                    // one is refused rather than pushing memory past the cap.
                    self.refuse(Refusal::BufferBudget.into());
                    self.replies.push(Plan::Close, 0);
                    self.replies.closing = true;
                    continue;
                }
            }
            // A client that does not read its replies: for the normal class
            // Redis holds the rest (respseal stops reading from it); other
            // classes are disconnected at their limit below.
            let can_read_backend = below_high_water || !matches!(self.output_class(), OutputClass::Normal);
            let command_deadline = match (&self.link, self.ctx.command_timeout, self.wait_start) {
                (Link::Dedicated(_), Some(limit), Some(start))
                    if !self.blocking_sent && !self.raw && !self.replies.monitor && !self.replies.subscribed() =>
                {
                    Some(start + limit)
                }
                _ => None,
            };
            let rbuf = &mut self.rbuf;
            tokio::select! {
                biased;
                // Polled for real once (to hold this task's waker, which
                // never changes) and once the flag is up.
                _ = std::future::poll_fn(|cx| {
                    if armed && !shutdown.fired() {
                        return std::task::Poll::Pending;
                    }
                    armed = true;
                    cancelled.as_mut().poll(cx)
                }), if !self.draining => {
                    self.draining = true;
                }
                ev = self.reply_rx.recv() => {
                    // The session holds a sender itself, so the channel never closes.
                    if let Some(ev) = ev {
                        self.replies.now_us = stats::now_us();
                        self.held.taken(ev.bytes());
                        self.replies.on_link_event(ev);
                        // Replies that came in the same link read share the
                        // write (not across a RESET or a close: the session
                        // acts on those first, below).
                        // (Not past the high-water mark either: the output
                        // limit is checked once this turn ends.)
                        while !self.replies.reset_seen
                            && !self.replies.closing
                            && self.replies.out.len() < OUT_HIGH_WATER
                        {
                            let Ok(ev) = self.reply_rx.try_recv() else { break };
                            self.held.taken(ev.bytes());
                            self.replies.on_link_event(ev);
                        }
                        // Write now rather than one loop turn later: a
                        // turn costs as much as the write's own user time.
                        if !self.replies.out.is_empty() {
                            let out = &mut self.replies.out;
                            let wr = &mut self.wr;
                            match std::future::poll_fn(|cx| std::task::Poll::Ready(out.poll_write_once(wr, cx))).await {
                                std::task::Poll::Ready(Ok(n)) => stats::add(Counter::BytesOut, n as u64),
                                std::task::Poll::Ready(Err(_)) => return,
                                std::task::Poll::Pending => {}
                            }
                        }
                    }
                }
                r = read_dedicated(&mut self.link), if can_read_backend && matches!(self.link, Link::Dedicated(_)) => match r {
                    Ok(0) => self.backend_lost(BackendError::Lost),
                    Ok(_) => {
                        self.replies.now_us = stats::now_us();
                        // Progress: the wait for the next reply starts over.
                        if self.wait_start.is_some() {
                            self.wait_start = Some(tokio::time::Instant::now());
                        }
                        self.on_dedicated_data();
                    }
                    Err(_) => self.backend_lost(BackendError::Lost),
                },
                r = self.replies.out.write_once(&mut self.wr), if !self.replies.out.is_empty() => match r {
                    Ok(n) => stats::add(Counter::BytesOut, n as u64),
                    Err(_) => return,
                },
                r = self.rd.read_buf(rbuf), if can_read => match r {
                    Ok(0) => self.eof = true,
                    Err(_) => return,
                    Ok(n) => {
                        // For good: a pipelining or bulk-writing client
                        // would otherwise allocate a small buffer per read.
                        // (The buffer has at least READ_SMALL / 4 spare
                        // bytes here, so a read that fills it counts too.)
                        self.big_reads |= n >= READ_SMALL / 4;
                        stats::add(Counter::BytesIn, n as u64);
                        self.refresh();
                        self.process_input().await
                    }
                },
                _ = sleep_until_or_never(command_deadline), if command_deadline.is_some() => {
                    if self.ctx.backend.settings().code.any() {
                        // Redis runs someone's code: it answers nobody until
                        // its busy-reply-threshold, so the wait starts over.
                        self.wait_start = Some(tokio::time::Instant::now());
                    } else {
                        tracing::warn!("no reply from Redis in time on a dedicated link; closing the client");
                        self.backend_lost(BackendError::CommandTimeout);
                    }
                }
                _ = sleep_or_never(idle), if idle.is_some() => {
                    tracing::debug!("idle timeout");
                    return;
                }
            }
            if self.retry.as_ref().is_some_and(|r| r.moved_to.is_some()) {
                Box::pin(self.follow_moved()).await;
            }
            if self.replies.awaiting == 0 {
                self.wait_start = None;
                self.blocking_sent = false;
                self.code_ended();
                // Its reply is in: nothing to send again.
                self.retry = None;
            }
            if self.replies.reset_seen {
                self.replies.reset_seen = false;
                self.reset_session_state();
            }
            if self.over_output_limit() {
                return;
            }
            self.held.set_out(self.replies.out.len());
            if self.lent.is_some() && self.replies.is_empty() {
                self.give_back();
            }
            if self.stalled && self.replies.is_empty() {
                self.stalled = false;
                self.sync_shared_link();
                if let Some(d) = self.deferred.take() {
                    self.handle(d.frame, &d.args, d.route, d.cmd).await;
                }
                if !self.stalled {
                    self.process_input().await;
                }
            } else if !self.stalled
                && self.rbuf.len() >= self.need.max(1)
                && self.replies.inflight() < self.ctx.max_inflight
            {
                // Input that was left unparsed because of the in-flight limit.
                self.process_input().await;
            }
        }
    }

    /// The output-limit class the client is in now.
    fn output_class(&self) -> OutputClass {
        if self.raw {
            OutputClass::Replica
        } else if self.replies.monitor || self.replies.subscribed() {
            OutputClass::Pubsub
        } else if matches!(self.link, Link::Shared { .. }) {
            OutputClass::Shared
        } else {
            OutputClass::Normal
        }
    }

    /// Whether the client must be disconnected for the bytes waiting for it.
    fn over_output_limit(&mut self) -> bool {
        if self.held.overflowed() {
            // A shared link refused to hold more for this client.
            return output_limit_reached(OutputClass::Shared, self.held.bytes());
        }
        if self.replies.out.is_empty() {
            self.out_watch = OutputWatch::default();
            return false;
        }
        let class = self.output_class();
        let limit = self.ctx.output.of(class);
        let floor = match (limit.hard, limit.soft) {
            // No limit (the normal class by default): nothing to measure.
            (0, 0) => return false,
            (0, s) | (s, 0) => s,
            (h, s) => h.min(s),
        };
        let queued = self.replies.out.len();
        if queued < floor {
            self.out_watch = OutputWatch::default();
            return false;
        }
        if !self.out_watch.exceeded(limit, queued, std::time::Instant::now()) {
            return false;
        }
        output_limit_reached(class, queued)
    }

    /// Take the growth of what the session holds for its input (`rbuf`,
    /// and the argument ranges parsed from it: 16 bytes per argument, more
    /// than the argument's own bytes for short ones) from the proxy-wide
    /// budget, or give back what it shrank by. False when the budget is
    /// used up.
    fn charge_rbuf(&mut self) -> bool {
        let cap = self.rbuf.capacity() + self.args.capacity() * std::mem::size_of::<Range<usize>>();
        if cap > self.charged {
            if !self.ctx.budget.try_take(cap - self.charged) {
                return false;
            }
        } else {
            self.ctx.budget.give(self.charged - cap);
        }
        self.charged = cap;
        true
    }

    fn protocol_error(&mut self, e: ProtocolError) {
        self.refuse(ClientError::Protocol(e).into());
    }

    /// Answer a request with an error (respseal's own, or Redis's words for
    /// the commands respseal answers itself), through the one rescue point,
    /// which also says whether the connection closes after it (malformed
    /// RESP). Inside MULTI this is a queue-time error, as Redis's own: the
    /// transaction is discarded at EXEC.
    fn refuse(&mut self, e: Error) {
        self.txn.refused();
        self.replies.push(Plan::Local(e.rescue()), 0);
        if e.closes() {
            self.replies.push(Plan::Close, 0);
            self.replies.closing = true;
        }
    }

    // ----- links ----------------------------------------------------------

    /// Move to a dedicated link. Only called with no plans outstanding.
    /// Behind Redis Cluster, to the master of `slot` (any master without one).
    /// Boxed: opening a connection is rare and its future is large, and it
    /// would otherwise sit in every session's task.
    fn pin(&mut self, slot: Option<u16>) -> std::pin::Pin<Box<impl Future<Output = bool> + '_>> {
        Box::pin(self.open_dedicated(slot))
    }

    async fn open_dedicated(&mut self, slot: Option<u16>) -> bool {
        self.flush_shared().await;
        match self.ctx.backend.pin(slot, self.replies.db, self.replies.proto).await {
            Ok((conn, node)) => {
                self.install_dedicated(conn);
                self.node = node;
                self.replay_client_info().await;
                true
            }
            Err(e) => {
                self.refuse(e.into());
                false
            }
        }
    }

    /// Borrow a connection for a request that runs code (see
    /// [`crate::backend::Backend::lend`]). Only called on a shared link
    /// with no plans outstanding; false (the client answered) if none can
    /// be had.
    async fn borrow(&mut self) -> bool {
        let Link::Shared { db, proto, .. } = self.link else { return false };
        self.flush_shared().await;
        match Box::pin(self.ctx.backend.lend(db, proto)).await {
            Ok(conn) => {
                let shared = std::mem::replace(&mut self.link, Link::Dedicated(Box::new(conn)));
                self.lent = Some(shared);
                true
            }
            Err(e) => {
                self.refuse(e.into());
                false
            }
        }
    }

    /// Give the lent connection back and return to the shared link. Only
    /// with no plans outstanding.
    fn give_back(&mut self) {
        let Some(shared) = self.lent.take() else { return };
        let Link::Shared { db, proto, .. } = shared else { return };
        if let Link::Dedicated(conn) = std::mem::replace(&mut self.link, shared) {
            self.ctx.backend.give_back(db, proto, *conn);
        }
    }

    /// The session needs connection state: the lent connection becomes its
    /// own dedicated link (it is in the state of the session's group), as a
    /// pin would have made it.
    async fn keep_lent(&mut self) {
        if self.lent.take().is_none() {
            return;
        }
        self.ctx.backend.keep_lent();
        tracing::debug!("session pinned to the connection it borrowed");
        self.pinned = Some(Pinned::count());
        self.replay_client_info().await;
    }

    /// Tell a new dedicated link what the client told the proxy about
    /// itself; Redis before 7.2 refuses SETINFO, so the replies are dropped.
    async fn replay_client_info(&mut self) {
        for (attr, value) in [(&b"LIB-NAME"[..], self.lib_name.clone()), (b"LIB-VER", self.lib_ver.clone())] {
            if let Some(value) = value {
                self.replies.push(Plan::Drop(1), 1);
                self.send(
                    encode::command(&[
                        own::CLIENT_SETINFO[0].as_bytes(),
                        own::CLIENT_SETINFO[1].as_bytes(),
                        attr,
                        &value,
                    ]),
                    1,
                )
                .await;
            }
        }
    }

    /// A request that runs code was sent.
    pub(super) fn code_started(&mut self) {
        if !self.code_running {
            self.code_running = true;
            self.ctx.backend.settings().code.start();
        }
    }

    /// Make `conn` the session's dedicated link.
    fn install_dedicated(&mut self, conn: crate::backend::conn::Dedicated) {
        tracing::debug!("session pinned to a dedicated link");
        self.pinned = Some(Pinned::count());
        self.link = Link::Dedicated(Box::new(DedicatedLink::new(conn)));
    }

    /// Close the dedicated link (behind a cluster, to move to another node;
    /// only with nothing in flight). The client's name and library, which
    /// the old connection had, are replayed by the next pin.
    fn drop_dedicated(&mut self) {
        debug_assert!(self.lent.is_none(), "a lent connection is given back, not dropped");
        self.pinned = None;
        self.link = Link::None;
        self.node = None;
    }

    /// The shared link of the session's group (database, protocol) now.
    fn shared_link(&self) -> Link {
        Link::Shared {
            link: self.ctx.backend.shared(self.replies.db, self.replies.proto, self.id),
            db: self.replies.db,
            proto: self.replies.proto,
        }
    }

    /// After a SELECT or HELLO on a shared link succeeded, move to the link
    /// of the new group.
    fn sync_shared_link(&mut self) {
        if let Link::Shared { db, proto, .. } = self.link
            && (db != self.replies.db || proto != self.replies.proto)
        {
            self.link = self.shared_link();
        }
    }

    async fn flush_backend(&mut self) -> Result<(), BackendError> {
        match &mut self.link {
            Link::Dedicated(d) => d.flush().await,
            _ => Ok(()),
        }
    }

    fn backend_auth_command(&self) -> Option<Bytes> {
        self.ctx.backend.auth_command()
    }

    /// A dedicated link failed: its state is gone, so after answering what
    /// was in flight with errors the client is closed.
    fn backend_lost(&mut self, error: BackendError) {
        if !matches!(self.link, Link::Dedicated(_)) {
            return;
        }
        if let Some(shared) = self.lent.take() {
            // A lent connection holds no state of the client's: what was in
            // flight on it fails, and the session goes on on its shared link.
            tracing::info!(error = %error, "lent link lost");
            self.ctx.backend.keep_lent();
            metrics::counter!("respseal_backend_link_failures_total", "link" => "lent", "kind" => error.kind())
                .increment(1);
            self.link = shared;
            self.replies.now_us = stats::now_us();
            self.replies.fail_all(&error);
            return;
        }
        tracing::info!(error = %error, "dedicated link lost; closing the client");
        self.pinned = None;
        metrics::counter!("respseal_backend_link_failures_total", "link" => "dedicated", "kind" => error.kind())
            .increment(1);
        self.link = Link::None;
        self.replies.now_us = stats::now_us();
        self.replies.fail_all(&error);
        self.replies.push(Plan::Close, 0);
        self.replies.closing = true;
    }

    // ----- replies ----------------------------------------------------------

    /// Bytes arrived on the dedicated link.
    fn on_dedicated_data(&mut self) {
        loop {
            let Link::Dedicated(d) = &mut self.link else {
                return;
            };
            if self.raw || matches!(self.replies.front(), Some(Plan::Raw)) {
                if !self.raw {
                    self.replies.start_raw();
                    self.raw = true;
                }
                let all = d.take_raw();
                return self.replies.out.push(all);
            }
            // HELLO 3's own reply is already RESP3.
            let proto =
                if self.replies.proto == Proto::Resp3 || matches!(self.replies.front(), Some(Plan::Hello { .. })) {
                    Proto::Resp3
                } else {
                    Proto::Resp2
                };
            match d.next_frame(proto) {
                Ok(Some(frame)) if self.moved(&frame) => return,
                Ok(Some(frame)) => self.replies.on_frame(frame),
                Ok(None) => return,
                Err(e) => {
                    metrics::counter!("respseal_backend_errors_total", "kind" => "malformed_reply").increment(1);
                    tracing::error!(error = %e, "closing dedicated link");
                    return self.backend_lost(BackendError::Lost);
                }
            }
        }
    }

    /// Whether `frame` is a `MOVED` for the blocking command in
    /// [`Session::retry`], which is then sent again (`follow_moved`).
    fn moved(&mut self, frame: &Bytes) -> bool {
        let Some(retry) = self.retry.as_mut() else { return false };
        if !frame.starts_with(b"-MOVED ")
            || self.replies.awaiting != 1
            || self.txn.watching()
            || self.replies.reply_mode() != ReplyMode::On
            || retry.redirects >= crate::backend::route::MAX_REDIRECTS
        {
            return false;
        }
        retry.moved_to = crate::backend::route::moved_to(frame, self.node.as_deref().unwrap_or_default());
        retry.redirects += 1;
        retry.moved_to.is_some()
    }

    /// Send the blocking command a `MOVED` answered again, on a new
    /// dedicated link to the master named; if that cannot be opened, the
    /// client gets the error instead.
    async fn follow_moved(&mut self) {
        let Some(retry) = self.retry.as_mut() else { return };
        let Some(addr) = retry.moved_to.take() else { return };
        let frame = retry.frame.clone();
        self.drop_dedicated();
        match self.ctx.backend.pin_redirected(addr, self.replies.proto).await {
            Ok((conn, addr)) => {
                tracing::debug!("the slot of a blocking command moved; sending it again on its new master");
                // Not replayed here: the client's LIB-NAME/LIB-VER, whose
                // replies would arrive before the command's.
                self.install_dedicated(conn);
                self.node = Some(addr);
                self.send(frame, 1).await;
            }
            Err(error) => {
                // Not followed (a node must not send the client anywhere),
                // or the new master cannot be reached: the client gets the
                // error instead.
                self.retry = None;
                self.replies.on_link_event(LinkEvent::Failed { frames: 1, error });
            }
        }
    }

    /// Back to a new connection's state (RESET): the reply queue's part
    /// and the session's own.
    fn reset_state(&mut self) {
        self.replies.reset();
        self.reset_session_state();
    }

    /// The part of RESET the session holds itself (the reply queue resets
    /// its own part as soon as Redis's `+RESET` arrives).
    fn reset_session_state(&mut self) {
        self.lib_name = None;
        self.lib_ver = None;
        self.txn.end();
        self.authenticated = !self.cur.users.required();
    }

    /// Take up a reloaded configuration, if there is one. Replies to
    /// requests sent before are opened with the new keyring too: a reload
    /// that drops a key still in use is what `respseal check` catches.
    fn refresh(&mut self) {
        if self.ctx.live.generation() == self.generation {
            return;
        }
        let (generation, cur) = self.ctx.live.load();
        self.generation = generation;
        self.replies.set_sealer(cur.sealer.clone());
        self.cur = cur;
    }
}

impl<R, W> Session<R, W> {
    /// Nothing is in flight any more (so no code either).
    fn code_ended(&mut self) {
        if self.code_running {
            self.code_running = false;
            self.ctx.backend.settings().code.end();
        }
    }
}

impl<R, W> Drop for Session<R, W> {
    fn drop(&mut self) {
        self.ctx.budget.give(self.charged);
        self.code_ended();
        if self.lent.is_some() {
            // Closed with it: whatever was in flight is not known to be over.
            self.ctx.backend.keep_lent();
        }
    }
}

/// A session with a dedicated link of its own, counted in
/// `respseal_pinned_sessions` from [`Pinned::count`] until dropped.
struct Pinned(());

impl Pinned {
    fn count() -> Self {
        metrics::gauge!("respseal_pinned_sessions").increment(1.0);
        Pinned(())
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        metrics::gauge!("respseal_pinned_sessions").decrement(1.0);
    }
}

/// Count and log a client closed at its output limit (`queued` bytes held
/// for it); always true, for the caller to return.
fn output_limit_reached(class: OutputClass, queued: usize) -> bool {
    metrics::counter!("respseal_output_limit_disconnects_total", "class" => class.name()).increment(1);
    tracing::info!(class = class.name(), queued, "client output limit reached; closing the client");
    true
}

/// Append the request re-encoded with its values sealed to `out`. Fails
/// closed: without a sealer or a command row nothing is appended.
fn reencode_sealed(
    sealer: Option<&Sealer>,
    cmd: Option<&Command>,
    args: &Args<'_>,
    out: &mut BytesMut,
) -> Result<(), Error> {
    match (sealer, cmd) {
        (Some(sealer), Some(cmd)) => sealer.seal_request(cmd, args, out),
        _ => Err(Error::Crypto(CryptoError::Seal("no_sealer"))),
    }
}

async fn read_dedicated(link: &mut Link) -> std::io::Result<usize> {
    match link {
        Link::Dedicated(d) => d.read().await,
        _ => std::future::pending().await,
    }
}

async fn sleep_until_or_never(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
