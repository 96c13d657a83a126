//! Behind Sentinel or Redis Cluster: follow the topology with fred's
//! clients for as long as the process runs.

use std::sync::Arc;

use crate::config::Config;
use crate::tls::BackendTls;
use tokio_util::sync::CancellationToken;

/// Wait, at most twice the connect timeout, until `known`.
pub(crate) async fn wait_known(cfg: &Config, known: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout * 2;
    while !known() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Behind Sentinel or Redis Cluster: follow the topology (until the
/// process ends) and wait for the master (the slot map) to be known.
pub(crate) async fn follow_sentinels(cfg: &Config) {
    let (user, pass) = (cfg.backend.username.clone(), cfg.backend.password.clone());
    if let (Some(cluster), Some(seeds)) = (&cfg.cluster, &cfg.backend.cluster) {
        let (cluster_, seeds) = (Arc::clone(cluster), seeds.clone());
        spawn_follower(cfg.backend_tls.clone(), move |tls, stop| {
            crate::backend::cluster::follow(Arc::clone(&cluster_), seeds.clone(), user.clone(), pass.clone(), tls, stop)
        });
        wait_known(cfg, || cluster.version() != 0).await;
        match cluster.version() {
            0 => tracing::warn!("the cluster's slot map is not known yet; commands fail until it is"),
            _ => tracing::info!(masters = ?cluster.map().masters, "following the cluster"),
        }
        return;
    }
    let (Some(topology), Some(target)) = (&cfg.topology, &cfg.backend.sentinel) else { return };
    let (topology_, target) = (Arc::clone(topology), target.clone());
    spawn_follower(cfg.backend_tls.clone(), move |tls, stop| {
        crate::backend::topology::follow(Arc::clone(&topology_), target.clone(), user.clone(), pass.clone(), tls, stop)
    });
    wait_known(cfg, || topology.master().is_some()).await;
    match topology.master() {
        Some(m) => tracing::info!(master = %m, "the sentinels name the master"),
        None => tracing::warn!("no sentinel named the master yet; commands fail until one does"),
    }
}

/// Run a topology follower (fred's clients for Sentinel or the cluster's
/// slot map) until the process ends, started again with the new
/// certificates whenever a reload replaces the backend's: fred's clients
/// keep the ones they were made with.
pub(crate) fn spawn_follower<F, Fut>(tls: Option<BackendTls>, start: F)
where
    F: Fn(Option<BackendTls>, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let Some(tls) = tls else { return start(None, CancellationToken::new()).await };
        let mut changes = tls.changes();
        loop {
            let stop = CancellationToken::new();
            let run = tokio::spawn(start(Some(tls.clone()), stop.clone()));
            // The sender lives as long as `tls`: this only ends on a change.
            let _ = changes.changed().await;
            tracing::info!("backend TLS certificates reloaded; the topology follower reconnects with them");
            stop.cancel();
            let _ = run.await;
        }
    });
}
