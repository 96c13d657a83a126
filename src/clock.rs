//! The clock every seal and open reads: whole unix seconds, refreshed by a
//! background thread (reading the system clock per value cost about 2% of
//! the proxy's CPU), never a time before 1970.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since 1970 at `t`; a time before 1970 is an error, never 0 (a
/// value stamped 0 would be decades old, or make every value look fresh).
pub fn unix_seconds(t: SystemTime) -> Result<u64, String> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "the system clock reads a time before 1970: sealed values need a correct clock".to_string())
}

/// Checked once at start: respseal does not run on a clock before 1970.
pub fn check_clock() -> Result<u64, String> {
    unix_seconds(SystemTime::now())
}

/// The clock, or the last good reading if it jumped before 1970 since the
/// start check.
fn system_unix() -> u64 {
    static LAST_GOOD: AtomicU64 = AtomicU64::new(0);
    match unix_seconds(SystemTime::now()) {
        Ok(t) => {
            LAST_GOOD.store(t, Ordering::Relaxed);
            t
        }
        Err(_) => LAST_GOOD.load(Ordering::Relaxed),
    }
}

/// Current unix time in seconds, at most [`CLOCK_TICK`] old.
///
/// Every seal and open needs the time, in whole seconds; reading the system
/// clock for each cost about 2% of the proxy's CPU under load. A background
/// thread refreshes a shared value instead.
pub fn now_unix() -> u64 {
    static NOW: AtomicU64 = AtomicU64::new(0);
    static TICKER: Once = Once::new();
    static DIRECT: AtomicBool = AtomicBool::new(false);
    TICKER.call_once(|| {
        NOW.store(system_unix(), Ordering::Relaxed);
        let ticker = std::thread::Builder::new().name("respseal-clock".into()).spawn(|| {
            loop {
                std::thread::sleep(CLOCK_TICK);
                NOW.store(system_unix(), Ordering::Relaxed);
            }
        });
        if ticker.is_err() {
            DIRECT.store(true, Ordering::Relaxed);
        }
    });
    if DIRECT.load(Ordering::Relaxed) { system_unix() } else { NOW.load(Ordering::Relaxed) }
}

/// How often [`now_unix`]'s clock is refreshed.
pub const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(100);

#[cfg(test)]
mod tests {
    #[test]
    fn a_clock_before_1970_is_an_error_not_zero() {
        use std::time::{Duration, UNIX_EPOCH};
        assert!(super::unix_seconds(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert_eq!(super::unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), Ok(5));
        assert!(super::check_clock().is_ok());
    }
}
