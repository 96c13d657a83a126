//! Every byte respseal holds for a client is bounded and charged to that
//! client: slow readers on a shared link and unauthenticated floods run
//! together, respseal's peak RSS stays under a stated bound, the slow
//! readers (only) are disconnected at `limits.output_shared`, and
//! authenticated clients keep working throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Peak RSS allowed: three slow readers at the 64 MiB `shared` limit (plus
/// the 4 MiB reply that crosses it), 41 unauthenticated clients at Redis's
/// pre-auth limits, and the process itself. Before the limit, one slow
/// reader alone grew respseal by 400-900 MiB.
const PEAK_RSS_BOUND: usize = 320 << 20;

#[test]
fn slow_readers_and_unauthenticated_floods_stay_bounded() {
    let redis = RedisServer::start();
    let big = "x".repeat(4 << 20);
    redis.client().assert_cmd(&["SET", "big", &big], b"+OK\r\n");
    let admin = free_port();
    let config = "[[users]]\nname = \"default\"\npassword_env = \"RESPSEAL_TEST_PW\"\n";
    let env = [("RESPSEAL_TEST_PW", "pw".to_string())];
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::launch(Launch {
        backend: Some(redis.url()),
        config: Some(config),
        env: &env,
        args: &["--admin-listen", &admin_addr],
        ..Default::default()
    });
    let (_, rss_at_start) = memory(proxy.pid());

    // Authenticated clients writing and reading 64 KiB sessions all along.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, ok, port) = (stop.clone(), ok.clone(), proxy.port);
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                c.assert_cmd(&["AUTH", "pw"], b"+OK\r\n");
                let value = format!("{w}").repeat(64 * 1024);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("work:{w}:{}", n % 8);
                    c.assert_cmd(&["SET", &key, &value], b"+OK\r\n");
                    assert_eq!(bulk_text(&c.cmd(&["GET", &key])), value);
                    ok.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();

    // Three clients that pipeline 150 GETs of a 4 MiB value and never read.
    let mut slow: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
            let mut req = resp(&["AUTH", "pw"]);
            for _ in 0..150 {
                req.extend(resp(&["GET", "big"]));
            }
            s.write_all(&req).expect("write");
            s
        })
        .collect();
    // 41 that never authenticate: each announces a 16 KiB bulk (Redis's
    // pre-auth maximum) and sends part of it; one more announces more and
    // is closed at once.
    let mut unauth: Vec<TcpStream> = (0..41)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
            let mut req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16384\r\n".to_vec();
            req.extend(vec![b'z'; 12 * 1024]);
            s.write_all(&req).expect("write");
            s
        })
        .collect();
    let mut over = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
    over.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n").expect("write");
    over.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut reply = Vec::new();
    let _ = over.read_to_end(&mut reply);
    assert_bytes(&reply, b"-ERR Protocol error: unauthenticated bulk length\r\n");

    // The three slow readers are disconnected at their limit.
    let series = "respseal_output_limit_disconnects_total{class=\"shared\"}";
    wait_until("the slow readers disconnected", Duration::from_secs(30), || {
        let (_, body) = http_get(admin, "/metrics").ok()?;
        (metric(&body, series) >= 3.0).then_some(())
    });
    let served_before = ok.load(Ordering::Relaxed);
    wait_until("authenticated clients still served", Duration::from_secs(10), || {
        (ok.load(Ordering::Relaxed) > served_before + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("an authenticated client failed");
    }
    let (peak, _) = memory(proxy.pid());
    println!(
        "respseal RSS: {} MiB at start, peak {} MiB (bound {} MiB); {} authenticated round trips",
        rss_at_start >> 20,
        peak >> 20,
        PEAK_RSS_BOUND >> 20,
        ok.load(Ordering::Relaxed)
    );
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB over the bound of {} MiB", peak >> 20, PEAK_RSS_BOUND >> 20);
    // The unauthenticated clients are still connected, waiting like Redis
    // would; a slow reader's socket ends after what was written to it.
    let t = Instant::now();
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut sink = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    assert!(t.elapsed() < Duration::from_secs(30));
    for s in &mut unauth {
        s.write_all(b"zz").expect("an unauthenticated client within the limits is not closed");
    }
    proxy.client().assert_cmd(&["AUTH", "pw"], b"+OK\r\n");
}

/// Argument bookkeeping is charged to the input budget: a request of many
/// empty arguments holds 16 bytes of ranges per 6 bytes of input, so with
/// a 4 MiB budget 300,000 of them (1.8 MB of input, 4.8 MB of ranges) are
/// refused, while the same request with 50,000 passes.
#[test]
fn argument_bookkeeping_is_charged_to_the_budget() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with_config(redis.port, "[limits]\nmax_buffered_bytes = 4194304\n", &[]);
    let del = |n: usize| {
        let mut req = format!("*{}\r\n$3\r\nDEL\r\n", n + 1).into_bytes();
        for _ in 0..n {
            req.extend_from_slice(b"$0\r\n\r\n");
        }
        req
    };
    let mut ok = proxy.client();
    ok.send(&del(50_000));
    assert_bytes(&ok.read_frame(), b":0\r\n");
    let mut big = proxy.client();
    big.send_until_refused(&del(300_000));
    let replies = big.read_until_closed(Duration::from_secs(20)).expect("closed");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_line_prefix(&replies[0], b"-ERR respseal: request refused: the proxy's input buffers are full");
    ok.assert_cmd(&["PING"], b"+PONG\r\n");
}
