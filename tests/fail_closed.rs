//! Failing closed everywhere a client or Redis can push: refusals inside
//! transactions, replies of any depth, authentication before anything is
//! forwarded, slowed password guessing, and memory bounds (slow
//! subscribers, many huge requests at once, respseal's own replies).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn sealing_proxy(redis: &RedisServer, dir: &std::path::Path, config: Option<&str>) -> Proxy {
    let (key, _) = keygen(dir, "k.key");
    let args = ["--seal", "sess:*", "--key-file", key.to_str().expect("utf-8 path")];
    match config {
        Some(c) => Proxy::start_with_config(redis.port, c, &args),
        None => Proxy::start(redis.port, &args),
    }
}

#[test]
fn a_refused_command_inside_multi_aborts_the_transaction() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = sealing_proxy(&redis, dir.path(), None);
    let mut c = proxy.client();
    let mut pipeline = Vec::new();
    for cmd in [&["MULTI"][..], &["SET", "a", "1"], &["APPEND", "sess:x", "y"], &["SET", "b", "2"], &["EXEC"]] {
        pipeline.extend_from_slice(&resp(cmd));
    }
    c.send(&pipeline);
    let r = c.read_frames(5);
    assert_bytes(&r[0], b"+OK\r\n");
    assert_bytes(&r[1], b"+QUEUED\r\n");
    assert_line_prefix(&r[2], b"-ERR respseal: APPEND is not allowed on sealed keys");
    assert_bytes(&r[3], b"+QUEUED\r\n");
    assert_bytes(&r[4], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    let mut d = redis.client();
    d.assert_cmd(&["EXISTS", "a", "b"], b":0\r\n");
    // The connection is usable and out of MULTI; a clean transaction runs.
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "sess:x", "v"], b"+QUEUED\r\n");
    c.assert_cmd(&["GET", "sess:x"], b"+QUEUED\r\n");
    c.assert_cmd(&["EXEC"], b"*2\r\n+OK\r\n$1\r\nv\r\n");
    assert!(d.cmd(&["GET", "sess:x"]).starts_with(b"$"), "sealed inside MULTI");
    assert!(!contains(&d.cmd(&["GET", "sess:x"]), b"\r\nv\r\n"));
    // DISCARD after a refusal is an ordinary DISCARD.
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    assert_line_prefix(&c.cmd(&["LPUSH", "sess:l", "x"]), b"-ERR respseal: LPUSH");
    c.assert_cmd(&["DISCARD"], b"+OK\r\n");
    c.assert_cmd(&["PING"], b"+PONG\r\n");
}

fn run_client_script(program: &str, script: &str, args: &[String]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(program)
        .arg(format!("{root}/{script}"))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("spawn client script");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "{script} failed:\n{text}");
}

#[test]
fn real_client_transactions_get_execabort_for_refused_commands() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = sealing_proxy(&redis, dir.path(), None);
    let ports = [proxy.port.to_string(), redis.port.to_string()];
    run_client_script("python3", "tests/clients/python/execabort.py", &ports);
    run_client_script("node", "tests/clients/node/execabort.mjs", &ports);
}

#[test]
fn a_lua_reply_nested_8000_deep_reaches_its_client_and_breaks_no_one_else() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &[]);
    let mut deep = proxy.client();
    let mut other = proxy.client();
    // Both on the same shared link (one link per group and thread would do;
    // with two links they may differ, and the other client is checked
    // either way).
    other.send(&resp(&["PING"]).repeat(100));
    deep.send_cmd(&["EVAL", "local a = {}; local b = {a}; a[1] = b; return a", "0"]);
    let r = deep.read_frame();
    let depth = r.windows(4).filter(|w| w == b"*1\r\n").count();
    assert!(depth > 1000, "nested reply of depth {depth}");
    assert!(contains(&r, b"-ERR reached lua stack limit"), "{}", show(&r[r.len().saturating_sub(80)..]));
    for f in other.read_frames(100) {
        assert_bytes(&f, b"+PONG\r\n");
    }
    deep.assert_cmd(&["PING"], b"+PONG\r\n");
}

/// A backend that answers every request with a reply nested 100,000 deep.
fn deep_backend() -> u16 {
    let mut reply = b"*1\r\n".repeat(100_000);
    reply.extend_from_slice(b":1\r\n");
    fake_redis(move || {
        let reply = reply.clone();
        move |_: &[Vec<u8>]| Some(reply.clone())
    })
    .0
}

