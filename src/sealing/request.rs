//! Request rewriting: the values a request carries for sealed names are
//! sealed straight into the bytes that go to Redis.

use bytes::BytesMut;

use super::Sealer;
use crate::clock::now_unix;
use crate::commands::table::{Command, Data, ReplyShape, Values};
use crate::commands::{Args, key_indexes};
use crate::crypto::{self, Binding};
use crate::error::{CryptoError, Error};
use crate::protocol::encode;
use crate::stats;

impl Sealer {
    /// The (key, value) argument indexes of the values to seal, in order:
    /// the values whose key matches a rule.
    pub(super) fn sealed_values<'a>(
        &'a self,
        cmd: &Command,
        args: &'a Args<'_>,
    ) -> impl Iterator<Item = (&'a [u8], usize)> + 'a {
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
            Values::None if matches!(cmd.data, Data::Script(_)) => args.len(),
            Values::Message => 1,
            Values::None => 1,
        };
        args.iter().map(|a| a.len() + 16).sum::<usize>() + 16 + values * crypto::OVERHEAD
    }

    /// Append the request to `out`, re-encoded with the values whose key
    /// matches a rule sealed, each sealed straight into `out` (bound to the
    /// name the client gave), and key names in a pseudonymised namespace
    /// replaced by their stored names ([`Sealer::name_edits`]). On error
    /// `out` is left as it was.
    pub fn seal_request(&self, cmd: &Command, args: &Args<'_>, out: &mut BytesMut) -> Result<(), Error> {
        let now = now_unix();
        let start = out.len();
        let edits = self.name_edits(cmd, args);
        out.reserve(Self::sealed_len_bound(cmd, args) + edits.growth());
        if let ReplyShape::FieldValues { sent_as } = cmd.reply {
            // Opened from the pairs of the command sent instead
            // ([`super::HashReply::Values`]).
            encode::array_header(out, 2);
            encode::bulk(out, sent_as.as_bytes());
            encode::bulk(out, edits.arg(1, args.get(1).unwrap_or_default()).unwrap_or_default());
            return Ok(());
        }
        if let Data::Script(code) = cmd.data
            && let Some(profile) = self.script_profile(code, args)
        {
            let seals = self.script_seals(profile, args);
            encode::array_header(out, edits.count(args.len()));
            for (i, arg) in args.iter().enumerate() {
                match seals.iter().find(|(at, _, _)| *at == i) {
                    Some((_, key, field)) => {
                        let binding = match field {
                            Some(f) => Binding::hash_field(&self.namespace, key, f),
                            None => Binding::string(&self.namespace, key),
                        };
                        self.seal_arg(&binding, arg, now, out).inspect_err(|_| out.truncate(start))?;
                    }
                    None => edits.arg(i, arg).into_iter().for_each(|a| encode::bulk(out, a)),
                }
            }
            return Ok(());
        }
        if cmd.values == Values::Message {
            let channel = args.get(1).unwrap_or_default();
            encode::array_header(out, edits.count(args.len()));
            for (i, arg) in args.iter().enumerate() {
                if i == 2 {
                    self.seal_arg(&Binding::channel(&self.namespace, channel), arg, now, out)
                        .inspect_err(|_| out.truncate(start))?;
                } else {
                    edits.arg(i, arg).into_iter().for_each(|a| encode::bulk(out, a));
                }
            }
            return Ok(());
        }
        if let Values::FieldPairs(at) = cmd.values {
            let key = args.get(1).unwrap_or_default();
            let rule = self.rules.find(key).map(|r| self.rules.get(r));
            encode::array_header(out, edits.count(args.len()));
            for (i, arg) in args.iter().enumerate() {
                let field = (i > at as usize && (i - at as usize) % 2 == 1).then(|| args.get(i - 1)).flatten();
                match field.filter(|f| rule.is_some_and(|r| r.seals_field(f))) {
                    Some(field) => {
                        let binding = Binding::hash_field(&self.namespace, key, field);
                        self.seal_arg(&binding, arg, now, out).inspect_err(|_| out.truncate(start))?;
                    }
                    None => edits.arg(i, arg).into_iter().for_each(|a| encode::bulk(out, a)),
                }
            }
            return Ok(());
        }
        let mut to_seal = self.sealed_values(cmd, args).peekable();
        encode::array_header(out, edits.count(args.len()));
        for (i, arg) in args.iter().enumerate() {
            match to_seal.next_if(|&(_, v)| v == i) {
                Some((key, _)) => {
                    self.seal_arg(&Binding::string(&self.namespace, key), arg, now, out)
                        .inspect_err(|_| out.truncate(start))?;
                }
                None => edits.arg(i, arg).into_iter().for_each(|a| encode::bulk(out, a)),
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
}
