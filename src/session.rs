//! One client connection: the session task.
//!
//! A session reads every complete request that is buffered, classifies each
//! with the command table, and forwards runs of requests on its link in one
//! go (the client's own bytes, not re-encoded). Each request leaves a reply
//! plan in a FIFO; replies coming back are matched to plans in order and
//! written to the client together. The session starts on a shared link of
//! its (database, protocol) group and is pinned to a dedicated link for good
//! when a command needs connection state (DESIGN.md §1), after its in-flight
//! commands are answered.
//!
//! Errors stay inside the session: a client's protocol error closes only that
//! client, a backend failure becomes error replies.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthOutcome, Users};
use crate::backend::{Backend, BackendError, Dedicated, LinkEvent, SharedLink, SharedRequest};
use crate::commands::table::{State, SubKind};
use crate::commands::{self, Args, Class, Command, LocalCmd, Route};
use crate::error::{Error, Refusal};
use crate::limits::{Budget, OutputClass, OutputLimits, OutputWatch};
use crate::outbuf::OutBuf;
use crate::plan::Plan;
use crate::protocol::reply::ReplyScanner;
use crate::protocol::request::{self, Limits, Parsed, ProtocolError};
use crate::protocol::{Proto, encode, parse_int, reply};
use crate::seal::{Inspect, OpenPlan, Reseal, Sealer};

/// Stop reading from a client while this many bytes of replies wait to be
/// written to it.
const OUT_HIGH_WATER: usize = 32 * 1024 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Failed AUTH attempts a connection gets without delay.
const AUTH_FREE_FAILURES: u32 = 10;
/// Delay before the first slowed AUTH attempt; doubles with each failure.
const AUTH_FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay before an AUTH attempt.
const AUTH_MAX_DELAY: Duration = Duration::from_secs(5);
/// Most room reserved in `shared_tail` for requests not parsed yet.
const TAIL_RESERVE_MAX: usize = 256 * 1024;

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
    /// Bytes buffered from all clients together (shared by every worker).
    pub budget: Arc<Budget>,
    /// Pin every session to a dedicated link at connect.
    pub dedicated_mode: bool,
    /// Close a client that sent nothing for this long (never while it waits
    /// for replies, is subscribed or is monitoring).
    pub idle_timeout: Option<Duration>,
    /// The proxy's own users (AUTH, HELLO … AUTH).
    pub users: Arc<Users>,
    /// Rules and keys; `None` when nothing is sealed.
    pub sealer: Option<Arc<Sealer>>,
}

enum Link {
    /// No backend connection yet (dedicated mode before the first command).
    None,
    /// A shared link of group (db, proto).
    Shared { link: SharedLink, db: u32, proto: Proto },
    /// The session's own backend connection.
    Dedicated(Box<DedicatedLink>),
}

struct DedicatedLink {
    conn: Dedicated,
    out: OutBuf,
    /// Progress on the reply at the start of `conn.buf`.
    scan: ReplyScanner,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    SkipNext,
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
    id: u64,
    rd: R,
    wr: W,
    rbuf: BytesMut,
    /// Buffer length below which parsing cannot make progress.
    need: usize,
    args: Vec<Range<usize>>,
    out: OutBuf,
    plans: VecDeque<Plan>,
    /// Replies expected from the backend.
    awaiting: usize,
    proto: Proto,
    db: u32,
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
    reply_tx: mpsc::UnboundedSender<LinkEvent>,
    reply_rx: mpsc::UnboundedReceiver<LinkEvent>,
    /// No new requests until the plans drain (a group switch or pin).
    stalled: bool,
    deferred: Option<Deferred>,
    closing: bool,
    /// The client shut down its sending side: answer what it sent, then close.
    eof: bool,
    draining: bool,
    subs: [HashSet<Bytes>; 3],
    monitor: bool,
    reply_mode: ReplyMode,
    /// Inside MULTI on the dedicated link.
    in_multi: bool,
    /// A command was refused inside the current MULTI: EXEC is answered
    /// EXECABORT (and the transaction discarded in Redis).
    multi_aborted: bool,
    /// Proxy-made replies in the FIFO not yet written: they count toward
    /// `max_inflight` like replies from Redis.
    local_pending: usize,
    /// Failed AUTH attempts on this connection (slowed after a few).
    auth_failures: u32,
    /// Time over the soft output limit.
    out_watch: OutputWatch,
    /// Bytes of `rbuf` taken from the proxy-wide budget.
    charged: usize,
    /// Open plans of the commands Redis queued in the current transaction.
    exec_queue: Vec<Option<OpenPlan>>,
    /// Open plan for the request being forwarded by `forward_one`.
    next_open: Option<OpenPlan>,
    /// Legacy values read that are to be re-sealed in Redis.
    reseal: Vec<Reseal>,
    /// The dedicated link carries a replication stream (after SYNC/PSYNC):
    /// bytes are relayed as they come.
    raw: bool,
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// A new session on an accepted connection.
    pub fn new(ctx: Arc<Context>, id: u64, rd: R, wr: W) -> Self {
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        let db = ctx.backend.default_db();
        let authenticated = !ctx.users.required();
        Session {
            ctx,
            id,
            rd,
            wr,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            need: 0,
            args: Vec::new(),
            out: OutBuf::default(),
            plans: VecDeque::new(),
            awaiting: 0,
            proto: Proto::Resp2,
            db,
            authenticated,
            lib_name: None,
            lib_ver: None,
            link: Link::None,
            shared_batch: Vec::new(),
            shared_tail: BytesMut::new(),
            shared_frames: 0,
            reply_tx,
            reply_rx,
            stalled: false,
            deferred: None,
            closing: false,
            eof: false,
            draining: false,
            subs: Default::default(),
            monitor: false,
            reply_mode: ReplyMode::On,
            in_multi: false,
            multi_aborted: false,
            local_pending: 0,
            auth_failures: 0,
            out_watch: OutputWatch::default(),
            charged: 0,
            exec_queue: Vec::new(),
            next_open: None,
            reseal: Vec::new(),
            raw: false,
        }
    }

