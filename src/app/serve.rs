//! `respseal serve`: the workers, the listeners, the admin endpoint and
//! graceful shutdown, started from a validated configuration.

use std::process::ExitCode;
use std::sync::Arc;

use crate::backend::Backend;
use crate::backend::conn::ConnSettings;
use crate::backend::pool::Spares;
use crate::commands::own;
use crate::config::Config;
use crate::live::Live;
use crate::protocol::Proto;
use crate::protocol::frame::Frame;
use crate::protocol::request::Limits;
use crate::server::{self, ServeOptions, Workers};
use crate::session::Context;

use super::cli::ServeArgs;
use super::reload::{reload_on_sighup, reloadable};
use super::topology::follow_sentinels;
use super::{EX_UNAVAILABLE, runtime};

/// Redis's own `proto-max-bulk-len` when it is not told (Redis's default,
/// and what respseal assumes when `CONFIG GET` is not allowed or Redis is
/// not reachable at start).
pub(crate) const REDIS_DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;

/// Agree with Redis on the largest argument: a client bulk Redis would
/// refuse is refused by respseal (that client only, with Redis's protocol
/// error) instead of reaching a link that Redis would then close, and a
/// value that sealing would grow past the limit is refused before it is
/// sealed (the session checks `max_bulk`).
pub(crate) async fn learn_backend_limits(cfg: &mut Config) {
    let settings = Arc::new(conn_settings(cfg));
    let cmd = crate::protocol::encode::command(&[own::CONFIG_GET[0], own::CONFIG_GET[1], "proto-max-bulk-len"]);
    let learned = match crate::backend::conn::oneshot(&settings, &cmd).await {
        Ok(reply) => Frame::new(&reply, Proto::Resp2)
            .elements()
            .and_then(|els| els.get(1).and_then(|v| Frame::new(v, Proto::Resp2).payload()))
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<usize>().ok()),
        Err(_) => None,
    };
    let limit = learned.unwrap_or(REDIS_DEFAULT_MAX_BULK);
    if learned.is_none() {
        tracing::info!(assumed = limit, "Redis's proto-max-bulk-len could not be read; assuming its default");
    }
    if limit < cfg.max_bulk_bytes {
        tracing::info!(
            limit,
            "limits.max_bulk_bytes lowered to Redis's proto-max-bulk-len (a larger argument would close the link)"
        );
        cfg.max_bulk_bytes = limit;
    }
}

/// One context per worker thread: each has its own backend (its share of
/// the shared links); the reloadable settings are shared.
pub(crate) fn contexts(cfg: &Config, live: &Arc<Live>) -> Vec<Arc<Context>> {
    let budget = Arc::new(crate::limits::Budget::new(cfg.max_buffered_bytes));
    let auth_throttle = Arc::new(crate::auth::AuthThrottle::default());
    // Ready connections for pinning: one pool for all workers (plain TCP
    // only: a TLS session cannot move between workers).
    // Code running in Redis, counted across workers.
    let code = Arc::new(crate::backend::conn::CodeRunning::default());
    let spares = (!cfg.dedicated && cfg.backend_tls.is_none() && cfg.topology.is_none() && cfg.cluster.is_none())
        .then(|| Arc::new(Spares::default()));
    (0..cfg.threads)
        .map(|n| {
            let settings = ConnSettings { code: Arc::clone(&code), ..conn_settings(cfg) };
            // The group's links divided among the workers, at least one each.
            let links = cfg.shared_links / cfg.threads + usize::from(n < cfg.shared_links % cfg.threads);
            Arc::new(Context {
                backend: Backend::new(settings, links.max(1), spares.clone()),
                limits: Limits {
                    max_bulk: cfg.max_bulk_bytes,
                    max_frame: cfg.max_frame_bytes,
                    max_args: cfg.max_args,
                    unauthenticated: false,
                },
                max_inflight: cfg.max_inflight,
                output: cfg.output,
                command_timeout: cfg.command_timeout,
                budget: Arc::clone(&budget),
                auth_throttle: Arc::clone(&auth_throttle),
                dedicated_mode: cfg.dedicated,
                idle_timeout: cfg.idle_timeout,
                live: Arc::clone(live),
            })
        })
        .collect()
}

