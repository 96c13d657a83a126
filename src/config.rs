//! Configuration: `config.toml`, overridden by `RESPSEAL_*` environment
//! variables, overridden by command-line flags.
//!
//! The file is parsed with unknown fields rejected (a typo in a security
//! setting must not be silently ignored), then everything is validated and
//! *all* problems are reported together, before any port is bound. An
//! invalid configuration makes the process exit with status 64 (EX_USAGE).
//! `config.toml` at the repository root documents every field.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{User, Users};
use crate::backend::BackendUrl;
use crate::commands::DataType;
use crate::crypto::keyring::FileCheck;
use crate::crypto::{KeySource, KeySpec, KeyState, Keyring};
use crate::limits::{OutputLimit, OutputLimits};
use crate::rules::{FailurePolicy, LegacyPolicy, Rule, Rules};
use crate::sealing::Sealer;
use crate::tls::{self, BackendTls};

use crate::settings::{default_of, env, help};

/// `config.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to accept clients on. Default `127.0.0.1:6380`.
    pub listen: Option<String>,
    /// `redis://[user:pass@]host:port[/db]`. Default `redis://127.0.0.1:6379`.
    pub backend: Option<String>,
    /// `shared` (default) or `dedicated`.
    pub mode: Option<String>,
    /// Shared backend connections per (database, protocol) group, divided
    /// among the worker threads (at least one each). Default 2.
    pub shared_links: Option<usize>,
    /// Worker threads serving clients. Default: one per CPU.
    pub threads: Option<usize>,
    /// Workers yield the CPU once before waiting for I/O (see `idle`).
    /// Default true.
    pub idle_yield: Option<bool>,
    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing filter).
    /// Default `info`.
    pub log: Option<String>,
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`,
    /// `/readyz`). Default: off.
    pub admin_listen: Option<String>,
    /// Protected mode's opt-out: serve clients without `[[users]]` on a
    /// listen address other hosts can reach (not loopback). Default false:
    /// such a configuration is refused, since anyone who reaches the port
    /// would read every sealed value in plaintext.
    pub allow_unauthenticated: Option<bool>,
    /// Serve the admin endpoints on an address other hosts can reach (not
    /// loopback). Default false: refused.
    pub admin_allow_remote: Option<bool>,
    /// Let a reload (SIGHUP) drop or narrow a sealing rule: remove it,
    /// change its pattern or fields, or add a `seal = false` exemption.
    /// Default false: such a reload is refused and the running
    /// configuration kept, since values sealed under the rule would come
    /// back as envelopes and new writes would be stored in plaintext.
    pub allow_dropping_rules: Option<bool>,
    /// TLS for clients: `listen` then speaks TLS only. Default: off.
    pub tls: Option<TlsConfig>,
    /// TLS towards Redis, for a `rediss://` backend.
    pub backend_tls: Option<BackendTlsConfig>,
    /// Size and count limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The proxy's own users; none = no client authentication.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Bound into every sealed value: a value sealed under one namespace does
    /// not open under another. Default `respseal`.
    pub namespace: Option<String>,
    /// Which keys are sealed (first match wins). Default: none.
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
    /// The keyring. Material is always given by reference. Default: none.
    #[serde(default)]
    pub key: Vec<KeyConfig>,
    /// Declared scripts (allowlisted EVAL/EVALSHA with sealed ARGV).
    #[serde(default)]
    pub script: Vec<ScriptConfig>,
    /// The name key (for rules with `names = "pseudonymise"`).
    #[serde(default)]
    pub names: NamesConfig,
}

/// `[[script]]`: a script respseal lets through on sealed keys, sealing
/// the ARGV values it names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// A name for messages.
    pub name: Option<String>,
    /// SHA1 of the script body, 40 hex digits (`SCRIPT LOAD`'s answer).
    pub sha1: String,
    /// ARGV values sealed: `{ argv = N, key = K }` (the string value of
    /// `KEYS[K]`) or `{ argv = N, key = K, field = "F" }` (field F of hash
    /// `KEYS[K]`); positions 1-based, as in Lua.
    #[serde(default)]
    pub seal_argv: Vec<ScriptValueConfig>,
    /// Reply elements opened: `{ key = K [, field = "F"] }` for a reply
    /// that is one value, or `{ index = I, key = K [, field = "F"] }` for
    /// element I (0-based) of an array reply.
    #[serde(default)]
    pub open_reply: Vec<ScriptValueConfig>,
}

/// One position of a `[[script]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptValueConfig {
    /// ARGV position (seal_argv), 1-based.
    pub argv: Option<usize>,
    /// Reply element (open_reply), 0-based.
    pub index: Option<usize>,
    /// KEYS position, 1-based.
    pub key: usize,
    /// Hash field.
    pub field: Option<String>,
}

