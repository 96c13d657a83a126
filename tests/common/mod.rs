//! Test harness for the integration tests, in the style of redis-rs's
//! `redis-test`:
//!
//! * `process`: free ports, child processes, polling with a deadline.
//! * `redis`: [`RedisServer`], a throw-away `redis-server` on a free port.
//! * `proxy`: [`Proxy`], the `respseal` binary in front of a backend, and
//!   the files it is configured with.
//! * `client`: [`Client`], a raw RESP client; `resp`: bytes for assertions.
//! * `fake`: a fake Redis for replies a real one never sends.
//! * `pki`: certificates for TLS tests; `load`: load drivers.
//!
//! Every wait has a deadline: readiness is polled, sockets have read
//! timeouts, child processes are waited for with a bound. No test can hang.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

mod client;
mod fake;
mod load;
mod pki;
mod process;
mod proxy;
mod redis;
mod resp;

// Every test binary sees the whole harness, and uses a part of it.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use fake::*;
#[allow(unused_imports)]
pub use load::*;
#[allow(unused_imports)]
pub use pki::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use redis::*;
#[allow(unused_imports)]
pub use resp::*;

use std::time::Duration;

pub use respseal::protocol::Proto;

/// Read timeout of every test socket: far longer than any expected reply,
/// short enough that a hang fails the test instead of blocking the run.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a redis-server or proxy to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Both link modes: the default (shared links) and `--dedicated`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn shared() {
                    super::$name(&[]);
                }
                #[test]
                fn dedicated() {
                    super::$name(&["--dedicated"]);
                }
            }
        )*
    };
}
