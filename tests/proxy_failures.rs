//! Failures around respseal: Redis unreachable, Redis dying with commands in
//! flight and coming back, pinned sessions losing their connection, SIGTERM
//! with commands in flight.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

both_modes!(backend_down_at_start_then_up, sigterm_drains_in_flight_commands);

fn backend_down_at_start_then_up(mode: &[&str]) {
    let port = free_port(); // nothing listens here
    let mut proxy = Proxy::start(port, mode);
    let mut c = proxy.client();
    for cmd in [&["PING"][..], &["GET", "k"], &["MULTI"]] {
        let t = Instant::now();
        let reply = c.cmd(cmd);
        assert_line_prefix(&reply, b"-ERR respseal: backend unavailable");
        // At once, not after a hang (a margin that holds on a loaded machine).
        assert!(t.elapsed() < Duration::from_secs(8), "{cmd:?} took {:?}", t.elapsed());
    }
    // Pipelined commands: one error each, in order, and the client stays.
    let mut data = resp(&["PING"]);
    data.extend(resp(&["ECHO", "x"]));
    c.send(&data);
    for _ in 0..2 {
        assert_line_prefix(&c.read_frame(), b"-ERR respseal: backend unavailable");
    }

    // Redis comes up: the same connection starts working.
    let redis = RedisServer::start_on(port);
    wait_until("PONG through the proxy", Duration::from_secs(10), || {
        let r = c.cmd(&["PING"]);
        if r == b"+PONG\r\n" {
            return Some(());
        }
        assert_line_prefix(&r, b"-ERR respseal: backend unavailable");
        None
    });
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    direct(redis.port).assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    proxy.assert_running();
}

/// Wait until Redis is busy (a DEBUG SLEEP sent through the proxy is
/// running): a direct PING gets no answer for 200 ms.
fn wait_redis_busy(port: u16) {
    wait_until("Redis busy in DEBUG SLEEP", Duration::from_secs(5), || {
        let mut d = direct(port);
        d.send(b"PING\r\n");
        match d.try_read_frame(Duration::from_millis(200)) {
            Err(ReadError::Timeout(_)) => Some(()),
            _ => None,
        }
    });
}

#[test]
fn redis_killed_with_commands_in_flight_on_a_shared_link() {
    let mut redis = RedisServer::start();
    // One worker, so that each group has both its shared links (with more
    // workers each creates its share when one of its sessions needs it).
    let mut proxy = Proxy::start(redis.port, &["--threads", "1"]);
    let mut c = proxy.client();
    let mut idle = proxy.client();
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    idle.assert_cmd(&["PING"], b"+PONG\r\n");

    // A client in another database: its group's links reconnect into it.
    let mut in2 = proxy.client();
    in2.assert_cmd(&["PING"], b"+PONG\r\n");
    in2.assert_cmd(&["SELECT", "2"], b"+OK\r\n");
    in2.assert_cmd(&["GET", "k"], b"$-1\r\n");

    // A script that keeps Redis busy for 2 s (DEBUG pins its session; a
    // script goes on the shared link).
    let busy_2s = "local s = tonumber(redis.call('TIME')[1]) \
                   while tonumber(redis.call('TIME')[1]) - s < 2 do end return 1";
    let mut data = resp(&["EVAL", busy_2s, "0"]);
    data.extend(resp(&["PING"]));
    data.extend(resp(&["ECHO", "x"]));
    c.send(&data);
    wait_redis_busy(redis.port);
    let t = Instant::now();
    redis.kill();
    // Every command in flight gets an error reply, promptly.
    for _ in 0..3 {
        assert_bytes(&c.read_frame(), b"-ERR respseal: backend connection lost\r\n");
    }
    // Promptly: Redis's script would have taken 2 s, and the replies
    // can never come.
    assert!(t.elapsed() < Duration::from_secs(5), "errors took {:?}", t.elapsed());
    // The client is still connected: while Redis is down, errors at once.
    let t = Instant::now();
    assert_line_prefix(&c.cmd(&["PING"]), b"-ERR respseal: backend ");
    assert!(t.elapsed() < Duration::from_secs(8), "took {:?}", t.elapsed());

    redis.restart_same_port();
    for client in [&mut c, &mut idle] {
        wait_until("PONG after Redis restarted", Duration::from_secs(10), || {
            let r = client.cmd(&["PING"]);
            if r == b"+PONG\r\n" {
                return Some(());
            }
            assert_line_prefix(&r, b"-ERR respseal: backend ");
            None
        });
    }
    // Both shared links of each group used (databases 0 and 2) are back,
    // and only them.
    wait_until("exactly 2 + 2 shared links again", Duration::from_secs(10), || {
        (redis.client_list_others().len() == 4).then_some(())
    });
    wait_until("PONG in database 2 after Redis restarted", Duration::from_secs(10), || {
        (in2.cmd(&["PING"]) == b"+PONG\r\n").then_some(())
    });
    in2.assert_cmd(&["SET", "k2", "in2"], b"+OK\r\n");
    {
        let mut d = direct(redis.port);
        d.assert_cmd(&["SELECT", "2"], b"+OK\r\n");
        d.assert_cmd(&["GET", "k2"], b"$3\r\nin2\r\n");
    }
    c.assert_cmd(&["GET", "k"], b"$-1\r\n"); // a fresh Redis
    c.assert_cmd(&["SET", "k", "w"], b"+OK\r\n");
    idle.assert_cmd(&["GET", "k"], b"$1\r\nw\r\n");
    // Other groups and pinning work again too.
    idle.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    idle.assert_cmd(&["GET", "k"], b"$-1\r\n");
    idle.assert_cmd(&["MULTI"], b"+OK\r\n");
    idle.assert_cmd(&["EXEC"], b"*0\r\n");
    proxy.assert_running();
}

