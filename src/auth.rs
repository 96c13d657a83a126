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
