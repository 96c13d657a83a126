//! A session's way into a Redis Cluster: each request goes to the master of
//! its key's slot over that node's shared links, and the replies come back
//! to the session in the order it sent the requests.
//!
//! * Runs of requests for the same node travel together as one request
//!   of the node's [`SharedLink`], as on a standalone backend.
//! * MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys span slots are
//!   split by slot and their replies put back together; other multi-key
//!   commands go to their first key's node, whose `CROSSSLOT` error the
//!   client sees, as with Redis.
//! * SCAN walks the masters one after the other: the cursor the client
//!   sees carries the master's index in its low [`SCAN_INDEX_BITS`] bits.
//! * Commands for the whole keyspace (FLUSHALL, DBSIZE, KEYS, SCRIPT LOAD
//!   …) go to every master.
//! * SPUBLISH goes to its channel's master, and SSUBSCRIBE pins the
//!   session to it (sharded channels hash like keys); PUBLISH and SUBSCRIBE,
//!   which the cluster carries to every node, go to any.
//! * `MOVED` and `ASK` are followed (the slot map is re-read on `MOVED`),
//!   `TRYAGAIN` is retried, up to [`MAX_REDIRECTS`] times.
//! * respseal looks like a standalone server: `CLUSTER …` gets a
//!   standalone server's error and INFO says `cluster_enabled:0`.
//!
//! A per-session task (the *collector*) takes the replies of each request,
//! in order, follows redirects and merges split replies before passing them
//! to the session; the session sees a link like any other.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use tokio::sync::mpsc;

use super::cluster::{self, Cluster, SlotMap};
use super::conn::{BackendError, ConnSettings};
use super::shared::{LinkEvent, ReplyTx, SharedLink, SharedRequest};
use crate::commands::table::{Combine, OnCluster};
use crate::commands::{self, Args, own};
use crate::error::{ClientError, Error};
use crate::protocol::frame::{Frame, Redirect, split_frames};
use crate::protocol::request::{self, Limits, Parsed};
use crate::protocol::{Proto, encode};

/// Redirections (and TRYAGAIN retries) followed for one command.
pub const MAX_REDIRECTS: usize = 5;
/// Low bits of a client's SCAN cursor that say which master it is on.
pub const SCAN_INDEX_BITS: u32 = 10;
const UNLIMITED: Limits = Limits::NONE;

/// The nodes of the cluster as one worker sees them: their shared links
/// and connection settings, made on first use.
pub struct Nodes {
    base: Arc<ConnSettings>,
    /// The slot map.
    pub cluster: Arc<Cluster>,
    links_per_group: usize,
    links: DashMap<(String, Proto), Arc<[SharedLink]>>,
    settings: DashMap<String, Arc<ConnSettings>>,
}

impl Nodes {
    /// The nodes of `cluster`, connected to with `base`'s settings.
    pub fn new(base: Arc<ConnSettings>, cluster: Arc<Cluster>, links_per_group: usize) -> Self {
        Nodes {
            base,
            cluster,
            links_per_group: links_per_group.max(1),
            links: DashMap::new(),
            settings: DashMap::new(),
        }
    }

    /// How connections to the node at `addr` are opened.
    pub fn settings_of(&self, addr: &str) -> Arc<ConnSettings> {
        if let Some(s) = self.settings.get(addr) {
            return Arc::clone(&s);
        }
        Arc::clone(&self.settings.entry(addr.to_string()).or_insert_with(|| Arc::new(self.base.for_node(addr))))
    }

    /// The shared link session `id` uses to the node at `addr`.
    pub fn link(&self, addr: &str, proto: Proto, id: u64) -> SharedLink {
        let key = (addr.to_string(), proto);
        // (The map's guard is dropped before `entry` takes its shard.)
        let current = self.links.get(&key).map(|l| Arc::clone(&l));
        let links = match current {
            Some(l) if !l.iter().any(SharedLink::is_closed) => l,
            _ => {
                let made = || super::shared::group(&self.settings_of(addr), self.links_per_group, 0, proto);
                let mut links = self.links.entry(key).or_insert_with(made);
                // A link ends by itself once the map stops naming its node;
                // if the node is back, it gets new ones.
                if links.iter().any(SharedLink::is_closed) {
                    *links = made();
                }
                Arc::clone(&links)
            }
        };
        super::shared::pick(&links, id)
    }