#[test]
fn replies_nested_100000_deep_are_forwarded_on_shared_and_dedicated_links() {
    let port = deep_backend();
    for mode in [&[][..], &["--dedicated"][..]] {
        let proxy = Proxy::start(port, mode);
        let mut c = proxy.client();
        for _ in 0..2 {
            c.send(&resp(&["PING"]));
            let r = c.read_frame();
            assert_eq!(r.len(), 100_000 * 4 + 4, "{mode:?}");
            assert!(r.ends_with(b"*1\r\n:1\r\n"));
        }
    }
}

fn proxy_with_user(redis: &RedisServer) -> Proxy {
    let config = "[[users]]\nname = \"default\"\npassword_env = \"RESPSEAL_TEST_PW\"\n";
    let env = [("RESPSEAL_TEST_PW", "right-password".to_string())];
    Proxy::launch(Launch { backend: Some(redis.url()), config: Some(config), env: &env, ..Default::default() })
}

#[test]
fn nothing_reaches_redis_before_auth_hello_included() {
    let redis = RedisServer::start();
    let proxy = proxy_with_user(&redis);
    let mut monitor = redis.client();
    monitor.assert_cmd(&["MONITOR"], b"+OK\r\n");
    let mut c = proxy.client();
    c.assert_cmd(&["HELLO", "4", "AUTH", "default", "guess-one"], b"-NOPROTO unsupported protocol version\r\n");
    assert_line_prefix(&c.cmd(&["HELLO", "x", "AUTH", "default", "guess-two"]), b"-ERR Protocol version");
    assert_line_prefix(&c.cmd(&["HELLO", "3", "AUTH", "default", "guess-three"]), b"-WRONGPASS");
    assert_line_prefix(&c.cmd(&["HELLO", "3"]), b"-NOAUTH HELLO must be called");
    assert_line_prefix(&c.cmd(&["GET", "guess-four"]), b"-NOAUTH");
    assert_line_prefix(&c.cmd(&["AUTH", "nosuchuser", "guess-five"]), b"-WRONGPASS");
    c.assert_cmd(&["AUTH", "right-password"], b"+OK\r\n");
    c.assert_cmd(&["ECHO", "after-auth"], b"$10\r\nafter-auth\r\n");
    // Redis saw the first command only after authentication.
    let mut seen = Vec::new();
    while !contains(&seen, b"after-auth") {
        seen.extend(monitor.read_frame());
    }
    for secret in ["guess", "right-password", "guess-four"] {
        assert!(!contains(&seen, secret.as_bytes()), "Redis saw {secret:?}: {}", show(&seen));
    }
}

