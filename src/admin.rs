//! The admin HTTP listener (`admin_listen`): `/metrics` in the Prometheus
//! text format, `/healthz` (200 while the process lives) and `/readyz`
//! (200 when the keyring is loaded and Redis answers a PING, 503 with the
//! reason otherwise). Off unless configured. Redis's answer is checked at
//! most once per [`READY_TTL`], however often `/readyz` is asked: a probe
//! storm opens no storm of Redis connections.
//!
//! HTTP is axum's; rendering is metrics-exporter-prometheus's. The hot-path
//! counters live per thread in [`crate::stats`]: a scrape sums them and
//! hands the sums to the exporter as absolute counter values, then appends
//! the command latency histogram, which the exporter cannot take as
//! pre-aggregated buckets, in the same exposition format.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::backend::conn::{self, ConnSettings};
use crate::protocol::Proto;
use crate::protocol::frame::Frame;
use crate::stats::{self, Counter, Family, LATENCY_BOUNDS_US, Outcome};

/// Install the Prometheus recorder for the whole process (once; without
/// it every `metrics` macro is a no-op).
///
/// # Errors
/// When a recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new().install_recorder().map_err(|e| e.to_string())
}

/// Whether the proxy can serve: `None` when ready, or why not.
pub type ReadyCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How long a `/readyz` answer about Redis is reused.
pub const READY_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The last answer about Redis, and when it was found.
type ReadyCache = Arc<tokio::sync::Mutex<Option<(std::time::Instant, StatusCode, String)>>>;

/// What the handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// The last `/readyz` check of Redis (one check at a time).
    pub cache: ReadyCache,
    /// The installed recorder.
    pub handle: PrometheusHandle,
    /// How `/readyz` reaches Redis.
    pub backend: Arc<ConnSettings>,
    /// respseal's own readiness (the keyring is loaded …).
    pub ready: ReadyCheck,
}

/// Most admin connections open at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest time to receive a request's header.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest life of an admin connection (a scraper's kept-alive connection
/// is closed after this and reconnects).
pub const CONNECTION_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Serve the admin endpoints on `listener` until `shutdown` completes.
///
/// The admin port can never take what the Redis port needs: at most
/// [`MAX_CONNECTIONS`] connections are open (one past it is accepted and
/// closed at once, so it holds no file descriptor and fills no backlog), a
/// header must arrive within [`HEADER_TIMEOUT`], a connection lives at most
/// [`CONNECTION_TIME`], and the accept loop is its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!("respseal_admin_connections_refused_total").increment(1);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
            drop(permit);
        });
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let body = render(&state.handle);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if let Some(why) = (state.ready)() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"));
    }
    // Held across the check: concurrent requests wait for one PING.
    let mut cache = state.cache.lock().await;
    if let Some((at, status, text)) = cache.as_ref()
        && at.elapsed() < READY_TTL
    {
        return (*status, text.clone());
    }
    let (status, text) = ping(&state).await;
    *cache = Some((std::time::Instant::now(), status, text.clone()));
    (status, text)
}

async fn ping(state: &AdminState) -> (StatusCode, String) {
    match conn::oneshot(&state.backend, &crate::protocol::encode::command(&[crate::commands::own::PING])).await {
        Ok(reply) if Frame::new(&reply, Proto::Resp2).simple().is_some() => (StatusCode::OK, "ready\n".to_string()),
        Ok(reply) if Frame::new(&reply, Proto::Resp2).error_line().is_some_and(|l| l.starts_with(b"LOADING")) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: Redis is loading its dataset\n".into())
        }
        // Redis's words are not echoed: they could carry anything.
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: Redis refused PING\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// The whole exposition: the exporter's output with the per-thread sums
/// folded in, then the latency histogram.
pub fn render(handle: &PrometheusHandle) -> String {
    let snap = stats::snapshot();
    for f in Family::ALL {
        for o in Outcome::ALL {
            let v = snap.commands[f as usize][o as usize];
            if v > 0 {
                metrics::counter!("respseal_commands_total", "family" => f.name(), "outcome" => o.name()).absolute(v);
            }
        }
    }
    for (name, c) in [
        ("respseal_client_read_bytes_total", Counter::BytesIn),
        ("respseal_client_written_bytes_total", Counter::BytesOut),
        ("respseal_values_sealed_total", Counter::Sealed),
        ("respseal_values_opened_total", Counter::Opened),
    ] {
        metrics::counter!(name).absolute(snap.counters[c as usize]);
    }
    let mut out = handle.render();
    let name = "respseal_command_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time from a request's arrival to its reply's, by command family.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for f in Family::ALL {
        let buckets = &snap.latency[f as usize];
        let count: u64 = buckets.iter().sum();
        if count == 0 {
            continue;
        }
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += buckets[i];
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{family=\"{}\",le=\"{le}\"}} {cumulative}", f.name());
        }
        let _ = writeln!(out, "{name}_bucket{{family=\"{}\",le=\"+Inf\"}} {count}", f.name());
        let sum = snap.latency_sum_us[f as usize] as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{family=\"{}\"}} {sum}", f.name());
        let _ = writeln!(out, "{name}_count{{family=\"{}\"}} {count}", f.name());
    }
    out
}
