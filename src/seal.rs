//! Sealing in the request/reply path: which arguments of a request are
//! sealed before it reaches Redis, and how a reply is opened before it
//! reaches the client (DESIGN.md §3–§4, string values).
//!
//! [`Sealer::inspect`] looks at one request with the command table and the
//! rules and says: leave it alone (no sealed key involved — the common,
//! allocation-free case), refuse it (value-inspecting commands and commands
//! the proxy cannot seal on a sealed key, unknown commands with an argument
//! matching a rule: fail closed), or forward it rewritten with sealed values
//! and an [`OpenPlan`] for its reply.
//!
//! Opening never falls back to plaintext: a value that does not open becomes
//! a null (or an error, per rule), is counted in
//! `respseal_open_failures_total{reason}` and logged with key id and reason
//! only — never the key name or the value.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use redis_protocol::{resp2, resp3};

use crate::commands::Args;
use crate::commands::table::{Command, Data, Keys, ReplyShape, Values};
use crate::crypto::{self, Binding, Keyring};
use crate::error::{CryptoError, Error, Refusal, SealedUse};
use crate::outbuf::OutBuf;
use crate::protocol::{Proto, encode, parse_int};
use crate::rules::{FailurePolicy, LegacyPolicy, Rule, Rules};
use crate::stats;

/// A sealed key a reply value belongs to.
#[derive(Debug, Clone)]
pub struct SealedKey {
    /// Index of the rule that matched.
    pub rule: usize,
    /// The key name (bound into the envelope's AAD).
    pub key: Bytes,
}

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

/// What to do with a request.
#[derive(Debug)]
pub enum Inspect {
    /// No sealed key involved.
    Untouched,
    /// Refused, for this reason.
    Refuse(Refusal),
    /// RENAME, RENAMENX or COPY with a sealed name: carried out by
    /// respseal ([`crate::moves`]).
    Move,
    /// Forward, re-encoded with its values sealed if `seal` is set
    /// ([`Sealer::seal_request`]), and open the reply with `open` if set.
    Forward {
        /// Some value is to be sealed.
        seal: bool,
        /// How to open the reply.
        open: Option<OpenPlan>,
    },
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

/// A declared script (`[[script]]`): scripts on this allowlist run with
/// the named ARGV values sealed, and the named reply elements opened.
#[derive(Debug, Clone)]
pub struct ScriptProfile {
    /// Name for messages.
    pub name: String,
    /// SHA1 of the script body (what EVALSHA names).
    pub sha1: [u8; 20],
    /// ARGV positions (1-based) sealed for KEYS positions (1-based), as the
    /// value of that key's string, or of a field of that hash.
    pub seal_argv: Vec<ScriptValue>,
    /// Reply elements opened: `index` None = the reply is one value.
    pub open_reply: Vec<ScriptValue>,
}

/// A declared script's value to seal: (argument index, key, field).
type ScriptSeal<'a> = (usize, &'a [u8], Option<&'a [u8]>);

/// One sealed position of a declared script.
#[derive(Debug, Clone)]
pub struct ScriptValue {
    /// ARGV position (1-based) for `seal_argv`, reply element (0-based, or
    /// None for the whole reply) for `open_reply`.
    pub at: Option<usize>,
    /// KEYS position (1-based) whose binding the value has.
    pub key: usize,
    /// Hash field of that key, if the value is a field's.
    pub field: Option<Vec<u8>>,
}

/// Rules + keyring + namespace (+ declared scripts).
pub struct Sealer {
    rules: Rules,
    keyring: Keyring,
    namespace: Vec<u8>,
    scripts: Vec<ScriptProfile>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("rules", &self.rules).field("keyring", &self.keyring).finish_non_exhaustive()
    }
}

/// Seconds since 1970 at `t`; a time before 1970 is an error, never 0 (a
/// value stamped 0 would be decades old, or make every value look fresh).
pub fn unix_seconds(t: SystemTime) -> Result<u64, String> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "the system clock reads a time before 1970: sealed values need a correct clock".to_string())
}

/// Checked once at start: respseal does not run on a clock before 1970.
pub fn check_clock() -> Result<u64, String> {
    unix_seconds(SystemTime::now())
}

