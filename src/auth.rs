//! The proxy's own users: what `AUTH` and `HELLO … AUTH` from clients are
//! checked against. They are separate from the credentials respseal uses
//! towards Redis (in the backend URL), and never forwarded.
//!
//! With no users configured the proxy behaves like a Redis whose `default`
//! user has no password. Passwords are held only as SHA-256 digests and
//! compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// One configured user. The digest is wiped from memory when the user is
/// dropped (it is all a password guess needs to be checked offline).
pub struct User {
    name: String,
    /// SHA-256 of the name, computed once: names are compared in constant
    /// time through it.
    name_digest: [u8; 32],
    digest: Zeroizing<[u8; 32]>,
}

impl User {
    /// A user with the given password (the caller wipes its own copy).
    pub fn new(name: String, password: &[u8]) -> Self {
        let name_digest = Sha256::digest(name.as_bytes()).into();
        User { name, name_digest, digest: Zeroizing::new(Sha256::digest(password).into()) }
    }

    /// The user name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({}, [REDACTED])", self.name)
    }
}

/// The proxy's users.
#[derive(Debug, Default)]
pub struct Users {
    users: Vec<User>,
}

/// Result of an authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Accepted.
    Ok,
    /// Wrong user name or password.
    WrongPass,
    /// `AUTH <password>` while no password is configured.
    NoPasswordConfigured,
    /// Wrong number of arguments.
    Syntax,
    /// Too many attempts from this address: refused without being checked.
    Throttled,
}

impl AuthOutcome {
    /// The error line Redis would send for this outcome.
    pub fn message(self, command: &str) -> &'static str {
        match self {
            AuthOutcome::Ok => "OK",
            AuthOutcome::WrongPass => "WRONGPASS invalid username-password pair or user is disabled.",
            AuthOutcome::NoPasswordConfigured => {
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
            }
            AuthOutcome::Syntax if command == "hello" => "ERR Syntax error in HELLO option 'AUTH'",
            AuthOutcome::Syntax => "ERR wrong number of arguments for 'auth' command",
            AuthOutcome::Throttled => {
                "ERR respseal: too many failed AUTH attempts from this address; try again in a few seconds"
            }
        }
    }
}

impl Users {
    /// The given users.
    pub fn new(users: Vec<User>) -> Self {
        Users { users }
    }

