//! The backend as sessions see it: groups of shared links keyed by
//! (database, protocol), created on first use, and dedicated links on demand.
//!
//! Each worker thread has its own `Backend` (its own shared links), but the
//! ready connections for pinning are one pool for the whole process: one
//! connection per (database, protocol) is kept ready once a session of that
//! group has pinned (not before: until then Redis sees only the configured
//! shared links). Taking it makes a pin (MULTI, WATCH, SUBSCRIBE …) cost no
//! connect round trip, and it works even while Redis is busy running a
//! script (when the handshake's SELECT would be refused with BUSY). A ready
//! connection waits as a plain socket, registered with no runtime, so that
//! any worker can take it.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;

use super::conn::{self, BackendError, ConnSettings, Dedicated};
use super::dedicated::DedicatedLink;
use super::route::{ClusterLink, Nodes, no_map};
use super::shared::{SharedLink, group, pick};
use crate::commands::own;
use crate::protocol::Proto;

/// Shared and dedicated links to one Redis, or to the nodes of a cluster.
pub struct Backend {
    settings: Arc<ConnSettings>,
    links_per_group: usize,
    groups: DashMap<(u32, Proto), Arc<[SharedLink]>>,
    spares: Option<Arc<Spares>>,
    /// Behind Redis Cluster: the nodes and the slot map.
    nodes: Option<Arc<Nodes>>,
    /// Connections lent for code (scripts, functions) and given back, by
    /// group, with when they were given back.
    idle_lent: Mutex<HashMap<(u32, Proto), Vec<GivenBack>>>,
    /// `respseal_script_links{state="lent"}` and `{state="idle"}`: handles
    /// kept, since a loan is per request for a store that runs a script
    /// per request.
    lent_gauge: metrics::Gauge,
    idle_gauge: metrics::Gauge,
}

/// A lent connection given back, and when.
type GivenBack = (DedicatedLink, Instant);

/// Connections given back after running code that this worker keeps for
/// the next loan, per group; more are closed.
pub const LENT_IDLE_MAX: usize = 64;
/// A connection given back longer ago than this is closed rather than
/// lent again (Redis's `timeout` may have closed it).
const LENT_IDLE_FOR: Duration = Duration::from_secs(30);

/// The link a session's plain requests take.
pub enum Shared {
    /// A shared link to the one Redis.
    Direct(SharedLink),
    /// The session's router into the cluster.
    Cluster(Box<ClusterLink>),
}

impl Shared {
    /// Queue a request (see [`SharedLink::send`]).
    pub async fn send(&mut self, req: super::SharedRequest) {
        match self {
            Shared::Direct(l) => l.send(req).await,
            Shared::Cluster(c) => c.send(req).await,
        }
    }
}

/// Each group's ready connection, shared by every worker's [`Backend`].
#[derive(Default)]
pub struct Spares(Mutex<HashMap<(u32, Proto), Spare>>);

/// A group's ready connection.
enum Spare {
    /// Handshake done; the socket is not registered with any runtime.
    Ready(std::net::TcpStream, bytes::BytesMut),
    /// Being opened; nobody else needs to open one.
    Filling,
}

impl Backend {
    /// A backend with `links_per_group` shared links in each group. With
    /// `spares`, a ready connection per group is kept there for pinning.
    pub fn new(settings: ConnSettings, links_per_group: usize, spares: Option<Arc<Spares>>) -> Self {
        let settings = Arc::new(settings);
        let nodes = settings
            .cluster
            .as_ref()
            .map(|c| Arc::new(Nodes::new(Arc::clone(&settings), Arc::clone(c), links_per_group)));
        Backend {
            settings,
            links_per_group: links_per_group.max(1),
            groups: DashMap::new(),
            spares,
            nodes,
            idle_lent: Mutex::default(),
            lent_gauge: metrics::gauge!("respseal_script_links", "state" => "lent"),
            idle_gauge: metrics::gauge!("respseal_script_links", "state" => "idle"),
        }
    }

