//! What a cluster's topology answers can make respseal do (issue: topology
//! answers): a node that redirects to addresses the slot map does not name
//! gets no connection from respseal there (nor its password), and the links
//! to a node that left the slot map end after a grace period.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A listener that counts the connections it accepted, and answers nothing.
struct Counting {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Counting {
    fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for s in listener.incoming().take(200) {
                let Ok(mut s) = s else { return };
                a.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut b = [0u8; 1024];
                    while matches!(s.read(&mut b), Ok(n) if n > 0) {}
                });
            }
        });
        Counting { port, accepted }
    }
}

fn bulk_str(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// A fake cluster node at `me`: its slot map is `ranges()` (start, end,
/// port on 127.0.0.1); data commands get what `data(args)` says.
/// `open_data` counts its connections that carried a data command and are
/// still open.
fn fake_node(
    ranges: impl Fn() -> Vec<(u16, u16, u16)> + Send + Sync + 'static,
    data: impl Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync + 'static,
    seen: Arc<Mutex<Vec<String>>>,
    open_data: Arc<AtomicUsize>,
) -> (u16, Arc<AtomicUsize>) {
    let ranges = Arc::new(ranges);
    let data = Arc::new(data);
    fake_redis(move || {
        let (ranges, data, seen) = (Arc::clone(&ranges), Arc::clone(&data), Arc::clone(&seen));
        let mut guard = OpenGuard { counted: false, open: Arc::clone(&open_data) };
        move |args: &[Vec<u8>]| {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let sub = args.get(1).map(|a| String::from_utf8_lossy(a).to_ascii_uppercase()).unwrap_or_default();
            seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{name} {sub}"));
            Some(match (name.as_str(), sub.as_str()) {
                ("CLUSTER", "SLOTS") => {
                    let r = ranges();
                    let mut out = format!("*{}\r\n", r.len());
                    for (start, end, p) in r {
                        out += &format!(
                            "*3\r\n:{start}\r\n:{end}\r\n*3\r\n{}:{p}\r\n{}",
                            bulk_str("127.0.0.1"),
                            bulk_str(&format!("{p:040}"))
                        );
                    }
                    out.into_bytes()
                }
                ("CLUSTER", "NODES") => {
                    let text: String = ranges()
                        .iter()
                        .map(|(s, e, p)| format!("{p:040} 127.0.0.1:{p}@1{p} master - 0 0 1 connected {s}-{e}\n"))
                        .collect();
                    bulk_str(&text).into_bytes()
                }
                ("CLUSTER", "INFO") => bulk_str("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n").into_bytes(),
                ("INFO", _) => bulk_str("# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n").into_bytes(),
                ("CLIENT", "ID") => b":7\r\n".to_vec(),
                ("CONFIG", _) => b"*0\r\n".to_vec(),
                ("PING", _) => b"+PONG\r\n".to_vec(),
                ("CLIENT" | "READONLY" | "READWRITE" | "SELECT" | "AUTH", _) => b"+OK\r\n".to_vec(),
                _ => {
                    if !guard.counted {
                        guard.counted = true;
                        guard.open.fetch_add(1, Ordering::SeqCst);
                    }
                    return data(args);
                }
            })
        }
    })
}

/// Counts a connection that carried data as open until its handler is
/// dropped (the connection closed).
struct OpenGuard {
    counted: bool,
    open: Arc<AtomicUsize>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.counted {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn redirects_to_addresses_the_slot_map_does_not_name_are_not_followed() {
    let targets: Vec<Counting> = (0..5).map(|_| Counting::start()).collect();
    let target_ports: Vec<u16> = targets.iter().map(|t| t.port).collect();
    let me = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let m = Arc::clone(&me);
    let (port, _) = fake_node(
        move || vec![(0, 16383, m.load(Ordering::SeqCst) as u16)],
        move |_| {
            let p = target_ports[next.fetch_add(1, Ordering::SeqCst) % target_ports.len()];
            Some(format!("-MOVED 1 127.0.0.1:{p}\r\n").into_bytes())
        },
        Arc::clone(&seen),
        Arc::default(),
    );
    me.store(port as usize, Ordering::SeqCst);
    let proxy = Proxy::launch(Launch {
        backend: Some(format!("redis-cluster://:sekrit@127.0.0.1:{port}")),
        ..Default::default()
    });
    let mut c = proxy.client();
    for i in 0..10 {
        let reply = c.cmd(&["GET", &format!("k{i}")]);
        assert!(
            contains(&reply, b"not in the slot map"),
            "GET through a node that redirects elsewhere: {} (node saw {:?})",
            show(&reply),
            seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        );
    }
    let reply = c.cmd(&["SET", "k", "v"]);
    assert!(contains(&reply, b"not in the slot map"), "{}", show(&reply));
    for t in &targets {
        assert_eq!(t.accepted.load(Ordering::SeqCst), 0, "respseal connected to a redirect target");
    }
}

#[test]
fn links_to_a_node_that_left_the_slot_map_end() {
    let left = Arc::new(AtomicBool::new(false));
    let (me, b_me) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // The map both nodes answer: A and B, then A alone.
    let map = {
        let (l, m, bm) = (Arc::clone(&left), Arc::clone(&me), Arc::clone(&b_me));
        move || {
            let (a, b) = (m.load(Ordering::SeqCst) as u16, bm.load(Ordering::SeqCst) as u16);
            if l.load(Ordering::SeqCst) { vec![(0, 16383, a)] } else { vec![(0, 8191, a), (8192, 16383, b)] }
        }
    };
    let b_open = Arc::new(AtomicUsize::new(0));
    // B never answers a data command.
    let (b_port, b_accepted) = fake_node(map.clone(), |_| None, Arc::new(Mutex::new(Vec::new())), Arc::clone(&b_open));
    b_me.store(b_port as usize, Ordering::SeqCst);
    let (a_port, _) = fake_node(map, |_| Some(b"$-1\r\n".to_vec()), Arc::new(Mutex::new(Vec::new())), Arc::default());
    me.store(a_port as usize, Ordering::SeqCst);
    let proxy =
        Proxy::launch(Launch { backend: Some(format!("redis-cluster://127.0.0.1:{a_port}")), ..Default::default() });
    // "foo" hashes to slot 12182 (B's), "a" to 15495 (B's): respseal links
    // to B; B answers nothing, so the GET waits (and is answered with an
    // error when B's links end).
    let mut c = proxy.client();
    wait_until("the slot map known", Duration::from_secs(20), || (c.cmd(&["GET", "b"]) == b"$-1\r\n").then_some(()));
    c.send_cmd(&["GET", "foo"]);
    wait_until("respseal linked to B", Duration::from_secs(20), || (b_open.load(Ordering::SeqCst) > 0).then_some(()));
    left.store(true, Ordering::SeqCst);
    let started = Instant::now();
    wait_until("B's links closed", Duration::from_secs(30), || (b_open.load(Ordering::SeqCst) == 0).then_some(()));
    let took = started.elapsed();
    let reply = c.read_frame();
    assert!(reply.starts_with(b"-"), "{}", show(&reply));
    // Closed, and not opened again (the old links reconnected every 2 s):
    // nothing connects to B any more.
    let accepted = b_accepted.load(Ordering::SeqCst);
    let quiet_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet_until {
        assert_eq!(b_accepted.load(Ordering::SeqCst), accepted, "a connection to B after it left");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(took >= Duration::from_secs(4), "closed after {took:?}, before the grace period");
    // The rest of the cluster keeps working: "b" is slot 3300, A's.
    assert_bytes(&c.cmd(&["GET", "b"]), b"$-1\r\n");
}