/// `[[rule]]`: keys matching `pattern` are sealed (or, with `channel`,
/// pub/sub payloads on matching channels).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Redis glob pattern of key names, e.g. `sess:*`.
    pub pattern: Option<String>,
    /// Instead of `pattern`: a glob of pub/sub channels whose PUBLISH and
    /// SPUBLISH payloads are sealed (bound to the channel).
    pub channel: Option<String>,
    /// A hash rule: the values of the hash fields matching this glob are
    /// sealed (bound to key and field), e.g. `sessionAttr:*` or `*`.
    pub fields: Option<String>,
    /// `false`: what this rule matches is exempt from the rules after it
    /// (first match wins). Default true.
    pub seal: Option<bool>,
    /// `nil` (default: the client sees no value) or `error`, when a sealed
    /// value does not open.
    pub on_failure: Option<String>,
    /// Values without the envelope (legacy plaintext): `reject` (default),
    /// `pass` (migration: passed through, counted) or `reseal` (passed
    /// through and re-sealed in Redis).
    pub legacy: Option<String>,
    /// Last day (`YYYY-MM-DD`, UTC, exclusive) on which `pass`/`reseal` apply;
    /// required with them, so migration mode always ends.
    pub legacy_until: Option<String>,
    /// Values sealed more than this many seconds ago do not open. Default:
    /// no limit.
    pub max_age_secs: Option<u64>,
    /// With `max_age_secs`: seconds a value's `issued_at` may lie in the
    /// future (clock skew between proxies) before it does not open
    /// (reason `future`). Default 300.
    pub max_future_skew_secs: Option<u64>,
    /// Collection types whose members may be stored as plaintext under
    /// names this rule matches: any of `list`, `set`, `zset`, `stream`,
    /// `geo`, `hyperloglog`. Default: none (such commands on a sealed name
    /// are refused, because their members are never sealed).
    pub allow_plaintext: Option<Vec<String>>,
    /// `pseudonymise`: every key name starting with this rule's literal
    /// prefix (the pattern up to its first glob character) is stored in
    /// Redis under a pseudonym (`[names]` key); `plain` (default) leaves
    /// names as they are.
    pub names: Option<String>,
}

/// `[names]`: the key of pseudonymised key names (rules with
/// `names = "pseudonymise"`), given by reference like `[[key]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesConfig {
    /// Key file written by `respseal keygen` (a key of its own: never one
    /// of the keyring's).
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the 64 hex digits of material.
    pub key_env: Option<String>,
}

/// `[tls]`: clients connect with TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Private key, PEM.
    pub key_file: PathBuf,
    /// CA that signs the client certificates: with it, clients must
    /// present one (mutual TLS). Default: none.
    pub client_ca_file: Option<PathBuf>,
    /// A second, plaintext listener beside the TLS one (e.g. for local
    /// health checks). Default: none.
    pub plaintext_listen: Option<String>,
}

/// `[backend_tls]`: how a `rediss://` backend is verified.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTlsConfig {
    /// CA certificate(s) that sign Redis's certificate, PEM. Required.
    pub ca_file: PathBuf,
    /// Client certificate for Redis's `tls-auth-clients`. Default: none.
    pub cert_file: Option<PathBuf>,
    /// Its private key.
    pub key_file: Option<PathBuf>,
    /// Name Redis's certificate must carry. Default: the URL's host.
    pub server_name: Option<String>,
}

/// `[[key]]`: one key of the keyring.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id, 8 hex digits; optional for `file` (the file names it).
    pub id: Option<String>,
    /// `primary`, `decrypt-only`, `disabled` or `destroyed`.
    pub state: String,
    /// Key file written by `respseal keygen`.
    pub file: Option<PathBuf>,
    /// Environment variable holding the 64 hex digits of material.
    pub env: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most clients at once. Default 10000.
    pub max_clients: Option<usize>,
    /// Largest request frame in bytes. Default 536870912 (512 MiB, Redis's
    /// `proto-max-bulk-len`).
    pub max_frame_bytes: Option<usize>,
    /// Largest single argument in bytes. Default 536870912.
    pub max_bulk_bytes: Option<usize>,
    /// Most arguments in one request. Default 1048576.
    pub max_args: Option<usize>,
    /// Most replies a session may have outstanding before it stops reading
    /// from its client (backpressure, not an error); respseal's own replies
    /// count too. Default 16384.
    pub max_inflight: Option<usize>,
    /// Bytes buffered from all clients together (read buffers). A client
    /// whose request would go past it gets an error and is closed.
    /// Default 1073741824 (1 GiB).
    pub max_buffered_bytes: Option<usize>,
    /// Output limit of ordinary clients, Redis's `client-output-buffer-limit
    /// normal` syntax `HARD SOFT SECONDS`. Default "0 0 0" (none, as in
    /// Redis; respseal stops reading from Redis for such a client instead).
    pub output_normal: Option<String>,
    /// Output limit of ordinary clients on a shared link: replies waiting
    /// for a client that does not read them are held by respseal (the link
    /// cannot stop for one client), so they are bounded. Default
    /// "64mb 32mb 10".
    pub output_shared: Option<String>,
    /// Output limit of subscribed and MONITOR clients. Default "32mb 8mb 60".
    pub output_pubsub: Option<String>,
    /// Output limit of replication streams. Default "256mb 64mb 60".
    pub output_replica: Option<String>,
}

