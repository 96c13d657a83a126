//! The command line: subcommands and the flags (and `RESPSEAL_*`
//! environment variables) that override the configuration file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

/// `respseal serve`'s settings (and those every subcommand reads the
/// configuration with): the overrides of the configuration file.
pub use crate::config::Overrides as ServeArgs;