    /// Serve the client until it leaves, the connection fails, or `shutdown`
    /// fires and everything in flight has been answered.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // One waiter for the whole session, not one per loop turn.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        if !self.ctx.dedicated_mode {
            self.link = Link::Shared {
                link: self.ctx.backend.shared(self.db, self.proto, self.id),
                db: self.db,
                proto: self.proto,
            };
        }
        loop {
            if !self.reseal.is_empty() {
                self.send_reseals().await;
            }
            self.flush_shared().await;
            if let Err(e) = self.flush_backend().await {
                self.backend_lost(e);
            }
            if (self.closing || self.draining || (self.eof && !self.stalled)) && self.plans.is_empty() {
                let _ = self.out.write_to(&mut self.wr).await;
                let _ = self.wr.shutdown().await;
                return;
            }
            let can_read = !self.eof
                && !self.closing
                && !self.draining
                && !self.stalled
                && self.inflight() < self.ctx.max_inflight
                && self.out.len() < OUT_HIGH_WATER;
            let idle = self
                .ctx
                .idle_timeout
                .filter(|_| self.plans.is_empty() && !self.monitor && self.subs.iter().all(HashSet::is_empty));
            if can_read && self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
                if !self.charge_rbuf() {
                    // Many clients announcing huge requests together: this
                    // one is refused rather than pushing memory past the cap.
                    self.refuse(Refusal::BufferBudget.into());
                    self.push_plan(Plan::Close, 0);
                    self.closing = true;
                    continue;
                }
            }
            // A client that does not read its replies: for the normal class
            // Redis holds the rest (respseal stops reading from it); other
            // classes are disconnected at their limit below.
            let can_read_backend = self.out.len() < OUT_HIGH_WATER || self.output_class() != OutputClass::Normal;
            let rbuf = &mut self.rbuf;
            tokio::select! {
                biased;
                _ = &mut cancelled, if !self.draining => {
                    self.draining = true;
                }
                ev = self.reply_rx.recv() => {
                    // The session holds a sender itself, so the channel never closes.
                    if let Some(ev) = ev {
                        self.on_link_event(ev);
                    }
                }
                r = read_dedicated(&mut self.link), if can_read_backend => match r {
                    Ok(0) => self.backend_lost(BackendError::Lost),
                    Ok(_) => self.on_dedicated_data(),
                    Err(_) => self.backend_lost(BackendError::Lost),
                },
                r = self.out.write_once(&mut self.wr), if !self.out.is_empty() => {
                    if r.is_err() {
                        return;
                    }
                }
                r = self.rd.read_buf(rbuf), if can_read => match r {
                    Ok(0) => self.eof = true,
                    Err(_) => return,
                    Ok(_) => self.process_input().await,
                },
                _ = sleep_or_never(idle) => {
                    tracing::debug!("idle timeout");
                    return;
                }
            }
            if self.over_output_limit() {
                return;
            }
            if self.stalled && self.plans.is_empty() {
                self.stalled = false;
                self.sync_shared_link();
                if let Some(d) = self.deferred.take() {
                    self.handle(d.frame, &d.args, d.route, d.cmd).await;
                }
                if !self.stalled {
                    self.process_input().await;
                }
            } else if !self.stalled && self.rbuf.len() >= self.need.max(1) && self.inflight() < self.ctx.max_inflight {
                // Input that was left unparsed because of the in-flight limit.
                self.process_input().await;
            }
        }
    }

    // ----- client input -------------------------------------------------

    /// Handle every complete request in the read buffer.
    async fn process_input(&mut self) {
        let mut run_len = 0usize;
        let mut run_frames = 0u32;
        let limits = self.ctx.limits;
        loop {
            if self.closing || self.stalled || self.inflight() + run_frames as usize >= self.ctx.max_inflight {
                break;
            }
            if self.rbuf.len() - run_len < self.need {
                break;
            }
            let parsed = request::parse(&self.rbuf[run_len..], &limits, &mut self.args);
            match parsed {
                Err(e) => {
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    self.protocol_error(e);
                    break;
                }
                Ok(Parsed::Incomplete { need }) => {
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    self.need = need;
                    break;
                }
                Ok(Parsed::Empty { len }) => {
                    self.need = 0;
                    if run_frames == 0 {
                        self.rbuf.advance(len);
                    } else {
                        // Redis ignores these bytes too; they can travel with the run.
                        run_len += len;
                    }
                }
                Ok(Parsed::Command { len, inline }) => {
                    self.need = 0;
                    let (route, sealing, cmd) = {
                        let src: &[u8] = match &inline {
                            Some(f) => f,
                            None => &self.rbuf[run_len..],
                        };
                        let args = Args::new(src, &self.args);
                        // One table lookup serves routing and sealing.
                        let cmd = args.get(0).and_then(commands::lookup);
                        let route = if !self.authenticated
                            && !args.is(0, "AUTH")
                            && !args.is(0, "HELLO")
                            && !args.is(0, "QUIT")
                        {
                            Route::NoAuth
                        } else if self.ctx.dedicated_mode && matches!(self.link, Link::None) {
                            match commands::classify_command(cmd, &args) {
                                Route::Forward => Route::Pin,
                                other => other,
                            }
                        } else {
                            commands::classify_command(cmd, &args)
                        };
                        let sealing = match (&self.ctx.sealer, route) {
                            (Some(sealer), Route::Forward | Route::Pin) => sealer.inspect(cmd, &args),
                            _ => Inspect::Untouched,
                        };
                        (route, sealing, cmd)
                    };
                    let untouched = matches!(sealing, Inspect::Untouched);
                    if untouched && route == Route::Forward && inline.is_none() && self.plain_forward_ok() {
                        run_len += len;
                        run_frames += 1;
                        continue;
                    }
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    // The request now starts at rbuf[0] (or is `inline`), where
                    // `self.args` points.
                    let mut sealed = None;
                    match sealing {
                        Inspect::Untouched => {}
                        Inspect::Refuse(why) => {
                            self.rbuf.advance(len);
                            self.refuse(why.into());
                            continue;
                        }
                        Inspect::Forward { seal, open } => {
                            if route == Route::Forward && self.batches_sealed(cmd) {
                                self.queue_sealed(len, inline.as_ref(), cmd, seal, open);
                                continue;
                            }
                            if seal {
                                let src: &[u8] = inline.as_deref().unwrap_or(&self.rbuf[..len]);
                                let mut f = BytesMut::new();
                                if let Err(e) = reencode_sealed(
                                    self.ctx.sealer.as_deref(),
                                    cmd,
                                    &Args::new(src, &self.args),
                                    &mut f,
                                ) {
                                    self.rbuf.advance(len);
                                    self.refuse(e);
                                    continue;
                                }
                                sealed = Some(f.freeze());
                            }
                            self.next_open = open;
                        }
                    }
                    let mut frame = match inline {
                        Some(f) => {
                            self.rbuf.advance(len);
                            f
                        }
                        None => self.rbuf.split_to(len).freeze(),
                    };
                    if let Some(f) = sealed {
                        // The proxy encoded it: always one complete request.
                        let all = Limits { max_bulk: usize::MAX, max_frame: usize::MAX, max_args: usize::MAX };
                        let _ = request::parse(&f, &all, &mut self.args);
                        frame = f;
                    }
                    let args = std::mem::take(&mut self.args);
                    self.handle(frame, &args, route, cmd).await;
                    self.args = args;
                }
            }
        }
        self.flush_run(&mut run_len, &mut run_frames).await;
    }

    /// Whether a request with a sealed key can be queued by
    /// [`Session::queue_sealed`]: on a shared link, which plain replies only.
    fn batches_sealed(&self, cmd: Option<&'static Command>) -> bool {
        matches!(self.link, Link::Shared { .. })
            && self.reply_mode == ReplyMode::On
            && !self.in_multi
            && !self.raw
            && !matches!(cmd.map(|c| c.class), Some(Class::Stateful(_) | Class::Client))
    }

    /// Queue the request at the front of `rbuf` (`len` bytes; or `inline`)
    /// on the shared link through `shared_tail`: with its values sealed if
    /// `seal`, copied as it is otherwise; its reply is opened with `open`.
    fn queue_sealed(
        &mut self,
        len: usize,
        inline: Option<&Bytes>,
        cmd: Option<&'static Command>,
        seal: bool,
        open: Option<OpenPlan>,
    ) {
        let src: &[u8] = inline.map_or(&self.rbuf[..len], |f| &f[..]);
        let args = Args::new(src, &self.args);
        let need = match cmd {
            Some(cmd) if seal => Sealer::sealed_len_bound(cmd, &args),
            _ => src.len(),
        };
        let tail = &mut self.shared_tail;
        if tail.capacity() - tail.len() < need {
            // Never grow the buffer in place (that would copy what it holds):
            // hand what it holds on and start a new one, sized for the rest
            // of what the client sent too (bounded).
            if !tail.is_empty() {
                self.shared_batch.push(tail.split().freeze());
            }
            let rest = self.rbuf.len().saturating_sub(len);
            tail.reserve(need + (rest + rest / 8).min(TAIL_RESERVE_MAX));
        }
        let result = if seal {
            reencode_sealed(self.ctx.sealer.as_deref(), cmd, &args, tail)
        } else {
            tail.extend_from_slice(src);
            Ok(())
        };
        self.rbuf.advance(len);
        if let Err(e) = result {
            return self.refuse(e);
        }
        self.shared_frames += 1;
        self.push_plan(open.map_or(Plan::Forward(1), Plan::Open), 1);
    }

    /// The output-limit class the client is in now.
    fn output_class(&self) -> OutputClass {
        if self.raw {
            OutputClass::Replica
        } else if self.monitor || self.subs.iter().any(|s| !s.is_empty()) {
            OutputClass::Pubsub
        } else {
            OutputClass::Normal
        }
    }

    /// Whether the client must be disconnected for the bytes waiting for it.
    fn over_output_limit(&mut self) -> bool {
        let queued = self.out.len();
        if queued == 0 {
            self.out_watch = OutputWatch::default();
            return false;
        }
        let class = self.output_class();
        let limit = self.ctx.output.of(class);
        let floor = match (limit.hard, limit.soft) {
            (0, 0) => return false,
            (0, s) | (s, 0) => s,
            (h, s) => h.min(s),
        };
        if queued < floor {
            self.out_watch = OutputWatch::default();
            return false;
        }
        if !self.out_watch.exceeded(limit, queued, std::time::Instant::now()) {
            return false;
        }
        metrics::counter!("respseal_output_limit_disconnects_total", "class" => class.name()).increment(1);
        tracing::info!(class = class.name(), queued, "client output limit reached; closing the client");
        true
    }

    /// Take `rbuf`'s growth from the proxy-wide budget (or give back what
    /// it shrank by). False when the budget is used up.
    fn charge_rbuf(&mut self) -> bool {
        let cap = self.rbuf.capacity();
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

    /// Replies owed to the client: from Redis, and made by the proxy.
    fn inflight(&self) -> usize {
        self.awaiting + self.local_pending
    }

    /// Whether a plain command can join a run forwarded as-is.
    fn plain_forward_ok(&self) -> bool {
        match &self.link {
            Link::Shared { .. } => true,
            Link::Dedicated(_) => self.reply_mode == ReplyMode::On && !self.in_multi && !self.raw,
            Link::None => false,
        }
    }

    /// Send the accumulated run of plain requests.
    async fn flush_run(&mut self, run_len: &mut usize, run_frames: &mut u32) {
        if *run_len == 0 {
            return;
        }
        let data = self.rbuf.split_to(*run_len).freeze();
        let frames = *run_frames;
        *run_len = 0;
        *run_frames = 0;
        if frames > 0 {
            self.push_plan(Plan::Forward(frames), frames as usize);
        }
        self.send(data, frames).await;
    }

    /// Handle one request that is not a plain forward.
    /// `cmd` is the request's row in the command table, already looked up.
    async fn handle(&mut self, frame: Bytes, ranges: &[Range<usize>], route: Route, cmd: Option<&'static Command>) {
        let args = Args::new(&frame, ranges);
        match route {
            Route::NoAuth => self.refuse(Refusal::NoAuth.into()),
            Route::Refuse(why) => self.refuse(Refusal::NotForwarded(why).into()),
            Route::Control => {
                if !self.plans.is_empty() {
                    return self.defer(frame, ranges, route, cmd);
                }
                match self.ctx.backend.oneshot(&frame).await {
                    Ok(reply) => self.push_plan(Plan::Local(reply), 0),
                    Err(e) => self.refuse(e.into()),
                }
            }
            Route::Forward => self.forward_one(frame.clone(), &args, cmd).await,
            Route::Pin => {
                if !matches!(self.link, Link::Dedicated(_)) {
                    if !self.plans.is_empty() {
                        return self.defer(frame, ranges, route, cmd);
                    }
                    if !self.pin().await {
                        return;
                    }
                }
                self.forward_one(frame.clone(), &args, cmd).await;
            }
            Route::Local(cmd) => self.local(cmd, frame.clone(), ranges).await,
        }
    }

    fn defer(&mut self, frame: Bytes, ranges: &[Range<usize>], route: Route, cmd: Option<&'static Command>) {
        self.stalled = true;
        self.deferred = Some(Deferred { frame, args: ranges.to_vec(), route, cmd });
    }

    /// Forward one request on the current link with the plan its class needs.
    async fn forward_one(&mut self, frame: Bytes, args: &Args<'_>, cmd: Option<&'static Command>) {
        if matches!(self.link, Link::None) && !self.pin().await {
            return;
        }
        let dedicated = matches!(self.link, Link::Dedicated(_));
        let class = cmd.map(|c| c.class);
        let (plan, frames) = match class {
            Some(Class::Stateful(State::Subscribe(kind))) if dedicated => {
                let n = (args.len() as u32).saturating_sub(1).max(1);
                (Plan::Subscribe { kind, subscribe: true, remaining: Some(n) }, n)
            }
            Some(Class::Stateful(State::Unsubscribe(kind))) if dedicated => {
                let n = (args.len() as u32).saturating_sub(1);
                let remaining = if n == 0 { None } else { Some(n) };
                (Plan::Subscribe { kind, subscribe: false, remaining }, n.max(1))
            }
            Some(Class::Stateful(State::Monitor)) => (Plan::Monitor, 1),
            // A replica's REPLCONF ACK on a replication stream gets no reply.
            _ if self.raw => return self.send(frame, 0).await,
            Some(Class::Stateful(State::Replication)) => (Plan::Raw, 1),
            _ if self.in_multi && args.is(0, "EXEC") && self.multi_aborted => {
                // A command was refused while queueing: Redis discards such
                // a transaction, and so does respseal.
                self.in_multi = false;
                self.multi_aborted = false;
                self.push_plan(Plan::ExecAbort, 1);
                return self.send(encode::command(&["DISCARD"]), 1).await;
            }
            _ if self.in_multi && (args.is(0, "EXEC") || args.is(0, "DISCARD")) => {
                self.in_multi = false;
                self.multi_aborted = false;
                (Plan::Exec, 1)
            }
            _ if self.in_multi => (Plan::Queued(self.next_open.take()), 1),
            Some(Class::Stateful(State::Transaction)) if dedicated => {
                self.in_multi = true;
                (Plan::Forward(1), 1)
            }
            _ if self.next_open.is_some() => (Plan::Open(self.next_open.take().expect("checked is_some")), 1),
            Some(Class::Client) if dedicated && args.is(1, "REPLY") => {
                // Redis sends no reply to CLIENT REPLY OFF/SKIP, nor to the
                // command after SKIP.
                if args.is(2, "OFF") {
                    self.reply_mode = ReplyMode::Off;
                    return self.send(frame, 0).await;
                } else if args.is(2, "SKIP") {
                    if self.reply_mode == ReplyMode::On {
                        self.reply_mode = ReplyMode::SkipNext;
                    }
                    return self.send(frame, 0).await;
                } else if args.is(2, "ON") {
                    self.reply_mode = ReplyMode::On;
                }
                (Plan::Forward(1), 1)
            }
            _ => (Plan::Forward(1), 1),
        };
        // Subscription confirmations are sent even while replies are off.
        let always_answered = matches!(plan, Plan::Subscribe { .. });
        match self.reply_mode {
            ReplyMode::On => {}
            ReplyMode::Off if !always_answered => return self.send(frame, 0).await,
            ReplyMode::Off => {}
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                if !always_answered {
                    return self.send(frame, 0).await;
                }
            }
        }
        self.push_plan(plan, frames as usize);
        self.send(frame, frames).await;
    }

    /// Connection commands the proxy handles.
    async fn local(&mut self, cmd: LocalCmd, frame: Bytes, ranges: &[Range<usize>]) {
        let args = Args::new(&frame, ranges);
        match cmd {
            LocalCmd::Quit => {
                self.push_plan(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0);
                self.push_plan(Plan::Close, 0);
                self.closing = true;
            }
            LocalCmd::Auth => {
                let (user, password) = match args.len() {
                    2 => (None, args.get(1).unwrap_or_default()),
                    3 => (args.get(1), args.get(2).unwrap_or_default()),
                    1 => return self.local_error(AuthOutcome::Syntax.message("auth")),
                    _ => return self.local_error("ERR syntax error"),
                };
                match self.auth_attempt(user, password).await {
                    AuthOutcome::Ok => self.push_plan(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0),
                    other => self.refuse(Refusal::Auth(other.message("auth")).into()),
                }
            }
            LocalCmd::ClientSetinfo => self.client_setinfo(&args),
            LocalCmd::Select => self.select(frame.clone(), &args).await,
            LocalCmd::Hello => self.hello(frame.clone(), ranges).await,
            LocalCmd::Reset => {
                if let Link::Dedicated(_) = self.link {
                    self.push_plan(Plan::Reset, 1);
                    self.send(frame, 1).await;
                    if let Some(auth) = self.backend_auth_command() {
                        // RESET logs the connection out; log it back in.
                        self.push_plan(Plan::Drop(1), 1);
                        self.send(auth, 1).await;
                    }
                    self.stalled = true;
                } else if !self.plans.is_empty() {
                    self.defer(frame, ranges, Route::Local(cmd), None);
                } else {
                    self.reset_state();
                    self.sync_shared_link();
                    self.push_plan(Plan::Local(Bytes::from_static(b"+RESET\r\n")), 0);
                }
            }
        }
    }

    /// Check credentials. After [`AUTH_FREE_FAILURES`] failures on this
    /// connection each further attempt first waits, twice as long as the
    /// one before (up to [`AUTH_MAX_DELAY`]): a connection can no longer
    /// try passwords at line rate. The wait holds only this session.
    async fn auth_attempt(&mut self, user: Option<&[u8]>, password: &[u8]) -> AuthOutcome {
        if self.auth_failures >= AUTH_FREE_FAILURES {
            let doublings = (self.auth_failures - AUTH_FREE_FAILURES).min(16);
            let delay = (AUTH_FIRST_DELAY * (1u32 << doublings)).min(AUTH_MAX_DELAY);
            // Everything answered so far goes out before the wait.
            let _ = self.out.write_to(&mut self.wr).await;
            tokio::time::sleep(delay).await;
        }
        let outcome = self.ctx.users.check(user, password);
        if outcome == AuthOutcome::Ok {
            self.authenticated = true;
            self.auth_failures = 0;
        } else if outcome == AuthOutcome::WrongPass && self.ctx.users.required() {
            // Counted only with users: without them there is no password to guess.
            self.auth_failures = self.auth_failures.saturating_add(1);
        }
        outcome
    }

    fn client_setinfo(&mut self, args: &Args<'_>) {
        if args.len() != 4 {
            return self.local_error("ERR wrong number of arguments for 'client|setinfo' command");
        }
        let value = args.get(3).unwrap_or_default();
        if value.iter().any(|b| !(b'!'..=b'~').contains(b)) {
            let which = if args.is(2, "LIB-NAME") { "lib-name" } else { "lib-ver" };
            return self.local_error(&format!("ERR {which} cannot contain spaces, newlines or special characters."));
        }
        let value = Bytes::copy_from_slice(value);
        if args.is(2, "LIB-NAME") {
            self.lib_name = Some(value);
        } else if args.is(2, "LIB-VER") {
            self.lib_ver = Some(value);
        } else {
            let opt = String::from_utf8_lossy(args.get(2).unwrap_or_default()).into_owned();
            return self.local_error(&format!("ERR Unrecognized option '{opt}'"));
        }
        self.push_plan(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0);
    }

    async fn select(&mut self, frame: Bytes, args: &Args<'_>) {
        let db = match (args.len(), args.get(1).and_then(parse_int)) {
            (2, Some(db)) if (0..=i64::from(u32::MAX)).contains(&db) => db as u32,
            // Redis answers malformed SELECTs with an error and no state change.
            _ => return self.forward_one(frame, args, args.get(0).and_then(commands::lookup)).await,
        };
        if matches!(self.link, Link::None) && !self.pin().await {
            return;
        }
        let restore = matches!(self.link, Link::Shared { .. });
        let data = if let Link::Shared { db: link_db, .. } = self.link {
            // Validate on the session's own link, then put the link back:
            // both in one write, so no other session's command runs between.
            let mut b = BytesMut::from(&frame[..]);
            b.extend_from_slice(&encode::command(&["SELECT", &link_db.to_string()]));
            b.freeze()
        } else {
            frame
        };
        let frames = if restore { 2 } else { 1 };
        self.push_plan(Plan::Select { db, restore, first_done: false }, frames);
        self.send(data, frames as u32).await;
        self.stalled = true;
    }

    async fn hello(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        let args = Args::new(&frame, ranges);
        let requested = match args.get(1).map(parse_int) {
            None => None,
            Some(Some(2)) => Some(Proto::Resp2),
            Some(Some(3)) => Some(Proto::Resp3),
            // Answered here as Redis answers it (no state change), so that
            // nothing from a client reaches Redis before it authenticated,
            // and HELLO's AUTH arguments never do.
            Some(Some(_)) => return self.refuse(Refusal::NoProto.into()),
            Some(None) => return self.local_error("ERR Protocol version is not an integer or out of range"),
        };
        // Take AUTH out: the proxy checks it; the rest goes to Redis.
        let mut rest: Vec<&[u8]> = vec![b"HELLO"];
        let mut i = 1;
        while i < args.len() {
            if i >= 2 && args.is(i, "AUTH") && i + 2 < args.len() {
                let outcome = self.auth_attempt(args.get(i + 1), args.get(i + 2).unwrap_or_default()).await;
                if outcome != AuthOutcome::Ok {
                    return self.refuse(Refusal::Auth(outcome.message("hello")).into());
                }
                self.authenticated = true;
                i += 3;
                continue;
            }
            rest.push(args.get(i).unwrap_or_default());
            i += 1;
        }
        if !self.authenticated {
            return self.refuse(Refusal::NoAuthHello.into());
        }
        let setname = rest.iter().skip(2).any(|a| a.eq_ignore_ascii_case(b"SETNAME"));
        let data = encode::command(&rest);
        if setname && !matches!(self.link, Link::Dedicated(_)) {
            // A connection name is connection state: pin first.
            if !self.plans.is_empty() {
                return self.defer(frame.clone(), ranges, Route::Local(LocalCmd::Hello), None);
            }
            if !self.pin().await {
                return;
            }
        }
        match (&self.link, requested) {
            (Link::Shared { proto, .. }, Some(p)) if *proto != p => {
                if !self.plans.is_empty() {
                    return self.defer(frame.clone(), ranges, Route::Local(LocalCmd::Hello), None);
                }
                // The group of the requested protocol already speaks it, so
                // this HELLO changes nothing on the shared link.
                let link = self.ctx.backend.shared(self.db, p, self.id);
                self.push_plan(Plan::Hello { proto: Some(p) }, 1);
                link.send(SharedRequest { data: vec![data], frames: 1, reply: self.reply_tx.clone() }).await;
            }
            (Link::None, _) => {
                if !self.pin().await {
                    return;
                }
                self.push_plan(Plan::Hello { proto: requested }, 1);
                self.send(data, 1).await;
            }
            _ => {
                self.push_plan(Plan::Hello { proto: requested }, 1);
                self.send(data, 1).await;
            }
        }
        self.stalled = true;
    }

    /// Write back legacy plaintext values sealed, each with a
    /// compare-and-set that keeps the TTL, so a newer value written by the
    /// application in the meantime is never overwritten.
    async fn send_reseals(&mut self) {
        const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end return 0";
        let pending = std::mem::take(&mut self.reseal);
        if self.in_multi || self.monitor || self.subs.iter().any(|s| !s.is_empty()) || self.reply_mode != ReplyMode::On
        {
            return;
        }
        for r in pending {
            let cmd = encode::command(&[&b"EVAL"[..], SCRIPT.as_bytes(), b"1", &r.key, &r.plain, &r.sealed]);
            self.push_plan(Plan::Drop(1), 1);
            self.send(cmd, 1).await;
        }
    }

    fn protocol_error(&mut self, e: ProtocolError) {
        self.refuse(Error::Client(e));
        self.push_plan(Plan::Close, 0);
        self.closing = true;
    }

    /// An error reply that mimics Redis's own (syntax and argument errors
    /// of the commands the proxy answers itself).
    fn local_error(&mut self, msg: &str) {
        self.push_plan(Plan::Local(encode::error_frame(msg)), 0);
    }

    /// Answer a request with an error of respseal's own, through the one
    /// rescue point. Inside MULTI this is a queue-time error, as Redis's
    /// own: the transaction is discarded at EXEC.
    fn refuse(&mut self, e: Error) {
        if self.in_multi {
            self.multi_aborted = true;
        }
        self.push_plan(Plan::Local(e.rescue()), 0);
    }

    // ----- links ----------------------------------------------------------

    /// Move to a dedicated link. Only called with no plans outstanding.
    async fn pin(&mut self) -> bool {
        self.flush_shared().await;
        match self.ctx.backend.dedicated(self.db, self.proto).await {
            Ok(conn) => {
                tracing::debug!("session pinned to a dedicated link");
                self.link = Link::Dedicated(Box::new(DedicatedLink {
                    conn,
                    out: OutBuf::default(),
                    scan: ReplyScanner::new(),
                }));
                // Replay what the client told the proxy about itself; Redis
                // before 7.2 refuses SETINFO, so the replies are dropped.
                for (attr, value) in [(&b"LIB-NAME"[..], self.lib_name.clone()), (b"LIB-VER", self.lib_ver.clone())] {
                    if let Some(value) = value {
                        self.push_plan(Plan::Drop(1), 1);
                        self.send(encode::command(&[&b"CLIENT"[..], b"SETINFO", attr, &value]), 1).await;
                    }
                }
                true
            }
            Err(e) => {
                self.refuse(e.into());
                false
            }
        }
    }

    /// After a SELECT or HELLO on a shared link succeeded, move to the link
    /// of the new group.
    fn sync_shared_link(&mut self) {
        if let Link::Shared { db, proto, .. } = self.link
            && (db != self.db || proto != self.proto)
        {
            self.link = Link::Shared {
                link: self.ctx.backend.shared(self.db, self.proto, self.id),
                db: self.db,
                proto: self.proto,
            };
        }
    }

    fn push_plan(&mut self, plan: Plan, frames: usize) {
        self.awaiting += frames;
        if matches!(plan, Plan::Local(_)) {
            self.local_pending += 1;
        }
        if let (Plan::Forward(n), Some(Plan::Forward(m))) = (&plan, self.plans.back_mut()) {
            *m += n;
        } else {
            self.plans.push_back(plan);
        }
        self.drain_ready();
    }

    /// Hand the batched requests to the shared link.
    async fn flush_shared(&mut self) {
        if !self.shared_tail.is_empty() {
            // The whole buffer goes: a waiting session holds no spare room.
            self.shared_batch.push(std::mem::take(&mut self.shared_tail).freeze());
        }
        if self.shared_batch.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.shared_batch);
        let frames = std::mem::take(&mut self.shared_frames);
        match &self.link {
            Link::Shared { link, .. } => {
                link.send(SharedRequest { data, frames, reply: self.reply_tx.clone() }).await;
            }
            // The link changes only once nothing is in flight (and pinning
            // flushes first), so this is never expected; fail rather than hang.
            _ if frames > 0 => self.on_link_event(LinkEvent::Failed { frames, error: BackendError::Lost }),
            _ => {}
        }
    }

    /// Queue request bytes expecting `frames` replies; they are written by
    /// the next flush (at the latest, when the session waits for anything).
    async fn send(&mut self, data: Bytes, frames: u32) {
        match &mut self.link {
            Link::Shared { .. } => {
                if !self.shared_tail.is_empty() {
                    self.shared_batch.push(self.shared_tail.split().freeze());
                }
                self.shared_batch.push(data);
                self.shared_frames += frames;
            }
            Link::Dedicated(d) => d.out.push(data),
            Link::None => {
                // Only reachable if pinning failed; the error reply is queued.
                if frames > 0 {
                    self.on_link_event(LinkEvent::Failed { frames, error: BackendError::Lost });
                }
            }
        }
    }

    async fn flush_backend(&mut self) -> Result<(), BackendError> {
        if let Link::Dedicated(d) = &mut self.link
            && !d.out.is_empty()
        {
            d.out.write_to(&mut d.conn.wr).await.map_err(|_| BackendError::Lost)?;
        }
        Ok(())
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
        tracing::info!(error = %error, "dedicated link lost; closing the client");
        self.link = Link::None;
        self.fail_all(&error);
        self.push_plan(Plan::Close, 0);
        self.closing = true;
    }

    fn fail_all(&mut self, error: &BackendError) {
        let frame = encode::error_frame(&format!("ERR respseal: {error}"));
        while let Some(plan) = self.plans.front() {
            if matches!(plan, Plan::Local(_) | Plan::Close) {
                self.drain_ready();
                if matches!(self.plans.front(), Some(Plan::Close)) {
                    break;
                }
                continue;
            }
            self.on_reply(frame.clone());
        }
        self.awaiting = 0;
    }

    // ----- replies ----------------------------------------------------------

    fn on_link_event(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Replies { data, frames } => {
                if let Some(Plan::Forward(n)) = self.plans.front_mut()
                    && *n >= frames
                {
                    // Fast path: the whole chunk is forwarded as is.
                    *n -= frames;
                    if *n == 0 {
                        self.plans.pop_front();
                    }
                    self.awaiting -= frames as usize;
                    self.out.push(data);
                    self.drain_ready();
                    return;
                }
                let mut data = data;
                while !data.is_empty() {
                    // The link already checked these frames with its own protocol.
                    let Ok(Some(len)) = reply::frame_len(&data, Proto::Resp3) else {
                        tracing::error!("shared link handed over a partial frame");
                        break;
                    };
                    let frame = data.split_to(len);
                    self.on_reply(frame);
                }
            }
            LinkEvent::Failed { frames, error } => {
                let frame = encode::error_frame(&format!("ERR respseal: {error}"));
                for _ in 0..frames {
                    self.on_reply(frame.clone());
                }
            }
        }
    }

    /// Bytes arrived on the dedicated link.
    fn on_dedicated_data(&mut self) {
        loop {
            let Link::Dedicated(d) = &mut self.link else {
                return;
            };
            if self.raw || matches!(self.plans.front(), Some(Plan::Raw)) {
                if !self.raw {
                    self.plans.pop_front();
                    self.awaiting = self.awaiting.saturating_sub(1);
                    self.raw = true;
                }
                let all = d.conn.buf.split().freeze();
                if d.conn.buf.capacity() < READ_CHUNK / 4 {
                    d.conn.buf.reserve(READ_CHUNK);
                }
                return self.out.push(all);
            }
            // HELLO 3's own reply is already RESP3.
            let proto = if self.proto == Proto::Resp3 || matches!(self.plans.front(), Some(Plan::Hello { .. })) {
                Proto::Resp3
            } else {
                Proto::Resp2
            };
            match d.scan.scan(&d.conn.buf, proto) {
                Ok(Some(len)) => {
                    let frame = d.conn.buf.split_to(len).freeze();
                    self.on_dedicated_frame(frame);
                }
                Ok(None) => {
                    if d.conn.buf.capacity() - d.conn.buf.len() < READ_CHUNK / 4 {
                        d.conn.buf.reserve(READ_CHUNK);
                    }
                    return;
                }
                Err(e) => {
                    metrics::counter!("respseal_backend_errors_total", "kind" => "malformed_reply").increment(1);
                    tracing::error!(error = %e, "closing dedicated link");
                    return self.backend_lost(BackendError::Lost);
                }
            }
        }
    }

    fn on_dedicated_frame(&mut self, frame: Bytes) {
        if self.monitor && is_monitor_line(&frame) {
            return self.out.push(frame);
        }
        let push = reply::is_push(&frame);
        let front_is_sub = matches!(self.plans.front(), Some(Plan::Subscribe { .. }));
        // In RESP3 every pub/sub frame is a push; an array is a reply.
        let resp2_pubsub = self.proto == Proto::Resp2 && (front_is_sub || self.subs.iter().any(|s| !s.is_empty()));
        if push || resp2_pubsub {
            if let Some((name, channel)) = pubsub_head(&frame) {
                if let Some((kind, subscribe)) = confirmation(name) {
                    let set = &mut self.subs[kind as usize];
                    let before = set.len() as u32;
                    if let Some(ch) = channel {
                        if subscribe {
                            set.insert(ch);
                        } else {
                            set.remove(&ch);
                        }
                    }
                    if let Some(Plan::Subscribe { kind: k, subscribe: s, remaining }) = self.plans.front_mut()
                        && *k == kind
                        && *s == subscribe
                    {
                        let r = match remaining {
                            Some(r) => r,
                            None => {
                                // UNSUBSCRIBE without arguments: one confirmation per
                                // subscription held when Redis ran it (our view is
                                // exact: earlier confirmations are all processed).
                                let n = before.max(1);
                                self.awaiting += n as usize - 1;
                                remaining.insert(n)
                            }
                        };
                        *r -= 1;
                        let done = *r == 0;
                        self.awaiting -= 1;
                        if done {
                            self.plans.pop_front();
                        }
                        self.out.push(frame);
                        return self.drain_ready();
                    }
                    return self.out.push(frame);
                }
                if is_message(name) {
                    return self.out.push(frame);
                }
            }
            if push {
                return self.out.push(frame);
            }
        }
        self.on_reply(frame);
    }

    /// A regular reply: match it to the plan at the front.
    fn on_reply(&mut self, frame: Bytes) {
        let is_error = frame.first() == Some(&b'-') || frame.first() == Some(&b'!');
        let Some(plan) = self.plans.front_mut() else {
            // Only on a dedicated link (a shared link routes by count): pass
            // it on rather than lose anything Redis said.
            tracing::debug!("reply from Redis with no command waiting; forwarded");
            return self.out.push(frame);
        };
        let mut pop = true;
        match plan {
            Plan::Forward(n) => {
                *n -= 1;
                pop = *n == 0;
                self.out.push(frame);
            }
            Plan::Drop(n) => {
                *n -= 1;
                pop = *n == 0;
            }
            Plan::Select { db, restore, first_done } => {
                if !*first_done {
                    if &frame[..] == b"+OK\r\n" {
                        self.db = *db;
                    }
                    *first_done = true;
                    pop = !*restore;
                    self.out.push(frame);
                }
            }
            Plan::Hello { proto } => {
                if !is_error && let Some(p) = proto {
                    self.proto = *p;
                }
                self.out.push(frame);
            }
            Plan::Reset => {
                if &frame[..] == b"+RESET\r\n" {
                    self.reset_state();
                }
                self.out.push(frame);
            }
            Plan::Monitor => {
                if &frame[..] == b"+OK\r\n" {
                    self.monitor = true;
                }
                self.out.push(frame);
            }
            Plan::Open(open) => match &self.ctx.sealer {
                Some(sealer) => sealer.open_reply(open, frame, self.proto, &mut self.reseal, &mut self.out),
                None => self.out.push(frame),
            },
            Plan::Queued(open) => {
                if &frame[..] == b"+QUEUED\r\n" {
                    self.exec_queue.push(open.take());
                }
                self.out.push(frame);
            }
            Plan::ExecAbort => {
                // Redis's reply to our DISCARD is not the client's.
                self.exec_queue.clear();
                self.out.push(Error::from(Refusal::ExecAbort).rescue());
            }
            Plan::Exec => {
                let queue = std::mem::take(&mut self.exec_queue);
                match (&self.ctx.sealer, crate::seal::split_array(&frame)) {
                    (Some(sealer), Some(elements))
                        if elements.len() == queue.len() && queue.iter().any(Option::is_some) =>
                    {
                        self.out.array_header(elements.len());
                        for (el, open) in elements.into_iter().zip(&queue) {
                            match open {
                                Some(open) => sealer.open_reply(open, el, self.proto, &mut self.reseal, &mut self.out),
                                None => self.out.push(el),
                            }
                        }
                    }
                    _ => self.out.push(frame),
                }
            }
            Plan::Subscribe { remaining, .. } => {
                // A plain reply to a (un)subscribe command: an error.
                let expected = remaining.unwrap_or(1) as usize;
                self.awaiting = self.awaiting.saturating_sub(expected - 1);
                self.out.push(frame);
            }
            Plan::Raw => {
                // Only reached when failing in-flight commands.
                self.out.push(frame);
            }
            Plan::Local(_) | Plan::Close => {
                unreachable!("local plans are drained as soon as they reach the front")
            }
        }
        self.awaiting = self.awaiting.saturating_sub(1);
        if pop {
            self.plans.pop_front();
        }
        self.drain_ready();
    }

    /// Write out proxy-made replies that reached the front of the FIFO.
    fn drain_ready(&mut self) {
        while let Some(plan) = self.plans.front() {
            match plan {
                Plan::Local(_) => {
                    if let Some(Plan::Local(b)) = self.plans.pop_front() {
                        self.local_pending -= 1;
                        self.out.push(b);
                    }
                }
                Plan::Close => {
                    self.plans.clear();
                    self.local_pending = 0;
                    self.closing = true;
                    return;
                }
                _ => return,
            }
        }
    }

    fn reset_state(&mut self) {
        self.proto = Proto::Resp2;
        self.db = self.ctx.backend.default_db();
        self.lib_name = None;
        self.lib_ver = None;
        self.subs = Default::default();
        self.monitor = false;
        self.reply_mode = ReplyMode::On;
        self.in_multi = false;
        self.multi_aborted = false;
        self.exec_queue.clear();
        self.authenticated = !self.ctx.users.required();
    }
}

