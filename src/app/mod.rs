//! What the `respseal` command does: serve (the proxy with its reload and
//! topology followers) and the operator subcommands. `main.rs` only parses
//! the command line and calls [`run`].
//!
//! * [`cli`]: the command line.
//! * [`serve`]: the proxy: workers, listeners, admin endpoint, shutdown.
//! * [`reload`]: SIGHUP: a new keyring, rules, users and certificates.
//! * [`topology`]: following Sentinel or the cluster's slot map.
//! * [`operator`]: `keygen`, `check`, `inspect`, `rewrap`.

pub mod cli;
pub mod operator;
pub mod reload;
pub mod serve;
pub mod topology;

use std::process::ExitCode;

use cli::{Cli, Cmd, ServeArgs};

use crate::config::Config;

/// EX_USAGE: invalid configuration or command line.
pub const EX_USAGE: u8 = 64;
/// EX_DATAERR: values in Redis that the configured keyring does not open.
pub const EX_DATAERR: u8 = 65;
/// EX_UNAVAILABLE: a required service (listen port, backend) is unavailable.
pub const EX_UNAVAILABLE: u8 = 69;

/// Run what the command line asks for.
pub fn run(cli: Cli) -> ExitCode {
    match cli.cmd {
        Some(Cmd::Keygen { out }) => operator::keygen(&out),
        Some(Cmd::Check(args)) => with_config(&args.serve, |cfg| operator::check(cfg, args.sample)),
        Some(Cmd::Rewrap(args)) => operator::rewrap(&args),
        Some(Cmd::Inspect(args)) => operator::inspect(&args),
        Some(Cmd::Serve(args)) => with_config(&args, |cfg| serve::serve(cfg, &args)),
        None => with_config(&cli.serve, |cfg| serve::serve(cfg, &cli.serve)),
    }
}

/// Load the configuration (exit 64 when it is invalid), start logging,
/// and run `f` with it.
pub fn with_config(args: &ServeArgs, f: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    let cfg = match load(args) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    if let Err(e) = crate::clock::check_clock() {
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

/// The configuration, or every problem with it printed and exit 64.
pub(crate) fn load(args: &ServeArgs) -> Result<Config, ExitCode> {
    Config::load(args.config.as_deref(), args).map_err(|errors| {
        eprint!("respseal: {errors}");
        ExitCode::from(EX_USAGE)
    })
}

/// The runtime the subcommands (and serve's start-up) run on.
pub fn runtime() -> tokio::runtime::Runtime {
    // Accepting, signals and `check`; clients are served by the workers.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts: it only needs threads and an epoll fd")
}
