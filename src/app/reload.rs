//! SIGHUP: reload the configuration file; an invalid file changes nothing.

use std::sync::Arc;

use crate::config::Config;
use crate::live::{Live, Reloadable};
use crate::tls::BackendTls;

use super::cli::ServeArgs;

/// The reloadable part of a configuration (taken out of it).
pub(crate) fn reloadable(cfg: &mut Config) -> Reloadable {
    Reloadable {
        sealer: cfg.sealer.take().map(Arc::new),
        users: Arc::new(std::mem::take(&mut cfg.users)),
        tls: cfg.tls.take(),
    }
}

/// Reload the configuration on every SIGHUP: the keyring, rules, users
/// and TLS certificates are replaced for every connection (the backend's
/// certificates, `backend_tls`, in `backend` too, for the connections
/// opened from then on); an invalid file changes nothing. Settings that
/// need a restart are named in the log.
pub(crate) async fn reload_on_sighup(args: ServeArgs, live: Arc<Live>, backend: Option<BackendTls>, started: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler; reload is unavailable");
        return;
    };
    while hup.recv().await.is_some() {
        match Config::load(args.config.as_deref(), &args) {
            Ok(mut cfg) => {
                for w in &cfg.warnings {
                    tracing::warn!("{w}");
                }
                if cfg.summary() != started {
                    tracing::warn!(
                        "reload: listen, backend, mode, threads, limits, timeouts and admin_listen \
                         take effect at the next restart; the keyring, rules, users and TLS \
                         certificates (client side and backend) are reloaded"
                    );
                }
                // What the new rules stop sealing that the running ones seal.
                let running = live.load().1.sealer.clone();
                let mut dropped = running.as_ref().map_or_else(Vec::new, |r| r.rules().dropped_by(cfg.rules()));
                let fingerprint =
                    |s: Option<&crate::sealing::Sealer>| s.and_then(|s| s.name_key()).map(|k| k.fingerprint());
                if let Some(old) = fingerprint(running.as_deref())
                    && Some(&old) != fingerprint(cfg.sealer.as_ref()).as_ref()
                {
                    dropped.push("the name key changed or was removed: pseudonymised names would not be found".into());
                }
                if !dropped.is_empty() {
                    metrics::counter!("respseal_reload_dropped_rules_total").increment(dropped.len() as u64);
                    for d in &dropped {
                        tracing::warn!(change = %d, "reload: a sealing rule is dropped or narrowed");
                    }
                    if !cfg.allow_dropping_rules {
                        metrics::counter!("respseal_config_reloads_total", "outcome" => "refused").increment(1);
                        tracing::error!(
                            "configuration not reloaded: it stops sealing names the running one seals (values \
                             sealed there would come back as envelopes, new writes would be plaintext); set \
                             allow_dropping_rules = true to reload it anyway"
                        );
                        continue;
                    }
                }
                let keys = cfg.sealer.as_ref().map(|s| s.keyring().describe()).unwrap_or_default();
                if let (Some(running), Some(next)) = (&backend, &cfg.backend_tls) {
                    running.reload_from(next);
                }
                let generation = live.store(reloadable(&mut cfg));
                metrics::counter!("respseal_config_reloads_total", "outcome" => "ok").increment(1);
                tracing::info!(generation, keys = %keys, "configuration reloaded");
            }
            Err(errors) => {
                metrics::counter!("respseal_config_reloads_total", "outcome" => "error").increment(1);
                for e in &errors.0 {
                    tracing::error!(error = %e, "reload rejected");
                }
                tracing::error!(count = errors.0.len(), "configuration not reloaded; the running one is kept");
            }
        }
    }
}
