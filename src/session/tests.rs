//! The session in-process: a client over an in-memory duplex stream, a
//! Redis stand-in on a loopback port (strings in a map, every request
//! recorded), the configuration built as `respseal serve` builds it. Fast
//! checks of the input and reply paths; the end-to-end tests in `tests/`
//! run the binary against a real redis-server.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::config::{Config, FileConfig, Overrides};
use crate::protocol::request::{self, Parsed};

/// What the stand-in was sent: each request's arguments.
type Sent = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// A Redis stand-in: GET/SET on a map, PING, `+OK` for anything else (the
/// handshake's SELECT, CLIENT …). Returns its port and what it was sent.
async fn stand_in() -> (u16, Sent) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent: Sent = Arc::default();
    let store: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let log = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (log, store) = (Arc::clone(&log), Arc::clone(&store));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let mut ranges = Vec::new();
                    match request::parse(&buf, &request::Limits::NONE, &mut ranges) {
                        Ok(Parsed::Command { len, .. }) => {
                            let args: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
                            buf.drain(..len);
                            let reply = answer(&args, &store);
                            log.lock().expect("log").push(args);
                            if s.write_all(&reply).await.is_err() {
                                return;
                            }
                        }
                        Ok(Parsed::Incomplete { .. }) => match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        },
                        _ => return,
                    }
                }
            });
        }
    });
    (port, sent)
}

fn answer(args: &[Vec<u8>], store: &Mutex<HashMap<Vec<u8>, Vec<u8>>>) -> Vec<u8> {
    let name = args.first().map(|a| a.to_ascii_uppercase()).unwrap_or_default();
    match (&name[..], args.get(1), args.get(2)) {
        (b"PING", _, _) => b"+PONG\r\n".to_vec(),
        (b"SET", Some(k), Some(v)) => {
            store.lock().expect("store").insert(k.clone(), v.clone());
            b"+OK\r\n".to_vec()
        }
        (b"GET", Some(k), _) => match store.lock().expect("store").get(k) {
            Some(v) => {
                let mut out = format!("${}\r\n", v.len()).into_bytes();
                out.extend_from_slice(v);
                out.extend_from_slice(b"\r\n");
                out
            }
            None => b"$-1\r\n".to_vec(),
        },
        _ => b"+OK\r\n".to_vec(),
    }
}

/// A worker's context for `toml` in front of the stand-in on `port`.
fn context(toml: &str, port: u16) -> Arc<Context> {
    let file: FileConfig = toml::from_str(toml).expect("toml");
    let ov = Overrides { backend: Some(format!("redis://127.0.0.1:{port}")), threads: Some(1), ..Default::default() };
    let mut cfg = Config::build(file, &ov).expect("valid configuration");
    let live = Arc::new(Live::new(crate::app::reload::reloadable(&mut cfg)));
    crate::app::serve::contexts(&cfg, &live).remove(0)
}

/// A client connected to a new session of `ctx`.
fn connect(ctx: Arc<Context>) -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (rd, wr) = tokio::io::split(server);
    tokio::spawn(Session::new(ctx, 1, rd, wr).run(Drain::default()));
    client
}

/// Read until `want` bytes have arrived (or the session closed).
async fn read_n(c: &mut DuplexStream, want: usize) -> Vec<u8> {
    let mut out = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match tokio::time::timeout(Duration::from_secs(10), c.read(&mut out[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("no reply within 10 s; got {:?}", String::from_utf8_lossy(&out[..got])),
        }
    }
    out.truncate(got);
    out
}

/// Everything until the session closes the connection.
async fn read_to_end(c: &mut DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .expect("read");
    out
}

#[tokio::test]
async fn requests_split_anywhere_are_answered_in_order() {
    let (port, sent) = stand_in().await;
    let mut c = connect(context("", port));
    // One request cut inside its name, the next in the same write as the
    // rest of the first, a third inline.
    c.write_all(b"*1\r\n$4\r\nPI").await.expect("write");
    tokio::task::yield_now().await;
    c.write_all(b"NG\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n").await.expect("write");
    assert_eq!(read_n(&mut c, 19).await, b"+PONG\r\n$-1\r\n+PONG\r\n");
    let names: Vec<Vec<u8>> = sent.lock().expect("sent").iter().map(|a| a[0].clone()).collect();
    assert_eq!(names.iter().filter(|n| n.as_slice() == b"PING").count(), 2, "{names:?}");
}

#[tokio::test]
async fn malformed_resp_gets_redis_words_then_the_connection_closes() {
    let (port, sent) = stand_in().await;
    let mut c = connect(context("", port));
    c.write_all(b"*1\r\n+PING\r\n").await.expect("write");
    assert_eq!(read_to_end(&mut c).await, b"-ERR Protocol error: expected '$', got '+'\r\n");
    assert!(sent.lock().expect("sent").is_empty(), "nothing reached Redis");
}

#[tokio::test]
async fn sealed_values_reach_redis_only_as_envelopes_and_come_back_opened() {
    let (port, sent) = stand_in().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.key");
    crate::crypto::keyring::generate_key_file(&key).expect("keygen");
    let toml = format!("[[key]]\nfile = {:?}\nstate = \"primary\"\n[[rule]]\npattern = \"sess:*\"\n", key);
    let mut c = connect(context(&toml, port));
    c.write_all(b"*3\r\n$3\r\nSET\r\n$6\r\nsess:a\r\n$6\r\nsecret\r\n*2\r\n$3\r\nGET\r\n$6\r\nsess:a\r\n")
        .await
        .expect("write");
    assert_eq!(read_n(&mut c, 17).await, b"+OK\r\n$6\r\nsecret\r\n");
    let sent = sent.lock().expect("sent");
    let set = sent.iter().find(|a| a[0] == b"SET").expect("SET reached Redis");
    assert!(set[2].starts_with(b"\x00RE") && !set[2].windows(6).any(|w| w == b"secret"), "{set:?}");
}

#[tokio::test]
async fn nothing_reaches_redis_before_auth() {
    let (port, sent) = stand_in().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").expect("password file");
    let toml = format!("[[users]]\nname = \"default\"\npassword_file = {:?}\n", pw);
    let mut c = connect(context(&toml, port));
    c.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nAUTH\r\n$7\r\nhunter2\r\n*1\r\n$4\r\nPING\r\n")
        .await
        .expect("write");
    let want = b"-NOAUTH Authentication required.\r\n+OK\r\n+PONG\r\n";
    assert_eq!(read_n(&mut c, want.len()).await, want);
    let sent = sent.lock().expect("sent");
    assert!(sent.iter().all(|a| a[0] != b"GET" && a[0] != b"AUTH"), "{sent:?}");
}

/// With the clock paused, the idle timeout fires without waiting for it.
#[tokio::test(start_paused = true)]
async fn an_idle_client_is_closed_after_idle_secs() {
    // No backend traffic: the session never needs one.
    let mut c = connect(context("[timeouts]\nidle_secs = 300\n", 9));
    let before = tokio::time::Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(1000), c.read_to_end(&mut out)).await.expect("closed").expect("read");
    assert!(out.is_empty(), "{out:?}");
    let waited = before.elapsed();
    assert!(waited >= Duration::from_secs(300) && waited < Duration::from_secs(302), "{waited:?}");
}
