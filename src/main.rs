//! The `respseal` command: `serve` (default), `keygen`, `check`, `rewrap`,
//! `inspect`. Parses the command line and hands it to [`respseal::app`].

use std::process::ExitCode;

use clap::Parser;
use respseal::app::{self, EX_USAGE, cli::Cli};

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
    app::run(cli)
}
