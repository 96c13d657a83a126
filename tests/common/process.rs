//! Ports and child processes: free ports, who listens where, waiting for and
//! reaping children, polling with a deadline.

use std::net::TcpListener;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

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

pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
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
