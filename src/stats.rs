//! Hot-path counters: per thread, aggregated when `/metrics` is scraped.
//!
//! Every worker thread counts into its own [`Local`] block (registered once,
//! on first use), with single-writer atomics: a relaxed load and store, no
//! locked instruction and no shared cache line, so counting a command costs
//! a few plain memory operations. A scrape sums the blocks of every thread
//! ([`snapshot`]); [`crate::admin`] hands the sums to the Prometheus
//! exporter as absolute counter values and renders the latency histogram,
//! which the exporter cannot take pre-aggregated, in the same text format.
//!
//! Rare events (refusals, open failures, reconnects …) go through the
//! `metrics` macros directly, where the exporter's own atomics are cheap
//! enough. Label values come from closed sets only (the enums here, reason
//! strings that are `&'static str` in the code): never a key name, an
//! address, a user name or a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::commands::table::{Class, Command, Data, State};

/// Command families: a closed set, derived from the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Family {
    /// String values (GET, SET, APPEND, INCR …).
    String = 0,
    /// Hash fields.
    Hash,
    /// Lists.
    List,
    /// Sets.
    Set,
    /// Sorted sets.
    ZSet,
    /// Streams.
    Stream,
    /// Geo indexes.
    Geo,
    /// HyperLogLogs.
    HyperLogLog,
    /// Key metadata and moves (DEL, EXPIRE, TTL, RENAME, SCAN …).
    Keyspace,
    /// Commands without keys (INFO, DBSIZE, PING, CONFIG …).
    Server,
    /// Connection commands (AUTH, HELLO, SELECT, CLIENT, QUIT, RESET).
    Connection,
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction,
    /// Pub/sub.
    Pubsub,
    /// EVAL, FCALL, SCRIPT, FUNCTION.
    Scripting,
    /// Commands missing from the table, or whose keys are unknown.
    Other,
}

impl Family {
    /// Every family, in `repr` order.
    pub const ALL: [Family; 15] = [
        Family::String,
        Family::Hash,
        Family::List,
        Family::Set,
        Family::ZSet,
        Family::Stream,
        Family::Geo,
        Family::HyperLogLog,
        Family::Keyspace,
        Family::Server,
        Family::Connection,
        Family::Transaction,
        Family::Pubsub,
        Family::Scripting,
        Family::Other,
    ];
    const COUNT: usize = Self::ALL.len();

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Family::String => "string",
            Family::Hash => "hash",
            Family::List => "list",
            Family::Set => "set",
            Family::ZSet => "zset",
            Family::Stream => "stream",
            Family::Geo => "geo",
            Family::HyperLogLog => "hyperloglog",
            Family::Keyspace => "keyspace",
            Family::Server => "server",
            Family::Connection => "connection",
            Family::Transaction => "transaction",
            Family::Pubsub => "pubsub",
            Family::Scripting => "scripting",
            Family::Other => "other",
        }
    }

    /// The family of a command (`None`: not in the table).
    pub fn of(cmd: Option<&Command>) -> Family {
        use crate::commands::DataType as T;
        let Some(cmd) = cmd else { return Family::Other };
        match (cmd.class, cmd.data) {
            (Class::Connection(_) | Class::Client, _) => Family::Connection,
            (Class::Stateful(State::Transaction | State::Watch), _) => Family::Transaction,
            (Class::Stateful(State::Subscribe(_) | State::Unsubscribe(_)), _) => Family::Pubsub,
            (_, Data::String | Data::Inspect) => Family::String,
            (_, Data::Hash(_)) => Family::Hash,
            (_, Data::Collection(T::List)) => Family::List,
            (_, Data::Collection(T::Set)) => Family::Set,
            (_, Data::Collection(T::ZSet)) => Family::ZSet,
            (_, Data::Collection(T::Stream)) => Family::Stream,
            (_, Data::Collection(T::Geo)) => Family::Geo,
            (_, Data::Collection(T::Hll)) => Family::HyperLogLog,
            (_, Data::Script(_)) => Family::Scripting,
            (_, Data::Opaque | Data::Populates { .. }) => Family::Other,
            (_, Data::Meta | Data::Move(_)) if cmd.keys == crate::commands::table::Keys::None => Family::Server,
            (_, Data::Meta | Data::Move(_)) => Family::Keyspace,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Redis (or respseal, for the commands it answers) replied.
    Ok = 0,
    /// Redis replied with an error.
    RedisError,
    /// respseal refused it (policy, authentication, limits).
    Refused,
    /// The backend failed (unavailable, lost, timeout).
    BackendError,
}

impl Outcome {
    /// Every outcome, in `repr` order.
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::RedisError, Outcome::Refused, Outcome::BackendError];
    const COUNT: usize = Self::ALL.len();

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RedisError => "redis_error",
            Outcome::Refused => "refused",
            Outcome::BackendError => "backend_error",
        }
    }
}

