//! `respseal rewrap`: online re-encryption after a key rotation, and
//! `respseal check`'s sample of opened values.
//!
//! Rewrap walks the sealed patterns with SCAN, straight against Redis, and
//! re-seals every string value that is not under the primary key
//! ([`crypto::rewrap`]: same plaintext, same `issued_at`, fresh nonce);
//! with `--legacy` it also seals values that have no envelope (marked as
//! re-sealed from legacy plaintext, so that `inspect --resealed` finds
//! them). Each write is a compare-and-set in a script: the new value is
//! written only if Redis still holds the one that was read, with `KEEPTTL`,
//! so a write made meanwhile through respseal is never lost and the TTL
//! stays. Values already under the primary key are left alone: a second
//! run changes nothing.
//!
//! It is rate-limited (`--max-per-sec`), reports progress, and can be
//! resumed: the cursor (`PATTERN_INDEX:SCAN_CURSOR`) is printed with every
//! progress line and on interruption, and `--cursor` starts there. A page
//! is redone from its start on resume, which is harmless since finished
//! values are skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::BackendError;
use crate::backend::conn::ConnSettings;
use crate::commands::own;
use crate::crypto::{self, RewrapError};
use crate::inspect::{Conn, KeyWalk, bulk};
use crate::protocol::Proto;
use crate::protocol::frame::Frame;
use crate::sealing::Sealer;

/// Compare-and-set keeping the TTL.
const CAS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') return 1 end return 0";
/// Compare-and-delete.
const CAD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Where a walk is: which pattern, and the SCAN cursor of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Index into the patterns.
    pub pattern: usize,
    /// SCAN cursor of the page in progress.
    pub scan: String,
}

impl Cursor {
    /// The start.
    pub fn start() -> Self {
        Cursor { pattern: 0, scan: "0".into() }
    }

    /// Parse `PATTERN_INDEX:SCAN_CURSOR`.
    pub fn parse(s: &str) -> Option<Self> {
        let (p, c) = s.split_once(':')?;
        let pattern = p.parse().ok()?;
        c.parse::<u64>().ok()?;
        Some(Cursor { pattern, scan: c.to_string() })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.pattern, self.scan)
    }
}

/// What rewrap does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Key patterns to walk.
    pub patterns: Vec<String>,
    /// Also seal values without an envelope.
    pub legacy: bool,
    /// Delete values re-sealed from legacy plaintext instead of keeping them.
    pub drop_resealed: bool,
    /// Most keys looked at per second (None: as fast as Redis answers).
    pub max_per_sec: Option<u32>,
    /// Where to start.
    pub cursor: Cursor,
    /// Stop after the current key when this turns true (SIGINT).
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

/// What was found and done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Keys looked at.
    pub scanned: u64,
    /// Already under the primary key.
    pub current: u64,
    /// Re-sealed under the primary key.
    pub rewrapped: u64,
    /// Legacy plaintext sealed (`--legacy`).
    pub legacy_sealed: u64,
    /// Legacy plaintext left as it is (no `--legacy`).
    pub legacy_left: u64,
    /// Re-sealed values deleted (`--drop-resealed`).
    pub dropped: u64,
    /// Changed by someone else between read and write: left to them.
    pub changed: u64,
    /// Not a string (hash fields are not sealed yet).
    pub not_string: u64,
    /// Names a pattern covers that a `seal = false` rule exempts: left as
    /// they are.
    pub exempt: u64,
    /// Values that did not open, by reason.
    pub failed: BTreeMap<&'static str, u64>,
}

impl Counts {
    /// Values that did not open.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scanned {}, rewrapped {}, already current {}, legacy sealed {}, legacy left {}, dropped {}, \
             changed meanwhile {}, not strings {}, failed {}",
            self.scanned,
            self.rewrapped,
            self.current,
            self.legacy_sealed,
            self.legacy_left,
            self.dropped,
            self.changed,
            self.not_string,
            self.failures()
        )?;
        if !self.failed.is_empty() {
            let reasons: Vec<String> = self.failed.iter().map(|(r, n)| format!("{r}={n}")).collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        if self.exempt > 0 {
            write!(f, ", exempt (seal = false) {}", self.exempt)?;
        }
        Ok(())
    }
}