    /// The master of the slot of `key` now, if the map knows one.
    pub fn master_of_key(&self, key: &[u8]) -> Option<String> {
        self.cluster.map().master_of(cluster::slot(key)).map(str::to_string)
    }

    /// Some master (the first of the map), for commands without keys.
    pub fn any_master(&self) -> Option<String> {
        self.cluster.map().masters.first().map(|m| m.to_string())
    }
}

/// The error while the slot map is not known yet.
pub fn no_map() -> BackendError {
    BackendError::Connect("the cluster slot map is not known yet".into())
}

/// How a request is routed.
enum Step {
    /// To one node: the master of `Some(slot)`, or the session's home node.
    One(Option<u16>),
    /// Split by slot: one sub-request per group of key positions.
    Split { name: &'static str, pairs: bool, combine: Combine },
    /// SCAN across the masters.
    Scan,
    /// To every master, replies merged.
    All(Merge),
    /// INFO, with `cluster_enabled` as a standalone server has it.
    Info,
    /// Answered here.
    Local(Error),
}

/// How the replies of a split or broadcast request become one.
#[derive(Debug, Clone)]
enum Merge {
    /// MGET: each part's array, elements put back at these positions.
    Mget(Vec<Vec<usize>>, usize),
    /// The first error, else the first reply (MSET, FLUSHALL, SCRIPT LOAD).
    First,
    /// Integers added up (DEL, EXISTS, DBSIZE …).
    Sum,
    /// Arrays joined (KEYS).
    Concat,
    /// A SCAN page from master `index` of `masters`.
    Scan { index: usize, masters: usize },
    /// INFO's text.
    Info,
}

impl From<Combine> for Merge {
    fn from(c: Combine) -> Merge {
        match c {
            Combine::First => Merge::First,
            Combine::Sum => Merge::Sum,
            Combine::Concat => Merge::Concat,
            // The positions are known once the keys are grouped.
            Combine::PerKey => Merge::Mget(Vec::new(), 0),
        }
    }
}

/// A split command's keys in one slot: the slot, the keys' positions in
/// the command, and the sub-command's arguments.
type SlotGroup<'a> = (u16, Vec<usize>, Vec<&'a [u8]>);

/// One sub-request of a split or broadcast request.
struct Part {
    node: Arc<str>,
    cmd: Bytes,
    rx: mpsc::UnboundedReceiver<LinkEvent>,
}

/// What the collector waits for next, in the session's order.
enum Expect {
    /// Replies to `cmds`, in order, from one node.
    Run { node: Arc<str>, cmds: Vec<Bytes>, rx: mpsc::UnboundedReceiver<LinkEvent> },
    /// One reply made of the parts' replies.
    Gather { parts: Vec<Part>, merge: Merge },
    /// A reply made here.
    Local(Bytes),
    /// Replies that will not come.
    Fail(u32),
}

/// A session's link into the cluster.
pub struct ClusterLink {
    nodes: Arc<Nodes>,
    proto: Proto,
    id: u64,
    map: Arc<SlotMap>,
    version: u64,
    /// This session's link to each master of `map`, by index.
    links: Vec<Option<SharedLink>>,
    collector: mpsc::UnboundedSender<(Expect, ReplyTx)>,
}