    /// A connection of group (db, proto) for a run of requests that runs
    /// code in Redis (a script may keep Redis busy for as long as it likes:
    /// nothing of another client's may wait behind it in one connection).
    /// One given back earlier if it is still open and its master still the
    /// master, else a new one.
    pub async fn lend(&self, db: u32, proto: Proto) -> Result<DedicatedLink, BackendError> {
        loop {
            let taken = self
                .idle_lent
                .lock()
                .expect("lent pool lock is never poisoned")
                .get_mut(&(db, proto))
                .and_then(Vec::pop);
            let Some((mut link, since)) = taken else { break };
            self.idle_gauge.decrement(1.0);
            if since.elapsed() < LENT_IDLE_FOR && link.still_open().await {
                self.lent_gauge.increment(1.0);
                return Ok(link);
            }
        }
        // Not the group's ready connection: that one is for pins, which
        // Redis lets in while code runs (MULTI …) when a new connection's
        // SELECT would be refused with BUSY, as the code's own would be.
        let link = DedicatedLink::new(conn::dedicated(&self.settings, db, proto).await?);
        self.lent_gauge.increment(1.0);
        Ok(link)
    }

    /// Take back a lent connection with nothing in flight on it (see
    /// [`Backend::lend`]); kept for the next loan unless enough are.
    pub fn give_back(&self, db: u32, proto: Proto, link: DedicatedLink) {
        self.lent_gauge.decrement(1.0);
        if !link.idle() {
            return;
        }
        let mut pool = self.idle_lent.lock().expect("lent pool lock is never poisoned");
        let idle = pool.entry((db, proto)).or_default();
        if idle.len() < LENT_IDLE_MAX {
            idle.push((link, Instant::now()));
            self.idle_gauge.increment(1.0);
        }
    }

    /// A lent connection that will not be given back (it failed, or its
    /// session took it as its own, or closed with it).
    pub fn keep_lent(&self) {
        self.lent_gauge.decrement(1.0);
    }

    /// Behind Redis Cluster: the nodes.
    pub fn cluster(&self) -> Option<&Arc<Nodes>> {
        self.nodes.as_ref()
    }

    /// Whether this is Redis Cluster (where a pinned session is on one node).
    pub fn is_cluster(&self) -> bool {
        self.nodes.is_some()
    }

    /// Whether a command on these two names can be carried out on one
    /// connection (always, but behind a cluster only within one slot).
    pub fn same_slot(&self, a: &[u8], b: &[u8]) -> bool {
        self.nodes.is_none() || super::cluster::slot(a) == super::cluster::slot(b)
    }

    /// Behind Redis Cluster, the master that owns `slot` now (`None`: not a
    /// cluster, no slot, or an unknown owner).
    pub fn master_of(&self, slot: Option<u16>) -> Option<String> {
        let nodes = self.nodes.as_ref()?;
        nodes.cluster.map().master_of(slot?).map(str::to_string)
    }

    /// A session's own connection: behind Redis Cluster to the master of
    /// `slot` (any master without one), whose address comes back with it;
    /// otherwise to the backend, in `db`.
    ///
    /// # Errors
    /// When it cannot be opened (or the slot map is not known yet).
    pub async fn pin(
        &self,
        slot: Option<u16>,
        db: u32,
        proto: Proto,
    ) -> Result<(Dedicated, Option<String>), BackendError> {
        let Some(nodes) = &self.nodes else { return self.dedicated(db, proto).await.map(|c| (c, None)) };
        let map = nodes.cluster.map();
        let node = slot.and_then(|s| map.master_of(s)).or(map.masters.first().map(|m| &**m)).ok_or_else(no_map)?;
        let conn = conn::dedicated(&nodes.settings_of(node), 0, proto).await?;
        Ok((conn, Some(node.to_string())))
    }

    /// Behind Redis Cluster, a session's own connection to the node a
    /// `MOVED` named — only one the slot map lists, read again first (a
    /// node must not send a client anywhere) — and its address.
    ///
    /// # Errors
    /// An address the map does not list, or a connection that cannot be opened.
    pub async fn pin_redirected(&self, addr: String, proto: Proto) -> Result<(Dedicated, String), BackendError> {
        let nodes = self.nodes.as_ref().ok_or_else(no_map)?;
        nodes.cluster.stale();
        let addr = nodes.cluster.redirect_to(addr).await?;
        let conn = conn::dedicated(&nodes.settings_of(&addr), 0, proto).await?;
        Ok((conn, addr))
    }

    /// How connections for a command on `key` are opened (the master of
    /// its slot behind a cluster).
    pub fn settings_for_key(&self, key: &[u8]) -> Result<Arc<ConnSettings>, BackendError> {
        match &self.nodes {
            None => Ok(Arc::clone(&self.settings)),
            Some(n) => n.master_of_key(key).map(|m| n.settings_of(&m)).ok_or_else(no_map),
        }
    }

