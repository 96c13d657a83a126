//! The boundary: what one request becomes with the command table and the
//! rules — untouched (no sealed name: the common, allocation-free case),
//! refused (fail closed), carried out by respseal (moves), or forwarded
//! with values sealed and a plan for opening its reply.

use bytes::Bytes;

use super::{HashReply, OpenPlan, SealedKey, Sealer};
use crate::commands::table::{Code, Command, Data, Fields, ReplyShape, Values};
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
    /// Forward, re-encoded ([`Sealer::seal_request`]) with its values
    /// sealed if `seal` is set and its key names pseudonymised if `names`
    /// is, and open the reply with `open` if set.
    Forward {
        /// Some value is to be sealed.
        seal: bool,
        /// Some key name (or a listing's pattern) is to be pseudonymised.
        names: bool,
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
        let verdict = self.inspect_values(cmd, args);
        if !self.pseudonymises() {
            return verdict;
        }
        self.inspect_names(cmd, args, verdict)
    }

    /// The boundary for values: sealed names, by the rules' patterns.
    fn inspect_values(&self, cmd: Option<&'static Command>, args: &Args<'_>) -> Inspect {
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
        if cmd.values == Values::Message
            && args.len() == 3
            && args.get(1).and_then(|c| self.rules.find_channel(c)).is_some()
        {
            return Inspect::Forward { seal: true, names: false, open: None };
        }
        match cmd.data {
            Data::Script(code) if let Some(profile) = self.script_profile(code, args) => {
                return self.inspect_script(profile, args);
            }
            Data::Script(Code::Manages { load, restore }) => {
                // These touch no key themselves: keys are touched when the
                // code runs (EVALSHA, FCALL, checked there). What they can
                // do is register code whose body names sealed keys, which
                // EVALSHA/FCALL would then run unseen: a body is checked
                // when it is loaded, and a FUNCTION RESTORE payload (whose
                // bodies may be compressed) is refused while any key rule
                // exists.
                let sub = args.get(1).unwrap_or_default();
                let hit = if sub.eq_ignore_ascii_case(load.as_bytes()) {
                    args.iter().skip(2).find_map(|a| self.rules.find_in_script(a))
                } else if sub.eq_ignore_ascii_case(restore.as_bytes()) {
                    self.rules.first_sealing()
                } else {
                    None
                };
                if let Some(rule) = hit {
                    return refuse(rule, SealedUse::Script);
                }
                if sub.eq_ignore_ascii_case(load.as_bytes()) {
                    return self.script_channels(cmd, args.iter().skip(2));
                }
                return Inspect::Untouched;
            }
            Data::Script(_) => {
                // Key names (and channels) can come from ARGV or the body.
                return match args.iter().skip(1).find_map(|a| self.rules.find_in_script(a)) {
                    Some(rule) => refuse(rule, SealedUse::Script),
                    None => self.script_channels(cmd, args.iter().skip(1)),
                };
            }
            Data::Populates { sub, prefix_at, default }
                if args.is(1, sub)
                    && let Some(rule) = self.rules.find_by_prefix(&populated_prefix(args, prefix_at, default)) =>
            {
                return refuse(rule, SealedUse::Populate);
            }
            Data::Opaque | Data::Populates { .. } => {
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
            Data::Move(Some(_)) => return Inspect::Move,
            Data::Move(None) => return refuse(rule, SealedUse::Move),
            Data::Hash(fields) => return self.inspect_hash(cmd, fields, args, rule),
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
            Data::String | Data::Script(_) | Data::Opaque | Data::Populates { .. } => {}
        }
        let seal = self.sealed_values(cmd, args).next().is_some();
        let open = match cmd.reply {
            ReplyShape::ValueIf(word) => {
                // The option comes after the value.
                let after = match cmd.values {
                    Values::At(i) => usize::from(i) + 1,
                    _ => 1,
                };
                (after..args.len())
                    .any(|i| args.is(i, word))
                    .then(|| self.sealed_key(args, 1))
                    .flatten()
                    .map(OpenPlan::Value)
            }
            ReplyShape::Value => self.sealed_key(args, 1).map(OpenPlan::Value),
            ReplyShape::PerKey => Some(OpenPlan::PerKey(keys.map(|k| self.sealed_key(args, k)).collect())),
            _ => None,
        };
        if !seal && open.is_none() {
            return Inspect::Untouched;
        }
        Inspect::Forward { seal, names: false, open }
    }

    /// A hash command on a name of rule `rule`: sealed, opened, refused or
    /// untouched, field by field, as its row says.
    fn inspect_hash(&self, cmd: &'static Command, fields: Fields, args: &Args<'_>, rule: usize) -> Inspect {
        let r = self.rules.get(rule);
        let refuse = |why| Inspect::Refuse(Refusal::SealedKey { command: cmd.name, rule: self.pattern(rule), why });
        if r.fields.is_none() {
            return refuse(SealedUse::Hash);
        }
        let sk = || SealedKey { rule, key: Bytes::copy_from_slice(args.get(1).unwrap_or_default()) };
        let sealed_field = |i: usize| args.get(i).filter(|f| r.seals_field(f)).map(Bytes::copy_from_slice);
        let open = |plan| Inspect::Forward { seal: false, names: false, open: Some(plan) };
        match fields {
            Fields::Names => return Inspect::Untouched,
            Fields::Inspects(at) if sealed_field(usize::from(at)).is_some() => return refuse(SealedUse::Inspect),
            Fields::Inspects(_) => return Inspect::Untouched,
            Fields::Values => {}
        }
        if let Values::FieldPairs(at) = cmd.values {
            let sealed = (usize::from(at)..args.len().saturating_sub(1)).step_by(2).any(|i| sealed_field(i).is_some());
            return if sealed { Inspect::Forward { seal: true, names: false, open: None } } else { Inspect::Untouched };
        }
        match cmd.reply {
            ReplyShape::FieldValue(at) => {
                sealed_field(usize::from(at)).map_or(Inspect::Untouched, |f| open(OpenPlan::Field(sk(), f)))
            }
            ReplyShape::PerField(at) => {
                let fields: Vec<Option<Bytes>> = (usize::from(at)..args.len()).map(sealed_field).collect();
                if fields.iter().any(Option::is_some) {
                    open(OpenPlan::Fields(sk(), fields))
                } else {
                    Inspect::Untouched
                }
            }
            ReplyShape::FieldValueMap => open(OpenPlan::Hash(sk(), HashReply::All)),
            // Sent as the row says (HGETALL): the values alone cannot be
            // opened without their fields, which their envelopes are bound to.
            ReplyShape::FieldValues { .. } => {
                Inspect::Forward { seal: true, names: false, open: Some(OpenPlan::Hash(sk(), HashReply::Values)) }
            }
            ReplyShape::ScanPairs { unless } if args.has_word(unless) => Inspect::Untouched,
            ReplyShape::ScanPairs { .. } => open(OpenPlan::Hash(sk(), HashReply::Scan)),
            ReplyShape::PairsIf { word, at } if args.len() == usize::from(at) + 1 && args.is(usize::from(at), word) => {
                open(OpenPlan::Hash(sk(), HashReply::Random))
            }
            ReplyShape::PairsIf { .. } => Inspect::Untouched,
            ReplyShape::Plain | ReplyShape::Value | ReplyShape::ValueIf(_) | ReplyShape::PerKey => {
                refuse(SealedUse::Hash)
            }
        }
    }
}

