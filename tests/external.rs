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

use std::os::unix::process::CommandExt;
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
        // Its own process group: on a timeout every redis-server, respseal
        // and tclsh it started is stopped with it.
        .process_group(0)
        .spawn()
        .expect("spawning bash");
    let status = wait_child(&mut child, timeout);
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{script} failed ({s}):\n{output}"),
        None => {
            stop_group(&mut child);
            panic!("{script} still running after {timeout:?}:\n{output}");
        }
    }
}

/// SIGTERM to the child's whole process group, then SIGKILL to what is
/// left after a few seconds; the child is reaped.
fn stop_group(child: &mut std::process::Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    if wait_child(child, Duration::from_secs(5)).is_none() {
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.wait();
    }
    // Members that outlived the leader still get the KILL.
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
}

fn real_clients(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    run_script("tests/clients/run-all.sh", &[&proxy.port.to_string()], Duration::from_secs(300));
}

/// The same clients a second time, through a respseal that seals `sess:*`:
/// their ordinary checks still pass with sealing on, and their writes of
/// sealed keys are envelopes in Redis while their reads are plaintext.
fn real_clients_sealing(mode: &[&str]) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let mut args = vec!["--seal", "sess:*", "--key-file", key.to_str().expect("utf-8 path")];
    args.extend_from_slice(mode);
    let proxy = Proxy::start(redis.port, &args);
    run_script("tests/clients/run-all.sh", &[&proxy.port.to_string()], Duration::from_secs(300));
    run_script(
        "tests/clients/run-sealed.sh",
        &[&proxy.port.to_string(), &redis.port.to_string()],
        Duration::from_secs(300),
    );
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
fn real_clients_sealing_through_shared_links() {
    real_clients_sealing(&[]);
}

#[test]
fn real_clients_sealing_through_dedicated_links() {
    real_clients_sealing(&["--dedicated"]);
}

#[test]
fn express_session_example_end_to_end() {
    run_script("examples/express-session/e2e.sh", &[], Duration::from_secs(300));
}

#[test]
fn redis_own_test_suite_passes_through_respseal() {
    run_script("tests/redis-suite/run.sh", &[], Duration::from_secs(40 * 60));
}

#[test]
fn a_timed_out_harness_takes_its_whole_process_group_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()))
        .process_group(0)
        .spawn()
        .expect("bash");
    let grandchild: u32 = wait_until("the grandchild's pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok())
    });
    stop_group(&mut child);
    wait_until("the grandchild to be gone", Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        (stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")).then_some(())
    });
}