/// The clock, or the last good reading if it jumped before 1970 since the
/// start check.
fn system_unix() -> u64 {
    static LAST_GOOD: AtomicU64 = AtomicU64::new(0);
    match unix_seconds(SystemTime::now()) {
        Ok(t) => {
            LAST_GOOD.store(t, Ordering::Relaxed);
            t
        }
        Err(_) => LAST_GOOD.load(Ordering::Relaxed),
    }
}

/// Current unix time in seconds, at most [`CLOCK_TICK`] old.
///
/// Every seal and open needs the time, in whole seconds; reading the system
/// clock for each cost about 2% of the proxy's CPU under load. A background
/// thread refreshes a shared value instead.
pub fn now_unix() -> u64 {
    static NOW: AtomicU64 = AtomicU64::new(0);
    static TICKER: Once = Once::new();
    static DIRECT: AtomicBool = AtomicBool::new(false);
    TICKER.call_once(|| {
        NOW.store(system_unix(), Ordering::Relaxed);
        let ticker = std::thread::Builder::new().name("respseal-clock".into()).spawn(|| {
            loop {
                std::thread::sleep(CLOCK_TICK);
                NOW.store(system_unix(), Ordering::Relaxed);
            }
        });
        if ticker.is_err() {
            DIRECT.store(true, Ordering::Relaxed);
        }
    });
    if DIRECT.load(Ordering::Relaxed) { system_unix() } else { NOW.load(Ordering::Relaxed) }
}

/// How often [`now_unix`]'s clock is refreshed.
const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(100);

impl Sealer {
    /// A sealer for these rules, keys and namespace.
    pub fn new(rules: Rules, keyring: Keyring, namespace: Vec<u8>) -> Self {
        Sealer { rules, keyring, namespace, scripts: Vec::new() }
    }

    /// With declared scripts.
    pub fn with_scripts(mut self, scripts: Vec<ScriptProfile>) -> Self {
        self.scripts = scripts;
        self
    }

    /// The declared script an EVAL/EVALSHA (or _RO) runs, if any.
    fn script_profile(&self, cmd: &Command, args: &Args<'_>) -> Option<&ScriptProfile> {
        if self.scripts.is_empty() {
            return None;
        }
        let body_or_sha = args.get(1)?;
        let sha: [u8; 20] = match cmd.name {
            "EVAL" | "EVAL_RO" => {
                use sha1::Digest;
                sha1::Sha1::digest(body_or_sha).into()
            }
            "EVALSHA" | "EVALSHA_RO" if body_or_sha.len() == 40 => {
                let mut out = [0u8; 20];
                for (i, pair) in body_or_sha.chunks(2).enumerate() {
                    out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
                }
                out
            }
            _ => return None,
        };
        self.scripts.iter().find(|s| s.sha1 == sha)
    }

    /// The argument index of KEYS[k] and ARGV[a] (1-based) of a script call.
    fn script_positions(args: &Args<'_>) -> Option<(usize, usize)> {
        let numkeys = usize::try_from(args.get(2).and_then(parse_int)?).ok()?;
        (3 + numkeys <= args.len()).then_some((3, 3 + numkeys))
    }

    /// A declared script's values to seal: (argument index, binding key,
    /// field), for the entries whose key is a sealed name.
    fn script_seals<'a>(&'a self, p: &'a ScriptProfile, args: &'a Args<'_>) -> Vec<ScriptSeal<'a>> {
        let Some((keys_at, argv_at)) = Self::script_positions(args) else { return Vec::new() };
        p.seal_argv
            .iter()
            .filter_map(|v| {
                let key = args.get(keys_at + v.key.checked_sub(1)?).filter(|_| keys_at + v.key - 1 < argv_at)?;
                let at = argv_at + v.at?.checked_sub(1)?;
                args.get(at)?;
                let rule = self.rules.get(self.rules.find(key)?);
                match &v.field {
                    Some(f) if rule.seals_field(f) => Some((at, key, Some(&f[..]))),
                    Some(_) => None,
                    None => Some((at, key, None)),
                }
            })
            .collect()
    }

