//! The sealing boundary against every command of the Redis under test:
//! `tests/boundary/check.py` generates command lines from `COMMAND DOCS`
//! (a sealed name and a canary in every argument position) and checks,
//! directly in Redis, that no sealed name ends up holding anything but an
//! envelope. See that script for how the lines are generated. The same
//! check through the cluster router is in `tests/cluster.rs`.

mod common;

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
    boundary_check(proxy.port, &redis.port.to_string(), if hash { &["--hash"] } else { &[] });
    proxy.client().assert_cmd(&["PING"], b"+PONG\r\n");
}
