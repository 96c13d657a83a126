//! Test harness for the integration tests, in the style of redis-rs's
//! `redis-test`:
//!
//! * [`RedisServer`]: a throw-away `redis-server` on a free port, in its own
//!   temporary directory, killed and reaped on drop; it can be killed and
//!   restarted on the same port to simulate a backend failure.
//! * [`Proxy`]: the `respseal` binary built by cargo, on a free port, in
//!   front of a given backend; killed and reaped on drop; SIGTERM on demand.
//! * [`Client`]: a raw RESP client over `std::net::TcpStream` that sends
//!   bytes and reads complete reply frames (boundaries found with
//!   `respseal::protocol::reply::frame_len`), so tests assert exact bytes.
//!
//! Every wait has a deadline: readiness is polled, sockets have read
//! timeouts, child processes are waited for with a bound. No test can hang.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use respseal::protocol::Proto;
use respseal::protocol::reply::frame_len;

/// Read timeout of every test socket: far longer than any expected reply,
/// short enough that a hang fails the test instead of blocking the run.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for a redis-server or proxy to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Both link modes: the default (shared links) and `--dedicated`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn shared() {
                    super::$name(&[]);
                }
                #[test]
                fn dedicated() {
                    super::$name(&["--dedicated"]);
                }
            }
        )*
    };
}

// ----- small helpers ---------------------------------------------------------

/// A port nobody listens on right now, from below the kernel's ephemeral
/// range (`ip_local_port_range`): the kernel never hands such a port to an
/// outgoing connection, so between this check and the server binding it
/// only another test could take it, and ports are handed out in turn across
/// this process's threads (each test binary starts at its own offset).
/// Callers still retry on a failed start.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (base, span) = (10_000u32, low_ephemeral.saturating_sub(10_000).max(1000));
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = base + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {low_ephemeral}");
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`
/// (from /proc/net/tcp and the process's file descriptors): a server found
/// on a port is the one the test started, not a leftover.
pub fn pid_listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let want = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| f[9].to_string())
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).filter_map(|e| std::fs::read_link(e.path()).ok()).any(|target| {
        let t = target.to_string_lossy();
        inodes.iter().any(|i| t == format!("socket:[{i}]"))
    })
}

/// Printable form of RESP bytes for assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Assert two byte strings are equal, showing both escaped on failure.
#[track_caller]
pub fn assert_bytes(actual: &[u8], expected: &[u8]) {
    if actual != expected {
        panic!("reply mismatch\n  actual:   {}\n  expected: {}", show(actual), show(expected));
    }
}

/// Assert `actual` starts with `prefix` and is one `\r\n`-terminated line.
#[track_caller]
pub fn assert_line_prefix(actual: &[u8], prefix: &[u8]) {
    let ok = actual.starts_with(prefix) && actual.ends_with(b"\r\n") && !actual[..actual.len() - 2].contains(&b'\r');
    if !ok {
        panic!("reply mismatch\n  actual: {}\n  expected one line starting with: {}", show(actual), show(prefix));
    }
}

/// Poll `f` every 20 ms until it returns `Some`, or panic after `timeout`.
#[track_caller]
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// RESP encoding of a command (array of bulk strings).
pub fn resp<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    respseal::protocol::encode::command(args).to_vec()
}

/// A bulk string reply.
pub fn bulk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// The HELLO reply with the connection id replaced by `:ID`, so a reply
/// through the proxy can be compared with one from Redis directly.
pub fn mask_hello_id(reply: &[u8]) -> Vec<u8> {
    let marker = b"$2\r\nid\r\n:";
    let Some(at) = reply.windows(marker.len()).position(|w| w == marker) else {
        return reply.to_vec();
    };
    let start = at + marker.len();
    let end = start + reply[start..].iter().position(|&b| b == b'\r').unwrap_or(0);
    let mut v = reply[..start].to_vec();
    v.extend_from_slice(b"ID");
    v.extend_from_slice(&reply[end..]);
    v
}

/// Wait for `child` to exit, at most `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}

