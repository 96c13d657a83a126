//! Connection state through respseal, against a real Redis: SELECT,
//! transactions, WATCH, pub/sub in RESP2, blocking commands, CLIENT
//! subcommands, MONITOR, RESET, QUIT, and the number of backend connections
//! under 1,000 concurrent clients.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

both_modes!(
    select_moves_the_client_to_another_database,
    multi_exec_discard,
    watch_aborts_exec_when_another_client_writes,
    resp2_subscribe_mode,
    blpop_waits_without_stalling_other_clients,
    client_subcommands,
    monitor_sees_other_clients,
    reset_returns_to_the_initial_state,
    quit_answers_then_closes,
    first_command_of_a_connection,
    auth_without_users_answers_like_redis,
    script_kill_reaches_a_busy_script,
);

fn select_moves_the_client_to_another_database(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut d = direct(redis.port);
    let mut c = proxy.client();
    let mut other = proxy.client();
    // SELECT as the very first command is first_command_of_a_connection's
    // subject; here every client has sent something before.
    c.assert_cmd(&["PING"], b"+PONG\r\n");

    c.assert_cmd(&["SELECT", "3"], b"+OK\r\n");
    c.assert_cmd(&["SET", "k", "in3"], b"+OK\r\n");
    // Another client of the proxy is still in database 0.
    other.assert_cmd(&["SET", "k", "in0"], b"+OK\r\n");
    other.assert_cmd(&["GET", "k"], b"$3\r\nin0\r\n");
    c.assert_cmd(&["GET", "k"], b"$3\r\nin3\r\n");

    // Invalid SELECTs: Redis's error, and the database does not change.
    c.assert_cmd(&["SELECT", "99"], b"-ERR DB index is out of range\r\n");
    c.assert_cmd(&["SELECT", "abc"], b"-ERR value is not an integer or out of range\r\n");
    c.assert_cmd(&["SELECT", "-1"], b"-ERR DB index is out of range\r\n");
    c.assert_cmd(&["SELECT", "1", "2"], b"-ERR wrong number of arguments for 'select' command\r\n");
    c.assert_cmd(&["SELECT", "01"], b"-ERR value is not an integer or out of range\r\n");
    c.assert_cmd(&["SET", "k2", "still3"], b"+OK\r\n");

    // SELECT pipelined with the commands around it.
    let mut data = resp(&["SELECT", "5"]);
    data.extend(resp(&["SET", "p", "in5"]));
    data.extend(resp(&["SELECT", "0"]));
    data.extend(resp(&["GET", "p"]));
    data.extend(resp(&["GET", "k"]));
    c.send(&data);
    for expected in [&b"+OK\r\n"[..], b"+OK\r\n", b"+OK\r\n", b"$-1\r\n", b"$3\r\nin0\r\n"] {
        assert_bytes(&c.read_frame(), expected);
    }

    // What Redis itself holds.
    for (db, key, value) in [
        ("0", "k", &b"$3\r\nin0\r\n"[..]),
        ("3", "k", b"$3\r\nin3\r\n"),
        ("3", "k2", b"$6\r\nstill3\r\n"),
        ("5", "p", b"$3\r\nin5\r\n"),
        ("0", "p", b"$-1\r\n"),
        ("0", "k2", b"$-1\r\n"),
    ] {
        d.assert_cmd(&["SELECT", db], b"+OK\r\n");
        let got = d.cmd(&["GET", key]);
        assert!(got == value, "db {db} key {key}: {} expected {}", show(&got), show(value));
    }
    other.assert_cmd(&["GET", "k2"], b"$-1\r\n");

    // A client pinned after SELECT keeps its database on its own connection.
    let mut p = proxy.client();
    p.assert_cmd(&["PING"], b"+PONG\r\n");
    p.assert_cmd(&["SELECT", "7"], b"+OK\r\n");
    p.assert_cmd(&["SET", "before", "1"], b"+OK\r\n");
    p.assert_cmd(&["MULTI"], b"+OK\r\n");
    p.assert_cmd(&["SET", "during", "1"], b"+QUEUED\r\n");
    p.assert_cmd(&["EXEC"], b"*1\r\n+OK\r\n");
    p.assert_cmd(&["SET", "after", "1"], b"+OK\r\n");
    p.assert_cmd(&["SELECT", "8"], b"+OK\r\n");
    p.assert_cmd(&["SET", "in8", "1"], b"+OK\r\n");
    d.assert_cmd(&["SELECT", "7"], b"+OK\r\n");
    d.assert_cmd(&["EXISTS", "before", "during", "after", "in8"], b":3\r\n");
    d.assert_cmd(&["SELECT", "8"], b"+OK\r\n");
    d.assert_cmd(&["EXISTS", "in8"], b":1\r\n");
}