    /// What a declared script's call becomes.
    fn inspect_script(&self, p: &ScriptProfile, args: &Args<'_>) -> Inspect {
        let Some((keys_at, argv_at)) = Self::script_positions(args) else {
            // Redis answers a bad numkeys itself; nothing to seal.
            return Inspect::Untouched;
        };
        let seal = !self.script_seals(p, args).is_empty();
        let sealed_key = |v: &ScriptValue| -> Option<(SealedKey, Option<Bytes>)> {
            let i = keys_at + v.key.checked_sub(1)?;
            if i >= argv_at {
                return None;
            }
            let sk = self.sealed_key(args, i)?;
            let field = v.field.as_ref().map(|f| Bytes::copy_from_slice(f));
            Some((sk, field))
        };
        let open = match p.open_reply.as_slice() {
            [] => None,
            [one] if one.at.is_none() => sealed_key(one).map(|(sk, field)| match field {
                Some(f) => OpenPlan::Field(sk, f),
                None => OpenPlan::Value(sk),
            }),
            many => {
                let els: Vec<(usize, SealedKey, Option<Bytes>)> =
                    many.iter().filter_map(|v| sealed_key(v).and_then(|(sk, f)| Some((v.at?, sk, f)))).collect();
                (!els.is_empty()).then_some(OpenPlan::Elements(els))
            }
        };
        if !seal && open.is_none() {
            return Inspect::Untouched;
        }
        Inspect::Forward { seal, open }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The namespace bound into every sealed value.
    pub fn namespace(&self) -> &[u8] {
        &self.namespace
    }

    /// Decide what to do with one request.
    /// `cmd` is the command's row, already looked up for routing.
    ///
    /// The boundary is closed by construction: a sealed name passes only
    /// through a row whose [`Data`] says how it is treated; a command the
    /// table does not know, or whose key positions are not fixed, is
    /// checked on every argument.
    pub fn inspect(&self, cmd: Option<&'static Command>, args: &Args<'_>) -> Inspect {
        let Some(name) = args.get(0) else {
            return Inspect::Untouched;
        };
        let Some(cmd) = cmd else {
            // Unknown command: fail closed if anything looks like a sealed key.
            return match args.iter().skip(1).find_map(|a| self.rules.find(a)) {
                Some(rule) => Inspect::Refuse(Refusal::Opaque { command: shown(name), rule: self.pattern(rule) }),
                None => Inspect::Untouched,
            };
        };
        let refuse = |rule: usize, why: SealedUse| {
            Inspect::Refuse(Refusal::SealedKey { command: cmd.name, rule: self.pattern(rule), why })
        };
        if matches!(cmd.name, "PUBLISH" | "SPUBLISH")
            && args.len() == 3
            && args.get(1).and_then(|c| self.rules.find_channel(c)).is_some()
        {
            return Inspect::Forward { seal: true, open: None };
        }
        match cmd.data {
            Data::Script if let Some(profile) = self.script_profile(cmd, args) => {
                return self.inspect_script(profile, args);
            }
            Data::Script if matches!(cmd.name, "SCRIPT" | "FUNCTION") => {
                // These touch no key themselves: keys are touched when the
                // code runs (EVALSHA, FCALL, checked there). What they can
                // do is register code whose body names sealed keys, which
                // EVALSHA/FCALL would then run unseen: a body is checked
                // when it is loaded, and a FUNCTION RESTORE payload (whose
                // bodies may be compressed) is refused while any key rule
                // exists.
                let sub = args.get(1).unwrap_or_default();
                let hit = if sub.eq_ignore_ascii_case(b"LOAD") {
                    args.iter().skip(2).find_map(|a| self.rules.find_in_script(a))
                } else if sub.eq_ignore_ascii_case(b"RESTORE") {
                    self.rules.first_sealing()
                } else {
                    None
                };
                if let Some(rule) = hit {
                    return refuse(rule, SealedUse::Script);
                }
                if sub.eq_ignore_ascii_case(b"LOAD") {
                    return self.script_channels(cmd, args.iter().skip(2));
                }
                return Inspect::Untouched;
            }
            Data::Script => {
                // Key names (and channels) can come from ARGV or the body.
                return match args.iter().skip(1).find_map(|a| self.rules.find_in_script(a)) {
                    Some(rule) => refuse(rule, SealedUse::Script),
                    None => self.script_channels(cmd, args.iter().skip(1)),
                };
            }
            Data::Opaque
                if cmd.name == "DEBUG"
                    && args.is(1, "POPULATE")
                    && let Some(rule) = self.rules.find_by_prefix(&populate_prefix(args)) =>
            {
                return refuse(rule, SealedUse::Populate);
            }
            Data::Opaque => {
                return match args.iter().skip(1).find_map(|a| self.rules.find(a)) {
                    Some(rule) => {
                        Inspect::Refuse(Refusal::Opaque { command: cmd.name.into(), rule: self.pattern(rule) })
                    }
                    None => Inspect::Untouched,
                };
            }
            _ => {}
        }
        let keys = key_indexes(cmd.keys, args);
        let Some((first_key, rule)) =
            keys.clone().find_map(|k| Some((k, args.get(k).and_then(|key| self.rules.find(key))?)))
        else {
            return Inspect::Untouched;
        };
        match cmd.data {
            Data::Meta => return Inspect::Untouched,
            Data::Inspect => return refuse(rule, SealedUse::Inspect),
            Data::Move if crate::commands::table::CARRIED_MOVES.contains(&cmd.name) => return Inspect::Move,
            Data::Move => return refuse(rule, SealedUse::Move),
            Data::Hash => return self.inspect_hash(cmd, args, rule),
            Data::Collection(t) => {
                // Every sealed name among the keys must allow the type.
                let denied = keys
                    .skip_while(|&k| k != first_key)
                    .filter_map(|k| args.get(k).and_then(|key| self.rules.find(key)))
                    .find(|&r| !self.rules.get(r).allows(t));
                return match denied {
                    Some(r) => refuse(r, SealedUse::Collection(t)),
                    None => Inspect::Untouched,
                };
            }
            Data::String | Data::Script | Data::Opaque => {}
        }
        let seal = self.sealed_values(cmd, args).next().is_some();
        let open = match cmd.reply {
            ReplyShape::Value if cmd.name == "SET" && !(3..args.len()).any(|i| args.is(i, "GET")) => None,
            ReplyShape::Value => self.sealed_key(args, 1).map(OpenPlan::Value),
            ReplyShape::PerKey => Some(OpenPlan::PerKey(keys.map(|k| self.sealed_key(args, k)).collect())),
            _ => None,
        };
        if !seal && open.is_none() {
            return Inspect::Untouched;
        }
        Inspect::Forward { seal, open }
    }

    /// A hash command on a name of rule `rule`: sealed, opened, refused or
    /// untouched, field by field.
    fn inspect_hash(&self, cmd: &'static Command, args: &Args<'_>, rule: usize) -> Inspect {
        let r = self.rules.get(rule);
        let refuse = |why| Inspect::Refuse(Refusal::SealedKey { command: cmd.name, rule: self.pattern(rule), why });
        if r.fields.is_none() {
            return refuse(SealedUse::Hash);
        }
        let sk = || SealedKey { rule, key: Bytes::copy_from_slice(args.get(1).unwrap_or_default()) };
        let sealed_field = |i: usize| args.get(i).filter(|f| r.seals_field(f)).map(Bytes::copy_from_slice);
        let open = |plan| Inspect::Forward { seal: false, open: Some(plan) };
        match cmd.name {
            "HSET" | "HMSET" | "HSETNX" => {
                if (2..args.len().saturating_sub(1)).step_by(2).any(|i| sealed_field(i).is_some()) {
                    Inspect::Forward { seal: true, open: None }
                } else {
                    Inspect::Untouched
                }
            }
            "HGET" => sealed_field(2).map_or(Inspect::Untouched, |f| open(OpenPlan::Field(sk(), f))),
            "HMGET" => {
                let fields: Vec<Option<Bytes>> = (2..args.len()).map(sealed_field).collect();
                if fields.iter().any(Option::is_some) {
                    open(OpenPlan::Fields(sk(), fields))
                } else {
                    Inspect::Untouched
                }
            }
            "HGETALL" => open(OpenPlan::Hash(sk(), HashReply::All)),
            // Sent as HGETALL: the values alone cannot be opened without
            // their fields, which their envelopes are bound to.
            "HVALS" => Inspect::Forward { seal: true, open: Some(OpenPlan::Hash(sk(), HashReply::Values)) },
            "HSCAN" if args.has_word("NOVALUES") => Inspect::Untouched,
            "HSCAN" => open(OpenPlan::Hash(sk(), HashReply::Scan)),
            "HRANDFIELD" if args.len() == 4 && args.is(3, "WITHVALUES") => {
                open(OpenPlan::Hash(sk(), HashReply::Random))
            }
            "HRANDFIELD" => Inspect::Untouched,
            "HSTRLEN" | "HINCRBY" | "HINCRBYFLOAT" if sealed_field(2).is_some() => refuse(SealedUse::Inspect),
            "HSTRLEN" | "HINCRBY" | "HINCRBYFLOAT" | "HDEL" | "HEXISTS" | "HKEYS" | "HLEN" => Inspect::Untouched,
            _ => refuse(SealedUse::Hash),
        }
    }

    /// A script is refused when an argument or its body names a sealed
    /// channel: its PUBLISH would carry a plaintext payload.
    fn script_channels<'a>(&self, cmd: &'static Command, mut args: impl Iterator<Item = &'a [u8]>) -> Inspect {
        match args.find_map(|a| self.rules.find_channel_in_script(a)) {
            Some(i) => Inspect::Refuse(Refusal::SealedKey {
                command: cmd.name,
                rule: self.rules.channel(i).source.clone(),
                why: SealedUse::ScriptChannel,
            }),
            None => Inspect::Untouched,
        }
    }

