//! Configuration and command line: invalid configurations exit 64 and say
//! what is wrong (all of it), the environment is honoured, --help works,
//! idle clients are closed when configured, idle_yield can be turned off.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// Run `respseal serve` with a config file; it must exit on its own.
fn serve_with_config(text: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = write_file(dir.path(), "respseal.toml", text);
    let path = path.to_str().expect("utf-8 temp path").to_owned();
    let mut args = vec!["serve", "--config", path.as_str()];
    args.extend(extra);
    let (status, _out, err) = run_respseal(&args, &[], RUN_TIMEOUT);
    (status.code().unwrap_or(-1), err)
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let port = free_port();
    let listen = format!("listen = \"127.0.0.1:{port}\"\n");
    for (text, name) in [
        (format!("{listen}listne = \"127.0.0.1:1\"\n"), "listne"),
        (format!("{listen}[limits]\nmax_client = 3\n"), "max_client"),
        (format!("{listen}[timeouts]\nidle_second = 3\n"), "idle_second"),
        (format!("{listen}[limitz]\nmax_clients = 3\n"), "limitz"),
    ] {
        let (code, err) = serve_with_config(&text, &[]);
        assert_eq!(code, 64, "config {text:?}: stderr {err}");
        assert!(err.contains(name), "stderr does not name {name:?}: {err}");
        // Nothing was bound.
        assert!(Client::try_connect(port).is_err(), "port {port} was bound");
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = "listen = \"nonsense\"\nmode = \"fast\"\nshared_links = 0\n[limits]\nmax_args = 0\n[timeouts]\nconnect_ms = 0\n";
    let (code, err) = serve_with_config(text, &["--backend", "http://x"]);
    assert_eq!(code, 64, "stderr: {err}");
    for what in [
        "listen",
        "\"nonsense\"",
        "backend",
        "mode",
        "\"fast\"",
        "shared_links",
        "limits.max_args",
        "timeouts.connect_ms",
    ] {
        assert!(err.contains(what), "stderr does not mention {what}: {err}");
    }
    assert_eq!(err.lines().filter(|l| l.trim_start().starts_with("- ")).count(), 6, "one line per problem: {err}");

    // Flags and environment are validated the same way.
    let (status, _, err) = run_respseal(&["serve", "--backend", "redis://h:notaport"], &[], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(64), "stderr: {err}");
    assert!(err.contains("backend"), "{err}");
    let (status, _, err) = run_respseal(&["serve"], &[("RESPSEAL_MODE", "fast".into())], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(64), "stderr: {err}");
    assert!(err.contains("mode"), "{err}");
}

#[test]
fn unreadable_config_and_bad_flags_exit_64() {
    let (status, _, err) = run_respseal(&["serve", "--config", "/nonexistent/respseal.toml"], &[], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(64), "stderr: {err}");
    assert!(err.contains("/nonexistent/respseal.toml"), "{err}");
    let (status, _, err) = run_respseal(&["serve", "--no-such-flag"], &[], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(64), "stderr: {err}");
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn type_errors_name_the_field() {
    for (text, name) in [
        ("shared_links = \"two\"\n", "shared_links"),
        ("[limits]\nmax_bulk_bytes = -1\n", "max_bulk_bytes"),
        ("[timeouts]\nidle_secs = \"1s\"\n", "idle_secs"),
    ] {
        let (code, err) = serve_with_config(text, &[]);
        assert_eq!(code, 64, "stderr: {err}");
        assert!(err.contains(name), "config {text:?}: the error does not say which field: {err}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let (status, out, err) = run_respseal(&["--help"], &[], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(out.contains("Usage:") && out.contains("serve"), "{out}");
    let (status, out, _) = run_respseal(&["serve", "--help"], &[], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(0));
    for flag in ["--listen", "--backend", "--dedicated", "--shared-links", "--max-clients", "--config"] {
        assert!(out.contains(flag), "serve --help does not mention {flag}: {out}");
    }
    let (status, out, _) = run_respseal(&["--version"], &[], RUN_TIMEOUT);
    assert_eq!(status.code(), Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

#[test]
fn environment_variables_are_honoured() {
    let redis = RedisServer::start();
    // RESPSEAL_LISTEN and RESPSEAL_BACKEND, no flags at all.
    let env = [("RESPSEAL_BACKEND", redis.url())];
    let proxy = Proxy::launch(Launch { listen_via_env: true, env: &env, ..Default::default() });
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    direct(redis.port).assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");

    // A flag wins over the environment.
    let unused = free_port();
    let env = [("RESPSEAL_LISTEN", format!("127.0.0.1:{unused}"))];
    let proxy2 = Proxy::launch(Launch { backend: Some(redis.url()), env: &env, ..Default::default() });
    proxy2.client().assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    assert!(Client::try_connect(unused).is_err(), "RESPSEAL_LISTEN used despite --listen");

    // RESPSEAL_MAX_CLIENTS.
    let env = [("RESPSEAL_MAX_CLIENTS", "1".to_string())];
    let proxy3 = Proxy::launch(Launch { backend: Some(redis.url()), env: &env, ..Default::default() });
    let mut only = wait_until("the only slot", Duration::from_secs(5), || {
        let mut c = proxy3.client();
        c.send(b"PING\r\n");
        c.try_read_frame(IO_TIMEOUT).ok().filter(|f| f == b"+PONG\r\n").map(|_| c)
    });
    let mut refused = proxy3.client();
    assert_bytes(&refused.read_frame(), b"-ERR max number of clients reached\r\n");
    only.assert_cmd(&["PING"], b"+PONG\r\n");
}

#[test]
fn idle_yield_can_be_turned_off_and_the_proxy_still_serves() {
    let redis = RedisServer::start();
    for (how, proxy) in [
        ("flag", Proxy::start(redis.port, &["--idle-yield", "false", "--threads", "2"])),
        ("file", Proxy::start_with_config(redis.port, "idle_yield = false\n", &["--threads", "2"])),
    ] {
        let mut clients: Vec<Client> = (0..4).map(|_| proxy.client()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.assert_cmd(&["SET", &format!("{how}{i}"), "v"], b"+OK\r\n");
            c.assert_cmd(&["GET", &format!("{how}{i}")], b"$1\r\nv\r\n");
        }
        let log = proxy.log();
        assert!(log.contains("idle_yield=false"), "{how}: {log}");
    }
    let proxy = Proxy::start(redis.port, &[]);
    proxy.client().assert_cmd(&["PING"], b"+PONG\r\n");
    assert!(proxy.log().contains("idle_yield=true"), "{}", proxy.log());
    let (code, out) = serve_with_config("idle_yield = \"maybe\"\n", &[]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("idle_yield"), "{out}");
}

#[test]
fn idle_clients_are_closed_when_configured() {
    let redis = RedisServer::start();
    // 2 s idle timeout: wide enough that the margins below hold on a loaded
    // 2-core machine.
    let proxy = Proxy::start_with_config(redis.port, "[timeouts]\nidle_secs = 2\n", &[]);
    let mut idle = proxy.client();
    idle.assert_cmd(&["PING"], b"+PONG\r\n");
    let mut subscribed = proxy.client();
    subscribed.assert_cmd(&["SUBSCRIBE", "ch"], b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    let mut waiting = proxy.client();
    waiting.send_cmd(&["BLPOP", "q", "5"]);
    let t = Instant::now();
    idle.assert_closed();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(8), "closed after {took:?}");
    // Waiting for a reply or subscribed is not idle; the idle time starts
    // with the reply.
    assert_bytes(&waiting.read_frame(), b"*-1\r\n");
    let answered = Instant::now();
    assert!(t.elapsed() >= Duration::from_millis(4500));
    let mut publisher = proxy.client();
    publisher.assert_cmd(&["PUBLISH", "ch", "still here"], b":1\r\n");
    assert_bytes(&subscribed.read_frame(), b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$10\r\nstill here\r\n");
    waiting.assert_closed();
    let took = answered.elapsed();
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(8), "closed {took:?} after its reply");
    // A client that sends something more often than the timeout stays.
    let mut active = proxy.client();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4500) {
        active.assert_cmd(&["PING"], b"+PONG\r\n");
        active.assert_silent(Duration::from_millis(300));
    }
    active.assert_cmd(&["PING"], b"+PONG\r\n");
}

/// A proxy with users `default` (password pw1, from the environment) and
/// `app` (password pw2, from a file).
fn proxy_with_users(redis: &RedisServer, dir: &std::path::Path) -> Proxy {
    let pw_file = write_file(dir, "app.pw", "pw2\n");
    let config = format!(
        "[[users]]\nname = \"default\"\npassword_env = \"RESPSEAL_TEST_PW\"\n[[users]]\nname = \"app\"\npassword_file = \"{}\"\n",
        pw_file.display()
    );
    let env = [("RESPSEAL_TEST_PW", "pw1".to_string())];
    Proxy::launch(Launch { backend: Some(redis.url()), config: Some(&config), env: &env, ..Default::default() })
}

#[test]
fn client_auth_with_proxy_users() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let proxy = proxy_with_users(&redis, dir.path());

    let mut c = proxy.client();
    c.assert_cmd(&["PING"], b"-NOAUTH Authentication required.\r\n");
    c.assert_cmd(&["GET", "k"], b"-NOAUTH Authentication required.\r\n");
    c.assert_cmd(&["AUTH", "nope"], b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    c.assert_cmd(&["AUTH", "app", "pw1"], b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    c.assert_cmd(&["PING"], b"-NOAUTH Authentication required.\r\n");
    c.assert_cmd(&["AUTH", "pw1"], b"+OK\r\n");
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    // RESET logs the client out, like Redis.
    c.assert_cmd(&["RESET"], b"+RESET\r\n");
    c.assert_cmd(&["GET", "k"], b"-NOAUTH Authentication required.\r\n");
    c.assert_cmd(&["AUTH", "app", "pw2"], b"+OK\r\n");
    c.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");

    // HELLO needs authentication first, or its AUTH option.
    let mut h = proxy.client();
    let r = h.cmd(&["HELLO", "3"]);
    assert_line_prefix(&r, b"-NOAUTH HELLO must be called with the client already authenticated");
    h.assert_cmd(
        &["HELLO", "3", "AUTH", "app", "wrong"],
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    h.assert_cmd(&["GET", "k"], b"-NOAUTH Authentication required.\r\n");
    h.send_cmd(&["HELLO", "3", "AUTH", "app", "pw2"]);
    h.proto = Proto::Resp3;
    let r = h.read_frame();
    assert!(r.starts_with(b"%7\r\n"), "{}", show(&r));
    h.assert_cmd(&["GET", "missing"], b"_\r\n");
    h.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");

    // QUIT works unauthenticated; the backend never saw any AUTH.
    let mut q = proxy.client();
    q.assert_cmd(&["QUIT"], b"+OK\r\n");
    q.assert_closed();
    let stats = bulk_text(&direct(redis.port).cmd(&["INFO", "commandstats"]));
    assert!(!stats.contains("cmdstat_auth"), "AUTH reached Redis: {stats}");
}

/// `HELLO 3 AUTH user pass SETNAME name` (Lettuce, node-redis with a client
/// name): the proxy checks the credentials itself, never forwards them, and
/// the client ends up authenticated, in RESP3, with its name.
#[test]
fn hello_auth_setname_with_proxy_users() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let proxy = proxy_with_users(&redis, dir.path());
    let mut problems = Vec::new();
    // Everything Redis executes, as Redis reports it.
    let mut monitor = direct(redis.port);
    monitor.assert_cmd(&["MONITOR"], b"+OK\r\n");

    // Right credentials for a proxy user (unknown to Redis).
    let mut c = proxy.client();
    c.send_cmd(&["HELLO", "3", "AUTH", "app", "pw2", "SETNAME", "myapp"]);
    c.proto = Proto::Resp3;
    let r = c.read_frame();
    if r.starts_with(b"%7\r\n") {
        c.assert_cmd(&["GET", "missing"], b"_\r\n");
        c.assert_cmd(&["CLIENT", "GETNAME"], b"$5\r\nmyapp\r\n");
    } else {
        problems.push(format!("HELLO 3 AUTH app pw2 SETNAME myapp (valid proxy user): got {}", show(&r)));
    }

    // Wrong password for `default`: a Redis without a password would accept
    // any, so a forwarded HELLO shows.
    let mut bad = proxy.client();
    bad.send_cmd(&["HELLO", "3", "AUTH", "default", "wrong", "SETNAME", "x"]);
    bad.proto = Proto::Resp3;
    let r = bad.read_frame();
    if r != b"-WRONGPASS invalid username-password pair or user is disabled.\r\n" {
        problems.push(format!("HELLO 3 AUTH default wrong SETNAME x (wrong password): got {}", show(&r)));
    }

    // No AUTH at all: refused like a plain HELLO, not passed to Redis.
    let mut anon = proxy.client();
    let r = anon.cmd(&["HELLO", "2", "SETNAME", "anon"]);
    if !r.starts_with(b"-NOAUTH HELLO must be called with the client already authenticated") {
        problems.push(format!("HELLO 2 SETNAME anon (not authenticated): got {}", show(&r[..r.len().min(60)])));
    }

    direct(redis.port).assert_cmd(&["ECHO", "end"], b"$3\r\nend\r\n");
    loop {
        let line = monitor.read_frame();
        if contains(&line, b"\"AUTH\"") || contains(&line, b"\"auth\"") {
            problems.push(format!("AUTH reached Redis: {}", show(&line)));
        }
        if line.ends_with(b"\"ECHO\" \"end\"\r\n") {
            break;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_user_name_given_twice_is_a_configuration_error() {
    let config = "[[users]]\nname = \"app\"\npassword_env = \"RESPSEAL_TEST_PW\"\n\
                  [[users]]\nname = \"app\"\npassword_env = \"RESPSEAL_TEST_PW2\"\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "c.toml", config);
    let env = [("RESPSEAL_TEST_PW", "pw-first-7731".to_string()), ("RESPSEAL_TEST_PW2", "pw-second-7732".to_string())];
    let (status, _, err) =
        run_respseal(&["check", "--config", path.to_str().expect("utf-8")], &env, Duration::from_secs(10));
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("users[1] (app): user name given twice"), "{err}");
    assert!(!err.contains("pw-first") && !err.contains("pw-second"), "a password in the error: {err}");
}

/// Protected mode: with no `[[users]]`, a listen address other hosts can
/// reach is refused (exit 64, saying why and how to opt out), and so is an
/// admin listener off loopback; the explicit opt-ins start.
#[test]
fn protected_mode_refuses_open_doors_unless_asked() {
    let redis = RedisServer::start();
    let backend = redis.url();
    let port = free_port().to_string();
    let open = format!("0.0.0.0:{port}");
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--backend", &backend, "--listen", &open];
        args.extend_from_slice(extra);
        run_respseal(&args, &[], Duration::from_secs(10))
    };
    let (status, _, err) = serve(&[]);
    assert_eq!(status.code(), Some(64), "stderr: {err}");
    assert!(err.contains("no [[users]] are configured") && err.contains("allow_unauthenticated"), "{err}");
    let admin = format!("0.0.0.0:{}", free_port());
    let (status, _, err) = serve(&["--allow-unauthenticated", "--admin-listen", &admin]);
    assert_eq!(status.code(), Some(64), "stderr: {err}");
    assert!(err.contains("admin_listen") && err.contains("admin_allow_remote"), "{err}");
    // Opted in on purpose: it serves (reached here over loopback).
    let mut child = Reaped(
        respseal_command()
            .args(["serve", "--backend", &backend, "--listen", &open])
            .args(["--allow-unauthenticated", "--admin-allow-remote", "--admin-listen", &admin])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn respseal"),
    );
    let port: u16 = port.parse().expect("port");
    let mut c = wait_until("respseal on 0.0.0.0", Duration::from_secs(20), || Client::try_connect(port).ok());
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    child.kill();
    // With users, an open address needs no opt-in.
    let users = "[[users]]\nname = \"default\"\npassword_env = \"RESPSEAL_TEST_PW\"\n";
    let env = [("RESPSEAL_TEST_PW", "pw".to_string())];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(dir.path(), "c.toml", &format!("listen = \"0.0.0.0:{}\"\n{users}", free_port()));
    let (status, out, err) = run_respseal(
        &["check", "--config", cfg.to_str().expect("utf-8"), "--backend", &backend, "--sample", "0"],
        &env,
        Duration::from_secs(20),
    );
    assert!(status.success(), "{out}{err}");
}
