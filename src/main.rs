//! The `respseal` command: `serve` (default), `keygen`, `check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use respseal::backend::Backend;
use respseal::backend::conn::ConnSettings;
use respseal::backend::pool::Spares;
use respseal::config::{Config, Overrides};
use respseal::live::{Live, Reloadable};
use respseal::protocol::request::Limits;
use respseal::server::{self, ServeOptions, Workers};
use respseal::session::Context;
use respseal::tls::BackendTls;
use tokio_util::sync::CancellationToken;

/// EX_USAGE: invalid configuration or command line.
const EX_USAGE: u8 = 64;
/// EX_DATAERR: values in Redis that the configured keyring does not open.
const EX_DATAERR: u8 = 65;
/// EX_UNAVAILABLE: a required service (listen port, backend) is unavailable.
const EX_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(name = "respseal", version, about = "Redis proxy that seals the values of sensitive keys")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy (the default).
    Serve(ServeArgs),
    /// Validate the configuration, check that the backend answers, and open
    /// a sample of the sealed values in Redis with the configured keyring.
    Check(CheckArgs),
    /// Re-seal every value that is not under the primary key (after a key
    /// rotation), with compare-and-set; resumable.
    Rewrap(RewrapArgs),
    /// Envelope metadata (version, key id, age, re-sealed flag) of the values
    /// under sealed names, read from Redis; never a value.
    Inspect(InspectArgs),
    /// Write a new key file (32 random bytes, random key id), mode 0600.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct CheckArgs {
    /// Sealed values opened per rule pattern (0: none).
    #[arg(long, default_value_t = 100)]
    sample: u64,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Clone)]
struct RewrapArgs {
    /// Also seal values that have no envelope (legacy plaintext); they are
    /// marked as re-sealed from legacy plaintext.
    #[arg(long)]
    legacy: bool,
    /// Delete values re-sealed from legacy plaintext instead of rewrapping
    /// them (compare-and-delete).
    #[arg(long)]
    drop_resealed: bool,
    /// Most keys looked at per second [default: no limit].
    #[arg(long)]
    max_per_sec: Option<u32>,
    /// Resume from a cursor printed by an earlier run (PATTERN:CURSOR).
    #[arg(long)]
    cursor: Option<String>,
    /// Key patterns to walk [default: the configured rules' patterns].
    #[arg(value_name = "PATTERN")]
    patterns: Vec<String>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Clone)]