/// Upper bounds of the latency histogram's buckets, in microseconds (the
/// exposition gives them in seconds); the last bucket is `+Inf`.
pub const LATENCY_BOUNDS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Plain counters (one value each).
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Counter {
    /// Bytes read from clients.
    BytesIn = 0,
    /// Bytes written to clients.
    BytesOut,
    /// Values sealed.
    Sealed,
    /// Values opened.
    Opened,
}
const COUNTERS: usize = 4;

/// One thread's counters. Written by that thread only.
#[derive(Debug)]
pub struct Local {
    commands: [[AtomicU64; Outcome::COUNT]; Family::COUNT],
    latency: [[AtomicU64; BUCKETS]; Family::COUNT],
    latency_sum_us: [AtomicU64; Family::COUNT],
    counters: [AtomicU64; COUNTERS],
}

impl Default for Local {
    fn default() -> Self {
        Local {
            commands: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_sum_us: std::array::from_fn(|_| AtomicU64::new(0)),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Add to a counter that only this thread writes: no locked instruction.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn registry() -> &'static Mutex<Vec<Arc<Local>>> {
    static ALL: OnceLock<Mutex<Vec<Arc<Local>>>> = OnceLock::new();
    ALL.get_or_init(Default::default)
}

thread_local! {
    static LOCAL: Arc<Local> = {
        let l = Arc::new(Local::default());
        registry().lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Arc::clone(&l));
        l
    };
}

/// The time base of latency stamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the time base: the stamp a command's latency is
/// measured from. Read once per batch of requests or replies, not per command.
pub fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Count a plain counter.
#[inline]
pub fn add(c: Counter, n: u64) {
    LOCAL.with(|l| bump(&l.counters[c as usize], n));
}

/// Count a finished command; `latency_us` is `None` for commands respseal
/// answered itself without a wait.
#[inline]
pub fn command(family: Family, outcome: Outcome, latency_us: Option<u64>) {
    LOCAL.with(|l| {
        let f = family as usize;
        bump(&l.commands[f][outcome as usize], 1);
        if let Some(us) = latency_us {
            let b = LATENCY_BOUNDS_US.iter().position(|&bound| us <= bound).unwrap_or(BUCKETS - 1);
            bump(&l.latency[f][b], 1);
            bump(&l.latency_sum_us[f], us);
        }
    });
}

/// The sums over every thread, taken at scrape time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Commands by family and outcome.
    pub commands: [[u64; Outcome::COUNT]; Family::COUNT],
    /// Latency bucket counts (not cumulative) by family.
    pub latency: [[u64; BUCKETS]; Family::COUNT],
    /// Latency sums in microseconds by family.
    pub latency_sum_us: [u64; Family::COUNT],
    /// Plain counters, by [`Counter`].
    pub counters: [u64; COUNTERS],
}

/// Sum every thread's counters.
pub fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    let all = registry().lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for l in &all {
        for f in 0..Family::COUNT {
            for o in 0..Outcome::COUNT {
                s.commands[f][o] += get(&l.commands[f][o]);
            }
            for b in 0..BUCKETS {
                s.latency[f][b] += get(&l.latency[f][b]);
            }
            s.latency_sum_us[f] += get(&l.latency_sum_us[f]);
        }
        for c in 0..COUNTERS {
            s.counters[c] += get(&l.counters[c]);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_several_threads_add_up() {
        let before = snapshot();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        command(Family::Geo, Outcome::RedisError, Some(75));
                        add(Counter::Opened, 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("counting thread");
        }
        let after = snapshot();
        let (g, e) = (Family::Geo as usize, Outcome::RedisError as usize);
        assert_eq!(after.commands[g][e] - before.commands[g][e], 3000);
        // 75 µs falls in the (50, 100] bucket.
        assert_eq!(after.latency[g][1] - before.latency[g][1], 3000);
        assert_eq!(after.latency_sum_us[g] - before.latency_sum_us[g], 225_000);
        assert_eq!(after.counters[Counter::Opened as usize] - before.counters[Counter::Opened as usize], 6000);
    }

    #[test]
    fn every_command_has_a_family_and_names_are_distinct() {
        let names: std::collections::HashSet<_> = Family::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Family::ALL.len());
        for (i, f) in Family::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
        }
        let get = crate::commands::lookup(b"GET");
        assert_eq!(Family::of(get), Family::String);
        assert_eq!(Family::of(crate::commands::lookup(b"HGETALL")), Family::Hash);
        assert_eq!(Family::of(crate::commands::lookup(b"EXPIRE")), Family::Keyspace);
        assert_eq!(Family::of(crate::commands::lookup(b"DBSIZE")), Family::Server);
        assert_eq!(Family::of(crate::commands::lookup(b"MULTI")), Family::Transaction);
        assert_eq!(Family::of(crate::commands::lookup(b"AUTH")), Family::Connection);
        assert_eq!(Family::of(None), Family::Other);
    }
}
