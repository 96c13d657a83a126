//! RENAME, RENAMENX and COPY of sealed keys, carried out by respseal.
//!
//! A sealed value is bound to its key name, so Redis's own RENAME would
//! leave a value that no longer opens. respseal does the move itself, on a
//! connection of its own in the client's database, as an optimistic
//! transaction: WATCH both names, read the source (a string, or a hash's
//! fields) and its TTL, open what is sealed under the source's rule, seal
//! it again under the destination's (keeping each value's `issued_at`, so
//! its age does not restart), then MULTI … EXEC the write, the TTL and the
//! source's deletion. A change to either name in between makes EXEC fail,
//! and the move starts over (at most [`ATTEMPTS`] times). Other clients
//! therefore see the move as one step, as with Redis's own RENAME.
//!
//! The destination's rule decides: a sealed destination is sealed, an
//! unsealed one gets plaintext only if a `seal = false` rule names it
//! explicitly (otherwise the move is refused: a sealed value never becomes
//! plaintext by accident). A source that does not open is not moved.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::stored::Origin;
use crate::backend::conn::{BackendError, ConnSettings};
use crate::commands::table::{Carried as Kind, Command, Data};
use crate::commands::{Args, own};
use crate::error::{ClientError, Error, Refusal};
use crate::inspect::{Conn, bulk};
use crate::protocol::frame::Frame;
use crate::protocol::{Proto, encode, parse_int};
use crate::sealing::Sealer;

/// How many times a move is tried while the names keep changing.
pub const ATTEMPTS: usize = 10;

/// A parsed move.
struct Move<'a> {
    kind: Kind,
    /// The command's name, as Redis knows it.
    name: &'static str,
    src: &'a [u8],
    dst: &'a [u8],
    /// The names Redis stores them under (pseudonyms, [`super::names`]).
    stored_src: Vec<u8>,
    stored_dst: Vec<u8>,
    /// COPY … DB n.
    dst_db: u32,
    /// COPY … REPLACE.
    replace: bool,
}

/// What was read from the source.
enum Value {
    String(Bytes),
    Hash(Vec<(Bytes, Bytes)>),
}

/// Carry out RENAME / RENAMENX / COPY in database `db`; the reply frame for
/// the client (RESP2 shapes, which RESP3 clients read the same way).
pub async fn run(settings: &Arc<ConnSettings>, db: u32, sealer: &Sealer, cmd: &Command, args: &Args<'_>) -> Bytes {
    let Data::Move(Some(kind)) = cmd.data else {
        return Error::from(Refusal::NotForwarded("not a move respseal carries out")).rescue();
    };
    let name = cmd.name;
    let lower = name.to_lowercase();
    let (Some(src), Some(dst)) = (args.get(1), args.get(2)) else {
        return Error::from(ClientError::Arity(lower)).rescue();
    };
    let stored = |n: &[u8]| sealer.stored_name(n).unwrap_or_else(|| n.to_vec());
    let (stored_src, stored_dst) = (stored(src), stored(dst));
    let mut m = Move { kind, name, src, dst, stored_src, stored_dst, dst_db: db, replace: false };
    if kind == Kind::Copy {
        let mut i = 3;
        while i < args.len() {
            if args.is(i, "REPLACE") {
                m.replace = true;
            } else if args.is(i, "DB") && i + 1 < args.len() {
                match args.get(i + 1).and_then(parse_int).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => m.dst_db = n,
                    None => return Error::from(ClientError::NotInteger).rescue(),
                }
                i += 1;
            } else {
                return Error::from(ClientError::Syntax).rescue();
            }
            i += 1;
        }
    } else if args.len() != 3 {
        return Error::from(ClientError::Arity(lower)).rescue();
    }
    if m.src == m.dst && m.dst_db == db {
        return match kind {
            Kind::Copy => Error::from(ClientError::SameObject).rescue(),
            // Same name, same binding: Redis's own answer is right.
            _ => passthrough(settings, db, &[name.as_bytes(), &m.stored_src, &m.stored_dst]).await,
        };
    }
    for _ in 0..ATTEMPTS {
        match attempt(settings, db, sealer, &m).await {
            Ok(Some(reply)) => return reply,
            Ok(None) => continue,
            Err(reply) => return reply,
        }
    }
    metrics::counter!("respseal_moves_total", "outcome" => "gave_up").increment(1);
    Error::from(Refusal::MoveGaveUp { command: name, attempts: ATTEMPTS }).rescue()
}

async fn passthrough(settings: &Arc<ConnSettings>, db: u32, args: &[&[u8]]) -> Bytes {
    match Conn::open_in(settings, db).await {
        Ok(mut c) => c.cmd(args).await.unwrap_or_else(|e| Error::from(e).rescue()),
        Err(e) => Error::from(e).rescue(),
    }
}

