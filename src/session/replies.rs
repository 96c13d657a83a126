//! The reply queue: what the session owes its client, in order, with no
//! socket in sight.
//!
//! Every command sent leaves a [`Plan`] in a FIFO; every frame from Redis is
//! matched to the plan at the front (or recognised as a pub/sub message, a
//! monitor line, a RESP3 push, which are not replies) and the result lands
//! in the client's output queue. Proxy-made replies wait in the same FIFO,
//! so they reach the client in order with Redis's. The queue also holds the
//! connection state that replies change: the protocol after `HELLO`, the
//! database after `SELECT`, subscriptions, `MONITOR`, the open plans of a
//! transaction, and the `CLIENT REPLY` mode that decides which commands get
//! a reply at all. Being free of I/O, it is unit-tested below frame by frame.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{BackendError, LinkEvent};
use crate::commands::table::SubKind;
use crate::error::{Error, Refusal};
use crate::outbuf::OutBuf;
use crate::plan::Plan;
use crate::protocol::Proto;
use crate::protocol::frame::{Frame, split_frames};
use crate::sealing::{OpenPlan, Reseal, Sealer};
use crate::stats::{self, Family, Outcome};

/// A command sent to Redis whose reply has not come: what the command
/// counters need when it does.
#[derive(Debug, Clone, Copy)]
struct Tag {
    family: Family,
    /// When its request arrived ([`stats::now_us`]).
    at: u64,
}

/// `CLIENT REPLY` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Every command is answered.
    On,
    /// No command is answered.
    Off,
    /// The next command is not answered.
    SkipNext,
}

/// Whether a `CLIENT REPLY …` command itself gets a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientReply {
    /// `ON` (and anything Redis will refuse): answered.
    Answered,
    /// `OFF` and `SKIP`: Redis sends nothing.
    Silent,
}

/// The reply queue of one session.
pub struct Replies {
    /// Bytes waiting to be written to the client (bounded by the output
    /// limits and the high-water mark the session checks).
    pub out: OutBuf,
    /// One entry per command (runs of plain ones merged): bounded by
    /// `max_inflight`, which counts proxy-made replies too.
    plans: VecDeque<Plan>,
    /// Replies expected from Redis.
    pub awaiting: usize,
    /// Proxy-made replies in the FIFO not yet written: they count toward
    /// `max_inflight` like replies from Redis.
    local_pending: usize,
    /// The protocol the client speaks (changes on an accepted `HELLO`).
    pub proto: Proto,
    /// The client's database (changes on an accepted `SELECT`).
    pub db: u32,
    default_db: u32,
    /// Subscriptions by kind.
    pub subs: [HashSet<Bytes>; 3],
    /// The link streams monitor lines.
    pub monitor: bool,
    /// Open plans of the commands Redis queued in the current transaction:
    /// one small entry per queued command, as Redis keeps the command
    /// itself (whose memory Redis's own limits bound).
    exec_queue: Vec<Option<OpenPlan>>,
    /// SELECTs queued in the current transaction: (position in
    /// `exec_queue`, database).
    exec_selects: Vec<(usize, u32)>,
    reply_mode: ReplyMode,
    /// A `Close` plan reached the front: close once the output is written.
    pub closing: bool,
    /// Redis accepted `RESET`: the session resets what it holds itself.
    pub reset_seen: bool,
    /// Legacy values read that are to be re-sealed in Redis: at most one per
    /// reply, sent and emptied every loop turn.
    pub reseal: Vec<Reseal>,
    sealer: Option<Arc<Sealer>>,
    /// One per command sent to Redis and not answered yet, in order
    /// (bounded like the plans, by `max_inflight`).
    tags: VecDeque<Tag>,
    /// When the replies being handled arrived ([`stats::now_us`]).
    pub now_us: u64,
    /// The family of the command being handled, and when its request
    /// arrived: plans pushed for it are counted under it.
    pub current: (Family, u64),
    /// The replies being handled are respseal's errors for a lost backend.
    failing: bool,
}