/// Run `tests/boundary/check.py` (the sealing boundary, generated from the
/// `COMMAND DOCS` of the Redis at `redis_ports`, comma-separated) against
/// the respseal on `proxy_port`, with `flags` (`--hash`, `--cluster`);
/// panics with the script's output when it finds a problem or does not
/// finish within ten minutes.
pub fn boundary_check(proxy_port: u16, redis_ports: &str, flags: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boundary/check.py");
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(proxy_port.to_string())
        .arg(redis_ports)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("python3");
    let status = wait_child(&mut child, Duration::from_secs(600));
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    if status.is_none() {
        kill_and_reap(&mut child);
    }
    assert!(status.is_some_and(|s| s.success()), "boundary check failed:\n{output}");
}

/// Peak and current resident memory of a process, in bytes.
pub fn memory(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<usize>().ok())
            .expect("status field")
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ----- raw RESP client ----------------------------------------------------------

/// Why reading a frame did not produce one.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing complete arrived before the deadline (bytes so far attached).
    Timeout(Vec<u8>),
    /// The peer closed the connection (bytes of an incomplete frame attached).
    Closed(Vec<u8>),
    /// The bytes are not a valid reply for the client's protocol.
    Invalid(String, Vec<u8>),
    /// Another socket error.
    Io(std::io::Error),
}

/// A raw RESP client.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// Protocol used to find frame boundaries: set it to RESP3 after a
    /// successful `HELLO 3`, so RESP3 types on a RESP2 connection fail.
    pub proto: Proto,
    /// Port connected to.
    pub port: u16,
}

impl Client {
    /// Connect to 127.0.0.1:`port` or panic.
    #[track_caller]
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
    }

    /// Connect to 127.0.0.1:`port`.
    pub fn try_connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Client { stream, buf: Vec::with_capacity(64 * 1024), start: 0, proto: Proto::Resp2, port })
    }

    /// A second handle on the socket, for a writer thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("cloning a TcpStream handle")
    }

    /// Send raw bytes.
    #[track_caller]
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap_or_else(|e| panic!("write to port {}: {e}", self.port));
    }

    /// Send one command without reading its reply.
    #[track_caller]
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send(&resp(args));
    }

    /// Send one command and read its reply.
    #[track_caller]
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send_cmd(args);
        self.read_frame()
    }

    /// Send one command and assert its reply.
    #[track_caller]
    pub fn assert_cmd<A: AsRef<[u8]>>(&mut self, args: &[A], expected: &[u8]) {
        let r = self.cmd(args);
        assert_bytes(&r, expected);
    }

    /// `HELLO 3`: reads the reply as RESP3, asserts it is Redis's 7-entry map
    /// with `proto` 3, and switches this client to RESP3 framing.
    #[track_caller]
    pub fn hello3(&mut self) -> Vec<u8> {
        self.send_cmd(&["HELLO", "3"]);
        self.proto = Proto::Resp3;
        let r = self.read_frame();
        let ok = r.starts_with(b"%7\r\n$6\r\nserver\r\n") && contains(&r, b"$5\r\nproto\r\n:3\r\n");
        assert!(ok, "HELLO 3 reply: {}", show(&r));
        r
    }

    /// Read one complete frame or panic (timeout, close, invalid bytes).
    #[track_caller]
    pub fn read_frame(&mut self) -> Vec<u8> {
        match self.try_read_frame(IO_TIMEOUT) {
            Ok(f) => f,
            Err(e) => panic!("reading a reply on port {}: {}", self.port, describe(&e)),
        }
    }

    /// Read `n` complete frames.
    #[track_caller]
    pub fn read_frames(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.read_frame()).collect()
    }

    /// Read one frame, waiting at most `timeout`.
    pub fn try_read_frame(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            match frame_len(&self.buf[self.start..], self.proto) {
                Ok(Some(len)) => {
                    let frame = self.buf[self.start..self.start + len].to_vec();
                    self.start += len;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Invalid(e.to_string(), self.buf[self.start..].to_vec())),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadError::Timeout(self.buf[self.start..].to_vec()));
            }
            match self.fill(deadline - now) {
                Ok(0) => return Err(ReadError::Closed(self.buf[self.start..].to_vec())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    fn fill(&mut self, timeout: Duration) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let r = self.stream.read(&mut self.buf[old..]);
        self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }

    /// Assert that no byte arrives within `wait`.
    #[track_caller]
    pub fn assert_silent(&mut self, wait: Duration) {
        match self.try_read_frame(wait) {
            Err(ReadError::Timeout(partial)) if partial.is_empty() => {}
            other => panic!("expected no reply within {wait:?}, got {}", describe_result(&other)),
        }
    }

    /// Assert the peer closes the connection (within [`IO_TIMEOUT`]) without
    /// sending anything more.
    #[track_caller]
    pub fn assert_closed(&mut self) {
        match self.try_read_frame(IO_TIMEOUT) {
            Err(ReadError::Closed(rest)) if rest.is_empty() => {}
            Err(ReadError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection to be closed, got {}", describe_result(&other)),
        }
    }

    /// Whether the peer closed the connection (after any frames it sent,
    /// which are returned).
    pub fn read_until_closed(&mut self, timeout: Duration) -> Result<Vec<Vec<u8>>, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_frame(left) {
                Ok(f) => frames.push(f),
                Err(ReadError::Closed(rest)) if rest.is_empty() => return Ok(frames),
                Err(ReadError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => return Ok(frames),
                Err(e) => return Err(e),
            }
        }
    }

    /// Close our sending side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn describe(e: &ReadError) -> String {
    match e {
        ReadError::Timeout(b) => format!("timed out (partial bytes: {})", show(b)),
        ReadError::Closed(b) => format!("connection closed (partial bytes: {})", show(b)),
        ReadError::Invalid(why, b) => format!("invalid reply ({why}): {}", show(&b[..b.len().min(300)])),
        ReadError::Io(e) => format!("socket error: {e}"),
    }
}