impl ClusterLink {
    /// A link for session `id` speaking `proto`.
    pub fn new(nodes: Arc<Nodes>, proto: Proto, id: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(Arc::clone(&nodes), proto, id, rx));
        ClusterLink {
            map: nodes.cluster.map(),
            version: nodes.cluster.version(),
            links: Vec::new(),
            nodes,
            proto,
            id,
            collector: tx,
        }
    }

    /// The link to master `idx` of the map.
    fn link(&mut self, idx: usize) -> SharedLink {
        if self.links.len() != self.map.masters.len() {
            self.links = vec![None; self.map.masters.len()];
        }
        let (nodes, map, proto, id) = (&self.nodes, &self.map, self.proto, self.id);
        self.links[idx].get_or_insert_with(|| nodes.link(&map.masters[idx], proto, id)).clone()
    }

    /// Route every request of `req` and have its replies collected.
    pub async fn send(&mut self, req: SharedRequest) {
        let version = self.nodes.cluster.version();
        if version != self.version {
            self.map = self.nodes.cluster.map();
            self.version = version;
            self.links.clear();
        }
        if self.map.is_empty() {
            req.reply.send(LinkEvent::Failed { frames: req.frames, error: no_map() });
            return;
        }
        let home = (self.id % self.map.masters.len() as u64) as usize;
        let mut run: Option<(usize, Vec<Bytes>)> = None;
        let mut ranges = Vec::new();
        let mut routed = 0u32;
        for part in &req.data {
            let mut off = 0;
            while off < part.len() {
                let len = match request::parse(&part[off..], &UNLIMITED, &mut ranges) {
                    Ok(Parsed::Command { len, .. }) => len,
                    Ok(Parsed::Empty { len }) => {
                        off += len;
                        continue;
                    }
                    // The session hands over complete requests only.
                    _ => break,
                };
                let frame = part.slice(off..off + len);
                off += len;
                routed += 1;
                let args = Args::new(&frame, &ranges);
                let step = step(&args);
                let node = match step {
                    Step::One(Some(slot)) => self.map.owner(slot).unwrap_or(home),
                    _ => home,
                };
                if matches!(step, Step::One(_)) {
                    match &mut run {
                        Some((n, cmds)) if *n == node => cmds.push(frame),
                        _ => {
                            self.flush(&mut run, &req.reply).await;
                            run = Some((node, vec![frame]));
                        }
                    }
                    continue;
                }
                self.flush(&mut run, &req.reply).await;
                let expect = match step {
                    Step::Local(e) => Expect::Local(e.rescue()),
                    Step::Info => Expect::Gather { parts: vec![self.part(node, frame).await], merge: Merge::Info },
                    Step::Split { name, pairs, combine } => self.split(name, pairs, combine, &args).await,
                    Step::Scan => self.scan(&args).await,
                    Step::All(merge) => {
                        let mut parts = Vec::with_capacity(self.map.masters.len());
                        for idx in 0..self.map.masters.len() {
                            parts.push(self.part(idx, frame.clone()).await);
                        }
                        Expect::Gather { parts, merge }
                    }
                    Step::One(_) => unreachable!("handled above"),
                };
                let _ = self.collector.send((expect, req.reply.clone()));
            }
        }
        self.flush(&mut run, &req.reply).await;
        if routed < req.frames {
            // Never expected (one reply per request on a shared link); the
            // session must not wait for replies that will not come.
            let _ = self.collector.send((Expect::Fail(req.frames - routed), req.reply.clone()));
        }
    }

    async fn flush(&mut self, run: &mut Option<(usize, Vec<Bytes>)>, reply: &ReplyTx) {
        let Some((idx, cmds)) = run.take() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let frames = cmds.len() as u32;
        self.link(idx).send(SharedRequest { data: cmds.clone(), frames, reply: ReplyTx::new(tx) }).await;
        let node = Arc::clone(&self.map.masters[idx]);
        let _ = self.collector.send((Expect::Run { node, cmds, rx }, reply.clone()));
    }

    async fn part(&mut self, idx: usize, cmd: Bytes) -> Part {
        let (tx, rx) = mpsc::unbounded_channel();
        self.link(idx).send(SharedRequest { data: vec![cmd.clone()], frames: 1, reply: ReplyTx::new(tx) }).await;
        Part { node: Arc::clone(&self.map.masters[idx]), cmd, rx }
    }

    /// MGET/MSET/DEL/… split into one command per slot.
    async fn split(&mut self, name: &'static str, pairs: bool, combine: Combine, args: &Args<'_>) -> Expect {
        let per = if pairs { 2 } else { 1 };
        // Slot → (positions of its keys, its arguments), in first-seen order.
        let mut groups: Vec<SlotGroup<'_>> = Vec::new();
        for (pos, i) in (1..args.len()).step_by(per).enumerate() {
            let key = args.get(i).unwrap_or_default();
            let s = cluster::slot(key);
            let g = match groups.iter().position(|g| g.0 == s) {
                Some(g) => g,
                None => {
                    groups.push((s, Vec::new(), vec![name.as_bytes()]));
                    groups.len() - 1
                }
            };
            groups[g].1.push(pos);
            groups[g].2.extend((i..i + per).filter_map(|j| args.get(j)));
        }
        let total = groups.iter().map(|g| g.1.len()).sum();
        let merge = match combine {
            Combine::PerKey => Merge::Mget(groups.iter().map(|g| g.1.clone()).collect(), total),
            other => Merge::from(other),
        };
        let mut parts = Vec::with_capacity(groups.len());
        for (s, _, cmd) in &groups {
            let node = self.map.owner(*s).unwrap_or(0);
            parts.push(self.part(node, encode::command(cmd)).await);
        }
        Expect::Gather { parts, merge }
    }

    /// SCAN on the master the cursor names.
    async fn scan(&mut self, args: &Args<'_>) -> Expect {
        let masters = self.map.masters.len();
        let cursor = args.get(1).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<u64>().ok());
        let Some(cursor) = cursor else {
            return Expect::Local(Error::from(ClientError::InvalidCursor).rescue());
        };
        let index = (cursor & ((1 << SCAN_INDEX_BITS) - 1)) as usize;
        if index >= masters {
            // A cursor from before the cluster lost masters: start over there.
            return Expect::Local(Error::from(ClientError::StaleCursor).rescue());
        }
        let node_cursor = (cursor >> SCAN_INDEX_BITS).to_string();
        let mut cmd: Vec<&[u8]> = args.iter().collect();
        cmd[1] = node_cursor.as_bytes();
        let part = self.part(index, encode::command(&cmd)).await;
        Expect::Gather { parts: vec![part], merge: Merge::Scan { index, masters } }
    }
}

