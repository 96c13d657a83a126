//! The backend URL: `redis[s]://[user[:password]@]host[:port][/db]`
//! (`rediss://`: TLS, configured in `[backend_tls]`).

use std::fmt;

/// A parsed backend URL. The password never appears in `Debug` or
/// `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendUrl {
    /// `host:port` to connect to.
    pub addr: String,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database selected on every backend connection by default.
    pub db: u32,
    /// `rediss://`: connections speak TLS.
    pub tls: bool,
}

impl BackendUrl {
    /// The host part of `addr` (what a TLS certificate is checked against
    /// unless `backend_tls.server_name` says otherwise).
    pub fn host(&self) -> &str {
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Parse a URL; the error says what is wrong without echoing a password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = if let Some(r) = url.strip_prefix("redis://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (r, true)
        } else {
            return Err("backend URL must start with redis:// or rediss://".into());
        };
        let (auth, hostpart) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((hp, "")) => (hp, 0),
            Some((hp, db)) => {
                (hp, db.parse::<u32>().map_err(|_| format!("invalid database number {db:?} in backend URL"))?)
            }
            None => (hostpart, 0),
        };
        if hostport.is_empty() {
            return Err("backend URL has no host".into());
        }
        let addr = if hostport.starts_with('[') {
            if hostport.contains("]:") { hostport.to_string() } else { format!("{hostport}:6379") }
        } else if hostport.contains(':') {
            let (_, port) = hostport.rsplit_once(':').unwrap_or_default();
            port.parse::<u16>().map_err(|_| format!("invalid port {port:?} in backend URL"))?;
            hostport.to_string()
        } else {
            format!("{hostport}:6379")
        };
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => {
                let (u, p) = match a.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (a, None),
                };
                let u = percent_decode(u).ok_or("invalid percent-encoding in backend URL user")?;
                let p = match p {
                    Some(p) => Some(percent_decode(p).ok_or("invalid percent-encoding in backend URL password")?),
                    None => None,
                };
                match (u.is_empty(), p) {
                    // redis://:password@host — password only (legacy AUTH).
                    (true, p) => (None, p),
                    // redis://user@host — a password without user name.
                    (false, None) => (None, Some(u)),
                    (false, Some(p)) => (Some(u), Some(p)),
                }
            }
        };
        Ok(BackendUrl { addr, username, password, db, tls })
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:[REDACTED]@")?,
            (None, Some(_)) => write!(f, ":[REDACTED]@")?,
            _ => {}
        }
        write!(f, "{}/{}", self.addr, self.db)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = BackendUrl::parse("redis://127.0.0.1:6379").expect("valid");
        assert_eq!(
            (u.addr.as_str(), u.db, u.username.as_deref(), u.password.as_deref()),
            ("127.0.0.1:6379", 0, None, None)
        );
        let u = BackendUrl::parse("redis://app:s%40cret@localhost:7000/3").expect("valid");
        assert_eq!(
            (u.addr.as_str(), u.db, u.username.as_deref(), u.password.as_deref()),
            ("localhost:7000", 3, Some("app"), Some("s@cret"))
        );
        let u = BackendUrl::parse("redis://:pw@h").expect("valid");
        assert_eq!((u.addr.as_str(), u.username, u.password.as_deref()), ("h:6379", None, Some("pw")));
        assert!(BackendUrl::parse("http://x").is_err());
        let u = BackendUrl::parse("rediss://h:6390/1").expect("valid");
        assert!(u.tls && u.addr == "h:6390" && u.to_string() == "rediss://h:6390/1");
        assert!(BackendUrl::parse("redis://h:notaport").is_err());
        assert!(BackendUrl::parse("redis://h/x").is_err());
    }

    #[test]
    fn password_is_redacted() {
        let u = BackendUrl::parse("redis://app:topsecret@h:1/2").expect("valid");
        assert!(!format!("{u:?} {u}").contains("topsecret"));
    }
}