    fn pattern(&self, rule: usize) -> String {
        self.rules.get(rule).source.clone()
    }

    fn sealed_key(&self, args: &Args<'_>, i: usize) -> Option<SealedKey> {
        let key = args.get(i)?;
        self.rules.find(key).map(|rule| SealedKey { rule, key: Bytes::copy_from_slice(key) })
    }

    /// The (key, value) argument indexes of the values to seal, in order:
    /// the values whose key matches a rule.
    fn sealed_values<'a>(&'a self, cmd: &Command, args: &'a Args<'_>) -> impl Iterator<Item = (&'a [u8], usize)> + 'a {
        let at = match cmd.values {
            Values::At(i) => Some((1, i as usize)),
            _ => None,
        };
        let after_each = matches!(cmd.values, Values::AfterEachKey).then(|| key_indexes(cmd.keys, args));
        at.into_iter().chain(after_each.into_iter().flatten().map(|k| (k, k + 1))).filter_map(|(k, v)| {
            let key = args.get(k)?;
            (args.get(v).is_some() && self.rules.find(key).is_some()).then_some((key, v))
        })
    }

    /// At least the length of the request re-encoded by
    /// [`Sealer::seal_request`] (no rule lookups: cheap).
    pub fn sealed_len_bound(cmd: &Command, args: &Args<'_>) -> usize {
        let values = match cmd.values {
            Values::At(_) => 1,
            Values::AfterEachKey => key_indexes(cmd.keys, args).len(),
            Values::FieldPairs(at) => args.len().saturating_sub(at as usize) / 2,
            // A declared script's ARGV, or a published message.
            Values::None if cmd.data == Data::Script => args.len(),
            Values::None => 1,
        };
        args.iter().map(|a| a.len() + 16).sum::<usize>() + 16 + values * crypto::OVERHEAD
    }

    /// Append the request to `out`, re-encoded with the values whose key
    /// matches a rule sealed, each sealed straight into `out`. On error
    /// `out` is left as it was.
    pub fn seal_request(&self, cmd: &Command, args: &Args<'_>, out: &mut BytesMut) -> Result<(), Error> {
        let now = now_unix();
        let start = out.len();
        out.reserve(Self::sealed_len_bound(cmd, args));
        if cmd.name == "HVALS" {
            // Opened from HGETALL's pairs ([`HashReply::Values`]).
            encode::array_header(out, 2);
            encode::bulk(out, b"HGETALL");
            encode::bulk(out, args.get(1).unwrap_or_default());
            return Ok(());
        }
        if cmd.data == Data::Script
            && let Some(profile) = self.script_profile(cmd, args)
        {
            let seals = self.script_seals(profile, args);
            encode::array_header(out, args.len());
            for (i, arg) in args.iter().enumerate() {
                match seals.iter().find(|(at, _, _)| *at == i) {
                    Some((_, key, field)) => {
                        let binding = match field {
                            Some(f) => Binding::hash_field(&self.namespace, key, f),
                            None => Binding::string(&self.namespace, key),
                        };
                        self.seal_arg(&binding, arg, now, out).inspect_err(|_| out.truncate(start))?;
                    }
                    None => encode::bulk(out, arg),
                }
            }
            return Ok(());
        }
        if matches!(cmd.name, "PUBLISH" | "SPUBLISH") {
            let channel = args.get(1).unwrap_or_default();
            encode::array_header(out, args.len());
            for (i, arg) in args.iter().enumerate() {
                if i == 2 {
                    self.seal_arg(&Binding::channel(&self.namespace, channel), arg, now, out)
                        .inspect_err(|_| out.truncate(start))?;
                } else {
                    encode::bulk(out, arg);
                }
            }
            return Ok(());
        }
        if let Values::FieldPairs(at) = cmd.values {
            let key = args.get(1).unwrap_or_default();
            let rule = self.rules.find(key).map(|r| self.rules.get(r));
            encode::array_header(out, args.len());
            for (i, arg) in args.iter().enumerate() {
                let field = (i > at as usize && (i - at as usize) % 2 == 1).then(|| args.get(i - 1)).flatten();
                match field.filter(|f| rule.is_some_and(|r| r.seals_field(f))) {
                    Some(field) => {
                        let binding = Binding::hash_field(&self.namespace, key, field);
                        self.seal_arg(&binding, arg, now, out).inspect_err(|_| out.truncate(start))?;
                    }
                    None => encode::bulk(out, arg),
                }
            }
            return Ok(());
        }
        let mut to_seal = self.sealed_values(cmd, args).peekable();
        encode::array_header(out, args.len());
        for (i, arg) in args.iter().enumerate() {
            match to_seal.next_if(|&(_, v)| v == i) {
                Some((key, _)) => {
                    self.seal_arg(&Binding::string(&self.namespace, key), arg, now, out)
                        .inspect_err(|_| out.truncate(start))?;
                }
                None => encode::bulk(out, arg),
            }
        }
        Ok(())
    }

    /// One sealed bulk string argument.
    fn seal_arg(&self, binding: &Binding<'_>, arg: &[u8], now: u64, out: &mut BytesMut) -> Result<(), Error> {
        let mark = out.len();
        encode::bulk_header(out, arg.len() + crypto::OVERHEAD);
        if let Err(e) = crypto::seal_into(&self.keyring, binding, arg, now, out) {
            out.truncate(mark);
            return Err(Error::Crypto(CryptoError::Seal(e.reason())));
        }
        out.extend_from_slice(b"\r\n");
        stats::add(stats::Counter::Sealed, 1);
        Ok(())
    }

    /// Open a reply frame according to `plan` and queue the result for the
    /// client; opened values are decrypted straight into the client's output
    /// queue. Legacy values to re-seal are added to `reseal`.
    pub fn open_reply(&self, plan: &OpenPlan, frame: Bytes, proto: Proto, reseal: &mut Vec<Reseal>, out: &mut OutBuf) {
        let now = now_unix();
        match plan {
            OpenPlan::Value(sk) => {
                if let Err(e) = self.open_element(sk, frame, proto, now, reseal, out) {
                    out.push(e);
                }
            }
            OpenPlan::Field(..) | OpenPlan::Fields(..) | OpenPlan::Hash(..) => {
                self.open_hash_reply(plan, frame, proto, now, out);
            }
            OpenPlan::Elements(els) => {
                if is_error(&frame, proto) || is_null(&frame) {
                    return out.push(frame);
                }
                let Some(elements) = split_array(&frame) else {
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
                let elements = match split_array(&frame) {
                    Some(e) if e.len() == keys.len() => e,
                    // Redis's own error (WRONGTYPE, OOM …) is passed on.
                    _ if is_error(&frame, proto) => return out.push(frame),
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

    /// A pub/sub delivery (`message`, `pmessage`, `smessage`; a RESP2 array
    /// or a RESP3 push): `None` when it is not on a sealed channel (pass it
    /// on), `Some(Some(frame))` with its payload opened, `Some(None)` when
    /// the payload does not open: the message is dropped (counted and
    /// logged as an open failure), never delivered as ciphertext or as a
    /// forgery.
    pub fn open_message(&self, frame: &Bytes, proto: Proto) -> Option<Option<Bytes>> {
        if !self.rules.has_channels() {
            return None;
        }
        let header = &frame[..frame.iter().position(|&b| b == b'\n')? + 1];
        let els = split_array(frame).or_else(|| split_push(frame))?;
        let kind = bulk_payload(els.first()?, proto)?;
        let channel_at = match &kind[..] {
            b"message" | b"smessage" if els.len() == 3 => 1,
            b"pmessage" if els.len() == 4 => 2,
            _ => return None,
        };
        let channel = bulk_payload(&els[channel_at], proto)?;
        let rule = self.rules.channel(self.rules.find_channel(&channel)?);
        let payload_el = els.last()?;
        let now = now_unix();
        let failed = |reason: &'static str, key_id: Option<u32>| {
            Error::Crypto(CryptoError::Open { reason, key_id }).report();
            Some(None)
        };
        let Some(payload) = bulk_payload(payload_el, proto) else { return failed("bad_shape", None) };
        if !crypto::is_sealed(&payload) {
            return failed("not_sealed", None);
        }
        let mut out = BytesMut::with_capacity(frame.len());
        out.extend_from_slice(header);
        for el in &els[..els.len() - 1] {
            out.extend_from_slice(el);
        }
        let body = payload.len().saturating_sub(crypto::OVERHEAD);
        encode::bulk_header(&mut out, body);
        let binding = Binding::channel(&self.namespace, &channel);
        match crypto::open_into(&self.keyring, &binding, &payload, now, rule.freshness(), &mut out) {
            Ok(()) => {
                out.extend_from_slice(b"\r\n");
                stats::add(stats::Counter::Opened, 1);
                Some(Some(out.freeze()))
            }
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut out[..]);
                failed(e.reason(), crypto::inspect(&payload).ok().map(|i| i.key_id))
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
        if is_error(&frame, proto) || is_null(&frame) {
            return out.push(frame);
        }
        let mark = out.mark();
        let result = match plan {
            OpenPlan::Field(_, field) => self.open_field(rule, &sk.key, field, frame.clone(), proto, now, out),
            OpenPlan::Fields(_, fields) => match split_array(&frame) {
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
                let cursor = split_array(&frame).and_then(|p| p.into_iter().next());
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
            match frame.first() {
                Some(b'%') => split_map(frame).map(|e| (true, e)),
                Some(b'*') => split_array(frame).filter(|e| e.len() % 2 == 0).map(|e| (false, e)),
                _ => None,
            }
        };
        let pairs = |elements: Vec<Bytes>, values_only: bool, out: &mut OutBuf| {
            let mut it = elements.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                let field = bulk_payload(&f, proto).ok_or(BAD)?;
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
                let parts = split_array(frame).filter(|p| p.len() == 2).ok_or(BAD)?;
                let (_, elements) = pairs_of(&parts[1]).ok_or(BAD)?;
                out.array_header(2);
                out.push(parts[0].clone());
                out.array_header(elements.len());
                pairs(elements, false, out)
            }
            HashReply::Random => {
                let elements = split_array(frame).ok_or(BAD)?;
                if elements.first().is_some_and(|e| e.first() == Some(&b'*')) {
                    // RESP3: an array of [field, value] arrays.
                    out.array_header(elements.len());
                    for pair in elements {
                        let p = split_array(&pair).filter(|p| p.len() == 2).ok_or(BAD)?;
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

/// Indexes of the key arguments of a command (no allocation: this runs for
/// every request when rules are configured).
pub fn key_indexes(spec: Keys, args: &Args<'_>) -> std::iter::StepBy<std::ops::Range<usize>> {
    let n = args.len();
    let (start, end, step) = match spec {
        Keys::None => (0, 0, 1),
        Keys::Range { first, last, step } => {
            let first = first as usize;
            let last = if last < 0 { n as i64 + i64::from(last) } else { i64::from(last) };
            if last < first as i64 {
                (0, 0, 1)
            } else {
                let last = (last as usize).min(n.saturating_sub(1));
                (first, last + 1, step.max(1) as usize)
            }
        }
        Keys::Any => (1, n, 1),
        Keys::NumKeys { at } => {
            let at = at as usize;
            let count = args.get(at).and_then(parse_int).unwrap_or(0).max(0) as usize;
            (at + 1, (at + 1).saturating_add(count).min(n).max(at + 1), 1)
        }
    };
    (start..end).step_by(step)
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
    match frame.first() {
        Some(b'$') if frame.starts_with(b"$-1\r\n") => Shape::Null,
        Some(b'$') => bulk_payload(frame, proto).map_or(Shape::Other, Shape::Bulk),
        Some(b'_') if proto == Proto::Resp3 => Shape::Null,
        _ if is_error(frame, proto) => Shape::Error,
        _ => Shape::Other,
    }
}

/// Whether a frame is an error reply (`-…`, or a RESP3 blob error).
pub fn is_error(frame: &[u8], proto: Proto) -> bool {
    match frame.first() {
        Some(b'-') => true,
        Some(b'!') => proto == Proto::Resp3,
        _ => false,
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

/// Whether a frame is a null of any kind (`$-1`, `*-1`, `_`).
pub fn is_null(frame: &[u8]) -> bool {
    frame == b"$-1\r\n" || frame == b"*-1\r\n" || frame == b"_\r\n"
}

/// The payload of a bulk string frame, decoded with the decoder of the
/// stream's own protocol (a RESP2 stream is never decoded as RESP3). The
/// payload shares the frame's memory.
pub(crate) fn bulk_payload(frame: &Bytes, proto: Proto) -> Option<Bytes> {
    match proto {
        Proto::Resp2 => match resp2::decode::decode_bytes(frame) {
            Ok(Some((resp2::types::BytesFrame::BulkString(b), _))) => Some(b),
            _ => None,
        },
        Proto::Resp3 => match resp3::decode::complete::decode_bytes(frame) {
            Ok(Some((resp3::types::BytesFrame::BlobString { data, .. }, _))) => Some(data),
            _ => None,
        },
    }
}

/// The elements of an array frame as separate frames (`None` if the frame
/// is not a non-null array).
pub fn split_array(frame: &Bytes) -> Option<Vec<Bytes>> {
    split_aggregate(frame, b'*', 1)
}

/// The elements of a RESP3 map frame, keys and values alternating.
pub fn split_map(frame: &Bytes) -> Option<Vec<Bytes>> {
    split_aggregate(frame, b'%', 2)
}

/// The elements of a RESP3 push frame (`>`: pub/sub deliveries).
fn split_push(frame: &Bytes) -> Option<Vec<Bytes>> {
    split_aggregate(frame, b'>', 1)
}

/// The elements of an aggregate whose header is `kind` followed by a count
/// of `per_count` elements each, sharing the frame's memory.
fn split_aggregate(frame: &Bytes, kind: u8, per_count: usize) -> Option<Vec<Bytes>> {
    if frame.first() != Some(&kind) {
        return None;
    }
    let cr = frame.iter().position(|&b| b == b'\r')?;
    let n = usize::try_from(parse_int(&frame[1..cr])?).ok()?.checked_mul(per_count)?;
    let mut pos = cr + 2;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let len = crate::protocol::reply::frame_len(&frame[pos..], Proto::Resp3).ok()??;
        out.push(frame.slice(pos..pos + len));
        pos += len;
    }
    Some(out)
}

/// A command name for an error message: printable ASCII only, bounded.
pub fn shown(name: &[u8]) -> String {
    name.iter().take(32).map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect()
}

/// The names DEBUG POPULATE makes start with `<prefix>:` (`key` by default).
fn populate_prefix(args: &Args<'_>) -> Vec<u8> {
    let mut p = args.get(3).unwrap_or(b"key").to_vec();
    p.push(b':');
    p
}

#[cfg(test)]
mod tests {
    use super::key_indexes;
    use crate::commands::{Args, lookup, owned_args};

    fn keys(words: &[&str]) -> Vec<usize> {
        let (buf, ranges) = owned_args(words);
        let cmd = lookup(words[0].as_bytes()).expect("known command");
        key_indexes(cmd.keys, &Args::new(&buf, &ranges)).collect()
    }

    #[test]
    fn a_clock_before_1970_is_an_error_not_zero() {
        use std::time::{Duration, UNIX_EPOCH};
        assert!(super::unix_seconds(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert_eq!(super::unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), Ok(5));
        assert!(super::check_clock().is_ok());
    }

    #[test]
    fn key_positions_follow_the_table() {
        assert_eq!(keys(&["GET", "k"]), vec![1]);
        assert_eq!(keys(&["MGET", "a", "b", "c"]), vec![1, 2, 3]);
        assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), vec![1, 3]);
        assert_eq!(keys(&["LCS", "a", "b"]), vec![1, 2]);
        assert_eq!(keys(&["EVAL", "return 1", "2", "k1", "k2", "arg"]), vec![3, 4]);
        assert_eq!(keys(&["EVAL", "return 1", "9", "k1"]), vec![3]);
        assert_eq!(keys(&["EVAL", "return 1", "x"]), Vec::<usize>::new());
        assert_eq!(keys(&["MGET"]), Vec::<usize>::new());
        assert_eq!(keys(&["PING"]), Vec::<usize>::new());
    }
}
