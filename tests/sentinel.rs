//! respseal in front of Redis Sentinel (`redis-sentinel://`): one master,
//! one replica and three sentinels on loopback. respseal finds the master
//! through the sentinels (fred's sentinel client) and follows failovers,
//! both `SENTINEL FAILOVER` and a killed master, while an express-session
//! + connect-redis workload runs, without a restart.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn redis(dir: &Path, port: u16, args: &[&str]) -> Reaped {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    // Owned before waiting: a failed start must not leave it running.
    let reaped = Reaped(child);
    let password = args.iter().position(|a| *a == "--requirepass").and_then(|i| args.get(i + 1));
    wait_until("redis-server ready", START_TIMEOUT, || {
        // A server still starting may reset the connection: not ready yet.
        let mut c = Client::try_connect(port).ok()?;
        if let Some(p) = password {
            c.send_cmd(&["AUTH", p]);
            c.try_read_frame(Duration::from_secs(1)).ok()?;
        }
        c.send_cmd(&["PING"]);
        matches!(c.try_read_frame(Duration::from_secs(1)), Ok(f) if f == b"+PONG\r\n").then_some(())
    });
    reaped
}

fn sentinel(dir: &Path, port: u16, master: u16, password: Option<&str>) -> Reaped {
    let conf = dir.join(format!("sentinel-{port}.conf"));
    let auth = password.map_or(String::new(), |p| {
        format!("requirepass {p}\nsentinel auth-pass mymaster {p}\nsentinel sentinel-pass {p}\n")
    });
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 4000\n\
             sentinel parallel-syncs mymaster 1\n{auth}",
            dir.display()
        ),
    )
    .expect("sentinel.conf");
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel");
    Reaped(child)
}

fn master_port(sentinel_port: u16) -> Option<u16> {
    master_port_auth(sentinel_port, None)
}

/// One command on a new connection (after AUTH with `password`): `None` on
/// any socket trouble (a server starting, stopping or failing over).
fn ask(port: u16, password: Option<&str>, args: &[&str]) -> Option<Vec<u8>> {
    let mut c = Client::try_connect(port).ok()?;
    if let Some(p) = password {
        c.send_cmd(&["AUTH", p]);
        c.try_read_frame(Duration::from_secs(2)).ok()?;
    }
    c.send_cmd(args);
    c.try_read_frame(Duration::from_secs(2)).ok()
}

fn master_port_auth(sentinel_port: u16, password: Option<&str>) -> Option<u16> {
    let r = ask(sentinel_port, password, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])?;
    let text = String::from_utf8_lossy(&r).into_owned();
    text.split("\r\n").filter(|l| !l.starts_with(['*', '$'])).nth(1)?.parse().ok()
}