/// `[timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Backend connect + handshake deadline in milliseconds. Default 2000.
    pub connect_ms: Option<u64>,
    /// Longest wait, in milliseconds, for the next reply from Redis while
    /// commands are in flight; past it they get `-ERR respseal: backend
    /// timeout` and the connection is replaced (a shared link reconnects, a
    /// dedicated link's client is closed). Blocking commands, subscribers,
    /// MONITOR and replication streams are exempt. 0 = never. Default
    /// 30000.
    pub command_ms: Option<u64>,
    /// Close clients idle this many seconds; 0 = never (Redis's default).
    /// Default 0.
    pub idle_secs: Option<u64>,
    /// Grace period for in-flight commands at shutdown, seconds. Default 10.
    pub shutdown_grace_secs: Option<u64>,
}

/// `[[users]]`: a proxy user; the password is given by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name (`default` is what `AUTH <password>` checks).
    pub name: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

/// Settings given on the command line or in the environment; they win over
/// the file. Each field is a setting of [`crate::settings::SETTINGS`], which
/// gives its help text and environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// The `config` setting.
    #[arg(long, short, help = help("config"), env = env("config"))]
    pub config: Option<PathBuf>,
    /// The `listen` setting.
    #[arg(long, help = help("listen"), env = env("listen"))]
    pub listen: Option<String>,
    /// The `backend` setting.
    #[arg(long, help = help("backend"), env = env("backend"))]
    pub backend: Option<String>,
    /// The `dedicated` setting.
    #[arg(long, help = help("dedicated"))]
    pub dedicated: bool,
    /// The `mode` setting.
    #[arg(long, help = help("mode"), env = env("mode"))]
    pub mode: Option<String>,
    /// The `shared_links` setting.
    #[arg(long, help = help("shared_links"), env = env("shared_links"))]
    pub shared_links: Option<usize>,
    /// The `threads` setting.
    #[arg(long, help = help("threads"), env = env("threads"))]
    pub threads: Option<usize>,
    /// The `idle_yield` setting.
    #[arg(long, help = help("idle_yield"), env = env("idle_yield"), value_name = "BOOL")]
    pub idle_yield: Option<bool>,
    /// The `limits.max_clients` setting.
    #[arg(long, help = help("limits.max_clients"), env = env("limits.max_clients"))]
    pub max_clients: Option<usize>,
    /// The `log` setting.
    #[arg(long, help = help("log"), env = env("log"))]
    pub log: Option<String>,
    /// The `admin_listen` setting.
    #[arg(long, help = help("admin_listen"), env = env("admin_listen"))]
    pub admin_listen: Option<String>,
    /// The `seal` setting.
    #[arg(long, value_name = "PATTERN", help = help("seal"), env = env("seal"), value_delimiter = ',')]
    pub seal: Vec<String>,
    /// The `key-file` setting.
    #[arg(long, help = help("key-file"), env = env("key-file"))]
    pub key_file: Option<PathBuf>,
    /// The `allow-insecure-key-file` setting.
    #[arg(long, help = help("allow-insecure-key-file"), env = env("allow-insecure-key-file"))]
    pub allow_insecure_key_file: bool,
    /// The `allow_unauthenticated` setting.
    #[arg(long, help = help("allow_unauthenticated"), env = env("allow_unauthenticated"))]
    pub allow_unauthenticated: bool,
    /// The `admin_allow_remote` setting.
    #[arg(long, help = help("admin_allow_remote"), env = env("admin_allow_remote"))]
    pub admin_allow_remote: bool,
}

impl Overrides {
    /// The link mode asked for (`--dedicated` is `--mode dedicated`).
    pub fn mode(&self) -> Option<String> {
        if self.dedicated { Some("dedicated".into()) } else { self.mode.clone() }
    }
}

/// Fully validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Listen address (TLS when `tls` is set).
    pub listen: SocketAddr,
    /// Plaintext listener beside the TLS one.
    pub plaintext_listen: Option<SocketAddr>,
    /// Client-side TLS.
    pub tls: Option<crate::tls::Acceptor>,
    /// TLS towards Redis (`rediss://`).
    pub backend_tls: Option<BackendTls>,
    /// Behind Sentinel (`redis-sentinel://`): where the master is now.
    pub topology: Option<std::sync::Arc<crate::backend::topology::Topology>>,
    /// Behind Redis Cluster (`redis-cluster://`): where each slot is now.
    pub cluster: Option<std::sync::Arc<crate::backend::cluster::Cluster>>,
    /// Admin HTTP listener.
    pub admin_listen: Option<SocketAddr>,
    /// Backend.
    pub backend: BackendUrl,
    /// Pin every session at connect.
    pub dedicated: bool,
    /// Shared links per group (all worker threads together).
    pub shared_links: usize,
    /// Worker threads.
    pub threads: usize,
    /// Workers yield the CPU before waiting for I/O.
    pub idle_yield: bool,
    /// Log filter.
    pub log: String,
    /// Most clients.
    pub max_clients: usize,
    /// Largest request frame.
    pub max_frame_bytes: usize,
    /// Largest argument.
    pub max_bulk_bytes: usize,
    /// Most arguments.
    pub max_args: usize,
    /// Most outstanding replies per session.
    pub max_inflight: usize,
    /// Bytes buffered from all clients together.
    pub max_buffered_bytes: usize,
    /// Per-client output limits.
    pub output: OutputLimits,
    /// Backend connect deadline.
    pub connect_timeout: Duration,
    /// Backend command timeout (none: never).
    pub command_timeout: Option<Duration>,
    /// Idle client timeout.
    pub idle_timeout: Option<Duration>,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Proxy users.
    pub users: Users,
    /// Things allowed against advice, logged once logging is set up
    /// (insecure key files under `--allow-insecure-key-file`).
    pub warnings: Vec<String>,
    /// A reload may drop or narrow sealing rules (`allow_dropping_rules`).
    pub allow_dropping_rules: bool,
    /// Rules and keys; `None` when no rule is configured.
    pub sealer: Option<Sealer>,
}

