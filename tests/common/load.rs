//! Load drivers: browsers against a session-store example, and a seeded random
//! source.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::*;

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