/// Password guessing is slowed per source address, across connections: a
/// burst of 10 checked attempts, then 2 a second; attempts that would wait
/// more than 5 s are refused unchecked. Pipelining on one connection and
/// reconnecting for every guess get the same rate; another address is not
/// slowed.
#[test]
fn password_guessing_is_slowed_per_source_address() {
    let redis = RedisServer::start();
    let proxy = proxy_with_user(&redis);
    let checked = |f: &[u8]| f.starts_with(b"-WRONGPASS");
    let refused = |f: &[u8]| f.starts_with(b"-ERR respseal: too many failed AUTH attempts");
    // Pipelined on one connection.
    let mut c = proxy.client();
    let mut w = c.writer();
    let writer = std::thread::spawn(move || {
        let batch = resp(&["AUTH", "wrong"]).repeat(1000);
        for _ in 0..20 {
            if w.write_all(&batch).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let (mut guesses, mut refusals) = (0, 0);
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(f) = c.try_read_frame(Duration::from_millis(100)) {
            assert!(checked(&f) || refused(&f), "{}", show(&f));
            if checked(&f) { guesses += 1 } else { refusals += 1 }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("pipelined: {guesses} guesses checked, {refusals} refused unchecked in {secs:.1} s");
    assert!(guesses >= 10 && guesses as f64 <= 10.0 + 2.0 * secs + 2.0, "{guesses} guesses checked in {secs:.1} s");
    drop(c);
    let _ = writer.join();
    // A new connection for every guess: the same address, the same budget.
    let start = Instant::now();
    let mut guesses = 0;
    let mut connections = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let mut c = proxy.client();
        let f = c.cmd(&["AUTH", "wrong"]);
        assert!(checked(&f) || refused(&f), "{}", show(&f));
        guesses += usize::from(checked(&f));
        connections += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("reconnecting: {guesses} guesses checked over {connections} connections in {secs:.1} s");
    assert!(guesses as f64 <= 2.0 * (secs + 3.0) + 2.0, "{guesses} guesses checked in {secs:.1} s");
    // Another address (127.0.0.2) is not slowed.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
        socket.connect(([127, 0, 0, 1], proxy.port).into()).await.expect("connect").into_std().expect("std")
    });
    stream.set_nonblocking(false).expect("blocking");
    let mut s = stream;
    let t = Instant::now();
    s.write_all(&resp(&["AUTH", "right-password"])).expect("write");
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"+OK\r\n");
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    // The guessing address gets in with the right password once its turn comes.
    wait_until("the right password accepted", Duration::from_secs(15), || {
        (proxy.client().cmd(&["AUTH", "right-password"]) == b"+OK\r\n").then_some(())
    });
}

#[test]
fn a_subscriber_that_stops_reading_is_disconnected_at_its_limit() {
    let redis = RedisServer::start();
    // Only respseal's limit is under test: Redis must not cut the proxy's
    // own connection first.
    redis.client().assert_cmd(&["CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0"], b"+OK\r\n");
    let proxy = Proxy::start_with_config(redis.port, "[limits]\noutput_pubsub = \"8mb 4mb 60\"\n", &[]);
    let mut sub = proxy.client();
    sub.send_cmd(&["SUBSCRIBE", "news"]);
    let _ = sub.read_frame();
    let (_, before) = memory(proxy.pid());
    // 200 MiB published; the subscriber reads nothing.
    let mut publisher = redis.client();
    let payload = vec![b'x'; 1 << 20];
    let mut delivered_to = 0;
    for _ in 0..200 {
        let r = publisher.cmd(&[&b"PUBLISH"[..], b"news", &payload]);
        if r == b":0\r\n" {
            break;
        }
        delivered_to += 1;
    }
    assert!(delivered_to < 200, "the subscriber was never disconnected");
    let (peak, _) = memory(proxy.pid());
    assert!(
        peak.saturating_sub(before) < (8 + 40) << 20,
        "respseal grew by {} MiB for a subscriber limited to 8 MiB",
        (peak - before) >> 20
    );
    // The subscriber's connection was closed (in the middle of a message,
    // as Redis closes a client at its limit).
    let closed = loop {
        match sub.try_read_frame(Duration::from_secs(20)) {
            Ok(_) => continue,
            Err(ReadError::Closed(_)) => break true,
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "subscriber not disconnected");
    proxy.client().assert_cmd(&["PING"], b"+PONG\r\n");
}

#[test]
fn many_huge_requests_at_once_stay_within_the_buffer_budget() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with_config(redis.port, "[limits]\nmax_buffered_bytes = 33554432\n", &[]);
    let (_, before) = memory(proxy.pid());
    // 8 clients each announce a 400 MB argument and send 12 MiB of it:
    // 96 MiB together against a 32 MiB budget.
    let chunk = vec![b'v'; 1 << 20];
    let mut clients: Vec<Client> = (0..8).map(|_| proxy.client()).collect();
    let mut refused = 0;
    for c in &mut clients {
        let mut w = c.writer();
        let _ = w.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$400000000\r\n");
        for _ in 0..12 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    }
    for c in &mut clients {
        if let Ok(f) = c.try_read_frame(Duration::from_secs(3)) {
            assert_line_prefix(&f, b"-ERR respseal: request refused: the proxy's input buffers are full");
            refused += 1;
        }
    }
    assert!(refused >= 1, "no client was refused");
    let (peak, _) = memory(proxy.pid());
    println!("respseal grew by {} MiB with a 32 MiB budget", peak.saturating_sub(before) >> 20);
    // The peak RSS also holds what the allocator keeps of freed buffers and
    // the other threads' working memory: 49-56 MiB of growth when run
    // alone, 74 MiB once with the whole suite running beside it. Without
    // the budget, it is the 96 MiB sent plus all of that.
    assert!(
        peak.saturating_sub(before) < (32 + 56) << 20,
        "respseal grew by {} MiB with a 32 MiB budget",
        (peak - before) >> 20
    );
    drop(clients);
    // The budget comes back once those clients are gone.
    wait_until("the budget to be given back", Duration::from_secs(10), || {
        let mut c = proxy.client();
        let big = vec![b'z'; 8 << 20];
        (c.cmd(&[&b"SET"[..], b"big", &big]) == b"+OK\r\n").then_some(())
    });
}

#[test]
fn respseal_own_replies_count_toward_the_inflight_bound() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = sealing_proxy(&redis, dir.path(), Some("[limits]\nmax_inflight = 64\n"));
    let mut c = proxy.client();
    // 2,000,000 refused commands (about 60 MB) written without reading: the
    // proxy stops reading after 64 unanswered replies plus what the socket
    // buffers hold, so the writer stalls long before it is done.
    let one = resp(&["APPEND", "sess:x", "y"]);
    let batch = one.repeat(10_000);
    let mut w = c.writer();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&progress);
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        for _ in 0..200 {
            if w.write_all(&batch).is_err() {
                break;
            }
            sent += 1;
            seen.store(sent, std::sync::atomic::Ordering::Relaxed);
        }
        sent
    });
    // Poll until the writer stops making progress (stalled), or fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut still) = (usize::MAX, 0);
    while still < 5 {
        assert!(!writer.is_finished(), "respseal read 60 MB of requests nobody was reading replies for");
        assert!(Instant::now() < deadline, "the writer neither stalled nor finished");
        let now = progress.load(std::sync::atomic::Ordering::Relaxed);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        // The polling interval.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(last < 100, "{last} of 200 batches accepted before stalling");
    // Reading the replies lets everything through, in order.
    let mut answered = 0usize;
    while answered < 2_000_000 {
        let f = c.read_frame();
        assert_line_prefix(&f, b"-ERR respseal: APPEND");
        answered += 1;
    }
    assert_eq!(writer.join().expect("writer"), 200);
}