    /// How connections to this backend are opened.
    pub fn settings(&self) -> &Arc<ConnSettings> {
        &self.settings
    }

    /// The database sessions start in (from the backend URL).
    pub fn default_db(&self) -> u32 {
        self.settings.url.db
    }

    /// The shared link a session uses in group (db, proto). A session keeps
    /// to one link of its group (chosen by its id) so its commands stay in
    /// order.
    pub fn shared(&self, db: u32, proto: Proto, session_id: u64) -> Shared {
        if let Some(nodes) = &self.nodes {
            return Shared::Cluster(Box::new(ClusterLink::new(Arc::clone(nodes), proto, session_id)));
        }
        let links = match self.groups.get(&(db, proto)) {
            Some(links) => Arc::clone(&links),
            None => Arc::clone(
                &self
                    .groups
                    .entry((db, proto))
                    .or_insert_with(|| group(&self.settings, self.links_per_group, db, proto)),
            ),
        };
        Shared::Direct(pick(&links, session_id))
    }

    /// Run one command on a connection of its own (see [`conn::oneshot`]);
    /// behind a cluster, on the first master.
    pub async fn oneshot(&self, command: &[u8]) -> Result<Bytes, BackendError> {
        match &self.nodes {
            None => conn::oneshot(&self.settings, command).await,
            Some(n) => conn::oneshot(&n.settings_of(&n.any_master().ok_or_else(no_map)?), command).await,
        }
    }

    /// The AUTH command for the backend credentials, if the URL has any
    /// (used to log a dedicated link back in after RESET).
    pub fn auth_command(&self) -> Option<Bytes> {
        let url = &self.settings.url;
        match (&url.username, &url.password) {
            (Some(u), Some(p)) => Some(crate::protocol::encode::command(&[own::AUTH, u.as_str(), p.as_str()])),
            (None, Some(p)) => Some(crate::protocol::encode::command(&[own::AUTH, p.as_str()])),
            _ => None,
        }
    }

    /// A dedicated link to the standalone backend (or Sentinel's master) in
    /// the given state: the group's ready connection if it is still alive,
    /// else a new one. Behind a cluster, [`Backend::pin`] picks the node.
    async fn dedicated(&self, db: u32, proto: Proto) -> Result<Dedicated, BackendError> {
        if let Some(spares) = &self.spares {
            let (taken, refill) = {
                let mut pool = spares.0.lock().expect("spare pool lock is never poisoned");
                match pool.insert((db, proto), Spare::Filling) {
                    Some(Spare::Ready(stream, buf)) => (Some((stream, buf)), true),
                    // Someone is already opening one.
                    Some(Spare::Filling) => (None, false),
                    None => (None, true),
                }
            };
            if refill {
                self.refill(spares, db, proto);
            }
            if let Some((stream, mut buf)) = taken
                && alive(&stream, &mut buf)
                && let Ok(stream) = tokio::net::TcpStream::from_std(stream)
            {
                let (rd, wr) = super::stream::BackendStream::Tcp(stream).into_split();
                return Ok(Dedicated { rd, wr, buf, epoch: None });
            }
        }
        conn::dedicated(&self.settings, db, proto).await
    }

    fn refill(&self, spares: &Arc<Spares>, db: u32, proto: Proto) {
        let spares = Arc::clone(spares);
        let settings = Arc::clone(&self.settings);
        tokio::spawn(async move {
            // Deregistered from this worker's runtime, so any worker can take it.
            let opened = conn::open(&settings, db, proto).await.and_then(|(stream, buf)| match stream {
                super::stream::BackendStream::Tcp(s) => {
                    s.into_std().map(|s| (s, buf)).map_err(|e| BackendError::Connect(e.kind().to_string()))
                }
                // A TLS session is tied to the runtime that drives it: TLS
                // backends keep no ready connection (pins connect).
                super::stream::BackendStream::Tls(_) => Err(BackendError::Lost),
            });
            let mut pool = spares.0.lock().expect("spare pool lock is never poisoned");
            match opened {
                Ok((stream, buf)) => pool.insert((db, proto), Spare::Ready(stream, buf)),
                // Redis is down: the next pin connects (and reports) itself.
                Err(_) => pool.remove(&(db, proto)),
            };
        });
    }
}

/// Whether an idle connection (non-blocking) is still open: Redis may have
/// restarted, or closed it for idling, since it was made. Anything it sent
/// stays in its buffer.
fn alive(mut stream: &std::net::TcpStream, buf: &mut bytes::BytesMut) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}