    /// Whether clients must authenticate before other commands.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Check a user name (None = `default`) and password.
    pub fn check(&self, user: Option<&[u8]>, password: &[u8]) -> AuthOutcome {
        if self.users.is_empty() {
            // Like Redis's `default` user with `nopass`.
            return match user {
                None => AuthOutcome::NoPasswordConfigured,
                Some(b"default") => AuthOutcome::Ok,
                Some(_) => AuthOutcome::WrongPass,
            };
        }
        let name = user.unwrap_or(b"default");
        let digest: Zeroizing<[u8; 32]> = Zeroizing::new(Sha256::digest(password).into());
        let name_digest: [u8; 32] = Sha256::digest(name).into();
        let mut ok = subtle::Choice::from(0);
        for u in &self.users {
            // Every user is compared, names and passwords in constant time,
            // so an unknown user costs the same as a wrong password and
            // timing does not reveal which user exists or matched.
            ok |= u.name_digest.ct_eq(&name_digest) & u.digest.ct_eq(&*digest);
        }
        if bool::from(ok) { AuthOutcome::Ok } else { AuthOutcome::WrongPass }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_users_behaves_like_nopass_default() {
        let u = Users::default();
        assert!(!u.required());
        assert_eq!(u.check(None, b"x"), AuthOutcome::NoPasswordConfigured);
        assert_eq!(u.check(Some(b"default"), b"x"), AuthOutcome::Ok);
        assert_eq!(u.check(Some(b"bob"), b"x"), AuthOutcome::WrongPass);
    }

    #[test]
    fn checks_configured_users() {
        let u = Users::new(vec![User::new("default".into(), b"pw1"), User::new("app".into(), b"pw2")]);
        assert!(u.required());
        assert_eq!(u.check(None, b"pw1"), AuthOutcome::Ok);
        assert_eq!(u.check(Some(b"app"), b"pw2"), AuthOutcome::Ok);
        assert_eq!(u.check(Some(b"app"), b"pw1"), AuthOutcome::WrongPass);
        assert_eq!(u.check(None, b"nope"), AuthOutcome::WrongPass);
        assert!(!format!("{u:?}").contains("pw1"));
    }
}

/// Failed AUTH attempts one source address gets at once.
pub const THROTTLE_BURST: f64 = 10.0;
/// Attempts per second one source address gets once its burst is spent.
pub const THROTTLE_PER_SEC: f64 = 2.0;
/// Longest an attempt waits for its turn; past it the attempt is refused
/// without being checked.
pub const THROTTLE_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Addresses remembered at most (those back at a full burst are forgotten
/// first).
const THROTTLE_ADDRESSES: usize = 65_536;

/// AUTH guessing slowed per source address, across connections: a token
/// bucket per address ([`THROTTLE_BURST`], refilled at
/// [`THROTTLE_PER_SEC`]). Every attempt takes a token before its password
/// is checked, and a correct one gives it back, so clients that know their
/// password are never slowed unless their address is guessing at the same
/// time. Shared by every worker (a std mutex: only AUTH takes it, never a
/// command).
#[derive(Debug, Default)]
pub struct AuthThrottle {
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    fn refill(&mut self, now: std::time::Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * THROTTLE_PER_SEC;
        self.tokens = (self.tokens + gained).min(THROTTLE_BURST);
        self.at = now;
    }
}

impl AuthThrottle {
    /// Reserve an attempt for `ip`: how long to wait before checking it, or
    /// `None` when it would wait longer than [`THROTTLE_MAX_WAIT`] (refused
    /// unchecked).
    pub fn take(&self, ip: std::net::IpAddr, now: std::time::Instant) -> Option<std::time::Duration> {
        let mut map = self.buckets.lock().expect("throttle lock is never poisoned: no panics while held");
        if map.len() >= THROTTLE_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, b| {
                b.refill(now);
                b.tokens < THROTTLE_BURST
            });
            if map.len() >= THROTTLE_ADDRESSES {
                // Every address is guessing: forget one rather than grow.
                if let Some(k) = map.keys().next().copied() {
                    map.remove(&k);
                }
            }
        }
        let b = map.entry(ip).or_insert(Bucket { tokens: THROTTLE_BURST, at: now });
        b.refill(now);
        let wait = if b.tokens >= 1.0 { 0.0 } else { (1.0 - b.tokens) / THROTTLE_PER_SEC };
        let wait = std::time::Duration::from_secs_f64(wait);
        if wait > THROTTLE_MAX_WAIT {
            return None;
        }
        b.tokens -= 1.0;
        Some(wait)
    }

    /// The attempt reserved for `ip` succeeded: its token comes back.
    pub fn give_back(&self, ip: std::net::IpAddr) {
        let mut map = self.buckets.lock().expect("throttle lock is never poisoned: no panics while held");
        if let Some(b) = map.get_mut(&ip) {
            b.tokens = (b.tokens + 1.0).min(THROTTLE_BURST);
        }
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_then_the_documented_rate_then_refusal() {
        let t = AuthThrottle::default();
        let ip: std::net::IpAddr = [10, 0, 0, 1].into();
        let other: std::net::IpAddr = [10, 0, 0, 2].into();
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.take(ip, now), Some(Duration::ZERO));
        }
        // Then one every half second, queued up to the maximum wait.
        assert_eq!(t.take(ip, now), Some(Duration::from_millis(500)));
        assert_eq!(t.take(ip, now), Some(Duration::from_millis(1000)));
        for _ in 0..8 {
            assert!(t.take(ip, now).is_some());
        }
        assert_eq!(t.take(ip, now), None, "past the longest wait");
        // Another address is not slowed; time refills.
        assert_eq!(t.take(other, now), Some(Duration::ZERO));
        assert_eq!(t.take(ip, now + Duration::from_secs(60)), Some(Duration::ZERO));
        // A success gives its token back.
        let later = now + Duration::from_secs(120);
        for _ in 0..20 {
            assert_eq!(t.take(other, later), Some(Duration::ZERO));
            t.give_back(other);
        }
    }
}