impl Replies {
    /// An empty queue for a client on `db`, speaking RESP2.
    pub fn new(sealer: Option<Arc<Sealer>>, db: u32) -> Self {
        Replies {
            out: OutBuf::default(),
            plans: VecDeque::new(),
            awaiting: 0,
            local_pending: 0,
            proto: Proto::Resp2,
            db,
            default_db: db,
            subs: Default::default(),
            monitor: false,
            exec_queue: Vec::new(),
            exec_selects: Vec::new(),
            reply_mode: ReplyMode::On,
            closing: false,
            reset_seen: false,
            reseal: Vec::new(),
            sealer,
            tags: VecDeque::new(),
            now_us: 0,
            current: (Family::Other, 0),
            failing: false,
        }
    }

    /// A command of `family`, whose request arrived at `at`, was sent and
    /// will be answered (call after [`Replies::sent`] returned non-zero, or
    /// with the plan pushed for it).
    pub fn tag(&mut self, family: Family, at: u64) {
        self.tags.push_back(Tag { family, at });
    }

    /// The oldest tagged command got its reply.
    fn answered(&mut self, error: bool) {
        let Some(tag) = self.tags.pop_front() else { return };
        let outcome = match (self.failing, error) {
            (true, _) => Outcome::BackendError,
            (false, true) => Outcome::RedisError,
            (false, false) => Outcome::Ok,
        };
        stats::command(tag.family, outcome, Some(self.now_us.saturating_sub(tag.at)));
    }

    /// Replace the sealer (after a configuration reload).
    pub fn set_sealer(&mut self, sealer: Option<Arc<Sealer>>) {
        self.sealer = sealer;
    }

    /// Nothing owed to the client.
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Replies owed to the client: from Redis, and made by the proxy.
    pub fn inflight(&self) -> usize {
        self.awaiting + self.local_pending
    }

    /// The plan at the front.
    pub fn front(&self) -> Option<&Plan> {
        self.plans.front()
    }

    /// The front plan is SYNC/PSYNC's: from now on bytes are relayed raw.
    pub fn start_raw(&mut self) {
        self.answered(false);
        self.plans.pop_front();
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    /// Subscribed to anything.
    pub fn subscribed(&self) -> bool {
        self.subs.iter().any(|s| !s.is_empty())
    }

    /// The current `CLIENT REPLY` mode.
    pub fn reply_mode(&self) -> ReplyMode {
        self.reply_mode
    }

    /// A `CLIENT REPLY <word>` is being sent: switch modes as Redis will.
    pub fn client_reply(&mut self, word: Option<&[u8]>) -> ClientReply {
        let is = |w: &str| word.is_some_and(|a| a.eq_ignore_ascii_case(w.as_bytes()));
        if is("OFF") {
            self.reply_mode = ReplyMode::Off;
            ClientReply::Silent
        } else if is("SKIP") {
            if self.reply_mode == ReplyMode::On {
                self.reply_mode = ReplyMode::SkipNext;
            }
            ClientReply::Silent
        } else {
            if is("ON") {
                self.reply_mode = ReplyMode::On;
            }
            ClientReply::Answered
        }
    }

    /// A command with `plan` is being sent: returns how many replies Redis
    /// will send for it, after the `CLIENT REPLY` mode (subscription
    /// confirmations are sent even while replies are off). The plan is
    /// queued only if a reply comes.
    pub fn sent(&mut self, plan: Plan, frames: u32) -> u32 {
        let always_answered = matches!(plan, Plan::Subscribe { .. });
        match self.reply_mode {
            ReplyMode::On => {}
            ReplyMode::Off if !always_answered => return 0,
            ReplyMode::Off => {}
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                if !always_answered {
                    return 0;
                }
            }
        }
        self.push(plan, frames as usize);
        frames
    }

    /// Back to a new connection's state (RESET).
    pub fn reset(&mut self) {
        self.proto = Proto::Resp2;
        self.db = self.default_db;
        self.subs = Default::default();
        self.monitor = false;
        self.reply_mode = ReplyMode::On;
        self.exec_queue.clear();
        self.exec_selects.clear();
    }

    /// Queue a plan for `frames` replies from Redis (0 for proxy-made ones),
    /// for the command in [`Replies::current`]: a proxy-made reply counts
    /// it at once, a plan for Redis's reply tags it.
    pub fn push(&mut self, plan: Plan, frames: usize) {
        match &plan {
            Plan::Local(b) => {
                let outcome = if Frame::new(b, self.proto).is_error() { Outcome::Refused } else { Outcome::Ok };
                stats::command(self.current.0, outcome, None);
            }
            Plan::Drop(_) | Plan::Close => {}
            _ if frames > 0 => self.tag(self.current.0, self.current.1),
            _ => {}
        }
        self.push_untagged(plan, frames);
    }