#[test]
fn a_rule_can_allow_plaintext_members_of_chosen_types() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = "[[rule]]\npattern = \"queue:*\"\nallow_plaintext = [\"list\"]\n";
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = Proxy::start_with_config(redis.port, config, &["--key-file", key.to_str().expect("utf-8 path")]);
    let mut c = proxy.client();
    c.assert_cmd(&["LPUSH", "queue:jobs", "j1"], b":1\r\n");
    c.assert_cmd(&["LMOVE", "queue:jobs", "queue:done", "LEFT", "LEFT"], b"$2\r\nj1\r\n");
    assert_line_prefix(&c.cmd(&["SADD", "queue:set", "m"]), b"-ERR respseal: SADD would keep plaintext set members");
    // Strings under the same rule are still sealed.
    c.assert_cmd(&["SET", "queue:cfg", "v"], b"+OK\r\n");
    assert!(redis.client().cmd(&["GET", "queue:cfg"]).starts_with(b"$57\r\n\x00RE\x01"));
}

/// A backend that answers a command with a BAD argument with a malformed
/// frame and anything else
/// with +PONG, counting the connections it accepted.
fn garbage_backend() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    fake_redis(|| {
        |args: &[Vec<u8>]| {
            Some(if args.iter().any(|a| a == b"BAD") {
                b"?this is not RESP\r\n".to_vec()
            } else {
                b"+PONG\r\n".to_vec()
            })
        }
    })
}

#[test]
fn a_malformed_reply_breaks_only_the_link_it_came_on() {
    let (port, accepted) = garbage_backend();
    let proxy = Proxy::start(port, &["--shared-links", "1", "--threads", "1"]);
    let mut a = proxy.client();
    let mut b = proxy.client();
    b.assert_cmd(&["PING"], b"+PONG\r\n");
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // A's command gets an error instead of the garbage; nothing of it is
    // forwarded, and A stays connected.
    assert_line_prefix(&a.cmd(&["ECHO", "BAD"]), b"-ERR respseal: backend connection lost");
    // The link reconnects; both clients carry on.
    wait_until("the shared link to reconnect", Duration::from_secs(10), || {
        (b.cmd(&["PING"]) == b"+PONG\r\n").then_some(())
    });
    a.assert_cmd(&["PING"], b"+PONG\r\n");
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) > before, "the broken link was not replaced");
}

