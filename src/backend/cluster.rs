//! Where each hash slot lives, behind Redis Cluster (`redis-cluster://`).
//!
//! fred's cluster client keeps the topology: it reads `CLUSTER SLOTS` from
//! the seeds, follows the nodes, and re-reads it when asked. respseal keeps
//! its own byte-forwarding links per node for the data (see
//! [`super::route`]) and asks fred for the slot map: every [`REFRESH`], and
//! at once when a node answers `MOVED` (a resharding or a failover). Each
//! map carries a version; routers take a new map when the version moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, ClusterInterface};
use fred::types::config::{ClusterDiscoveryPolicy, Config, ConnectionConfig, ReconnectPolicy, ServerConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the slot map is re-read when nothing asks for it sooner.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Fewest time between two re-reads (a burst of MOVED asks once).
const MIN_GAP: Duration = Duration::from_millis(100);

/// Longest wait for a fresh slot map when a redirect names an address the
/// map held does not.
pub const NAME_WAIT: Duration = Duration::from_secs(3);
/// The number of hash slots.
pub const SLOTS: usize = 16384;

/// One reading of the slot map.
#[derive(Debug, Default)]
pub struct SlotMap {
    /// The master of each slot, as an index into `masters`.
    owner: Vec<u16>,
    /// Every master's `host:port`, sorted (the order SCAN walks them in).
    pub masters: Vec<Arc<str>>,
    /// Masters that own no slot yet (from `CLUSTER NODES`): the target of
    /// an `ASK` while the first slot migrates to a new node.
    pub slotless: Vec<Arc<str>>,
}

impl SlotMap {
    /// A map from `(first slot, last slot, master)` ranges.
    pub fn from_ranges(ranges: &[(u16, u16, String)]) -> Self {
        let mut names: Vec<&str> = ranges.iter().map(|r| r.2.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut owner = vec![u16::MAX; SLOTS];
        for (start, end, addr) in ranges {
            let idx = names.binary_search(&addr.as_str()).expect("every range's master is listed") as u16;
            let end = (*end as usize).min(SLOTS - 1);
            if let Some(range) = owner.get_mut(*start as usize..=end) {
                range.fill(idx);
            }
        }
        SlotMap { owner, masters: names.into_iter().map(Arc::from).collect(), slotless: Vec::new() }
    }

    /// The map with the masters `CLUSTER NODES` lists besides those that
    /// own slots.
    pub fn with_slotless(mut self, all: impl IntoIterator<Item = String>) -> Self {
        let mut extra: Vec<Arc<str>> =
            all.into_iter().filter(|a| !self.masters.iter().any(|m| **m == **a)).map(Arc::from).collect();
        extra.sort_unstable();
        extra.dedup();
        self.slotless = extra;
        self
    }

    /// Whether `addr` is a master of the cluster as this map knows it.
    pub fn names(&self, addr: &str) -> bool {
        self.masters.iter().chain(&self.slotless).any(|m| **m == *addr)
    }

    /// The index in `masters` of the master that owns `slot`, if any does.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        let idx = *self.owner.get(slot as usize)? as usize;
        (idx < self.masters.len()).then_some(idx)
    }

    /// The master that owns `slot`, if any does.
    pub fn master_of(&self, slot: u16) -> Option<&str> {
        self.owner(slot).map(|i| &*self.masters[i])
    }

    /// Whether the map knows no master.
    pub fn is_empty(&self) -> bool {
        self.masters.is_empty()
    }
}

/// The hash slot of a key (with `{hash tags}`), as Redis computes it.
pub fn slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// The current slot map, its version, and the way to ask for a new one.
#[derive(Default)]
pub struct Cluster {
    map: RwLock<Arc<SlotMap>>,
    version: AtomicU64,
    refresh: Notify,
    /// Wakes those waiting for a map read after they asked for one.
    read: Notify,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(masters: {:?}, version: {})", self.map().masters, self.version())
    }
}