/// The names a [`Data::Populates`] command makes start with `<prefix>:`.
fn populated_prefix(args: &Args<'_>, at: u8, default: &str) -> Vec<u8> {
    let mut p = args.get(usize::from(at)).unwrap_or(default.as_bytes()).to_vec();
    p.push(b':');
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::table::{COMMANDS, Keys};
    use crate::commands::{lookup, owned_args};
    use crate::crypto::Keyring;
    use crate::rules::{Pattern, Rule, Rules};

    /// `sess:*` seals strings; `hsess:*` seals the hash field `data`;
    /// `chan:*` seals published messages.
    fn sealer() -> Sealer {
        let mut hash = Rule::new("hsess:*");
        hash.fields = Some(Pattern::new("data"));
        let rules = Rules::with_channels(vec![Rule::new("sess:*"), hash], vec![Rule::new("chan:*")]);
        Sealer::new(rules, Keyring::new(), b"ns".to_vec())
    }

    fn inspect(s: &Sealer, words: &[&str]) -> Inspect {
        let (buf, ranges) = owned_args(words);
        s.inspect(lookup(words[0].as_bytes()), &Args::new(&buf, &ranges))
    }

    fn refused_for(i: &Inspect) -> Option<SealedUse> {
        match i {
            Inspect::Refuse(Refusal::SealedKey { why, .. }) => Some(*why),
            _ => None,
        }
    }

    /// Every row of the table, with a sealed string name where its first
    /// key goes: treated as its data column says.
    #[test]
    fn every_row_treats_a_sealed_name_as_its_data_column_says() {
        let s = sealer();
        for c in COMMANDS {
            let mut words: Vec<&str> = vec![c.name, "1", "1", "1", "1"];
            let at = match c.keys {
                Keys::Range { first, .. } => usize::from(first),
                Keys::NumKeys { at } => usize::from(at) + 1,
                Keys::Any | Keys::None => 2,
            };
            words[at] = "sess:x";
            if let Data::Script(Code::Manages { load, .. }) = c.data {
                words = vec![c.name, load, "return redis.call('GET', 'sess:x')"];
            }
            let got = inspect(&s, &words);
            let ok = match c.data {
                Data::Meta => matches!(got, Inspect::Untouched),
                Data::String => matches!(got, Inspect::Forward { .. }),
                Data::Inspect => refused_for(&got) == Some(SealedUse::Inspect),
                Data::Move(Some(_)) => matches!(got, Inspect::Move),
                Data::Move(None) => refused_for(&got) == Some(SealedUse::Move),
                Data::Hash(_) => refused_for(&got) == Some(SealedUse::Hash),
                Data::Collection(t) => refused_for(&got) == Some(SealedUse::Collection(t)),
                Data::Script(_) => refused_for(&got) == Some(SealedUse::Script),
                Data::Opaque | Data::Populates { .. } => matches!(got, Inspect::Refuse(Refusal::Opaque { .. })),
            };
            assert!(ok, "{words:?}: {got:?} for {:?}", c.data);
            // A name no rule seals is never touched.
            words.iter_mut().filter(|w| **w == "sess:x").for_each(|w| *w = "other");
            if !matches!(c.data, Data::Script(_) | Data::Opaque | Data::Populates { .. }) {
                assert!(matches!(inspect(&s, &words), Inspect::Untouched), "{words:?}");
            }
        }
    }

    /// Hash rows under a rule that seals field `data`: what is sealed,
    /// opened, refused or left alone follows the row's values and reply
    /// columns.
    #[test]
    fn hash_rows_follow_their_columns() {
        let s = sealer();
        let seal_only = |i: Inspect| matches!(i, Inspect::Forward { seal: true, open: None, .. });
        let opens = |i: Inspect, want: fn(&OpenPlan) -> bool| match i {
            Inspect::Forward { open: Some(p), .. } => want(&p),
            _ => false,
        };
        let untouched = |i: Inspect| matches!(i, Inspect::Untouched);
        assert!(seal_only(inspect(&s, &["HSET", "hsess:1", "other", "a", "data", "b"])));
        assert!(untouched(inspect(&s, &["HSET", "hsess:1", "other", "a"])));
        assert!(seal_only(inspect(&s, &["HSETNX", "hsess:1", "data", "b"])));
        assert!(opens(inspect(&s, &["HGET", "hsess:1", "data"]), |p| matches!(p, OpenPlan::Field(..))));
        assert!(untouched(inspect(&s, &["HGET", "hsess:1", "other"])));
        assert!(opens(inspect(&s, &["HMGET", "hsess:1", "other", "data"]), |p| {
            matches!(p, OpenPlan::Fields(_, f) if f.len() == 2 && f[0].is_none() && f[1].is_some())
        }));
        assert!(untouched(inspect(&s, &["HMGET", "hsess:1", "other"])));
        assert!(opens(inspect(&s, &["HGETALL", "hsess:1"]), |p| matches!(p, OpenPlan::Hash(_, HashReply::All))));
        assert!(matches!(
            inspect(&s, &["HVALS", "hsess:1"]),
            Inspect::Forward { seal: true, open: Some(OpenPlan::Hash(_, HashReply::Values)), .. }
        ));
        assert!(opens(inspect(&s, &["HSCAN", "hsess:1", "0"]), |p| matches!(p, OpenPlan::Hash(_, HashReply::Scan))));
        assert!(untouched(inspect(&s, &["HSCAN", "hsess:1", "0", "novalues"])));
        assert!(opens(inspect(&s, &["HRANDFIELD", "hsess:1", "2", "WithValues"]), |p| {
            matches!(p, OpenPlan::Hash(_, HashReply::Random))
        }));
        assert!(untouched(inspect(&s, &["HRANDFIELD", "hsess:1", "2"])));
        for inspects in ["HSTRLEN", "HINCRBY", "HINCRBYFLOAT"] {
            assert_eq!(refused_for(&inspect(&s, &[inspects, "hsess:1", "data", "1"])), Some(SealedUse::Inspect));
            assert!(untouched(inspect(&s, &[inspects, "hsess:1", "other", "1"])));
        }
        for names in ["HDEL", "HEXISTS", "HKEYS", "HLEN"] {
            assert!(untouched(inspect(&s, &[names, "hsess:1", "data"])), "{names}");
        }
    }

    #[test]
    fn option_words_and_channels_come_from_the_table() {
        let s = sealer();
        assert!(matches!(
            inspect(&s, &["SET", "sess:1", "v", "EX", "5"]),
            Inspect::Forward { seal: true, open: None, .. }
        ));
        assert!(matches!(
            inspect(&s, &["SET", "sess:1", "v", "get"]),
            Inspect::Forward { seal: true, open: Some(OpenPlan::Value(_)), .. }
        ));
        assert!(matches!(inspect(&s, &["PUBLISH", "chan:a", "m"]), Inspect::Forward { seal: true, open: None, .. }));
        assert!(matches!(inspect(&s, &["SPUBLISH", "chan:a", "m"]), Inspect::Forward { seal: true, open: None, .. }));
        assert!(matches!(inspect(&s, &["PUBLISH", "news", "m"]), Inspect::Untouched));
        assert_eq!(refused_for(&inspect(&s, &["DEBUG", "POPULATE", "10", "sess"])), Some(SealedUse::Populate));
        assert!(matches!(inspect(&s, &["DEBUG", "POPULATE", "10", "other"]), Inspect::Untouched));
        assert_eq!(refused_for(&inspect(&s, &["FUNCTION", "RESTORE", "payload"])), Some(SealedUse::Script));
    }
}
