//! Opening one backend connection: TCP connect with a deadline, then a
//! pipelined handshake (AUTH from the URL, HELLO 3 for RESP3 groups, SELECT)
//! whose replies are all checked before the connection is handed out.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::{BackendStream, ReadHalf, WriteHalf};
use super::url::BackendUrl;
use crate::commands::own;
use crate::protocol::frame::Frame;
use crate::protocol::{Proto, encode, reply};
use crate::tls::BackendTls;

pub use crate::error::BackendError;

/// Settings every backend connection is opened with.
#[derive(Debug)]
pub struct ConnSettings {
    /// Where Redis is and how to log in.
    pub url: BackendUrl,
    /// Deadline for TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the next reply while commands are in flight (none:
    /// wait forever).
    pub command_timeout: Option<Duration>,
    /// TLS towards Redis (`rediss://`).
    pub tls: Option<BackendTls>,
    /// Where the master is, behind Sentinel (`redis-sentinel://`).
    pub topology: Option<Arc<super::topology::Topology>>,
    /// Where each slot is, behind Redis Cluster (`redis-cluster://`).
    pub cluster: Option<Arc<super::cluster::Cluster>>,
    /// Requests running code in Redis now, through any worker.
    pub code: Arc<CodeRunning>,
    /// Behind Redis Cluster, for a node's links: the slot map that must
    /// keep naming the node for its links to live (see
    /// [`super::cluster::Cluster::names`]).
    pub member_of: Option<Arc<super::cluster::Cluster>>,
}

/// How many requests that run code in Redis (scripts, functions) are in
/// flight through respseal now, across workers. While one is, Redis may
/// answer nobody until its `busy-reply-threshold` passes (and then `BUSY`
/// until the code ends or is killed): a link waiting for Redis then waits
/// as a direct client would, and its command timeout does not fire.
#[derive(Debug, Default)]
pub struct CodeRunning(std::sync::atomic::AtomicUsize);

