//! What a flood of half-open connections can take from clients: nothing.
//! The admin port cannot take what the Redis port needs (slow HTTP clients,
//! half a header each, under a low file descriptor limit: the Redis port
//! keeps serving and each slow connection is closed), and TLS handshakes in
//! progress have a budget of their own, apart from `max_clients`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Whether respseal closed `s` (EOF or reset) within `wait`; whatever it
/// sent first (a 408) is read past.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let _ = s.set_read_timeout(Some((deadline - Instant::now()).max(Duration::from_millis(1))));
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_flood_of_slow_admin_clients_leaves_the_redis_port_serving() {
    let redis = RedisServer::start();
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::start(redis.port, &["--admin-listen", &admin_addr]);
    assert_eq!(http_get(admin, "/healthz").expect("healthz").0, 200);
    let status = std::process::Command::new("prlimit")
        .args(["--nofile=256:256", "--pid", &proxy.pid().to_string()])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
    // 300 slow clients: more than the descriptors respseal has.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&admin_addr).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: respseal\r\n").ok()?;
            Some(s)
        })
        .collect();
    // Meanwhile the Redis port serves new clients, each on a descriptor.
    let mut clients: Vec<Client> = (0..100).map(|_| proxy.client()).collect();
    for c in &mut clients {
        assert_bytes(&c.cmd(&["PING"]), b"+PONG\r\n");
    }
    // Every slow connection is closed by respseal: those past the cap at
    // once, the others when their header is late.
    let mut open = 0;
    for s in &mut slow {
        if !closed_within(s, Duration::from_secs(15).saturating_sub(started.elapsed()).max(Duration::from_millis(50))) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "slow admin connections left open after {:?}", started.elapsed());
    drop(slow);
    assert!(!proxy.log().contains("accept failed"), "{}", proxy.log());
    // And the admin port answers again.
    assert_eq!(http_get(admin, "/healthz").expect("healthz").0, 200);
    for c in &mut clients {
        assert_bytes(&c.cmd(&["PING"]), b"+PONG\r\n");
    }
}

#[test]
fn half_open_tls_handshakes_do_not_count_against_max_clients() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let plain = free_port();
    let config = format!(
        "[limits]\nmax_clients = 40\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nplaintext_listen = \"127.0.0.1:{plain}\"\n",
        pki.path("server.crt"),
        pki.path("server.key"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(dir.path(), "c.toml", &config);
    let port = free_port();
    let _proxy = Reaped(
        respseal_command()
            .args(["serve", "--config", cfg.to_str().expect("utf-8"), "--listen", &format!("127.0.0.1:{port}")])
            .args(["--backend", &format!("redis://127.0.0.1:{}", redis.port)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("respseal"),
    );
    drop(wait_until("respseal ready", START_TIMEOUT, || Client::try_connect(plain).ok()));
    // 50 clients that start a handshake and say no more: more than
    // max_clients (they held 45 of its 40 slots until their 10 s timeout),
    // fewer than the handshake budget (past it new handshakes are closed).
    let silent: Vec<TcpStream> = (0..50)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(silent.len(), 50);
    // A TLS client that completes its handshake is served meanwhile …
    assert_eq!(tls_cli(&pki, port, &["PING"], None), "PONG");
    // … and plaintext clients up to max_clients …
    // (The readiness probe's and the TLS client's slots are given back
    // when respseal has seen them close: polled, not assumed.)
    let clients: Vec<Client> = wait_until("40 plaintext clients served", START_TIMEOUT, || {
        let mut cs: Vec<Client> = (0..40).map(|_| Client::connect(plain)).collect();
        cs.iter_mut().all(|c| c.cmd(&["PING"]) == b"+PONG\r\n").then_some(cs)
    });
    assert_eq!(clients.len(), 40);
    // … and past it the refusal is Redis's.
    let mut over = Client::connect(plain);
    assert_line_prefix(&over.read_frame(), b"-ERR max number of clients reached");
    drop(silent);
}