/// One try: `Ok(Some(reply))` done, `Ok(None)` the keys changed (try
/// again), `Err(reply)` refused or failed.
async fn attempt(settings: &Arc<ConnSettings>, db: u32, sealer: &Sealer, m: &Move<'_>) -> Result<Option<Bytes>, Bytes> {
    let backend = |e: BackendError| Error::from(e).rescue();
    let mut c = Conn::open_in(settings, db).await.map_err(backend)?;
    let cmd_name = m.name;
    let db_s = db.to_string();
    let dst_db_s = m.dst_db.to_string();
    if m.dst_db != db {
        // Redis's own answer to a database it refuses (COPY … DB 16), and
        // nothing changed.
        let selected = c.cmd(&[own::SELECT.as_bytes(), dst_db_s.as_bytes()]).await.map_err(backend)?;
        if let Some(line) = Frame::new(&selected, Proto::Resp2).error_line() {
            return Err(match line.starts_with(b"ERR DB index is out of range") {
                true => Error::from(ClientError::DbOutOfRange).rescue(),
                false => selected,
            });
        }
        c.cmd(&[own::WATCH.as_bytes(), &m.stored_dst]).await.map_err(backend)?;
        c.cmd(&[own::SELECT.as_bytes(), db_s.as_bytes()]).await.map_err(backend)?;
        c.cmd(&[own::WATCH.as_bytes(), &m.stored_src]).await.map_err(backend)?;
    } else {
        c.cmd(&[own::WATCH.as_bytes(), &m.stored_src, &m.stored_dst]).await.map_err(backend)?;
    }
    let ty = c.cmd(&[own::TYPE.as_bytes(), &m.stored_src]).await.map_err(backend)?;
    let ty = ty.get(1..ty.len().saturating_sub(2)).unwrap_or_default().to_vec();
    if ty == b"none" {
        return Err(match m.kind {
            Kind::Copy => Bytes::from_static(b":0\r\n"),
            _ => Error::from(ClientError::NoSuchKey).rescue(),
        });
    }
    let dst_exists = {
        if m.dst_db != db {
            c.cmd(&[own::SELECT.as_bytes(), dst_db_s.as_bytes()]).await.map_err(backend)?;
        }
        let r = c.cmd(&[own::EXISTS.as_bytes(), &m.stored_dst]).await.map_err(backend)?;
        if m.dst_db != db {
            c.cmd(&[own::SELECT.as_bytes(), db_s.as_bytes()]).await.map_err(backend)?;
        }
        Frame::new(&r, Proto::Resp2).integer() == Some(1)
    };
    if dst_exists && (m.kind == Kind::RenameNx || (m.kind == Kind::Copy && !m.replace)) {
        return Err(Bytes::from_static(b":0\r\n"));
    }
    // The expiry as an absolute time (Redis 7's PEXPIRETIME), so that it
    // is kept to the millisecond; before Redis 7, the remaining TTL.
    let int = |r: Bytes| Frame::new(&r, Proto::Resp2).integer();
    let expire_at = int(c.cmd(&[own::PEXPIRETIME.as_bytes(), &m.stored_src]).await.map_err(backend)?);
    let pttl = match expire_at {
        Some(_) => -1,
        None => int(c.cmd(&[own::PTTL.as_bytes(), &m.stored_src]).await.map_err(backend)?).unwrap_or(-1),
    };
    let value = match &ty[..] {
        b"string" => Value::String(
            bulk(&c.cmd(&[own::GET.as_bytes(), &m.stored_src]).await.map_err(backend)?).unwrap_or_default(),
        ),
        b"hash" => {
            let all = c.cmd(&[own::HGETALL.as_bytes(), &m.stored_src]).await.map_err(backend)?;
            let els = Frame::new(&all, Proto::Resp2).elements().unwrap_or_default();
            let mut pairs = Vec::with_capacity(els.len() / 2);
            let mut it = els.iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                pairs.push((bulk(f).unwrap_or_default(), bulk(v).unwrap_or_default()));
            }
            Value::Hash(pairs)
        }
        other => {
            let type_name = String::from_utf8_lossy(other).escape_default().to_string();
            return Err(Error::from(Refusal::MoveType { command: cmd_name, type_name }).rescue());
        }
    };
    let value =
        reseal(sealer, m, value).map_err(|why| Error::from(Refusal::Move { command: cmd_name, why }).rescue())?;
    // The write, the TTL and (for RENAME) the source's deletion, at once.
    let mut tx = BytesMut::new();
    tx.extend_from_slice(&encode::command(&[own::MULTI]));
    let mut queued = 1;
    if m.dst_db != db {
        tx.extend_from_slice(&encode::command(&[own::SELECT.as_bytes(), dst_db_s.as_bytes()]));
        queued += 1;
    }
    tx.extend_from_slice(&encode::command(&[own::DEL.as_bytes(), &m.stored_dst]));
    queued += 1;
    match &value {
        Value::String(v) => tx.extend_from_slice(&encode::command(&[own::SET.as_bytes(), &m.stored_dst, v])),
        Value::Hash(pairs) => {
            let mut a: Vec<&[u8]> = vec![own::HSET.as_bytes(), &m.stored_dst];
            for (f, v) in pairs {
                a.push(f);
                a.push(v);
            }
            tx.extend_from_slice(&encode::command(&a));
        }
    }
    queued += 1;
    if let Some(at) = expire_at.filter(|&t| t > 0) {
        tx.extend_from_slice(&encode::command(&[own::PEXPIREAT.as_bytes(), &m.stored_dst, at.to_string().as_bytes()]));
        queued += 1;
    } else if pttl > 0 {
        tx.extend_from_slice(&encode::command(&[own::PEXPIRE.as_bytes(), &m.stored_dst, pttl.to_string().as_bytes()]));
        queued += 1;
    }
    if m.dst_db != db {
        tx.extend_from_slice(&encode::command(&[own::SELECT.as_bytes(), db_s.as_bytes()]));
        queued += 1;
    }
    if m.kind != Kind::Copy {
        tx.extend_from_slice(&encode::command(&[own::DEL.as_bytes(), &m.stored_src]));
        queued += 1;
    }
    tx.extend_from_slice(&encode::command(&[own::EXEC]));
    let replies = c.pipeline(&tx, queued + 1).await.map_err(backend)?;
    let exec = replies.last().cloned().unwrap_or_default();
    let exec = Frame::new(&exec, Proto::Resp2);
    if exec.is_null() {
        // WATCH saw a change.
        return Ok(None);
    }
    if exec.elements().is_none() {
        return Err(backend(BackendError::Failed(cmd_name)));
    }
    metrics::counter!("respseal_moves_total", "outcome" => "ok").increment(1);
    Ok(Some(Bytes::from_static(match m.kind {
        Kind::Rename => b"+OK\r\n",
        _ => b":1\r\n",
    })))
}

