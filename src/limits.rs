//! Memory limits that span a client's life: per-client output limits with
//! Redis's classes, and the proxy-wide budget for bytes buffered from
//! clients (docs/design.md §7).
//!
//! Output limits follow Redis's `client-output-buffer-limit`: a hard limit
//! that disconnects at once, and a soft limit that disconnects when it has
//! been exceeded for a number of seconds without a break. Classes:
//! `normal` (default `0 0 0`: none, as in Redis; respseal then stops
//! reading from the client's dedicated Redis connection instead, so Redis
//! holds the rest), `shared` (a normal client on a shared link, default
//! `64mb 32mb 10`: the link cannot stop for one client, so replies a client
//! does not read are held by respseal, charged to that client, and bounded
//! here; past it the client is disconnected, never the link), `pubsub` (`32mb 8mb 60`; respseal also applies it to
//! MONITOR clients, whose stream is as unbounded as a subscription) and
//! `replica` (`256mb 64mb 60`, after SYNC/PSYNC).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One class's limits; zero means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    /// Disconnect as soon as this many bytes wait for the client.
    pub hard: usize,
    /// Disconnect when this many bytes wait for `soft_secs` in a row.
    pub soft: usize,
    /// How long the soft limit may be exceeded.
    pub soft_secs: u64,
}

impl OutputLimit {
    /// No limit.
    pub const NONE: OutputLimit = OutputLimit { hard: 0, soft: 0, soft_secs: 0 };

    /// Parse Redis's syntax: `HARD SOFT SECONDS`, sizes with the units of
    /// `redis.conf` (`k` = 1000, `kb` = 1024, `m`, `mb`, `g`, `gb`).
    pub fn parse(s: &str) -> Option<OutputLimit> {
        let mut parts = s.split_whitespace();
        let hard = parse_size(parts.next()?)?;
        let soft = parse_size(parts.next()?)?;
        let soft_secs = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(OutputLimit { hard, soft, soft_secs })
    }
}

/// A size with `redis.conf` units.
pub fn parse_size(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: usize = digits.parse().ok()?;
    let mult: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Which limit applies to a client now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputClass {
    /// Ordinary request/response clients on a dedicated link.
    Normal,
    /// Ordinary clients on a shared link.
    Shared,
    /// Subscribed clients and MONITOR.
    Pubsub,
    /// Replication streams (SYNC/PSYNC).
    Replica,
}

impl OutputClass {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            OutputClass::Normal => "normal",
            OutputClass::Shared => "shared",
            OutputClass::Pubsub => "pubsub",
            OutputClass::Replica => "replica",
        }
    }
}

/// The three classes' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// `normal`.
    pub normal: OutputLimit,
    /// `shared`: a normal client on a shared link.
    pub shared: OutputLimit,
    /// `pubsub` (and MONITOR).
    pub pubsub: OutputLimit,
    /// `replica`.
    pub replica: OutputLimit,
}

impl Default for OutputLimits {
    fn default() -> Self {
        // The defaults are declared in `settings`.
        let of = |key: &str| {
            OutputLimit::parse(&crate::settings::default_of::<String>(key)).expect("a default output limit parses")
        };
        OutputLimits {
            normal: of("limits.output_normal"),
            shared: of("limits.output_shared"),
            pubsub: of("limits.output_pubsub"),
            replica: of("limits.output_replica"),
        }
    }
}

impl OutputLimits {
    /// The limit of a class.
    pub fn of(&self, class: OutputClass) -> OutputLimit {
        match class {
            OutputClass::Normal => self.normal,
            OutputClass::Shared => self.shared,
            OutputClass::Pubsub => self.pubsub,
            OutputClass::Replica => self.replica,
        }
    }
}

/// Tracks one client against its output limit.
#[derive(Debug, Default)]
pub struct OutputWatch {
    soft_since: Option<Instant>,
}

impl OutputWatch {
    /// Whether a client with `queued` bytes waiting must be disconnected.
    pub fn exceeded(&mut self, limit: OutputLimit, queued: usize, now: Instant) -> bool {
        if limit.hard > 0 && queued >= limit.hard {
            return true;
        }
        if limit.soft > 0 && queued >= limit.soft {
            let since = *self.soft_since.get_or_insert(now);
            return now.duration_since(since) >= Duration::from_secs(limit.soft_secs);
        }
        self.soft_since = None;
        false
    }
}

/// The proxy-wide budget for bytes held in client read buffers: many
/// clients announcing huge arguments together cannot push memory past it.
#[derive(Debug)]
pub struct Budget {
    cap: usize,
    used: AtomicUsize,
}

impl Budget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Budget { cap, used: AtomicUsize::new(0) }
    }

    /// Take `n` more bytes, if they fit.
    pub fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|&t| t <= self.cap))
            .is_ok()
    }

    /// Give back `n` bytes.
    pub fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_syntax() {
        assert_eq!(
            OutputLimit::parse("32mb 8mb 60"),
            Some(OutputLimit { hard: 32 << 20, soft: 8 << 20, soft_secs: 60 })
        );
        assert_eq!(OutputLimit::parse("0 0 0"), Some(OutputLimit::NONE));
        assert_eq!(OutputLimit::parse("1k 1kb 1"), Some(OutputLimit { hard: 1000, soft: 1024, soft_secs: 1 }));
        assert_eq!(OutputLimit::parse("1gb 2 3"), Some(OutputLimit { hard: 1 << 30, soft: 2, soft_secs: 3 }));
        for bad in ["", "1 2", "1 2 3 4", "1x 2 3", "-1 2 3", "mb 1 1"] {
            assert_eq!(OutputLimit::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hard_at_once_soft_after_its_seconds() {
        let l = OutputLimit { hard: 100, soft: 10, soft_secs: 2 };
        let mut w = OutputWatch::default();
        let t0 = Instant::now();
        assert!(!w.exceeded(l, 5, t0));
        assert!(w.exceeded(l, 100, t0));
        assert!(!w.exceeded(l, 50, t0));
        assert!(!w.exceeded(l, 50, t0 + Duration::from_secs(1)));
        assert!(w.exceeded(l, 50, t0 + Duration::from_secs(2)));
        // Falling below the soft limit starts over.
        assert!(!w.exceeded(l, 5, t0 + Duration::from_secs(3)));
        assert!(!w.exceeded(l, 50, t0 + Duration::from_secs(4)));
        assert!(!w.exceeded(OutputLimit::NONE, usize::MAX, t0));
    }

    #[test]
    fn budget_never_exceeds_its_cap() {
        let b = Budget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(41));
        assert!(b.try_take(40));
        b.give(100);
        assert_eq!(b.used(), 0);
    }
}