#[test]
fn logs_at_debug_and_trace_hold_no_secret() {
    for level in ["debug", "trace"] {
        let redis = RedisServer::start();
        let mut admin = redis.client();
        admin.assert_cmd(&["CONFIG", "SET", "requirepass", "backend-secret-pw"], b"+OK\r\n");
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, _) = keygen(dir.path(), "k.key");
        let material = std::fs::read_to_string(&key).expect("key file");
        let hex: String = material
            .lines()
            .find_map(|l| {
                l.split_once('=')
                    .filter(|(k, _)| k.trim() == "material")
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
            })
            .expect("material in the key file");
        let config =
            "[[rule]]\npattern = \"sess:*\"\n[[users]]\nname = \"default\"\npassword_env = \"RESPSEAL_TEST_PW\"\n";
        let env = [("RESPSEAL_TEST_PW", "user-secret-pw".to_string())];
        let args = ["--key-file", key.to_str().expect("utf-8 path"), "--log", level];
        let proxy = Proxy::launch(Launch {
            backend: Some(format!("redis://:backend-secret-pw@127.0.0.1:{}", redis.port)),
            args: &args,
            config: Some(config),
            env: &env,
            ..Default::default()
        });
        let mut c = proxy.client();
        assert_line_prefix(&c.cmd(&["AUTH", "wrong-guess-pw"]), b"-WRONGPASS");
        c.assert_cmd(&["AUTH", "user-secret-pw"], b"+OK\r\n");
        c.assert_cmd(&["SET", "sess:secret-keyname", "value-canary-9876"], b"+OK\r\n");
        c.assert_cmd(&["GET", "sess:secret-keyname"], b"$17\r\nvalue-canary-9876\r\n");
        assert_line_prefix(&c.cmd(&["APPEND", "sess:secret-keyname", "x"]), b"-ERR respseal: APPEND");
        assert_line_prefix(&c.cmd(&["HELLO", "3", "AUTH", "default", "hello-guess-pw"]), b"-WRONGPASS");
        c.assert_cmd(&["MULTI"], b"+OK\r\n");
        c.assert_cmd(&["GET", "sess:secret-keyname"], b"+QUEUED\r\n");
        c.assert_cmd(&["EXEC"], b"*1\r\n$17\r\nvalue-canary-9876\r\n");
        drop(c);
        // The debug line of the pin (MULTI) shows the level took effect.
        let log = wait_until("the proxy to log at debug", Duration::from_secs(10), || {
            let log = proxy.log();
            log.contains("pinned").then_some(log)
        });
        for secret in [
            "backend-secret-pw",
            "user-secret-pw",
            "wrong-guess-pw",
            "hello-guess-pw",
            "value-canary-9876",
            "secret-keyname",
        ] {
            assert!(!log.contains(secret), "{level} log holds {secret:?}:\n{log}");
        }
        assert!(!log.to_ascii_lowercase().contains(&hex.to_ascii_lowercase()), "{level} log holds the key material");
    }
}

/// A backend that answers the first `answered` requests of each connection,
/// then reads and never writes again; counts connections.
fn silent_backend(answered: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    fake_redis(move || {
        let mut left = answered;
        move |_: &[Vec<u8>]| {
            (left > 0).then(|| {
                left -= 1;
                b"+PONG\r\n".to_vec()
            })
        }
    })
}

#[test]
fn a_backend_that_stops_answering_cannot_hang_a_client() {
    let config = "[timeouts]\ncommand_ms = 300\n";
    for mode in [&[][..], &["--dedicated"][..]] {
        // Never answers.
        let (port, accepted) = silent_backend(0);
        let proxy = Proxy::start_with_config(port, config, mode);
        let mut c = proxy.client();
        c.send_cmd(&["PING"]);
        let r = c.try_read_frame(Duration::from_secs(10)).expect("an answer, not a hang");
        assert_bytes(&r, b"-ERR respseal: backend timeout\r\n");
        if mode.is_empty() {
            // The shared link was replaced, and the client carries on.
            wait_until("a new backend connection", Duration::from_secs(10), || {
                (accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
            });
            assert_line_prefix(&c.cmd(&["PING"]), b"-ERR respseal: backend timeout");
        } else {
            // The dedicated link's state is gone: the client is closed.
            assert!(matches!(c.try_read_frame(Duration::from_secs(10)), Err(ReadError::Closed(_))));
        }
        // Stops in the middle of a pipeline: what was answered arrives,
        // the rest gets the timeout.
        let (port, _) = silent_backend(3);
        let proxy = Proxy::start_with_config(port, config, mode);
        let mut c = proxy.client();
        c.send(&resp(&["PING"]).repeat(5));
        let frames: Vec<Vec<u8>> =
            (0..5).map(|_| c.try_read_frame(Duration::from_secs(10)).expect("an answer, not a hang")).collect();
        for f in &frames[..3] {
            assert_bytes(f, b"+PONG\r\n");
        }
        for f in &frames[3..] {
            assert_bytes(f, b"-ERR respseal: backend timeout\r\n");
        }
    }
}

#[test]
fn blocking_commands_are_not_cut_by_the_command_timeout() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with_config(redis.port, "[timeouts]\ncommand_ms = 200\n", &[]);
    let mut c = proxy.client();
    // BLPOP waits 1 s, five times the command timeout, and gets its nil.
    c.assert_cmd(&["BLPOP", "nothing-here", "1"], b"*-1\r\n");
    c.assert_cmd(&["PING"], b"+PONG\r\n");
}

