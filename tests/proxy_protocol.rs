//! The wire protocol through respseal, against a real Redis: byte-exact
//! PING/ECHO, RESP3 types, HELLO switching, pipelining, inline commands,
//! protocol errors and limits, max_clients.

#[macro_use]
mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

both_modes!(
    ping_and_echo_are_byte_exact,
    resp3_reply_shapes,
    hello_switches_protocol,
    resp3_push_messages_with_normal_commands,
    resp3_subscribed_array_reply_is_not_a_message,
    pipelining_100k_commands_in_order,
    inline_commands_like_redis,
    malformed_requests_close_only_that_client,
    hello_3_with_setname,
    resp3_tracking_invalidation_push,
    large_values_round_trip,
    requests_split_into_single_bytes,
    half_closed_client_still_gets_its_replies,
    random_garbage_never_takes_the_proxy_down,
);

fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

fn ping_and_echo_are_byte_exact(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let binary = all_bytes();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();

    let check = |c: &mut Client| {
        c.assert_cmd(&["PING"], b"+PONG\r\n");
        c.assert_cmd(&["ping", "hello world"], b"$11\r\nhello world\r\n");
        c.assert_cmd(&[&b"ECHO"[..], &binary], &bulk(&binary));
        c.assert_cmd(&[&b"ECHO"[..], b""], b"$0\r\n\r\n");
        c.assert_cmd(&[&b"ECHO"[..], b"\r\n$-1\r\n"], b"$7\r\n\r\n$-1\r\n\r\n");
        c.assert_cmd(&[&b"ECHO"[..], &big], &bulk(&big));
        // Wrong arity: Redis's own error.
        c.assert_cmd(&["ECHO"], b"-ERR wrong number of arguments for 'echo' command\r\n");
    };
    check(&mut c);

    // The same after switching to RESP3: PING and ECHO replies do not change.
    c.hello3();
    check(&mut c);
}

