//! The commands respseal sends to Redis on its own behalf, in one list:
//! the connection handshake (AUTH, HELLO, SELECT, ROLE), readiness (PING),
//! start-up (CONFIG GET), cluster redirects (ASKING), replayed client
//! information (CLIENT SETINFO), transactions it holds or discards for a
//! client (MULTI, DISCARD), the moves it carries out (WATCH … EXEC), and
//! the operator commands' walks and compare-and-set scripts (SCAN, GET,
//! EVAL). What respseal's own Redis user must be allowed to run is this
//! list plus whatever its clients send.

/// `AUTH [user] password`: the backend URL's credentials.
pub const AUTH: &str = "AUTH";
/// `HELLO 3`: RESP3 groups.
pub const HELLO: &str = "HELLO";
/// `SELECT db`.
pub const SELECT: &str = "SELECT";
/// `ROLE`: behind Sentinel, a connection is used only on a master.
pub const ROLE: &str = "ROLE";
/// `PING`: `/readyz`.
pub const PING: &str = "PING";
/// `CONFIG GET proto-max-bulk-len` at start.
pub const CONFIG_GET: [&str; 2] = ["CONFIG", "GET"];
/// `CLIENT SETINFO`: the client's library, replayed on its own connection.
pub const CLIENT_SETINFO: [&str; 2] = ["CLIENT", "SETINFO"];
/// `ASKING` before a command an `ASK` redirect sends to another node.
pub const ASKING: &str = "ASKING";
/// `MULTI`.
pub const MULTI: &str = "MULTI";
/// `EXEC`.
pub const EXEC: &str = "EXEC";
/// `DISCARD`: a transaction a refused command aborted.
pub const DISCARD: &str = "DISCARD";
/// `WATCH`: the names a move reads and writes.
pub const WATCH: &str = "WATCH";
/// `TYPE`.
pub const TYPE: &str = "TYPE";
/// `EXISTS`.
pub const EXISTS: &str = "EXISTS";
/// `PEXPIRETIME`.
pub const PEXPIRETIME: &str = "PEXPIRETIME";
/// `PTTL`.
pub const PTTL: &str = "PTTL";
/// `PEXPIREAT`.
pub const PEXPIREAT: &str = "PEXPIREAT";
/// `PEXPIRE`.
pub const PEXPIRE: &str = "PEXPIRE";
/// `GET`.
pub const GET: &str = "GET";
/// `SET`.
pub const SET: &str = "SET";
/// `DEL`.
pub const DEL: &str = "DEL";
/// `HSET`.
pub const HSET: &str = "HSET";
/// `HGETALL`.
pub const HGETALL: &str = "HGETALL";
/// `SCAN cursor MATCH pattern COUNT n`: the operator commands' walks.
pub const SCAN: &str = "SCAN";
/// `EVAL`: compare-and-set (re-sealing legacy values, rewrap, dropping
/// re-sealed values).
pub const EVAL: &str = "EVAL";

/// Every command in this list.
pub const ALL: &[&str] = &[
    AUTH,
    HELLO,
    SELECT,
    ROLE,
    PING,
    CONFIG_GET[0],
    CLIENT_SETINFO[0],
    ASKING,
    MULTI,
    EXEC,
    DISCARD,
    WATCH,
    TYPE,
    EXISTS,
    PEXPIRETIME,
    PTTL,
    PEXPIREAT,
    PEXPIRE,
    GET,
    SET,
    DEL,
    HSET,
    HGETALL,
    SCAN,
    EVAL,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_respseal_sends_is_a_row_of_the_table() {
        for name in super::ALL {
            assert!(super::super::lookup(name.as_bytes()).is_some(), "{name}");
        }
    }
}
