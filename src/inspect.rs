//! `respseal inspect`: envelope metadata of the values under sealed names
//! (version, key id, age, whether re-sealed from legacy plaintext) read
//! straight from Redis. It never opens a value and never prints one.
//!
//! With `--resealed` only values re-sealed from legacy plaintext are listed
//! (the ones a forgery written during a migration could have become); with
//! `--drop-resealed` they are deleted, each with a compare-and-delete so a
//! value the application rewrote in the meantime is kept.

use std::sync::Arc;

use crate::backend::stream::BackendStream;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use crate::backend::BackendError;
use crate::backend::conn::{self, ConnSettings};
use crate::commands::own;
use crate::crypto;
use crate::protocol::frame::Frame;
use crate::protocol::{Proto, encode};

/// What to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Every value under the patterns.
    All,
    /// Only values re-sealed from legacy plaintext.
    Resealed,
    /// Re-sealed values, deleted.
    DropResealed,
}

/// Counts of what was found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Keys looked at.
    pub keys: u64,
    /// Sealed values.
    pub sealed: u64,
    /// Of which re-sealed from legacy plaintext.
    pub resealed: u64,
    /// Values without the envelope (legacy plaintext or foreign).
    pub plaintext: u64,
    /// Re-sealed values deleted.
    pub dropped: u64,
}

impl Summary {
    /// Both summaries together (one per master behind a cluster).
    pub fn merged(self, o: &Summary) -> Summary {
        Summary {
            keys: self.keys + o.keys,
            sealed: self.sealed + o.sealed,
            resealed: self.resealed + o.resealed,
            plaintext: self.plaintext + o.plaintext,
            dropped: self.dropped + o.dropped,
        }
    }
}

/// A minimal RESP2 connection for the operator commands (`inspect`,
/// `check`, `rewrap`), in the backend URL's database.
pub(crate) struct Conn {
    stream: BackendStream,
    buf: BytesMut,
}

impl Conn {
    /// Connect and log in as every backend connection does.
    pub(crate) async fn open(settings: &Arc<ConnSettings>) -> Result<Conn, BackendError> {
        Self::open_in(settings, settings.url.db).await
    }

    /// [`Conn::open`] in database `db`.
    pub(crate) async fn open_in(settings: &Arc<ConnSettings>, db: u32) -> Result<Conn, BackendError> {
        let (stream, buf) = conn::open(settings, db, Proto::Resp2).await?;
        Ok(Conn { stream, buf })
    }

    /// Send `requests` (already encoded) in one write and read `n` replies.
    pub(crate) async fn pipeline(&mut self, requests: &[u8], n: usize) -> Result<Vec<Bytes>, BackendError> {
        self.stream.write_all(requests).await.map_err(|_| BackendError::Lost)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.read_reply().await?);
        }
        Ok(out)
    }

    /// One page of `SCAN cursor MATCH pattern`: the next cursor and the keys.
    pub(crate) async fn scan_page(
        &mut self,
        cursor: &[u8],
        pattern: &str,
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>), BackendError> {
        let page = self.cmd(&[own::SCAN.as_bytes(), cursor, b"MATCH", pattern.as_bytes(), b"COUNT", b"1000"]).await?;
        let parts = Frame::new(&page, Proto::Resp2).elements().unwrap_or_default();
        let (Some(next), Some(keys)) = (parts.first().and_then(bulk), parts.get(1)) else {
            return Err(BackendError::Handshake("SCAN gave no cursor".into()));
        };
        Ok((next.to_vec(), bulks(keys)))
    }

    /// The next page of a `SCAN … MATCH pattern` walk over `walk`'s
    /// pattern; `None` once the walk is over.
    pub(crate) async fn next_keys(&mut self, walk: &mut KeyWalk<'_>) -> Result<Option<Vec<Vec<u8>>>, BackendError> {
        let Some(cursor) = walk.cursor.take() else { return Ok(None) };
        let (next, keys) = self.scan_page(&cursor, walk.pattern).await?;
        walk.cursor = (next != b"0").then_some(next);
        Ok(Some(keys))
    }

    /// One command; its whole reply frame.
    pub(crate) async fn cmd(&mut self, args: &[&[u8]]) -> Result<Bytes, BackendError> {
        self.stream.write_all(&encode::command(args)).await.map_err(|_| BackendError::Lost)?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Bytes, BackendError> {
        conn::read_frame(&mut self.stream, &mut self.buf, Proto::Resp2).await.map(BytesMut::freeze)
    }
}

