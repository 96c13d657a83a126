//! The backend URL: `redis[s]://[user[:password]@]host[:port][/db]`
//! (`rediss://`: TLS, configured in `[backend_tls]`),
//! `redis-sentinel://…/service[/db]` and
//! `redis[s]-cluster://[user[:password]@]host:port[,host:port…]`.

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
    /// `redis-sentinel://`: the master is found through these sentinels
    /// (`addr` is then the first sentinel's, never connected to for data).
    pub sentinel: Option<SentinelTarget>,
    /// `redis-cluster://`: the seed nodes of a Redis Cluster (`addr` is the
    /// first seed's).
    pub cluster: Option<Vec<String>>,
}

/// The sentinels and the service name of a `redis-sentinel://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelTarget {
    /// `host:port` of each sentinel.
    pub nodes: Vec<String>,
    /// The master's name as the sentinels know it (`sentinel monitor NAME …`).
    pub service: String,
}

impl BackendUrl {
    /// The host part of `addr` (what a TLS certificate is checked against
    /// unless `backend_tls.server_name` says otherwise).
    pub fn host(&self) -> &str {
        host_of(&self.addr)
    }

    /// Parse a URL; the error says what is wrong without echoing a password.
    pub fn parse(url: &str) -> Result<Self, String> {
        for (scheme, tls) in [("redis-sentinel://", false), ("rediss-sentinel://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                return Self::parse_sentinel(rest, tls);
            }
        }
        for (scheme, tls) in [("redis-cluster://", false), ("rediss-cluster://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                return Self::parse_cluster(rest, tls);
            }
        }
        let (rest, tls) = if let Some(r) = url.strip_prefix("redis://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (r, true)
        } else {
            return Err("backend URL must start with redis://, rediss://, redis-sentinel://, rediss-sentinel://, \
                 redis-cluster:// or rediss-cluster://"
                .into());
        };
        let (auth, hostpart) = split_auth(rest);
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
        Ok(BackendUrl { addr, username, password, db, tls, sentinel: None, cluster: None })
    }

    /// The user and password of a topology URL's `user:pass@` part, read
    /// as a plain URL's.
    fn credentials(auth: Option<&str>) -> Result<Self, String> {
        match auth {
            Some(a) => Self::parse(&format!("redis://{a}@x")),
            None => Self::parse("redis://x"),
        }
    }

    /// `[user:pass@]host:port[,host:port…]` (a cluster has database 0 only).
    fn parse_cluster(rest: &str, tls: bool) -> Result<Self, String> {
        let (auth, hosts) = split_auth(rest);
        let hosts = hosts.trim_end_matches('/');
        if hosts.contains('/') {
            return Err("a redis-cluster:// URL has no database: Redis Cluster has database 0 only".into());
        }
        let mut seeds = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            seeds.push(Self::parse(&format!("redis://{h}"))?.addr);
        }
        if seeds.is_empty() {
            return Err("redis-cluster:// needs at least one seed host:port".into());
        }
        let creds = Self::credentials(auth)?;
        Ok(BackendUrl {
            addr: seeds[0].clone(),
            username: creds.username,
            password: creds.password,
            db: 0,
            tls,
            sentinel: None,
            cluster: Some(seeds),
        })
    }

    /// `[user:pass@]host:port[,host:port…]/service_name[/db]`.
    /// With `tls` (`rediss-sentinel://`), the sentinels and the master
    /// both speak TLS.
    fn parse_sentinel(rest: &str, tls: bool) -> Result<Self, String> {
        let (auth, hostpart) = split_auth(rest);
        let mut parts = hostpart.splitn(3, '/');
        let hosts = parts.next().unwrap_or_default();
        let service = parts.next().filter(|s| !s.is_empty()).ok_or("redis-sentinel:// needs /service_name")?;
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse::<u32>().map_err(|_| format!("invalid database number {d:?} in backend URL"))?,
        };
        let mut nodes = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            // Each sentinel parsed like a plain host (default port 26379).
            let one = Self::parse(&format!("redis://{h}"))?;
            nodes.push(if h.contains(':') && !h.ends_with(']') { one.addr } else { format!("{h}:26379") });
        }
        if nodes.is_empty() {
            return Err("redis-sentinel:// needs at least one sentinel host:port".into());
        }
        let creds = Self::credentials(auth)?;
        Ok(BackendUrl {
            addr: nodes[0].clone(),
            username: creds.username,
            password: creds.password,
            db,
            tls,
            sentinel: Some(SentinelTarget { nodes, service: service.to_string() }),
            cluster: None,
        })
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl BackendUrl {
    /// `user:[REDACTED]@` for a topology URL with a password.
    fn write_redacted(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.password {
            Some(_) => write!(f, "{}:[REDACTED]@", self.username.as_deref().unwrap_or("")),
            None => Ok(()),
        }
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.sentinel {
            write!(f, "{}", if self.tls { "rediss-sentinel://" } else { "redis-sentinel://" })?;
            self.write_redacted(f)?;
            return write!(f, "{}/{}/{}", s.nodes.join(","), s.service, self.db);
        }
        if let Some(seeds) = &self.cluster {
            write!(f, "{}", if self.tls { "rediss-cluster://" } else { "redis-cluster://" })?;
            self.write_redacted(f)?;
            return write!(f, "{}", seeds.join(","));
        }
        write!(f, "{}", if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:[REDACTED]@")?,
            (None, Some(_)) => write!(f, ":[REDACTED]@")?,
            _ => {}
        }
        write!(f, "{}/{}", self.addr, self.db)
    }
}