pub(crate) fn serve(mut cfg: Config, args: &ServeArgs) -> ExitCode {
    let rt = runtime();
    let args = args.clone();
    rt.block_on(async move {
        follow_sentinels(&cfg).await;
        let bind = |addr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                tracing::error!(listen = %addr, error = %e, "cannot listen");
                ExitCode::from(EX_UNAVAILABLE)
            })
        };
        let main = match bind(cfg.listen).await {
            Ok(l) => l,
            Err(code) => return code,
        };
        let plaintext = match cfg.plaintext_listen {
            Some(addr) => match bind(addr).await {
                Ok(l) => Some(l),
                Err(code) => return code,
            },
            None => None,
        };
        let admin = match cfg.admin_listen {
            Some(addr) => match bind(addr).await {
                Ok(l) => Some(l),
                Err(code) => return code,
            },
            None => None,
        };
        // The recorder first, so that everything counted from here on shows.
        let admin = match admin.map(|l| crate::admin::install_recorder().map(|h| (l, h))).transpose() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the metrics recorder");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        let main_tls = cfg.tls.is_some();
        learn_backend_limits(&mut cfg).await;
        let live = Arc::new(Live::new(reloadable(&mut cfg)));
        let workers = match Workers::start(contexts(&cfg, &live), cfg.idle_yield) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot start worker threads");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        let stop = tokio_util::sync::CancellationToken::new();
        if let Some((listener, handle)) = admin {
            let ready_live = Arc::clone(&live);
            let ready_cluster = cfg.cluster.clone();
            let ready_topology = cfg.topology.clone();
            let state = crate::admin::AdminState {
                handle,
                cache: Default::default(),
                backend: Arc::new(conn_settings(&cfg)),
                ready: Arc::new(move || {
                    let (_, cur) = ready_live.load();
                    match &cur.sealer {
                        Some(s) if s.keyring().primary().is_none() => Some("the keyring has no primary key".into()),
                        // Behind a cluster that is not formed yet: respseal
                        // keeps asking, and serves once it knows the slots.
                        _ if ready_cluster.as_ref().is_some_and(|c| c.map().is_empty()) => {
                            Some("the cluster slot map is not known yet".into())
                        }
                        _ if ready_topology.as_ref().is_some_and(|t| t.master().is_none()) => {
                            Some("no sentinel has named the master yet".into())
                        }
                        _ => None,
                    }
                }),
            };
            tracing::info!(admin_listen = ?listener.local_addr().ok(), "admin endpoints ready");
            tokio::spawn(crate::admin::serve(listener, state, stop.clone().cancelled_owned()));
        }
        tokio::spawn(reload_on_sighup(args, Arc::clone(&live), cfg.backend_tls.clone(), cfg.summary()));
        tracing::info!(
            listen = %cfg.listen,
            tls = main_tls,
            backend = %cfg.backend,
            mode = if cfg.dedicated { "dedicated" } else { "shared" },
            threads = cfg.threads,
            idle_yield = cfg.idle_yield,
            "respseal ready"
        );
        let opts = ServeOptions { max_clients: cfg.max_clients, shutdown_grace: cfg.shutdown_grace };
        let listeners = server::Listeners { main, main_tls, plaintext };
        server::run(listeners, workers, opts, live, shutdown_signal()).await;
        stop.cancel();
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// How every backend connection is opened, from the configuration.
pub(crate) fn conn_settings(cfg: &Config) -> ConnSettings {
    ConnSettings {
        url: cfg.backend.clone(),
        connect_timeout: cfg.connect_timeout,
        command_timeout: cfg.command_timeout,
        tls: cfg.backend_tls.clone(),
        topology: cfg.topology.clone(),
        cluster: cfg.cluster.clone(),
        code: Arc::default(),
        member_of: None,
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail at startup");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
