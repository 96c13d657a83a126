//! The command table (docs/design.md §2): one row per command, as data.
//!
//! A row says where the key arguments are, what the command does with the
//! data under them ([`Data`]: metadata only, whole string values, hash
//! fields, collection members, looking inside values, moving values, or
//! unknown), which arguments carry values that a sealed key rule would seal,
//! how the reply is shaped, and the command's routing class: plain, stateful
//! (needs its own backend connection), or a connection command the proxy
//! handles itself.
//!
//! The sealing boundary is closed by construction: a command reaches Redis
//! with a sealed key name only through a row whose [`Data`] says how that
//! name is treated. A command missing from the table is [`Data::Opaque`]
//! (refused when any argument matches a sealed rule), and so is every row
//! whose key positions are not fixed. The test `boundary` in `tests/` checks
//! this against every command of the Redis under test (`COMMAND DOCS`).
//! Invariants are unit-tested below.

use std::sync::OnceLock;

use super::LocalCmd;

/// One command's row.
#[derive(Debug)]
pub struct Command {
    /// Upper-case command name.
    pub name: &'static str,
    /// What kind of command this is for routing.
    pub class: Class,
    /// What it does with the data under its keys (for sealing).
    pub data: Data,
    /// Where its key arguments are.
    pub keys: Keys,
    /// Which arguments carry values (sealed on a sealed key).
    pub values: Values,
    /// How its reply carries values (opened for a sealed key).
    pub reply: ReplyShape,
    /// Where it goes behind Redis Cluster.
    pub cluster: OnCluster,
    /// Where its reply names keys (translated back from pseudonyms).
    pub names: Names,
}

impl Command {
    /// The row with its place behind Redis Cluster.
    const fn on_cluster(self, cluster: OnCluster) -> Command {
        Command { cluster, ..self }
    }

    /// The row with the key names its reply carries.
    const fn names(self, names: Names) -> Command {
        Command { names, ..self }
    }
}

/// Where a reply names keys: under a pseudonymising rule these are stored
/// names, given back to the client as the names it knows
/// ([`crate::sealing::names`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// No key names in the reply.
    None,
    /// A scan page `[cursor, [name …]]` (SCAN); a pattern follows this
    /// option word.
    Scan {
        /// The pattern's option word (MATCH).
        pattern_after: &'static str,
    },
    /// An array of names (KEYS); the pattern is at this index.
    List {
        /// Index of the pattern.
        pattern_at: u8,
    },
    /// One name or a null (RANDOMKEY).
    One,
    /// An array whose first element is the key it came from, or a null
    /// (BLPOP, BZPOPMIN, LMPOP …).
    First,
}

/// Where a command goes behind Redis Cluster (respseal is the cluster's
/// client: applications see one standalone server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCluster {
    /// The node owning its keys' slot (any node for a command without
    /// keys); keys in several slots get Redis's own `CROSSSLOT`.
    Slot,
    /// Keys in several slots: one command per slot (keys alone, or
    /// key/value pairs), replies combined.
    Split {
        /// The arguments are key/value pairs (MSET).
        pairs: bool,
        /// How the nodes' replies become one.
        combine: Combine,
    },
    /// Every master; replies combined.
    All(Combine),
    /// Every master when argument 1 is one of these subcommands (their
    /// effect must reach every node: SCRIPT LOAD, FUNCTION FLUSH …);
    /// otherwise by slot.
    AllFor(&'static [&'static str], Combine),
    /// SCAN: master after master, the master's index kept in the cursor.
    Scan,
    /// INFO: one node's answer, with `cluster_enabled` hidden.
    Info,
    /// Answered by respseal (CLUSTER, READONLY, READWRITE, ASKING): the
    /// client talks to what looks like a standalone server.
    Answered,
    /// Sharded pub/sub: placed by its channel names, which Redis Cluster
    /// hashes like keys (the table lists no keys: nothing is stored under
    /// a channel's name).
    Channels {
        /// Only argument 1 is a channel (SPUBLISH); otherwise every
        /// argument after the name.
        first_only: bool,
    },
}

/// How the replies of several nodes become the one reply a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// The first node's reply (they agree: `+OK`).
    First,
    /// The sum of the nodes' integers.
    Sum,
    /// The nodes' arrays, concatenated.
    Concat,
    /// The nodes' arrays, put back in the order of the keys asked (MGET);
    /// only for split commands.
    PerKey,
}

/// The moves respseal carries out itself on sealed names
/// ([`crate::sealing::moves`]): open under the source, seal under the
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// RENAME.
    Rename,
    /// RENAMENX.
    RenameNx,
    /// COPY.
    Copy,
}

/// What a scripting command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A script body at argument 1 (EVAL, EVAL_RO); a declared script is
    /// found by the body's SHA1.
    Body,
    /// The SHA1 of a loaded body at argument 1 (EVALSHA, EVALSHA_RO).
    Sha,
    /// The name of a loaded function at argument 1 (FCALL, FCALL_RO).
    Function,
    /// Manages code (SCRIPT, FUNCTION): subcommand `load` registers the
    /// bodies given after it, `restore` a payload of bodies respseal cannot
    /// read (they may be compressed).
    Manages {
        /// The subcommand that loads bodies.
        load: &'static str,
        /// The subcommand that restores a payload.
        restore: &'static str,
    },
}

