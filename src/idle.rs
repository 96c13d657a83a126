//! What a worker thread does when it runs out of work: yield the CPU once
//! before waiting for I/O, unless CPU-bound neighbours make that costly.
//!
//! The work that produces a worker's next events (a client preparing its next
//! request, Redis answering the last batch) often runs on the same cores as
//! the proxy. Yielding lets it run while the worker stays runnable, so the
//! worker's `epoll_wait` then usually finds events ready instead of putting
//! the thread to sleep and waking it again, which on a virtual machine is the
//! most expensive thing the proxy does. With idle cores the yield returns at
//! once: one syscall per wait.
//!
//! Measured with `bench/ab.sh` on the 2-vCPU benchmark machine (median of 5,
//! same run): depth 1 GET/SET 70.9k/71.6k -> 81.7k/83.8k rps (proxy CPU 11.3
//! -> 9.6 us/req); depth 16 338k/349k -> 390k/397k rps. Yielding twice
//! measured the same as once.
//!
//! The guard: a yield gives way to a CPU-bound thread (one that never
//! blocks) for that thread's whole time slice, milliseconds, while a sleeping
//! worker would have been woken and run at once when its events came. With
//! two busy loops on the 2-vCPU machine, 50 clients at depth 1 fell from 26k
//! to 14k rps with yielding always on. So each worker watches how long its
//! yields take: when an eighth of a window of 256 took a millisecond or more,
//! it stops yielding for a pause (100 ms, doubling while each next window is
//! as bad, up to 10 s) and then tries again. With busy loops on the machine,
//! a third of the yields are that slow. Without them, about 1% are (the
//! client or Redis had a large batch to process), but in bursts: the short
//! first pause keeps a burst from costing much.

use std::time::{Duration, Instant};

/// A yield that took at least this long gave way to something CPU-bound.
const SLOW: Duration = Duration::from_millis(1);
/// Yields judged together.
const WINDOW: u32 = 256;
/// Slow yields in one window that pause yielding.
const SLOW_LIMIT: u32 = WINDOW / 8;
const PAUSE_MIN: Duration = Duration::from_millis(100);
const PAUSE_MAX: Duration = Duration::from_secs(10);

/// One worker thread's yielding state.
#[derive(Debug)]
pub struct IdleYield {
    paused_until: Option<Instant>,
    /// The next pause's length.
    pause: Duration,
    yields: u32,
    slow: u32,
}

impl Default for IdleYield {
    fn default() -> Self {
        IdleYield { paused_until: None, pause: PAUSE_MIN, yields: 0, slow: 0 }
    }
}

impl IdleYield {
    /// Called just before the worker waits for I/O.
    pub fn before_wait(&mut self) {
        let start = Instant::now();
        if !self.should_yield(start) {
            return;
        }
        std::thread::yield_now();
        let end = Instant::now();
        self.record(end - start, end);
    }

    /// Whether to yield at `now`.
    fn should_yield(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(until) if now < until => false,
            Some(_) => {
                self.paused_until = None;
                true
            }
            None => true,
        }
    }

    /// Account for one yield that took `took`, ending at `now`.
    fn record(&mut self, took: Duration, now: Instant) {
        self.yields += 1;
        if took >= SLOW {
            self.slow += 1;
        }
        if self.slow >= SLOW_LIMIT {
            self.paused_until = Some(now + self.pause);
            self.pause = (self.pause * 2).min(PAUSE_MAX);
        } else if self.yields >= WINDOW {
            self.pause = PAUSE_MIN;
        } else {
            return;
        }
        self.yields = 0;
        self.slow = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(20);
    const HOG: Duration = Duration::from_millis(3);

    /// Feed `took` for every yield the state allows, `n` times, starting at
    /// `t`; each yield and wait takes 100 us. Returns how many were yields.
    fn run(y: &mut IdleYield, t: &mut Instant, n: usize, took: impl Fn(usize) -> Duration) -> usize {
        let mut yielded = 0;
        for i in 0..n {
            if y.should_yield(*t) {
                yielded += 1;
                let d = took(i);
                *t += d;
                y.record(d, *t);
            }
            *t += Duration::from_micros(100);
        }
        yielded
    }

    #[test]
    fn fast_yields_and_occasional_slow_ones_never_pause() {
        let mut y = IdleYield::default();
        let mut t = Instant::now();
        assert_eq!(run(&mut y, &mut t, 10_000, |_| FAST), 10_000);
        // One in ten slow: about 26 per window, under the limit of 32.
        assert_eq!(run(&mut y, &mut t, 10_000, |i| if i % 10 == 0 { HOG } else { FAST }), 10_000);
        assert!(y.paused_until.is_none());
    }

    #[test]
    fn cpu_bound_neighbours_pause_yielding_with_a_growing_pause() {
        let limit = SLOW_LIMIT as usize;
        let mut y = IdleYield::default();
        let mut t = Instant::now();
        // A limit's worth of slow yields in a row pauses yielding.
        assert_eq!(run(&mut y, &mut t, limit, |_| HOG), limit);
        let until = y.paused_until.expect("paused");
        assert!(until > t && until <= t + PAUSE_MIN);
        assert!(!y.should_yield(t + PAUSE_MIN / 2));
        // Within the pause nothing yields; after it, probing resumes, and a
        // second bad window pauses twice as long.
        assert_eq!(run(&mut y, &mut t, 500, |_| HOG), 0);
        t = until;
        assert_eq!(run(&mut y, &mut t, limit, |_| HOG), limit);
        let second = y.paused_until.expect("paused again") - t;
        assert!(second > PAUSE_MIN * 2 - Duration::from_millis(5) && second <= PAUSE_MIN * 2, "{second:?}");
        // The pause doubles up to its cap.
        for _ in 0..20 {
            t = y.paused_until.expect("paused");
            run(&mut y, &mut t, limit, |_| HOG);
        }
        assert!(y.paused_until.expect("paused") - t <= PAUSE_MAX);
        assert_eq!(y.pause, PAUSE_MAX);
        // A good window after a pause resets it.
        t = y.paused_until.expect("paused");
        assert_eq!(run(&mut y, &mut t, WINDOW as usize, |_| FAST), WINDOW as usize);
        assert_eq!(y.pause, PAUSE_MIN);
        assert!(y.paused_until.is_none());
    }

    #[test]
    fn before_wait_yields_and_records() {
        let mut y = IdleYield::default();
        for _ in 0..10 {
            y.before_wait();
        }
        // Ten yields cannot reach the limit of slow ones, however busy the
        // test machine is.
        assert_eq!(y.yields, 10);
        assert!(y.paused_until.is_none());
    }
}