struct InspectArgs {
    /// Only values re-sealed from legacy plaintext (`legacy = "reseal"`).
    #[arg(long)]
    resealed: bool,
    /// Delete the values re-sealed from legacy plaintext (each with a
    /// compare-and-delete: a value rewritten meanwhile is kept).
    #[arg(long, conflicts_with = "resealed")]
    drop_resealed: bool,
    /// Key patterns to walk [default: the configured rules' patterns].
    #[arg(value_name = "PATTERN")]
    patterns: Vec<String>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Configuration file.
    #[arg(long, short, env = "RESPSEAL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to accept clients on [default: 127.0.0.1:6380].
    #[arg(long, env = "RESPSEAL_LISTEN")]
    listen: Option<String>,
    /// Redis to forward to: redis://[user:pass@]host:port[/db] [default: redis://127.0.0.1:6379].
    #[arg(long, env = "RESPSEAL_BACKEND")]
    backend: Option<String>,
    /// Give every client its own backend connection (same as --mode dedicated).
    #[arg(long)]
    dedicated: bool,
    /// Link mode: shared (default) or dedicated.
    #[arg(long, env = "RESPSEAL_MODE")]
    mode: Option<String>,
    /// Shared backend connections per (database, protocol) group [default: 2].
    #[arg(long, env = "RESPSEAL_SHARED_LINKS")]
    shared_links: Option<usize>,
    /// Worker threads serving clients [default: one per CPU].
    #[arg(long, env = "RESPSEAL_THREADS")]
    threads: Option<usize>,
    /// Yield the CPU once before each wait for I/O: true or false [default:
    /// true]. Faster when clients or Redis share the proxy's cores; false
    /// gives a lower p99 there.
    #[arg(long, env = "RESPSEAL_IDLE_YIELD", value_name = "BOOL")]
    idle_yield: Option<bool>,
    /// Most clients connected at once [default: 10000].
    #[arg(long, env = "RESPSEAL_MAX_CLIENTS")]
    max_clients: Option<usize>,
    /// Log filter: error, warn, info, debug or a tracing filter [default: info].
    #[arg(long, env = "RESPSEAL_LOG")]
    log: Option<String>,
    /// Serve /metrics, /healthz and /readyz on this address [default: off].
    #[arg(long, env = "RESPSEAL_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Seal keys matching this Redis glob pattern (repeatable), e.g. 'sess:*'.
    #[arg(long = "seal", value_name = "PATTERN", env = "RESPSEAL_SEAL", value_delimiter = ',')]
    seal: Vec<String>,
    /// Key file (from `respseal keygen`) used as the primary key.
    #[arg(long, env = "RESPSEAL_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Load key files that group or others can read or write, or that
    /// another user owns (refused by default, as ssh refuses such private
    /// keys); each one is named in the log.
    #[arg(long, env = "RESPSEAL_ALLOW_INSECURE_KEY_FILE")]
    allow_insecure_key_file: bool,
    /// Serve clients without `[[users]]` on an address other hosts can
    /// reach (refused by default, as Redis's protected mode refuses it).
    #[arg(long, env = "RESPSEAL_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,
    /// Serve the admin endpoints on an address other hosts can reach
    /// (refused by default).
    #[arg(long, env = "RESPSEAL_ADMIN_ALLOW_REMOTE")]
    admin_allow_remote: bool,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            backend: self.backend.clone(),
            mode: if self.dedicated { Some("dedicated".into()) } else { self.mode.clone() },
            shared_links: self.shared_links,
            threads: self.threads,
            idle_yield: self.idle_yield,
            max_clients: self.max_clients,
            log: self.log.clone(),
            admin_listen: self.admin_listen.clone(),
            seal: self.seal.clone(),
            key_file: self.key_file.clone(),
            allow_insecure_key_file: self.allow_insecure_key_file,
            allow_unauthenticated: self.allow_unauthenticated,
            admin_allow_remote: self.admin_allow_remote,
        }
    }
}

/// mimalloc instead of the system allocator: a proxied request still makes a
/// few short-lived allocations (frames, reply slices). `bench/ab.sh 16 7`,
/// proxy CPU per request at depth 16, GET/SET: 1.98/2.08 us with glibc,
/// 1.84/2.02 us with mimalloc; depth 1 the same. Built without transparent
/// huge pages (the `no_thp` feature): with them, each idle client cost
/// 22.5 KiB instead of 10.5 KiB (shared mode), and 45 instead of 16 KiB
/// (dedicated mode; glibc: 20.5).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EX_USAGE),
            };
        }
    };
    match cli.cmd {
        Some(Cmd::Keygen { out }) => keygen(&out),
        Some(Cmd::Check(args)) => with_config(&args.serve, |cfg| check(cfg, args.sample)),
        Some(Cmd::Rewrap(args)) => rewrap(&args),
        Some(Cmd::Inspect(args)) => inspect(&args),
        Some(Cmd::Serve(args)) => with_config(&args, |cfg| serve(cfg, &args)),
        None => with_config(&cli.serve, |cfg| serve(cfg, &cli.serve)),
    }
}