#[test]
fn concurrent_selects_keep_databases_apart() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &["--shared-links", "2"]);
    let port = proxy.port;
    let handles: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                for round in 0..20 {
                    let db = (i + round) % 16;
                    let mut data = resp(&["SELECT", &db.to_string()]);
                    data.extend(resp(&["SET", &format!("c{i}:r{round}"), &db.to_string()]));
                    data.extend(resp(&["SELECT", "99"]));
                    data.extend(resp(&["INCR", "hits"]));
                    c.send(&data);
                    assert_bytes(&c.read_frame(), b"+OK\r\n");
                    assert_bytes(&c.read_frame(), b"+OK\r\n");
                    assert_bytes(&c.read_frame(), b"-ERR DB index is out of range\r\n");
                    let n = c.read_frame();
                    assert!(n.starts_with(b":"), "INCR: {}", show(&n));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    let mut d = direct(redis.port);
    let mut total_hits = 0;
    for db in 0..16 {
        d.assert_cmd(&["SELECT", &db.to_string()], b"+OK\r\n");
        let keys = d.cmd(&["KEYS", "c*"]);
        let n = d.cmd(&["DBSIZE"]);
        let hits = d.cmd(&["GET", "hits"]);
        if hits != b"$-1\r\n" {
            total_hits += bulk_text(&hits).parse::<u32>().expect("a number");
        }
        let keys_count: usize =
            String::from_utf8_lossy(&keys[1..keys.iter().position(|&b| b == b'\r').expect("header")])
                .parse()
                .expect("array length");
        assert_eq!(n, format!(":{}\r\n", keys_count + usize::from(hits != b"$-1\r\n")).into_bytes());
        // Every key is in the database its value names.
        for i in 0..64 {
            for round in 0..20 {
                if (i + round) % 16 == db {
                    d.assert_cmd(&["GET", &format!("c{i}:r{round}")], &bulk(db.to_string().as_bytes()));
                }
            }
        }
        assert_eq!(keys_count, 64 * 20 / 16, "db {db}");
    }
    assert_eq!(total_hits, 64 * 20);
}

#[test]
fn abandoned_replies_do_not_reach_other_clients() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &["--shared-links", "1"]);
    let mut steady = proxy.client();
    steady.assert_cmd(&["PING"], b"+PONG\r\n");
    for round in 0..20 {
        // A client that sends a pipeline and leaves before the replies come.
        let mut gone = proxy.client();
        let mut data = resp(&["DEBUG", "SLEEP", "0.02"]);
        for i in 0..200 {
            data.extend(resp(&["ECHO", &format!("gone{i}")]));
        }
        gone.send(&data);
        drop(gone);
        let mut data = Vec::new();
        for i in 0..50 {
            data.extend(resp(&["ECHO", &format!("r{round}:{i}")]));
        }
        steady.send(&data);
        for i in 0..50 {
            assert_bytes(&steady.read_frame(), &bulk(format!("r{round}:{i}").as_bytes()));
        }
    }
    steady.assert_silent(Duration::from_millis(100));
}

/// Connection commands as the very first command of a connection (in the
/// dedicated mode, before the session has a backend connection) answer
/// exactly like Redis.
fn first_command_of_a_connection(mode: &[&str]) {
    compare_first_commands(
        mode,
        &[
            &["SELECT", "1"],
            &["SELECT", "abc"],
            &["SELECT", "99"],
            &["HELLO", "4"],
            &["HELLO", "x"],
            &["RESET"],
            &["EXEC"],
            &["UNSUBSCRIBE"],
            &["CLIENT", "GETNAME"],
            &["WATCH", "k"],
        ],
    );
}

/// Without proxy users, AUTH answers like a Redis without a password.
fn auth_without_users_answers_like_redis(mode: &[&str]) {
    compare_first_commands(
        mode,
        &[&["AUTH", "pw"], &["AUTH", "default", "pw"], &["AUTH", "bob", "pw"], &["AUTH"], &["AUTH", "a", "b", "c"]],
    );
}