/// How the walk ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every pattern walked to the end.
    Done,
    /// Stopped on request; resume with this cursor.
    Stopped(Cursor),
}

/// Walk and rewrap. `progress` is called after every key with the counts
/// and the cursor to resume from.
///
/// # Errors
/// When Redis cannot be reached or fails mid-way (the counts so far and
/// the cursor were reported through `progress`).
pub async fn run(
    settings: &Arc<ConnSettings>,
    sealer: &Sealer,
    opts: &Options,
    counts: &mut Counts,
    mut progress: impl FnMut(&Counts, &Cursor),
) -> Result<End, BackendError> {
    let primary = sealer.keyring().primary_id();
    let mut c = Conn::open(settings).await?;
    let started = Instant::now();
    let mut cursor = opts.cursor.clone();
    while cursor.pattern < opts.patterns.len() {
        let pattern = &opts.patterns[cursor.pattern];
        // Pseudonymised names are walked by their stored names.
        let (glob, filter) = sealer.walk_glob(pattern);
        let (next, keys) = c.scan_page(cursor.scan.as_bytes(), &glob).await?;
        for stored in keys {
            if opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(End::Stopped(cursor));
            }
            if let Some(rate) = opts.max_per_sec.filter(|&r| r > 0) {
                let due = started + Duration::from_secs_f64(counts.scanned as f64 / f64::from(rate));
                tokio::time::sleep_until(due.into()).await;
            }
            let key = match sealer.walked(&stored, pattern, filter) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(_) => {
                    *counts.failed.entry("name").or_default() += 1;
                    continue;
                }
            };
            counts.scanned += 1;
            // A name the pattern covers that a `seal = false` rule exempts
            // (PHP's `…_LOCK` under `PHPREDIS_SESSION:*`) holds plaintext
            // by design: never sealed, not counted as legacy.
            if sealer.rules().find(&key).is_none() {
                counts.exempt += 1;
                continue;
            }
            one(&mut c, sealer, primary, opts, (&stored, &key), counts).await?;
            progress(counts, &cursor);
        }
        if next == b"0" {
            cursor = Cursor { pattern: cursor.pattern + 1, scan: "0".into() };
        } else {
            cursor.scan = String::from_utf8_lossy(&next).into_owned();
        }
    }
    Ok(End::Done)
}

async fn one(
    c: &mut Conn,
    sealer: &Sealer,
    primary: Option<u32>,
    opts: &Options,
    (stored, key): (&[u8], &[u8]),
    counts: &mut Counts,
) -> Result<(), BackendError> {
    let reply = c.cmd(&[own::GET.as_bytes(), stored]).await?;
    let Some(value) = bulk(&reply) else {
        counts.not_string += 1;
        return Ok(());
    };
    let info = match crypto::inspect(&value) {
        Ok(info) => info,
        Err(_) if !opts.legacy => {
            counts.legacy_left += 1;
            return Ok(());
        }
        Err(_) => {
            let Ok(sealed) = sealer.seal_legacy(key, &value, crate::clock::now_unix()) else {
                *counts.failed.entry("no_primary_key").or_default() += 1;
                return Ok(());
            };
            if cas(c, CAS, stored, &value, Some(&sealed)).await? {
                counts.legacy_sealed += 1;
            } else {
                counts.changed += 1;
            }
            return Ok(());
        }
    };
    if opts.drop_resealed && info.resealed {
        if cas(c, CAD, stored, &value, None).await? {
            counts.dropped += 1;
        } else {
            counts.changed += 1;
        }
        return Ok(());
    }
    if Some(info.key_id) == primary {
        counts.current += 1;
        return Ok(());
    }
    match sealer.rewrap(key, &value) {
        Ok(sealed) => {
            if cas(c, CAS, stored, &value, Some(&sealed)).await? {
                counts.rewrapped += 1;
            } else {
                counts.changed += 1;
            }
        }
        Err(RewrapError::Open(e)) => *counts.failed.entry(e.reason()).or_default() += 1,
        Err(RewrapError::Seal(e)) => *counts.failed.entry(e.reason()).or_default() += 1,
    }
    Ok(())
}

