//! Reply opening: sealed values in a reply are opened straight into the
//! client's output queue, by the plan the request's inspection made. A value
//! that does not open never reaches the client as ciphertext or plaintext
//! of another name: it becomes a null or an error, per rule, and is counted.

use bytes::Bytes;

use super::{SealedKey, Sealer};
use crate::clock::now_unix;
use crate::crypto::{self, Binding};
use crate::error::{CryptoError, Error};
use crate::outbuf::OutBuf;
use crate::protocol::Proto;
use crate::protocol::frame::Frame;
use crate::rules::{FailurePolicy, LegacyPolicy, Rule};
use crate::stats;

/// How to open a reply.
#[derive(Debug, Clone)]
pub enum OpenPlan {
    /// One value (GET, GETDEL, GETEX, GETSET, SET … GET).
    Value(SealedKey),
    /// An array aligned with the keys (MGET); `None` entries are not sealed.
    PerKey(Vec<Option<SealedKey>>),
    /// One hash field's value (HGET).
    Field(SealedKey, Bytes),
    /// An array aligned with the fields (HMGET); `None`: a field whose
    /// value is not sealed.
    Fields(SealedKey, Vec<Option<Bytes>>),
    /// Field/value pairs of a sealed hash, in the reply's shape.
    Hash(SealedKey, HashReply),
    /// Elements of a declared script's array reply: (index, key, field).
    Elements(Vec<(usize, SealedKey, Option<Bytes>)>),
    /// Key names, stored as pseudonyms, in the row's shape
    /// ([`super::names`]); a listing's glob respseal applies itself.
    Names {
        /// Where the reply names keys.
        shape: crate::commands::table::Names,
        /// The glob the decoded names must match.
        filter: Option<Bytes>,
    },
}

/// The shape of a reply carrying a hash's field/value pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashReply {
    /// HGETALL: a flat array (RESP2) or a map (RESP3).
    All,
    /// HVALS, sent as HGETALL: the values only, as an array.
    Values,
    /// HSCAN: `[cursor, [field, value, …]]`.
    Scan,
    /// HRANDFIELD … WITHVALUES: a flat array (RESP2) or an array of
    /// `[field, value]` pairs (RESP3).
    Random,
}

/// A value opened, or passed on as it was (a null, Redis's error, legacy
/// plaintext allowed by the rule: `Some(payload)`).
enum Opened {
    Done,
    Legacy(Bytes),
}

/// A legacy plaintext value to re-seal in Redis after it was read.
#[derive(Debug)]
pub struct Reseal {
    /// Key name.
    pub key: Bytes,
    /// The plaintext as found in Redis (compare-and-set guard).
    pub plain: Bytes,
    /// The sealed value to put in its place.
    pub sealed: Bytes,
}

impl Sealer {
    /// Open a reply frame according to `plan` and queue the result for the
    /// client; opened values are decrypted straight into the client's output
    /// queue. Legacy values to re-seal are added to `reseal`.
    pub fn open_reply(&self, plan: &OpenPlan, frame: Bytes, proto: Proto, reseal: &mut Vec<Reseal>, out: &mut OutBuf) {
        let now = now_unix();
        match plan {
            OpenPlan::Names { shape, filter } => self.open_names(*shape, filter.as_deref(), frame, proto, out),
            OpenPlan::Value(sk) => {
                if let Err(e) = self.open_element(sk, frame, proto, now, reseal, out) {
                    out.push(e);
                }
            }
            OpenPlan::Field(..) | OpenPlan::Fields(..) | OpenPlan::Hash(..) => {
                self.open_hash_reply(plan, frame, proto, now, out);
            }
            OpenPlan::Elements(els) => {
                if Frame::new(&frame, proto).is_error() || Frame::new(&frame, proto).is_null() {
                    return out.push(frame);
                }
                let Some(elements) = Frame::new(&frame, proto).elements() else {
                    return out.push(self.bad_shape(els.iter().map(|(_, k, _)| k.rule), 1, proto));
                };
                let mark = out.mark();
                out.array_header(elements.len());
                for (i, el) in elements.into_iter().enumerate() {
                    let Some((_, sk, field)) = els.iter().find(|(at, _, _)| *at == i) else {
                        out.push(el);
                        continue;
                    };
                    let rule = self.rules.get(sk.rule);
                    let opened = match field {
                        Some(f) => self.open_field(rule, &sk.key, f, el, proto, now, out),
                        None => self
                            .open_one(rule, &Binding::string(&self.namespace, &sk.key), el, proto, now, out)
                            .map(|_| ()),
                    };
                    if let Err((reason, key_id)) = opened {
                        // One element that does not open fails the reply:
                        // a null, or the rule's error.
                        out.rollback(mark);
                        return out.push(self.failure(rule.on_failure, key_id, reason, proto).unwrap_or_else(|e| e));
                    }
                }
            }
            OpenPlan::PerKey(keys) => {
                let elements = match Frame::new(&frame, proto).elements() {
                    Some(e) if e.len() == keys.len() => e,
                    // Redis's own error (WRONGTYPE, OOM …) is passed on.
                    _ if Frame::new(&frame, proto).is_error() => return out.push(frame),
                    // Not the array the plan expects: nothing of it reaches
                    // the client.
                    _ => return out.push(self.bad_shape(keys.iter().flatten().map(|k| k.rule), keys.len(), proto)),
                };
                let mark = out.mark();
                out.array_header(elements.len());
                for (el, sk) in elements.into_iter().zip(keys) {
                    let Some(sk) = sk else {
                        out.push(el);
                        continue;
                    };
                    if let Err(e) = self.open_element(sk, el, proto, now, reseal, out) {
                        // An error policy fails the whole reply.
                        out.rollback(mark);
                        return out.push(e);
                    }
                }
            }
        }
    }

