//! The boundary: what one request becomes with the command table and the
//! rules — untouched (no sealed name: the common, allocation-free case),
//! refused (fail closed), carried out by respseal (moves), or forwarded
//! with values sealed and a plan for opening its reply.

use bytes::Bytes;

use super::{HashReply, OpenPlan, SealedKey, Sealer};
use crate::commands::table::{Command, Data, ReplyShape};
use crate::commands::{Args, key_indexes};
use crate::error::{Refusal, SealedUse, shown};

/// What to do with a request.
#[derive(Debug)]
pub enum Inspect {
    /// No sealed key involved.
    Untouched,
    /// Refused, for this reason.
    Refuse(Refusal),
    /// RENAME, RENAMENX or COPY with a sealed name: carried out by
    /// respseal ([`crate::sealing::moves`]).
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

impl Sealer {
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
}

/// The names DEBUG POPULATE makes start with `<prefix>:` (`key` by default).
fn populate_prefix(args: &Args<'_>) -> Vec<u8> {
    let mut p = args.get(3).unwrap_or(b"key").to_vec();
    p.push(b':');
    p
}