/// How a hash command treats field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Field names, never a value (HDEL, HEXISTS, HKEYS, HLEN).
    Names,
    /// Values where the `values` and `reply` columns say.
    Values,
    /// Looks inside the value of the field at this index (HSTRLEN,
    /// HINCRBY): refused when that field is sealed.
    Inspects(u8),
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
    /// SCRIPT DEBUG: the connection's next EVAL runs in the Lua debugger
    /// (and in SYNC mode blocks Redis until that connection closes).
    Debugger,
    /// DEBUG: sleeps, reloads, changes server internals; on its own
    /// connection, so a shared link never waits behind it.
    Debug,
}

/// Redis data types whose members respseal never seals (random nonces would
/// break equality): on a sealed name they are refused unless the rule
/// allows plaintext members of that type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Lists.
    List,
    /// Sets.
    Set,
    /// Sorted sets.
    ZSet,
    /// Streams.
    Stream,
    /// Geo indexes (sorted sets underneath).
    Geo,
    /// HyperLogLogs (strings underneath, but not sealed values).
    Hll,
}

impl DataType {
    /// Every type, in the order of [`DataType::name`].
    pub const ALL: [DataType; 6] =
        [DataType::List, DataType::Set, DataType::ZSet, DataType::Stream, DataType::Geo, DataType::Hll];

    /// The name used in configuration (`allow_plaintext = ["list"]`).
    pub fn name(self) -> &'static str {
        match self {
            DataType::List => "list",
            DataType::Set => "set",
            DataType::ZSet => "zset",
            DataType::Stream => "stream",
            DataType::Geo => "geo",
            DataType::Hll => "hyperloglog",
        }
    }
}

/// What a command does with the data under its key arguments: how a sealed
/// key name is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// No keys, or key metadata only (DEL, EXPIRE, TTL, TYPE, WATCH …):
    /// allowed on sealed keys, no value passes.
    Meta,
    /// Whole string values: sealed on write (`values`), opened on read
    /// (`reply`).
    String,
    /// Hash field values: sealed and opened field by field under a rule
    /// with `fields`; refused on sealed keys under a rule without.
    Hash(Fields),
    /// Members of a collection type: refused on sealed keys unless the
    /// rule allows plaintext members of that type.
    Collection(DataType),
    /// Looks inside values (APPEND, INCR, GETRANGE, BITOP, SORT BY …):
    /// refused on sealed keys, since Redis only holds ciphertext.
    Inspect,
    /// Moves a value to another key name (RENAME, COPY, DUMP/RESTORE,
    /// MIGRATE): refused on sealed keys, since a sealed value is bound to
    /// its key, unless respseal carries the move out itself (`Some`).
    Move(Option<Carried>),
    /// Scripts and functions: key names can come from any argument or the
    /// script body, so the command is refused when any argument matches a
    /// rule or contains the literal part of one.
    Script(Code),
    /// Key positions unknown: refused when any argument matches a rule.
    Opaque,
    /// Key positions unknown (refused when any argument matches a rule),
    /// and subcommand `sub` makes key names `<prefix>:<n>`, the prefix at
    /// `prefix_at` or `default` (DEBUG POPULATE): refused when such a name
    /// could match a rule.
    Populates {
        /// The subcommand that makes keys.
        sub: &'static str,
        /// Where its prefix is.
        prefix_at: u8,
        /// The prefix when none is given.
        default: &'static str,
    },
}

/// A command's routing class: the link-safety column. Only [`Class::Plain`]
/// and [`Class::Ends`] (and [`Class::PinIf`] without its word, [`Class::Sub`]
/// resolving to `Plain`) may go on a shared link: the row says the command leaves the
/// connection as it found it. Every other class pins the session, is
/// answered by respseal, goes on a connection of its own, or is refused. A
/// command missing from the table pins (it never goes on a shared link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Connection-neutral: forwarded on whatever link the session has.
    Plain,
    /// Creates or observes per-connection state: pins the session.
    Stateful(State),
    /// Ends a transaction (EXEC, DISCARD): connection-neutral outside one,
    /// and a session inside one is pinned already (or respseal holds its
    /// MULTI: an empty transaction is answered here).
    Ends(End),
    /// Pins only when an argument equals this word (XREAD … BLOCK).
    PinIf(&'static str),
    /// Runs code in Redis (EVAL, FCALL, FUNCTION LOAD …), which may run past
    /// `busy-reply-threshold`: sent on a connection nothing else waits
    /// behind (a shared-link session borrows one for the run of requests
    /// it starts), so other clients see what they see directly: replies,
    /// then `BUSY`, then replies again after `SCRIPT KILL`.
    Code,
    /// Sent on a connection of its own, opened for it: SCRIPT/FUNCTION KILL
    /// must not queue behind the very script it kills on a shared link, and
    /// a new connection's SELECT would be refused while the script runs (the
    /// kill itself ignores the db).
    Control,
    /// A container command whose subcommands differ: the class of the
    /// subcommand named by argument 1 (case-insensitively), [`Class::Plain`]
    /// for the others. Never nested.
    Sub(&'static [(&'static str, Class)]),
    /// CLIENT: SETINFO is answered by the proxy, other subcommands pin.
    Client,
    /// A connection command handled by the proxy.
    Connection(LocalCmd),
    /// Never forwarded; the text says why.
    Refused(&'static str),
    /// Forwarded, with respseal's own credentials masked in the reply
    /// ([`crate::secrets`]).
    Secrets,
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// EXEC: the queued commands run.
    Exec,
    /// DISCARD: they are dropped.
    Discard,
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
    /// Keys are found by keyword (SORT … STORE, XREAD … STREAMS, GEORADIUS
    /// … STORE, ZUNIONSTORE): every argument after the name is treated as
    /// a possible key.
    Any,
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
    /// A message at index 2 for the channel at index 1, in a request of
    /// exactly three arguments (PUBLISH, SPUBLISH): sealed on a sealed
    /// channel.
    Message,
}