/// How a request is routed, from its arguments.
fn step(args: &Args<'_>) -> Step {
    let Some(name) = args.get(0) else { return Step::One(None) };
    if let Some(e) = answered_here(args) {
        return Step::Local(e);
    }
    let Some(cmd) = commands::lookup(name) else { return Step::One(None) };
    match cmd.cluster {
        OnCluster::Scan => return Step::Scan,
        OnCluster::Info => return Step::Info,
        OnCluster::All(combine) => return Step::All(Merge::from(combine)),
        OnCluster::AllFor(subs, combine) if subs.iter().any(|w| args.is(1, w)) => {
            return Step::All(Merge::from(combine));
        }
        _ => {}
    }
    let mut keys = slot_indexes(cmd, args).filter_map(|i| args.get(i));
    let Some(first) = keys.next() else { return Step::One(None) };
    let s = cluster::slot(first);
    if keys.all(|k| cluster::slot(k) == s) {
        return Step::One(Some(s));
    }
    match cmd.cluster {
        // Pairs only when whole (else Redis answers the arity error).
        OnCluster::Split { pairs, combine } if !pairs || args.len() % 2 == 1 => {
            Step::Split { name: cmd.name, pairs, combine }
        }
        // Redis answers CROSSSLOT.
        _ => Step::One(Some(s)),
    }
}

/// The reply respseal gives itself to a cluster-only command, so that
/// clients keep treating it as a standalone server.
pub fn answered_here(args: &Args<'_>) -> Option<Error> {
    let cmd = args.get(0).and_then(commands::lookup)?;
    (cmd.cluster == OnCluster::Answered).then(|| ClientError::NotCluster.into())
}

/// The slot a command's keys are in (its first key's), for a pinned
/// session; `None` for a command without keys.
pub fn slot_of(args: &Args<'_>) -> Option<u16> {
    let cmd = args.get(0).and_then(commands::lookup)?;
    let first = slot_indexes(cmd, args).next()?;
    args.get(first).map(cluster::slot)
}

/// The arguments whose slot a command goes by: its keys, and for sharded
/// pub/sub its channels, which Redis Cluster hashes like keys (the table
/// lists no keys for them: nothing is stored under a channel's name).
fn slot_indexes(cmd: &commands::Command, args: &Args<'_>) -> std::iter::StepBy<std::ops::Range<usize>> {
    match cmd.cluster {
        OnCluster::Channels { first_only: true } => (1..args.len().min(2)).step_by(1),
        OnCluster::Channels { first_only: false } => (1..args.len()).step_by(1),
        _ => crate::commands::key_indexes(cmd.keys, args),
    }
}