fn count(port: u16, password: Option<&str>, args: &[&str]) -> usize {
    let Some(r) = ask(port, password, args) else { return 0 };
    r.get(1..r.iter().position(|&b| b == b'\r').unwrap_or(1))
        .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Three sentinels that know the master, the replica and each other.
fn topology(dir: &Path) -> (u16, u16, Reaped, Reaped, Vec<(u16, Reaped)>) {
    topology_auth(dir, None)
}

/// [`topology`], every server and sentinel requiring `password`.
fn topology_auth(dir: &Path, password: Option<&str>) -> (u16, u16, Reaped, Reaped, Vec<(u16, Reaped)>) {
    let (a, b) = (free_port(), free_port());
    let auth: Vec<&str> = password.map_or(vec![], |p| vec!["--requirepass", p, "--masterauth", p]);
    let master = redis(dir, a, &auth);
    let mut replica_args = vec!["--replicaof", "127.0.0.1"];
    let a_s = a.to_string();
    replica_args.push(&a_s);
    replica_args.extend(&auth);
    let replica = redis(dir, b, &replica_args);
    wait_until("replica in sync", Duration::from_secs(15), || {
        contains(&ask(b, password, &["INFO", "replication"])?, b"master_link_status:up").then_some(())
    });
    let sentinels: Vec<(u16, Reaped)> = (0..3)
        .map(|_| {
            let p = free_port();
            (p, sentinel(dir, p, a, password))
        })
        .collect();
    wait_until("sentinels know each other and the replica", Duration::from_secs(30), || {
        sentinels
            .iter()
            .all(|(p, _)| {
                count(*p, password, &["SENTINEL", "SENTINELS", "mymaster"]) == 2
                    && count(*p, password, &["SENTINEL", "REPLICAS", "mymaster"]) == 1
            })
            .then_some(())
    });
    (a, b, master, replica, sentinels)
}

fn url(sentinels: &[(u16, Reaped)]) -> String {
    let nodes: Vec<String> = sentinels.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
    format!("redis-sentinel://{}/mymaster", nodes.join(","))
}

/// respseal behind the sentinels, sealing `sess:*`, admin on `admin`.
fn sealing_config(sentinels: &[(u16, Reaped)], key: &Path, admin: u16) -> String {
    format!(
        "backend = \"{}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[[rule]]\npattern = \"sess:*\"\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        url(sentinels),
        key.display()
    )
}

/// A value written through respseal, retried (on a new connection each
/// time) while a failover is under way; the connection that succeeded.
fn set_until_ok(port: u16, key: &str, value: &str) -> Client {
    wait_until("a write through respseal succeeds", Duration::from_secs(30), || {
        let mut c = Client::try_connect(port).ok()?;
        c.send_cmd(&["SET", key, value]);
        matches!(c.try_read_frame(Duration::from_secs(2)), Ok(f) if f == b"+OK\r\n").then_some(c)
    })
}

#[test]
fn respseal_follows_sentinel_failovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, mut master, _replica, sentinels) = topology(dir.path());
    let (key, _) = keygen(dir.path(), "k.key");
    let admin = free_port();
    let config = sealing_config(&sentinels, &key, admin);
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:before", "written-to-a"], b"+OK\r\n");
    let raw = Client::connect(a).cmd(&["GET", "sess:before"]);
    assert!(contains(&raw, b"\x00RE\x01"), "sealed on the master: {}", show(&raw));
    // A pinned client (its own connection, in a transaction's WATCH).
    let mut pinned = proxy.client();
    pinned.assert_cmd(&["WATCH", "sess:before"], b"+OK\r\n");

    // 1. SENTINEL FAILOVER: the replica becomes the master.
    Client::connect(sentinels[0].0).assert_cmd(&["SENTINEL", "FAILOVER", "mymaster"], b"+OK\r\n");
    wait_until("the sentinels name the new master", Duration::from_secs(30), || {
        (master_port(sentinels[0].0) == Some(b)).then_some(())
    });
    // Writes acknowledged by the old master between its demotion by the
    // sentinels and respseal's next poll are lost as they would be for any
    // Sentinel client; once respseal has moved, writes reach the new master.
    let failovers = |n: f64| {
        wait_until("respseal follows", Duration::from_secs(10), || {
            let (_, m) = http_get(admin, "/metrics").ok()?;
            (metric(&m, "respseal_backend_failovers_total") >= n).then_some(())
        })
    };
    failovers(1.0);
    drop(c);
    let mut c = set_until_ok(proxy.port, "sess:after", "written-to-b");
    let raw = Client::connect(b).cmd(&["GET", "sess:after"]);
    assert!(contains(&raw, b"\x00RE\x01"), "written to the new master: {}", show(&raw));
    c.assert_cmd(&["GET", "sess:before"], b"$12\r\nwritten-to-a\r\n");
    // The pinned client's state lived on the old master: it is closed.
    let closed = wait_until("the pinned client is closed", Duration::from_secs(10), || {
        match pinned.try_read_frame(Duration::from_millis(200)) {
            Err(ReadError::Timeout(_)) => None,
            Err(_) => Some(true),
            Ok(frame) => Some(
                frame.starts_with(b"-ERR respseal: backend") && pinned.try_read_frame(Duration::from_secs(2)).is_err(),
            ),
        }
    });
    assert!(closed, "a pinned client on the old master must be closed");

    // 2. The new master is killed: the old one (now its replica) takes over.
    // `b` was started as the replica process; stop it by port.
    let _ = Command::new("redis-cli").args(["-p", &b.to_string(), "SHUTDOWN", "NOSAVE"]).status();
    wait_until("the sentinels promote the old master again", Duration::from_secs(40), || {
        (master_port(sentinels[1].0) == Some(a)).then_some(())
    });
    failovers(2.0);
    drop(c);
    let mut c = set_until_ok(proxy.port, "sess:after-kill", "written-to-a-again");
    c.assert_cmd(&["GET", "sess:after-kill"], b"$18\r\nwritten-to-a-again\r\n");
    master.kill();
}

/// What one browser-load phase across a failover gave: requests, failed
/// requests ("errors"), and counters that went back ("lost").
#[derive(Debug)]
struct Phase {
    requests: f64,
    errors: f64,
    lost: f64,
}