/// How the reply carries values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyShape {
    /// Nothing to open.
    Plain,
    /// One value (GET, GETDEL, GETSET …).
    Value,
    /// One value when this option word is among the arguments after the
    /// value (SET … GET); nothing to open otherwise.
    ValueIf(&'static str),
    /// An array aligned with the keys (MGET).
    PerKey,
    /// The value of the field at this index (HGET).
    FieldValue(u8),
    /// An array aligned with the fields from this index (HMGET).
    PerField(u8),
    /// Field/value flat array or RESP3 map (HGETALL).
    FieldValueMap,
    /// Values only (HVALS): sent as `sent_as` (HGETALL), since a value
    /// cannot be opened without its field, which its envelope is bound to.
    FieldValues {
        /// The command sent instead.
        sent_as: &'static str,
    },
    /// A scan page of field/value pairs (HSCAN), unless this option word
    /// is among the arguments (NOVALUES: names only).
    ScanPairs {
        /// The option word that leaves out the values.
        unless: &'static str,
    },
    /// Field/value pairs when the request has exactly `at + 1` arguments
    /// and the last is this option word (HRANDFIELD key count WITHVALUES);
    /// names only otherwise.
    PairsIf {
        /// The option word.
        word: &'static str,
        /// Its index.
        at: u8,
    },
}

const fn k1() -> Keys {
    Keys::Range { first: 1, last: 1, step: 1 }
}
const fn kall(first: u8) -> Keys {
    Keys::Range { first, last: -1, step: 1 }
}

macro_rules! row {
    ($name:literal, $class:expr, $data:expr) => {
        Command {
            name: $name,
            class: $class,
            data: $data,
            keys: Keys::None,
            values: Values::None,
            reply: ReplyShape::Plain,
            cluster: OnCluster::Slot,
            names: Names::None,
        }
    };
    ($name:literal, $class:expr, $data:expr, $keys:expr) => {
        Command {
            name: $name,
            class: $class,
            data: $data,
            keys: $keys,
            values: Values::None,
            reply: ReplyShape::Plain,
            cluster: OnCluster::Slot,
            names: Names::None,
        }
    };
    ($name:literal, $class:expr, $data:expr, $keys:expr, $values:expr, $reply:expr) => {
        Command {
            name: $name,
            class: $class,
            data: $data,
            keys: $keys,
            values: $values,
            reply: $reply,
            cluster: OnCluster::Slot,
            names: Names::None,
        }
    };
}

use Class::*;
use Data::{Hash, Inspect, Meta, Move, Opaque, Script};

const NAMES: Data = Hash(Fields::Names);
const FIELDS: Data = Hash(Fields::Values);
const MANAGES: Data = Script(Code::Manages { load: "LOAD", restore: "RESTORE" });

const fn k2() -> Keys {
    Keys::Range { first: 1, last: 2, step: 1 }
}
const fn at2() -> Keys {
    Keys::Range { first: 2, last: 2, step: 1 }
}
const fn nk(at: u8) -> Keys {
    Keys::NumKeys { at }
}
const LIST: Data = Data::Collection(DataType::List);
const SET: Data = Data::Collection(DataType::Set);
const ZSET: Data = Data::Collection(DataType::ZSet);
const STREAM: Data = Data::Collection(DataType::Stream);
const GEO: Data = Data::Collection(DataType::Geo);
const HLL: Data = Data::Collection(DataType::Hll);
const STR: Data = Data::String;
const BLOCKING: Class = Stateful(State::Blocking);
const SPLIT_SUM: OnCluster = OnCluster::Split { pairs: false, combine: Combine::Sum };

/// Why ACL LIST and ACL GETUSER are refused.
const ACL_OWN: &str = "ACL LIST and ACL GETUSER would show the credentials respseal uses for Redis";