impl Config {
    /// The sealing rules ([`crate::rules::NONE`] without a sealer).
    pub fn rules(&self) -> &crate::rules::Rules {
        self.sealer.as_ref().map_or(&crate::rules::NONE, |s| s.rules())
    }

    /// The settings a reload cannot change, as one comparable line
    /// (no secrets: the backend URL is shown redacted).
    pub fn summary(&self) -> String {
        format!(
            "listen={} plaintext={:?} backend={} mode={} threads={} links={} admin={:?} clients={} timeouts={:?}/{:?}",
            self.listen,
            self.plaintext_listen,
            self.backend,
            if self.dedicated { "dedicated" } else { "shared" },
            self.threads,
            self.shared_links,
            self.admin_listen,
            self.max_clients,
            self.connect_timeout,
            self.command_timeout,
        )
    }
}

/// Every problem found, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Load the file (if any), apply overrides, validate everything.
    pub fn load(path: Option<&Path>, ov: &Overrides) -> Result<Config, ConfigErrors> {
        let file = match path {
            None => FileConfig::default(),
            Some(p) => match std::fs::read_to_string(p) {
                Err(e) => {
                    return Err(ConfigErrors(vec![format!("cannot read {}: {e}", p.display())]));
                }
                Ok(text) => match toml::from_str::<FileConfig>(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        return Err(ConfigErrors(vec![format!("{}: {}", p.display(), e.to_string().trim_end())]));
                    }
                },
            },
        };
        Self::build(file, ov)
    }

    /// Validate a parsed file plus overrides.
    pub fn build(file: FileConfig, ov: &Overrides) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let listen_s = ov.listen.clone().or(file.listen.clone()).unwrap_or_else(|| default_of("listen"));
        let listen = match listen_s.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Some(a),
            _ => {
                errors.push(format!("listen: {listen_s:?} is not a host:port address"));
                None
            }
        };
        let mut addr = |what: &str, given: Option<String>| -> Option<SocketAddr> {
            let text = given?;
            match text.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(a)) => Some(a),
                _ => {
                    errors.push(format!("{what}: {text:?} is not a host:port address"));
                    None
                }
            }
        };
        let admin_listen = addr("admin_listen", ov.admin_listen.clone().or(file.admin_listen.clone()));
        let plaintext_listen = addr("tls.plaintext_listen", file.tls.as_ref().and_then(|t| t.plaintext_listen.clone()));
        let tls = file.tls.as_ref().and_then(|t| {
            let files = tls::ServerFiles {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                client_ca_file: t.client_ca_file.clone(),
            };
            tls::acceptor(&files).map_err(|e| errors.push(format!("tls: {e}"))).ok()
        });
        let backend_s = ov.backend.clone().or(file.backend.clone()).unwrap_or_else(|| default_of("backend"));
        let backend = BackendUrl::parse(&backend_s).map_err(|e| errors.push(format!("backend: {e}"))).ok();
        let backend_tls = match (&backend, &file.backend_tls) {
            (Some(b), Some(t)) if b.tls => {
                let client = match (&t.cert_file, &t.key_file) {
                    (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                    (None, None) => None,
                    _ => {
                        errors.push("backend_tls: give both cert_file and key_file, or neither".into());
                        None
                    }
                };
                let name = t.server_name.clone().unwrap_or_else(|| b.host().to_string());
                tls::connector(&t.ca_file, client, &name, t.server_name.is_some())
                    .map_err(|e| errors.push(format!("backend_tls: {e}")))
                    .ok()
            }
            (Some(b), None) if b.tls => {
                errors.push("backend: rediss:// needs [backend_tls] with ca_file".into());
                None
            }
            (Some(_), Some(_)) => {
                errors.push("backend_tls: only applies to a rediss:// backend".into());
                None
            }
            _ => None,
        };
        let mode = ov.mode().or(file.mode.clone()).unwrap_or_else(|| default_of("mode"));
        if mode == "dedicated" && backend.as_ref().is_some_and(|b| b.cluster.is_some()) {
            errors.push(
                "mode: dedicated is not available behind redis-cluster:// (sessions pin to a node only when they need to)"
                    .into(),
            );
        }
        let dedicated = match mode.as_str() {
            "shared" => false,
            "dedicated" => true,
            other => {
                errors.push(format!("mode: {other:?} is not \"shared\" or \"dedicated\""));
                false
            }
        };
        let mut positive = |name: &str, v: Option<usize>, default: usize| -> usize {
            match v {
                Some(0) => {
                    errors.push(format!("{name}: must be at least 1"));
                    default
                }
                Some(v) => v,
                None => default,
            }
        };
        let shared_links = positive("shared_links", ov.shared_links.or(file.shared_links), default_of("shared_links"));
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let threads = positive("threads", ov.threads.or(file.threads), cpus);
        let idle_yield = ov.idle_yield.or(file.idle_yield).unwrap_or_else(|| default_of("idle_yield"));
        let l = &file.limits;
        let mut limit = |name: &str, v: Option<usize>| positive(name, v, default_of(name));
        let max_clients = limit("limits.max_clients", ov.max_clients.or(l.max_clients));
        let max_frame_bytes = limit("limits.max_frame_bytes", l.max_frame_bytes);
        let max_bulk_bytes = limit("limits.max_bulk_bytes", l.max_bulk_bytes);
        let max_args = limit("limits.max_args", l.max_args);
        let max_inflight = limit("limits.max_inflight", l.max_inflight);
        let max_buffered_bytes = limit("limits.max_buffered_bytes", l.max_buffered_bytes);
        let mut output = OutputLimits::default();
        for (name, given, slot) in [
            ("limits.output_normal", &l.output_normal, &mut output.normal),
            ("limits.output_shared", &l.output_shared, &mut output.shared),
            ("limits.output_pubsub", &l.output_pubsub, &mut output.pubsub),
            ("limits.output_replica", &l.output_replica, &mut output.replica),
        ] {
            if let Some(text) = given {
                match OutputLimit::parse(text) {
                    Some(limit) => *slot = limit,
                    None => {
                        errors.push(format!("{name}: {text:?} is not \"HARD SOFT SECONDS\" (e.g. \"32mb 8mb 60\")"))
                    }
                }
            }
        }
        let t = &file.timeouts;
        let connect_ms = t.connect_ms.unwrap_or_else(|| default_of("timeouts.connect_ms"));
        if connect_ms == 0 {
            errors.push("timeouts.connect_ms: must be at least 1".into());
        }
        let idle_timeout = Some(t.idle_secs.unwrap_or_else(|| default_of("timeouts.idle_secs")))
            .filter(|&s| s > 0)
            .map(Duration::from_secs);
        let shutdown_grace =
            Duration::from_secs(t.shutdown_grace_secs.unwrap_or_else(|| default_of("timeouts.shutdown_grace_secs")));
        let log = ov.log.clone().or(file.log.clone()).unwrap_or_else(|| default_of("log"));
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            errors.push(format!("log: {log:?} is not a valid log filter"));
        }
        let mut users = Vec::new();
        for (i, u) in file.users.iter().enumerate() {
            let what = format!("users[{i}] ({})", u.name);
            if file.users[..i].iter().any(|other| other.name == u.name) {
                errors.push(format!("{what}: user name given twice"));
                continue;
            }
            // Passwords live in memory that is wiped when dropped.
            let password: Result<zeroize::Zeroizing<String>, String> = match (&u.password_env, &u.password_file) {
                (Some(var), None) => std::env::var(var)
                    .map(zeroize::Zeroizing::new)
                    .map_err(|_| format!("{what}: environment variable {var} is not set")),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(zeroize::Zeroizing::new)
                    .map(|s| zeroize::Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_string()))
                    .map_err(|e| format!("{what}: cannot read password file {}: {}", path.display(), e.kind())),
                _ => Err(format!("{what}: give exactly one of password_env or password_file")),
            };
            match password {
                Ok(p) if p.is_empty() => errors.push(format!("{what}: password is empty")),
                Ok(p) => users.push(User::new(u.name.clone(), p.as_bytes())),
                Err(e) => errors.push(e),
            }
        }
        // Protected mode: no open door to the plaintext by accident.
        let remote = |a: &SocketAddr| !a.ip().is_loopback();
        let client_certs = file.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        let open_listeners: Vec<SocketAddr> = listen
            .iter()
            .filter(|_| !client_certs)
            .chain(plaintext_listen.iter())
            .filter(|a| remote(a))
            .copied()
            .collect();
        if users.is_empty()
            && !(ov.allow_unauthenticated
                || file.allow_unauthenticated.unwrap_or_else(|| default_of("allow_unauthenticated")))
            && let Some(a) = open_listeners.first()
        {
            errors.push(format!(
                "listen: {a} can be reached from other hosts and no [[users]] are configured, so anyone who \
                 reaches it would read every sealed value in plaintext; configure [[users]] (or client \
                 certificates), listen on a loopback address, or set allow_unauthenticated = true \
                 (--allow-unauthenticated) if the network is private on purpose"
            ));
        }
        if let Some(a) = admin_listen.filter(remote)
            && !(ov.admin_allow_remote || file.admin_allow_remote.unwrap_or_else(|| default_of("admin_allow_remote")))
        {
            errors.push(format!(
                "admin_listen: {a} can be reached from other hosts; listen on a loopback address or set \
                 admin_allow_remote = true (--admin-allow-remote) on purpose"
            ));
        }
        let mut warnings = Vec::new();
        let sealer = build_sealer(&file, ov, &mut errors, &mut warnings);
        match (listen, backend, errors.is_empty()) {
            (Some(listen), Some(backend), true) => Ok(Config {
                listen,
                plaintext_listen,
                tls,
                backend_tls,
                topology: backend.sentinel.as_ref().map(|_| Default::default()),
                cluster: backend.cluster.as_ref().map(|_| Default::default()),
                admin_listen,
                backend,
                dedicated,
                shared_links,
                threads,
                idle_yield,
                log,
                max_clients,
                max_frame_bytes,
                max_bulk_bytes,
                max_args,
                max_inflight,
                max_buffered_bytes,
                output,
                connect_timeout: Duration::from_millis(connect_ms),
                command_timeout: Some(t.command_ms.unwrap_or_else(|| default_of("timeouts.command_ms")))
                    .filter(|&ms| ms > 0)
                    .map(Duration::from_millis),
                idle_timeout,
                shutdown_grace,
                users: Users::new(users),
                warnings,
                allow_dropping_rules: file.allow_dropping_rules.unwrap_or_else(|| default_of("allow_dropping_rules")),
                sealer,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

fn build_sealer(
    file: &FileConfig,
    ov: &Overrides,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Sealer> {
    let mut rules = Vec::new();
    let mut channels = Vec::new();
    for (i, r) in file.rule.iter().enumerate() {
        let (glob, is_channel) = match (&r.pattern, &r.channel) {
            (Some(p), None) => (p.as_str(), false),
            (None, Some(c)) => (c.as_str(), true),
            _ => {
                errors.push(format!("rule[{i}]: give exactly one of pattern or channel"));
                continue;
            }
        };
        let what = format!("rule[{i}] ({glob})");
        let mut rule = Rule::new(glob);
        if glob.is_empty() {
            errors.push(format!("{what}: pattern is empty"));
        }
        rule.seal = r.seal.unwrap_or(true);
        match (&r.fields, is_channel) {
            (Some(f), false) if !f.is_empty() => rule.fields = Some(crate::rules::Pattern::new(f)),
            (Some(_), false) => errors.push(format!("{what}: fields is empty")),
            (Some(_), true) => errors.push(format!("{what}: fields only applies to a key pattern, not a channel")),
            (None, _) => {}
        }
        match r.on_failure.as_deref() {
            None | Some("nil") => {}
            Some("error") => rule.on_failure = FailurePolicy::Error,
            Some(o) => errors.push(format!("{what}: on_failure {o:?} is not \"nil\" or \"error\"")),
        }
        match r.legacy.as_deref() {
            None | Some("reject") => {}
            Some(l @ ("pass" | "reseal")) => {
                rule.legacy = if l == "pass" { LegacyPolicy::Pass } else { LegacyPolicy::Reseal };
                match r.legacy_until.as_deref().map(parse_date) {
                    Some(Some(t)) => rule.legacy_until = Some(t),
                    Some(None) => errors.push(format!("{what}: legacy_until must be a date YYYY-MM-DD")),
                    None => errors.push(format!("{what}: legacy = {l:?} needs legacy_until: migration mode must end")),
                }
            }
            Some(l) => errors.push(format!("{what}: legacy {l:?} is not \"reject\", \"pass\" or \"reseal\"")),
        }
        if r.legacy.as_deref().unwrap_or("reject") == "reject" && r.legacy_until.is_some() {
            errors.push(format!("{what}: legacy_until only applies with legacy = \"pass\" or \"reseal\""));
        }
        rule.max_age = r.max_age_secs;
        if let Some(skew) = r.max_future_skew_secs {
            if r.max_age_secs.is_none() {
                errors.push(format!("{what}: max_future_skew_secs only applies with max_age_secs"));
            }
            rule.future_skew = skew;
        }
        if is_channel && (r.legacy.is_some() || r.allow_plaintext.is_some()) {
            errors.push(format!("{what}: legacy and allow_plaintext only apply to key patterns"));
        }
        for t in r.allow_plaintext.iter().flatten() {
            match DataType::ALL.into_iter().find(|d| d.name() == t) {
                Some(d) => rule.allow_plaintext.push(d),
                None => errors.push(format!(
                    "{what}: allow_plaintext {t:?} is not one of \"list\", \"set\", \"zset\", \"stream\", \"geo\", \"hyperloglog\""
                )),
            }
        }
        match r.names.as_deref() {
            None | Some("plain") => {}
            Some("pseudonymise" | "pseudonymize") if is_channel => {
                errors.push(format!("{what}: names only applies to a key pattern, not a channel"));
            }
            Some("pseudonymise" | "pseudonymize") => {
                rule.pseudonymise = true;
                if rule.literal_prefix().iter().any(|c| matches!(c, b'{' | b'}')) {
                    errors.push(format!(
                        "{what}: names = \"pseudonymise\" needs a prefix without braces (a hash tag there would \
                         not survive pseudonymisation)"
                    ));
                }
            }
            Some(n) => errors.push(format!("{what}: names {n:?} is not \"plain\" or \"pseudonymise\"")),
        }
        if is_channel {
            channels.push(rule);
        } else {
            rules.push(rule);
        }
    }
    for p in &ov.seal {
        if p.is_empty() {
            errors.push("--seal: pattern is empty".into());
        }
        rules.push(Rule::new(p));
    }
    let mut specs = Vec::new();
    for (i, k) in file.key.iter().enumerate() {
        let what = format!("key[{i}]");
        let state = match k.state.parse::<KeyState>() {
            Ok(s) => s,
            Err(_) => {
                errors.push(format!("{what}: state {:?} is not primary, decrypt-only, disabled or destroyed", k.state));
                continue;
            }
        };
        let state = if ov.key_file.is_some() && state == KeyState::Primary { KeyState::DecryptOnly } else { state };
        let id = match k.id.as_deref().map(|s| u32::from_str_radix(s, 16)) {
            None => None,
            Some(Ok(id)) if id != 0 && k.id.as_deref().map(str::len) == Some(8) => Some(id),
            Some(_) => {
                errors.push(format!("{what}: id must be 8 hex digits, not zero"));
                continue;
            }
        };
        let source = match (&k.file, &k.env) {
            (Some(f), None) => Some(KeySource::File(f.clone())),
            (None, Some(e)) => Some(KeySource::Env(e.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => {
                errors.push(format!("{what}: give file or env, not both"));
                continue;
            }
        };
        specs.push(KeySpec { id, state, source });
    }
    if let Some(path) = &ov.key_file {
        specs.push(KeySpec { id: None, state: KeyState::Primary, source: Some(KeySource::File(path.clone())) });
    }
    let keyring = if specs.is_empty() {
        Keyring::new()
    } else {
        let check = if ov.allow_insecure_key_file { FileCheck::AllowInsecure } else { FileCheck::Strict };
        match Keyring::from_specs_checked(&specs, check) {
            Ok((k, allowed)) => {
                warnings.extend(
                    allowed.into_iter().map(|p| format!("insecure key file allowed by --allow-insecure-key-file: {p}")),
                );
                k
            }
            Err(e) => {
                errors.push(format!("keyring: {e}"));
                return None;
            }
        }
    };
    let names = name_key(&file.names, ov, errors, warnings);
    if rules.iter().any(|r| r.pseudonymise) && names.is_none() && errors.is_empty() {
        errors.push(
            "rules pseudonymise names but no name key is configured (give [names] key_file or key_env, a key of \
             its own made by `respseal keygen`)"
                .into(),
        );
    }
    if rules.is_empty() && channels.is_empty() {
        return None;
    }
    if keyring.primary().is_none() {
        errors.push("rules are configured but the keyring has no primary key (give --key-file or a [[key]] with state = \"primary\")".into());
        return None;
    }
    let namespace = file.namespace.clone().unwrap_or_else(|| default_of("namespace")).into_bytes();
    let mut scripts = Vec::new();
    for (i, sc) in file.script.iter().enumerate() {
        let name = sc.name.clone().unwrap_or_else(|| format!("script[{i}]"));
        let what = format!("script[{i}] ({name})");
        let sha = sc.sha1.to_ascii_lowercase();
        let mut sha1 = [0u8; 20];
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(format!("{what}: sha1 must be 40 hex digits"));
            continue;
        }
        for (j, b) in sha1.iter_mut().enumerate() {
            *b = u8::from_str_radix(&sha[2 * j..2 * j + 2], 16).unwrap_or(0);
        }
        let mut convert = |list: &[ScriptValueConfig], seal: bool| -> Vec<crate::sealing::ScriptValue> {
            list.iter()
                .filter_map(|v| {
                    let at = if seal { v.argv } else { v.index };
                    if v.key == 0 || (seal && v.argv.is_none_or(|a| a == 0)) || (seal && v.index.is_some()) {
                        errors.push(format!(
                            "{what}: seal_argv entries need argv and key (1-based), open_reply entries key and an optional index"
                        ));
                        return None;
                    }
                    Some(crate::sealing::ScriptValue { at, key: v.key, field: v.field.clone().map(String::into_bytes) })
                })
                .collect()
        };
        let seal_argv = convert(&sc.seal_argv, true);
        let open_reply = convert(&sc.open_reply, false);
        scripts.push(crate::sealing::ScriptProfile { name, sha1, seal_argv, open_reply });
    }
    let sealer = Sealer::new(Rules::with_channels(rules, channels), keyring, namespace).with_scripts(scripts);
    Some(match names {
        Some(key) => sealer.with_names(key),
        None => sealer,
    })
}

/// The name key of `[names]`, if given.
fn name_key(
    names: &NamesConfig,
    ov: &Overrides,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<crate::crypto::names::NameKey> {
    let loaded = match (&names.key_file, &names.key_env) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            errors.push("names: give key_file or key_env, not both".into());
            return None;
        }
        (Some(path), None) => {
            let check = if ov.allow_insecure_key_file { FileCheck::AllowInsecure } else { FileCheck::Strict };
            crate::crypto::keyring::load_key_file_checked(path, check).map(|(id, material, allowed)| {
                if let Some(p) = allowed {
                    warnings.push(format!("insecure key file allowed by --allow-insecure-key-file: {p}"));
                }
                (id, material)
            })
        }
        (None, Some(var)) => crate::crypto::material_from_env(var).map(|m| (0, m)),
    };
    match loaded {
        Ok((id, material)) => Some(crate::crypto::names::NameKey::new(id, material)),
        Err(e) => {
            errors.push(format!("names: {e}"));
            None
        }
    }
}

/// `YYYY-MM-DD` (UTC midnight) as unix seconds.
fn parse_date(s: &str) -> Option<u64> {
    let mut it = s.split('-');
    let (y, m, d) = (it.next()?.parse::<i64>().ok()?, it.next()?.parse::<i64>().ok()?, it.next()?.parse::<i64>().ok()?);
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::build(FileConfig::default(), &Overrides::default()).expect("defaults are valid");
        assert_eq!(c.listen.to_string(), default_of::<String>("listen"));
        assert_eq!(c.backend.addr, "127.0.0.1:6379");
        assert!(!c.dedicated);
        assert_eq!(c.shared_links, 2);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nmax_client = 3").is_err());
    }

    #[test]
    fn all_errors_reported_at_once() {
        let file: FileConfig = toml::from_str(
            "listen = \"nonsense\"\nbackend = \"http://x\"\nmode = \"fast\"\nshared_links = 0\nthreads = 0\n[[users]]\nname = \"a\"\n",
        )
        .expect("parses");
        let errs = Config::build(file, &Overrides::default()).unwrap_err().0;
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert!(errs.iter().any(|e| e == "threads: must be at least 1"), "{errs:?}");
    }

    #[test]
    fn idle_yield_defaults_on_and_flags_win() {
        assert!(Config::build(FileConfig::default(), &Overrides::default()).expect("valid").idle_yield);
        let file: FileConfig = toml::from_str("idle_yield = false\n").expect("parses");
        assert!(!Config::build(file, &Overrides::default()).expect("valid").idle_yield);
        let file: FileConfig = toml::from_str("idle_yield = false\n").expect("parses");
        let ov = Overrides { idle_yield: Some(true), ..Default::default() };
        assert!(Config::build(file, &ov).expect("valid").idle_yield);
    }

    #[test]
    fn threads_default_to_the_cpus_and_flags_win() {
        let c = Config::build(FileConfig::default(), &Overrides::default()).expect("defaults are valid");
        assert_eq!(c.threads, std::thread::available_parallelism().map_or(1, |n| n.get()));
        let file: FileConfig = toml::from_str("threads = 3\n").expect("parses");
        assert_eq!(Config::build(file, &Overrides::default()).expect("valid").threads, 3);
        let file: FileConfig = toml::from_str("threads = 3\n").expect("parses");
        let ov = Overrides { threads: Some(1), ..Default::default() };
        assert_eq!(Config::build(file, &ov).expect("valid").threads, 1);
    }

    #[test]
    fn the_example_config_is_valid_toml_for_these_fields() {
        let text = include_str!("../config.toml");
        let file: FileConfig = toml::from_str(text).expect("config.toml parses with unknown fields rejected");
        assert_eq!(file.rule.len(), 1);
        assert_eq!(file.key.len(), 1);
        assert_eq!(file.limits.max_inflight, Some(16384));
        assert_eq!(file.admin_listen.as_deref(), Some("127.0.0.1:9180"));
        // Every commented-out section parses too, once uncommented.
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| is_setting_line(r)).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let all: FileConfig = toml::from_str(&uncommented).expect("the commented-out sections are valid fields");
        assert!(all.tls.is_some() && all.backend_tls.is_some() && !all.users.is_empty() && all.key.len() == 2);
        // The presets (indented under "# ") are valid rules too.
        let block = &text[text.find("# Presets:").expect("a presets block")..];
        let presets: String = block
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("#     "))
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let presets: FileConfig = toml::from_str(&presets).expect("the presets are valid rules");
        assert_eq!(presets.rule.len(), 11, "one rule per preset line group");
        assert!(presets.rule.iter().any(|r| r.fields.as_deref() == Some("sessionAttr:*")));
        assert!(presets.rule.iter().any(|r| r.channel.is_some()) && presets.rule.iter().any(|r| r.seal == Some(false)));
    }

    /// A commented-out setting: `[section]`, `[[table]]` or `name = value`.
    fn is_setting_line(r: &str) -> bool {
        let name_end = r.find(" = ").unwrap_or(0);
        let head = r.split('#').next().unwrap_or("").trim_end();
        (head.starts_with('[') && head.ends_with(']') && head.len() > 2)
            || (name_end > 0
                && r[..name_end].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-11-26"), Some(1_795_651_200));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn rules_need_a_primary_key_and_migration_must_end() {
        let file: FileConfig = toml::from_str("[[rule]]\npattern = \"sess:*\"\nlegacy = \"pass\"\n").expect("parses");
        let errs = Config::build(file, &Overrides::default()).unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("legacy_until")));
        assert!(errs.iter().any(|e| e.contains("primary")));
    }

    #[test]
    fn overrides_win() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:1\"\nmode = \"dedicated\"").expect("parses");
        let ov = Overrides { listen: Some("127.0.0.1:2".into()), mode: Some("shared".into()), ..Default::default() };
        let c = Config::build(file, &ov).expect("valid");
        assert_eq!(c.listen.port(), 2);
        assert!(!c.dedicated);
    }
}
