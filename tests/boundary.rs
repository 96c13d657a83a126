//! The sealing boundary against every command of the Redis under test:
//! `tests/boundary/check.py` generates command lines from `COMMAND DOCS`
//! (a sealed name and a canary in every argument position) and checks,
//! directly in Redis, that no sealed name ends up holding anything but an
//! envelope. See that script for how the lines are generated.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn no_command_redis_knows_leaves_plaintext_under_a_sealed_name() {
    boundary(false);
}

/// The same with a hash rule (`fields = "*"`): hash commands are now
/// forwarded, and every field they leave under a sealed name must be an
/// envelope.
#[test]
fn no_command_leaves_a_plaintext_hash_field_under_a_hash_rule() {
    boundary(true);
}

fn boundary(hash: bool) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!(
        "[[rule]]\npattern = \"sess:*\"\n{}[[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        if hash { "fields = \"*\"\n" } else { "" },
        key.display()
    );
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boundary/check.py");
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(proxy.port.to_string())
        .arg(redis.port.to_string())
        .args(hash.then_some("--hash"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("python3");
    let status = wait_child(&mut child, Duration::from_secs(600));
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(status.is_some_and(|s| s.success()), "boundary check failed:\n{output}");
    proxy.client().assert_cmd(&["PING"], b"+PONG\r\n");
}