/// The table. Order does not matter; lookups use a sorted index. A command
/// that is not here is [`Data::Opaque`].
pub static COMMANDS: &[Command] = &[
    // --- strings
    row!("GET", Plain, STR, k1(), Values::None, ReplyShape::Value),
    row!("SET", Plain, STR, k1(), Values::At(2), ReplyShape::ValueIf("GET")),
    row!("SETNX", Plain, STR, k1(), Values::At(2), ReplyShape::Plain),
    row!("SETEX", Plain, STR, k1(), Values::At(3), ReplyShape::Plain),
    row!("PSETEX", Plain, STR, k1(), Values::At(3), ReplyShape::Plain),
    row!("GETSET", Plain, STR, k1(), Values::At(2), ReplyShape::Value),
    row!("GETDEL", Plain, STR, k1(), Values::None, ReplyShape::Value),
    row!("GETEX", Plain, STR, k1(), Values::None, ReplyShape::Value),
    row!("MGET", Plain, STR, kall(1), Values::None, ReplyShape::PerKey)
        .on_cluster(OnCluster::Split { pairs: false, combine: Combine::PerKey }),
    row!("MSET", Plain, STR, Keys::Range { first: 1, last: -2, step: 2 }, Values::AfterEachKey, ReplyShape::Plain)
        .on_cluster(OnCluster::Split { pairs: true, combine: Combine::First }),
    row!("MSETNX", Plain, STR, Keys::Range { first: 1, last: -2, step: 2 }, Values::AfterEachKey, ReplyShape::Plain),
    row!("APPEND", Plain, Inspect, k1()),
    row!("SETRANGE", Plain, Inspect, k1()),
    row!("GETRANGE", Plain, Inspect, k1()),
    row!("SUBSTR", Plain, Inspect, k1()),
    row!("STRLEN", Plain, Inspect, k1()),
    row!("INCR", Plain, Inspect, k1()),
    row!("INCRBY", Plain, Inspect, k1()),
    row!("INCRBYFLOAT", Plain, Inspect, k1()),
    row!("DECR", Plain, Inspect, k1()),
    row!("DECRBY", Plain, Inspect, k1()),
    row!("SETBIT", Plain, Inspect, k1()),
    row!("GETBIT", Plain, Inspect, k1()),
    row!("BITCOUNT", Plain, Inspect, k1()),
    row!("BITPOS", Plain, Inspect, k1()),
    row!("BITFIELD", Plain, Inspect, k1()),
    row!("BITFIELD_RO", Plain, Inspect, k1()),
    row!("BITOP", Plain, Inspect, kall(2)),
    row!("LCS", Plain, Inspect, k2()),
    // SORT reads other keys' values (BY, GET) and writes one (STORE).
    row!("SORT", Plain, Inspect, Keys::Any),
    row!("SORT_RO", Plain, Inspect, Keys::Any),
    // OBJECT ENCODING reports how Redis holds the ciphertext (a sealed
    // value is never "int", a sealed hash never "listpack"): refused
    // rather than answered for a value the client never wrote.
    row!("OBJECT", Plain, Inspect, at2()),
    // --- hashes (hash rules come later: refused on sealed keys)
    row!("HGET", Plain, FIELDS, k1(), Values::None, ReplyShape::FieldValue(2)),
    row!("HSET", Plain, FIELDS, k1(), Values::FieldPairs(2), ReplyShape::Plain),
    row!("HMSET", Plain, FIELDS, k1(), Values::FieldPairs(2), ReplyShape::Plain),
    row!("HSETNX", Plain, FIELDS, k1(), Values::FieldPairs(2), ReplyShape::Plain),
    row!("HMGET", Plain, FIELDS, k1(), Values::None, ReplyShape::PerField(2)),
    row!("HGETALL", Plain, FIELDS, k1(), Values::None, ReplyShape::FieldValueMap),
    row!("HVALS", Plain, FIELDS, k1(), Values::None, ReplyShape::FieldValues { sent_as: "HGETALL" }),
    row!("HSCAN", Plain, FIELDS, k1(), Values::None, ReplyShape::ScanPairs { unless: "NOVALUES" }),
    row!("HRANDFIELD", Plain, FIELDS, k1(), Values::None, ReplyShape::PairsIf { word: "WITHVALUES", at: 3 }),
    row!("HDEL", Plain, NAMES, k1()),
    row!("HEXISTS", Plain, NAMES, k1()),
    row!("HKEYS", Plain, NAMES, k1()),
    row!("HLEN", Plain, NAMES, k1()),
    row!("HSTRLEN", Plain, Hash(Fields::Inspects(2)), k1()),
    row!("HINCRBY", Plain, Hash(Fields::Inspects(2)), k1()),
    row!("HINCRBYFLOAT", Plain, Hash(Fields::Inspects(2)), k1()),
    // --- keyspace
    row!("DEL", Plain, Meta, kall(1)).on_cluster(SPLIT_SUM),
    row!("UNLINK", Plain, Meta, kall(1)).on_cluster(SPLIT_SUM),
    row!("EXISTS", Plain, Meta, kall(1)).on_cluster(SPLIT_SUM),
    row!("TOUCH", Plain, Meta, kall(1)).on_cluster(SPLIT_SUM),
    row!("TYPE", Plain, Meta, k1()),
    row!("EXPIRE", Plain, Meta, k1()),
    row!("PEXPIRE", Plain, Meta, k1()),
    row!("EXPIREAT", Plain, Meta, k1()),
    row!("PEXPIREAT", Plain, Meta, k1()),
    row!("EXPIRETIME", Plain, Meta, k1()),
    row!("PEXPIRETIME", Plain, Meta, k1()),
    row!("PERSIST", Plain, Meta, k1()),
    row!("TTL", Plain, Meta, k1()),
    row!("PTTL", Plain, Meta, k1()),
    row!("MEMORY", Plain, Meta, at2()),
    row!("KEYS", Plain, Meta).on_cluster(OnCluster::All(Combine::Concat)).names(Names::List { pattern_at: 1 }),
    row!("SCAN", Plain, Meta).on_cluster(OnCluster::Scan).names(Names::Scan { pattern_after: "MATCH" }),
    row!("RANDOMKEY", Plain, Meta).names(Names::One),
    row!("DBSIZE", Plain, Meta).on_cluster(OnCluster::All(Combine::Sum)),
    // Server commands that name no key and write no value: an argument
    // that happens to match a rule (INFO's "server" under a `*` rule) is
    // not a sealed name. DEBUG (POPULATE writes values), MODULE (loads
    // code), replication and SHUTDOWN stay unknown: refused when an
    // argument matches a rule.
    row!("INFO", Plain, Meta).on_cluster(OnCluster::Info),
    row!("CONFIG", Sub(&[("GET", Secrets)]), Meta),
    row!("TIME", Plain, Meta),
    row!("LASTSAVE", Plain, Meta),
    row!("SAVE", Plain, Meta),
    row!("BGSAVE", Plain, Meta),
    row!("BGREWRITEAOF", Plain, Meta),
    row!("COMMAND", Plain, Meta),
    row!("LATENCY", Plain, Meta),
    row!("SLOWLOG", Plain, Meta),
    row!("LOLWUT", Plain, Meta),
    row!("ROLE", Plain, Meta),
    row!(
        "ACL",
        Sub(&[
            ("LIST", Refused(ACL_OWN)),
            ("GETUSER", Refused(ACL_OWN)),
            ("WHOAMI", Refused("ACL WHOAMI would name the user respseal connects to Redis as")),
        ]),
        Meta
    ),
    row!("RENAME", Plain, Move(Some(Carried::Rename)), k2()),
    row!("RENAMENX", Plain, Move(Some(Carried::RenameNx)), k2()),
    row!("COPY", Plain, Move(Some(Carried::Copy)), k2()),
    // The database number is not bound into a sealed value.
    row!("MOVE", Plain, Meta, k1()),
    row!("SWAPDB", Plain, Meta),
    row!("DUMP", Plain, Move(None), k1()),
    row!("RESTORE", Plain, Move(None), k1()),
    row!("RESTORE-ASKING", Plain, Move(None), k1()),
    row!("MIGRATE", Plain, Move(None), Keys::Any),
    row!("FLUSHDB", Plain, Meta).on_cluster(OnCluster::All(Combine::First)),
    row!("FLUSHALL", Plain, Meta).on_cluster(OnCluster::All(Combine::First)),
    // --- lists
    row!("LPUSH", Plain, LIST, k1()),
    row!("LPUSHX", Plain, LIST, k1()),
    row!("RPUSH", Plain, LIST, k1()),
    row!("RPUSHX", Plain, LIST, k1()),
    row!("LPOP", Plain, LIST, k1()),
    row!("RPOP", Plain, LIST, k1()),
    row!("LRANGE", Plain, LIST, k1()),
    row!("LLEN", Plain, LIST, k1()),
    row!("LINDEX", Plain, LIST, k1()),
    row!("LSET", Plain, LIST, k1()),
    row!("LINSERT", Plain, LIST, k1()),
    row!("LREM", Plain, LIST, k1()),
    row!("LTRIM", Plain, LIST, k1()),
    row!("LPOS", Plain, LIST, k1()),
    row!("LMOVE", Plain, LIST, k2()),
    row!("RPOPLPUSH", Plain, LIST, k2()),
    row!("LMPOP", Plain, LIST, nk(1)).names(Names::First),
    row!("BLPOP", BLOCKING, LIST, Keys::Range { first: 1, last: -2, step: 1 }).names(Names::First),
    row!("BRPOP", BLOCKING, LIST, Keys::Range { first: 1, last: -2, step: 1 }).names(Names::First),
    row!("BRPOPLPUSH", BLOCKING, LIST, k2()),
    row!("BLMOVE", BLOCKING, LIST, k2()),
    row!("BLMPOP", BLOCKING, LIST, nk(2)).names(Names::First),
    // --- sets
    row!("SADD", Plain, SET, k1()),
    row!("SREM", Plain, SET, k1()),
    row!("SMEMBERS", Plain, SET, k1()),
    row!("SISMEMBER", Plain, SET, k1()),
    row!("SMISMEMBER", Plain, SET, k1()),
    row!("SCARD", Plain, SET, k1()),
    row!("SPOP", Plain, SET, k1()),
    row!("SRANDMEMBER", Plain, SET, k1()),
    row!("SSCAN", Plain, SET, k1()),
    row!("SMOVE", Plain, SET, k2()),
    row!("SUNION", Plain, SET, kall(1)),
    row!("SINTER", Plain, SET, kall(1)),
    row!("SDIFF", Plain, SET, kall(1)),
    row!("SUNIONSTORE", Plain, SET, kall(1)),
    row!("SINTERSTORE", Plain, SET, kall(1)),
    row!("SDIFFSTORE", Plain, SET, kall(1)),
    row!("SINTERCARD", Plain, SET, nk(1)),
    // --- sorted sets
    row!("ZADD", Plain, ZSET, k1()),
    row!("ZINCRBY", Plain, ZSET, k1()),
    row!("ZREM", Plain, ZSET, k1()),
    row!("ZCARD", Plain, ZSET, k1()),
    row!("ZCOUNT", Plain, ZSET, k1()),
    row!("ZLEXCOUNT", Plain, ZSET, k1()),
    row!("ZSCORE", Plain, ZSET, k1()),
    row!("ZMSCORE", Plain, ZSET, k1()),
    row!("ZRANK", Plain, ZSET, k1()),
    row!("ZREVRANK", Plain, ZSET, k1()),
    row!("ZRANGE", Plain, ZSET, k1()),
    row!("ZRANGEBYSCORE", Plain, ZSET, k1()),
    row!("ZRANGEBYLEX", Plain, ZSET, k1()),
    row!("ZREVRANGE", Plain, ZSET, k1()),
    row!("ZREVRANGEBYSCORE", Plain, ZSET, k1()),
    row!("ZREVRANGEBYLEX", Plain, ZSET, k1()),
    row!("ZREMRANGEBYRANK", Plain, ZSET, k1()),
    row!("ZREMRANGEBYSCORE", Plain, ZSET, k1()),
    row!("ZREMRANGEBYLEX", Plain, ZSET, k1()),
    row!("ZPOPMIN", Plain, ZSET, k1()),
    row!("ZPOPMAX", Plain, ZSET, k1()),
    row!("ZRANDMEMBER", Plain, ZSET, k1()),
    row!("ZSCAN", Plain, ZSET, k1()),
    row!("ZRANGESTORE", Plain, ZSET, k2()),
    row!("ZUNION", Plain, ZSET, nk(1)),
    row!("ZINTER", Plain, ZSET, nk(1)),
    row!("ZDIFF", Plain, ZSET, nk(1)),
    row!("ZINTERCARD", Plain, ZSET, nk(1)),
    row!("ZUNIONSTORE", Plain, ZSET, Keys::Any),
    row!("ZINTERSTORE", Plain, ZSET, Keys::Any),
    row!("ZDIFFSTORE", Plain, ZSET, Keys::Any),
    row!("ZMPOP", Plain, ZSET, nk(1)).names(Names::First),
    row!("BZPOPMIN", BLOCKING, ZSET, Keys::Range { first: 1, last: -2, step: 1 }).names(Names::First),
    row!("BZPOPMAX", BLOCKING, ZSET, Keys::Range { first: 1, last: -2, step: 1 }).names(Names::First),
    row!("BZMPOP", BLOCKING, ZSET, nk(2)).names(Names::First),
    // --- geo
    row!("GEOADD", Plain, GEO, k1()),
    row!("GEODIST", Plain, GEO, k1()),
    row!("GEOHASH", Plain, GEO, k1()),
    row!("GEOPOS", Plain, GEO, k1()),
    row!("GEOSEARCH", Plain, GEO, k1()),
    row!("GEOSEARCHSTORE", Plain, GEO, k2()),
    // STORE / STOREDIST name another key.
    row!("GEORADIUS", Plain, GEO, Keys::Any),
    row!("GEORADIUS_RO", Plain, GEO, Keys::Any),
    row!("GEORADIUSBYMEMBER", Plain, GEO, Keys::Any),
    row!("GEORADIUSBYMEMBER_RO", Plain, GEO, Keys::Any),
    // --- HyperLogLog
    row!("PFADD", Plain, HLL, k1()),
    row!("PFCOUNT", Plain, HLL, kall(1)),
    row!("PFMERGE", Plain, HLL, kall(1)),
    // --- streams
    row!("XADD", Plain, STREAM, k1()),
    row!("XRANGE", Plain, STREAM, k1()),
    row!("XREVRANGE", Plain, STREAM, k1()),
    row!("XLEN", Plain, STREAM, k1()),
    row!("XDEL", Plain, STREAM, k1()),
    row!("XTRIM", Plain, STREAM, k1()),
    row!("XACK", Plain, STREAM, k1()),
    row!("XPENDING", Plain, STREAM, k1()),
    row!("XCLAIM", Plain, STREAM, k1()),
    row!("XAUTOCLAIM", Plain, STREAM, k1()),
    row!("XSETID", Plain, STREAM, k1()),
    row!("XGROUP", Plain, STREAM, at2()),
    row!("XINFO", Plain, STREAM, at2()),
    // The stream keys follow STREAMS.
    row!("XREAD", PinIf("BLOCK"), STREAM, Keys::Any),
    row!("XREADGROUP", PinIf("BLOCK"), STREAM, Keys::Any),
    // --- blocking commands without keys
    row!("WAIT", BLOCKING, Meta),
    row!("WAITAOF", BLOCKING, Meta),
    // --- transactions
    row!("MULTI", Stateful(State::Transaction), Meta),
    row!("WATCH", Stateful(State::Watch), Meta, kall(1)),
    row!("EXEC", Ends(End::Exec), Meta),
    row!("DISCARD", Ends(End::Discard), Meta),
    row!("UNWATCH", Plain, Meta),
    // --- pub/sub: channels are not keys (pub/sub rules come later)
    row!("SUBSCRIBE", Stateful(State::Subscribe(SubKind::Channel)), Meta),
    row!("PSUBSCRIBE", Stateful(State::Subscribe(SubKind::Pattern)), Meta),
    row!("SSUBSCRIBE", Stateful(State::Subscribe(SubKind::Shard)), Meta)
        .on_cluster(OnCluster::Channels { first_only: false }),
    row!("UNSUBSCRIBE", Stateful(State::Unsubscribe(SubKind::Channel)), Meta),
    row!("PUNSUBSCRIBE", Stateful(State::Unsubscribe(SubKind::Pattern)), Meta),
    row!("SUNSUBSCRIBE", Stateful(State::Unsubscribe(SubKind::Shard)), Meta)
        .on_cluster(OnCluster::Channels { first_only: false }),
    row!("PUBLISH", Plain, Meta, Keys::None, Values::Message, ReplyShape::Plain),
    row!("SPUBLISH", Plain, Meta, Keys::None, Values::Message, ReplyShape::Plain)
        .on_cluster(OnCluster::Channels { first_only: true }),
    row!("PUBSUB", Plain, Meta),
    // --- scripting
    row!("EVAL", Class::Code, Script(Code::Body), nk(2)),
    row!("EVALSHA", Class::Code, Script(Code::Sha), nk(2)),
    row!("EVAL_RO", Class::Code, Script(Code::Body), nk(2)),
    row!("EVALSHA_RO", Class::Code, Script(Code::Sha), nk(2)),
    row!("FCALL", Class::Code, Script(Code::Function), nk(2)),
    row!("FCALL_RO", Class::Code, Script(Code::Function), nk(2)),
    row!("SCRIPT", Sub(&[("KILL", Control), ("DEBUG", Stateful(State::Debugger))]), MANAGES)
        .on_cluster(OnCluster::AllFor(&["LOAD", "FLUSH"], Combine::First)),
    row!("FUNCTION", Sub(&[("KILL", Control), ("LOAD", Class::Code), ("RESTORE", Class::Code)]), MANAGES)
        .on_cluster(OnCluster::AllFor(&["LOAD", "DELETE", "FLUSH", "RESTORE"], Combine::First)),
    // --- connection
    row!("AUTH", Connection(LocalCmd::Auth), Meta),
    row!("HELLO", Connection(LocalCmd::Hello), Meta),
    row!("SELECT", Connection(LocalCmd::Select), Meta),
    row!("QUIT", Connection(LocalCmd::Quit), Meta),
    row!("RESET", Connection(LocalCmd::Reset), Meta),
    // CLIENT's arguments are names, ids, addresses and flags, never keys
    // (TRACKING … PREFIX takes key prefixes, which store nothing).
    row!("CLIENT", Client, Meta),
    row!("MONITOR", Stateful(State::Monitor), Meta),
    row!("READONLY", Stateful(State::ClusterFlag), Meta).on_cluster(OnCluster::Answered),
    row!("READWRITE", Stateful(State::ClusterFlag), Meta).on_cluster(OnCluster::Answered),
    row!("ASKING", Stateful(State::ClusterFlag), Meta).on_cluster(OnCluster::Answered),
    row!("PING", Plain, Meta),
    row!("ECHO", Plain, Meta),
    // --- replication: the connection becomes a raw stream (RDB payload,
    // then the command stream); it carries what Redis holds, so sealed
    // values stay ciphertext
    row!("SYNC", Stateful(State::Replication), Meta),
    row!("PSYNC", Stateful(State::Replication), Meta),
    row!("REPLCONF", Stateful(State::ClusterFlag), Meta),
    // --- server administration: server-wide, not connection state (the
    // link class); their data class stays Opaque, as for a command the
    // table does not know: refused when an argument matches a rule.
    row!("CLUSTER", Plain, Opaque).on_cluster(OnCluster::Answered),
    row!("FAILOVER", Plain, Opaque),
    row!("REPLICAOF", Plain, Opaque),
    row!("SLAVEOF", Plain, Opaque),
    row!("SHUTDOWN", Plain, Opaque),
    row!("MODULE", Plain, Opaque),
    row!("PFSELFTEST", Plain, Opaque),
    row!("PFDEBUG", Plain, HLL, at2()),
    // DEBUG POPULATE makes key names from a prefix argument: refused when
    // a name it can make could match a rule (sealing/boundary.rs).
    row!("DEBUG", Stateful(State::Debug), Data::Populates { sub: "POPULATE", prefix_at: 3, default: "key" }),
];

