//! Errors by source, and the one place that turns them into replies
//! (DESIGN.md §7; STYLE.md: linkerd2-proxy's rescue, pingora's sources).
//!
//! Where an error arises, the code only builds an [`Error`] value: which
//! source (client, policy, backend, crypto) and the facts (command name,
//! rule pattern, reason), never key names, values or credentials.
//! [`Error::rescue`] is the one rescue point: it decides the reply text
//! the client gets, the log line and the metric, so that the three never
//! disagree and no secret can slip into any of them.

use bytes::Bytes;

use crate::backend::BackendError;
use crate::commands::DataType;
use crate::protocol::encode;
use crate::protocol::request::ProtocolError;

/// An error that ends one request (or, for protocol errors, the client).
#[derive(Debug, Clone)]
pub enum Error {
    /// The client's fault: malformed RESP, limits (the connection closes).
    Client(ProtocolError),
    /// respseal's policy refused the request.
    Policy(Refusal),
    /// Redis could not be reached or the link broke.
    Backend(BackendError),
    /// A value could not be sealed.
    Crypto(&'static str),
}

/// Why respseal refused a request.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// A command would treat a sealed name in a way sealing cannot follow.
    SealedKey {
        /// The command (from the table: upper case).
        command: &'static str,
        /// The pattern of the rule that matched (configuration, not a key).
        rule: String,
        /// What the command would do.
        why: SealedUse,
    },
    /// A command the table does not know has an argument matching a rule.
    Opaque {
        /// The command name as sent, printable ASCII only, at most 32 bytes.
        command: String,
        /// The pattern of the rule that matched.
        rule: String,
    },
    /// Not authenticated yet.
    NoAuth,
    /// `HELLO` before authenticating, without `AUTH`.
    NoAuthHello,
    /// Wrong user name or password, or another AUTH failure (Redis's text).
    Auth(&'static str),
    /// A command respseal never forwards; the text says why.
    NotForwarded(&'static str),
    /// `HELLO` with a protocol version Redis does not speak.
    NoProto,
    /// A transaction was discarded because a command in it was refused.
    ExecAbort,
    /// The proxy-wide input buffer budget is used up.
    BufferBudget,
}

/// What a command would do to a sealed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedUse {
    /// Look inside the value (APPEND, INCR, GETRANGE …).
    Inspect,
    /// Move the value to another name (RENAME, COPY, DUMP …).
    Move,
    /// Run a script that could read or write it.
    Script,
    /// Hash fields (hash rules come later).
    Hash,
    /// Store plaintext members of a collection type.
    Collection(DataType),
}

impl Refusal {
    /// A closed-set label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SealedKey { why, .. } => match why {
                SealedUse::Inspect => "sealed_inspect",
                SealedUse::Move => "sealed_move",
                SealedUse::Script => "sealed_script",
                SealedUse::Hash => "sealed_hash",
                SealedUse::Collection(_) => "sealed_collection",
            },
            Refusal::Opaque { .. } => "sealed_opaque",
            Refusal::NoAuth | Refusal::NoAuthHello => "noauth",
            Refusal::Auth(_) => "auth_failed",
            Refusal::NotForwarded(_) => "not_forwarded",
            Refusal::NoProto => "noproto",
            Refusal::ExecAbort => "execabort",
            Refusal::BufferBudget => "buffer_budget",
        }
    }

    fn text(&self) -> String {
        match self {
            Refusal::SealedKey { command, rule, why } => {
                let what = match why {
                    SealedUse::Inspect => "is not allowed on sealed keys: Redis only holds ciphertext".to_string(),
                    SealedUse::Move => "is not supported on sealed keys: sealed values are bound to their key".into(),
                    SealedUse::Script => "cannot be used on sealed keys: scripts would see ciphertext".into(),
                    SealedUse::Hash => "is not supported on sealed keys yet: only string values are sealed".into(),
                    SealedUse::Collection(t) => format!(
                        "would keep plaintext {} members under a sealed key (allow_plaintext = [\"{}\"] on the rule allows it)",
                        t.name(),
                        t.name()
                    ),
                };
                format!("ERR respseal: {command} {what} (rule '{rule}')")
            }
            Refusal::Opaque { command, rule } => format!(
                "ERR respseal: unknown command '{command}' refused: an argument matches sealed key rule '{rule}'"
            ),
            Refusal::NoAuth => "NOAUTH Authentication required.".into(),
            Refusal::NoAuthHello => "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
            Refusal::Auth(msg) => (*msg).into(),
            Refusal::NotForwarded(why) => format!("ERR respseal: {why}"),
            Refusal::NoProto => "NOPROTO unsupported protocol version".into(),
            Refusal::ExecAbort => "EXECABORT Transaction discarded because of previous errors.".into(),
            Refusal::BufferBudget => {
                "ERR respseal: request refused: the proxy's input buffers are full (limits.max_buffered_bytes)".into()
            }
        }
    }
}

impl Error {
    /// The source, as a closed-set metric label.
    pub fn source(&self) -> &'static str {
        match self {
            Error::Client(_) => "client",
            Error::Policy(_) => "policy",
            Error::Backend(_) => "backend",
            Error::Crypto(_) => "crypto",
        }
    }

    /// The one rescue point: count the error, log it (never a key name,
    /// value or credential: none is held here), and return the error reply.
    pub fn rescue(&self) -> Bytes {
        let text = match self {
            Error::Client(e) => {
                metrics::counter!("respseal_client_errors_total").increment(1);
                tracing::debug!(error = %e, "client protocol error; closing the client");
                format!("ERR {e}")
            }
            Error::Policy(r) => {
                metrics::counter!("respseal_refusals_total", "reason" => r.reason()).increment(1);
                if let Refusal::Auth(_) = r {
                    metrics::counter!("respseal_auth_failures_total").increment(1);
                }
                tracing::debug!(reason = r.reason(), "request refused");
                r.text()
            }
            Error::Backend(e) => {
                let kind = match e {
                    BackendError::Connect(_) => "connect",
                    BackendError::Timeout => "timeout",
                    BackendError::Handshake(_) => "handshake",
                    BackendError::Lost => "lost",
                };
                metrics::counter!("respseal_backend_errors_total", "kind" => kind).increment(1);
                tracing::debug!(error = %e, "backend error answered to the client");
                format!("ERR respseal: {e}")
            }
            Error::Crypto(reason) => {
                metrics::counter!("respseal_seal_failures_total", "reason" => *reason).increment(1);
                tracing::warn!(reason, "value could not be sealed");
                format!("ERR respseal: cannot seal: {reason}")
            }
        };
        encode::error_frame(&text)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Policy(r)
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Backend(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_name_the_command_and_rule_never_the_key() {
        let e = Error::from(Refusal::SealedKey { command: "APPEND", rule: "sess:*".into(), why: SealedUse::Inspect });
        assert_eq!(
            &e.rescue()[..],
            b"-ERR respseal: APPEND is not allowed on sealed keys: Redis only holds ciphertext (rule 'sess:*')\r\n"
        );
        let e = Error::from(Refusal::ExecAbort);
        assert_eq!(&e.rescue()[..], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
        let e = Error::from(Refusal::SealedKey {
            command: "LPUSH",
            rule: "sess:*".into(),
            why: SealedUse::Collection(DataType::List),
        });
        assert!(String::from_utf8_lossy(&e.rescue()).contains("plaintext list members"));
    }
}