    /// The rules of the sealed keys an open plan covers.
    pub fn plan_rules(plan: &OpenPlan) -> Vec<usize> {
        match plan {
            OpenPlan::Value(sk) | OpenPlan::Field(sk, _) | OpenPlan::Fields(sk, _) | OpenPlan::Hash(sk, _) => {
                vec![sk.rule]
            }
            OpenPlan::PerKey(keys) => keys.iter().flatten().map(|k| k.rule).collect(),
            OpenPlan::Elements(els) => els.iter().map(|(_, k, _)| k.rule).collect(),
            OpenPlan::Names { .. } => Vec::new(),
        }
    }

    /// Open hash field values. If any sealed field fails to open, the
    /// rule's policy applies to the whole reply: nothing of a session that
    /// opened only in part reaches the client (nil: the reply of a missing
    /// key; error: an error).
    fn open_hash_reply(&self, plan: &OpenPlan, frame: Bytes, proto: Proto, now: u64, out: &mut OutBuf) {
        let (sk, rule) = match plan {
            OpenPlan::Field(sk, _) | OpenPlan::Fields(sk, _) | OpenPlan::Hash(sk, _) => (sk, self.rules.get(sk.rule)),
            _ => return out.push(frame),
        };
        if Frame::new(&frame, proto).is_error() || Frame::new(&frame, proto).is_null() {
            return out.push(frame);
        }
        let mark = out.mark();
        let result = match plan {
            OpenPlan::Field(_, field) => self.open_field(rule, &sk.key, field, frame.clone(), proto, now, out),
            OpenPlan::Fields(_, fields) => match Frame::new(&frame, proto).elements() {
                Some(els) if els.len() == fields.len() => {
                    out.array_header(els.len());
                    els.into_iter().zip(fields).try_for_each(|(el, field)| match field {
                        Some(f) => self.open_field(rule, &sk.key, f, el, proto, now, out),
                        None => {
                            out.push(el);
                            Ok(())
                        }
                    })
                }
                _ => Err(("bad_shape", None)),
            },
            OpenPlan::Hash(_, shape) => self.open_pairs(rule, &sk.key, *shape, &frame, proto, now, out),
            _ => Ok(()),
        };
        let Err((reason, key_id)) = result else { return };
        out.rollback(mark);
        if let Err(error) = self.failure(rule.on_failure, key_id, reason, proto) {
            return out.push(error);
        }
        // The nil policy (counted and logged by `failure`): the reply Redis
        // gives for a missing key.
        match plan {
            OpenPlan::Field(..) => out.push_slice(null_frame(proto)),
            OpenPlan::Fields(_, fields) => {
                out.array_header(fields.len());
                for _ in fields {
                    out.push_slice(null_frame(proto));
                }
            }
            OpenPlan::Hash(_, HashReply::All) if proto == Proto::Resp3 => out.push_slice(b"%0\r\n"),
            OpenPlan::Hash(_, HashReply::Scan) => {
                let cursor = Frame::new(&frame, proto).elements().and_then(|p| p.into_iter().next());
                out.array_header(2);
                out.push(cursor.unwrap_or_else(|| Bytes::from_static(b"$1\r\n0\r\n")));
                out.push_slice(b"*0\r\n");
            }
            _ => out.push_slice(b"*0\r\n"),
        }
    }

