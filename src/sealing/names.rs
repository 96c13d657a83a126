//! Pseudonymised key names (docs/design.md §3): under a rule with
//! `names = "pseudonymise"`, every key name that starts with the rule's
//! literal prefix is stored in Redis as the prefix followed by a pseudonym
//! of the rest ([`crate::crypto::names`]), so a session id that is the key
//! name never reaches Redis, its dumps, replicas or MONITOR.
//!
//! * **Stored name** = `prefix ‖ [ "{" P(tag) "}" ] ‖ P(rest)`: a
//!   `{hash tag}` in the rest gets a pseudonym of its own in braces, so names
//!   Redis Cluster co-locates stay co-located.
//! * **A namespace is wholly pseudonymised**: every name starting with a
//!   pseudonymising rule's prefix is, whatever rule the whole name matches;
//!   otherwise a plain name could be mistaken for (or collide with) a
//!   pseudonym. Where several prefixes apply, the longest wins.
//! * **Both ways, by the command table**: every key argument of a row whose
//!   key positions are fixed is translated on its way to Redis (values are
//!   still sealed bound to the real name); rows whose replies name keys
//!   ([`Names`]) are translated back. Commands whose key positions are not
//!   fixed (unknown commands, `Keys::Any`, undeclared scripts) are refused
//!   when an argument falls in a namespace.
//! * **Bad input**: a stored name in a namespace that does not decode (made
//!   without the key, or under another prefix) is left out of listings and
//!   counted (`respseal_open_failures_total{reason="name"}`), never shown.
//!   A client name that looks like a pseudonym is just a name.

use bytes::Bytes;

use super::{Inspect, OpenPlan, Sealer};
use crate::commands::table::{Code, Command, Data, Keys, Names};
use crate::commands::{Args, key_indexes};
use crate::crypto::names::{NameKey, Part};
use crate::error::{CryptoError, Error, Refusal, SealedUse, shown};
use crate::outbuf::OutBuf;
use crate::protocol::Proto;
use crate::protocol::frame::Frame;
use crate::rules::{could_match_with_prefix, glob_match};

/// A stored name in a namespace that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecodable;

/// What a listing's pattern (SCAN MATCH, KEYS) becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Redis can match it on stored names as it is.
    Keep,
    /// An exact name: its stored name.
    Replace(Vec<u8>),
    /// Only respseal can match it, on the decoded names: Redis lists
    /// everything (SCAN without MATCH, KEYS `*`).
    Filter,
}

/// How a request's arguments change on their way to Redis.
#[derive(Debug, Default)]
pub struct Edits {
    /// (argument index, what to send instead), in index order.
    replace: Vec<(usize, Vec<u8>)>,
    /// Arguments left out (a SCAN's MATCH and its pattern), in index order.
    drop: Vec<usize>,
}

impl Edits {
    /// How many arguments are sent.
    pub fn count(&self, args: usize) -> usize {
        args - self.drop.len()
    }

    /// Argument `i` as sent: `None` when it is left out.
    pub fn arg<'a>(&'a self, i: usize, arg: &'a [u8]) -> Option<&'a [u8]> {
        if self.drop.contains(&i) {
            return None;
        }
        Some(self.replace.iter().find(|(at, _)| *at == i).map_or(arg, |(_, r)| r.as_slice()))
    }

    /// The bytes the edits add at most (for buffer sizing).
    pub fn growth(&self) -> usize {
        self.replace.iter().map(|(_, r)| r.len() + 16).sum()
    }
}

impl Sealer {
    /// With a name key for the rules that pseudonymise names.
    pub fn with_names(mut self, key: NameKey) -> Self {
        self.names = Some(key);
        self
    }

    /// The name key, if configured.
    pub fn name_key(&self) -> Option<&NameKey> {
        self.names.as_ref()
    }

    /// Whether any name is pseudonymised.
    pub fn pseudonymises(&self) -> bool {
        self.names.is_some() && self.rules.pseudonymises()
    }

