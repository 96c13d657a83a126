//! The command table (DESIGN.md §2): one row per command, as data.
//!
//! A row says where the key arguments are, which arguments carry values that
//! a sealed key rule would seal, how the reply is shaped, and the command's
//! class: plain, value-inspecting, moving, scripting, stateful (needs its own
//! backend connection), or a connection command the proxy handles itself.
//! Commands missing from the table are forwarded as plain commands (DESIGN.md
//! §2 says how sealing treats them). Invariants are unit-tested below.

use std::sync::OnceLock;

use super::LocalCmd;

/// One command's row.
#[derive(Debug)]
pub struct Command {
    /// Upper-case command name.
    pub name: &'static str,
    /// What kind of command this is for the proxy.
    pub class: Class,
    /// Where its key arguments are.
    pub keys: Keys,
    /// Which arguments carry values (sealed on a sealed key).
    pub values: Values,
    /// How its reply carries values (opened for a sealed key).
    pub reply: ReplyShape,
}

/// Kinds of pub/sub subscription; each has its own (un)subscribe commands
/// and confirmation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// SUBSCRIBE / UNSUBSCRIBE, messages `message`.
    Channel,
    /// PSUBSCRIBE / PUNSUBSCRIBE, messages `pmessage`.
    Pattern,
    /// SSUBSCRIBE / SUNSUBSCRIBE, messages `smessage`.
    Shard,
}

/// Per-connection server state a stateful command creates or observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// MULTI.
    Transaction,
    /// WATCH.
    Watch,
    /// Blocking commands (BLPOP …, WAIT): must not stall a shared link.
    Blocking,
    /// SUBSCRIBE family.
    Subscribe(SubKind),
    /// UNSUBSCRIBE family.
    Unsubscribe(SubKind),
    /// MONITOR.
    Monitor,
    /// Connection flags (READONLY, READWRITE, ASKING, REPLCONF).
    ClusterFlag,
    /// SYNC/PSYNC: the connection turns into a replication stream.
    Replication,
}

/// A command's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Reads or writes whole values (or touches no values).
    Plain,
    /// Looks inside values: refused on sealed keys.
    ValueInspecting,
    /// Moves a value to another key name (needs re-sealing).
    Moving,
    /// EVAL / FCALL family.
    Scripting,
    /// Creates or observes per-connection state: pins the session.
    Stateful(State),
    /// Pins only when an argument equals this word (XREAD … BLOCK).
    PinIf(&'static str),
    /// Sent on a connection of its own, opened for it, when an argument
    /// equals this word: SCRIPT/FUNCTION KILL must not queue behind the very
    /// script it kills on a shared link, and a new connection's SELECT would
    /// be refused while the script runs (the kill itself ignores the db).
    ControlIf(&'static str),
    /// CLIENT: SETINFO is answered by the proxy, other subcommands pin.
    Client,
    /// A connection command handled by the proxy.
    Connection(LocalCmd),
    /// Never forwarded; the text says why.
    Refused(&'static str),
}

/// Where the key arguments of a command are (indexes into the full argument
/// list, the command name being index 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No keys.
    None,
    /// Keys from `first` to the last argument (or `last` from the end:
    /// `-1` = last argument, `-2` = the one before), every `step`.
    Range {
        /// First key index.
        first: u8,
        /// Last key index, counted from the end when negative.
        last: i8,
        /// Distance between keys.
        step: u8,
    },
    /// A count at index `at`, followed by that many keys (EVAL, ZUNION …).
    NumKeys {
        /// Index of the count.
        at: u8,
    },
}

/// Which arguments carry values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// No value arguments.
    None,
    /// The value is at this index (SET key VALUE, SETEX key ttl VALUE).
    At(u8),
    /// Every argument after each key (MSET k v k v).
    AfterEachKey,
    /// Field/value pairs starting at this index (HSET key f v f v).
    FieldPairs(u8),
}

/// How the reply carries values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyShape {
    /// Nothing to open.
    Plain,
    /// One value (GET, GETDEL, HGET …).
    Value,
    /// An array aligned with the keys (MGET).
    PerKey,
    /// An array aligned with the fields from this index (HMGET).
    PerField(u8),
    /// Field/value flat array or RESP3 map (HGETALL).
    FieldValueMap,
    /// Values only (HVALS).
    FieldValues,
    /// A scan page of field/value pairs (HSCAN).
    ScanPairs,
}

