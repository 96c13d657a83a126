//! The command line: subcommands and the flags (and `RESPSEAL_*`
//! environment variables) that override the configuration file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// The command line.
#[derive(Parser)]
#[command(name = "respseal", version, about = "Redis proxy that seals the values of sensitive keys")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Cmd {
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

/// `respseal check`.
#[derive(Args, Clone)]
pub struct CheckArgs {
    /// Sealed values opened per rule pattern (0: none).
    #[arg(long, default_value_t = 100)]
    pub sample: u64,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `respseal rewrap`.
#[derive(Args, Clone)]
pub struct RewrapArgs {
    /// Also seal values that have no envelope (legacy plaintext); they are
    /// marked as re-sealed from legacy plaintext.
    #[arg(long)]
    pub legacy: bool,
    /// Delete values re-sealed from legacy plaintext instead of rewrapping
    /// them (compare-and-delete).
    #[arg(long)]
    pub drop_resealed: bool,
    /// Most keys looked at per second [default: no limit].
    #[arg(long)]
    pub max_per_sec: Option<u32>,
    /// Resume from a cursor printed by an earlier run (PATTERN:CURSOR).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Key patterns to walk [default: the configured rules' patterns].
    #[arg(value_name = "PATTERN")]
    pub patterns: Vec<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `respseal inspect`.
#[derive(Args, Clone)]
pub struct InspectArgs {
    /// Only values re-sealed from legacy plaintext (`legacy = "reseal"`).
    #[arg(long)]
    pub resealed: bool,
    /// Delete the values re-sealed from legacy plaintext (each with a
    /// compare-and-delete: a value rewritten meanwhile is kept).
    #[arg(long, conflicts_with = "resealed")]
    pub drop_resealed: bool,
    /// Key patterns to walk [default: the configured rules' patterns].
    #[arg(value_name = "PATTERN")]
    pub patterns: Vec<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `respseal serve` (and the settings every subcommand reads the
/// configuration with).
// The flag docs are clap's help text, not rustdoc (`[user:pass@]`).
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Args, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(long, short, env = "RESPSEAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to accept clients on [default: 127.0.0.1:6380].
    #[arg(long, env = "RESPSEAL_LISTEN")]
    pub listen: Option<String>,
    /// Redis to forward to: redis://[user:pass@]host:port[/db] [default: redis://127.0.0.1:6379].
    #[arg(long, env = "RESPSEAL_BACKEND")]
    pub backend: Option<String>,
    /// Give every client its own backend connection (same as --mode dedicated).
    #[arg(long)]
    pub dedicated: bool,
    /// Link mode: shared (default) or dedicated.
    #[arg(long, env = "RESPSEAL_MODE")]
    pub mode: Option<String>,
    /// Shared backend connections per (database, protocol) group [default: 2].
    #[arg(long, env = "RESPSEAL_SHARED_LINKS")]
    pub shared_links: Option<usize>,
    /// Worker threads serving clients [default: one per CPU].
    #[arg(long, env = "RESPSEAL_THREADS")]
    pub threads: Option<usize>,
    /// Yield the CPU once before each wait for I/O: true or false [default:
    /// true]. Faster when clients or Redis share the proxy's cores; false
    /// gives a lower p99 there.
    #[arg(long, env = "RESPSEAL_IDLE_YIELD", value_name = "BOOL")]
    pub idle_yield: Option<bool>,
    /// Most clients connected at once [default: 10000].
    #[arg(long, env = "RESPSEAL_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Log filter: error, warn, info, debug or a tracing filter [default: info].
    #[arg(long, env = "RESPSEAL_LOG")]
    pub log: Option<String>,
    /// Serve /metrics, /healthz and /readyz on this address [default: off].
    #[arg(long, env = "RESPSEAL_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Seal keys matching this Redis glob pattern (repeatable), e.g. 'sess:*'.
    #[arg(long = "seal", value_name = "PATTERN", env = "RESPSEAL_SEAL", value_delimiter = ',')]
    pub seal: Vec<String>,
    /// Key file (from `respseal keygen`) used as the primary key.
    #[arg(long, env = "RESPSEAL_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Load key files that group or others can read or write, or that
    /// another user owns (refused by default, as ssh refuses such private
    /// keys); each one is named in the log.
    #[arg(long, env = "RESPSEAL_ALLOW_INSECURE_KEY_FILE")]
    pub allow_insecure_key_file: bool,
    /// Serve clients without `[[users]]` on an address other hosts can
    /// reach (refused by default, as Redis's protected mode refuses it).
    #[arg(long, env = "RESPSEAL_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Serve the admin endpoints on an address other hosts can reach
    /// (refused by default).
    #[arg(long, env = "RESPSEAL_ADMIN_ALLOW_REMOTE")]
    pub admin_allow_remote: bool,
}

impl ServeArgs {
    /// The settings given on the command line or in the environment.
    pub fn overrides(&self) -> Overrides {
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