/// Where a `-MOVED` reply from `node` sends its command.
pub fn moved_to(frame: &Bytes, node: &str) -> Option<String> {
    match Frame::new(frame, Proto::Resp3).redirect(node)? {
        Redirect::Moved(addr) => Some(addr),
        _ => None,
    }
}

/// The collector: replies in the session's order, redirects followed,
/// split replies merged.
async fn collect(nodes: Arc<Nodes>, proto: Proto, id: u64, mut rx: mpsc::UnboundedReceiver<(Expect, ReplyTx)>) {
    let c = Collector { nodes, proto, id };
    while let Some((expect, reply)) = rx.recv().await {
        match expect {
            Expect::Fail(frames) => {
                reply.send(LinkEvent::Failed { frames, error: BackendError::Lost });
            }
            Expect::Local(data) => {
                reply.send(one_event(Ok(data), proto));
            }
            Expect::Run { node, cmds, rx } => c.run(&node, &cmds, rx, &reply).await,
            Expect::Gather { parts, merge } => {
                let mut frames = Vec::with_capacity(parts.len());
                let mut failed = None;
                for mut p in parts {
                    match one_reply(&mut p.rx, 1).await {
                        Ok(f) => match c.follow(&p.node, &p.cmd, f).await {
                            Ok(f) => frames.push(f),
                            Err(e) => failed = Some(e),
                        },
                        Err(e) => failed = Some(e),
                    }
                }
                let merged = match failed {
                    Some(error) => Err(error),
                    None => Ok(merge_replies(&merge, frames, proto)),
                };
                reply.send(one_event(merged, proto));
            }
        }
    }
}

struct Collector {
    nodes: Arc<Nodes>,
    proto: Proto,
    id: u64,
}

impl Collector {
    /// Pass on the replies of a run, following the redirected ones.
    async fn run(&self, node: &str, cmds: &[Bytes], mut rx: mpsc::UnboundedReceiver<LinkEvent>, reply: &ReplyTx) {
        let mut done = 0usize;
        while done < cmds.len() {
            match rx.recv().await {
                Some(LinkEvent::Replies { data, frames, errors }) if errors == 0 => {
                    done += frames as usize;
                    reply.send(LinkEvent::Replies { data, frames, errors });
                }
                Some(LinkEvent::Replies { data, .. }) => {
                    for frame in split_frames(data) {
                        let cmd = &cmds[done.min(cmds.len() - 1)];
                        done += 1;
                        reply.send(one_event(self.follow(node, cmd, frame).await, self.proto));
                    }
                }
                Some(LinkEvent::Failed { frames, error }) => {
                    // A node that cannot be reached may have failed over:
                    // read the slot map again.
                    self.nodes.cluster.stale();
                    done += frames as usize;
                    reply.send(LinkEvent::Failed { frames, error });
                }
                None => {
                    let frames = (cmds.len() - done) as u32;
                    reply.send(LinkEvent::Failed { frames, error: BackendError::Lost });
                    return;
                }
            }
        }
    }