    /// The name Redis stores for `name`, when it falls in a pseudonymised
    /// namespace.
    pub fn stored_name(&self, name: &[u8]) -> Option<Vec<u8>> {
        let key = self.names.as_ref()?;
        let prefix = self.rules.namespace(name)?;
        let rest = &name[prefix.len()..];
        let mut out = Vec::with_capacity(prefix.len() + rest.len() * 2 + 48);
        out.extend_from_slice(prefix);
        if let Some(tag) = hash_tag(rest) {
            out.push(b'{');
            key.pseudonym_into(&self.namespace, prefix, Part::Tag, tag, &mut out);
            out.push(b'}');
        }
        key.pseudonym_into(&self.namespace, prefix, Part::Rest, rest, &mut out);
        Some(out)
    }

    /// The name a client knows for the stored name `stored`: `Ok(None)`
    /// when it falls in no namespace (the same name).
    pub fn real_name(&self, stored: &[u8]) -> Result<Option<Vec<u8>>, Undecodable> {
        let Some(key) = &self.names else {
            return Ok(None);
        };
        let mut in_namespace = false;
        for prefix in self.rules.namespaces_of(stored) {
            in_namespace = true;
            let s = &stored[prefix.len()..];
            let body = match s.first() {
                Some(b'{') => match s.iter().position(|&c| c == b'}') {
                    Some(end) => &s[end + 1..],
                    None => continue,
                },
                _ => s,
            };
            let Some(rest) = key.reveal(&self.namespace, prefix, Part::Rest, body) else {
                continue;
            };
            let mut real = Vec::with_capacity(prefix.len() + rest.len());
            real.extend_from_slice(prefix);
            real.extend_from_slice(&rest);
            // One stored name per name: exactly what the name maps to now
            // (its tag, the longest prefix).
            if self.stored_name(&real).as_deref() == Some(stored) {
                return Ok(Some(real));
            }
        }
        if in_namespace { Err(Undecodable) } else { Ok(None) }
    }

    /// What a listing's glob becomes on its way to Redis.
    pub fn listing(&self, pattern: &[u8]) -> Listing {
        let mut relevant = self.rules.all_namespaces().filter(|p| could_match_with_prefix(pattern, p)).peekable();
        if relevant.peek().is_none() {
            return Listing::Keep;
        }
        if !pattern.iter().any(|c| matches!(c, b'*' | b'?' | b'[' | b'\\')) {
            return self.stored_name(pattern).map_or(Listing::Keep, Listing::Replace);
        }
        // `<namespace>*`: every stored name Redis matches is in that
        // namespace (or one inside it), and so is every real name.
        let keep = pattern.split_last().is_some_and(|(last, n)| {
            *last == b'*' && self.rules.namespace(n) == Some(n) && relevant.all(|p| p.starts_with(n))
        });
        if keep { Listing::Keep } else { Listing::Filter }
    }

    /// A walk of the names matching `pattern` by respseal's own operator
    /// commands (rewrap, check): the glob Redis matches, and whether the
    /// decoded names must be matched against `pattern` by respseal.
    pub fn walk_glob(&self, pattern: &str) -> (String, bool) {
        match self.listing(pattern.as_bytes()) {
            Listing::Keep => (pattern.to_string(), false),
            Listing::Replace(stored) => (String::from_utf8_lossy(&stored).into_owned(), false),
            Listing::Filter => ("*".to_string(), true),
        }
    }

    /// A stored name met on such a walk: the name it stands for, `None`
    /// when `pattern` must be matched here and does not match.
    pub fn walked(&self, stored: &[u8], pattern: &str, filter: bool) -> Result<Option<Vec<u8>>, Undecodable> {
        let real = self.real_name(stored)?.unwrap_or_else(|| stored.to_vec());
        Ok((!filter || glob_match(pattern.as_bytes(), &real)).then_some(real))
    }

    /// The glob respseal matches a listing's decoded names with, if Redis
    /// cannot ([`Listing::Filter`]).
    fn listing_filter(&self, cmd: &Command, args: &Args<'_>) -> Option<(usize, Listing)> {
        let shape = cmd.names;
        let at = match shape {
            Names::Scan { pattern_after } => (2..args.len()).find(|&i| args.is(i, pattern_after))? + 1,
            Names::List { pattern_at } => usize::from(pattern_at),
            _ => return None,
        };
        Some((at, self.listing(args.get(at)?)))
    }