#[test]
fn pinned_sessions_are_closed_when_redis_dies() {
    let mut redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port, &[]);
    let mut by_id = proxy.client();
    let id = by_id.cmd(&["CLIENT", "ID"]);
    assert!(id.starts_with(b":"), "{}", show(&id));
    let mut in_multi = proxy.client();
    in_multi.assert_cmd(&["MULTI"], b"+OK\r\n");
    in_multi.assert_cmd(&["SET", "a", "1"], b"+QUEUED\r\n");
    let mut subscribed = proxy.client();
    subscribed.assert_cmd(&["SUBSCRIBE", "ch"], b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    let mut busy = proxy.client();
    busy.assert_cmd(&["CLIENT", "SETNAME", "busy"], b"+OK\r\n");
    let mut shared = proxy.client();
    shared.assert_cmd(&["PING"], b"+PONG\r\n");

    // In flight on the lost connection: an error, then the close.
    kill_redis_under_pinned_client(&mut redis, &mut busy);
    // Idle pinned clients: closed (their connection state is gone).
    by_id.assert_closed();
    in_multi.assert_closed();
    subscribed.assert_closed();
    // A client on a shared link stays.
    assert_line_prefix(&shared.cmd(&["PING"]), b"-ERR respseal: backend ");
    proxy.assert_running();

    redis.restart_same_port();
    wait_until("PONG after Redis restarted", Duration::from_secs(10), || {
        (shared.cmd(&["PING"]) == b"+PONG\r\n").then_some(())
    });
    let mut again = proxy.client();
    again.assert_cmd(&["MULTI"], b"+OK\r\n");
    again.assert_cmd(&["EXEC"], b"*0\r\n");
    proxy.assert_running();
}

#[test]
fn dedicated_mode_client_is_closed_when_redis_dies() {
    let mut redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port, &["--dedicated"]);
    let mut c = proxy.client();
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    let mut busy = proxy.client();
    busy.assert_cmd(&["PING"], b"+PONG\r\n");
    kill_redis_under_pinned_client(&mut redis, &mut busy);
    c.assert_closed();
    proxy.assert_running();
    // New clients get errors while Redis is down, and work once it is back.
    let mut fresh = proxy.client();
    assert_line_prefix(&fresh.cmd(&["PING"]), b"-ERR respseal: backend unavailable");
    redis.restart_same_port();
    wait_until("PONG after Redis restarted", Duration::from_secs(10), || {
        (fresh.cmd(&["PING"]) == b"+PONG\r\n").then_some(())
    });
    proxy.assert_running();
}

fn sigterm_drains_in_flight_commands(mode: &[&str]) {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(redis.port, mode);
    let mut busy = proxy.client();
    let mut idle = proxy.client();
    busy.assert_cmd(&["PING"], b"+PONG\r\n");
    idle.assert_cmd(&["PING"], b"+PONG\r\n");

    busy.send(&[resp(&["DEBUG", "SLEEP", "1"]), resp(&["ECHO", "after"])].concat());
    wait_redis_busy(redis.port);
    let t = Instant::now();
    proxy.sigterm();
    // What was in flight is answered, then the connection closes.
    let frames = busy.read_until_closed(Duration::from_secs(5)).expect("closed after draining");
    let shown: Vec<String> = frames.iter().map(|f| show(f)).collect();
    assert_eq!(shown, ["+OK\\r\\n", "$5\\r\\nafter\\r\\n"]);
    idle.assert_closed();
    // Exits 0 once drained, well before the 10 s default grace period.
    let status = proxy.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    assert!(t.elapsed() < Duration::from_secs(8), "shutdown took {:?} (grace period 10 s)", t.elapsed());
    // Nobody listens any more.
    let refused = Client::try_connect(proxy.port).err().map(|e| e.kind());
    assert_eq!(refused, Some(std::io::ErrorKind::ConnectionRefused));
}