/// `[user:pass@]rest` split at the last `@`.
fn split_auth(rest: &str) -> (Option<&str>, &str) {
    match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    }
}

/// The host of a `host:port` address, IPv6 brackets removed.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']')
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
    fn parses_sentinel_urls() {
        let u = BackendUrl::parse("redis-sentinel://:pw@127.0.0.1:26379,10.0.0.2/mymaster/2").expect("valid");
        let s = u.sentinel.as_ref().expect("sentinel");
        assert_eq!(s.nodes, vec!["127.0.0.1:26379".to_string(), "10.0.0.2:26379".to_string()]);
        assert_eq!((s.service.as_str(), u.db, u.password.as_deref()), ("mymaster", 2, Some("pw")));
        assert!(!u.to_string().contains("pw") && u.to_string().contains("mymaster"));
        assert!(BackendUrl::parse("redis-sentinel://h:1").is_err());
        let u = BackendUrl::parse("rediss-sentinel://h:26380/m").expect("valid");
        assert!(u.tls && u.to_string() == "rediss-sentinel://h:26380/m/0");
        assert!(BackendUrl::parse("redis-sentinel:///m").is_err());
    }

    #[test]
    fn parses_cluster_urls() {
        let u = BackendUrl::parse("redis-cluster://app:pw@127.0.0.1:7000,127.0.0.1:7001").expect("valid");
        assert_eq!(u.cluster.as_deref(), Some(&["127.0.0.1:7000".to_string(), "127.0.0.1:7001".to_string()][..]));
        assert_eq!(
            (u.addr.as_str(), u.username.as_deref(), u.password.as_deref(), u.tls),
            ("127.0.0.1:7000", Some("app"), Some("pw"), false)
        );
        assert_eq!(u.to_string(), "redis-cluster://app:[REDACTED]@127.0.0.1:7000,127.0.0.1:7001");
        let u = BackendUrl::parse("rediss-cluster://h:7000/").expect("valid");
        assert!(u.tls && u.cluster.is_some());
        assert!(BackendUrl::parse("redis-cluster://h:7000/1").is_err());
        assert!(BackendUrl::parse("redis-cluster://").is_err());
    }

    #[test]
    fn password_is_redacted() {
        let u = BackendUrl::parse("redis://app:topsecret@h:1/2").expect("valid");
        assert!(!format!("{u:?} {u}").contains("topsecret"));
    }
}
