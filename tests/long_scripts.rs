//! Code that runs long in Redis (a script or a function looping until it is
//! killed) stalls only what Redis itself stalls: through respseal every
//! other client gets the replies it gets directly — values, then `BUSY`
//! once Redis is past its `busy-reply-threshold`, then values again after
//! `SCRIPT KILL` / `FUNCTION KILL` — never a wait in a shared link's queue
//! behind the script, nor respseal's command timeout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Clients sending GET/SET while the code loops.
const CLIENTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A value, `+OK` or nil.
    Value,
    /// `-BUSY …`.
    Busy,
}

/// What one client saw: the kinds of its replies in order, repeats
/// collapsed, or the first other reply (an error, a timeout).
#[derive(Debug, Default)]
struct Seen {
    kinds: Vec<Kind>,
    unexpected: Option<String>,
}

/// The looping code and how to kill it.
struct Code {
    setup: &'static [&'static str],
    run: &'static [&'static str],
    kill: &'static [&'static str],
}

const SCRIPT: Code = Code { setup: &[], run: &["EVAL", "while true do end", "0"], kill: &["SCRIPT", "KILL"] };

const FUNCTION: Code = Code {
    setup: &[
        "FUNCTION",
        "LOAD",
        "REPLACE",
        "#!lua name=spinlib\nredis.register_function('spin', function() while true do end end)",
    ],
    run: &["FCALL", "spin", "0"],
    kill: &["FUNCTION", "KILL"],
};

/// Run the scene against `port` (Redis itself, or respseal): CLIENTS
/// clients loop SET/GET (depth 1) on keys of their own, `prefix` + index;
/// once each has had replies, another client starts `code`; once each has
/// seen BUSY, a fresh connection kills the code; the clients go on until
/// each has had a value again. Returns what each client saw and the code
/// client's reply.
fn scene(port: u16, code: &Code, threshold_ms: u64, prefix: &str) -> (Vec<Seen>, Vec<u8>) {
    let mut admin = Client::connect(port);
    assert_bytes(&admin.cmd(&["CONFIG", "SET", "busy-reply-threshold", &threshold_ms.to_string()]), b"+OK\r\n");
    if !code.setup.is_empty() {
        let loaded = admin.cmd(code.setup);
        assert!(loaded.starts_with(b"$"), "{}", show(&loaded));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rounds: Arc<Vec<AtomicUsize>> = Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let busy_seen: Arc<Vec<AtomicBool>> = Arc::new((0..CLIENTS).map(|_| AtomicBool::new(false)).collect());
    let killed = Arc::new(AtomicBool::new(false));
    let served_after: Arc<Vec<AtomicBool>> = Arc::new((0..CLIENTS).map(|_| AtomicBool::new(false)).collect());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, rounds, busy_seen, killed, served_after) = (
                Arc::clone(&stop),
                Arc::clone(&rounds),
                Arc::clone(&busy_seen),
                Arc::clone(&killed),
                Arc::clone(&served_after),
            );
            let key = format!("{prefix}{i}");
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut seen = Seen::default();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let value = format!("v{n}");
                    let cmd: &[&str] = if n.is_multiple_of(2) { &["GET", &key] } else { &["SET", &key, &value] };
                    c.send_cmd(cmd);
                    let reply = match c.try_read_frame(Duration::from_secs(30)) {
                        Ok(r) => r,
                        Err(e) => {
                            seen.unexpected = Some(format!("{cmd:?}: {e:?}"));
                            break;
                        }
                    };
                    let kind = if reply.starts_with(b"-BUSY ") {
                        busy_seen[i].store(true, Ordering::Relaxed);
                        Kind::Busy
                    } else if reply.starts_with(b"-") || reply.starts_with(b"!") {
                        seen.unexpected = Some(format!("{cmd:?}: {}", show(&reply)));
                        break;
                    } else {
                        if killed.load(Ordering::Relaxed) {
                            served_after[i].store(true, Ordering::Relaxed);
                        }
                        Kind::Value
                    };
                    if seen.kinds.last() != Some(&kind) {
                        seen.kinds.push(kind);
                    }
                    rounds[i].fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();
    let all = |flags: &[AtomicBool]| flags.iter().all(|f| f.load(Ordering::Relaxed));
    wait_until("every client served", Duration::from_secs(20), || {
        rounds.iter().all(|r| r.load(Ordering::Relaxed) >= 4).then_some(())
    });
    let mut looping = Client::connect(port);
    looping.send_cmd(code.run);
    let started = Instant::now();
    // A client still waiting when everyone else has seen BUSY waits behind
    // the code: directly, nobody does.
    let everyone_busy = wait_until_or_timeout(Duration::from_secs(20), || all(&busy_seen));
    // A client that comes now and runs code gets BUSY, as directly (through
    // respseal its connection is new, and a SELECT in its handshake would
    // be refused with BUSY too).
    let late = Client::connect(port).cmd(&["EVAL", "return 1", "0"]);
    let mut killer = Client::connect(port);
    let kill = killer.cmd(code.kill);
    killed.store(true, Ordering::Relaxed);
    let code_reply = looping.try_read_frame(Duration::from_secs(10)).unwrap_or_else(|e| format!("{e:?}").into_bytes());
    let everyone_served = wait_until_or_timeout(Duration::from_secs(20), || all(&served_after));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients.into_iter().map(|t| t.join().expect("client thread")).collect();
    assert_bytes(&kill, b"+OK\r\n");
    assert!(late.starts_with(b"-BUSY "), "code sent while Redis is busy: {}", show(&late));
    assert!(
        everyone_busy,
        "after {:?} of looping code, clients that never saw BUSY: {:?}",
        started.elapsed(),
        (0..CLIENTS).filter(|&i| !busy_seen[i].load(Ordering::Relaxed)).map(|i| (i, &seen[i])).collect::<Vec<_>>()
    );
    assert!(everyone_served, "clients not served after the kill: {seen:?}");
    (seen, code_reply)
}