/// The class a request resolves to: [`Class::Sub`] resolved by its
/// subcommand (`sub`: argument 1, if any).
pub fn resolve(class: Class, sub: Option<&[u8]>) -> Class {
    match class {
        Class::Sub(subs) => sub
            .and_then(|s| subs.iter().find(|(name, _)| s.eq_ignore_ascii_case(name.as_bytes())))
            .map_or(Class::Plain, |(_, c)| *c),
        c => c,
    }
}

/// docs/sealing.md's list of what is refused on sealed keys, rendered from
/// the table (a unit test keeps the page equal to it).
pub fn refused_markdown() -> String {
    let mut rows: Vec<(&str, Vec<&str>)> = vec![
        ("looks inside the value (Redis only holds ciphertext)", vec![]),
        (
            "moves the value to another name (a sealed value is bound to its key; `RENAME`, `RENAMENX` and `COPY` are carried out by respseal instead)",
            vec![],
        ),
        (
            "scripts and functions (when any argument matches a rule or names one in the body), unless declared in `[[script]]`",
            vec![],
        ),
        ("hash commands, unless the rule seals hash fields (`fields = \"GLOB\"`)", vec![]),
    ];
    let mut collections: Vec<(DataType, Vec<&str>)> = DataType::ALL.iter().map(|t| (*t, vec![])).collect();
    for c in COMMANDS {
        let slot = match c.data {
            Data::Inspect => &mut rows[0].1,
            Data::Move(Some(_)) => continue,
            Data::Move(None) => &mut rows[1].1,
            Data::Script(_) => &mut rows[2].1,
            Data::Hash(_) => &mut rows[3].1,
            Data::Collection(t) => &mut collections.iter_mut().find(|(d, _)| *d == t).expect("every type").1,
            _ => continue,
        };
        slot.push(c.name);
    }
    let mut out = String::new();
    for (what, mut names) in rows {
        names.sort_unstable();
        out.push_str(&format!("* {what}: {}\n", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")));
    }
    for (t, mut names) in collections {
        names.sort_unstable();
        out.push_str(&format!(
            "* {} members, unless the rule has `allow_plaintext = [\"{}\"]`: {}\n",
            t.name(),
            t.name(),
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push_str("* any other command (unknown to the table, modules) when one of its arguments matches a rule\n");
    out
}

/// The data class of a command, [`Data::Opaque`] for one the table does not
/// know.
pub fn data_of(cmd: Option<&Command>) -> Data {
    cmd.map_or(Opaque, |c| c.data)
}

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
            if c.values == Values::Message {
                // A published message: on a channel, not under a key.
                assert_eq!((c.keys, c.data, c.reply), (Keys::None, Data::Meta, ReplyShape::Plain), "{}", c.name);
            } else if c.values != Values::None || c.reply != ReplyShape::Plain {
                assert_ne!(c.keys, Keys::None, "{} carries values but has no key", c.name);
                assert!(
                    matches!(c.data, Data::String | Data::Hash(Fields::Values)),
                    "{} carries values of no known kind",
                    c.name
                );
            }
            if matches!(c.data, Data::Inspect | Data::Move(_) | Data::Collection(_) | Data::String | Data::Hash(_)) {
                assert_ne!(c.keys, Keys::None, "{} works on values but has no key", c.name);
            }
            if matches!(c.data, Data::Inspect | Data::Move(_)) {
                assert_eq!(c.values, Values::None, "{} cannot seal what it inspects", c.name);
            }
        }
    }

    #[test]
    fn the_docs_list_what_the_table_refuses() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sealing.md")).expect("page");
        let (begin, end) = ("<!-- refused:begin (generated from src/commands/table.rs) -->\n", "<!-- refused:end -->");
        let want = refused_markdown();
        let start = readme.find(begin).map(|i| i + begin.len());
        let stop = readme.find(end);
        let have = match (start, stop) {
            (Some(a), Some(b)) if a <= b => &readme[a..b],
            _ => "",
        };
        if have != want
            && std::env::var_os("RESPSEAL_WRITE_README").is_some()
            && let (Some(a), Some(b)) = (start, stop)
        {
            let new = format!("{}{}{}", &readme[..a], want, &readme[b..]);
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sealing.md"), new).expect("write page");
            return;
        }
        assert_eq!(
            have, want,
            "docs/sealing.md's refused list differs from the table (RESPSEAL_WRITE_README=1 rewrites it)"
        );
    }

    #[test]
    fn only_string_rows_seal_and_open() {
        // Only string and hash rows carry values (hash field values are
        // sealed by Sealer::seal_request field by field).
        for c in COMMANDS {
            if c.data != Data::String && c.values != Values::Message {
                assert!(c.data == Data::Hash(Fields::Values) || c.values == Values::None, "{}", c.name);
            }
            // Hash shapes on hash rows, string shapes on string rows.
            let hash_shape = matches!(
                c.reply,
                ReplyShape::FieldValue(_)
                    | ReplyShape::PerField(_)
                    | ReplyShape::FieldValueMap
                    | ReplyShape::FieldValues { .. }
                    | ReplyShape::ScanPairs { .. }
                    | ReplyShape::PairsIf { .. }
            ) || matches!(c.values, Values::FieldPairs(_));
            assert_eq!(hash_shape, c.data == Data::Hash(Fields::Values), "{}", c.name);
            // Replies are put back in key order only for split commands.
            assert!(!matches!(c.cluster, OnCluster::All(Combine::PerKey) | OnCluster::AllFor(_, Combine::PerKey)));
        }
    }

    #[test]
    fn subcommand_classes_are_not_nested_and_name_real_subcommands() {
        for c in COMMANDS {
            if let Class::Sub(subs) = c.class {
                for (name, class) in subs {
                    assert_eq!(*name, name.to_ascii_uppercase(), "{}", c.name);
                    assert!(!matches!(class, Class::Sub(_)), "{} {name}: nested", c.name);
                }
            }
        }
        assert_eq!(resolve(lookup(b"SCRIPT").expect("row").class, Some(b"debug")), Class::Stateful(State::Debugger));
        assert_eq!(resolve(lookup(b"SCRIPT").expect("row").class, Some(b"LOAD")), Class::Plain);
        assert_eq!(resolve(lookup(b"SCRIPT").expect("row").class, None), Class::Plain);
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