fn keygen(out: &std::path::Path) -> ExitCode {
    match respseal::crypto::keyring::generate_key_file(out) {
        Ok(id) => {
            println!("wrote key {} to {}", respseal::crypto::keyring::format_key_id(id), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("respseal keygen: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

fn with_config(args: &ServeArgs, f: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(cfg) => {
            if let Err(e) = respseal::clock::check_clock() {
                eprintln!("respseal: {e}");
                return ExitCode::from(EX_USAGE);
            }
            let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log).unwrap_or_else(|_| "info".into());
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            f(cfg)
        }
        Err(errors) => {
            eprint!("respseal: {errors}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// Redis's own `proto-max-bulk-len` when it is not told (Redis's default,
/// and what respseal assumes when `CONFIG GET` is not allowed or Redis is
/// not reachable at start).
const REDIS_DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;

/// Agree with Redis on the largest argument: a client bulk Redis would
/// refuse is refused by respseal (that client only, with Redis's protocol
/// error) instead of reaching a link that Redis would then close, and a
/// value that sealing would grow past the limit is refused before it is
/// sealed (the session checks `max_bulk`).
async fn learn_backend_limits(cfg: &mut Config) {
    let settings = Arc::new(conn_settings(cfg));
    let cmd = respseal::protocol::encode::command(&["CONFIG", "GET", "proto-max-bulk-len"]);
    let learned = match respseal::backend::conn::oneshot(&settings, &cmd).await {
        Ok(reply) => respseal::protocol::frame::split_array(&reply)
            .and_then(|els| els.get(1).cloned())
            .and_then(|v| respseal::inspect::bulk(&v))
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

fn runtime() -> tokio::runtime::Runtime {
    // Accepting, signals and `check`; clients are served by the workers.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts: it only needs threads and an epoll fd")
}

/// The reloadable part of a configuration (taken out of it).
fn reloadable(cfg: &mut Config) -> Reloadable {
    Reloadable {
        sealer: cfg.sealer.take().map(Arc::new),
        users: Arc::new(std::mem::take(&mut cfg.users)),
        tls: cfg.tls.take(),
    }
}

/// One context per worker thread: each has its own backend (its share of
/// the shared links); the reloadable settings are shared.
fn contexts(cfg: &Config, live: &Arc<Live>) -> Vec<Arc<Context>> {
    let budget = Arc::new(respseal::limits::Budget::new(cfg.max_buffered_bytes));
    let auth_throttle = Arc::new(respseal::auth::AuthThrottle::default());
    // Ready connections for pinning: one pool for all workers (plain TCP
    // only: a TLS session cannot move between workers).
    // Code running in Redis, counted across workers.
    let code = Arc::new(respseal::backend::conn::CodeRunning::default());
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

fn serve(mut cfg: Config, args: &ServeArgs) -> ExitCode {
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
        let admin = match admin.map(|l| respseal::admin::install_recorder().map(|h| (l, h))).transpose() {
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
            let state = respseal::admin::AdminState {
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
            tokio::spawn(respseal::admin::serve(listener, state, stop.clone().cancelled_owned()));
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

/// Reload the configuration on every SIGHUP: the keyring, rules, users
/// and TLS certificates are replaced for every connection (the backend's
/// certificates, `backend_tls`, in `backend` too, for the connections
/// opened from then on); an invalid file changes nothing. Settings that
/// need a restart are named in the log.
async fn reload_on_sighup(args: ServeArgs, live: Arc<Live>, backend: Option<BackendTls>, started: String) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler; reload is unavailable");
        return;
    };
    while hup.recv().await.is_some() {
        match Config::load(args.config.as_deref(), &args.overrides()) {
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
                let dropped = running.as_ref().map_or_else(Vec::new, |r| r.rules().dropped_by(cfg.rules()));
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

/// How every backend connection is opened, from the configuration.
fn conn_settings(cfg: &Config) -> ConnSettings {
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

/// Wait, at most twice the connect timeout, until `known`.
async fn wait_known(cfg: &Config, known: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout * 2;
    while !known() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Behind Sentinel or Redis Cluster: follow the topology (until the
/// process ends) and wait for the master (the slot map) to be known.
async fn follow_sentinels(cfg: &Config) {
    let (user, pass) = (cfg.backend.username.clone(), cfg.backend.password.clone());
    if let (Some(cluster), Some(seeds)) = (&cfg.cluster, &cfg.backend.cluster) {
        let (cluster_, seeds) = (Arc::clone(cluster), seeds.clone());
        spawn_follower(cfg.backend_tls.clone(), move |tls, stop| {
            respseal::backend::cluster::follow(
                Arc::clone(&cluster_),
                seeds.clone(),
                user.clone(),
                pass.clone(),
                tls,
                stop,
            )
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
        respseal::backend::topology::follow(
            Arc::clone(&topology_),
            target.clone(),
            user.clone(),
            pass.clone(),
            tls,
            stop,
        )
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
fn spawn_follower<F, Fut>(tls: Option<BackendTls>, start: F)
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

/// Where the operator commands (inspect, check, rewrap) work: the backend,
/// or behind Redis Cluster each master in turn (after the slot map is
/// read).
fn operator_targets(cfg: &Config) -> Vec<Arc<ConnSettings>> {
    let base = conn_settings(cfg);
    match &cfg.cluster {
        Some(cluster) => cluster.map().masters.iter().map(|m| Arc::new(base.for_node(m))).collect(),
        None => vec![Arc::new(base)],
    }
}

fn inspect(args: &InspectArgs) -> ExitCode {
    let cfg = match Config::load(args.serve.config.as_deref(), &args.serve.overrides()) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("respseal: {errors}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let patterns: Vec<String> = if args.patterns.is_empty() {
        cfg.sealer.as_ref().map(|s| s.rules().patterns().map(str::to_string).collect()).unwrap_or_default()
    } else {
        args.patterns.clone()
    };
    if patterns.is_empty() {
        eprintln!("respseal: inspect: give a PATTERN or configure rules");
        return ExitCode::from(EX_USAGE);
    }
    let select = match (args.resealed, args.drop_resealed) {
        (_, true) => respseal::inspect::Select::DropResealed,
        (true, _) => respseal::inspect::Select::Resealed,
        _ => respseal::inspect::Select::All,
    };
    let now = respseal::clock::now_unix();
    runtime().block_on(async move {
        follow_sentinels(&cfg).await;
        let mut stdout = std::io::stdout();
        let keyring = cfg.sealer.as_ref().map(|s| s.keyring());
        let mut total = Ok(respseal::inspect::Summary::default());
        for settings in operator_targets(&cfg) {
            let one = respseal::inspect::run(&settings, &patterns, select, keyring, now, &mut stdout).await;
            total = total.and_then(|t| one.map(|s| t.merged(&s)));
        }
        match total {
            Ok(s) => {
                println!(
                    "{} keys: {} sealed ({} re-sealed from legacy plaintext), {} without an envelope{}",
                    s.keys,
                    s.sealed,
                    s.resealed,
                    s.plaintext,
                    if select == respseal::inspect::Select::DropResealed {
                        format!(", {} re-sealed values dropped", s.dropped)
                    } else {
                        String::new()
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("respseal: inspect: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        }
    })
}

fn check(cfg: Config, sample: u64) -> ExitCode {
    let rt = runtime();
    rt.block_on(async move {
        println!(
            "configuration: ok (listen {}, backend {}, mode {})",
            cfg.listen,
            cfg.backend,
            if cfg.dedicated { "dedicated" } else { "shared" }
        );
        if let Some(s) = &cfg.sealer {
            println!("keyring: {}", s.keyring().describe());
        }
        follow_sentinels(&cfg).await;
        let targets = operator_targets(&cfg);
        if targets.is_empty() {
            println!("backend: the cluster's slot map could not be read");
            return ExitCode::from(EX_UNAVAILABLE);
        }
        for settings in &targets {
            let db = if cfg.cluster.is_some() { 0 } else { cfg.backend.db };
            if let Err(e) = respseal::backend::conn::open(settings, db, respseal::protocol::Proto::Resp2).await {
                println!("backend: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        }
        println!("backend: ok");
        // Envelopes under names no rule seals any more: read through
        // respseal they are envelopes, not values.
        if sample > 0 {
            let rules = cfg.rules();
            let (mut looked, mut found) = (0, 0);
            for settings in &targets {
                match respseal::rewrap::uncovered(settings, rules, sample.saturating_mul(10)).await {
                    Ok((l, f)) => (looked, found) = (looked + l, found + f),
                    Err(e) => {
                        println!("uncovered: {e}");
                        return ExitCode::from(EX_UNAVAILABLE);
                    }
                }
            }
            if found > 0 {
                println!(
                    "uncovered: {found} of {looked} values under names no rule seals are sealed envelopes \
                     (a sealing rule was dropped or narrowed): through respseal they read as envelopes; \
                     restore the rule before deploying this configuration"
                );
                return ExitCode::from(EX_DATAERR);
            }
            println!("uncovered: {looked} values under names no rule seals, none sealed");
        }
        let Some(sealer) = cfg.sealer.as_ref().filter(|_| sample > 0) else {
            return ExitCode::SUCCESS;
        };
        let patterns: Vec<String> = sealer.rules().patterns().map(str::to_string).collect();
        // Behind a cluster, SAMPLE values from each master.
        let mut sampled = Ok((0, std::collections::BTreeMap::new()));
        for settings in &targets {
            let one = respseal::rewrap::sample(settings, sealer, &patterns, sample).await;
            sampled = sampled.and_then(|(n, mut failed): (u64, std::collections::BTreeMap<&str, u64>)| {
                one.map(|(m, f)| {
                    for (r, k) in f {
                        *failed.entry(r).or_default() += k;
                    }
                    (n + m, failed)
                })
            });
        }
        match sampled {
            Ok((opened, failed)) if failed.is_empty() => {
                println!("sample: {opened} sealed values opened, 0 failed");
                ExitCode::SUCCESS
            }
            Ok((opened, failed)) => {
                let reasons: Vec<String> = failed.iter().map(|(r, n)| format!("{r}={n}")).collect();
                let total: u64 = failed.values().sum();
                println!("sample: {opened} sealed values opened, {total} failed ({})", reasons.join(", "));
                println!("the configured keyring does not open values in Redis: do not deploy it");
                ExitCode::from(EX_DATAERR)
            }
            Err(e) => {
                println!("sample: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        }
    })
}

fn rewrap(args: &RewrapArgs) -> ExitCode {
    use respseal::rewrap::{Counts, Cursor, End, Options};
    let cfg = match Config::load(args.serve.config.as_deref(), &args.serve.overrides()) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("respseal: {errors}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let Some(sealer) = cfg.sealer.as_ref() else {
        eprintln!("respseal: rewrap: no rules are configured, so there is nothing to rewrap");
        return ExitCode::from(EX_USAGE);
    };
    let cursor = match args.cursor.as_deref().map(Cursor::parse) {
        None => Cursor::start(),
        Some(Some(c)) => c,
        Some(None) => {
            eprintln!("respseal: rewrap: --cursor must be PATTERN:CURSOR as printed by rewrap");
            return ExitCode::from(EX_USAGE);
        }
    };
    let patterns = if args.patterns.is_empty() {
        sealer.rules().patterns().map(str::to_string).collect()
    } else {
        args.patterns.clone()
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = Options {
        patterns,
        legacy: args.legacy,
        drop_resealed: args.drop_resealed,
        max_per_sec: args.max_per_sec,
        cursor,
        stop: Arc::clone(&stop),
    };
    if cfg.cluster.is_some() && args.cursor.is_some() {
        eprintln!(
            "respseal: rewrap: behind redis-cluster:// --cursor applies to one master: resume with \
             --backend redis://MASTER (as printed) --cursor …"
        );
        return ExitCode::from(EX_USAGE);
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = terminal.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    });
    let mut last_line = std::time::Instant::now();
    let mut counts = Counts::default();
    let mut last_cursor = opts.cursor.clone();
    let mut last_master: Option<String> = None;
    let result = runtime().block_on(async {
        follow_sentinels(&cfg).await;
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        // Behind a cluster, each master in turn.
        let targets = operator_targets(&cfg);
        let mut result = Ok(End::Done);
        for settings in &targets {
            if cfg.cluster.is_some() {
                eprintln!("rewrap: master {}", settings.url.addr);
                last_master = Some(settings.url.addr.clone());
                last_cursor = opts.cursor.clone();
            }
            result = respseal::rewrap::run(settings, sealer, &opts, &mut counts, |c, cur| {
                last_cursor.clone_from(cur);
                match &bar {
                    Some(b) => b.set_message(format!("{c}  cursor {cur}")),
                    None if last_line.elapsed() >= std::time::Duration::from_secs(2) => {
                        last_line = std::time::Instant::now();
                        eprintln!("rewrap: {c}  cursor {cur}");
                    }
                    None => {}
                }
            })
            .await;
            if !matches!(result, Ok(End::Done)) {
                break;
            }
        }
        result
    });
    let resume = |cur: &dyn std::fmt::Display| match &last_master {
        Some(m) => format!("--backend redis://{m} --cursor {cur} (then the masters after it)"),
        None => format!("--cursor {cur}"),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!("rewrap: {counts}");
    match result {
        Ok(End::Done) if counts.failures() == 0 => ExitCode::SUCCESS,
        Ok(End::Done) => {
            println!("some values did not open with the configured keyring: they were left as they are");
            ExitCode::from(EX_DATAERR)
        }
        Ok(End::Stopped(cur)) => {
            println!("interrupted; resume with {}", resume(&cur));
            ExitCode::from(130)
        }
        Err(e) => {
            println!("rewrap: {e}; resume with {}", resume(&last_cursor));
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail at startup");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