/// The express-session example (connect-redis on node-redis) with 8
/// browsers at about 100 requests a second, across a `SENTINEL FAILOVER`
/// and a stopped master: through respseal (`via_respseal`), or with
/// node-redis's own Sentinel client straight to Redis, for comparison.
fn failover_workload(via_respseal: bool) -> Vec<Phase> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _master, _replica, sentinels) = topology(dir.path());
    let (key, _) = keygen(dir.path(), "k.key");
    let admin = free_port();
    let config = sealing_config(&sentinels, &key, admin);
    let proxy = via_respseal.then(|| Proxy::launch(Launch { config: Some(&config), ..Default::default() }));
    let app_port = free_port();
    let app_log = dir.path().join("app.log");
    let log = std::fs::File::create(&app_log).expect("log");
    let mut app = Command::new("node");
    app.arg(root.join("examples/express-session/app.js")).env("PORT", app_port.to_string());
    match &proxy {
        Some(p) => app.env("REDIS_URL", format!("redis://127.0.0.1:{}", p.port)),
        None => {
            let nodes: Vec<String> = sentinels.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
            app.env("REDIS_SENTINEL", nodes.join(","))
        }
    };
    let _app = Reaped(app.stdout(log.try_clone().expect("dup")).stderr(log).spawn().expect("node"));
    let started = std::time::Instant::now();
    while http_get(app_port, "/").ok().filter(|(s, _)| *s == 200).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the app did not answer; its log:\n{}\nrespseal's:\n{}",
            std::fs::read_to_string(&app_log).unwrap_or_default(),
            proxy.as_ref().map(|p| p.log()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let scrape = |name: &str| http_get(admin, "/metrics").ok().map_or(0.0, |(_, m)| metric(&m, name));
    let mut phases = Vec::new();
    let mut phase = |what: &str, failover: &dyn Fn(), new_master: u16, n: f64| {
        let load = SessionLoad::start(dir.path(), what, app_port, 8, 100);
        load.run_for(100);
        failover();
        wait_until("the sentinels name the new master", Duration::from_secs(40), || {
            (master_port(sentinels[2].0) == Some(new_master)).then_some(())
        });
        if via_respseal {
            wait_until("respseal follows", Duration::from_secs(10), || {
                (scrape("respseal_backend_failovers_total") >= n).then_some(())
            });
        }
        // Recovered: the load goes on against the new master.
        load.run_for(200);
        let result = load.finish();
        println!("{} {what}: {result}", if via_respseal { "respseal" } else { "direct" });
        let field = |name: &str| json_number(&result, name);
        phases.push(Phase { requests: field("requests"), errors: field("errors"), lost: field("lost") });
    };
    phase(
        "sentinel-failover",
        &|| Client::connect(sentinels[0].0).assert_cmd(&["SENTINEL", "FAILOVER", "mymaster"], b"+OK\r\n"),
        b,
        1.0,
    );
    phase(
        "master-stopped",
        &|| {
            let _ = Command::new("redis-cli").args(["-p", &b.to_string(), "SHUTDOWN", "NOSAVE"]).status();
        },
        a,
        2.0,
    );
    phases
}

/// respseal follows both failovers without a restart and the sessions go
/// on counting; what a failover costs is compared, in the test's output,
/// with node-redis's own Sentinel client straight to Redis.
#[test]
fn an_express_session_workload_survives_failovers() {
    let through = failover_workload(true);
    let direct = failover_workload(false);
    println!("failover costs (per phase: requests, failed requests, browsers whose count went back):");
    for (name, (t, d)) in ["SENTINEL FAILOVER", "master stopped"].iter().zip(through.iter().zip(&direct)) {
        println!("  {name}: respseal {t:?}; node-redis Sentinel client direct {d:?}");
    }
    for p in &through {
        assert!(p.requests >= 300.0, "{p:?}");
        // Only requests around the switch fail; a browser that lost a write
        // (acknowledged by the old master in the moment before the sentinels
        // demoted it, as for any Sentinel client) starts its count again.
        assert!(p.errors <= 0.05 * p.requests, "{p:?}");
        assert!(p.lost <= 8.0, "{p:?}");
    }
}