fn describe_result(r: &Result<Vec<u8>, ReadError>) -> String {
    match r {
        Ok(f) => format!("frame {}", show(f)),
        Err(e) => describe(e),
    }
}

/// A client talking to Redis itself (not through the proxy).
pub fn direct(port: u16) -> Client {
    Client::connect(port)
}

// ----- redis-server -------------------------------------------------------------

/// A redis-server for one test.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start a redis-server on a free port and wait until it answers PING.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match start_redis(dir.path(), port) {
                Ok(child) => return RedisServer { port, dir, child: Some(child) },
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Start a redis-server on a given port (one a proxy already points at).
    pub fn start_on(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let child = start_redis_retrying(dir.path(), port);
        RedisServer { port, dir, child: Some(child) }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL) and reap it: every connection to it breaks.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }

    /// Kill it if running, then start a fresh one on the same port.
    pub fn restart_same_port(&mut self) {
        self.kill();
        self.child = Some(start_redis_retrying(self.dir.path(), self.port));
    }

    /// A client connected to it directly.
    pub fn client(&self) -> Client {
        direct(self.port)
    }

    /// The lines of `CLIENT LIST`, without the connection asking.
    pub fn client_list_others(&self) -> Vec<String> {
        let mut c = self.client();
        let id = c.cmd(&["CLIENT", "ID"]);
        let id = String::from_utf8_lossy(&id[1..id.len() - 2]).into_owned();
        let list = c.cmd(&["CLIENT", "LIST"]);
        bulk_text(&list).lines().filter(|l| !l.starts_with(&format!("id={id} "))).map(str::to_owned).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The text of a bulk string reply.
pub fn bulk_text(reply: &[u8]) -> String {
    assert!(reply.first() == Some(&b'$'), "expected a bulk string, got {}", show(reply));
    let nl = reply.iter().position(|&b| b == b'\n').expect("bulk header line");
    String::from_utf8_lossy(&reply[nl + 1..reply.len() - 2]).into_owned()
}

fn spawn_redis(dir: &Path, port: u16) -> Child {
    Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--enable-debug-command", "yes", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join(format!("redis-{port}.log")))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed")
}