impl CodeRunning {
    /// A request that runs code was sent.
    pub fn start(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Its reply came (or it failed).
    pub fn end(&self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether any is in flight.
    pub fn any(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

impl ConnSettings {
    /// The epoch of the master connections are opened to now (Sentinel):
    /// cancelled when that server stops being the master. Taken before
    /// opening, so a switch during the open cancels the new connection too.
    pub fn epoch(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.topology.as_ref().map(|t| t.epoch())
    }

    /// The settings for one node of a cluster: the same credentials and
    /// TLS (checked against the node's own host, see [`open`]).
    pub fn for_node(&self, addr: &str) -> ConnSettings {
        let mut url = self.url.clone();
        url.addr = addr.to_string();
        ConnSettings {
            url,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            tls: self.tls.clone(),
            topology: None,
            cluster: None,
            code: Arc::clone(&self.code),
            member_of: self.cluster.clone(),
        }
    }
}

/// A dedicated link: one backend connection owned by one session.
pub struct Dedicated {
    /// Read half.
    pub rd: ReadHalf,
    /// Write half.
    pub wr: WriteHalf,
    /// Bytes read from Redis not yet consumed (may hold the start of a
    /// reply that arrived with the handshake replies).
    pub buf: BytesMut,
    /// Behind Sentinel: ends when this server stops being the master.
    pub epoch: Option<tokio_util::sync::CancellationToken>,
}

/// Connect and handshake.
pub async fn open(
    settings: &Arc<ConnSettings>,
    db: u32,
    proto: Proto,
) -> Result<(BackendStream, BytesMut), BackendError> {
    tokio::time::timeout(settings.connect_timeout, open_inner(settings, db, proto))
        .await
        .map_err(|_| BackendError::Timeout)?
}

async fn open_inner(settings: &ConnSettings, db: u32, proto: Proto) -> Result<(BackendStream, BytesMut), BackendError> {
    let addr = match &settings.topology {
        Some(t) => t.master().ok_or_else(|| BackendError::Connect("no master known to the sentinels yet".into()))?,
        None => settings.url.addr.clone(),
    };
    let tcp = TcpStream::connect(&addr).await.map_err(|e| BackendError::Connect(e.kind().to_string()))?;
    tcp.set_nodelay(true).map_err(|e| BackendError::Connect(e.kind().to_string()))?;
    let mut stream = match &settings.tls {
        None => BackendStream::Tcp(tcp),
        Some(tls) => {
            // Unless a name is set, the certificate is checked against the
            // host connected to: the URL's, the master the sentinels named,
            // or the cluster node.
            let name = match tls.named {
                true => tls.server_name.clone(),
                false => rustls::pki_types::ServerName::try_from(super::url::host_of(&addr).to_string())
                    .unwrap_or_else(|_| tls.server_name.clone()),
            };
            let s = tls.connector().connect(name, tcp).await.map_err(|e| {
                // rustls's words (certificate problems), never key material.
                BackendError::Connect(format!("TLS: {e}"))
            })?;
            BackendStream::Tls(Box::new(s))
        }
    };

    let url = &settings.url;
    let mut hs = BytesMut::new();
    let mut total = 0usize;
    match (&url.username, &url.password) {
        (Some(u), Some(p)) => {
            hs.extend_from_slice(&encode::command(&[own::AUTH, u.as_str(), p.as_str()]));
            total += 1;
        }
        (None, Some(p)) => {
            hs.extend_from_slice(&encode::command(&[own::AUTH, p.as_str()]));
            total += 1;
        }
        _ => {}
    }
    if proto == Proto::Resp3 {
        hs.extend_from_slice(&encode::command(&[own::HELLO, "3"]));
        total += 1;
    }
    if db != 0 {
        hs.extend_from_slice(&encode::command(&[own::SELECT, &db.to_string()]));
        total += 1;
    }
    if total == 0 && settings.topology.is_none() {
        return Ok((stream, BytesMut::new()));
    }
    stream.write_all(&hs).await.map_err(|_| BackendError::Lost)?;

    let mut buf = BytesMut::with_capacity(4096);
    for _ in 0..total {
        // The handshake may switch the connection to RESP3 mid-way; RESP3
        // scanning accepts every RESP2 reply too.
        let frame = read_frame(&mut stream, &mut buf, Proto::Resp3).await?.freeze();
        if let Some(line) = Frame::new(&frame, Proto::Resp3).error_line() {
            let msg = String::from_utf8_lossy(line).into_owned();
            if msg.starts_with("BUSY ") {
                return Err(BackendError::Busy(msg));
            }
            return Err(BackendError::Handshake(msg));
        }
    }
    if settings.topology.is_some() {
        // A sentinel's answer may be stale: use only a master.
        stream.write_all(&encode::command(&[own::ROLE])).await.map_err(|_| BackendError::Lost)?;
        let frame = read_frame(&mut stream, &mut buf, Proto::Resp3).await?.freeze();
        if !role_is_master(&frame) {
            return Err(BackendError::Handshake("the server the sentinels named is not a master".into()));
        }
    }
    Ok((stream, buf))
}

/// Whether a `ROLE` reply says "master": its first element, exactly (a
/// replica's reply names its master's host, which may well be
/// `master-0.redis`; a sentinel's lists the services it watches).
pub fn role_is_master(frame: &Bytes) -> bool {
    let role =
        Frame::new(frame, Proto::Resp3).elements().and_then(|els| Frame::new(els.first()?, Proto::Resp3).payload());
    role.is_some_and(|r| r == "master")
}

/// The next complete reply frame on `stream`, reading into `buf` (which
/// keeps whatever follows it) as needed.
pub(crate) async fn read_frame(
    stream: &mut BackendStream,
    buf: &mut BytesMut,
    proto: Proto,
) -> Result<BytesMut, BackendError> {
    loop {
        match reply::frame_len(buf, proto) {
            Ok(Some(len)) => return Ok(buf.split_to(len)),
            Ok(None) => {
                if stream.read_buf(buf).await.map_err(|_| BackendError::Lost)? == 0 {
                    return Err(BackendError::Lost);
                }
            }
            Err(e) => return Err(BackendError::Handshake(e.to_string())),
        }
    }
}

/// Open a dedicated link.
pub async fn dedicated(settings: &Arc<ConnSettings>, db: u32, proto: Proto) -> Result<Dedicated, BackendError> {
    let epoch = settings.epoch();
    let (stream, buf) = open(settings, db, proto).await?;
    let (rd, wr) = stream.into_split();
    Ok(Dedicated { rd, wr, buf, epoch })
}

/// Send one command on a connection opened for it (AUTH only: no SELECT or
/// HELLO, which Redis refuses while a script is busy) and return its reply.
pub async fn oneshot(settings: &Arc<ConnSettings>, command: &[u8]) -> Result<Bytes, BackendError> {
    let run = async {
        let (mut stream, mut buf) = open_inner(settings, 0, Proto::Resp2).await?;
        stream.write_all(command).await.map_err(|_| BackendError::Lost)?;
        read_frame(&mut stream, &mut buf, Proto::Resp2).await.map(BytesMut::freeze)
    };
    tokio::time::timeout(settings.connect_timeout, run).await.map_err(|_| BackendError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::role_is_master;

    #[test]
    fn only_a_master_says_master_first() {
        let role_is_master = |b: &'static [u8]| role_is_master(&bytes::Bytes::from_static(b));
        assert!(role_is_master(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"));
        assert!(role_is_master(
            b"*3\r\n$6\r\nmaster\r\n:3129\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$4\r\n3129\r\n"
        ));
        // A replica of a master whose host name starts with "master".
        assert!(!role_is_master(
            b"*5\r\n$5\r\nslave\r\n$14\r\nmaster-0.redis\r\n:6379\r\n$9\r\nconnected\r\n:3167\r\n"
        ));
        assert!(!role_is_master(b"*5\r\n$5\r\nslave\r\n$6\r\nmaster\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n"));
        // A sentinel watching a service called "master".
        assert!(!role_is_master(b"*2\r\n$8\r\nsentinel\r\n*1\r\n$6\r\nmaster\r\n"));
        assert!(!role_is_master(b"-ERR unknown command 'ROLE'\r\n"));
        assert!(!role_is_master(b"*1\r\n$7\r\nmasters\r\n"));
        assert!(!role_is_master(b""));
    }
}