/// Run a compare-and-set (or -delete) script; whether it wrote.
async fn cas(c: &mut Conn, script: &str, key: &[u8], old: &[u8], new: Option<&[u8]>) -> Result<bool, BackendError> {
    let mut args: Vec<&[u8]> = vec![own::EVAL.as_bytes(), script.as_bytes(), b"1", key, old];
    args.extend(new);
    let r = c.cmd(&args).await?;
    match Frame::new(&r, Proto::Resp2).integer() {
        Some(wrote) => Ok(wrote != 0),
        // Redis's words are not echoed: a script error could quote the value.
        _ => Err(BackendError::Handshake("a compare-and-set script failed".into())),
    }
}

/// `respseal check`'s sample: open up to `limit` sealed values under each
/// pattern with the configured keyring and rules (max age included), to
/// catch a wrong keyring before it logs every user out. Nothing is
/// written, nothing is printed but counts.
///
/// # Errors
/// When Redis cannot be reached.
pub async fn sample(
    settings: &Arc<ConnSettings>,
    sealer: &Sealer,
    patterns: &[String],
    limit: u64,
) -> Result<(u64, BTreeMap<&'static str, u64>), BackendError> {
    let mut c = Conn::open(settings).await?;
    let now = crate::clock::now_unix();
    let (mut opened, mut failed) = (0u64, BTreeMap::new());
    for pattern in patterns {
        let (glob, filter) = sealer.walk_glob(pattern);
        let mut walk = KeyWalk::new(&glob);
        let mut seen = 0u64;
        'pages: while let Some(keys) = c.next_keys(&mut walk).await? {
            for stored in keys {
                if seen >= limit {
                    break 'pages;
                }
                let key = match sealer.walked(&stored, pattern, filter) {
                    Ok(Some(key)) => key,
                    Ok(None) => continue,
                    Err(_) => {
                        *failed.entry("name").or_default() += 1;
                        continue;
                    }
                };
                // Exempt names (`seal = false`) hold plaintext by design.
                if sealer.rules().find(&key).is_none() {
                    continue;
                }
                let Some(value) = bulk(&c.cmd(&[own::GET.as_bytes(), &stored]).await?) else { continue };
                seen += 1;
                match sealer.check_opens(&key, &value, now) {
                    Ok(()) => opened += 1,
                    Err(e) => *failed.entry(e.reason()).or_default() += 1,
                }
            }
        }
    }
    Ok((opened, failed))
}

/// `respseal check`'s look for envelopes no rule covers: up to `limit`
/// string values of the whole keyspace whose name no sealing rule of
/// `rules` matches but which hold an envelope (a rule was dropped or
/// narrowed: through respseal they read as envelopes). Counted, never
/// named: a key name may be personal data.
///
/// # Errors
/// When Redis cannot be reached.
pub async fn uncovered(
    settings: &Arc<ConnSettings>,
    rules: &crate::rules::Rules,
    sealer: Option<&Sealer>,
    limit: u64,
) -> Result<(u64, u64), BackendError> {
    let mut c = Conn::open(settings).await?;
    let (mut looked, mut found) = (0u64, 0u64);
    let mut walk = KeyWalk::new("*");
    'pages: while let Some(keys) = c.next_keys(&mut walk).await? {
        for stored in keys {
            if looked >= limit {
                break 'pages;
            }
            // Rules match the names clients use (pseudonyms decoded; one
            // that does not decode is no client's name).
            let key = match sealer.map(|s| s.real_name(&stored)) {
                Some(Err(_)) => continue,
                Some(Ok(Some(real))) => real,
                _ => stored.clone(),
            };
            if rules.find(&key).is_some() {
                continue;
            }
            looked += 1;
            // Not a string (WRONGTYPE): no envelope.
            if bulk(&c.cmd(&[own::GET.as_bytes(), &stored]).await?).is_some_and(|v| crypto::is_sealed(&v)) {
                found += 1;
            }
        }
    }
    Ok((looked, found))
}