    /// The final reply to `cmd`, sent to `node`, whose reply was `frame`:
    /// redirections followed.
    async fn follow(&self, node: &str, cmd: &Bytes, mut frame: Bytes) -> Result<Bytes, BackendError> {
        let mut node = node.to_string();
        for attempt in 0..MAX_REDIRECTS {
            let Some(redirect) = Frame::new(&frame, self.proto).redirect(&node) else { return Ok(frame) };
            let asking = match redirect {
                Redirect::Moved(addr) => {
                    metrics::counter!("respseal_cluster_redirects_total", "kind" => "moved").increment(1);
                    self.nodes.cluster.stale();
                    node = self.nodes.cluster.redirect_to(addr).await?;
                    false
                }
                Redirect::Ask(addr) => {
                    metrics::counter!("respseal_cluster_redirects_total", "kind" => "ask").increment(1);
                    node = self.nodes.cluster.redirect_to(addr).await?;
                    true
                }
                Redirect::TryAgain => {
                    metrics::counter!("respseal_cluster_redirects_total", "kind" => "tryagain").increment(1);
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                    false
                }
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut data = Vec::with_capacity(2);
            if asking {
                data.push(encode::command(&[own::ASKING]));
            }
            data.push(cmd.clone());
            let frames = data.len() as u32;
            self.nodes
                .link(&node, self.proto, self.id)
                .send(SharedRequest { data, frames, reply: ReplyTx::new(tx) })
                .await;
            frame = one_reply(&mut rx, frames).await?;
        }
        Ok(frame)
    }
}

/// The event for one reply, or for its loss.
fn one_event(reply: Result<Bytes, BackendError>, proto: Proto) -> LinkEvent {
    match reply {
        Ok(data) => {
            let errors = u32::from(Frame::new(&data, proto).is_error());
            LinkEvent::Replies { data, frames: 1, errors }
        }
        Err(error) => LinkEvent::Failed { frames: 1, error },
    }
}

/// The last of the next `frames` replies on `rx` (ASKING's `+OK` before a
/// command is skipped).
async fn one_reply(rx: &mut mpsc::UnboundedReceiver<LinkEvent>, frames: u32) -> Result<Bytes, BackendError> {
    let mut got = BytesMut::new();
    let mut n = 0;
    while n < frames {
        match rx.recv().await {
            Some(LinkEvent::Replies { data, frames: f, .. }) => {
                n += f;
                got.extend_from_slice(&data);
            }
            Some(LinkEvent::Failed { error, .. }) => return Err(error),
            None => return Err(BackendError::Lost),
        }
    }
    split_frames(got.freeze()).last().ok_or(BackendError::BadReply)
}

/// One reply from the replies of the parts.
fn merge_replies(merge: &Merge, frames: Vec<Bytes>, proto: Proto) -> Bytes {
    if let Some(e) = frames.iter().find(|f| Frame::new(f, proto).is_error()) {
        return e.clone();
    }
    let bad = || Error::from(BackendError::BadReply).rescue();
    match merge {
        Merge::First => frames.into_iter().next().unwrap_or_else(bad),
        Merge::Sum => {
            let mut sum = 0i64;
            for f in &frames {
                match integer(f) {
                    Some(n) => sum += n,
                    None => return bad(),
                }
            }
            Bytes::from(format!(":{sum}\r\n"))
        }
        Merge::Mget(positions, total) => {
            let mut slots: Vec<Option<Bytes>> = vec![None; *total];
            for (f, pos) in frames.iter().zip(positions) {
                match Frame::new(f, proto).elements() {
                    Some(items) if items.len() == pos.len() => {
                        for (item, &p) in items.into_iter().zip(pos) {
                            slots[p] = Some(item);
                        }
                    }
                    _ => return bad(),
                }
            }
            let mut out = BytesMut::new();
            encode::array_header(&mut out, *total);
            for s in slots.into_iter().flatten() {
                out.put_slice(&s);
            }
            out.freeze()
        }
        Merge::Concat => {
            let mut items = Vec::new();
            for f in &frames {
                match Frame::new(f, proto).elements() {
                    Some(i) => items.extend(i),
                    None => return bad(),
                }
            }
            let mut out = BytesMut::new();
            encode::array_header(&mut out, items.len());
            for i in items {
                out.put_slice(&i);
            }
            out.freeze()
        }
        Merge::Scan { index, masters } => {
            let Some(f) = frames.first() else { return bad() };
            let Some([cursor, keys]) = Frame::new(f, proto)
                .elements()
                .as_deref()
                .map(<[Bytes]>::to_vec)
                .and_then(|v| <[Bytes; 2]>::try_from(v).ok())
            else {
                return bad();
            };
            let node_cursor = Frame::new(&cursor, proto)
                .payload()
                .and_then(|c| std::str::from_utf8(&c).ok().and_then(|c| c.parse::<u64>().ok()));
            let Some(node_cursor) = node_cursor else { return bad() };
            let next = if node_cursor == 0 {
                if index + 1 < *masters { (index + 1) as u64 } else { 0 }
            } else if node_cursor >> (64 - SCAN_INDEX_BITS) != 0 {
                return Error::from(BackendError::CursorTooLarge).rescue();
            } else {
                (node_cursor << SCAN_INDEX_BITS) | *index as u64
            };
            let mut out = BytesMut::new();
            encode::array_header(&mut out, 2);
            encode::bulk(&mut out, next.to_string().as_bytes());
            out.put_slice(&keys);
            out.freeze()
        }
        Merge::Info => {
            let Some(f) = frames.into_iter().next() else { return bad() };
            // The whole line, not a part of another.
            let needle = b"\ncluster_enabled:1\r";
            match f.windows(needle.len()).position(|w| w == needle) {
                Some(at) => {
                    let mut out = BytesMut::from(&f[..]);
                    out[at + needle.len() - 2] = b'0';
                    out.freeze()
                }
                None => f,
            }
        }
    }
}

fn integer(frame: &[u8]) -> Option<i64> {
    std::str::from_utf8(frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(words: &[&str]) -> (Bytes, Vec<std::ops::Range<usize>>) {
        let frame = encode::command(words);
        let mut ranges = Vec::new();
        let _ = request::parse(&frame, &UNLIMITED, &mut ranges);
        (frame, ranges)
    }

    #[test]
    fn routes_by_slot_and_splits() {
        let (f, r) = args_of(&["GET", "foo"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::One(Some(12182))));
        let (f, r) = args_of(&["MGET", "{a}1", "{a}2"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::One(Some(_))));
        let (f, r) = args_of(&["MGET", "a", "b"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::Split { name: "MGET", pairs: false, .. }));
        let (f, r) = args_of(&["MSET", "a", "1", "b", "2"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::Split { name: "MSET", pairs: true, .. }));
        // Not splittable: Redis's CROSSSLOT.
        let (f, r) = args_of(&["SUNION", "a", "b"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::One(Some(_))));
        let (f, r) = args_of(&["PING"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::One(None)));
        let (f, r) = args_of(&["cluster", "info"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::Local(Error::Client(ClientError::NotCluster))));
        // Sharded pub/sub goes by the channel's slot ("foo" is in 12182).
        let (f, r) = args_of(&["SPUBLISH", "foo", "message"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::One(Some(12182))));
        let (f, r) = args_of(&["SSUBSCRIBE", "foo", "{foo}2"]);
        assert_eq!(slot_of(&Args::new(&f, &r)), Some(12182));
        let (f, r) = args_of(&["SUNSUBSCRIBE"]);
        assert_eq!(slot_of(&Args::new(&f, &r)), None);
        let (f, r) = args_of(&["PUBLISH", "foo", "message"]);
        assert!(matches!(step(&Args::new(&f, &r)), Step::One(None)));
    }

    #[test]
    fn merges() {
        let mget = Merge::Mget(vec![vec![0, 2], vec![1]], 3);
        let got = merge_replies(
            &mget,
            vec![Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n"), Bytes::from_static(b"*1\r\n$1\r\nb\r\n")],
            Proto::Resp2,
        );
        assert_eq!(&got[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
        let sum = merge_replies(
            &Merge::Sum,
            vec![Bytes::from_static(b":2\r\n"), Bytes::from_static(b":3\r\n")],
            Proto::Resp2,
        );
        assert_eq!(&sum[..], b":5\r\n");
        let err = merge_replies(
            &Merge::Sum,
            vec![Bytes::from_static(b":2\r\n"), Bytes::from_static(b"-ERR x\r\n")],
            Proto::Resp2,
        );
        assert_eq!(&err[..], b"-ERR x\r\n");
        let page = |c: &'static [u8]| Bytes::from([b"*2\r\n", c, b"*1\r\n$1\r\nk\r\n"].concat());
        let next = merge_replies(&Merge::Scan { index: 1, masters: 3 }, vec![page(b"$1\r\n0\r\n")], Proto::Resp2);
        assert_eq!(&next[..], b"*2\r\n$1\r\n2\r\n*1\r\n$1\r\nk\r\n");
        let last = merge_replies(&Merge::Scan { index: 2, masters: 3 }, vec![page(b"$1\r\n0\r\n")], Proto::Resp2);
        assert!(last.starts_with(b"*2\r\n$1\r\n0\r\n"));
        let mid = merge_replies(&Merge::Scan { index: 2, masters: 3 }, vec![page(b"$2\r\n17\r\n")], Proto::Resp2);
        assert!(mid.starts_with(format!("*2\r\n$5\r\n{}\r\n", (17 << 10) | 2).as_bytes()));
        let info = merge_replies(&Merge::Info, vec![Bytes::from_static(b"$17\r\ncluster_enabled:1\r\n")], Proto::Resp2);
        assert_eq!(&info[..], b"$17\r\ncluster_enabled:0\r\n");
    }
}
