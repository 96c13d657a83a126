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

/// docker-compose.yml is valid (no container engine is needed for this;
/// `scripts/compose-smoke.sh` runs the stack where one can).
#[test]
fn the_compose_file_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The secret file it names must exist for `config` to pass.
    let key = root.join(".dev/respseal-dev.key");
    if !key.exists() {
        std::fs::create_dir_all(root.join(".dev")).expect(".dev");
        let (status, _, err) =
            run_respseal(&["keygen", "--out", key.to_str().expect("utf-8")], &[], Duration::from_secs(10));
        assert!(status.success() || key.exists(), "{err}");
    }
    let out = Command::new("docker-compose")
        .args(["config", "-q"])
        .current_dir(root)
        .output()
        .expect("docker-compose is installed (scripts/install-test-deps.sh)");
    assert!(out.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
}

/// The container's entrypoint, run outside a container: it checks the
/// configuration, takes the key from the secret path's variable and
/// serves; a broken configuration stops it with the problems listed.
#[test]
fn the_container_entrypoint_serves_with_the_mounted_config_and_secret() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, key_id) = keygen(dir.path(), "secret.key");
    let port = free_port();
    let env = |cmd: &mut Command| {
        cmd.env("RESPSEAL_BIN", BIN)
            .env("RESPSEAL_CONFIG", root.join("deploy/config.toml"))
            .env("RESPSEAL_KEY_FILE", &key)
            .env("RESPSEAL_BACKEND", redis.url())
            .env("RESPSEAL_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("RESPSEAL_ADMIN_LISTEN");
    };
    let mut cmd = Command::new("sh");
    cmd.arg(root.join("scripts/entrypoint.sh")).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    env(&mut cmd);
    let mut child = cmd.spawn().expect("sh");
    let mut c = wait_until("entrypoint serving", START_TIMEOUT, || Client::try_connect(port).ok());
    c.assert_cmd(&["SET", "sess:container", "sealed-in-the-container"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:container"], b"$23\r\nsealed-in-the-container\r\n");
    let raw = redis.client().cmd(&["GET", "sess:container"]);
    assert!(contains(&raw, b"\x00RE") && !contains(&raw, b"sealed-in-the-container"), "{}", show(&raw));
    let id_at = raw.iter().position(|&b| b == b'\n').expect("header") + 5;
    let id: String = raw[id_at..id_at + 4].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(id, key_id);
    stop_group(&mut child);
    // A configuration that does not validate: the entrypoint exits 64.
    let bad = write_file(dir.path(), "bad.toml", "[[rule]]\npattern = \"\"\n");
    let mut cmd = Command::new("sh");
    cmd.arg(root.join("scripts/entrypoint.sh"));
    env(&mut cmd);
    let out = cmd.env("RESPSEAL_CONFIG", &bad).stdin(Stdio::null()).output().expect("sh");
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pattern is empty"), "{out:?}");
}

/// The README's run command (`scripts/dev.sh`, here with a test Redis and
/// the debug binary), then `respseal check --config config.toml`.
#[test]
fn the_run_command_serves_config_toml_and_check_passes_after_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let redis = RedisServer::start();
    let port = free_port();
    let admin = free_port();
    let mut child = Command::new("bash")
        .arg(root.join("scripts/dev.sh"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .env("RESPSEAL_BIN", BIN)
        .env("RESPSEAL_BACKEND", redis.url())
        .env_remove("RESPSEAL_KEY_FILE")
        .env_remove("RESPSEAL_SEAL")
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("bash");
    let mut c = wait_until("dev.sh serving", Duration::from_secs(60), || Client::try_connect(port).ok());
    c.assert_cmd(&["SET", "sess:dev", "{\"views\":1}"], b"+OK\r\n");
    let raw = redis.client().cmd(&["GET", "sess:dev"]);
    assert!(contains(&raw, b"\x00RE") && !contains(&raw, b"views"), "{}", show(&raw));
    assert_eq!(http_get(admin, "/readyz").expect("readyz").0, 200);
    let (status, out, err) = run_respseal(
        &["check", "--config", root.join("config.toml").to_str().expect("utf-8")],
        &[("RESPSEAL_BACKEND", redis.url())],
        Duration::from_secs(20),
    );
    stop_group(&mut child);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("sample: 1 sealed values opened, 0 failed"), "{out}");
}

/// The session stores' own flows (`tests/clients/run-stores.sh`) through a
/// respseal configured with their presets.
#[test]
fn session_stores_pass_through_unchanged() {
    use sha1::Digest;
    const SET_SCRIPT: &str = "redis.call('HSET', KEYS[1], 'absexp', ARGV[1], 'sldexp', ARGV[2], 'data', ARGV[4])\n\
                              if ARGV[3] ~= '-1' then\n  redis.call('EXPIRE', KEYS[1], ARGV[3])\nend\nreturn 1";
    let sha: String = sha1::Sha1::digest(SET_SCRIPT.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!(
        "[[rule]]\npattern = \"spring:session:sessions:expires:*\"\nseal = false\n\
         [[rule]]\npattern = \"spring:session:sessions:*\"\nfields = \"sessionAttr:*\"\n\
         [[rule]]\nchannel = \"spring:session:event:*\"\n\
         [[rule]]\npattern = \"aspnet:*\"\nfields = \"data\"\n\
         [[rule]]\npattern = \"session:*\"\n\
         [[rule]]\npattern = \":1:django.contrib.sessions.cache*\"\n\
         [[rule]]\npattern = \"PHPREDIS_SESSION:*_LOCK\"\nseal = false\n\
         [[rule]]\npattern = \"PHPREDIS_SESSION:*\"\n\
         [[rule]]\npattern = \"rack:session:*\"\n\
         [[script]]\nname = \"aspnet-setscript\"\nsha1 = \"{sha}\"\nseal_argv = [{{ argv = 4, key = 1, field = \"data\" }}]\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        key.display()
    );
    for mode in [&[][..], &["--dedicated"][..]] {
        let proxy = Proxy::start_with_config(redis.port, &config, mode);
        run_script(
            "tests/clients/run-stores.sh",
            &[&proxy.port.to_string(), &redis.port.to_string(), &sha],
            Duration::from_secs(300),
        );
        redis.client().assert_cmd(&["FLUSHALL"], b"+OK\r\n");
    }
}