    /// [`Replies::push`] for a run of plain commands, tagged one by one
    /// as they were parsed.
    pub fn push_untagged(&mut self, plan: Plan, frames: usize) {
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

    /// Answer every reply still expected with this error (the link is
    /// gone); proxy-made replies keep their place.
    pub fn fail_all(&mut self, error: &BackendError) {
        let frame = Error::Backend(error.clone()).rescue();
        self.failing = true;
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
        self.failing = false;
        self.awaiting = 0;
    }

    /// Replies (or failures) handed over by the shared link.
    pub fn on_link_event(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Replies { data, frames, errors } => {
                if let Some(Plan::Forward(n)) = self.plans.front_mut()
                    && *n >= frames
                    && errors == 0
                {
                    // Fast path: the whole chunk is forwarded as is.
                    *n -= frames;
                    if *n == 0 {
                        self.plans.pop_front();
                    }
                    for _ in 0..frames {
                        self.answered(false);
                    }
                    self.awaiting -= frames as usize;
                    self.out.push(data);
                    self.drain_ready();
                    return;
                }
                let (total, mut used) = (data.len(), 0);
                for frame in split_frames(data) {
                    used += frame.len();
                    self.on_reply(frame);
                }
                if used < total {
                    tracing::error!("shared link handed over a partial frame");
                }
            }
            LinkEvent::Failed { frames, error } => {
                let frame = Error::Backend(error).rescue();
                self.failing = true;
                for _ in 0..frames {
                    self.on_reply(frame.clone());
                }
                self.failing = false;
            }
        }
    }