/// respseal's own credentials stay its own: `CONFIG GET` of Redis's
/// password settings (by name or by pattern, RESP2 and RESP3) reads as
/// hidden, and the ACL subcommands that would show respseal's user or its
/// password hashes are refused.
#[test]
fn clients_cannot_read_the_credentials_respseal_uses() {
    let redis = RedisServer::start();
    let mut d = redis.client();
    d.assert_cmd(&["CONFIG", "SET", "requirepass", "backend-secret-pw"], b"+OK\r\n");
    let proxy = Proxy::launch(Launch {
        backend: Some(format!("redis://:backend-secret-pw@127.0.0.1:{}", redis.port)),
        ..Default::default()
    });
    let mut c = proxy.client();
    c.assert_cmd(&["CONFIG", "GET", "requirepass"], b"*2\r\n$11\r\nrequirepass\r\n$20\r\n<hidden by respseal>\r\n");
    let all = c.cmd(&["CONFIG", "GET", "*"]);
    assert!(contains(&all, b"maxmemory") && !contains(&all, b"backend-secret-pw"), "{}", show(&all));
    for sub in [&["ACL", "LIST"][..], &["ACL", "GETUSER", "default"], &["acl", "whoami"]] {
        let r = c.cmd(sub);
        assert_line_prefix(&r, b"-ERR respseal: ACL");
        assert!(!contains(&r, b"backend-secret-pw"));
    }
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    assert_line_prefix(&c.cmd(&["CONFIG", "GET", "requirepass"]), b"-ERR respseal: CONFIG GET cannot be queued");
    assert_line_prefix(&c.cmd(&["EXEC"]), b"-EXECABORT");
    let mut r3 = proxy.client();
    r3.hello3();
    r3.assert_cmd(&["CONFIG", "GET", "requirepass"], b"%1\r\n$11\r\nrequirepass\r\n$20\r\n<hidden by respseal>\r\n");
}

/// Scripts are checked against channel rules as they are against key
/// rules (a script's PUBLISH would send plaintext on a sealed channel), and
/// DEBUG POPULATE is refused when the names it makes could match a rule.
#[test]
fn scripts_and_populate_cannot_write_around_the_rules() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = rules_with_new_key(dir.path(), "[[rule]]\npattern = \"sess:*\"\n[[rule]]\nchannel = \"chan:*\"\n");
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let mut c = proxy.client();
    let publish = "return redis.call('PUBLISH', ARGV[1], ARGV[2])";
    let r = c.cmd(&["EVAL", publish, "0", "chan:x", "PLAINTEXT"]);
    assert_line_prefix(&r, b"-ERR respseal: EVAL cannot be used on sealed channels");
    let body = "return redis.call('PUBLISH', 'chan:fixed', ARGV[1])";
    assert_line_prefix(
        &c.cmd(&["EVAL", body, "0", "PLAINTEXT"]),
        b"-ERR respseal: EVAL cannot be used on sealed channels",
    );
    assert_line_prefix(&c.cmd(&["SCRIPT", "LOAD", body]), b"-ERR respseal: SCRIPT cannot be used on sealed channels");
    c.assert_cmd(&["EVAL", publish, "0", "other:x", "fine"], b":0\r\n");
    for populate in [&["DEBUG", "POPULATE", "3", "sess", "16"][..], &["DEBUG", "POPULATE", "3", "sess:x"]] {
        assert_line_prefix(&c.cmd(populate), b"-ERR respseal: DEBUG would write plaintext values");
    }
    c.assert_cmd(&["DEBUG", "POPULATE", "2", "other"], b"+OK\r\n");
    let mut d = redis.client();
    d.assert_cmd(&["DBSIZE"], b":2\r\n");
}