/// The source's value as the destination must hold it: opened under the
/// source's rule, sealed under the destination's.
fn reseal(sealer: &Sealer, m: &Move<'_>, value: Value) -> Result<Value, &'static str> {
    let rules = sealer.rules();
    let src_rule = rules.find(m.src).map(|r| rules.get(r));
    let dst_rule = rules.find(m.dst).map(|r| rules.get(r));
    let exempt = rules.exempts(m.dst);
    let now = crate::clock::now_unix();
    // (plaintext, origin) of one value, and whether it was sealed.
    let open = |field: Option<&[u8]>, v: &[u8], sealed: bool| -> Result<(Vec<u8>, Origin, bool), &'static str> {
        if !sealed {
            return Ok((v.to_vec(), (now, false), false));
        }
        let (plain, origin) = sealer.open_stored(m.src, field, v, now)?;
        Ok((plain, origin, true))
    };
    // Sealed under the destination, keeping the age and the re-sealed flag.
    let seal = |field: Option<&[u8]>, plain: &[u8], origin: Origin| -> Result<Bytes, &'static str> {
        sealer.seal_stored(m.dst, field, plain, origin).map_err(|_| "cannot seal")
    };
    match value {
        Value::String(v) => {
            let (plain, origin, was_sealed) = open(None, &v, src_rule.is_some())?;
            match dst_rule {
                Some(_) => Ok(Value::String(seal(None, &plain, origin)?)),
                None if !was_sealed || exempt => Ok(Value::String(plain.into())),
                None => Err("the destination is not a sealed name (a `seal = false` rule must name it)"),
            }
        }
        Value::Hash(pairs) => {
            let mut out = Vec::with_capacity(pairs.len());
            for (f, v) in pairs {
                let sealed_here = src_rule.is_some_and(|r| r.seals_field(&f));
                if src_rule.is_some_and(|r| r.fields.is_none()) {
                    return Err("the source's rule does not seal hash fields");
                }
                let (plain, origin, was_sealed) = open(Some(&f), &v, sealed_here)?;
                let value = match dst_rule {
                    Some(r) if r.seals_field(&f) => seal(Some(&f), &plain, origin)?,
                    Some(r) if r.fields.is_none() => return Err("the destination's rule does not seal hash fields"),
                    _ if !was_sealed || exempt => plain.into(),
                    _ => return Err("a sealed field would be stored in plaintext under the destination"),
                };
                out.push((f, value));
            }
            Ok(Value::Hash(out))
        }
    }
}