const fn k1() -> Keys {
    Keys::Range { first: 1, last: 1, step: 1 }
}
const fn kall(first: u8) -> Keys {
    Keys::Range { first, last: -1, step: 1 }
}

macro_rules! row {
    ($name:literal, $class:expr) => {
        Command { name: $name, class: $class, keys: Keys::None, values: Values::None, reply: ReplyShape::Plain }
    };
    ($name:literal, $class:expr, $keys:expr) => {
        Command { name: $name, class: $class, keys: $keys, values: Values::None, reply: ReplyShape::Plain }
    };
    ($name:literal, $class:expr, $keys:expr, $values:expr, $reply:expr) => {
        Command { name: $name, class: $class, keys: $keys, values: $values, reply: $reply }
    };
}

use Class::*;

/// The table. Order does not matter; lookups use a sorted index.
pub static COMMANDS: &[Command] = &[
    // --- strings
    row!("GET", Plain, k1(), Values::None, ReplyShape::Value),
    row!("SET", Plain, k1(), Values::At(2), ReplyShape::Value),
    row!("SETNX", Plain, k1(), Values::At(2), ReplyShape::Plain),
    row!("SETEX", Plain, k1(), Values::At(3), ReplyShape::Plain),
    row!("PSETEX", Plain, k1(), Values::At(3), ReplyShape::Plain),
    row!("GETSET", Plain, k1(), Values::At(2), ReplyShape::Value),
    row!("GETDEL", Plain, k1(), Values::None, ReplyShape::Value),
    row!("GETEX", Plain, k1(), Values::None, ReplyShape::Value),
    row!("MGET", Plain, kall(1), Values::None, ReplyShape::PerKey),
    row!("MSET", Plain, Keys::Range { first: 1, last: -2, step: 2 }, Values::AfterEachKey, ReplyShape::Plain),
    row!("MSETNX", Plain, Keys::Range { first: 1, last: -2, step: 2 }, Values::AfterEachKey, ReplyShape::Plain),
    row!("APPEND", ValueInspecting, k1()),
    row!("SETRANGE", ValueInspecting, k1()),
    row!("GETRANGE", ValueInspecting, k1()),
    row!("SUBSTR", ValueInspecting, k1()),
    row!("STRLEN", ValueInspecting, k1()),
    row!("INCR", ValueInspecting, k1()),
    row!("INCRBY", ValueInspecting, k1()),
    row!("INCRBYFLOAT", ValueInspecting, k1()),
    row!("DECR", ValueInspecting, k1()),
    row!("DECRBY", ValueInspecting, k1()),
    row!("SETBIT", ValueInspecting, k1()),
    row!("GETBIT", ValueInspecting, k1()),
    row!("BITCOUNT", ValueInspecting, k1()),
    row!("BITPOS", ValueInspecting, k1()),
    row!("BITFIELD", ValueInspecting, k1()),
    row!("BITFIELD_RO", ValueInspecting, k1()),
    row!("BITOP", ValueInspecting, kall(2)),
    row!("LCS", ValueInspecting, Keys::Range { first: 1, last: 2, step: 1 }),
    row!("SORT", ValueInspecting, k1()),
    row!("SORT_RO", ValueInspecting, k1()),
    row!("OBJECT", Plain, Keys::Range { first: 2, last: 2, step: 1 }),
    // --- hashes
    row!("HGET", Plain, k1(), Values::None, ReplyShape::Value),
    row!("HSET", Plain, k1(), Values::FieldPairs(2), ReplyShape::Plain),
    row!("HMSET", Plain, k1(), Values::FieldPairs(2), ReplyShape::Plain),
    row!("HSETNX", Plain, k1(), Values::FieldPairs(2), ReplyShape::Plain),
    row!("HMGET", Plain, k1(), Values::None, ReplyShape::PerField(2)),
    row!("HGETALL", Plain, k1(), Values::None, ReplyShape::FieldValueMap),
    row!("HVALS", Plain, k1(), Values::None, ReplyShape::FieldValues),
    row!("HSCAN", Plain, k1(), Values::None, ReplyShape::ScanPairs),
    row!("HRANDFIELD", Plain, k1()),
    row!("HDEL", Plain, k1()),
    row!("HEXISTS", Plain, k1()),
    row!("HKEYS", Plain, k1()),
    row!("HLEN", Plain, k1()),
    row!("HSTRLEN", ValueInspecting, k1()),
    row!("HINCRBY", ValueInspecting, k1()),
    row!("HINCRBYFLOAT", ValueInspecting, k1()),
    // --- keyspace
    row!("DEL", Plain, kall(1)),
    row!("UNLINK", Plain, kall(1)),
    row!("EXISTS", Plain, kall(1)),
    row!("TOUCH", Plain, kall(1)),
    row!("TYPE", Plain, k1()),
    row!("EXPIRE", Plain, k1()),
    row!("PEXPIRE", Plain, k1()),
    row!("EXPIREAT", Plain, k1()),
    row!("PEXPIREAT", Plain, k1()),
    row!("EXPIRETIME", Plain, k1()),
    row!("PEXPIRETIME", Plain, k1()),
    row!("PERSIST", Plain, k1()),
    row!("TTL", Plain, k1()),
    row!("PTTL", Plain, k1()),
    row!("KEYS", Plain),
    row!("SCAN", Plain),
    row!("RANDOMKEY", Plain),
    row!("DBSIZE", Plain),
    row!("RENAME", Moving, Keys::Range { first: 1, last: 2, step: 1 }),
    row!("RENAMENX", Moving, Keys::Range { first: 1, last: 2, step: 1 }),
    row!("COPY", Moving, Keys::Range { first: 1, last: 2, step: 1 }),
    row!("MOVE", Plain, k1()),
    row!("SWAPDB", Plain),
    row!("DUMP", Moving, k1()),
    row!("RESTORE", Moving, k1()),
    row!("MIGRATE", Moving),
    row!("FLUSHDB", Plain),
    row!("FLUSHALL", Plain),
    // --- lists, sets, sorted sets, streams: members are never sealed
    row!("LPUSH", Plain, k1()),
    row!("RPUSH", Plain, k1()),
    row!("LPOP", Plain, k1()),
    row!("RPOP", Plain, k1()),
    row!("LRANGE", Plain, k1()),
    row!("LLEN", Plain, k1()),
    row!("SADD", Plain, k1()),
    row!("SMEMBERS", Plain, k1()),
    row!("ZADD", Plain, k1()),
    row!("ZRANGE", Plain, k1()),
    row!("XADD", Plain, k1()),
    row!("XRANGE", Plain, k1()),
    row!("XREAD", PinIf("BLOCK")),
    row!("XREADGROUP", PinIf("BLOCK")),
    // --- blocking commands
    row!("BLPOP", Stateful(State::Blocking)),
    row!("BRPOP", Stateful(State::Blocking)),
    row!("BRPOPLPUSH", Stateful(State::Blocking)),
    row!("BLMOVE", Stateful(State::Blocking)),
    row!("BLMPOP", Stateful(State::Blocking)),
    row!("BZPOPMIN", Stateful(State::Blocking)),
    row!("BZPOPMAX", Stateful(State::Blocking)),
    row!("BZMPOP", Stateful(State::Blocking)),
    row!("WAIT", Stateful(State::Blocking)),
    row!("WAITAOF", Stateful(State::Blocking)),
    // --- transactions
    row!("MULTI", Stateful(State::Transaction)),
    row!("WATCH", Stateful(State::Watch), kall(1)),
    row!("EXEC", Plain),
    row!("DISCARD", Plain),
    row!("UNWATCH", Plain),
    // --- pub/sub
    row!("SUBSCRIBE", Stateful(State::Subscribe(SubKind::Channel))),
    row!("PSUBSCRIBE", Stateful(State::Subscribe(SubKind::Pattern))),
    row!("SSUBSCRIBE", Stateful(State::Subscribe(SubKind::Shard))),
    row!("UNSUBSCRIBE", Stateful(State::Unsubscribe(SubKind::Channel))),
    row!("PUNSUBSCRIBE", Stateful(State::Unsubscribe(SubKind::Pattern))),
    row!("SUNSUBSCRIBE", Stateful(State::Unsubscribe(SubKind::Shard))),
    row!("PUBLISH", Plain),
    row!("SPUBLISH", Plain),
    row!("PUBSUB", Plain),
    // --- scripting
    row!("EVAL", Scripting, Keys::NumKeys { at: 2 }),
    row!("EVALSHA", Scripting, Keys::NumKeys { at: 2 }),
    row!("EVAL_RO", Scripting, Keys::NumKeys { at: 2 }),
    row!("EVALSHA_RO", Scripting, Keys::NumKeys { at: 2 }),
    row!("FCALL", Scripting, Keys::NumKeys { at: 2 }),
    row!("FCALL_RO", Scripting, Keys::NumKeys { at: 2 }),
    row!("SCRIPT", ControlIf("KILL")),
    row!("FUNCTION", ControlIf("KILL")),
    // --- connection
    row!("AUTH", Connection(LocalCmd::Auth)),
    row!("HELLO", Connection(LocalCmd::Hello)),
    row!("SELECT", Connection(LocalCmd::Select)),
    row!("QUIT", Connection(LocalCmd::Quit)),
    row!("RESET", Connection(LocalCmd::Reset)),
    row!("CLIENT", Client),
    row!("MONITOR", Stateful(State::Monitor)),
    row!("READONLY", Stateful(State::ClusterFlag)),
    row!("READWRITE", Stateful(State::ClusterFlag)),
    row!("ASKING", Stateful(State::ClusterFlag)),
    row!("PING", Plain),
    row!("ECHO", Plain),
    // --- replication: the connection becomes a raw stream (RDB payload,
    // then the command stream); it carries what Redis holds, so sealed
    // values stay ciphertext
    row!("SYNC", Stateful(State::Replication)),
    row!("PSYNC", Stateful(State::Replication)),
    row!("REPLCONF", Stateful(State::ClusterFlag)),
];

