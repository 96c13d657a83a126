//! A fake Redis for replies a real one never sends (or a backend that stops
//! answering).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// A fake Redis on a loopback port, for replies a real one never sends (or
/// a backend that stops answering). Requests are parsed with respseal's own
/// parser; for each connection `new_conn` makes a handler that gets every
/// request's arguments and returns the reply to write (`None`: write
/// nothing). Returns the port and a count of the connections accepted. It
/// serves at most 100 connections, each read with a 30 s timeout, so it
/// stops by itself.
pub fn fake_redis<F, H>(new_conn: F) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn() -> H + Send + 'static,
    H: FnMut(&[Vec<u8>]) -> Option<Vec<u8>> + Send + 'static,
{
    fake_redis_serving(100, new_conn)
}

/// [`fake_redis`] serving at most `max_conns` connections (a server that
/// respseal keeps reconnecting to, a few times a second, for seconds).
pub fn fake_redis_serving<F, H>(max_conns: usize, new_conn: F) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn() -> H + Send + 'static,
    H: FnMut(&[Vec<u8>]) -> Option<Vec<u8>> + Send + 'static,
{
    use respseal::protocol::request::{self, Limits, Parsed};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        for s in listener.incoming().take(max_conns) {
            let Ok(mut s) = s else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut handle = new_conn();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let limits = Limits { max_bulk: 1 << 20, max_frame: 1 << 20, max_args: 1024, unauthenticated: false };
                let (mut buf, mut ranges) = (Vec::new(), Vec::new());
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Ok(Parsed::Command { len, .. }) = request::parse(&buf, &limits, &mut ranges) {
                        let args: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
                        buf.drain(..len);
                        if let Some(reply) = handle(&args)
                            && s.write_all(&reply).is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, accepted)
}