impl Cluster {
    /// The slot map now.
    pub fn map(&self) -> Arc<SlotMap> {
        Arc::clone(&self.map.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Bumped each time the map changes (0: no map yet).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A node redirected a command (`MOVED`): the map is out of date.
    pub fn stale(&self) {
        self.refresh.notify_one();
    }

    /// Whether the cluster has `addr` as a master: in the map held, or
    /// else in a map read again now (waited for at most [`NAME_WAIT`]). A
    /// redirect is only followed to an address this names.
    pub async fn names(&self, addr: &str) -> bool {
        if self.map().names(addr) {
            return true;
        }
        let read = self.read.notified();
        tokio::pin!(read);
        read.as_mut().enable();
        self.stale();
        let _ = tokio::time::timeout(NAME_WAIT, read).await;
        self.map().names(addr)
    }

    /// `addr` if a redirect may be followed there: the cluster has it as a
    /// master ([`Cluster::names`]). Otherwise counted, logged, and the
    /// redirect's error.
    pub async fn redirect_to(&self, addr: String) -> Result<String, crate::backend::BackendError> {
        if self.names(&addr).await {
            return Ok(addr);
        }
        metrics::counter!("respseal_cluster_redirects_total", "kind" => "unlisted").increment(1);
        tracing::warn!("a cluster node redirected to an address that is not in the slot map; not followed");
        Err(crate::backend::BackendError::Unlisted)
    }

    /// Install a map read from the cluster, if it differs from the one held.
    pub fn install(&self, map: SlotMap) -> bool {
        let mut cur = self.map.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cur.owner == map.owner && cur.masters == map.masters && cur.slotless == map.slotless {
            return false;
        }
        let first = cur.is_empty();
        *cur = Arc::new(map);
        self.version.fetch_add(1, Ordering::AcqRel);
        if !first {
            metrics::counter!("respseal_cluster_map_changes_total").increment(1);
        }
        true
    }
}

/// Follow the cluster through fred until `stop`.
pub async fn follow(
    cluster: Arc<Cluster>,
    seeds: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    tls: Option<crate::tls::BackendTls>,
    stop: CancellationToken,
) {
    let hosts = seeds
        .iter()
        .filter_map(|s| {
            let (_, port) = s.rsplit_once(':')?;
            Some(fred::types::config::Server::new(super::url::host_of(s), port.parse().ok()?))
        })
        .collect();
    let mut config = Config {
        server: ServerConfig::Clustered { hosts, policy: ClusterDiscoveryPolicy::UseCache },
        username,
        password,
        // A cluster that is not formed yet (the usual start order under
        // compose or Kubernetes) is waited for, not given up on.
        fail_fast: false,
        ..Default::default()
    };
    if let Some(tls) = tls {
        config.tls = Some(fred::types::config::TlsConnector::Rustls(tls.connector()).into());
    }
    let connection = ConnectionConfig {
        connection_timeout: Duration::from_secs(2),
        internal_command_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let client = Client::new(config, None, Some(connection), Some(ReconnectPolicy::new_constant(0, 500)));
    let mut task = client.connect();
    let mut last = tokio::time::Instant::now() - REFRESH;
    loop {
        if task.is_finished() && !client.is_connected() {
            // The first connection failed for good (fred gives up on some
            // errors, e.g. a node that has no slots yet): start over.
            tracing::info!("waiting for the cluster (no slot map yet); trying again");
            task = client.connect();
        }
        if client.is_connected() {
            let gap = tokio::time::Instant::now().duration_since(last);
            if gap < MIN_GAP {
                tokio::time::sleep(MIN_GAP - gap).await;
            }
            last = tokio::time::Instant::now();
            match tokio::time::timeout(Duration::from_secs(2), client.sync_cluster()).await {
                Ok(Ok(())) => {
                    if let Some(state) = client.cached_cluster_state() {
                        let ranges: Vec<(u16, u16, String)> = state
                            .slots()
                            .iter()
                            .map(|r| (r.start, r.end, host_port(&r.primary.host, r.primary.port)))
                            .collect();
                        // Masters without slots yet, for ASK during a
                        // migration to a new node (best effort).
                        let all = match tokio::time::timeout(Duration::from_secs(2), client.cluster_nodes::<String>())
                            .await
                        {
                            Ok(Ok(text)) => masters_in_nodes(&text),
                            _ => Vec::new(),
                        };
                        if cluster.install(SlotMap::from_ranges(&ranges).with_slotless(all)) {
                            tracing::info!(masters = ?cluster.map().masters, "cluster slot map read");
                        }
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the cluster slot map"),
                Err(_) => tracing::warn!("reading the cluster slot map timed out"),
            }
        }
        cluster.read.notify_waiters();
        let wait = if cluster.version() == 0 { Duration::from_millis(200) } else { REFRESH };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = cluster.refresh.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let _ = client.quit().await;
}

/// The `host:port` of every master in a `CLUSTER NODES` answer that is
/// connected and not failing.
fn masters_in_nodes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let (addr, flags) = (f.get(1)?, f.get(2)?);
            let flags: Vec<&str> = flags.split(',').collect();
            let bad = ["fail", "fail?", "handshake", "noaddr"];
            if !flags.contains(&"master") || flags.iter().any(|x| bad.contains(x)) {
                return None;
            }
            let addr = addr.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
                .then(|| host_port(host.trim_matches(['[', ']']), port))
        })
        .collect()
}

/// `host:port` as a socket address string (IPv6 hosts bracketed).
pub fn host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_owners() {
        // Redis's own examples (cluster-spec): hash tags hash the tag only.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        let map =
            SlotMap::from_ranges(&[(0, 5460, "b:2".into()), (5461, 10922, "a:1".into()), (10923, 16383, "c:3".into())]);
        assert_eq!(map.masters.iter().map(|m| &**m).collect::<Vec<_>>(), vec!["a:1", "b:2", "c:3"]);
        assert_eq!(
            (map.master_of(0), map.master_of(5461), map.master_of(16383)),
            (Some("b:2"), Some("a:1"), Some("c:3"))
        );
        let partial = SlotMap::from_ranges(&[(0, 10, "a:1".into())]);
        assert_eq!(partial.master_of(11), None);
        let c = Cluster::default();
        assert!(c.install(SlotMap::from_ranges(&[(0, 16383, "a:1".into())])));
        assert!(!c.install(SlotMap::from_ranges(&[(0, 16383, "a:1".into())])));
        assert_eq!(c.version(), 1);
        let map = SlotMap::from_ranges(&[(0, 16383, "10.0.0.1:7000".into())]).with_slotless(masters_in_nodes(
            "a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383\n\
             b2 10.0.0.2:7000@17000,node-b master - 0 0 2 connected\n\
             c3 10.0.0.3:7000@17000 slave a1 0 0 1 connected\n\
             d4 10.0.0.4:7000@17000 master,fail - 0 0 4 disconnected\n\
             e5 :0@0 master,noaddr - 0 0 5 disconnected\n",
        ));
        assert!(map.names("10.0.0.1:7000") && map.names("10.0.0.2:7000"));
        assert!(!map.names("10.0.0.3:7000") && !map.names("10.0.0.4:7000") && !map.names("10.0.0.9:7000"));
        assert_eq!(map.slotless.len(), 1);
    }
}
