//! A throw-away `redis-server` on a free port in its own directory, killed and
//! reaped on drop; it can be killed and restarted on the same port to simulate
//! a backend failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

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

pub(crate) fn spawn_redis(dir: &Path, port: u16) -> Child {
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
pub(crate) fn start_redis(dir: &Path, port: u16) -> Result<Child, String> {
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

pub(crate) fn start_redis_retrying(dir: &Path, port: u16) -> Child {
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