impl<R, W> Drop for Session<R, W> {
    fn drop(&mut self) {
        self.ctx.budget.give(self.charged);
    }
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
        _ => Err(Error::Crypto("no_sealer")),
    }
}

async fn read_dedicated(link: &mut Link) -> std::io::Result<usize> {
    match link {
        Link::Dedicated(d) => d.conn.rd.read_buf(&mut d.conn.buf).await,
        _ => std::future::pending().await,
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// A MONITOR line: `+1700000000.123456 [0 127.0.0.1:5000] "cmd" …`.
fn is_monitor_line(frame: &[u8]) -> bool {
    frame.len() > 2 && frame[0] == b'+' && frame[1].is_ascii_digit() && frame.windows(2).any(|w| w == b" [")
}

/// For an array or push frame whose first element is a string: that string
/// and the second element (if a string).
fn pubsub_head(frame: &Bytes) -> Option<(&[u8], Option<Bytes>)> {
    if !matches!(frame.first(), Some(b'*' | b'>')) {
        return None;
    }
    let (name, pos) = string_at(frame, header_end(frame, 0)?)?;
    let channel = string_at(frame, pos).map(|(c, _)| frame.slice_ref(c));
    Some((name, channel))
}

fn header_end(frame: &[u8], pos: usize) -> Option<usize> {
    let cr = frame.get(pos..)?.iter().position(|&b| b == b'\r')?;
    Some(pos + cr + 2)
}

/// A bulk or simple string at `pos`, and the position after it.
fn string_at(frame: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let end = header_end(frame, pos)?;
    match frame.get(pos)? {
        b'+' => Some((&frame[pos + 1..end - 2], end)),
        b'$' => {
            let len = usize::try_from(parse_int(&frame[pos + 1..end - 2])?).ok()?;
            let data = frame.get(end..end + len)?;
            Some((data, end + len + 2))
        }
        _ => None,
    }
}

fn confirmation(name: &[u8]) -> Option<(SubKind, bool)> {
    Some(match name {
        b"subscribe" => (SubKind::Channel, true),
        b"unsubscribe" => (SubKind::Channel, false),
        b"psubscribe" => (SubKind::Pattern, true),
        b"punsubscribe" => (SubKind::Pattern, false),
        b"ssubscribe" => (SubKind::Shard, true),
        b"sunsubscribe" => (SubKind::Shard, false),
        _ => return None,
    })
}

fn is_message(name: &[u8]) -> bool {
    matches!(name, b"message" | b"pmessage" | b"smessage")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_pubsub_frames() {
        let f = Bytes::from_static(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        let (name, ch) = pubsub_head(&f).expect("pubsub frame");
        assert_eq!(name, b"message");
        assert_eq!(ch.as_deref(), Some(&b"ch"[..]));
        let f = Bytes::from_static(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        let (name, ch) = pubsub_head(&f).expect("push frame");
        assert_eq!(name, b"unsubscribe");
        assert_eq!(ch, None);
        assert!(pubsub_head(&Bytes::from_static(b"+OK\r\n")).is_none());
        assert!(pubsub_head(&Bytes::from_static(b"*1\r\n:1\r\n")).is_none());
    }

    #[test]
    fn recognises_monitor_lines() {
        assert!(is_monitor_line(b"+1700000000.123456 [0 127.0.0.1:5000] \"ping\"\r\n"));
        assert!(!is_monitor_line(b"+OK\r\n"));
    }
}