/// Spawn and wait for PONG; on failure the child is reaped and the reason
/// returned.
fn start_redis(dir: &Path, port: u16) -> Result<Child, String> {
    let mut child = spawn_redis(dir, port);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited: {status}"));
        }
        if let Ok(mut c) = Client::try_connect(port) {
            c.send(b"PING\r\n");
            if let Ok(f) = c.try_read_frame(Duration::from_secs(1))
                && f == b"+PONG\r\n"
            {
                // The Redis answering is the one just started, not another
                // process on a reused port.
                let info = c.cmd(&["INFO", "server"]);
                let pid = format!("process_id:{}\r\n", child.id());
                if !String::from_utf8_lossy(&info).contains(&pid) {
                    kill_and_reap(&mut child);
                    return Err(format!("port {port} is answered by another redis-server"));
                }
                return Ok(child);
            }
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            return Err(format!("redis-server on port {port} not ready after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_redis_retrying(dir: &Path, port: u16) -> Child {
    // The old process's port can take a moment to be free again.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match start_redis(dir, port) {
            Ok(c) => return c,
            Err(e) if Instant::now() >= deadline => panic!("restarting redis-server: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

// ----- respseal -------------------------------------------------------------------

/// How to launch the proxy.
#[derive(Default)]
pub struct Launch<'a> {
    /// `--backend` value (none: not given on the command line).
    pub backend: Option<String>,
    /// Extra arguments after `serve --listen … --backend …`.
    pub args: &'a [&'a str],
    /// Contents of a config file passed with `--config`.
    pub config: Option<&'a str>,
    /// Environment variables.
    pub env: &'a [(&'a str, String)],
    /// Give the listen address through `RESPSEAL_LISTEN` instead of `--listen`.
    pub listen_via_env: bool,
}

/// A running respseal.
pub struct Proxy {
    /// Port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proxy {
    /// `respseal serve --listen 127.0.0.1:FREE --backend redis://127.0.0.1:BACKEND EXTRA…`,
    /// once it accepts clients and answers PING (with anything: the backend
    /// may be down on purpose).
    pub fn start(backend_port: u16, extra: &[&str]) -> Proxy {
        Proxy::launch(Launch {
            backend: Some(format!("redis://127.0.0.1:{backend_port}")),
            args: extra,
            ..Default::default()
        })
    }

    /// Like [`Proxy::start`] with a config file.
    pub fn start_with_config(backend_port: u16, config: &str, extra: &[&str]) -> Proxy {
        Proxy::launch(Launch {
            backend: Some(format!("redis://127.0.0.1:{backend_port}")),
            args: extra,
            config: Some(config),
            ..Default::default()
        })
    }

    /// Start with full control over the command line and environment.
    pub fn launch(l: Launch<'_>) -> Proxy {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn_proxy(dir.path(), port, &l);
            match wait_proxy_ready(&mut child, port) {
                Ok(()) => return Proxy { port, dir, child: Some(child) },
                Err(e) => {
                    kill_and_reap(&mut child);
                    last = format!("{e}; log:\n{}", read_log(dir.path()));
                }
            }
        }
        panic!("respseal did not start: {last}");
    }

    /// A client connected to the proxy.
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy is running").id()
    }

    /// The config file given with `--config` (rewrite it, then [`Proxy::sighup`]).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("respseal.toml")
    }

    /// Send SIGHUP: reload the configuration.
    pub fn sighup(&self) {
        let status =
            Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().expect("kill(1) is available");
        assert!(status.success(), "kill -HUP {} failed", self.pid());
    }

    /// Send SIGTERM (through kill(1): no extra dependency for a syscall).
    pub fn sigterm(&self) {
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill(1) is available");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait for the process to exit, at most `timeout`; panics if it does not.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("proxy was started");
        match wait_child(child, timeout) {
            Some(status) => {
                self.child = None;
                status
            }
            None => panic!("respseal still running {timeout:?} later; log:\n{}", self.log()),
        }
    }

    /// Panics if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("proxy was started");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("respseal exited ({status}); log:\n{}", self.log());
        }
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("respseal.log")).unwrap_or_default()
}