    /// Field/value pairs in one of the [`HashReply`] shapes.
    #[allow(clippy::too_many_arguments)]
    fn open_pairs(
        &self,
        rule: &Rule,
        key: &[u8],
        shape: HashReply,
        frame: &Bytes,
        proto: Proto,
        now: u64,
        out: &mut OutBuf,
    ) -> Result<(), (&'static str, Option<u32>)> {
        const BAD: (&str, Option<u32>) = ("bad_shape", None);
        let pairs_of = |frame: &Bytes| -> Option<(bool, Vec<Bytes>)> {
            let f = Frame::new(frame, proto);
            f.map_elements()
                .map(|e| (true, e))
                .or_else(|| f.elements().filter(|e| e.len() % 2 == 0).map(|e| (false, e)))
        };
        let pairs = |elements: Vec<Bytes>, values_only: bool, out: &mut OutBuf| {
            let mut it = elements.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                let field = Frame::new(&f, proto).payload().ok_or(BAD)?;
                if !values_only {
                    out.push(f);
                }
                if rule.seals_field(&field) {
                    self.open_field(rule, key, &field, v, proto, now, out)?;
                } else {
                    out.push(v);
                }
            }
            Ok(())
        };
        match shape {
            HashReply::All | HashReply::Values => {
                let (map, elements) = pairs_of(frame).ok_or(BAD)?;
                match (shape, map) {
                    (HashReply::Values, _) => out.array_header(elements.len() / 2),
                    (_, true) => out.push_slice(format!("%{}\r\n", elements.len() / 2).as_bytes()),
                    (_, false) => out.array_header(elements.len()),
                }
                pairs(elements, shape == HashReply::Values, out)
            }
            HashReply::Scan => {
                let parts = Frame::new(frame, proto).elements().filter(|p| p.len() == 2).ok_or(BAD)?;
                let (_, elements) = pairs_of(&parts[1]).ok_or(BAD)?;
                out.array_header(2);
                out.push(parts[0].clone());
                out.array_header(elements.len());
                pairs(elements, false, out)
            }
            HashReply::Random => {
                let elements = Frame::new(frame, proto).elements().ok_or(BAD)?;
                if elements.first().is_some_and(|e| e.first() == Some(&b'*')) {
                    // RESP3: an array of [field, value] arrays.
                    out.array_header(elements.len());
                    for pair in elements {
                        let p = Frame::new(&pair, proto).elements().filter(|p| p.len() == 2).ok_or(BAD)?;
                        out.array_header(2);
                        pairs(p, false, out)?;
                    }
                    Ok(())
                } else if elements.len() % 2 == 0 {
                    out.array_header(elements.len());
                    pairs(elements, false, out)
                } else {
                    Err(BAD)
                }
            }
        }
    }

    /// One hash field's value, bound to key and field.
    #[allow(clippy::too_many_arguments)]
    fn open_field(
        &self,
        rule: &Rule,
        key: &[u8],
        field: &[u8],
        el: Bytes,
        proto: Proto,
        now: u64,
        out: &mut OutBuf,
    ) -> Result<(), (&'static str, Option<u32>)> {
        let binding = Binding::hash_field(&self.namespace, key, field);
        // Legacy plaintext under a `reseal` rule is passed on but not
        // written back for hash fields.
        self.open_one(rule, &binding, el, proto, now, out).map(|_| ())
    }

    /// The reply for an aggregate that does not have the shape its plan
    /// expects (an MGET or EXEC array of the wrong length, or no array at
    /// all): counted as an open failure `bad_shape`; an error if any of the
    /// rules involved says so, otherwise `n` nulls (what the client sees for
    /// values that do not open).
    pub fn bad_shape(&self, rules: impl Iterator<Item = usize>, n: usize, proto: Proto) -> Bytes {
        let error = rules.into_iter().any(|r| self.rules.get(r).on_failure == FailurePolicy::Error);
        let e = Error::Crypto(CryptoError::Open { reason: "bad_shape", key_id: None });
        if error {
            return e.rescue();
        }
        e.report();
        let null = null_frame(proto);
        let mut v = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            v.extend_from_slice(null);
        }
        v.into()
    }

    /// Open one bulk string and queue it. `Err` carries a whole-reply error
    /// frame (error policy); a nil policy queues a null.
    fn open_element(
        &self,
        sk: &SealedKey,
        el: Bytes,
        proto: Proto,
        now: u64,
        reseal: &mut Vec<Reseal>,
        out: &mut OutBuf,
    ) -> Result<(), Bytes> {
        let rule = self.rules.get(sk.rule);
        let binding = Binding::string(&self.namespace, &sk.key);
        match self.open_one(rule, &binding, el, proto, now, out) {
            Ok(Opened::Done) => {}
            Ok(Opened::Legacy(payload)) => {
                if rule.legacy_at(now) == LegacyPolicy::Reseal
                    && let Ok(sealed) = crypto::seal_resealed(&self.keyring, &binding, &payload, now)
                {
                    reseal.push(Reseal { key: sk.key.clone(), plain: payload, sealed: sealed.into() });
                }
            }
            Err((reason, key_id)) => out.push(self.failure(rule.on_failure, key_id, reason, proto)?),
        }
        Ok(())
    }

    /// Open one value for `binding` into `out`, or pass it on: a null and
    /// Redis's own errors as they are, legacy plaintext if the rule allows
    /// it (counted). Only a bulk string is opened; any other shape (a
    /// simple string, an integer, a double, a verbatim string, an
    /// aggregate …) is not a value Redis holds for a sealed name: an open
    /// failure, never forwarded raw. `Err` is the failure's reason and key
    /// id, with nothing queued.
    fn open_one(
        &self,
        rule: &Rule,
        binding: &Binding<'_>,
        el: Bytes,
        proto: Proto,
        now: u64,
        out: &mut OutBuf,
    ) -> Result<Opened, (&'static str, Option<u32>)> {
        let payload = match value_shape(&el, proto) {
            Shape::Bulk(payload) => payload,
            Shape::Null | Shape::Error => {
                out.push(el);
                return Ok(Opened::Done);
            }
            Shape::Other => return Err(("bad_shape", None)),
        };
        if !crypto::is_sealed(&payload) {
            if rule.legacy_at(now) == LegacyPolicy::Reject {
                return Err(("legacy_plaintext", None));
            }
            metrics::counter!("respseal_legacy_plaintext_total").increment(1);
            out.push(el);
            return Ok(Opened::Legacy(payload));
        }
        let mark = out.mark();
        out.bulk_header(payload.len().saturating_sub(crypto::OVERHEAD));
        match crypto::open_into(&self.keyring, binding, &payload, now, rule.freshness(), out.tail()) {
            Ok(()) => {
                out.push_slice(b"\r\n");
                stats::add(stats::Counter::Opened, 1);
                Ok(Opened::Done)
            }
            Err(e) => {
                out.rollback(mark);
                Err((e.reason(), crypto::inspect(&payload).ok().map(|i| i.key_id)))
            }
        }
    }

    fn failure(
        &self,
        policy: FailurePolicy,
        key_id: Option<u32>,
        reason: &'static str,
        proto: Proto,
    ) -> Result<Bytes, Bytes> {
        let e = Error::Crypto(CryptoError::Open { reason, key_id });
        match policy {
            FailurePolicy::Nil => {
                e.report();
                Ok(Bytes::from_static(null_frame(proto)))
            }
            FailurePolicy::Error => Err(e.rescue()),
        }
    }
}

/// What a reply frame for one sealed value is.
enum Shape {
    /// A bulk string, with its payload.
    Bulk(Bytes),
    /// A null: the key does not exist.
    Null,
    /// Redis's own error.
    Error,
    /// Anything else.
    Other,
}

fn value_shape(frame: &Bytes, proto: Proto) -> Shape {
    let f = Frame::new(frame, proto);
    match frame.first() {
        Some(b'$' | b'_') if f.is_null() => Shape::Null,
        Some(b'$') => f.payload().map_or(Shape::Other, Shape::Bulk),
        _ if f.is_error() => Shape::Error,
        _ => Shape::Other,
    }
}

/// A null value in the stream's own protocol: what a value that does not
/// open becomes under the `nil` policy.
fn null_frame(proto: Proto) -> &'static [u8] {
    match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    }
}