    /// The boundary for names, after the one for values: what `verdict`
    /// becomes when names are pseudonymised.
    pub(super) fn inspect_names(&self, cmd: Option<&'static Command>, args: &Args<'_>, verdict: Inspect) -> Inspect {
        let Some(cmd) = cmd else {
            return match args.iter().skip(1).find_map(|a| self.rules.names_rule(a)) {
                Some(rule) => Inspect::Refuse(Refusal::Opaque {
                    command: shown(args.get(0).unwrap_or_default()),
                    rule: self.pattern(rule),
                }),
                None => verdict,
            };
        };
        let (seal, open) = match verdict {
            Inspect::Refuse(_) | Inspect::Move => return verdict,
            Inspect::Untouched => (false, None),
            Inspect::Forward { seal, open, .. } => (seal, open),
        };
        let refuse = |rule: usize| {
            Inspect::Refuse(Refusal::SealedKey { command: cmd.name, rule: self.pattern(rule), why: SealedUse::Names })
        };
        // Arguments that are not at a fixed key position: names there
        // cannot be told from other words.
        let unsure = match cmd.data {
            Data::Script(Code::Manages { load, .. }) if args.is(1, load) => 2,
            Data::Script(Code::Manages { restore, .. }) if args.is(1, restore) => {
                // A payload of bodies respseal cannot read.
                return refuse(self.rules.names_rule(b"").or(self.rules.first_names()).unwrap_or(0));
            }
            Data::Script(Code::Manages { .. }) => usize::MAX,
            Data::Script(code) if self.script_profile(code, args).is_some() => {
                // A declared script: its KEYS are translated; a body or
                // ARGV that names a namespace could reach it unseen.
                let (keys_at, argv_at) = Self::script_positions(args).unwrap_or((args.len(), args.len()));
                let named = (1..args.len())
                    .filter(|i| !(keys_at..argv_at).contains(i) && (*i != 1 || code == Code::Body))
                    .find_map(|i| self.rules.names_in_script(args.get(i).unwrap_or_default()));
                if let Some(rule) = named {
                    return refuse(rule);
                }
                usize::MAX
            }
            Data::Script(_) => 1,
            Data::Opaque => 1,
            Data::Populates { .. } => 1,
            _ if cmd.keys == Keys::Any => 1,
            _ => usize::MAX,
        };
        if unsure != usize::MAX {
            let hit = match cmd.data {
                Data::Script(_) => args.iter().skip(unsure).find_map(|a| self.rules.names_in_script(a)),
                Data::Populates { .. } => args.iter().skip(unsure).find_map(|a| self.rules.names_by_prefix(a)),
                _ => args.iter().skip(unsure).find_map(|a| self.rules.names_rule(a)),
            };
            return match hit {
                Some(rule) => refuse(rule),
                None => rebuild(seal, false, open),
            };
        }
        let names = key_indexes(cmd.keys, args).any(|k| args.get(k).is_some_and(|a| self.rules.namespace(a).is_some()));
        let listing = self.listing_filter(cmd, args);
        let shape = cmd.names;
        let open = match shape {
            Names::None => open,
            // Rows that name keys in their replies open no values.
            shape => {
                debug_assert!(open.is_none(), "{} opens values and names", cmd.name);
                let filter = match &listing {
                    Some((at, Listing::Filter)) => args.get(*at).map(Bytes::copy_from_slice),
                    _ => None,
                };
                Some(OpenPlan::Names { shape, filter })
            }
        };
        let pattern = matches!(listing, Some((_, Listing::Replace(_) | Listing::Filter)));
        rebuild(seal, names || pattern, open)
    }

    /// How request `args` changes for names on its way to Redis.
    pub fn name_edits(&self, cmd: &Command, args: &Args<'_>) -> Edits {
        let mut edits = Edits::default();
        if !self.pseudonymises() || cmd.keys == Keys::Any {
            return edits;
        }
        for k in key_indexes(cmd.keys, args) {
            if let Some(stored) = args.get(k).and_then(|a| self.stored_name(a)) {
                edits.replace.push((k, stored));
            }
        }
        match self.listing_filter(cmd, args) {
            Some((at, Listing::Replace(stored))) => edits.replace.push((at, stored)),
            Some((at, Listing::Filter)) => match Some(cmd.names) {
                Some(Names::Scan { .. }) => edits.drop.extend([at - 1, at]),
                _ => edits.replace.push((at, b"*".to_vec())),
            },
            _ => {}
        }
        edits.replace.sort_by_key(|(at, _)| *at);
        edits
    }

