//! Declared scripts (`[[script]]`): the allowlist of EVAL/EVALSHA bodies
//! that run with named ARGV values sealed and named reply elements opened,
//! and the check that refuses code naming a sealed channel.

use bytes::Bytes;

use super::{Inspect, OpenPlan, SealedKey, Sealer};
use crate::commands::Args;
use crate::commands::table::{Code, Command};
use crate::error::{Refusal, SealedUse};
use crate::protocol::parse_int;

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

impl Sealer {
    /// The declared script an EVAL/EVALSHA (or _RO) runs, if any.
    pub(super) fn script_profile(&self, code: Code, args: &Args<'_>) -> Option<&ScriptProfile> {
        if self.scripts.is_empty() {
            return None;
        }
        let body_or_sha = args.get(1)?;
        let sha: [u8; 20] = match code {
            Code::Body => {
                use sha1::Digest;
                sha1::Sha1::digest(body_or_sha).into()
            }
            Code::Sha if body_or_sha.len() == 40 => {
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
    pub(super) fn script_positions(args: &Args<'_>) -> Option<(usize, usize)> {
        let numkeys = usize::try_from(args.get(2).and_then(parse_int)?).ok()?;
        (3 + numkeys <= args.len()).then_some((3, 3 + numkeys))
    }

    /// A declared script's values to seal: (argument index, binding key,
    /// field), for the entries whose key is a sealed name.
    pub(super) fn script_seals<'a>(&'a self, p: &'a ScriptProfile, args: &'a Args<'_>) -> Vec<ScriptSeal<'a>> {
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
    pub(super) fn inspect_script(&self, p: &ScriptProfile, args: &Args<'_>) -> Inspect {
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
        Inspect::Forward { seal, names: false, open }
    }

    /// A script is refused when an argument or its body names a sealed
    /// channel: its PUBLISH would carry a plaintext payload.
    pub(super) fn script_channels<'a>(
        &self,
        cmd: &'static Command,
        mut args: impl Iterator<Item = &'a [u8]>,
    ) -> Inspect {
        match args.find_map(|a| self.rules.find_channel_in_script(a)) {
            Some(i) => Inspect::Refuse(Refusal::SealedKey {
                command: cmd.name,
                rule: self.rules.channel(i).source.clone(),
                why: SealedUse::ScriptChannel,
            }),
            None => Inspect::Untouched,
        }
    }
}
