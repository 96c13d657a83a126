//! Client input: every complete request in the read buffer is parsed,
//! classified with the command table and the sealing rules, and either
//! joins a run forwarded as the client's own bytes, or is handled alone
//! (sealed, refused, pinned, answered locally), always leaving a reply plan.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::replies::{ClientReply, ReplyMode};
use super::{Deferred, Link, Retry, Session, reencode_sealed};
use crate::commands::table::{End, State};
use crate::commands::{self, Args, Class, ClientSub, Command, Route, own};
use crate::error::Refusal;
use crate::plan::Plan;
use crate::protocol::encode;
use crate::protocol::request::{self, Limits, Parsed};
use crate::sealing::Inspect;
use crate::stats::{self, Family};

/// Argument ranges a session keeps allocated between reads.
const ARGS_KEPT: usize = 1024;

/// Where a command goes on a pinned session behind Redis Cluster.
enum Place {
    /// The dedicated link's node.
    Here,
    /// Another node, and the connection's state is tied to this one.
    Refuse,
    /// Another node, once the replies in flight are in.
    Wait,
    /// Another node, now: the session moves to the master of this slot.
    Move(Option<u16>),
    /// Back to the shared links, now.
    Shared,
}

impl<R, W> Session<R, W>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // ----- client input -------------------------------------------------

    /// Handle every complete request in the read buffer.
    pub(super) async fn process_input(&mut self) {
        let mut run_len = 0usize;
        let mut run_frames = 0u32;
        let mut limits = self.ctx.limits;
        let at = stats::now_us();
        loop {
            if self.replies.closing
                || self.stalled
                || self.replies.inflight() + run_frames as usize >= self.ctx.max_inflight
            {
                break;
            }
            if self.rbuf.len() - run_len < self.need {
                break;
            }
            // Before AUTH, Redis's own pre-auth limits (checked per request:
            // an AUTH earlier in this read lifts them for what follows).
            limits.unauthenticated = !self.authenticated;
            let parsed = request::parse_resumable(&self.rbuf[run_len..], &limits, &mut self.args, &mut self.resume);
            // Argument bookkeeping counts against the budget too (16 bytes
            // of ranges per argument), before the request goes anywhere.
            if self.args.capacity() > ARGS_KEPT && !self.charge_rbuf() {
                self.flush_run(&mut run_len, &mut run_frames).await;
                self.refuse(Refusal::BufferBudget.into());
                self.replies.push(Plan::Close, 0);
                self.replies.closing = true;
                break;
            }
            match parsed {
                Err(e) => {
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    self.replies.current = (Family::Other, at);
                    self.protocol_error(e);
                    break;
                }
                Ok(Parsed::Incomplete { need }) => {
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    self.need = need;
                    break;
                }
                Ok(Parsed::Empty { len }) => {
                    // Redis would ignore these bytes too, but only bytes
                    // respseal parsed as whole commands reach a link.
                    self.need = 0;
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    self.rbuf.advance(len);
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
                        let route = if !self.authenticated && !commands::allowed_before_auth(cmd) {
                            Route::NoAuth
                        } else if self.ctx.dedicated_mode && matches!(self.link, Link::None) {
                            match commands::classify_command(cmd, &args) {
                                Route::Forward | Route::Code => Route::Pin,
                                other => other,
                            }
                        } else {
                            commands::classify_command(cmd, &args)
                        };
                        let sealing = match (&self.cur.sealer, route) {
                            (Some(sealer), Route::Forward | Route::Pin | Route::Code) => sealer.inspect(cmd, &args),
                            _ => Inspect::Untouched,
                        };
                        (route, sealing, cmd)
                    };
                    let route = if matches!(sealing, Inspect::Move) { Route::Move } else { route };
                    let untouched = matches!(sealing, Inspect::Untouched);
                    let family = Family::of(cmd);
                    if untouched && route == Route::Forward && inline.is_none() && self.plain_forward_ok() {
                        run_len += len;
                        run_frames += 1;
                        self.replies.tag(family, at);
                        continue;
                    }
                    self.replies.current = (family, at);
                    self.flush_run(&mut run_len, &mut run_frames).await;
                    // The request now starts at rbuf[0] (or is `inline`), where
                    // `self.args` points.
                    let mut sealed = None;
                    match sealing {
                        Inspect::Untouched | Inspect::Move => {}
                        Inspect::Refuse(why) => {
                            self.rbuf.advance(len);
                            self.refuse(why.into());
                            continue;
                        }
                        Inspect::Forward { seal, names, open } => {
                            // Sealing adds OVERHEAD bytes: a value near Redis's
                            // limit would make Redis close the link.
                            if seal && self.args.iter().any(|r| r.len() + crate::crypto::OVERHEAD > limits.max_bulk) {
                                self.rbuf.advance(len);
                                self.refuse(Refusal::TooLargeToSeal.into());
                                continue;
                            }
                            if route == Route::Forward && self.batches_sealed(cmd) {
                                self.queue_sealed(len, inline.as_ref(), cmd, seal || names, open);
                                continue;
                            }
                            if seal || names {
                                let src: &[u8] = inline.as_deref().unwrap_or(&self.rbuf[..len]);
                                let mut f = BytesMut::new();
                                if let Err(e) = reencode_sealed(
                                    self.cur.sealer.as_deref(),
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
                        let _ = request::parse(&f, &Limits::NONE, &mut self.args);
                        frame = f;
                    }
                    let args = std::mem::take(&mut self.args);
                    self.handle(frame, &args, route, cmd).await;
                    self.args = args;
                }
            }
        }
        self.flush_run(&mut run_len, &mut run_frames).await;
        // The ranges of a request of many arguments are given back once it
        // is handled (not those of one still arriving).
        if self.args.capacity() > ARGS_KEPT && self.resume.is_none() {
            self.args = Vec::new();
            self.charge_rbuf();
        }
    }

    /// Handle one request that is not a plain forward.
    /// `cmd` is the request's row in the command table, already looked up.
    pub(super) async fn handle(
        &mut self,
        frame: Bytes,
        ranges: &[Range<usize>],
        route: Route,
        cmd: Option<&'static Command>,
    ) {
        let args = Args::new(&frame, ranges);
        if self.lent.is_some() {
            match route {
                // Connection-neutral, or refused here: on the lent link.
                Route::Forward | Route::Mask | Route::Code | Route::NoAuth | Route::Refuse(_) => {}
                // Connection state: the lent connection becomes the
                // session's own (it is in the session's state).
                Route::Pin => self.keep_lent().await,
                // The proxy's own (SELECT, HELLO, RESET …) and the
                // connections of their own: after the lent link is back.
                Route::Local(_) | Route::Control | Route::Move => {
                    if !self.replies.is_empty() {
                        return self.defer(frame, ranges, route, cmd);
                    }
                    self.give_back();
                }
            }
        }
        let route = if self.ctx.backend.is_cluster() {
            // Behind a cluster a script pins to its slot's master until the
            // next command that needs no pin (`cluster_place`).
            let route = if route == Route::Code { Route::Pin } else { route };
            match Box::pin(self.cluster_route(&frame, ranges, route, cmd)).await {
                Some(route) => route,
                None => return,
            }
        } else {
            route
        };
        match route {
            Route::NoAuth => self.refuse(Refusal::NoAuth.into()),
            Route::Refuse(why) => self.refuse(Refusal::NotForwarded(why).into()),
            Route::Control => {
                if !self.replies.is_empty() {
                    return self.defer(frame, ranges, route, cmd);
                }
                match Box::pin(self.ctx.backend.oneshot(&frame)).await {
                    Ok(reply) => self.replies.push(Plan::Local(reply), 0),
                    Err(e) => self.refuse(e.into()),
                }
            }
            Route::Forward => self.forward_one(frame.clone(), &args, cmd).await,
            Route::Code => {
                if matches!(self.link, Link::Shared { .. }) {
                    if !self.replies.is_empty() {
                        return self.defer(frame, ranges, route, cmd);
                    }
                    if !self.borrow().await {
                        return;
                    }
                }
                self.forward_one(frame.clone(), &args, cmd).await;
            }
            Route::Mask if self.txn.in_multi() => self.refuse(
                Refusal::NotForwarded("CONFIG GET cannot be queued inside MULTI (respseal masks its reply)").into(),
            ),
            Route::Mask => self.forward_one(frame.clone(), &args, cmd).await,
            Route::Move if self.txn.in_multi() => self.refuse(Refusal::MoveInMulti.into()),
            Route::Move => {
                if !self.replies.is_empty() {
                    return self.defer(frame, ranges, route, cmd);
                }
                // Placed by the names Redis stores (pseudonyms, if any).
                let stored = |i: usize| {
                    let name = args.get(i).unwrap_or_default();
                    self.cur.sealer.as_deref().and_then(|s| s.stored_name(name)).unwrap_or_else(|| name.to_vec())
                };
                let (src, dst) = (stored(1), stored(2));
                let settings = self.ctx.backend.settings_for_key(&src);
                let reply = match (self.cur.sealer.as_deref(), settings) {
                    _ if !self.ctx.backend.same_slot(&src, &dst) => {
                        crate::error::Error::from(Refusal::CrossSlot).rescue()
                    }
                    (Some(sealer), Ok(settings)) if let Some(cmd) = cmd => {
                        Box::pin(crate::sealing::moves::run(&settings, self.replies.db, sealer, cmd, &args)).await
                    }
                    (Some(_), Err(e)) => crate::error::Error::from(e).rescue(),
                    (Some(_), Ok(_)) => crate::error::Error::from(Refusal::NotForwarded("unknown command")).rescue(),
                    (None, _) => crate::error::Error::from(Refusal::NotForwarded("no sealer")).rescue(),
                };
                self.replies.push(Plan::Local(reply), 0);
            }
            Route::Pin => {
                if !matches!(self.link, Link::Dedicated(_)) {
                    if !self.replies.is_empty() {
                        return self.defer(frame, ranges, route, cmd);
                    }
                    if !self.pin(crate::backend::route::slot_of(&args)).await {
                        return;
                    }
                }
                self.forward_one(frame.clone(), &args, cmd).await;
            }
            Route::Local(cmd) => Box::pin(self.local(cmd, frame.clone(), ranges)).await,
        }
    }

    pub(super) fn defer(&mut self, frame: Bytes, ranges: &[Range<usize>], route: Route, cmd: Option<&'static Command>) {
        self.stalled = true;
        self.deferred = Some(Deferred { frame, args: ranges.to_vec(), route, cmd });
    }

    /// Forward one request on the current link with the plan its class needs.
    pub(super) async fn forward_one(&mut self, frame: Bytes, args: &Args<'_>, cmd: Option<&'static Command>) {
        if matches!(self.link, Link::None) && !self.pin(crate::backend::route::slot_of(args)).await {
            return;
        }
        let dedicated = matches!(self.link, Link::Dedicated(_));
        let class = cmd.map(|c| c.class);
        // Blocking commands may wait as long as they like: no command
        // timeout while one is in flight (XREAD … BLOCK included).
        // Nor while code runs: a script may run as long as it likes (other
        // clients get BUSY from Redis meanwhile; SCRIPT KILL ends it).
        let code = class.is_some_and(|c| crate::commands::table::resolve(c, args.get(1)) == Class::Code);
        let blocking = code
            || match class {
                Some(Class::Stateful(State::Blocking)) => true,
                Some(Class::PinIf(word)) => args.has_word(word),
                _ => false,
            };
        if blocking && !self.txn.in_multi() {
            self.blocking_sent = true;
        }
        if code {
            self.code_started();
        }
        // Behind a cluster, a blocking command alone in flight follows its
        // slot if it moves while the command waits.
        if dedicated {
            let alone = blocking && !self.txn.in_multi() && self.replies.awaiting == 0;
            self.retry = (alone && self.ctx.backend.is_cluster())
                .then(|| Box::new(Retry { frame: frame.clone(), moved_to: None, redirects: 0 }));
        }
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
            Some(Class::Ends(End::Exec)) if self.txn.in_multi() && self.txn.aborted() => {
                // A command was refused while queueing: Redis discards such
                // a transaction, and so does respseal.
                self.txn.end();
                self.replies.push(Plan::ExecAbort, 1);
                return self.send(encode::command(&[own::DISCARD]), 1).await;
            }
            Some(Class::Ends(end)) if self.txn.in_multi() => {
                self.txn.end();
                (if end == End::Exec { Plan::Exec } else { Plan::Discard }, 1)
            }
            _ if self.txn.in_multi() => (Plan::Queued(self.next_open.take()), 1),
            Some(Class::Stateful(State::Watch)) if dedicated => {
                self.txn.watch();
                (Plan::Forward(1), 1)
            }
            Some(Class::Stateful(State::Transaction)) if dedicated => {
                self.txn.begin();
                (Plan::Forward(1), 1)
            }
            _ if self.next_open.is_some() => (Plan::Open(self.next_open.take().expect("checked is_some")), 1),
            // CONFIG GET: respseal's own credentials are masked in the reply.
            Some(c @ Class::Sub(_)) if crate::commands::table::resolve(c, args.get(1)) == Class::Secrets => {
                (Plan::MaskSecrets, 1)
            }
            Some(Class::Client) if dedicated && commands::client_sub(args) == ClientSub::Reply => {
                // Redis sends no reply to CLIENT REPLY OFF/SKIP, nor to the
                // command after SKIP.
                match self.replies.client_reply(args.get(2)) {
                    ClientReply::Silent => return self.send(frame, 0).await,
                    ClientReply::Answered => (Plan::Forward(1), 1),
                }
            }
            _ => (Plan::Forward(1), 1),
        };
        let frames = self.replies.sent(plan, frames);
        self.send(frame, frames).await;
    }

    /// Send the accumulated run of plain requests.
    pub(super) async fn flush_run(&mut self, run_len: &mut usize, run_frames: &mut u32) {
        if *run_len == 0 {
            return;
        }
        let data = self.rbuf.split_to(*run_len).freeze();
        let frames = *run_frames;
        *run_len = 0;
        *run_frames = 0;
        if frames > 0 {
            // Tagged as they were parsed.
            self.replies.push_untagged(Plan::Forward(frames), frames as usize);
        }
        self.send(data, frames).await;
    }

    /// Whether a plain command can join a run forwarded as-is.
    pub(super) fn plain_forward_ok(&self) -> bool {
        match &self.link {
            Link::Shared { .. } => !self.txn.held(),
            // Behind a cluster each command is placed on its node first.
            Link::Dedicated(_) => {
                self.replies.reply_mode() == ReplyMode::On
                    && !self.txn.in_multi()
                    && !self.raw
                    && !self.ctx.backend.is_cluster()
            }
            Link::None => false,
        }
    }

    /// Behind Redis Cluster: answer the cluster-only commands, hold MULTI
    /// until the transaction's first command names its node, and put the
    /// session on the node of the command's key. The route to take on, or
    /// `None` when the request was answered, refused or deferred.
    async fn cluster_route(
        &mut self,
        frame: &Bytes,
        ranges: &[Range<usize>],
        route: Route,
        cmd: Option<&'static Command>,
    ) -> Option<Route> {
        let args = Args::new(frame, ranges);
        if !matches!(route, Route::Forward | Route::Pin | Route::Control) {
            return Some(route);
        }
        if let Some(e) = crate::backend::route::answered_here(&args) {
            self.replies.push(Plan::Local(e.rescue()), 0);
            return None;
        }
        let class = cmd.map(|c| c.class);
        if class == Some(Class::Stateful(State::Transaction)) && !self.txn.in_multi() {
            // Which node the transaction runs on is known at its first
            // command: MULTI is answered here and sent before that one.
            self.txn.hold();
            self.replies.push(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0);
            return None;
        }
        if self.txn.held()
            && let Some(Class::Ends(end)) = class
        {
            // An empty transaction, never sent.
            let aborted = self.txn.end();
            let reply = match (end == End::Exec, aborted) {
                (true, true) => crate::error::Error::from(Refusal::ExecAbort).rescue(),
                (true, false) => Bytes::from_static(b"*0\r\n"),
                (false, _) => Bytes::from_static(b"+OK\r\n"),
            };
            self.replies.push(Plan::Local(reply), 0);
            return None;
        }
        let route = if self.txn.held() { Route::Pin } else { route };
        if matches!(self.link, Link::Dedicated(_)) {
            match self.cluster_place(&args, route) {
                Place::Here => {}
                Place::Refuse => {
                    self.refuse(Refusal::CrossSlot.into());
                    return None;
                }
                Place::Wait => {
                    self.defer(frame.clone(), ranges, route, cmd);
                    return None;
                }
                Place::Move(slot) => {
                    self.drop_dedicated();
                    if !self.pin(slot).await {
                        return None;
                    }
                }
                Place::Shared => {
                    self.drop_dedicated();
                    self.link = self.shared_link();
                }
            }
        } else if self.txn.held() {
            if !self.replies.is_empty() {
                self.defer(frame.clone(), ranges, route, cmd);
                return None;
            }
            if !self.pin(crate::backend::route::slot_of(&args)).await {
                return None;
            }
        }
        if self.txn.held() {
            self.txn.release();
            self.replies.push(Plan::Drop(1), 1);
            self.send(encode::command(&[own::MULTI]), 1).await;
        }
        Some(route)
    }

    /// Behind Redis Cluster, whether a command can go on the dedicated
    /// link's node.
    ///
    /// A session whose connection holds no state that lasts (no MULTI,
    /// WATCH, subscription, MONITOR, CLIENT REPLY mode) goes back to the
    /// shared links for a command that needs no pin: with keys on every
    /// node, staying pinned would reconnect at each change of node.
    fn cluster_place(&self, args: &Args<'_>, route: Route) -> Place {
        if !self.ctx.backend.is_cluster() {
            return Place::Here;
        }
        // A MULTI not sent yet ties the connection to no node.
        let locked = self.txn.ties_connection()
            || self.replies.subscribed()
            || self.replies.monitor
            || self.raw
            || self.replies.reply_mode() != ReplyMode::On;
        let slot = crate::backend::route::slot_of(args);
        let here = match self.ctx.backend.master_of(slot) {
            None => true,
            Some(m) => self.node.as_deref() == Some(m.as_str()),
        };
        match (route, here) {
            // A held MULTI needs a dedicated link (its route is Pin).
            (Route::Forward, _) if !locked && self.replies.is_empty() => Place::Shared,
            (_, true) => Place::Here,
            _ if locked => Place::Refuse,
            _ if !self.replies.is_empty() => Place::Wait,
            (Route::Forward, false) => Place::Shared,
            _ => Place::Move(slot),
        }
    }

    /// Whether a request with a sealed key can be queued by
    /// [`Session::queue_sealed`]: on a shared link, which plain replies only.
    pub(super) fn batches_sealed(&self, cmd: Option<&'static Command>) -> bool {
        matches!(self.link, Link::Shared { .. })
            && self.replies.reply_mode() == ReplyMode::On
            && !self.txn.in_multi()
            && !self.raw
            && !matches!(cmd.map(|c| c.class), Some(Class::Stateful(_) | Class::Client))
    }
}