    /// One frame from the dedicated link: a monitor line, a pub/sub message
    /// or confirmation, a RESP3 push, or a reply to match to a plan.
    pub fn on_frame(&mut self, frame: Bytes) {
        if self.monitor && is_monitor_line(&frame) {
            return self.out.push(frame);
        }
        let push = Frame::new(&frame, self.proto).is_push();
        let front_is_sub = matches!(self.plans.front(), Some(Plan::Subscribe { .. }));
        // In RESP3 every pub/sub frame is a push; an array is a reply.
        let resp2_pubsub = self.proto == Proto::Resp2 && (front_is_sub || self.subs.iter().any(|s| !s.is_empty()));
        if push || resp2_pubsub {
            if let Some((name, channel)) = Frame::new(&frame, self.proto).head() {
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
                            self.answered(false);
                            self.plans.pop_front();
                        }
                        self.out.push(frame);
                        return self.drain_ready();
                    }
                    return self.out.push(frame);
                }
                if is_message(name) {
                    return match self.sealer.as_deref().and_then(|s| s.open_message(&frame, self.proto)) {
                        None => self.out.push(frame),
                        Some(Some(opened)) => self.out.push(opened),
                        Some(None) => {}
                    };
                }
            }
            if push {
                return self.out.push(frame);
            }
        }
        self.on_reply(frame);
    }

    /// A regular reply: match it to the plan at the front.
    pub fn on_reply(&mut self, frame: Bytes) {
        let is_error = Frame::new(&frame, self.proto).is_error();
        let Some(plan) = self.plans.front_mut() else {
            // Only on a dedicated link (a shared link routes by count): pass
            // it on rather than lose anything Redis said.
            tracing::debug!("reply from Redis with no command waiting; forwarded");
            return self.out.push(frame);
        };
        let mut pop = true;
        // Whether this reply answers one of the client's commands (not a
        // reply respseal asked for itself).
        let mut answers = true;
        match plan {
            Plan::Forward(n) => {
                *n -= 1;
                pop = *n == 0;
                self.out.push(frame);
            }
            Plan::Drop(n) => {
                *n -= 1;
                pop = *n == 0;
                answers = false;
            }
            Plan::Select { db, restore, first_done } => {
                answers = !*first_done;
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
                    self.reset();
                    self.reset_seen = true;
                }
                self.out.push(frame);
            }
            Plan::Monitor => {
                if &frame[..] == b"+OK\r\n" {
                    self.monitor = true;
                }
                self.out.push(frame);
            }
            Plan::Open(open) => match &self.sealer {
                Some(sealer) => sealer.open_reply(open, frame, self.proto, &mut self.reseal, &mut self.out),
                None => self.out.push(frame),
            },
            Plan::Queued(open) => {
                if &frame[..] == b"+QUEUED\r\n" {
                    self.exec_queue.push(open.take());
                }
                self.out.push(frame);
            }
            Plan::QueuedSelect(db) => {
                if &frame[..] == b"+QUEUED\r\n" {
                    self.exec_selects.push((self.exec_queue.len(), *db));
                    self.exec_queue.push(None);
                }
                self.out.push(frame);
            }
            Plan::MaskSecrets => self.out.push(crate::secrets::mask_config(frame, self.proto)),
            Plan::Discard => {
                self.exec_queue.clear();
                self.exec_selects.clear();
                self.out.push(frame);
            }
            Plan::ExecAbort => {
                // Redis's reply to our DISCARD is not the client's.
                self.exec_queue.clear();
                self.exec_selects.clear();
                self.out.push(Error::from(Refusal::ExecAbort).rescue());
            }
            Plan::Exec => {
                let queue = std::mem::take(&mut self.exec_queue);
                let selects = std::mem::take(&mut self.exec_selects);
                let sealer = self.sealer.as_deref().filter(|_| queue.iter().any(Option::is_some));
                // Split once, and only when something needs the elements.
                let elements = (sealer.is_some() || !selects.is_empty())
                    .then(|| Frame::new(&frame, self.proto).elements())
                    .flatten()
                    .filter(|els| els.len() == queue.len());
                if let Some(elements) = &elements {
                    // Applied in order, as Redis ran them: the last one
                    // Redis accepted is the connection's database now.
                    for (i, db) in selects {
                        if &elements[i][..] == b"+OK\r\n" {
                            self.db = db;
                        }
                    }
                }
                match (sealer, elements) {
                    (None, _) => self.out.push(frame),
                    (Some(sealer), Some(elements)) => {
                        self.out.array_header(elements.len());
                        for (el, open) in elements.into_iter().zip(&queue) {
                            match open {
                                Some(open) => sealer.open_reply(open, el, self.proto, &mut self.reseal, &mut self.out),
                                None => self.out.push(el),
                            }
                        }
                    }
                    // EXECABORT, or a transaction WATCH aborted: nothing to open.
                    (Some(_), _)
                        if Frame::new(&frame, self.proto).is_error() || Frame::new(&frame, self.proto).is_null() =>
                    {
                        self.out.push(frame)
                    }
                    // An array of the wrong length, or no array: none of its
                    // elements can be matched to its plan, so none is passed on.
                    (Some(sealer), _) => {
                        let rules = queue.iter().flatten().flat_map(Sealer::plan_rules);
                        self.out.push(sealer.bad_shape(rules, queue.len(), self.proto));
                    }
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
        if answers {
            self.answered(is_error);
        }
        if pop {
            self.plans.pop_front();
        }
        self.drain_ready();
    }
}

/// A MONITOR line: `+1700000000.123456 [0 127.0.0.1:5000] "cmd" …`.
fn is_monitor_line(frame: &[u8]) -> bool {
    frame.len() > 2 && frame[0] == b'+' && frame[1].is_ascii_digit() && frame.windows(2).any(|w| w == b" [")
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
    use crate::backend::BackendError;

    #[test]
    fn recognises_monitor_lines() {
        assert!(is_monitor_line(b"+1700000000.123456 [0 127.0.0.1:5000] \"ping\"\r\n"));
        assert!(!is_monitor_line(b"+OK\r\n"));
    }

    use crate::crypto::{self, Binding, KeyMaterial, KeyState, Keyring};
    use crate::rules::{Rule, Rules};
    use crate::sealing::SealedKey;

    fn queue() -> Replies {
        Replies::new(None, 0)
    }

    fn out(r: &mut Replies) -> Vec<u8> {
        let mut v = Vec::new();
        for part in r.out.take_all() {
            v.extend_from_slice(&part);
        }
        v
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn replies_and_local_replies_leave_in_command_order() {
        let mut r = queue();
        r.push(Plan::Forward(2), 2);
        r.push(Plan::Local(b(b"-ERR refused\r\n")), 0);
        r.push(Plan::Forward(1), 1);
        assert_eq!(r.inflight(), 4, "local replies count toward the in-flight bound");
        r.on_reply(b(b"+A\r\n"));
        assert_eq!(out(&mut r), b"+A\r\n", "the local reply waits for the one before it");
        r.on_reply(b(b"+B\r\n"));
        assert_eq!(out(&mut r), b"+B\r\n-ERR refused\r\n");
        assert_eq!(r.inflight(), 1);
        r.on_reply(b(b"+C\r\n"));
        assert_eq!(out(&mut r), b"+C\r\n");
        assert!(r.is_empty());
        assert_eq!(r.inflight(), 0);
    }

    #[test]
    fn close_waits_for_what_is_owed_before_it() {
        let mut r = queue();
        r.push(Plan::Forward(1), 1);
        r.push(Plan::Local(b(b"+OK\r\n")), 0);
        r.push(Plan::Close, 0);
        assert!(!r.closing);
        r.on_reply(b(b":1\r\n"));
        assert_eq!(out(&mut r), b":1\r\n+OK\r\n");
        assert!(r.closing);
    }

    #[test]
    fn a_failed_link_answers_every_reply_still_owed() {
        let mut r = queue();
        r.push(Plan::Forward(2), 2);
        r.push(Plan::Local(b(b"+LOCAL\r\n")), 0);
        r.push(Plan::Drop(1), 1);
        r.push(Plan::Forward(1), 1);
        r.fail_all(&BackendError::Lost);
        let e = b"-ERR respseal: backend connection lost\r\n";
        let mut want = Vec::new();
        want.extend_from_slice(e);
        want.extend_from_slice(e);
        want.extend_from_slice(b"+LOCAL\r\n");
        want.extend_from_slice(e);
        assert_eq!(out(&mut r), want, "dropped replies stay dropped");
        assert_eq!(r.inflight(), 0);
    }

    #[test]
    fn select_and_hello_change_state_only_when_redis_accepts() {
        let mut r = queue();
        r.push(Plan::Select { db: 3, restore: true, first_done: false }, 2);
        r.on_reply(b(b"+OK\r\n"));
        assert_eq!(r.db, 3);
        r.on_reply(b(b"+OK\r\n"));
        assert_eq!(out(&mut r), b"+OK\r\n", "the restoring SELECT's reply is not the client's");
        r.push(Plan::Select { db: 99, restore: false, first_done: false }, 1);
        r.on_reply(b(b"-ERR DB index is out of range\r\n"));
        assert_eq!(r.db, 3);
        r.push(Plan::Hello { proto: Some(Proto::Resp3) }, 1);
        r.on_reply(b(b"-NOPROTO x\r\n"));
        assert_eq!(r.proto, Proto::Resp2);
        r.push(Plan::Hello { proto: Some(Proto::Resp3) }, 1);
        r.on_reply(b(b"%1\r\n+proto\r\n:3\r\n"));
        assert_eq!(r.proto, Proto::Resp3);
        r.push(Plan::Reset, 1);
        r.on_reply(b(b"+RESET\r\n"));
        assert!(r.reset_seen);
        assert_eq!((r.proto, r.db), (Proto::Resp2, 0));
    }

    fn sealing() -> (Arc<Sealer>, Keyring) {
        let mut ring = Keyring::new();
        ring.insert(7, KeyState::Primary, Some(KeyMaterial::from_bytes([7; 32]))).expect("key");
        let mut ring2 = Keyring::new();
        ring2.insert(7, KeyState::Primary, Some(KeyMaterial::from_bytes([7; 32]))).expect("key");
        (Arc::new(Sealer::new(Rules::new(vec![Rule::new("sess:*")]), ring, b"ns".to_vec())), ring2)
    }

    fn bulk(data: &[u8]) -> Bytes {
        let mut v = format!("${}\r\n", data.len()).into_bytes();
        v.extend_from_slice(data);
        v.extend_from_slice(b"\r\n");
        v.into()
    }

    #[test]
    fn exec_opens_each_queued_element_with_its_own_plan() {
        let (sealer, ring) = sealing();
        let mut r = Replies::new(Some(sealer), 0);
        let sealed = crypto::seal(&ring, &Binding::string(b"ns", b"sess:a"), b"secret", 0).expect("seal");
        r.push(Plan::Forward(1), 1); // MULTI
        r.push(Plan::Queued(None), 1); // SET plain 1
        r.push(Plan::Queued(Some(OpenPlan::Value(SealedKey { rule: 0, key: b(b"sess:a") }))), 1); // GET sess:a
        r.push(Plan::Exec, 1);
        for f in [b(b"+OK\r\n"), b(b"+QUEUED\r\n"), b(b"+QUEUED\r\n")] {
            r.on_reply(f);
        }
        let mut exec = b"*2\r\n+OK\r\n".to_vec();
        exec.extend_from_slice(&bulk(&sealed));
        r.on_reply(exec.into());
        assert_eq!(out(&mut r), b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$6\r\nsecret\r\n");
        // A command Redis refused at queue time gets no place in EXEC's array.
        r.push(Plan::Queued(Some(OpenPlan::Value(SealedKey { rule: 0, key: b(b"sess:a") }))), 1);
        r.on_reply(b(b"-ERR wrong number of arguments\r\n"));
        r.push(Plan::ExecAbort, 1);
        r.on_reply(b(b"+OK\r\n"));
        assert_eq!(
            out(&mut r),
            b"-ERR wrong number of arguments\r\n-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        assert!(r.is_empty());
    }

    #[test]
    fn discard_clears_the_queue_and_passes_its_reply() {
        let (sealer, _) = sealing();
        let mut r = Replies::new(Some(sealer), 0);
        r.push(Plan::Queued(Some(OpenPlan::Value(SealedKey { rule: 0, key: b(b"sess:a") }))), 1);
        r.on_reply(b(b"+QUEUED\r\n"));
        r.push(Plan::Discard, 1);
        r.on_reply(b(b"+OK\r\n"));
        assert_eq!(out(&mut r), b"+QUEUED\r\n+OK\r\n");
        assert!(r.exec_queue.is_empty());
    }

    #[test]
    fn subscriptions_are_tracked_from_confirmations_and_messages_are_not_replies() {
        let mut r = queue();
        r.push(Plan::Subscribe { kind: SubKind::Channel, subscribe: true, remaining: Some(2) }, 2);
        r.on_frame(b(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"));
        assert!(r.subscribed());
        // A message between confirmations is passed on, not matched.
        r.on_frame(b(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"));
        assert_eq!(r.inflight(), 1);
        r.on_frame(b(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"));
        assert!(r.is_empty());
        // UNSUBSCRIBE without channels: one confirmation per subscription.
        r.push(Plan::Subscribe { kind: SubKind::Channel, subscribe: false, remaining: None }, 1);
        r.on_frame(b(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n"));
        assert!(!r.is_empty(), "a second confirmation is owed");
        r.on_frame(b(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"));
        assert!(r.is_empty());
        assert!(!r.subscribed());
        assert_eq!(r.inflight(), 0);
        assert_eq!(out(&mut r).windows(9).filter(|w| w == b"subscribe").count(), 4);
    }

    #[test]
    fn client_reply_modes_decide_which_commands_expect_a_reply() {
        let mut r = queue();
        assert_eq!(r.client_reply(Some(b"SKIP")), ClientReply::Silent);
        assert_eq!(r.sent(Plan::Forward(1), 1), 0, "the command after SKIP gets no reply");
        assert_eq!(r.sent(Plan::Forward(1), 1), 1, "the one after that does");
        assert_eq!(r.client_reply(Some(b"off")), ClientReply::Silent);
        assert_eq!(r.sent(Plan::Forward(1), 1), 0);
        assert_eq!(r.client_reply(Some(b"SKIP")), ClientReply::Silent);
        assert_eq!(r.reply_mode(), ReplyMode::Off, "SKIP does not turn OFF into SKIP");
        // Subscription confirmations come even with replies off.
        assert_eq!(r.sent(Plan::Subscribe { kind: SubKind::Channel, subscribe: true, remaining: Some(1) }, 1), 1);
        assert_eq!(r.client_reply(Some(b"ON")), ClientReply::Answered);
        assert_eq!(r.sent(Plan::Forward(1), 1), 1);
        assert_eq!(r.inflight(), 3);
    }
}
