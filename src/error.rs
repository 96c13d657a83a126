//! Errors by source, and the one place that turns them into replies
//! (docs/design.md §7; STYLE.md: linkerd2-proxy's rescue, pingora's sources).
//!
//! Where an error arises, the code only builds an [`Error`] value: which
//! source (client, policy, backend, crypto) and the facts (command name,
//! rule pattern, reason), never key names, values or credentials.
//! [`Error::rescue`] is the one rescue point: it decides the reply text
//! the client gets, the log line and the metric, so that the three never
//! disagree and no secret can slip into any of them.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use crate::auth::AuthOutcome;
use crate::commands::DataType;
use crate::protocol::encode;
use crate::protocol::request::ProtocolError;

/// An error that ends one request (or, for protocol errors, the client).
#[derive(Debug, Clone)]
pub enum Error {
    /// The client's fault: malformed RESP (the connection closes), or a
    /// malformed command that respseal answers itself.
    Client(ClientError),
    /// respseal's policy refused the request.
    Policy(Refusal),
    /// Redis could not be reached or the link broke.
    Backend(BackendError),
    /// A value could not be sealed, or a sealed value did not open.
    Crypto(CryptoError),
}

/// The client's mistakes, answered with Redis's own words.
#[derive(Debug, Clone)]
pub enum ClientError {
    /// Malformed RESP or a request over the limits: the connection closes.
    Protocol(ProtocolError),
    /// A syntax error in a command respseal answers itself.
    Syntax,
    /// The wrong number of arguments for a command respseal answers or
    /// carries out itself (Redis's name for it: `auth`, `client|setinfo`,
    /// `rename` …).
    Arity(String),
    /// An argument that must be an integer is not (COPY … DB x).
    NotInteger,
    /// A database number Redis does not have (COPY … DB 99).
    DbOutOfRange,
    /// RENAME of a name that does not exist.
    NoSuchKey,
    /// COPY to the name it copies from.
    SameObject,
    /// A cluster-only command (CLUSTER, READONLY …): respseal looks like a
    /// standalone server to its clients.
    NotCluster,
    /// A SCAN cursor that is not a number.
    InvalidCursor,
    /// Behind Redis Cluster, a SCAN cursor naming a master the cluster no
    /// longer has.
    StaleCursor,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER` with spaces or special characters.
    SetinfoValue(&'static str),
    /// `CLIENT SETINFO` with an option Redis does not know (shown bounded).
    SetinfoOption(String),
    /// `HELLO` with a protocol version that is not a number.
    HelloVersion,
}

/// Sealing and opening failures.
#[derive(Debug, Clone)]
pub enum CryptoError {
    /// A value could not be sealed (no primary key …).
    Seal(&'static str),
    /// A sealed value did not open: reason and, when the envelope names
    /// one, the key id (never the key name or the value).
    Open {
        /// Closed-set reason (`tag_mismatch`, `legacy_plaintext`, …).
        reason: &'static str,
        /// The envelope's key id.
        key_id: Option<u32>,
    },
}

impl ClientError {
    fn kind(&self) -> &'static str {
        match self {
            ClientError::Protocol(_) => "protocol",
            _ => "command",
        }
    }

    fn text(&self) -> String {
        match self {
            ClientError::Protocol(e) => format!("ERR {e}"),
            ClientError::Syntax => "ERR syntax error".into(),
            ClientError::Arity(name) => format!("ERR wrong number of arguments for '{name}' command"),
            ClientError::NotInteger => "ERR value is not an integer or out of range".into(),
            ClientError::DbOutOfRange => "ERR DB index is out of range".into(),
            ClientError::NoSuchKey => "ERR no such key".into(),
            ClientError::SameObject => "ERR source and destination objects are the same".into(),
            ClientError::NotCluster => "ERR This instance has cluster support disabled".into(),
            ClientError::InvalidCursor => "ERR invalid cursor".into(),
            ClientError::StaleCursor => {
                "ERR invalid cursor (the cluster has fewer masters than when this SCAN started)".into()
            }
            ClientError::SetinfoValue(which) => {
                format!("ERR {which} cannot contain spaces, newlines or special characters.")
            }
            ClientError::SetinfoOption(opt) => format!("ERR Unrecognized option '{opt}'"),
            ClientError::HelloVersion => "ERR Protocol version is not an integer or out of range".into(),
        }
    }
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
    /// Wrong user name or password, or another AUTH failure, from `AUTH`
    /// or from `HELLO … AUTH` (answered with Redis's words for each).
    Auth {
        /// What the check said.
        outcome: AuthOutcome,
        /// Whether it came with HELLO.
        hello: bool,
    },
    /// `max_clients` connections are open already.
    MaxClients,
    /// A command respseal never forwards; the text says why.
    NotForwarded(&'static str),
    /// `HELLO` with a protocol version Redis does not speak.
    NoProto,
    /// A transaction was discarded because a command in it was refused.
    ExecAbort,
    /// RENAME/RENAMENX/COPY of a sealed name inside MULTI: respseal carries
    /// these out itself, which cannot be queued in the client's transaction.
    MoveInMulti,
    /// A connection command respseal handles itself (SELECT, HELLO, AUTH,
    /// CLIENT SETINFO) inside MULTI: Redis would apply it at EXEC, which
    /// respseal's view of the connection cannot follow, so it is refused at
    /// queue time and EXEC answers EXECABORT.
    ConnectionInMulti(&'static str),
    /// A value that sealing would grow past the largest argument Redis
    /// accepts (`proto-max-bulk-len`, learned at start).
    TooLargeToSeal,
    /// The proxy-wide input buffer budget is used up.
    BufferBudget,
    /// Behind Redis Cluster: a key on another node than the one the
    /// connection's transaction, WATCH or subscription is on, or a move
    /// between slots.
    CrossSlot,
    /// A move respseal carries out (RENAME, RENAMENX, COPY of a sealed
    /// name) that sealing cannot follow: the reason.
    Move {
        /// The command.
        command: &'static str,
        /// Why (configuration facts, never a key or a value).
        why: &'static str,
    },
    /// A move of a sealed name holding a type respseal does not move.
    MoveType {
        /// The command.
        command: &'static str,
        /// The type Redis named (escaped).
        type_name: String,
    },
    /// A move that found the names changed at every attempt.
    MoveGaveUp {
        /// The command.
        command: &'static str,
        /// How many times it was tried.
        attempts: usize,
    },
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
    /// Run a script that could publish on a sealed channel.
    ScriptChannel,
    /// Make key names from a prefix (DEBUG POPULATE) that a rule could match.
    Populate,
    /// Hash fields, on a rule without `fields` (or a hash command
    /// respseal does not know how to seal).
    Hash,
    /// Store plaintext members of a collection type.
    Collection(DataType),
    /// Name keys where respseal cannot tell which arguments are key names
    /// (or whose replies carry names it does not translate), on a
    /// pseudonymised name.
    Names,
}

impl Refusal {
    /// A closed-set label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SealedKey { why, .. } => match why {
                SealedUse::Inspect => "sealed_inspect",
                SealedUse::Move => "sealed_move",
                SealedUse::Script => "sealed_script",
                SealedUse::ScriptChannel => "sealed_script_channel",
                SealedUse::Populate => "sealed_populate",
                SealedUse::Hash => "sealed_hash",
                SealedUse::Collection(_) => "sealed_collection",
                SealedUse::Names => "pseudonymised_names",
            },
            Refusal::Opaque { .. } => "sealed_opaque",
            Refusal::NoAuth | Refusal::NoAuthHello => "noauth",
            Refusal::Auth { .. } => "auth_failed",
            Refusal::MaxClients => "max_clients",
            Refusal::NotForwarded(_) => "not_forwarded",
            Refusal::NoProto => "noproto",
            Refusal::ExecAbort => "execabort",
            Refusal::MoveInMulti => "move_in_multi",
            Refusal::ConnectionInMulti(_) => "connection_in_multi",
            Refusal::TooLargeToSeal => "too_large_to_seal",
            Refusal::BufferBudget => "buffer_budget",
            Refusal::CrossSlot => "crossslot",
            Refusal::Move { .. } | Refusal::MoveType { .. } => "move_refused",
            Refusal::MoveGaveUp { .. } => "move_gave_up",
        }
    }

    fn text(&self) -> String {
        match self {
            Refusal::SealedKey { command, rule, why } => {
                let what = match why {
                    SealedUse::Inspect => "is not allowed on sealed keys: Redis only holds ciphertext".to_string(),
                    SealedUse::Move => "is not supported on sealed keys: sealed values are bound to their key".into(),
                    SealedUse::Script => "cannot be used on sealed keys: scripts would see ciphertext".into(),
                    SealedUse::ScriptChannel => {
                        "cannot be used on sealed channels: a script's PUBLISH would send plaintext".into()
                    }
                    SealedUse::Populate => {
                        "would write plaintext values under names a sealed key rule could match".into()
                    }
                    SealedUse::Hash => {
                        "is not supported on sealed keys unless the rule seals hash fields (`fields`)".into()
                    }
                    SealedUse::Collection(t) => format!(
                        "would keep plaintext {} members under a sealed key (allow_plaintext = [\"{}\"] on the rule allows it)",
                        t.name(),
                        t.name()
                    ),
                    SealedUse::Names => "cannot be used on pseudonymised key names: respseal cannot tell which of its \
                                         arguments are key names"
                        .into(),
                };
                format!("ERR respseal: {command} {what} (rule '{rule}')")
            }
            Refusal::Opaque { command, rule } => format!(
                "ERR respseal: unknown command '{command}' refused: an argument matches sealed key rule '{rule}'"
            ),
            Refusal::NoAuth => "NOAUTH Authentication required.".into(),
            Refusal::NoAuthHello => "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
            Refusal::Auth { outcome, hello } => outcome.message(if *hello { "hello" } else { "auth" }).into(),
            Refusal::MaxClients => "ERR max number of clients reached".into(),
            Refusal::NotForwarded(why) => format!("ERR respseal: {why}"),
            Refusal::NoProto => "NOPROTO unsupported protocol version".into(),
            Refusal::ExecAbort => "EXECABORT Transaction discarded because of previous errors.".into(),
            Refusal::MoveInMulti => "ERR respseal: RENAME, RENAMENX and COPY of sealed keys are carried out by \
                                     respseal and cannot be queued inside MULTI; send them outside the transaction"
                .into(),
            Refusal::TooLargeToSeal => "ERR respseal: value too large: sealed, it would exceed the largest argument \
                                        Redis accepts (proto-max-bulk-len)"
                .into(),
            Refusal::ConnectionInMulti(cmd) => format!(
                "ERR respseal: {cmd} cannot be queued inside MULTI (it changes the connection, which respseal \
                 tracks); send it before MULTI or after EXEC"
            ),
            Refusal::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot (respseal: behind Redis \
                                   Cluster a transaction, WATCH or subscription stays on one node; use hash tags)"
                .into(),
            Refusal::BufferBudget => {
                "ERR respseal: request refused: the proxy's input buffers are full (limits.max_buffered_bytes)".into()
            }
            Refusal::Move { command, why } => format!("ERR respseal: {command} refused: {why}"),
            Refusal::MoveType { command, type_name } => {
                format!("ERR respseal: {command} of a sealed name holding a {type_name} is not supported")
            }
            Refusal::MoveGaveUp { command, attempts } => {
                format!("ERR respseal: {command} gave up after {attempts} attempts: the keys kept changing")
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

    /// Whether the client's connection closes after the reply: malformed
    /// RESP leaves nothing to read the next request from, as in Redis.
    pub fn closes(&self) -> bool {
        matches!(self, Error::Client(ClientError::Protocol(_)))
    }

    /// The one rescue point: [`Error::report`] the error, then return the
    /// error reply the client gets (after which the connection closes if
    /// [`Error::closes`]).
    pub fn rescue(&self) -> Bytes {
        self.report();
        let text = match self {
            Error::Client(ClientError::Protocol(e)) => return protocol_reply(e),
            Error::Client(e) => e.text(),
            Error::Policy(r) => r.text(),
            // Redis's own words: what the command would have got directly.
            Error::Backend(BackendError::Busy(line)) => line.clone(),
            Error::Backend(e) => format!("ERR respseal: {e}"),
            Error::Crypto(CryptoError::Seal(reason)) => format!("ERR respseal: cannot seal: {reason}"),
            Error::Crypto(CryptoError::Open { reason, .. }) => {
                format!("ERR respseal: sealed value could not be opened ({reason})")
            }
        };
        encode::error_frame(&text)
    }

    /// Count the error and log it, without a reply (a value that did not
    /// open under a `nil` policy is answered with a null). Nothing here
    /// holds a key name, a value or a credential, so none can be logged.
    pub fn report(&self) {
        match self {
            Error::Client(e) => {
                metrics::counter!("respseal_client_errors_total", "kind" => e.kind()).increment(1);
                tracing::debug!(kind = e.kind(), "client error");
            }
            Error::Policy(r) => {
                metrics::counter!("respseal_refusals_total", "reason" => r.reason()).increment(1);
                if let Refusal::Auth { .. } = r {
                    metrics::counter!("respseal_auth_failures_total").increment(1);
                }
                tracing::debug!(reason = r.reason(), "request refused");
            }
            Error::Backend(e) => {
                metrics::counter!("respseal_backend_errors_total", "kind" => e.kind()).increment(1);
                tracing::debug!(error = %e, "backend error answered to the client");
            }
            Error::Crypto(CryptoError::Seal(reason)) => {
                metrics::counter!("respseal_seal_failures_total", "reason" => *reason).increment(1);
                tracing::warn!(reason, "value could not be sealed");
            }
            Error::Crypto(CryptoError::Open { reason, key_id }) => {
                metrics::counter!("respseal_open_failures_total", "reason" => *reason).increment(1);
                if let Some(suppressed) = OPEN_FAILURE_LOG.admit() {
                    match key_id {
                        Some(id) => {
                            let key_id = crate::crypto::keyring::format_key_id(*id);
                            tracing::warn!(%key_id, reason, suppressed, "sealed value did not open")
                        }
                        None => tracing::warn!(reason, suppressed, "sealed value did not open"),
                    }
                }
            }
        }
    }
}

/// A protocol error's reply, byte for byte as Redis writes it: Redis formats
/// the unexpected byte with `%c` into a C string, so a NUL ends the message
/// there, CR and LF become spaces, and any other byte is sent as it is.
fn protocol_reply(e: &ProtocolError) -> Bytes {
    match e {
        ProtocolError::ExpectedBulk(b) => {
            let mut out = b"-ERR Protocol error: expected '$', got '".to_vec();
            match b {
                0 => {}
                b'\r' | b'\n' => out.extend_from_slice(b" '"),
                b => out.extend_from_slice(&[*b, b'\'']),
            }
            out.extend_from_slice(b"\r\n");
            out.into()
        }
        e => encode::error_frame(&format!("ERR {e}")),
    }
}

/// Why a backend connection could not be used. Messages never contain
/// credentials; Redis's own error text is included when Redis refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// TCP connect failed.
    #[error("backend unavailable ({0})")]
    Connect(String),
    /// Connect or handshake took longer than the connect timeout.
    #[error("backend unavailable (timed out)")]
    Timeout,
    /// Redis refused the handshake (wrong password, bad database …).
    #[error("backend refused the handshake: {0}")]
    Handshake(String),
    /// Behind Redis Cluster, a node redirected a command to an address the
    /// slot map does not name, even after it was read again: not followed
    /// (a node must not send respseal's password and data anywhere).
    #[error("a cluster node redirected to an address that is not in the slot map")]
    Unlisted,
    /// Redis refused the handshake because it is running code past its
    /// busy-reply-threshold: its own `BUSY …` line, which is what the
    /// client's command would have got directly.
    #[error("{0}")]
    Busy(String),
    /// The connection broke.
    #[error("backend connection lost")]
    Lost,
    /// Commands were in flight longer than `timeouts.command_ms` with no
    /// reply: the connection is given up.
    #[error("backend timeout")]
    CommandTimeout,
    /// A cluster node's reply did not have the shape respseal needs to
    /// combine it with the others (a split or broadcast command).
    #[error("a cluster node sent a reply of an unexpected shape")]
    BadReply,
    /// A node's SCAN cursor does not fit beside the node's index in the
    /// cursor respseal gives the client.
    #[error("a node's SCAN cursor is too large to carry")]
    CursorTooLarge,
    /// A transaction respseal sent for its own work (a move) was refused
    /// by Redis.
    #[error("{0} failed in Redis")]
    Failed(&'static str),
}

impl BackendError {
    /// The metrics label: a closed set.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Connect(_) => "connect",
            BackendError::Timeout => "timeout",
            BackendError::Handshake(_) => "handshake",
            BackendError::Busy(_) => "busy",
            BackendError::Unlisted => "unlisted_node",
            BackendError::Lost => "lost",
            BackendError::CommandTimeout => "command_timeout",
            BackendError::BadReply => "bad_reply",
            BackendError::CursorTooLarge => "cursor_too_large",
            BackendError::Failed(_) => "failed",
        }
    }
}

/// Log lines for values that did not open, across the process.
static OPEN_FAILURE_LOG: LogLimiter = LogLimiter::new();

/// At most [`LogLimiter::PER_SECOND`] log lines a second: a flood of values
/// that do not open (an attack, a wrong key) must not become a flood of
/// logs. The metric counts every failure; each logged line says how many
/// were suppressed before it.
struct LogLimiter {
    second: AtomicU64,
    in_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    const PER_SECOND: u64 = 10;

    const fn new() -> Self {
        LogLimiter { second: AtomicU64::new(0), in_second: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines suppressed since the last admitted one)` if this line may be logged.
    fn admit(&self) -> Option<u64> {
        let now = crate::clock::now_unix();
        if self.second.swap(now, Relaxed) != now {
            self.in_second.store(0, Relaxed);
        }
        if self.in_second.fetch_add(1, Relaxed) < Self::PER_SECOND {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Policy(r)
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Error::Client(e)
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Backend(e)
    }
}

/// A command name for an error message: printable ASCII only, bounded.
pub fn shown(name: &[u8]) -> String {
    name.iter().take(32).map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_logs_are_rate_limited() {
        let l = LogLimiter::new();
        let admitted = (0..1000).filter(|_| l.admit().is_some()).count();
        // Within one or two clock seconds.
        assert!((10..=20).contains(&admitted), "{admitted}");
    }

    #[test]
    fn client_errors_use_redis_words() {
        assert_eq!(&Error::from(ClientError::Syntax).rescue()[..], b"-ERR syntax error\r\n");
        let e = Error::from(ClientError::SetinfoOption("X".into()));
        assert_eq!(&e.rescue()[..], b"-ERR Unrecognized option 'X'\r\n");
        let e = Error::Crypto(CryptoError::Open { reason: "tag_mismatch", key_id: Some(1) });
        assert_eq!(&e.rescue()[..], b"-ERR respseal: sealed value could not be opened (tag_mismatch)\r\n");
    }

    #[test]
    fn the_rescue_point_decides_the_close_and_keeps_redis_bytes() {
        let e = Error::from(ClientError::Protocol(ProtocolError::ExpectedBulk(0)));
        assert!(e.closes());
        assert_eq!(&e.rescue()[..], b"-ERR Protocol error: expected '$', got '\r\n");
        let e = Error::from(ClientError::Protocol(ProtocolError::ExpectedBulk(b'\n')));
        assert_eq!(&e.rescue()[..], b"-ERR Protocol error: expected '$', got ' '\r\n");
        let e = Error::from(ClientError::Protocol(ProtocolError::ExpectedBulk(b'x')));
        assert_eq!(&e.rescue()[..], b"-ERR Protocol error: expected '$', got 'x'\r\n");
        let e = Error::from(ClientError::Arity("rename".into()));
        assert!(!e.closes());
        assert_eq!(&e.rescue()[..], b"-ERR wrong number of arguments for 'rename' command\r\n");
        assert!(!Error::from(Refusal::CrossSlot).closes());
    }

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