fn resp3_reply_shapes(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    c.assert_cmd(&["HSET", "h", "a", "1", "b", "2"], b":2\r\n");
    c.assert_cmd(&["SADD", "s", "x"], b":1\r\n");
    c.assert_cmd(&["ZADD", "z", "1.5", "m"], b":1\r\n");
    // RESP2 shapes first.
    c.assert_cmd(&["HGETALL", "h"], b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");
    c.assert_cmd(&["SMEMBERS", "s"], b"*1\r\n$1\r\nx\r\n");
    c.assert_cmd(&["ZSCORE", "z", "m"], b"$3\r\n1.5\r\n");
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");

    c.hello3();
    c.assert_cmd(&["GET", "missing"], b"_\r\n");
    c.assert_cmd(&["HGET", "h", "missing"], b"_\r\n");
    c.assert_cmd(&["HGETALL", "h"], b"%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n");
    c.assert_cmd(&["SMEMBERS", "s"], b"~1\r\n$1\r\nx\r\n");
    c.assert_cmd(&["ZSCORE", "z", "m"], b",1.5\r\n");
    c.assert_cmd(&["HGETALL", "nothing"], b"%0\r\n");
    c.assert_cmd(&["ZRANGE", "z", "0", "-1", "WITHSCORES"], b"*1\r\n*2\r\n$1\r\nm\r\n,1.5\r\n");
}

fn hello_switches_protocol(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut d = direct(redis.port);
    let mut c = proxy.client();

    // HELLO without arguments: the current protocol (2), and no switch.
    let expected = mask_hello_id(&d.cmd(&["HELLO"]));
    assert!(expected.starts_with(b"*14\r\n"));
    assert_bytes(&mask_hello_id(&c.cmd(&["HELLO"])), &expected);
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");

    // A refused HELLO changes nothing.
    c.assert_cmd(&["HELLO", "4"], b"-NOPROTO unsupported protocol version\r\n");
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");
    c.assert_cmd(&["HELLO", "x"], b"-ERR Protocol version is not an integer or out of range\r\n");
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");

    // HELLO 3 with a command pipelined behind it in the same write: the
    // command's reply is already RESP3.
    let expected3 = mask_hello_id(&d.hello3());
    assert!(expected3.starts_with(b"%7\r\n"));
    let mut both = resp(&["HELLO", "3"]);
    both.extend(resp(&["GET", "missing"]));
    c.send(&both);
    c.proto = Proto::Resp3;
    let hello = c.read_frame();
    assert_bytes(&mask_hello_id(&hello), &expected3);
    assert_bytes(&c.read_frame(), b"_\r\n");

    // Still RESP3 after a refused HELLO and after HELLO without arguments.
    c.assert_cmd(&["HELLO", "4"], b"-NOPROTO unsupported protocol version\r\n");
    c.assert_cmd(&["GET", "missing"], b"_\r\n");
    assert_bytes(&mask_hello_id(&c.cmd(&["HELLO"])), &expected3);
    c.assert_cmd(&["GET", "missing"], b"_\r\n");

    // HELLO 2 switches back.
    let expected2 = mask_hello_id(&d.cmd(&["HELLO", "2"]));
    assert_bytes(&mask_hello_id(&c.cmd(&["HELLO", "2"])), &expected2);
    c.proto = Proto::Resp2;
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");
    c.assert_cmd(&["HGETALL", "missing"], b"*0\r\n");

    // The switch is per client: another client is still RESP2 throughout.
    let mut other = proxy.client();
    other.assert_cmd(&["GET", "missing"], b"$-1\r\n");
}

fn resp3_push_messages_with_normal_commands(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut sub = proxy.client();
    let mut publisher = proxy.client();

    sub.hello3();
    sub.assert_cmd(&["SUBSCRIBE", "ch"], b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");

    // Normal commands keep working while subscribed (RESP3 allows it).
    sub.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    sub.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    sub.assert_cmd(&["PING"], b"+PONG\r\n");

    // A message published before our next command arrives first, as a push.
    publisher.assert_cmd(&["PUBLISH", "ch", "hi"], b":1\r\n");
    sub.send_cmd(&["GET", "k"]);
    assert_bytes(&sub.read_frame(), b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    assert_bytes(&sub.read_frame(), b"$1\r\nv\r\n");

    // Several messages between pipelined commands.
    for i in 0..5 {
        publisher.assert_cmd(&["PUBLISH", "ch", &format!("m{i}")], b":1\r\n");
    }
    sub.send(&[resp(&["INCR", "n"]), resp(&["INCR", "n"])].concat());
    for i in 0..5 {
        let expected = format!(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nm{i}\r\n");
        assert_bytes(&sub.read_frame(), expected.as_bytes());
    }
    assert_bytes(&sub.read_frame(), b":1\r\n");
    assert_bytes(&sub.read_frame(), b":2\r\n");

    sub.assert_cmd(&["UNSUBSCRIBE", "ch"], b">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n");
    publisher.assert_cmd(&["PUBLISH", "ch", "lost"], b":0\r\n");
    sub.assert_cmd(&["GET", "missing"], b"_\r\n");
}

/// In RESP3 messages are push frames (`>`); an ordinary array reply whose
/// first element happens to be "message" is a reply like any other.
fn resp3_subscribed_array_reply_is_not_a_message(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    c.hello3();
    c.assert_cmd(&["RPUSH", "l", "message", "x"], b":2\r\n");
    c.assert_cmd(&["SUBSCRIBE", "ch"], b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    c.assert_cmd(&["LRANGE", "l", "0", "-1"], b"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n");
    // The session must still know that every command was answered: a
    // command that waits for the FIFO to drain (SELECT) must not hang.
    c.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    c.assert_cmd(&["SET", "k", "in-db-1"], b"+OK\r\n");
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    let mut d = direct(redis.port);
    d.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    d.assert_cmd(&["GET", "k"], b"$7\r\nin-db-1\r\n");
}

fn pipelining_100k_commands_in_order(mode: &[&str]) {
    const N: usize = 100_000;
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let mut w = c.writer();
    let writer = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(64 * 1024);
        for i in 0..N {
            if i % 2 == 0 {
                batch.extend(resp(&["ECHO", &format!("e{i}")]));
            } else {
                batch.extend(resp(&["INCR", "ctr"]));
            }
            if batch.len() > 32 * 1024 {
                w.write_all(&batch).expect("writing the pipeline");
                batch.clear();
            }
        }
        w.write_all(&batch).expect("writing the pipeline");
    });
    for i in 0..N {
        let f = c.read_frame();
        let expected =
            if i % 2 == 0 { bulk(format!("e{i}").as_bytes()) } else { format!(":{}\r\n", i / 2 + 1).into_bytes() };
        if f != expected {
            panic!("reply {i}: got {}, expected {}", show(&f), show(&expected));
        }
    }
    writer.join().expect("writer thread");
    c.assert_silent(Duration::from_millis(100));
    direct(redis.port).assert_cmd(&["GET", "ctr"], b"$5\r\n50000\r\n");
}

fn inline_commands_like_redis(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let line = |c: &mut Client, text: &[u8], expected: &[u8]| {
        c.send(text);
        assert_bytes(&c.read_frame(), expected);
    };
    line(&mut c, b"PING\r\n", b"+PONG\r\n");
    line(&mut c, b"PING\n", b"+PONG\r\n");
    line(&mut c, b"SET a b\r\n", b"+OK\r\n");
    line(&mut c, b"GET a\r\n", b"$1\r\nb\r\n");
    line(&mut c, b"SET \"q k\" 'it\\'s a \"v\"'\r\n", b"+OK\r\n");
    c.assert_cmd(&["GET", "q k"], b"$10\r\nit's a \"v\"\r\n");
    line(&mut c, b"ECHO \"a\\x41\\n\"\r\n", b"$3\r\naA\n\r\n");
    // Empty lines are ignored; inline and RESP mixed in one write.
    line(&mut c, b"\r\n\r\n  \r\nPING\r\n", b"+PONG\r\n");
    c.send(b"*1\r\n$4\r\nPING\r\nECHO x\r\n*2\r\n$4\r\nECHO\r\n$1\r\nz\r\nGET a\r\n");
    for expected in [&b"+PONG\r\n"[..], b"$1\r\nx\r\n", b"$1\r\nz\r\n", b"$1\r\nb\r\n"] {
        assert_bytes(&c.read_frame(), expected);
    }
    // Empty multibulks are consumed silently, like Redis.
    c.send(b"PING\r\n*0\r\n*-1\r\nPING\r\n");
    assert_bytes(&c.read_frame(), b"+PONG\r\n");
    assert_bytes(&c.read_frame(), b"+PONG\r\n");
    c.assert_silent(Duration::from_millis(50));
    line(&mut c, b"NOSUCHCMD x\r\n", b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' \r\n");
    // Unbalanced quotes: protocol error and the connection is closed, as
    // Redis does; Redis answers the same.
    for port in [redis.port, proxy.port] {
        let mut bad = Client::connect(port);
        bad.send(b"SET \"unbalanced x\r\n");
        assert_bytes(&bad.read_frame(), b"-ERR Protocol error: unbalanced quotes in request\r\n");
        bad.assert_closed();
    }
    c.assert_cmd(&["PING"], b"+PONG\r\n");
}

fn malformed_requests_close_only_that_client(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut good = proxy.client();
    good.assert_cmd(&["SET", "g", "1"], b"+OK\r\n");
    let long_inline = [b'A'; 70_000];
    let long_count = [&b"*"[..], &[b'1'; 70_000]].concat();
    let cases: [(&[u8], &[u8]); 7] = [
        (&long_inline, b"-ERR Protocol error: too big inline request\r\n"),
        (&long_count, b"-ERR Protocol error: too big mbulk count string\r\n"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", b"-ERR Protocol error: expected '$', got 'f'\r\n"),
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*20000000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    ];
    for (request, error) in cases {
        // Commands before the bad one in the same write are answered first.
        let mut data = resp(&["INCR", "before"]);
        data.extend_from_slice(request);
        for port in [redis.port, proxy.port] {
            let mut bad = Client::connect(port);
            bad.send(&data);
            let frames = bad.read_until_closed(IO_TIMEOUT).unwrap_or_else(|e| {
                panic!("{} on port {port}: not closed: {e:?}", show(&request[..request.len().min(40)]))
            });
            assert_eq!(frames.len(), 2, "{}: {:?}", show(request), frames.iter().map(|f| show(f)).collect::<Vec<_>>());
            assert!(frames[0].starts_with(b":"), "{}", show(&frames[0]));
            assert_bytes(&frames[1], error);
        }
        // The other client is unaffected.
        good.assert_cmd(&["INCR", "g"], b":2\r\n");
        good.assert_cmd(&["DECR", "g"], b":1\r\n");
    }
    // The SET with the bad payload was never executed.
    direct(redis.port).assert_cmd(&["EXISTS", "x"], b":0\r\n");
}

/// `HELLO 3 SETNAME x` (what Lettuce and node-redis send when a client
/// name is configured) switches the protocol like `HELLO 3` does.
fn hello_3_with_setname(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut d = direct(redis.port);
    d.send_cmd(&["HELLO", "3", "SETNAME", "app"]);
    d.proto = Proto::Resp3;
    let expected = mask_hello_id(&d.read_frame());
    let mut c = proxy.client();
    c.send_cmd(&["HELLO", "3", "SETNAME", "app"]);
    c.proto = Proto::Resp3;
    match c.try_read_frame(IO_TIMEOUT) {
        Ok(f) => assert_bytes(&mask_hello_id(&f), &expected),
        Err(e) => panic!("HELLO 3 SETNAME app: no reply ({e:?})"),
    }
    c.assert_cmd(&["GET", "missing"], b"_\r\n");
    c.assert_cmd(&["CLIENT", "GETNAME"], b"$3\r\napp\r\n");
    c.assert_cmd(&["HSET", "h", "f", "v"], b":1\r\n");
    c.assert_cmd(&["HGETALL", "h"], b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    let hello2 = c.cmd(&["HELLO", "2"]);
    assert!(hello2.starts_with(b"*14\r\n"), "{}", show(&hello2));
    c.proto = Proto::Resp2;
    c.assert_cmd(&["GET", "missing"], b"$-1\r\n");
    // And in RESP2 with SETNAME: stays RESP2.
    let mut c2 = proxy.client();
    let hello = c2.cmd(&["HELLO", "2", "SETNAME", "two"]);
    assert!(hello.starts_with(b"*14\r\n"), "{}", show(&hello));
    c2.assert_cmd(&["GET", "missing"], b"$-1\r\n");
    c2.assert_cmd(&["CLIENT", "GETNAME"], b"$3\r\ntwo\r\n");
}

/// Client-side caching: invalidation messages are RESP3 pushes, not
/// replies; the replies around them stay matched to their commands.
fn resp3_tracking_invalidation_push(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let mut other = proxy.client();
    c.hello3();
    c.assert_cmd(&["CLIENT", "TRACKING", "ON"], b"+OK\r\n");
    c.assert_cmd(&["SET", "k", "v"], b"+OK\r\n");
    c.assert_cmd(&["GET", "k"], b"$1\r\nv\r\n");
    other.assert_cmd(&["SET", "k", "w"], b"+OK\r\n");
    c.send_cmd(&["GET", "k"]);
    assert_bytes(&c.read_frame(), b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
    assert_bytes(&c.read_frame(), b"$1\r\nw\r\n");
    c.assert_cmd(&["PING"], b"+PONG\r\n");
    c.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    c.assert_cmd(&["GET", "k"], b"_\r\n");
}

fn large_values_round_trip(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let mut other = proxy.client();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    // The request arrives in pieces.
    let req = resp(&[&b"SET"[..], b"big", &big]);
    for piece in req.chunks(700_000) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_bytes(&c.read_frame(), b"+OK\r\n");
    // Many large replies pipelined, interleaved with small ones, while
    // another client uses the same link.
    let mut data = Vec::new();
    for i in 0..10 {
        data.extend(resp(&["GET", "big"]));
        data.extend(resp(&["ECHO", &i.to_string()]));
    }
    c.send(&data);
    for i in 0..10 {
        other.assert_cmd(&["ECHO", "small"], b"$5\r\nsmall\r\n");
        let f = c.read_frame();
        assert!(f == bulk(&big), "GET big #{i}: {} bytes, starts {}", f.len(), show(&f[..f.len().min(20)]));
        assert_bytes(&c.read_frame(), &bulk(i.to_string().as_bytes()));
    }
    c.assert_cmd(&["STRLEN", "big"], b":3000000\r\n");
}

fn requests_split_into_single_bytes(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut c = proxy.client();
    let mut data = resp(&["SET", "k", "hello"]);
    data.extend(resp(&["ECHO", "x\r\ny"]));
    data.extend_from_slice(b"GET k\r\n");
    data.extend(resp(&["MULTI"]));
    data.extend(resp(&["INCR", "n"]));
    data.extend(resp(&["EXEC"]));
    data.extend(resp(&["SELECT", "2"]));
    data.extend(resp(&["GET", "k"]));
    for b in &data {
        c.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_micros(200));
    }
    for expected in [
        &b"+OK\r\n"[..],
        b"$4\r\nx\r\ny\r\n",
        b"$5\r\nhello\r\n",
        b"+OK\r\n",
        b"+QUEUED\r\n",
        b"*1\r\n:1\r\n",
        b"+OK\r\n",
        b"$-1\r\n",
    ] {
        assert_bytes(&c.read_frame(), expected);
    }
}

/// `printf 'SET a b\r\nGET a\r\n' | nc -N host port`: the client sends its
/// commands and shuts down its sending side. Redis answers everything it
/// read before the end of input, then closes; so must the proxy.
fn half_closed_client_still_gets_its_replies(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    // DEBUG SLEEP makes sure the end of input reaches the proxy before
    // Redis's replies do (without it the outcome depends on timing).
    let data = b"SET a b\r\nDEBUG SLEEP 0.2\r\nGET a\r\n*2\r\n$4\r\nECHO\r\n$3\r\nxyz\r\nINCR n\r\n";
    let expected = ["+OK\\r\\n", "+OK\\r\\n", "$1\\r\\nb\\r\\n", "$3\\r\\nxyz\\r\\n", ":1\\r\\n"];
    for port in [redis.port, proxy.port] {
        let mut c = Client::connect(port);
        c.send(data);
        c.shutdown_write();
        let frames = c.read_until_closed(IO_TIMEOUT).unwrap_or_else(|e| panic!("port {port}: {e:?}"));
        let frames: Vec<String> = frames.iter().map(|f| show(f)).collect();
        assert_eq!(frames, expected, "port {port} (Redis is {})", redis.port);
        direct(redis.port).assert_cmd(&["DEL", "n"], b":1\r\n");
    }
}

// ----- limits ------------------------------------------------------------------

const TINY_LIMITS: &str = "[limits]\nmax_bulk_bytes = 1024\nmax_args = 8\nmax_frame_bytes = 4096\n";

#[test]
fn frame_limits_are_enforced_from_the_header() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with_config(redis.port, TINY_LIMITS, &[]);
    let mut good = proxy.client();

    // At the limits: accepted.
    let max = vec![b'x'; 1024];
    good.assert_cmd(&[&b"ECHO"[..], &max], &bulk(&max));
    good.assert_cmd(&["RPUSH", "l", "1", "2", "3", "4", "5", "6"], b":6\r\n");

    // One byte over max_bulk_bytes: refused from the header alone (the
    // payload is never sent), and the connection closed.
    let mut c = proxy.client();
    c.send(b"*2\r\n$4\r\nECHO\r\n$1025\r\n");
    assert_bytes(&c.read_frame(), b"-ERR Protocol error: invalid bulk length\r\n");
    c.assert_closed();

    // A huge bulk: same, no waiting for 1 GB to arrive.
    let mut c = proxy.client();
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000000\r\n");
    assert_bytes(&c.read_frame(), b"-ERR Protocol error: invalid bulk length\r\n");
    c.assert_closed();

    // More arguments than max_args: refused from the array header.
    let mut c = proxy.client();
    c.send(b"*9\r\n");
    assert_bytes(&c.read_frame(), b"-ERR Protocol error: invalid multibulk length\r\n");
    c.assert_closed();

    // Every bulk within max_bulk_bytes but the frame over max_frame_bytes:
    // refused at the header of the bulk that crosses it.
    let mut c = proxy.client();
    let chunk = vec![b'y'; 1024];
    let mut data = b"*6\r\n$5\r\nRPUSH\r\n$1\r\nm\r\n".to_vec();
    for _ in 0..3 {
        data.extend(bulk(&chunk));
    }
    data.extend_from_slice(b"$1024\r\n");
    c.send(&data);
    assert_bytes(&c.read_frame(), b"-ERR Protocol error: request larger than the proxy's max_frame_bytes\r\n");
    c.assert_closed();

    good.assert_cmd(&["LLEN", "l"], b":6\r\n");
    good.assert_cmd(&["EXISTS", "k", "m"], b":0\r\n");
}

#[test]
fn small_max_inflight_applies_backpressure_without_losing_replies() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with_config(redis.port, "[limits]\nmax_inflight = 3\n", &[]);
    for mode_client in 0..2 {
        let mut c = proxy.client();
        if mode_client == 1 {
            c.assert_cmd(&["CLIENT", "SETNAME", "pinned"], b"+OK\r\n");
        }
        let mut data = Vec::new();
        for i in 0..20_000 {
            data.extend(resp(&["ECHO", &i.to_string()]));
            if i % 1000 == 0 {
                data.extend(resp(&["SELECT", &((i / 1000) % 4).to_string()]));
            }
        }
        let mut w = c.writer();
        let writer = std::thread::spawn(move || w.write_all(&data).expect("writing the pipeline"));
        for i in 0..20_000 {
            assert_bytes(&c.read_frame(), &bulk(i.to_string().as_bytes()));
            if i % 1000 == 0 {
                assert_bytes(&c.read_frame(), b"+OK\r\n");
            }
        }
        writer.join().expect("writer");
    }
}

#[test]
fn max_clients_is_enforced() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &["--max-clients", "3"]);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..3 {
        // The readiness probe's slot is released right after it disconnects.
        let c = wait_until("a free client slot", Duration::from_secs(5), || {
            let mut c = proxy.client();
            c.send(&resp(&["ECHO", &format!("c{i}")]));
            match c.try_read_frame(IO_TIMEOUT) {
                Ok(f) if f == bulk(format!("c{i}").as_bytes()) => Some(c),
                Ok(f) if f == b"-ERR max number of clients reached\r\n" => None,
                other => panic!("client {i}: {other:?}"),
            }
        });
        clients.push(c);
    }
    for _ in 0..2 {
        let mut extra = proxy.client();
        assert_bytes(&extra.read_frame(), b"-ERR max number of clients reached\r\n");
        extra.assert_closed();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.assert_cmd(&["ECHO", &format!("still {i}")], &bulk(format!("still {i}").as_bytes()));
    }
    // A slot freed is available again.
    let mut gone = clients.pop().expect("three clients");
    gone.assert_cmd(&["QUIT"], b"+OK\r\n");
    gone.assert_closed();
    let mut again = wait_until("the freed slot", Duration::from_secs(5), || {
        let mut c = proxy.client();
        c.send(b"PING\r\n");
        match c.try_read_frame(IO_TIMEOUT) {
            Ok(f) if f == b"+PONG\r\n" => Some(c),
            _ => None,
        }
    });
    again.assert_cmd(&["GET", "missing"], b"$-1\r\n");
}

/// Bursts of pseudo-random bytes (RESP-looking and not) from many clients:
/// each gets answers or a protocol error and is closed; the proxy stays up,
/// and a well-behaved client on it keeps working throughout.
fn random_garbage_never_takes_the_proxy_down(mode: &[&str]) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, mode);
    let mut good = proxy.client();
    let alphabet = b"*$+-:_%>|\r\n0123456789-PINGSETGETHELLO3 \"'\x00\xff";
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut answered = 0;
    for round in 0..200 {
        let mut junk = Vec::new();
        for _ in 0..(x % 300) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let mut c = proxy.client();
        c.send(&junk);
        c.shutdown_write();
        // Whatever comes back, the connection ends: replies then close, or
        // a protocol error then close. It never hangs, and never ends in
        // the middle of a frame.
        let outcome = match c.read_until_closed(Duration::from_secs(10)) {
            // Junk can spell HELLO 3: from there on the replies are RESP3,
            // and must be whole RESP3 frames up to the close.
            Err(ReadError::Invalid(..)) => {
                c.proto = Proto::Resp3;
                c.read_until_closed(Duration::from_secs(10))
            }
            other => other,
        };
        match outcome {
            Ok(_) => answered += 1,
            Err(ReadError::Invalid(why, b)) => {
                panic!("round {round}: not a RESP2 or RESP3 frame ({why}): {}", show(&b))
            }
            Err(ReadError::Timeout(b)) => {
                panic!("round {round}: connection neither answered nor closed ({})", show(&b))
            }
            Err(ReadError::Closed(b)) => panic!("round {round}: closed in the middle of a frame ({})", show(&b)),
            Err(ReadError::Io(e)) => panic!("round {round}: {e}"),
        }
        if round % 20 == 0 {
            good.assert_cmd(&["ECHO", "still here"], b"$10\r\nstill here\r\n");
        }
    }
    assert_eq!(answered, 200);
    good.assert_cmd(&["PING"], b"+PONG\r\n");
    proxy.client().assert_cmd(&["SET", "after", "junk"], b"+OK\r\n");
}