/// A `Command` for the respseal binary with no `RESPSEAL_*` variables
/// inherited from the test environment.
pub fn respseal_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_respseal"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("RESPSEAL_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn spawn_proxy(dir: &Path, port: u16, l: &Launch<'_>) -> Child {
    let mut cmd = respseal_command();
    cmd.arg("serve");
    let listen = format!("127.0.0.1:{port}");
    if l.listen_via_env {
        cmd.env("RESPSEAL_LISTEN", &listen);
    } else {
        cmd.args(["--listen", &listen]);
    }
    if let Some(b) = &l.backend {
        cmd.args(["--backend", b]);
    }
    if let Some(text) = l.config {
        let path = dir.join("respseal.toml");
        std::fs::write(&path, text).expect("writing the config file");
        cmd.arg("--config").arg(path);
    }
    cmd.args(l.args);
    for (k, v) in l.env {
        cmd.env(k, v);
    }
    let log = std::fs::File::create(dir.join("respseal.log")).expect("creating the log file");
    cmd.stdout(Stdio::null()).stderr(log).spawn().expect("spawning respseal")
}

fn wait_proxy_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("respseal on port {port} exited: {status}"));
        }
        if let Ok(mut c) = Client::try_connect(port) {
            // Any reply will do; QUIT so the connection slot is released.
            c.send(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n");
            if let Ok(frames) = c.read_until_closed(Duration::from_secs(5))
                && frames.len() == 2
            {
                // The one answering is the respseal just started.
                if !pid_listens_on(child.id(), port) {
                    return Err(format!("port {port} is answered by another process"));
                }
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("respseal on port {port} not ready after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run respseal to completion with the given arguments and environment,
/// at most `timeout`; returns (status, stdout, stderr).
pub fn run_respseal(args: &[&str], env: &[(&str, String)], timeout: Duration) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let out = std::fs::File::create(dir.path().join("out")).expect("stdout file");
    let err = std::fs::File::create(dir.path().join("err")).expect("stderr file");
    let mut cmd = respseal_command();
    cmd.args(args).stdout(out).stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning respseal");
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            kill_and_reap(&mut child);
            panic!(
                "respseal {args:?} still running after {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(dir.path().join("err")).unwrap_or_default()
            );
        }
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    (status, read("out"), read("err"))
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.1: (status code, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The value of one sample in a Prometheus exposition (`name{labels}`
/// exactly as rendered, labels in the exporter's order), 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == series).and_then(|(_, v)| v.parse().ok()))
        .unwrap_or(0.0)
}

/// A child process killed and reaped on drop (and by [`Reaped::kill`]).
pub struct Reaped(pub Child);

impl Reaped {
    /// Kill it now and wait for it (again on drop: harmless).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number after `"name": ` in a flat JSON object (the load script's
/// result); panics if it is missing.
pub fn json_number(text: &str, name: &str) -> f64 {
    let at = text.find(&format!("\"{name}\": ")).unwrap_or_else(|| panic!("{name} in {text}"));
    text[at + name.len() + 4..].split([',', '}']).next().and_then(|v| v.trim().parse().ok()).expect("a number")
}

/// Write `text` to a file in `dir` and return its path as a string.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a test file");
    path
}

/// `respseal keygen` into `dir/name`: the key file and its key id.
#[allow(dead_code)]
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let (status, out, err) =
        run_respseal(&["keygen", "--out", path.to_str().expect("utf-8 path")], &[], Duration::from_secs(10));
    assert!(status.success(), "keygen failed: {err}");
    let id = out.split_whitespace().nth(2).expect("`wrote key ID to PATH`").to_string();
    assert_eq!(id.len(), 8, "{out}");
    (path, id)
}

/// A configuration with `rules` (`[[rule]]` tables as TOML) and a new key,
/// made in `dir`, as its primary.
#[allow(dead_code)]
pub fn rules_with_new_key(dir: &Path, rules: &str) -> String {
    let (key, _) = keygen(dir, "k.key");
    format!("{rules}[[key]]\nfile = \"{}\"\nstate = \"primary\"\n", key.display())
}

// ----- a fake Redis ------------------------------------------------------------

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

// ----- TLS ------------------------------------------------------------------

/// Certificates made with openssl(1) for one test: a CA, a server
/// certificate for 127.0.0.1/localhost, a client certificate from the CA,
/// and a client certificate from another CA.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// Make them in a new temporary directory.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        for ca in ["ca", "rogue-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=respseal test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext");
        for (name, ca) in [("server", "ca"), ("server2", "ca"), ("client", "ca"), ("rogue", "rogue-ca")] {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Pki { dir }
    }

    /// The path of one of its files (`ca.crt`, `client.key` …).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().expect("utf-8").to_string()
    }
}

/// `redis-cli --tls` against `port`, with the certificate `cert` (and its key) if given.
pub fn tls_cli(pki: &Pki, port: u16, args: &[&str], cert: Option<&str>) -> String {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert", &pki.path("ca.crt")]);
    if let Some(name) = cert {
        cmd.args(["--cert", &pki.path(&format!("{name}.crt")), "--key", &pki.path(&format!("{name}.key"))]);
    }
    let out = cmd.args(args).stdin(std::process::Stdio::null()).output().expect("redis-cli");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string()
}

// ----- a browser load ----------------------------------------------------------

/// `tests/rotation/load.py`: `users` browsers asking the express-session
/// example on `app_port` for their counter, together at about `rate`
/// requests a second, until [`SessionLoad::finish`].
pub struct SessionLoad {
    child: Reaped,
    stop: PathBuf,
    progress: PathBuf,
    out: PathBuf,
}

impl SessionLoad {
    /// Start it, its files named after `name` in `dir`.
    pub fn start(dir: &Path, name: &str, app_port: u16, users: u32, rate: u32) -> SessionLoad {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let stop = dir.join(format!("stop-{name}"));
        let out = dir.join(format!("load-{name}.json"));
        let child = Reaped(
            Command::new("python3")
                .arg(root.join("tests/rotation/load.py"))
                .args([&app_port.to_string(), &users.to_string(), &rate.to_string(), stop.to_str().expect("utf-8")])
                .stdout(std::fs::File::create(&out).expect("load output"))
                .spawn()
                .expect("python3"),
        );
        let progress = dir.join(format!("stop-{name}.progress"));
        SessionLoad { child, stop, progress, out }
    }

    /// Requests answered so far.
    pub fn done(&self) -> u64 {
        std::fs::read_to_string(&self.progress).ok().and_then(|t| t.parse().ok()).unwrap_or(0)
    }

    /// Wait (at most 30 s) for `n` more requests.
    pub fn run_for(&self, n: u64) {
        let from = self.done();
        wait_until("the load goes on", Duration::from_secs(30), || (self.done() >= from + n).then_some(()));
    }

    /// Stop it and return its JSON result.
    pub fn finish(mut self) -> String {
        std::fs::write(&self.stop, "").expect("stop file");
        wait_child(&mut self.child.0, Duration::from_secs(30)).expect("the load stops");
        std::fs::read_to_string(&self.out).expect("load result")
    }
}

/// xorshift64*: reproducible random choices from a seed, no dependency
/// (the property, framing and transaction tests).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}
