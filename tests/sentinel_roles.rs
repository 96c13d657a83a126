//! Behind Sentinel, a server is used only if the first element of its `ROLE`
//! reply is exactly `master`: a replica whose master is called
//! `master-0.redis` (a common host name under Kubernetes and compose), named
//! by a sentinel that watches a service called `master`, gets no write.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

#[test]
fn a_replica_of_a_host_called_master_is_not_taken_for_the_master() {
    let writes = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&writes);
    // The replica the sentinel names (respseal's links try it again every
    // 100 ms while they wait for a master: up to 1000 connections).
    let (replica, _) = fake_redis_serving(1000, move || {
        let w = Arc::clone(&w);
        move |args: &[Vec<u8>]| {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            Some(match name.as_str() {
                "ROLE" => {
                    b"*5\r\n$5\r\nslave\r\n$14\r\nmaster-0.redis\r\n:6379\r\n$9\r\nconnected\r\n:3167\r\n".to_vec()
                }
                "PING" => b"+PONG\r\n".to_vec(),
                "CONFIG" => b"*0\r\n".to_vec(),
                "SET" => {
                    w.fetch_add(1, Ordering::SeqCst);
                    b"-READONLY You can't write against a read only replica.\r\n".to_vec()
                }
                _ => b"$-1\r\n".to_vec(),
            })
        }
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    // A sentinel watching a service called "master".
    let (sentinel, _) = fake_redis(move || {
        let s = Arc::clone(&s);
        move |args: &[Vec<u8>]| {
            let words: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).to_ascii_uppercase()).collect();
            s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(words.join(" "));
            Some(match words[0].as_str() {
                "SENTINEL" if words.get(1).is_some_and(|w| w == "GET-MASTER-ADDR-BY-NAME") => {
                    let port = replica.to_string();
                    format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len()).into_bytes()
                }
                "SUBSCRIBE" => b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n".to_vec(),
                "ROLE" => b"*2\r\n$8\r\nsentinel\r\n*1\r\n$6\r\nmaster\r\n".to_vec(),
                "CLIENT" if words.get(1).is_some_and(|w| w == "ID") => b":3\r\n".to_vec(),
                "INFO" => {
                    let text = "# Server\r\nredis_mode:sentinel\r\n";
                    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
                }
                "PING" => b"+PONG\r\n".to_vec(),
                _ => b"+OK\r\n".to_vec(),
            })
        }
    });
    let port = free_port();
    let _proxy = Reaped(
        respseal_command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--backend", &format!("redis-sentinel://127.0.0.1:{sentinel}/master")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("respseal"),
    );
    let mut c = wait_until("respseal listening", START_TIMEOUT, || Client::try_connect(port).ok());
    // The sentinel has been asked (respseal knows what it names) …
    wait_until("the sentinel asked for the master", Duration::from_secs(20), || {
        let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter().any(|w| w.starts_with("SENTINEL GET-MASTER-ADDR-BY-NAME")).then_some(())
    });
    // … and a write never reaches the replica it names.
    // (New commands wait up to 10 s for a master, as a Sentinel client
    // queues them, then fail.)
    c.send_cmd(&["SET", "k", "v"]);
    let reply = c.try_read_frame(Duration::from_secs(30)).expect("a reply");
    assert!(
        contains(&reply, b"not a master"),
        "SET: {} (sentinel saw {:?})",
        show(&reply),
        seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    );
    assert_eq!(writes.load(Ordering::SeqCst), 0, "a write reached the replica");
}
