//! The suites that drive respseal with programs other than Rust tests: real
//! Redis clients (node-redis, ioredis, redis-py, redis-cli), the
//! express-session example app, and Redis's own Tcl test suite. Each runs a
//! script from the repository against the binary cargo just built and fails
//! if the script fails; the scripts print what they checked.
//!
//! Their dependencies (Node packages, redis-py, Tcl, the Redis source
//! package) are installed by `scripts/install-test-deps.sh`, which
//! `scripts/test.sh` runs first.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_respseal");

/// Run a script with a deadline, echoing its output; panics unless it exits 0.
fn run_script(script: &str, args: &[&str], timeout: Duration) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut child = Command::new("bash")
        .arg(root.join(script))
        .args(args)
        .current_dir(root)
        .env("RESPSEAL_BIN", BIN)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawning bash");
    let status = wait_child(&mut child, timeout);
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{script} failed ({s}):\n{output}"),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} still running after {timeout:?}:\n{output}");
        }
    }
}

fn real_clients(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    run_script("tests/clients/run-all.sh", &[&proxy.port.to_string()], Duration::from_secs(300));
}

#[test]
fn real_clients_through_shared_links() {
    real_clients(&[]);
}

#[test]
fn real_clients_through_dedicated_links() {
    real_clients(&["--dedicated"]);
}

#[test]
fn express_session_example_end_to_end() {
    run_script("examples/express-session/e2e.sh", &[], Duration::from_secs(300));
}

#[test]
fn redis_own_test_suite_passes_through_respseal() {
    run_script("tests/redis-suite/run.sh", &[], Duration::from_secs(40 * 60));
}