/// Sentinels and servers that require a password: respseal logs in to
/// both with the URL's credentials (fred's sentinel auth for the sentinels).
#[test]
fn sentinels_and_servers_with_a_password() {
    let pw = "sentinel-and-redis-pw";
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _master, _replica, sentinels) = topology_auth(dir.path(), Some(pw));
    let nodes: Vec<String> = sentinels.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
    let proxy = Proxy::launch(Launch {
        backend: Some(format!("redis-sentinel://:{pw}@{}/mymaster", nodes.join(","))),
        ..Default::default()
    });
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    let mut d = Client::connect(a);
    d.assert_cmd(&["AUTH", pw], b"+OK\r\n");
    d.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    let mut s0 = Client::connect(sentinels[0].0);
    s0.assert_cmd(&["AUTH", pw], b"+OK\r\n");
    s0.assert_cmd(&["SENTINEL", "FAILOVER", "mymaster"], b"+OK\r\n");
    wait_until("the new master is named", Duration::from_secs(30), || {
        (master_port_auth(sentinels[1].0, Some(pw)) == Some(b)).then_some(())
    });
    let mut c = set_until_ok(proxy.port, "k2", "v2");
    c.assert_cmd(&["GET", "k2"], b"$2\r\nv2\r\n");
    assert!(!proxy.log().contains(pw), "the password is not logged");
}

/// `rediss-sentinel://`: the sentinels, the master and the replica speak
/// TLS only; respseal asks the sentinels (fred, with the `[backend_tls]`
/// connector) and reaches the master over TLS, before and after a failover.
#[test]
fn sentinels_and_servers_over_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = |port: u16| -> Vec<String> {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-replication",
            "yes",
            "--tls-cert-file",
            &pki.path("server.crt"),
            "--tls-key-file",
            &pki.path("server.key"),
            "--tls-ca-cert-file",
            &pki.path("ca.crt"),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]
        .map(String::from)
        .to_vec()
    };
    let cli = |port: u16, args: &[&str]| tls_cli(&pki, port, args, Some("client"));
    let spawn = |args: Vec<String>| {
        Reaped(
            Command::new("redis-server")
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server"),
        )
    };
    let (a, b) = (free_port(), free_port());
    let _master = spawn(tls(a));
    wait_until("the TLS master answers", START_TIMEOUT, || (cli(a, &["PING"]) == "PONG").then_some(()));
    let mut replica_args = tls(b);
    replica_args.extend(["--replicaof".to_string(), "127.0.0.1".to_string(), a.to_string()]);
    let _replica = spawn(replica_args);
    wait_until("the TLS replica is in sync", Duration::from_secs(15), || {
        cli(b, &["INFO", "replication"]).contains("master_link_status:up").then_some(())
    });
    let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _sentinels: Vec<Reaped> = sentinel_ports
        .iter()
        .map(|&p| {
            let conf = dir.path().join(format!("sentinel-{p}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port 0\ntls-port {p}\ntls-replication yes\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {a} 2\n\
                     sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 4000\n",
                    pki.path("server.crt"),
                    pki.path("server.key"),
                    pki.path("ca.crt"),
                    dir.path().display()
                ),
            )
            .expect("sentinel.conf");
            spawn(vec![conf.to_str().expect("utf-8").to_string(), "--sentinel".to_string()])
        })
        .collect();
    wait_until("the TLS sentinels know the replica", Duration::from_secs(30), || {
        sentinel_ports
            .iter()
            .all(|&s| cli(s, &["SENTINEL", "REPLICAS", "mymaster"]).contains(&b.to_string()))
            .then_some(())
    });
    let nodes: Vec<String> = sentinel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let config = format!(
        "backend = \"rediss-sentinel://{}/mymaster\"\n[backend_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        nodes.join(","),
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let proxy = Proxy::launch(Launch { config: Some(&config), ..Default::default() });
    proxy.client().assert_cmd(&["SET", "k", "on-a"], b"+OK\r\n");
    assert_eq!(cli(a, &["GET", "k"]), "on-a");
    assert_eq!(cli(sentinel_ports[0], &["SENTINEL", "FAILOVER", "mymaster"]), "OK");
    wait_until("the TLS sentinels name the new master", Duration::from_secs(30), || {
        cli(sentinel_ports[1], &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .contains(&b.to_string())
            .then_some(())
    });
    let mut c = set_until_ok(proxy.port, "k2", "on-b");
    c.assert_cmd(&["GET", "k"], b"$4\r\non-a\r\n");
    wait_until("the write reached the new master", Duration::from_secs(10), || {
        (cli(b, &["GET", "k2"]) == "on-b").then_some(())
    });
}