/// A walk over the keys matching a pattern, page by page
/// ([`Conn::next_keys`]), from the start of the keyspace.
pub(crate) struct KeyWalk<'p> {
    pattern: &'p str,
    /// Where the next page starts; `None` once SCAN said it was done.
    cursor: Option<Vec<u8>>,
}

impl<'p> KeyWalk<'p> {
    /// A walk over the keys matching `pattern`.
    pub(crate) fn new(pattern: &'p str) -> Self {
        KeyWalk { pattern, cursor: Some(b"0".to_vec()) }
    }
}

/// The payload of a RESP2 bulk string (None for a null or anything else).
pub fn bulk(frame: &Bytes) -> Option<Bytes> {
    Frame::new(frame, Proto::Resp2).payload()
}

/// The elements of a RESP2 array of bulk strings.
fn bulks(frame: &Bytes) -> Vec<Vec<u8>> {
    Frame::new(frame, Proto::Resp2)
        .elements()
        .map(|elements| elements.iter().filter_map(|e| bulk(e).map(|b| b.to_vec())).collect())
        .unwrap_or_default()
}

/// Walk every key matching `patterns` in the backend's database and print
/// one line per value: `key  sealed v1 key=xxxxxxxx state=primary age=Ns
/// size=N [resealed]` (the key's state in `keyring`), or
/// `key  plaintext` / `key  not a string`. Values are never printed.
pub async fn run(
    settings: &Arc<ConnSettings>,
    patterns: &[String],
    select: Select,
    keyring: Option<&crate::crypto::Keyring>,
    now: u64,
    out: &mut impl std::io::Write,
) -> Result<Summary, BackendError> {
    let mut c = Conn::open(settings).await?;
    let mut s = Summary::default();
    const DROP: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
    for pattern in patterns {
        let mut walk = KeyWalk::new(pattern);
        while let Some(keys) = c.next_keys(&mut walk).await? {
            for key in keys {
                s.keys += 1;
                let shown = String::from_utf8_lossy(&key).into_owned();
                let value = c.cmd(&[own::GET.as_bytes(), &key]).await?;
                let Some(v) = bulk(&value) else {
                    if select == Select::All {
                        let _ = writeln!(out, "{shown}  not a string");
                    }
                    continue;
                };
                let Ok(info) = crypto::inspect(&v) else {
                    s.plaintext += 1;
                    if select == Select::All {
                        let _ = writeln!(out, "{shown}  plaintext (no envelope)");
                    }
                    continue;
                };
                s.sealed += 1;
                s.resealed += u64::from(info.resealed);
                if select != Select::All && !info.resealed {
                    continue;
                }
                let key_id = crypto::keyring::format_key_id(info.key_id);
                let state = match keyring.map(|k| k.get(info.key_id)) {
                    None => "unchecked".to_string(),
                    Some(None) => "not-in-keyring".to_string(),
                    Some(Some(k)) => k.state().to_string(),
                };
                let age = now.saturating_sub(info.issued_at);
                let flag = if info.resealed { "  resealed from legacy plaintext" } else { "" };
                let size = v.len();
                let mut line = format!(
                    "{shown}  sealed v{} key={key_id} state={state} age={age}s size={size}{flag}",
                    info.version
                );
                if select == Select::DropResealed {
                    let r = c.cmd(&[own::EVAL.as_bytes(), DROP.as_bytes(), b"1", &key, &v]).await?;
                    if r[..] == b":1\r\n"[..] {
                        s.dropped += 1;
                        line.push_str("  dropped");
                    } else {
                        line.push_str("  changed meanwhile, kept");
                    }
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
    Ok(s)
}