/// Send each command as the first of a fresh connection, then PING and
/// GET, to Redis and to the proxy; all differences are reported together.
fn compare_first_commands(mode: &[&str], cases: &[&[&str]]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut mismatches = Vec::new();
    for cmd in cases {
        let mut replies = Vec::new();
        for port in [redis.port, proxy.port] {
            let mut c = Client::connect(port);
            let first = c.cmd(cmd);
            let then = [c.cmd(&["PING"]), c.cmd(&["GET", "missing"])];
            replies.push([show(&first), show(&then[0]), show(&then[1])]);
        }
        if replies[1] != replies[0] {
            mismatches.push(format!("{cmd:?} then PING, GET: proxy {:?} / Redis {:?}", replies[1], replies[0]));
        }
    }
    assert!(mismatches.is_empty(), "answered differently:\n{}", mismatches.join("\n"));
}

#[test]
fn backend_url_database_is_the_default() {
    let redis = RedisServer::start();
    let proxy = Proxy::launch(Launch { backend: Some(format!("{}/4", redis.url())), ..Default::default() });
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    let mut d = direct(redis.port);
    d.assert_cmd(&["GET", "k"], b"$-1\r\n");
    d.assert_cmd(&["SELECT", "4"], b"+OK\r\n");
    d.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    c.assert_cmd(&["SELECT", "0"], b"+OK\r\n");
    c.assert_cmd(&["GET", "k"], b"$-1\r\n");
}

fn multi_exec_discard(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    // A fresh client whose first write holds plain commands, the MULTI that
    // pins it, and the transaction: everything in order.
    let mut p = proxy.client();
    let mut data = Vec::new();
    for cmd in
        [&["SET", "t", "1"][..], &["GET", "t"], &["MULTI"], &["INCR", "t"], &["GET", "t"], &["EXEC"], &["GET", "t"]]
    {
        data.extend(resp(cmd));
    }
    p.send(&data);
    for expected in [
        &b"+OK\r\n"[..],
        b"$1\r\n1\r\n",
        b"+OK\r\n",
        b"+QUEUED\r\n",
        b"+QUEUED\r\n",
        b"*2\r\n:2\r\n$1\r\n2\r\n",
        b"$1\r\n2\r\n",
    ] {
        assert_bytes(&p.read_frame(), expected);
    }

    let mut c = proxy.client();
    c.assert_cmd(&["EXEC"], b"-ERR EXEC without MULTI\r\n");
    c.assert_cmd(&["DISCARD"], b"-ERR DISCARD without MULTI\r\n");
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "a", "1"], b"+QUEUED\r\n");
    c.assert_cmd(&["INCR", "a"], b"+QUEUED\r\n");
    c.assert_cmd(&["GET", "a"], b"+QUEUED\r\n");
    c.assert_cmd(&["EXEC"], b"*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n");

    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "a", "5"], b"+QUEUED\r\n");
    c.assert_cmd(&["DISCARD"], b"+OK\r\n");
    c.assert_cmd(&["GET", "a"], b"$1\r\n2\r\n");

    // A queued command Redis refuses aborts the transaction.
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "a", "9"], b"+QUEUED\r\n");
    c.assert_cmd(&["NOSUCHCMD"], b"-ERR unknown command 'NOSUCHCMD', with args beginning with: \r\n");
    c.assert_cmd(&["EXEC"], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    c.assert_cmd(&["GET", "a"], b"$1\r\n2\r\n");

    // The whole transaction pipelined in one write.
    let mut data = Vec::new();
    for cmd in [&["MULTI"][..], &["INCR", "a"], &["INCR", "a"], &["EXEC"]] {
        data.extend(resp(cmd));
    }
    c.send(&data);
    for expected in [&b"+OK\r\n"[..], b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n:3\r\n:4\r\n"] {
        assert_bytes(&c.read_frame(), expected);
    }
    // Other clients never see the transaction's intermediate state or its
    // queue.
    let mut other = proxy.client();
    other.assert_cmd(&["EXEC"], b"-ERR EXEC without MULTI\r\n");
    other.assert_cmd(&["GET", "a"], b"$1\r\n4\r\n");
}

