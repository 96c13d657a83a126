//! Operating respseal: the admin endpoints and their metrics, SIGHUP
//! reload, and TLS on both sides, against real Redis servers and real
//! clients (redis-cli with `--tls`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// The key id in a sealed value's envelope (bytes 4..8), as hex.
fn key_id_in_redis(redis: &RedisServer, key: &str) -> String {
    let r = redis.client().cmd(&["GET", key]);
    let start = r.iter().position(|&b| b == b'\n').expect("bulk header") + 1;
    r[start + 4..start + 8].iter().map(|b| format!("{b:02x}")).collect()
}

fn scrape(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

fn keyring_config(rule: &str, keys: &[(&Path, &str)]) -> String {
    let mut c = format!("[[rule]]\npattern = \"{rule}\"\n");
    for (file, state) in keys {
        c.push_str(&format!("[[key]]\nfile = \"{}\"\nstate = \"{state}\"\n", file.display()));
    }
    c
}

#[test]
fn metrics_count_commands_values_and_connections_and_readyz_follows_redis() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::start(
        redis.port,
        &["--seal", "sess:*", "--key-file", key.to_str().expect("utf-8"), "--admin-listen", &admin_addr],
    );
    assert_eq!(http_get(admin, "/healthz").expect("healthz").0, 200);
    assert_eq!(http_get(admin, "/readyz").expect("readyz"), (200, "ready\n".into()));
    // A probe storm opens no storm of Redis connections: Redis is asked at
    // most once a second.
    let connections = |redis: &RedisServer| {
        let info = bulk_text(&redis.client().cmd(&["INFO", "stats"]));
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("total_connections_received")
    };
    let before = connections(&redis);
    let t = std::time::Instant::now();
    for _ in 0..50 {
        assert_eq!(http_get(admin, "/readyz").expect("readyz").0, 200);
    }
    let opened = connections(&redis) - before - 1;
    let allowed = t.elapsed().as_secs() + 2;
    assert!(opened <= allowed, "50 /readyz requests opened {opened} Redis connections");
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:a", "secret-value"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:a"], b"$12\r\nsecret-value\r\n");
    c.assert_cmd(&["SET", "plain", "x"], b"+OK\r\n");
    // A Redis error, and a refusal.
    assert_line_prefix(&c.cmd(&["INCR", "plain"]), b"-ERR value is not an integer");
    assert_line_prefix(&c.cmd(&["INCR", "sess:a"]), b"-ERR respseal: INCR is not allowed on sealed keys");
    // A pipeline of plain commands, answered in one chunk.
    c.send(&[resp(&["GET", "plain"]), resp(&["EXISTS", "plain"]), resp(&["TTL", "plain"])].concat());
    c.read_frames(3);
    let m = scrape(admin);
    let series = |s: &str| metric(&m, s);
    assert_eq!(series(r#"respseal_commands_total{family="string",outcome="ok"}"#), 4.0, "{m}");
    assert_eq!(series(r#"respseal_commands_total{family="string",outcome="redis_error"}"#), 1.0, "{m}");
    assert_eq!(series(r#"respseal_commands_total{family="string",outcome="refused"}"#), 1.0, "{m}");
    assert_eq!(series(r#"respseal_commands_total{family="keyspace",outcome="ok"}"#), 2.0, "{m}");
    assert_eq!(series("respseal_values_sealed_total"), 1.0, "{m}");
    assert_eq!(series("respseal_values_opened_total"), 1.0, "{m}");
    assert_eq!(series(r#"respseal_refusals_total{reason="sealed_inspect"}"#), 1.0, "{m}");
    assert_eq!(series("respseal_clients_connected"), 1.0, "{m}");
    assert!(series("respseal_clients_accepted_total") >= 2.0, "the readiness probe and this client: {m}");
    assert!(series("respseal_client_read_bytes_total") > 100.0, "{m}");
    assert!(series("respseal_client_written_bytes_total") > 30.0, "{m}");
    assert_eq!(series(r#"respseal_backend_links_up{link="shared"}"#), 2.0, "{m}");
    assert_eq!(series("respseal_config_generation"), 1.0, "{m}");
    // The histogram: every answered string command in +Inf, cumulative buckets.
    assert_eq!(series(r#"respseal_command_duration_seconds_count{family="string"}"#), 5.0, "{m}");
    assert_eq!(series(r#"respseal_command_duration_seconds_bucket{family="string",le="+Inf"}"#), 5.0, "{m}");
    assert!(m.contains("# TYPE respseal_command_duration_seconds histogram"), "{m}");
    // Closed label sets: no key name, value or address in the exposition.
    for leak in ["sess:a", "secret-value", "plain\"", "127.0.0.1"] {
        assert!(!m.contains(leak), "{leak} in /metrics: {m}");
    }
    // An open failure is counted by reason.
    redis.client().assert_cmd(&["SET", "sess:forged", "not-an-envelope"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:forged"], b"$-1\r\n");
    let m = scrape(admin);
    assert_eq!(metric(&m, r#"respseal_open_failures_total{reason="legacy_plaintext"}"#), 1.0, "{m}");
    // Redis goes away: not ready, with the reason; still alive.
    redis.kill();
    let (status, body) = wait_until("readyz turns 503", Duration::from_secs(10), || {
        http_get(admin, "/readyz").ok().filter(|(s, _)| *s == 503)
    });
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready: backend unavailable"), "{body}");
    assert_eq!(http_get(admin, "/healthz").expect("healthz").0, 200);
    assert_line_prefix(&c.cmd(&["GET", "plain"]), b"-ERR respseal: backend");
    let m = scrape(admin);
    assert!(metric(&m, r#"respseal_commands_total{family="string",outcome="backend_error"}"#) >= 1.0, "{m}");
    redis.restart_same_port();
    wait_until("readyz back to 200", Duration::from_secs(10), || {
        http_get(admin, "/readyz").ok().filter(|(s, _)| *s == 200)
    });
}

#[test]
fn the_admin_listener_is_off_unless_configured() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &[]);
    let log = proxy.log();
    assert!(!log.contains("admin endpoints ready"), "{log}");
}

#[test]
fn sighup_reloads_the_keyring_for_open_connections_and_keeps_the_old_one_on_errors() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, old_id) = keygen(dir.path(), "old.key");
    let (new, new_id) = keygen(dir.path(), "new.key");
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::start_with_config(
        redis.port,
        &keyring_config("sess:*", &[(&old, "primary")]),
        &["--admin-listen", &admin_addr],
    );
    // One connection held across every reload.
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:1", "under-old"], b"+OK\r\n");
    assert_eq!(key_id_in_redis(&redis, "sess:1"), old_id);

    let reload = |text: &str, generation: f64| {
        std::fs::write(proxy.config_path(), text).expect("rewrite config");
        proxy.sighup();
        wait_until("reload done", Duration::from_secs(10), || {
            let m = scrape(admin);
            let ok = metric(&m, r#"respseal_config_reloads_total{outcome="ok"}"#);
            let err = metric(&m, r#"respseal_config_reloads_total{outcome="error"}"#);
            (ok + err + 1.0 >= generation).then_some(m)
        })
    };
    // Add the new key as decrypt-only: nothing changes for sealing.
    reload(&keyring_config("sess:*", &[(&old, "primary"), (&new, "decrypt-only")]), 2.0);
    c.assert_cmd(&["SET", "sess:2", "still-old"], b"+OK\r\n");
    assert_eq!(key_id_in_redis(&redis, "sess:2"), old_id);
    // Promote it: the same connection now seals under the new key and
    // still opens the old values.
    let m = reload(&keyring_config("sess:*", &[(&old, "decrypt-only"), (&new, "primary")]), 3.0);
    assert_eq!(metric(&m, "respseal_config_generation"), 3.0, "{m}");
    c.assert_cmd(&["SET", "sess:3", "under-new"], b"+OK\r\n");
    assert_eq!(key_id_in_redis(&redis, "sess:3"), new_id);
    c.assert_cmd(&["GET", "sess:1"], b"$9\r\nunder-old\r\n");
    // An invalid file (two primaries, a missing key file): rejected with
    // every error logged, the running configuration kept.
    let bad = format!(
        "{}[[key]]\nfile = \"{}\"\nstate = \"primary\"\n[[rule]]\npattern = \"\"\n",
        keyring_config("sess:*", &[(&old, "primary"), (&new, "primary")]),
        dir.path().join("missing.key").display()
    );
    let m = reload(&bad, 4.0);
    assert_eq!(metric(&m, r#"respseal_config_reloads_total{outcome="error"}"#), 1.0, "{m}");
    assert_eq!(metric(&m, "respseal_config_generation"), 3.0, "{m}");
    let log = wait_until("rejection logged", Duration::from_secs(5), || {
        let l = proxy.log();
        l.contains("configuration not reloaded").then_some(l)
    });
    assert!(log.contains("reload rejected") && log.contains("pattern is empty"), "{log}");
    c.assert_cmd(&["SET", "sess:4", "kept"], b"+OK\r\n");
    assert_eq!(key_id_in_redis(&redis, "sess:4"), new_id);
    c.assert_cmd(&["GET", "sess:2"], b"$9\r\nstill-old\r\n");
    // Users are reloaded too: a new user can log in on a new connection,
    // while the connection that is already open stays logged in.
    let users = format!(
        "{}[[users]]\nname = \"app\"\npassword_file = \"{}\"\n",
        keyring_config("sess:*", &[(&old, "decrypt-only"), (&new, "primary")]),
        write_file(dir.path(), "pw", "reloaded-password\n").display()
    );
    reload(&users, 5.0);
    let mut fresh = proxy.client();
    assert_line_prefix(&fresh.cmd(&["GET", "sess:1"]), b"-NOAUTH");
    fresh.assert_cmd(&["AUTH", "app", "reloaded-password"], b"+OK\r\n");
    fresh.assert_cmd(&["GET", "sess:1"], b"$9\r\nunder-old\r\n");
    c.assert_cmd(&["GET", "sess:3"], b"$9\r\nunder-new\r\n");
}

// ----- TLS -------------------------------------------------------------------

/// A redis-server that speaks TLS only, requiring client certificates.
struct TlsRedis {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(pki: &Pki) -> TlsRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--tls-cert-file", &pki.path("server.crt"), "--tls-key-file", &pki.path("server.key")])
            .args(["--tls-ca-cert-file", &pki.path("ca.crt"), "--tls-auth-clients", "yes"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let r = TlsRedis { port, child, _dir: dir };
        wait_until("TLS redis-server ready", START_TIMEOUT, || {
            let out = r.cli(pki, r.port, &["PING"], true);
            (out == "PONG").then_some(())
        });
        r
    }

    /// redis-cli --tls against `port`, with the client certificate if `cert`.
    fn cli(&self, pki: &Pki, port: u16, args: &[&str], cert: bool) -> String {
        tls_cli(pki, port, args, if cert { Some("client") } else { None })
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_on_both_sides_with_mutual_authentication() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let plain = free_port();
    let config = format!(
        "backend = \"rediss://127.0.0.1:{}\"\n\
         [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\nplaintext_listen = \"127.0.0.1:{plain}\"\n\
         [backend_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}",
        redis.port,
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
        keyring_config("sess:*", &[(&key, "primary")]),
    );
    let cfg = write_file(dir.path(), "tls.toml", &config);
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let mut guard = Reaped(
        respseal_command()
            .args(["serve", "--config", cfg.to_str().expect("utf-8"), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("respseal"),
    );
    let child = &mut guard.0;
    let read_log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    wait_until("respseal with TLS ready", START_TIMEOUT, || {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("respseal exited {s}: {}", read_log());
        }
        (tls_cli(&pki, port, &["PING"], Some("client")) == "PONG").then_some(())
    });
    // Through respseal with a certificate from the CA: sealed in Redis.
    assert_eq!(tls_cli(&pki, port, &["SET", "sess:tls", "over-tls"], Some("client")), "OK");
    assert_eq!(tls_cli(&pki, port, &["GET", "sess:tls"], Some("client")), "over-tls");
    let stored = redis.cli(&pki, redis.port, &["GET", "sess:tls"], true);
    assert!(!stored.contains("over-tls") && stored.starts_with("\0RE"), "{stored:?}");
    // A certificate the CA did not sign, or none, is refused.
    for cert in [Some("rogue"), None] {
        let out = tls_cli(&pki, port, &["GET", "sess:tls"], cert);
        assert_ne!(out, "over-tls", "{cert:?} got through");
        assert!(out.contains("rror") || out.is_empty() || out.contains("closed"), "{cert:?}: {out}");
    }
    // The plaintext listener beside it serves the same data.
    let mut c = Client::connect(plain);
    c.assert_cmd(&["GET", "sess:tls"], b"$8\r\nover-tls\r\n");
    // Plaintext on the TLS port gets nowhere.
    let mut p = Client::connect(port);
    p.send(&resp(&["GET", "sess:tls"]));
    let r = p.try_read_frame(Duration::from_secs(3));
    assert!(!matches!(&r, Ok(f) if f.ends_with(b"over-tls\r\n")), "plaintext answered on the TLS port: {r:?}");
    // Certificates are reloaded on SIGHUP: a broken certificate file is
    // rejected (the old one kept), a new pair is taken for new connections.
    std::fs::write(pki.path("server.crt"), "not a certificate").expect("break cert");
    let _ = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status();
    wait_until("bad certificate rejected", Duration::from_secs(10), || {
        read_log().contains("configuration not reloaded").then_some(())
    });
    // The file names no certificate (a PEM reader skips text that is not
    // PEM): the reason, with the file, is in the log.
    let cert = pki.path("server.crt");
    assert!(read_log().contains(&format!("no certificate in {cert}")), "{}", read_log());
    assert_eq!(tls_cli(&pki, port, &["GET", "sess:tls"], Some("client")), "over-tls");
    // A new valid pair in place of the old files: new connections get it,
    // the held one stays up.
    let mut held = Client::connect(plain);
    for (from, to) in [("server2.crt", "server.crt"), ("server2.key", "server.key")] {
        std::fs::copy(pki.path(from), pki.path(to)).expect("swap certificate");
    }
    let _ = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status();
    wait_until("new certificate loaded", Duration::from_secs(10), || {
        read_log().contains("configuration reloaded").then_some(())
    });
    let subject = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile", &pki.path("ca.crt")])
        .args(["-cert", &pki.path("client.crt"), "-key", &pki.path("client.key")])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&subject.stdout);
    assert!(text.contains("CN = server2") || text.contains("CN=server2"), "the new certificate is served: {text}");
    assert_eq!(tls_cli(&pki, port, &["GET", "sess:tls"], Some("client")), "over-tls");
    held.assert_cmd(&["GET", "sess:tls"], b"$8\r\nover-tls\r\n");
    let _ = child.kill();
    let _ = child.wait();
    let log = read_log();
    for secret in [std::fs::read_to_string(pki.path("server.key")).expect("key"), "over-tls".into()] {
        let body = secret.lines().nth(1).unwrap_or(&secret).to_string();
        assert!(!log.contains(&body), "secret in the log: {log}");
    }
}

/// The backend's certificates (`[backend_tls]`) are reloaded on SIGHUP for
/// the connections opened after it: respseal starts with a client
/// certificate Redis refuses (another CA's), so nothing reaches Redis; the
/// files are replaced with a good pair and SIGHUP makes the next
/// connections work. A broken file afterwards is rejected and the good
/// pair kept, also for connections opened again after Redis closed them.
#[test]
fn backend_certificates_are_reloaded_for_new_backend_connections() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let (cert, pkey) = (dir.path().join("backend.crt"), dir.path().join("backend.key"));
    let install = |from: &str| {
        std::fs::copy(pki.path(&format!("{from}.crt")), &cert).expect("certificate");
        std::fs::copy(pki.path(&format!("{from}.key")), &pkey).expect("key");
    };
    install("rogue");
    let config = format!(
        "backend = \"rediss://127.0.0.1:{}\"\n\
         [backend_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}",
        redis.port,
        pki.path("ca.crt"),
        cert.display(),
        pkey.display(),
        keyring_config("sess:*", &[(&key, "primary")]),
    );
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    let mut c = proxy.client();
    let refused = c.cmd(&["SET", "sess:rotated", "after-rotation"]);
    assert!(refused.starts_with(b"-"), "Redis took a certificate of another CA: {}", show(&refused));
    assert_eq!(redis.cli(&pki, redis.port, &["DBSIZE"], true), "0");

    install("client");
    proxy.sighup();
    wait_until("the reload is logged", Duration::from_secs(10), || {
        proxy.log().contains("configuration reloaded").then_some(())
    });
    wait_until("a new backend connection with the new certificate", Duration::from_secs(10), || {
        (c.cmd(&["SET", "sess:rotated", "after-rotation"]) == b"+OK\r\n").then_some(())
    });
    let stored = redis.cli(&pki, redis.port, &["GET", "sess:rotated"], true);
    assert!(stored.starts_with("\0RE") && !stored.contains("after-rotation"), "{stored:?}");

    // A broken certificate file: rejected, the good pair kept.
    std::fs::write(&cert, "not a certificate").expect("break certificate");
    proxy.sighup();
    wait_until("the bad file is rejected", Duration::from_secs(10), || {
        proxy.log().contains("configuration not reloaded").then_some(())
    });
    // Redis closes respseal's connections: the next ones are opened anew.
    let killed = redis.cli(&pki, redis.port, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"], true);
    assert!(killed.parse::<u32>().is_ok_and(|n| n >= 1), "CLIENT KILL: {killed:?}");
    wait_until("reconnected with the kept certificate", Duration::from_secs(10), || {
        (proxy.client().cmd(&["GET", "sess:rotated"]) == b"$14\r\nafter-rotation\r\n").then_some(())
    });
    let log = proxy.log();
    let secret = std::fs::read_to_string(pki.path("client.key")).expect("key");
    assert!(!log.contains(secret.lines().nth(1).unwrap_or(&secret)), "a key in the log: {log}");
}

// ----- rewrap, check, inspect --------------------------------------------------

#[test]
fn rewrap_moves_every_value_to_the_primary_with_ttls_kept_and_a_second_run_changes_nothing() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, old_id) = keygen(dir.path(), "old.key");
    let (new, new_id) = keygen(dir.path(), "new.key");
    let two_rules = |keys: &[(&Path, &str)]| {
        format!("backend = \"{}\"\n[[rule]]\npattern = \"b:*\"\n{}", redis.url(), keyring_config("a:*", keys))
    };
    {
        let p = Proxy::start_with_config(redis.port, &two_rules(&[(&old, "primary")]), &[]);
        let mut c = p.client();
        for i in 0..30 {
            c.assert_cmd(&["SET", &format!("a:{i}"), &format!("value-a-{i}"), "EX", "1000"], b"+OK\r\n");
            c.assert_cmd(&["SET", &format!("b:{i}"), &format!("value-b-{i}")], b"+OK\r\n");
        }
    }
    let cfg = write_file(dir.path(), "new.toml", &two_rules(&[(&old, "decrypt-only"), (&new, "primary")]));
    let cfg = cfg.to_str().expect("utf-8");
    // check with the rotated keyring opens everything it samples.
    let (status, out, _) = run_respseal(&["check", "--config", cfg], &[], Duration::from_secs(20));
    assert!(status.success(), "{out}");
    assert!(out.contains("sample: 60 sealed values opened, 0 failed"), "{out}");
    // Legacy plaintext (which a `reject` rule does not serve: check counts
    // it as not_sealed) and a value that is not a string.
    let mut d = redis.client();
    d.assert_cmd(&["SET", "a:legacy", "legacy-plaintext"], b"+OK\r\n");
    d.assert_cmd(&["RPUSH", "a:list", "x"], b":1\r\n");
    // A cursor past the first pattern (b:*) walks only the second (a:*).
    let (status, out, err) =
        run_respseal(&["rewrap", "--config", cfg, "--cursor", "1:0"], &[], Duration::from_secs(30));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("scanned 32, rewrapped 30, already current 0, legacy sealed 0, legacy left 1"), "{out}");
    assert_eq!(key_id_in_redis(&redis, "a:0"), new_id);
    assert_eq!(key_id_in_redis(&redis, "b:0"), old_id);
    let (status, out, err) =
        run_respseal(&["rewrap", "--config", cfg, "--max-per-sec", "1000"], &[], Duration::from_secs(30));
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("scanned 62, rewrapped 30, already current 30, legacy sealed 0, legacy left 1")
            && out.contains("not strings 1, failed 0"),
        "{out}"
    );
    for i in 0..30 {
        assert_eq!(key_id_in_redis(&redis, &format!("a:{i}")), new_id);
        let ttl = d.cmd(&["TTL", &format!("a:{i}")]);
        let ttl: i64 = std::str::from_utf8(&ttl[1..ttl.len() - 2]).expect("int").parse().expect("int");
        assert!(ttl > 900, "the TTL survives a rewrap: {ttl}");
    }
    // Again: nothing changes.
    let before = d.cmd(&["GET", "a:7"]);
    let (status, out, _) = run_respseal(&["rewrap", "--config", cfg], &[], Duration::from_secs(30));
    assert!(status.success() && out.contains("rewrapped 0, already current 60"), "{out}");
    assert_eq!(d.cmd(&["GET", "a:7"]), before);
    // --legacy seals the plaintext too, flagged as re-sealed.
    let (status, out, _) = run_respseal(&["rewrap", "--config", cfg, "--legacy"], &[], Duration::from_secs(30));
    assert!(status.success() && out.contains("legacy sealed 1"), "{out}");
    let (_, out, _) = run_respseal(&["inspect", "--config", cfg, "--resealed"], &[], Duration::from_secs(20));
    assert!(out.contains("a:legacy  sealed v1 key=") && out.contains("resealed from legacy plaintext"), "{out}");
    // With the old key disabled everything still opens through respseal.
    let final_cfg = two_rules(&[(&old, "disabled"), (&new, "primary")]);
    let p = Proxy::start_with_config(redis.port, &final_cfg, &[]);
    let mut c = p.client();
    c.assert_cmd(&["GET", "a:29"], b"$10\r\nvalue-a-29\r\n");
    c.assert_cmd(&["GET", "b:0"], b"$9\r\nvalue-b-0\r\n");
    c.assert_cmd(&["GET", "a:legacy"], b"$16\r\nlegacy-plaintext\r\n");
    // inspect KEY: version, key id and state, age and size; never the value.
    let final_path = write_file(dir.path(), "final.toml", &final_cfg);
    let (status, out, _) = run_respseal(
        &["inspect", "--config", final_path.to_str().expect("utf-8"), "a:3"],
        &[],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{out}");
    assert!(out.starts_with(&format!("a:3  sealed v1 key={new_id} state=primary age=")), "{out}");
    assert!(out.contains(&format!("size={}", 9 + respseal::crypto::OVERHEAD)) && !out.contains("value-a-3"), "{out}");
}

#[test]
fn check_catches_a_keyring_that_does_not_open_what_redis_holds() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, _) = keygen(dir.path(), "old.key");
    let (new, _) = keygen(dir.path(), "new.key");
    {
        let p = Proxy::start_with_config(redis.port, &keyring_config("sess:*", &[(&old, "primary")]), &[]);
        let mut c = p.client();
        for i in 0..5 {
            c.assert_cmd(&["SET", &format!("sess:{i}"), "v"], b"+OK\r\n");
        }
    }
    // The old key forgotten: every sampled value fails, and check says so.
    let wrong = format!("backend = \"{}\"\n{}", redis.url(), keyring_config("sess:*", &[(&new, "primary")]));
    let cfg = write_file(dir.path(), "wrong.toml", &wrong);
    let (status, out, _) =
        run_respseal(&["check", "--config", cfg.to_str().expect("utf-8")], &[], Duration::from_secs(20));
    assert_eq!(status.code(), Some(65), "{out}");
    assert!(out.contains("sample: 0 sealed values opened, 5 failed (unknown_key=5)"), "{out}");
}

/// A `seal = false` exemption under a sealed pattern (PHP's session lock
/// keys, `PHPREDIS_SESSION:*_LOCK` under `PHPREDIS_SESSION:*`) holds
/// plaintext by design: `check` does not count it as a value that fails
/// to open, and `rewrap --legacy` leaves it as it is.
#[test]
fn exempt_names_under_a_sealed_pattern_are_neither_checked_nor_rewrapped() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let rules = format!(
        "[[rule]]\npattern = \"PHPREDIS_SESSION:*_LOCK\"\nseal = false\n{}",
        keyring_config("PHPREDIS_SESSION:*", &[(&key, "primary")])
    );
    {
        let p = Proxy::start_with_config(redis.port, &rules, &[]);
        let mut c = p.client();
        c.assert_cmd(&["SET", "PHPREDIS_SESSION:abc", "user|s:3:\"ada\";"], b"+OK\r\n");
        c.assert_cmd(&["SET", "PHPREDIS_SESSION:abc_LOCK", "1"], b"+OK\r\n");
    }
    assert_eq!(redis.client().cmd(&["GET", "PHPREDIS_SESSION:abc_LOCK"]), b"$1\r\n1\r\n");
    let cfg = write_file(dir.path(), "php.toml", &format!("backend = \"{}\"\n{rules}", redis.url()));
    let cfg = cfg.to_str().expect("utf-8");
    let (status, out, err) = run_respseal(&["check", "--config", cfg], &[], Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{out}{err}");
    assert!(out.contains("sample: 1 sealed values opened, 0 failed"), "{out}");
    let (status, out, err) = run_respseal(&["rewrap", "--legacy", "--config", cfg], &[], Duration::from_secs(20));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("exempt (seal = false) 1"), "{out}{err}");
    assert_eq!(redis.client().cmd(&["GET", "PHPREDIS_SESSION:abc_LOCK"]), b"$1\r\n1\r\n", "the lock stays plaintext");
}

// ----- key rotation end to end -----------------------------------------------

/// The operator's runbook, while the express-session example serves a
/// load of at least 50 requests a second through respseal: add the new
/// key as decrypt-only and reload; promote it and reload; rewrap; disable
/// the old key and reload. No request may fail, every session keeps
/// counting, and every value in Redis ends under the new key.
#[test]
fn key_rotation_under_load_loses_no_session() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, old_id) = keygen(dir.path(), "old.key");
    let (new, new_id) = keygen(dir.path(), "new.key");
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let config = |keys: &[(&Path, &str)]| format!("backend = \"{}\"\n{}", redis.url(), keyring_config("sess:*", keys));
    let proxy = Proxy::start_with_config(redis.port, &config(&[(&old, "primary")]), &["--admin-listen", &admin_addr]);
    let app_port = free_port();
    let app_log = std::fs::File::create(dir.path().join("app.log")).expect("log");
    let _app = Reaped(
        std::process::Command::new("node")
            .arg(root.join("examples/express-session/app.js"))
            .env("REDIS_URL", format!("redis://127.0.0.1:{}", proxy.port))
            .env("PORT", app_port.to_string())
            .stdout(app_log.try_clone().expect("dup"))
            .stderr(app_log)
            .spawn()
            .expect("node"),
    );
    wait_until("the app answers", START_TIMEOUT, || http_get(app_port, "/").ok().filter(|(s, _)| *s == 200));
    let load = SessionLoad::start(dir.path(), "rotation", app_port, 8, 100);
    let sealed = || metric(&scrape(admin), "respseal_values_sealed_total");
    // Let the load run for `n` more sealed session writes.
    let run_for = |n: f64| {
        let from = sealed();
        wait_until("the load goes on", Duration::from_secs(30), || (sealed() >= from + n).then_some(()));
    };
    let reload = |text: String, generation: f64| {
        std::fs::write(proxy.config_path(), text).expect("config");
        proxy.sighup();
        wait_until("reloaded", Duration::from_secs(10), || {
            (metric(&scrape(admin), "respseal_config_generation") == generation).then_some(())
        });
    };
    run_for(150.0);
    reload(config(&[(&old, "primary"), (&new, "decrypt-only")]), 2.0);
    run_for(150.0);
    reload(config(&[(&old, "decrypt-only"), (&new, "primary")]), 3.0);
    run_for(150.0);
    let cfg = proxy.config_path();
    let (status, out, err) =
        run_respseal(&["rewrap", "--config", cfg.to_str().expect("utf-8")], &[], Duration::from_secs(60));
    assert!(status.success(), "rewrap: {out}{err}");
    assert!(out.contains("failed 0"), "{out}");
    run_for(150.0);
    reload(config(&[(&old, "disabled"), (&new, "primary")]), 4.0);
    run_for(150.0);
    let result = load.finish();
    let field = |name: &str| json_number(&result, name);
    assert_eq!(field("failures"), 0.0, "{result}");
    assert!(field("rate") >= 50.0, "at least 50 requests a second: {result}");
    assert!(field("requests") >= 750.0, "{result}");
    // Every browser's counter equals its number of requests (the first
    // request of each starts its session at 1).
    for user in result.split("{\"requests\": ").skip(2) {
        let (requests, rest) = user.split_once(", \"last\": ").expect("user entry");
        let last = rest.split('}').next().expect("last");
        assert_eq!(requests, last, "a session lost its count: {result}");
    }
    // Every session value in Redis is under the new key.
    let mut d = redis.client();
    let keys = d.cmd(&["KEYS", "sess:*"]);
    let keys: Vec<String> =
        String::from_utf8_lossy(&keys).split("\r\n").filter(|l| l.starts_with("sess:")).map(str::to_string).collect();
    // One per browser, and the readiness probe's (written under the old key
    // before the rotation began, so rewrap moved it).
    assert_eq!(keys.len(), 9, "one session per browser and the probe's: {keys:?}");
    for k in &keys {
        assert_eq!(key_id_in_redis(&redis, k), new_id, "{k} not under the new key (old was {old_id})");
    }
}

// ----- secret hygiene --------------------------------------------------------

/// A workload at the most verbose log level, with canaries planted: key
/// material, a sealed value, a sealed key name, the proxy's and Redis's
/// passwords and the TLS private key. None may appear in the logs,
/// `/metrics`, `inspect` or `check` output, or any error reply.
#[test]
fn no_secret_reaches_logs_metrics_operator_output_or_error_replies() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let backend_pw = "BACKEND-PW-canary-91c2";
    redis.client().assert_cmd(&["CONFIG", "SET", "requirepass", backend_pw], b"+OK\r\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let key_text = std::fs::read_to_string(&key).expect("key file");
    let material = key_text.split('"').nth(3).expect("material").to_string();
    let proxy_pw = "PROXY-PW-canary-5e7a";
    let sealed_name = "sess:NAME-canary-33d0";
    let sealed_value = "VALUE-canary-0b9f";
    let tls_key = std::fs::read_to_string(pki.path("server.key")).expect("tls key");
    let tls_key_line = tls_key.lines().nth(1).expect("pem body").to_string();
    let admin = free_port();
    let plain = free_port();
    let config = format!(
        "backend = \"redis://:{backend_pw}@127.0.0.1:{}\"\nlog = \"trace\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nplaintext_listen = \"127.0.0.1:{plain}\"\n\
         [[users]]\nname = \"default\"\npassword_file = \"{}\"\n{}",
        redis.port,
        pki.path("server.crt"),
        pki.path("server.key"),
        write_file(dir.path(), "pw", proxy_pw).display(),
        keyring_config("sess:*", &[(&key, "primary")]),
    );
    let cfg = write_file(dir.path(), "c.toml", &config);
    let port = free_port();
    let log_path = dir.path().join("log");
    let mut child = Reaped(
        respseal_command()
            .args(["serve", "--config", cfg.to_str().expect("utf-8"), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout"))
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .spawn()
            .expect("respseal"),
    );
    let mut c = wait_until("respseal ready", START_TIMEOUT, || Client::try_connect(plain).ok());
    let mut replies = Vec::new();
    replies.push(c.cmd(&["AUTH", "wrong-password"]));
    replies.push(c.cmd(&["AUTH", "default", "also-wrong"]));
    replies.push(c.cmd(&["GET", sealed_name]));
    c.assert_cmd(&["AUTH", proxy_pw], b"+OK\r\n");
    c.assert_cmd(&["SET", sealed_name, sealed_value], b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", sealed_name]), format!("${}\r\n{sealed_value}\r\n", sealed_value.len()).into_bytes());
    for refused in [
        vec!["APPEND", sealed_name, sealed_value],
        vec!["HSET", sealed_name, "f", sealed_value],
        vec!["EVAL", "return 1", "1", sealed_name],
        vec!["SORT", "x", "BY", sealed_name],
        vec!["RENAME", sealed_name, "other"],
        vec!["SET", sealed_name],
        vec!["CLIENT", "SETINFO", "LIB-NAME", sealed_value],
    ] {
        replies.push(c.cmd(&refused));
    }
    // A value that does not open, and one Redis refuses.
    let mut d = redis.client();
    d.assert_cmd(&["AUTH", backend_pw], b"+OK\r\n");
    d.assert_cmd(&["SET", "sess:forged-canary", sealed_value], b"+OK\r\n");
    replies.push(c.cmd(&["GET", "sess:forged-canary"]));
    replies.push(c.cmd(&["INCRBY", "n", sealed_value]));
    let metrics = scrape(admin);
    let (_, inspect_out, inspect_err) =
        run_respseal(&["inspect", "--config", cfg.to_str().expect("utf-8")], &[], Duration::from_secs(20));
    let (_, check_out, check_err) =
        run_respseal(&["check", "--config", cfg.to_str().expect("utf-8")], &[], Duration::from_secs(20));
    child.kill();
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the log is at its most verbose: {log}");
    let replies: String = replies.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
    let places = [
        ("the log", log.as_str()),
        ("/metrics", metrics.as_str()),
        ("inspect", &format!("{inspect_out}{inspect_err}")),
        ("check", &format!("{check_out}{check_err}")),
        ("error replies", replies.as_str()),
    ];
    let canaries = [
        ("key material", material.as_str()),
        ("the sealed value", sealed_value),
        ("the proxy password", proxy_pw),
        ("the backend password", backend_pw),
        ("the TLS private key", tls_key_line.as_str()),
    ];
    for (where_, text) in places {
        for (what, canary) in canaries {
            assert!(!text.contains(canary), "{what} in {where_}:\n{text}");
        }
    }
    // The sealed key name may be named to the operator who asked for it
    // (inspect lists keys), but never in logs, metrics or replies.
    for (where_, text) in [("the log", log.as_str()), ("/metrics", metrics.as_str()), ("error replies", &replies)] {
        assert!(!text.contains("NAME-canary"), "the sealed key name in {where_}:\n{text}");
    }
}

/// A reload that would stop sealing names the running rules seal (a rule
/// removed, its pattern narrowed, an exemption added) is refused unless
/// the configuration says `allow_dropping_rules = true`; either way each
/// change is logged at warn and counted.
#[test]
fn a_reload_that_drops_a_sealing_rule_is_refused_unless_allowed() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let admin = free_port();
    let keys = format!("[[key]]\nfile = \"{}\"\nstate = \"primary\"\n", key.display());
    let both = format!(
        "admin_listen = \"127.0.0.1:{admin}\"\n[[rule]]\npattern = \"sess:*\"\n[[rule]]\npattern = \"user:*\"\n{keys}"
    );
    let proxy = Proxy::start_with_config(redis.port, &both, &[]);
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "user:1", "alice@example.com"], b"+OK\r\n");
    let reloads = |outcome: &str| {
        scrape(admin)
            .lines()
            .find(|l| l.starts_with(&format!("respseal_config_reloads_total{{outcome=\"{outcome}\"}}")))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    for (narrower, change) in [
        (
            format!("admin_listen = \"127.0.0.1:{admin}\"\n[[rule]]\npattern = \"sess:*\"\n{keys}"),
            "\"user:*\" no longer seals",
        ),
        (
            format!(
                "admin_listen = \"127.0.0.1:{admin}\"\n[[rule]]\npattern = \"user:admin*\"\nseal = false\n[[rule]]\npattern = \"sess:*\"\n[[rule]]\npattern = \"user:*\"\n{keys}"
            ),
            "new key exemption",
        ),
    ] {
        let refused = reloads("refused");
        std::fs::write(proxy.config_path(), &narrower).expect("config");
        proxy.sighup();
        wait_until("the refusal", Duration::from_secs(10), || (reloads("refused") == refused + 1).then_some(()));
        let log = proxy.log();
        assert!(log.contains(change) && log.contains("WARN"), "{log}");
        // The running rules are kept: user:* is still sealed both ways.
        c.assert_cmd(&["SET", "user:2", "bob@example.com"], b"+OK\r\n");
        assert!(
            redis.client().cmd(&["GET", "user:2"]).starts_with(b"$")
                && !contains(&redis.client().cmd(&["GET", "user:2"]), b"bob")
        );
        c.assert_cmd(&["GET", "user:1"], b"$17\r\nalice@example.com\r\n");
    }
    // Said on purpose: reloaded, and still logged.
    let ok = reloads("ok");
    let allowed = format!(
        "allow_dropping_rules = true\nadmin_listen = \"127.0.0.1:{admin}\"\n[[rule]]\npattern = \"sess:*\"\n{keys}"
    );
    std::fs::write(proxy.config_path(), &allowed).expect("config");
    proxy.sighup();
    wait_until("the reload", Duration::from_secs(10), || (reloads("ok") == ok + 1).then_some(()));
    let sealed_before = c.cmd(&["GET", "user:1"]);
    assert!(contains(&sealed_before, b"\x00RE"), "an envelope after the rule is gone: {}", show(&sealed_before));
    assert!(scrape(admin).contains("respseal_reload_dropped_rules_total"));
    // `respseal check` finds the envelopes no rule covers any more.
    let backend = format!("redis://127.0.0.1:{}", redis.port);
    let cfg = proxy.config_path();
    let (status, out, _) = run_respseal(
        &["check", "--config", cfg.to_str().expect("utf-8"), "--backend", &backend],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(65), "{out}");
    assert!(out.contains("uncovered: 2 of 2 values under names no rule seals are sealed envelopes"), "{out}");
    assert!(!out.contains("user:"), "a key name in check's output: {out}");
}
