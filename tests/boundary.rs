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

/// The same with the names pseudonymised (`names = "pseudonymise"`): no
/// line leaves a name a client used anywhere in a key name in Redis, and
/// the values stay sealed.
#[test]
fn no_command_stores_a_pseudonymised_name_in_plain() {
    boundary_with(false, true);
}

fn boundary(hash: bool) {
    boundary_with(hash, false);
}

fn boundary_with(hash: bool, names: bool) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let (name_key, _) = keygen(dir.path(), "names.key");
    let config = format!(
        "[[rule]]\npattern = \"sess:*\"\n{}{}[[key]]\nfile = \"{}\"\nstate = \"primary\"\n\
         [names]\nkey_file = \"{}\"\n",
        if hash { "fields = \"*\"\n" } else { "" },
        if names { "names = \"pseudonymise\"\n" } else { "" },
        key.display(),
        name_key.display()
    );
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let flags: &[&str] = match (hash, names) {
        (true, _) => &["--hash"],
        (_, true) => &["--names"],
        _ => &[],
    };
    boundary_check(proxy.port, &redis.port.to_string(), flags);
    proxy.client().assert_cmd(&["PING"], b"+PONG\r\n");
}