fn watch_aborts_exec_when_another_client_writes(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let mut other = proxy.client();

    c.assert_cmd(&["WATCH", "wk"], b"+OK\r\n");
    other.assert_cmd(&["SET", "wk", "x"], b"+OK\r\n");
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "wk", "y"], b"+QUEUED\r\n");
    c.assert_cmd(&["EXEC"], b"*-1\r\n");
    c.assert_cmd(&["GET", "wk"], b"$1\r\nx\r\n");

    // Untouched: EXEC runs.
    c.assert_cmd(&["WATCH", "wk"], b"+OK\r\n");
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "wk", "z"], b"+QUEUED\r\n");
    c.assert_cmd(&["EXEC"], b"*1\r\n+OK\r\n");
    other.assert_cmd(&["GET", "wk"], b"$1\r\nz\r\n");

    // In RESP3 and another database: the connection WATCH pins to speaks
    // RESP3 in that database, and the aborted EXEC is a RESP3 null.
    let mut c3 = proxy.client();
    c3.hello3();
    c3.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    c3.assert_cmd(&["SET", "wk", "a"], b"+OK\r\n");
    c3.assert_cmd(&["WATCH", "wk"], b"+OK\r\n");
    let mut other1 = proxy.client();
    other1.assert_cmd(&["PING"], b"+PONG\r\n"); // see first_command_of_a_connection
    other1.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    other1.assert_cmd(&["SET", "wk", "b"], b"+OK\r\n");
    c3.assert_cmd(&["MULTI"], b"+OK\r\n");
    c3.assert_cmd(&["GET", "wk"], b"+QUEUED\r\n");
    c3.assert_cmd(&["EXEC"], b"_\r\n");
    c3.assert_cmd(&["GET", "wk"], b"$1\r\nb\r\n");
    c3.assert_cmd(&["GET", "missing"], b"_\r\n");
    other.assert_cmd(&["GET", "wk"], b"$1\r\nz\r\n");
}