#[test]
fn sigterm_grace_period_is_bounded() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start_with_config(redis.port, "[timeouts]\nshutdown_grace_secs = 1\n", &[]);
    let mut busy = proxy.client();
    busy.send_cmd(&["DEBUG", "SLEEP", "8"]);
    wait_redis_busy(redis.port);
    let t = Instant::now();
    proxy.sigterm();
    let status = proxy.wait_exit(Duration::from_secs(7));
    assert!(status.success(), "exit status {status}");
    // Not before the 1 s grace period, and not waiting for the straggler's 8 s.
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(6), "shutdown took {took:?}");
    // The straggler was dropped without a made-up reply.
    let rest = busy.read_until_closed(Duration::from_secs(5)).expect("closed");
    assert!(rest.is_empty(), "{:?}", rest.iter().map(|f| show(f)).collect::<Vec<_>>());
}

/// A backend that requires a password: the proxy logs every connection in
/// (shared links, RESP3 links, dedicated links, and again after RESET).
#[test]
fn backend_with_password() {
    let redis = RedisServer::start();
    direct(redis.port).assert_cmd(&["CONFIG", "SET", "requirepass", "s3cret"], b"+OK\r\n");
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let proxy = Proxy::launch(Launch { backend: Some(url), ..Default::default() });
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    c.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    c.assert_cmd(&["GET", "k"], b"$-1\r\n");
    c.hello3();
    c.assert_cmd(&["GET", "missing"], b"_\r\n");
    let mut p = proxy.client();
    p.assert_cmd(&["CLIENT", "SETNAME", "pinned"], b"+OK\r\n");
    p.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    p.assert_cmd(&["RESET"], b"+RESET\r\n");
    p.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    p.assert_cmd(&["CLIENT", "GETNAME"], b"$-1\r\n");

    // Wrong backend password: a clear error, no hang.
    let url = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let bad = Proxy::launch(Launch { backend: Some(url), ..Default::default() });
    let mut b = bad.client();
    let r = b.cmd(&["PING"]);
    assert_line_prefix(&r, b"-ERR respseal: backend refused the handshake: WRONGPASS");
    let r = b.cmd(&["MULTI"]);
    assert_line_prefix(&r, b"-ERR respseal: backend refused the handshake: WRONGPASS");
}

/// Kill Redis while `busy` (on its own backend connection) waits for a
/// `DEBUG SLEEP`: it gets one error reply for it, then its connection closes.
fn kill_redis_under_pinned_client(redis: &mut RedisServer, busy: &mut Client) {
    busy.send_cmd(&["DEBUG", "SLEEP", "2"]);
    wait_redis_busy(redis.port);
    redis.kill();
    let frames = busy.read_until_closed(Duration::from_secs(5)).expect("busy client closed");
    assert_eq!(frames.len(), 1, "{:?}", frames.iter().map(|f| show(f)).collect::<Vec<_>>());
    assert_bytes(&frames[0], b"-ERR respseal: backend connection lost\r\n");
}

/// respseal agrees with Redis on the largest argument: it learns Redis's
/// `proto-max-bulk-len` at start, refuses a value that sealing would grow
/// past it (before it is sealed), and answers a larger bulk with Redis's
/// own protocol error, closing only that client. The shared link and the
/// other clients on it never notice.
#[test]
fn limits_agree_with_redis_proto_max_bulk_len() {
    let redis = RedisServer::start();
    redis.client().assert_cmd(&["CONFIG", "SET", "proto-max-bulk-len", "1048576"], b"+OK\r\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = Proxy::start(
        redis.port,
        &["--seal", "sess:*", "--key-file", key.to_str().expect("utf-8"), "--threads", "1", "--shared-links", "1"],
    );
    let mut other = proxy.client();
    other.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    let mut c = proxy.client();
    let near = "x".repeat(1048576 - 20);
    assert_line_prefix(&c.cmd(&["SET", "sess:big", &near]), b"-ERR respseal: value too large");
    c.assert_cmd(&["SET", "plain:big", &near], b"+OK\r\n");
    c.assert_cmd(&["SET", "sess:small", "v"], b"+OK\r\n");
    other.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    // Only the header and the start of the body: Redis answers the length
    // line alone, and closing on a client still writing a megabyte would
    // reset the connection (a broken pipe here, or a lost reply).
    let over = format!("*3\r\n$3\r\nSET\r\n$10\r\nplain:over\r\n${}\r\n{}", 1048576 + 1, "x".repeat(4096));
    for port in [redis.port, proxy.port] {
        let mut c = Client::connect(port);
        c.send(over.as_bytes());
        let replies = c.read_until_closed(Duration::from_secs(10)).expect("closed");
        assert_eq!(replies, vec![b"-ERR Protocol error: invalid bulk length\r\n".to_vec()], "port {port}");
    }
    other.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    let log = proxy.log();
    assert!(!log.contains("shared link down"), "{log}");
}