fn wait_until_or_timeout(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Every client saw values, then BUSY, then values again, and nothing else.
fn assert_as_direct(target: &str, seen: &[Seen], code_reply: &[u8]) {
    for (i, s) in seen.iter().enumerate() {
        assert!(s.unexpected.is_none(), "{target}: client {i} got {:?}", s.unexpected);
        assert_eq!(s.kinds, [Kind::Value, Kind::Busy, Kind::Value], "{target}: client {i}");
    }
    assert!(
        code_reply.starts_with(b"-ERR Script killed by user"),
        "{target}: the looping client got {}",
        show(code_reply)
    );
}

/// respseal sealing `sess:*` in front of `redis`, database `db`.
fn sealing_proxy(redis: &RedisServer, dir: &std::path::Path, extra: &str, db: u32) -> Proxy {
    let config = format!("{extra}{}", rules_with_new_key(dir, "[[rule]]\npattern = \"sess:*\"\n"));
    Proxy::launch(Launch {
        backend: Some(format!("redis://127.0.0.1:{}/{db}", redis.port)),
        config: Some(&config),
        ..Default::default()
    })
}

#[test]
fn a_looping_script_stalls_only_what_redis_stalls() {
    let direct_redis = RedisServer::start();
    let (seen, reply) = scene(direct_redis.port, &SCRIPT, 200, "k:");
    assert_as_direct("direct", &seen, &reply);

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two shared links for 50 clients: without a connection of its own the
    // script sits in front of half of them.
    let proxy = sealing_proxy(&redis, dir.path(), "", 0);
    for prefix in ["k:", "sess:"] {
        let (seen, reply) = scene(proxy.port, &SCRIPT, 200, prefix);
        assert_as_direct(&format!("respseal, keys {prefix}*"), &seen, &reply);
    }
    // What was sealed is sealed, and reads back through respseal.
    let raw = redis.client().cmd(&["GET", "sess:0"]);
    assert!(raw.starts_with(b"$") && contains(&raw, b"\x00RE"), "sess:0 in Redis: {}", show(&raw));
    assert!(proxy.client().cmd(&["GET", "sess:0"]).starts_with(b"$"));
    // Service is back for new clients too, on the shared links.
    assert_bytes(&proxy.client().cmd(&["PING"]), b"+PONG\r\n");
}

/// With respseal's command timeout shorter than Redis's busy threshold,
/// clients wait for Redis as they would directly (Redis answers nobody
/// until the threshold), and the timeout does not fire.
#[test]
fn a_looping_function_never_fires_the_command_timeout_of_those_who_wait() {
    let direct_redis = RedisServer::start();
    let (seen, reply) = scene(direct_redis.port, &FUNCTION, 1500, "k:");
    assert_as_direct("direct", &seen, &reply);

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // In database 9: connections opened while Redis is busy fail their
    // SELECT with BUSY.
    let proxy = sealing_proxy(&redis, dir.path(), "[timeouts]\ncommand_ms = 400\n", 9);
    let (seen, reply) = scene(proxy.port, &FUNCTION, 1500, "sess:");
    assert_as_direct("respseal", &seen, &reply);
    assert!(!proxy.log().contains("replacing the shared link"), "{}", proxy.log());
}

/// A session that runs scripts goes back to its shared link once they are
/// answered: the connection it borrowed serves the next script, and a
/// pipeline mixing scripts and plain commands keeps its order.
#[test]
fn scripts_borrow_a_connection_and_give_it_back() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &[]);
    let count = || redis.client_list_others().len();
    let mut warm = proxy.client();
    assert_bytes(&warm.cmd(&["PING"]), b"+PONG\r\n");
    let before = count();
    let mut d = proxy.client();
    assert_bytes(&d.cmd(&["SET", "n", "0"]), b"+OK\r\n");
    let mut round = Vec::new();
    for _ in 0..30 {
        round.extend(resp(&["INCR", "n"]));
        round.extend(resp(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "n"]));
    }
    round.extend(resp(&["SELECT", "0"]));
    round.extend(resp(&["EVAL", "return redis.call('INCR', KEYS[1])", "1", "n"]));
    d.send(&round);
    for i in 1..=30 {
        assert_bytes(&d.read_frame(), format!(":{i}\r\n").as_bytes());
        assert_bytes(&d.read_frame(), format!("${}\r\n{i}\r\n", i.to_string().len()).as_bytes());
    }
    assert_bytes(&d.read_frame(), b"+OK\r\n");
    assert_bytes(&d.read_frame(), b":31\r\n");
    // One connection was lent (SELECT waited for it to be given back, and
    // the last EVAL borrowed it again), kept for the next scripts: not one
    // per script.
    for _ in 0..5 {
        assert_bytes(&d.cmd(&["EVAL", "return 1", "0"]), b":1\r\n");
    }
    let after = count();
    assert_eq!(after, before + 1, "Redis connections: {before} before, {after} after");
}