fn resp2_subscribe_mode(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut sub = proxy.client();
    let mut publisher = proxy.client();

    sub.send_cmd(&["SUBSCRIBE", "a", "b", "c"]);
    for (i, ch) in ["a", "b", "c"].iter().enumerate() {
        let expected = format!("*3\r\n$9\r\nsubscribe\r\n$1\r\n{ch}\r\n:{}\r\n", i + 1);
        assert_bytes(&sub.read_frame(), expected.as_bytes());
    }
    publisher.assert_cmd(&["PUBLISH", "b", "hello"], b":1\r\n");
    assert_bytes(&sub.read_frame(), b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$5\r\nhello\r\n");
    publisher.assert_cmd(&["PUBLISH", "zzz", "nobody"], b":0\r\n");
    // In RESP2 subscribe mode only a few commands are allowed; PING has its
    // own reply shape.
    sub.assert_cmd(&["PING"], b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    sub.assert_cmd(&["PING", "hi"], b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
    sub.assert_cmd(
        &["GET", "x"],
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    );
    publisher.assert_cmd(&["PUBLISH", "c", "bin\r\n\0"], b":1\r\n");
    assert_bytes(&sub.read_frame(), b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$6\r\nbin\r\n\0\r\n");

    // UNSUBSCRIBE without arguments: one confirmation per channel (in
    // Redis's dict order), counts going down to 0.
    sub.send_cmd(&["UNSUBSCRIBE"]);
    let mut seen = BTreeSet::new();
    for left in [2, 1, 0] {
        let f = sub.read_frame();
        let ch = ["a", "b", "c"]
            .into_iter()
            .find(|ch| f == format!("*3\r\n$11\r\nunsubscribe\r\n$1\r\n{ch}\r\n:{left}\r\n").as_bytes())
            .unwrap_or_else(|| panic!("unexpected confirmation {} (expected count {left})", show(&f)));
        seen.insert(ch);
    }
    assert_eq!(seen.len(), 3);
    // Back to normal.
    sub.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    sub.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    sub.assert_cmd(&["PING"], b"+PONG\r\n");
    publisher.assert_cmd(&["PUBLISH", "a", "late"], b":0\r\n");

    // Patterns.
    sub.assert_cmd(&["PSUBSCRIBE", "n*"], b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n");
    publisher.assert_cmd(&["PUBLISH", "news", "x"], b":1\r\n");
    assert_bytes(&sub.read_frame(), b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n");
    // A subscription and a command pipelined in one write.
    let mut data = resp(&["SUBSCRIBE", "news"]);
    data.extend(resp(&["PING"]));
    sub.send(&data);
    assert_bytes(&sub.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:2\r\n");
    assert_bytes(&sub.read_frame(), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    publisher.assert_cmd(&["PUBLISH", "news", "y"], b":2\r\n");
    let got: BTreeSet<Vec<u8>> = sub.read_frames(2).into_iter().collect();
    let want: BTreeSet<Vec<u8>> = [
        b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\ny\r\n".to_vec(),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$1\r\ny\r\n".to_vec(),
    ]
    .into();
    assert_eq!(got, want);
    sub.assert_cmd(&["PUNSUBSCRIBE"], b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:1\r\n");
    sub.assert_cmd(&["UNSUBSCRIBE", "news"], b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n");
    sub.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    // UNSUBSCRIBE with no subscription at all: one confirmation.
    sub.assert_cmd(&["UNSUBSCRIBE"], b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    sub.assert_cmd(&["PING"], b"+PONG\r\n");
}

fn blpop_waits_without_stalling_other_clients(mode: &[&str]) {
    let redis = RedisServer::start();
    // One shared link: if BLPOP went over it, every other client would wait.
    let mut args = mode.to_vec();
    args.extend(["--shared-links", "1"]);
    let proxy = Proxy::start(redis.port, &args);
    let mut blocked = proxy.client();
    let mut others: Vec<Client> = (0..8).map(|_| proxy.client()).collect();
    for o in &mut others {
        o.assert_cmd(&["PING"], b"+PONG\r\n");
    }

    let t0 = Instant::now();
    blocked.send_cmd(&["BLPOP", "q", "0"]);
    // Redis reports the BLPOP as blocked.
    let redis_port = redis.port;
    wait_until("BLPOP blocked in Redis", Duration::from_secs(5), || {
        let list = bulk_text(&direct(redis_port).cmd(&["CLIENT", "LIST"]));
        list.lines().any(|l| l.contains("cmd=blpop") && l.contains("flags=b")).then_some(())
    });
    // Meanwhile every other client gets prompt answers.
    let mut slowest = Duration::ZERO;
    while t0.elapsed() < Duration::from_millis(1500) {
        for (i, o) in others.iter_mut().enumerate() {
            let t = Instant::now();
            o.assert_cmd(&["SET", &format!("k{i}"), "v"], b"+OK\r\n");
            o.assert_cmd(&["GET", &format!("k{i}")], b"$1\r\nv\r\n");
            slowest = slowest.max(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client stuck behind the BLPOP would wait until the LPUSH below (it
    // would never come); a second is a margin that holds on a loaded 2-core
    // machine.
    assert!(slowest < Duration::from_secs(1), "a client waited {slowest:?} while another was in BLPOP");
    blocked.assert_silent(Duration::from_millis(10));

    others[0].assert_cmd(&["LPUSH", "q", "v"], b":1\r\n");
    assert_bytes(&blocked.read_frame(), b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    blocked.assert_cmd(&["PING"], b"+PONG\r\n");
    // A timeout that expires: RESP2 null array.
    blocked.assert_cmd(&["BLPOP", "q", "0.1"], b"*-1\r\n");
    others[1].assert_cmd(&["LLEN", "q"], b":0\r\n");
}

fn client_subcommands(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    // Answered by the proxy (Redis 7.0 itself does not know SETINFO).
    c.assert_cmd(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"], b"+OK\r\n");
    c.assert_cmd(&["CLIENT", "SETINFO", "LIB-VER", "1.2.3"], b"+OK\r\n");
    c.assert_cmd(
        &["CLIENT", "SETINFO", "LIB-NAME", "has space"],
        b"-ERR lib-name cannot contain spaces, newlines or special characters.\r\n",
    );
    c.assert_cmd(
        &["CLIENT", "SETINFO", "LIB-NAME"],
        b"-ERR wrong number of arguments for 'client|setinfo' command\r\n",
    );
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    // Answered in order with the commands around it.
    let mut data = resp(&["ECHO", "1"]);
    data.extend(resp(&["CLIENT", "SETINFO", "LIB-VER", "2"]));
    data.extend(resp(&["ECHO", "3"]));
    data.extend(resp(&["CLIENT", "SETINFO", "NOSUCH", "x"]));
    data.extend(resp(&["ECHO", "5"]));
    c.send(&data);
    for expected in
        [&b"$1\r\n1\r\n"[..], b"+OK\r\n", b"$1\r\n3\r\n", b"-ERR Unrecognized option 'NOSUCH'\r\n", b"$1\r\n5\r\n"]
    {
        assert_bytes(&c.read_frame(), expected);
    }

    c.assert_cmd(&["CLIENT", "GETNAME"], b"$-1\r\n");
    c.assert_cmd(&["CLIENT", "SETNAME", "app"], b"+OK\r\n");
    c.assert_cmd(&["CLIENT", "GETNAME"], b"$3\r\napp\r\n");
    c.assert_cmd(
        &["CLIENT", "SETNAME", "bad name"],
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    let id = c.cmd(&["CLIENT", "ID"]);
    assert!(id.starts_with(b":") && id.ends_with(b"\r\n"), "CLIENT ID: {}", show(&id));
    let id = String::from_utf8_lossy(&id[1..id.len() - 2]).into_owned();
    let id_field = format!("id={id} ");

    // Redis sees that connection with that name.
    let listed = redis.client_list_others();
    let line = listed
        .iter()
        .find(|l| l.starts_with(&id_field))
        .unwrap_or_else(|| panic!("client {id} not in Redis's CLIENT LIST: {listed:#?}"));
    assert!(line.contains(" name=app "), "{line}");
    // The same through the proxy.
    let list = bulk_text(&c.cmd(&["CLIENT", "LIST"]));
    assert!(list.lines().any(|l| l.starts_with(&id_field) && l.contains(" name=app ")), "{list}");
    let info = bulk_text(&c.cmd(&["CLIENT", "INFO"]));
    assert!(info.starts_with(&id_field) && info.contains(" name=app "), "{info}");
    c.assert_cmd(&["CLIENT", "NOSUCH"], b"-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n");

    // The name belongs to this client only.
    let mut other = proxy.client();
    other.assert_cmd(&["CLIENT", "GETNAME"], b"$-1\r\n");
    let other_id = other.cmd(&["CLIENT", "ID"]);
    assert!(other_id != format!(":{id}\r\n").into_bytes(), "two clients share connection {id}");
    c.assert_cmd(&["CLIENT", "GETNAME"], b"$3\r\napp\r\n");

    // CLIENT REPLY: Redis sends nothing for SKIP/OFF and the skipped commands.
    let mut data = Vec::new();
    for cmd in [
        &["CLIENT", "REPLY", "SKIP"][..],
        &["SET", "a", "1"],
        &["GET", "a"],
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "b", "2"],
        &["INCR", "a"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "b"],
        &["GET", "a"],
    ] {
        data.extend(resp(cmd));
    }
    c.send(&data);
    for expected in [&b"$1\r\n1\r\n"[..], b"+OK\r\n", b"$1\r\n2\r\n", b"$1\r\n2\r\n"] {
        assert_bytes(&c.read_frame(), expected);
    }
    c.assert_silent(Duration::from_millis(50));
}

fn monitor_sees_other_clients(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut mon = proxy.client();
    let mut c = proxy.client();
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    mon.assert_cmd(&["MONITOR"], b"+OK\r\n");
    c.assert_cmd(&["SET", "mkey", "m val"], b"+OK\r\n");
    let line = mon.read_frame();
    let ok = line.starts_with(b"+")
        && line[1].is_ascii_digit()
        && line.windows(13).any(|w| w == b" [0 127.0.0.1")
        && line.ends_with(b"] \"SET\" \"mkey\" \"m val\"\r\n");
    assert!(ok, "monitor line: {}", show(&line));
    c.assert_cmd(&["GET", "mkey"], b"$5\r\nm val\r\n");
    let line = mon.read_frame();
    assert!(line.starts_with(b"+") && line.ends_with(b"] \"GET\" \"mkey\"\r\n"), "monitor line: {}", show(&line));
    // RESET ends monitoring.
    mon.assert_cmd(&["RESET"], b"+RESET\r\n");
    c.assert_cmd(&["GET", "mkey"], b"$5\r\nm val\r\n");
    mon.assert_cmd(&["PING"], b"+PONG\r\n");
}

fn reset_returns_to_the_initial_state(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut d = direct(redis.port);

    // Unpinned (in the default mode): database and protocol.
    let mut c = proxy.client();
    c.assert_cmd(&["PING"], b"+PONG\r\n"); // see first_command_of_a_connection
    c.assert_cmd(&["SELECT", "2"], b"+OK\r\n");
    c.hello3();
    c.assert_cmd(&["GET", "missing"], b"_\r\n");
    c.assert_cmd(&["RESET"], b"+RESET\r\n");
    c.proto = Proto::Resp2;
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");
    c.assert_cmd(&["SET", "r1", "v"], b"+OK\r\n");
    d.assert_cmd(&["GET", "r1"], b"$1\r\nv\r\n");

    // Pinned: name, database, protocol, subscriptions.
    let mut p = proxy.client();
    p.assert_cmd(&["CLIENT", "SETNAME", "n"], b"+OK\r\n");
    p.assert_cmd(&["SELECT", "2"], b"+OK\r\n");
    p.hello3();
    p.assert_cmd(&["SUBSCRIBE", "ch"], b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    p.assert_cmd(&["RESET"], b"+RESET\r\n");
    p.proto = Proto::Resp2;
    p.assert_cmd(&["CLIENT", "GETNAME"], b"$-1\r\n");
    p.assert_cmd(&["GET", "missing"], b"$-1\r\n");
    p.assert_cmd(&["PING"], b"+PONG\r\n");
    p.assert_cmd(&["SET", "r2", "v"], b"+OK\r\n");
    c.assert_cmd(&["PUBLISH", "ch", "x"], b":0\r\n");
    d.assert_cmd(&["GET", "r2"], b"$1\r\nv\r\n");
    // In a transaction: RESET discards it.
    p.assert_cmd(&["MULTI"], b"+OK\r\n");
    p.assert_cmd(&["SET", "r3", "v"], b"+QUEUED\r\n");
    p.assert_cmd(&["RESET"], b"+RESET\r\n");
    p.assert_cmd(&["EXEC"], b"-ERR EXEC without MULTI\r\n");
    d.assert_cmd(&["EXISTS", "r3"], b":0\r\n");
}

fn quit_answers_then_closes(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    c.assert_cmd(&["QUIT"], b"+OK\r\n");
    c.assert_closed();

    // Commands after QUIT in the same write are not run, like Redis.
    let mut data = resp(&["INCR", "n"]);
    data.extend(resp(&["QUIT"]));
    data.extend(resp(&["INCR", "n"]));
    for port in [redis.port, proxy.port] {
        let mut c = Client::connect(port);
        c.send(&data);
        let frames = c.read_until_closed(IO_TIMEOUT).expect("closed after QUIT");
        let frames: Vec<String> = frames.iter().map(|f| show(f)).collect();
        assert_eq!(frames.len(), 2, "port {port}: {frames:?}");
        assert_eq!(frames[1], "+OK\\r\\n");
    }
    direct(redis.port).assert_cmd(&["GET", "n"], b"$1\r\n2\r\n");

    // A pinned client too, with a transaction open.
    let mut c = proxy.client();
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["INCR", "n"], b"+QUEUED\r\n");
    c.assert_cmd(&["QUIT"], b"+OK\r\n");
    c.assert_closed();
    direct(redis.port).assert_cmd(&["GET", "n"], b"$1\r\n2\r\n");
}

// ----- many clients ------------------------------------------------------------------

/// `n` clients, all connected at once, each pipelining 100 commands; every
/// reply checked. Returns the clients, still connected.
fn many_clients_pipelining(proxy_port: u16, n: usize) -> Vec<Client> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut c = Client::connect(proxy_port);
                    barrier.wait();
                    let mut data = Vec::new();
                    for j in 0..100 {
                        if j % 2 == 0 {
                            data.extend(resp(&["INCR", &format!("ctr:{i}")]));
                        } else {
                            data.extend(resp(&["ECHO", &format!("{i}:{j}")]));
                        }
                    }
                    c.writer().write_all(&data).expect("writing the pipeline");
                    for j in 0..100 {
                        let f = c.read_frame();
                        let expected = if j % 2 == 0 {
                            format!(":{}\r\n", j / 2 + 1).into_bytes()
                        } else {
                            bulk(format!("{i}:{j}").as_bytes())
                        };
                        assert!(f == expected, "client {i} reply {j}: {} expected {}", show(&f), show(&expected));
                    }
                    c
                })
                .expect("spawning a client thread")
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("a client thread failed")).collect()
}

#[test]
fn thousand_clients_share_the_configured_links() {
    let redis = RedisServer::start();
    // One worker thread: it holds all of a group's links.
    let proxy = Proxy::start(redis.port, &["--shared-links", "2", "--threads", "1"]);
    let clients = many_clients_pipelining(proxy.port, 1000);
    // Every client is still connected; Redis sees exactly the two shared
    // links of the (db 0, RESP2) group.
    // Counted by polling: a connection closing elsewhere (the readiness
    // probe's) may still be listed for a moment.
    wait_until("exactly the two shared links", Duration::from_secs(10), || {
        (redis.client_list_others().len() == 2).then_some(())
    });
    {
        let mut d = direct(redis.port);
        d.assert_cmd(&["GET", "ctr:0"], b"$2\r\n50\r\n");
        d.assert_cmd(&["GET", "ctr:999"], b"$2\r\n50\r\n");
        d.assert_cmd(&["QUIT"], b"+OK\r\n");
        d.assert_closed();
    }
    // A second group (RESP3) gets its own two links, no more.
    let mut c3 = Client::connect(proxy.port);
    c3.hello3();
    c3.assert_cmd(&["GET", "missing"], b"_\r\n");
    let links = wait_until("four links, two of them RESP3", Duration::from_secs(10), || {
        let links = redis.client_list_others();
        (links.len() == 4).then_some(links)
    });
    assert_eq!(links.iter().filter(|l| l.ends_with("resp=3")).count(), 2, "{links:#?}");
    drop(clients);
}

#[test]
fn worker_threads_divide_the_shared_links_among_them() {
    for (links, threads) in [(2, 2), (3, 2), (1, 2)] {
        let redis = RedisServer::start();
        let args = ["--shared-links", &links.to_string(), "--threads", &threads.to_string()].map(String::from);
        let proxy = Proxy::start(redis.port, &args.each_ref().map(String::as_str));
        // Clients go to the workers in turn, so both workers serve some.
        let clients = many_clients_pipelining(proxy.port, 100);
        // Each worker has its share of the links, and at least one.
        let expected = links.max(threads);
        wait_until(
            &format!("{expected} links for {links} links on {threads} threads"),
            Duration::from_secs(10),
            || (redis.client_list_others().len() == expected).then_some(()),
        );
        drop(clients);
    }
}

#[test]
fn thousand_clients_dedicated_one_connection_each() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &["--dedicated"]);
    let mut clients = many_clients_pipelining(proxy.port, 1000);
    let count = |redis: &RedisServer| redis.client_list_others().len();
    // The readiness probe's own connection may still be closing.
    wait_until("1000 backend connections", Duration::from_secs(5), || (count(&redis) == 1000).then_some(()));
    clients.truncate(400);
    wait_until("400 backend connections", Duration::from_secs(10), || (count(&redis) == 400).then_some(()));
    drop(clients);
    wait_until("no backend connections", Duration::from_secs(10), || (count(&redis) == 0).then_some(()));
}

/// SCRIPT KILL from another client in a non-zero database while a script
/// runs: it must not queue behind the script on a shared link, and must not
/// need a SELECT (refused with BUSY while the script runs).
fn script_kill_reaches_a_busy_script(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut k = proxy.client();
    let mut b = proxy.client();
    for c in [&mut k, &mut b] {
        c.assert_cmd(&["SELECT", "9"], b"+OK\r\n");
    }
    k.assert_cmd(&["CONFIG", "SET", "lua-time-limit", "10"], b"+OK\r\n");
    b.send_cmd(&["EVAL", "while true do end", "0"]);
    let mut direct = redis.client();
    wait_until("the script is busy", Duration::from_secs(5), || {
        direct.cmd(&["PING"]).starts_with(b"-BUSY").then_some(())
    });
    k.assert_cmd(&["SCRIPT", "KILL"], b"+OK\r\n");
    assert_line_prefix(&b.read_frame(), b"-ERR Script killed by user");
    k.assert_cmd(&["PING"], b"+PONG\r\n");
    b.assert_cmd(&["PING"], b"+PONG\r\n");
}

/// QUIT on a dedicated link: Redis has closed that connection by the time
/// the client reads `+OK` (Redis's own tests of `CLIENT TRACKING …
/// REDIRECT` rely on it).
#[test]
fn quit_on_a_dedicated_link_closes_it_before_ok() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &[]);
    for _ in 0..20 {
        let mut b = proxy.client();
        let id = b.cmd(&["CLIENT", "ID"]);
        let id = std::str::from_utf8(&id[1..id.len() - 2]).expect("id").to_string();
        b.assert_cmd(&["QUIT"], b"+OK\r\n");
        let listed = redis.client().cmd(&["CLIENT", "LIST", "ID", &id]);
        assert_bytes(&listed, b"$0\r\n\r\n");
        b.assert_closed();
    }
}