    /// Translate the key names of a reply back, by the row's [`Names`].
    pub(super) fn open_names(&self, shape: Names, filter: Option<&[u8]>, frame: Bytes, proto: Proto, out: &mut OutBuf) {
        let f = Frame::new(&frame, proto);
        if f.is_error() || f.is_null() {
            return out.push(frame);
        }
        let bad_shape = |out: &mut OutBuf| {
            let e = Error::Crypto(CryptoError::Open { reason: "bad_shape", key_id: None });
            out.push(e.rescue());
        };
        match shape {
            Names::None => out.push(frame),
            Names::One => match self.translate(&frame, proto, None) {
                Ok(Some(name)) => out.push(name),
                _ => out.push(Error::Crypto(CryptoError::Open { reason: "name", key_id: None }).rescue()),
            },
            Names::First => {
                let Some(elements) = f.elements().filter(|e| !e.is_empty()) else {
                    return bad_shape(out);
                };
                let mut it = elements.into_iter();
                let first = it.next().unwrap_or_default();
                let Ok(Some(name)) = self.translate(&first, proto, None) else {
                    return out.push(Error::Crypto(CryptoError::Open { reason: "name", key_id: None }).rescue());
                };
                out.array_header(it.len() + 1);
                out.push(name);
                it.for_each(|el| out.push(el));
            }
            Names::List { .. } => {
                let Some(elements) = f.elements() else {
                    return bad_shape(out);
                };
                self.names_array(elements, proto, filter, out);
            }
            Names::Scan { .. } => {
                let Some([cursor, page]) = f.elements().and_then(|e| <[Bytes; 2]>::try_from(e).ok()) else {
                    return bad_shape(out);
                };
                let Some(elements) = Frame::new(&page, proto).elements() else {
                    return bad_shape(out);
                };
                out.array_header(2);
                out.push(cursor);
                self.names_array(elements, proto, filter, out);
            }
        }
    }

    /// An array of stored names as the client's names: undecodable ones
    /// left out (and counted), then `filter` applied.
    fn names_array(&self, elements: Vec<Bytes>, proto: Proto, filter: Option<&[u8]>, out: &mut OutBuf) {
        let names: Vec<Bytes> =
            elements.into_iter().filter_map(|el| self.translate(&el, proto, filter).ok().flatten()).collect();
        out.array_header(names.len());
        names.into_iter().for_each(|n| out.push(n));
    }

    /// One bulk name as the client's name (the frame to send), `Ok(None)`
    /// when `filter` leaves it out, `Err` when it does not decode (counted).
    fn translate(&self, el: &Bytes, proto: Proto, filter: Option<&[u8]>) -> Result<Option<Bytes>, Undecodable> {
        let Some(stored) = Frame::new(el, proto).payload() else {
            // Not a bulk (a null RANDOMKEY was passed on before).
            return Ok(Some(el.clone()));
        };
        let real = match self.real_name(&stored) {
            Ok(None) => None,
            Ok(Some(real)) => Some(real),
            Err(e) => {
                Error::Crypto(CryptoError::Open { reason: "name", key_id: None }).report();
                return Err(e);
            }
        };
        let name: &[u8] = real.as_deref().unwrap_or(&stored);
        if filter.is_some_and(|g| !glob_match(g, name)) {
            return Ok(None);
        }
        Ok(Some(match real {
            None => el.clone(),
            Some(real) => {
                let mut b = bytes::BytesMut::with_capacity(real.len() + 16);
                crate::protocol::encode::bulk(&mut b, &real);
                b.freeze()
            }
        }))
    }
}

/// A verdict with `names` set when names change.
fn rebuild(seal: bool, names: bool, open: Option<OpenPlan>) -> Inspect {
    if !seal && !names && open.is_none() {
        return Inspect::Untouched;
    }
    Inspect::Forward { seal, names, open }
}

/// Redis Cluster's hash tag of a name: the bytes between its first `{`
/// and the first `}` after it, if not empty.
pub fn hash_tag(name: &[u8]) -> Option<&[u8]> {
    let open = name.iter().position(|&c| c == b'{')?;
    let len = name[open + 1..].iter().position(|&c| c == b'}')?;
    (len > 0).then(|| &name[open + 1..open + 1 + len])
}
