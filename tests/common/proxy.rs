//! The `respseal` binary built by cargo, on a free port, in front of a given
//! backend; its configuration files, keys, admin endpoint and the boundary
//! checker.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::*;

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

pub(crate) fn read_log(dir: &Path) -> String {
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

pub(crate) fn spawn_proxy(dir: &Path, port: u16, l: &Launch<'_>) -> Child {
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

pub(crate) fn wait_proxy_ready(child: &mut Child, port: u16) -> Result<(), String> {
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