/// Longest command name the table can hold.
const LONGEST: usize = 24;

/// A name upper-cased and zero-padded to [`LONGEST`] bytes, as three
/// big-endian words: comparing keys compares names (names hold no NUL), with
/// three integer comparisons instead of a `memcmp` call.
type NameKey = [u64; 3];

fn name_key(name: &[u8]) -> Option<NameKey> {
    if name.len() > LONGEST {
        return None;
    }
    let mut buf = [0u8; LONGEST];
    buf[..name.len()].copy_from_slice(name);
    buf.make_ascii_uppercase();
    let word = |i: usize| u64::from_be_bytes(buf[i * 8..i * 8 + 8].try_into().expect("8-byte chunk"));
    Some([word(0), word(1), word(2)])
}

/// The rows sorted by name key.
fn index() -> &'static [(NameKey, &'static Command)] {
    static INDEX: OnceLock<Vec<(NameKey, &'static Command)>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut v: Vec<(NameKey, &'static Command)> =
            COMMANDS.iter().map(|c| (name_key(c.name.as_bytes()).expect("table names fit LONGEST"), c)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    })
}

/// Find a command's row, case-insensitively: the name is upper-cased once
/// into a padded key, then found by binary search over integer keys (this
/// runs for every request).
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    let key = name_key(name)?;
    let idx = index();
    let (_, cmd) = idx[idx.binary_search_by_key(&key, |(k, _)| *k).ok()?];
    // A NUL inside the name would pad to the same key.
    (cmd.name.len() == name.len()).then_some(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_lookup_buffer() {
        assert!(COMMANDS.iter().all(|c| c.name.len() <= 24));
    }

    #[test]
    fn names_are_unique_and_upper_case() {
        let idx = index();
        for w in idx.windows(2) {
            assert_ne!(w[0].1.name, w[1].1.name, "duplicate row");
        }
        for c in COMMANDS {
            assert_eq!(c.name, c.name.to_ascii_uppercase());
        }
    }

    #[test]
    fn every_row_is_found_case_insensitively() {
        for c in COMMANDS {
            assert!(std::ptr::eq(lookup(c.name.as_bytes()).expect("row"), c));
            assert!(std::ptr::eq(lookup(c.name.to_ascii_lowercase().as_bytes()).expect("row"), c));
        }
        assert!(lookup(b"NOSUCH").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(b"GET\0").is_none(), "a NUL pads to the same key but is another name");
        assert!(lookup(&[b'A'; 25]).is_none());
    }

    #[test]
    fn value_rows_have_keys_and_value_inspecting_rows_have_keys() {
        for c in COMMANDS {
            if c.values != Values::None || c.reply != ReplyShape::Plain {
                assert_ne!(c.keys, Keys::None, "{} carries values but has no key", c.name);
            }
            if c.class == Class::ValueInspecting {
                assert_ne!(c.keys, Keys::None, "{} inspects values but has no key", c.name);
                assert_eq!(c.values, Values::None, "{} cannot seal what it inspects", c.name);
            }
        }
    }

    #[test]
    fn stateful_rows_hold_no_values() {
        for c in COMMANDS {
            if matches!(c.class, Class::Stateful(_) | Class::Connection(_) | Class::Client) {
                assert_eq!(c.values, Values::None, "{}", c.name);
                assert_eq!(c.reply, ReplyShape::Plain, "{}", c.name);
            }
        }
    }
}
