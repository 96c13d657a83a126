//! The connection commands respseal answers or rewrites itself: `AUTH`
//! (slowed after repeated failures), `HELLO` (its `AUTH` checked here, the
//! protocol part forwarded), `SELECT`, `CLIENT SETINFO`, `QUIT`, `RESET`,
//! and the write-back of re-sealed legacy values.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::replies::ReplyMode;
use super::{Link, Session};
use crate::auth::AuthOutcome;
use crate::backend::SharedRequest;
use crate::commands::{self, Args, LocalCmd, Route, own};
use crate::error::{ClientError, Refusal};
use crate::plan::Plan;
use crate::protocol::{Proto, encode, parse_int};

impl<R, W> Session<R, W>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    /// Connection commands the proxy handles.
    pub(super) async fn local(&mut self, cmd: LocalCmd, frame: Bytes, ranges: &[Range<usize>]) {
        let args = Args::new(&frame, ranges);
        if self.txn.in_multi() {
            let name = match cmd {
                // Queued like any command; it takes effect at EXEC.
                LocalCmd::Select => None,
                LocalCmd::Hello | LocalCmd::Auth | LocalCmd::ClientSetinfo => Some(cmd.name()),
                // Redis runs QUIT and RESET at once, even inside MULTI.
                LocalCmd::Quit | LocalCmd::Reset => None,
            };
            if let Some(name) = name {
                return self.refuse(Refusal::ConnectionInMulti(name).into());
            }
        }
        match cmd {
            LocalCmd::Quit if matches!(self.link, Link::Dedicated(_)) => {
                // Redis closes its side of the dedicated link before the
                // client reads `+OK` (as with Redis itself, the connection
                // is gone when QUIT is answered): QUIT goes to Redis, whose
                // `+OK` is forwarded.
                let frames = self.replies.sent(Plan::Forward(1), 1);
                self.send(frame, frames).await;
                self.replies.push(Plan::Close, 0);
                self.replies.closing = true;
            }
            LocalCmd::Quit => {
                self.replies.push(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0);
                self.replies.push(Plan::Close, 0);
                self.replies.closing = true;
            }
            LocalCmd::Auth => {
                let (user, password) = match args.len() {
                    2 => (None, args.get(1).unwrap_or_default()),
                    3 => (args.get(1), args.get(2).unwrap_or_default()),
                    1 => return self.refuse(ClientError::Arity("auth".into()).into()),
                    _ => return self.refuse(ClientError::Syntax.into()),
                };
                match self.auth_attempt(user, password).await {
                    AuthOutcome::Ok => self.replies.push(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0),
                    outcome => self.refuse(Refusal::Auth { outcome, hello: false }.into()),
                }
            }
            LocalCmd::ClientSetinfo => self.client_setinfo(&args),
            LocalCmd::Select => self.select(frame.clone(), &args).await,
            LocalCmd::Hello => self.hello(frame.clone(), ranges).await,
            LocalCmd::Reset => {
                if let Link::Dedicated(_) = self.link {
                    self.replies.push(Plan::Reset, 1);
                    self.send(frame, 1).await;
                    if let Some(auth) = self.backend_auth_command() {
                        // RESET logs the connection out; log it back in.
                        self.replies.push(Plan::Drop(1), 1);
                        self.send(auth, 1).await;
                    }
                    self.stalled = true;
                } else if !self.replies.is_empty() {
                    self.defer(frame, ranges, Route::Local(cmd), None);
                } else {
                    self.reset_state();
                    self.sync_shared_link();
                    self.replies.push(Plan::Local(Bytes::from_static(b"+RESET\r\n")), 0);
                }
            }
        }
    }

    /// Check credentials, throttled per source address across connections
    /// ([`crate::auth::AuthThrottle`]): with users configured, every attempt
    /// takes its turn first (a correct password gives it back), so guessing
    /// runs at the documented rate however many connections it uses. The
    /// wait holds only this session; an attempt that would wait too long is
    /// refused unchecked.
    pub(super) async fn auth_attempt(&mut self, user: Option<&[u8]>, password: &[u8]) -> AuthOutcome {
        let throttled = self.peer.filter(|_| self.cur.users.required());
        if let Some(ip) = throttled {
            match self.ctx.auth_throttle.take(ip, std::time::Instant::now()) {
                None => {
                    metrics::counter!("respseal_auth_throttled_total").increment(1);
                    return AuthOutcome::Throttled;
                }
                Some(wait) if !wait.is_zero() => {
                    // Everything answered so far goes out before the wait.
                    let _ = self.replies.out.write_to(&mut self.wr).await;
                    tokio::time::sleep(wait).await;
                }
                Some(_) => {}
            }
        }
        let outcome = self.cur.users.check(user, password);
        if outcome == AuthOutcome::Ok {
            self.authenticated = true;
            if let Some(ip) = throttled {
                self.ctx.auth_throttle.give_back(ip);
            }
        }
        outcome
    }

    pub(super) fn client_setinfo(&mut self, args: &Args<'_>) {
        if args.len() != 4 {
            return self.refuse(ClientError::Arity("client|setinfo".into()).into());
        }
        let value = args.get(3).unwrap_or_default();
        if value.iter().any(|b| !(b'!'..=b'~').contains(b)) {
            let which = if args.is(2, "LIB-NAME") { "lib-name" } else { "lib-ver" };
            return self.refuse(ClientError::SetinfoValue(which).into());
        }
        let value = Bytes::copy_from_slice(value);
        if args.is(2, "LIB-NAME") {
            self.lib_name = Some(value);
        } else if args.is(2, "LIB-VER") {
            self.lib_ver = Some(value);
        } else {
            let opt = crate::error::shown(args.get(2).unwrap_or_default());
            return self.refuse(ClientError::SetinfoOption(opt).into());
        }
        self.replies.push(Plan::Local(Bytes::from_static(b"+OK\r\n")), 0);
    }

    pub(super) async fn select(&mut self, frame: Bytes, args: &Args<'_>) {
        let db = match (args.len(), args.get(1).and_then(parse_int)) {
            (2, Some(db)) if (0..=i64::from(u32::MAX)).contains(&db) => db as u32,
            // Redis answers malformed SELECTs with an error and no state change.
            _ => return self.forward_one(frame, args, args.get(0).and_then(commands::lookup)).await,
        };
        if self.txn.in_multi() && matches!(self.link, Link::Dedicated(_)) {
            // Redis queues it and switches the database when EXEC runs it;
            // the session follows EXEC's reply (Plan::QueuedSelect).
            let frames = self.replies.sent(Plan::QueuedSelect(db), 1);
            return self.send(frame, frames).await;
        }
        if matches!(self.link, Link::None) && !self.pin(None).await {
            return;
        }
        let restore = matches!(self.link, Link::Shared { .. });
        let data = if let Link::Shared { db: link_db, .. } = self.link {
            // Validate on the session's own link, then put the link back:
            // both in one write, so no other session's command runs between.
            let mut b = BytesMut::from(&frame[..]);
            b.extend_from_slice(&encode::command(&[own::SELECT, &link_db.to_string()]));
            b.freeze()
        } else {
            frame
        };
        let frames = if restore { 2 } else { 1 };
        self.replies.push(Plan::Select { db, restore, first_done: false }, frames);
        self.send(data, frames as u32).await;
        self.stalled = true;
    }

    pub(super) async fn hello(&mut self, frame: Bytes, ranges: &[Range<usize>]) {
        let args = Args::new(&frame, ranges);
        let requested = match args.get(1).map(parse_int) {
            None => None,
            Some(Some(2)) => Some(Proto::Resp2),
            Some(Some(3)) => Some(Proto::Resp3),
            // Answered here as Redis answers it (no state change), so that
            // nothing from a client reaches Redis before it authenticated,
            // and HELLO's AUTH arguments never do.
            Some(Some(_)) => return self.refuse(Refusal::NoProto.into()),
            Some(None) => return self.refuse(ClientError::HelloVersion.into()),
        };
        // Take AUTH out: the proxy checks it; the rest goes to Redis.
        let mut rest: Vec<&[u8]> = vec![own::HELLO.as_bytes()];
        let mut i = 1;
        while i < args.len() {
            if i >= 2 && args.is(i, commands::hello::AUTH) && i + 2 < args.len() {
                let outcome = self.auth_attempt(args.get(i + 1), args.get(i + 2).unwrap_or_default()).await;
                if outcome != AuthOutcome::Ok {
                    return self.refuse(Refusal::Auth { outcome, hello: true }.into());
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
        let setname = rest.iter().skip(2).any(|a| a.eq_ignore_ascii_case(commands::hello::SETNAME.as_bytes()));
        let data = encode::command(&rest);
        if setname && !matches!(self.link, Link::Dedicated(_)) {
            // A connection name is connection state: pin first.
            if !self.replies.is_empty() {
                return self.defer(frame.clone(), ranges, Route::Local(LocalCmd::Hello), None);
            }
            if !self.pin(None).await {
                return;
            }
        }
        match (&self.link, requested) {
            (Link::Shared { proto, .. }, Some(p)) if *proto != p => {
                if !self.replies.is_empty() {
                    return self.defer(frame.clone(), ranges, Route::Local(LocalCmd::Hello), None);
                }
                // The group of the requested protocol already speaks it, so
                // this HELLO changes nothing on the shared link.
                let mut link = self.ctx.backend.shared(self.replies.db, p, self.id);
                self.replies.push(Plan::Hello { proto: Some(p) }, 1);
                link.send(SharedRequest { data: vec![data], frames: 1, reply: self.reply_tx.clone() }).await;
            }
            (Link::None, _) => {
                if !self.pin(None).await {
                    return;
                }
                self.replies.push(Plan::Hello { proto: requested }, 1);
                self.send(data, 1).await;
            }
            _ => {
                self.replies.push(Plan::Hello { proto: requested }, 1);
                self.send(data, 1).await;
            }
        }
        self.stalled = true;
    }

    /// Write back legacy plaintext values sealed, each with a
    /// compare-and-set that keeps the TTL, so a newer value written by the
    /// application in the meantime is never overwritten.
    pub(super) async fn send_reseals(&mut self) {
        const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end return 0";
        let pending = std::mem::take(&mut self.replies.reseal);
        if self.txn.in_multi()
            || self.replies.monitor
            || self.replies.subscribed()
            || self.replies.reply_mode() != ReplyMode::On
        {
            return;
        }
        for r in pending {
            let cmd = encode::command(&[own::EVAL.as_bytes(), SCRIPT.as_bytes(), b"1", &r.key, &r.plain, &r.sealed]);
            self.replies.push(Plan::Drop(1), 1);
            self.send(cmd, 1).await;
        }
    }
}
