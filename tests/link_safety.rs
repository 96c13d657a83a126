//! A shared link is a shared fate: a command goes on one only if the command
//! table says it leaves the connection as it found it.
//!
//! * `every_command_redis_knows_is_classified` reads `COMMAND INFO` from the
//!   Redis under test and checks that every command has a row, and that
//!   every command (and subcommand) Redis itself puts in the `@connection`,
//!   `@transaction`, `@pubsub` categories or flags `blocking` is kept off
//!   the shared links, unless it is in the reviewed list of neutral ones
//!   below (with the reason).
//! * `state_left_by_one_client_never_reaches_another` runs each command that
//!   changes connection state from one client, in shared mode with one
//!   worker and one shared link (so both clients share it), and checks that
//!   a second client then gets exactly the replies it gets from Redis
//!   directly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use respseal::commands::{Args, Route, classify, owned_args};

/// A RESP value, enough for `COMMAND INFO`.
#[derive(Debug)]
enum Value {
    Text(String),
    Int,
    Array(Vec<Value>),
    Nil,
}

fn parse(buf: &[u8], pos: &mut usize) -> Value {
    let line_end = buf[*pos..].windows(2).position(|w| w == b"\r\n").expect("CRLF") + *pos;
    let line = std::str::from_utf8(&buf[*pos + 1..line_end]).expect("utf-8 header");
    let kind = buf[*pos];
    *pos = line_end + 2;
    match kind {
        b'+' => Value::Text(line.to_string()),
        b':' => Value::Int,
        b'$' if line == "-1" => Value::Nil,
        b'$' => {
            let n: usize = line.parse().expect("bulk length");
            let v = String::from_utf8_lossy(&buf[*pos..*pos + n]).to_string();
            *pos += n + 2;
            Value::Text(v)
        }
        b'*' if line == "-1" => Value::Nil,
        b'*' => Value::Array((0..line.parse::<usize>().expect("count")).map(|_| parse(buf, pos)).collect()),
        other => panic!("unexpected RESP type {:?}", other as char),
    }
}

fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::Text(t) => Some(t.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// (full name like `client|reply`, flags, ACL categories) of every command
/// and subcommand.
fn redis_commands(port: u16) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut c = direct(port);
    let reply = c.cmd(&["COMMAND", "INFO"]);
    let mut pos = 0;
    let Value::Array(cmds) = parse(&reply, &mut pos) else { panic!("COMMAND INFO is an array") };
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<(String, Vec<String>, Vec<String>)>) {
        let Value::Array(f) = v else { return };
        let Some(Value::Text(name)) = f.first() else { return };
        out.push((name.to_ascii_lowercase(), texts(&f[2]), texts(&f[6])));
        if let Some(Value::Array(subs)) = f.get(9) {
            for s in subs {
                walk(s, out);
            }
        }
    }
    for c in &cmds {
        walk(c, &mut out);
    }
    assert!(out.len() > 300, "COMMAND INFO listed only {} commands", out.len());
    out
}

/// Commands in a state-related category that leave the connection as they
/// found it, reviewed one by one.
const NEUTRAL: &[(&str, &str)] = &[
    ("ping", "answers, changes nothing"),
    ("echo", "answers, changes nothing"),
    ("command", "describes commands"),
    ("publish", "delivers to subscribers; the publisher's connection is unchanged"),
    ("spublish", "as PUBLISH"),
    ("pubsub", "server-wide counts and lists"),
    ("exec", "MULTI pins, so on a shared link EXEC only answers 'EXEC without MULTI'"),
    ("discard", "as EXEC"),
    ("unwatch", "WATCH pins, so a shared link has nothing watched"),
    ("xread", "pins with BLOCK (checked below), neutral without"),
    ("xreadgroup", "as XREAD"),
];

/// `@scripting` commands that run no code of the user's (compile, list,
/// flush, describe): quick, reviewed one by one. Every other one runs code
/// and must never go on a shared link, where a long run would hold up
/// everybody behind it (`Route::Code`).
const NO_CODE: &[(&str, &str)] = &[
    ("script", "the container; its subcommands are checked"),
    ("script|load", "compiles only"),
    ("script|exists", "looks up SHA1s"),
    ("script|flush", "drops the script cache"),
    ("script|help", "text"),
    ("script|kill", "ends code (on a connection of its own: Route::Control)"),
    ("script|debug", "pins (checked below)"),
    ("function", "the container; its subcommands are checked"),
    ("function|list", "lists libraries"),
    ("function|dump", "serializes libraries"),
    ("function|flush", "drops libraries"),
    ("function|delete", "drops a library"),
    ("function|stats", "describes the running function"),
    ("function|help", "text"),
    ("function|kill", "ends code (on a connection of its own: Route::Control)"),
];

fn route_of(words: &[&str]) -> Route {
    let (buf, ranges) = owned_args(words);
    classify(&Args::new(&buf, &ranges))
}

#[test]
fn every_command_redis_knows_is_classified() {
    let redis = RedisServer::start();
    let mut unclassified = Vec::new();
    let mut shared_but_stateful = Vec::new();
    let mut code_elsewhere = Vec::new();
    for (name, flags, cats) in redis_commands(redis.port) {
        let (top, sub) = match name.split_once('|') {
            Some((t, s)) => (t.to_string(), Some(s.to_string())),
            None => (name.clone(), None),
        };
        if respseal::commands::lookup(top.as_bytes()).is_none() {
            unclassified.push(name.clone());
            continue;
        }
        if cats.iter().any(|c| c == "@scripting") && !NO_CODE.iter().any(|(n, _)| *n == name) {
            let mut words = vec![top.as_str()];
            words.extend(sub.as_deref());
            if route_of(&words) != Route::Code {
                code_elsewhere.push(name.clone());
            }
        }
        let stateful = flags.iter().any(|f| f == "blocking")
            || cats.iter().any(|c| c == "@connection" || c == "@transaction")
            || (cats.iter().any(|c| c == "@pubsub") && !top.ends_with("publish") && top != "pubsub");
        if !stateful {
            continue;
        }
        let mut words = vec![top.as_str()];
        if let Some(s) = &sub {
            words.push(s);
        }
        let route = route_of(&words);
        let neutral = NEUTRAL.iter().any(|(n, _)| *n == top);
        if route == Route::Forward && !neutral {
            shared_but_stateful.push(name.clone());
        }
    }
    assert!(unclassified.is_empty(), "commands Redis knows and the table does not: {unclassified:?}");
    assert!(
        shared_but_stateful.is_empty(),
        "stateful commands that would go on a shared link: {shared_but_stateful:?}"
    );
    assert!(code_elsewhere.is_empty(), "commands that run code and are not Route::Code: {code_elsewhere:?}");
    // Subcommand-level decisions and the fail-closed default.
    assert_eq!(route_of(&["SCRIPT", "DEBUG", "YES"]), Route::Pin);
    assert_eq!(route_of(&["xread", "BLOCK", "0", "STREAMS", "s", "$"]), Route::Pin);
    assert_eq!(route_of(&["NOSUCHCOMMAND"]), Route::Pin);
    assert_eq!(route_of(&["DEBUG", "SLEEP", "0"]), Route::Pin);
}

/// What the second client runs, through respseal and directly; every reply
/// depends only on db 0's data and the connection's own (default) state.
fn probe(c: &mut Client) -> Vec<Vec<u8>> {
    let cmds: &[&[&str]] = &[
        &["PING"],
        &["GET", "iso:marker"],
        &["SET", "iso:k", "v"],
        &["GET", "iso:k"],
        &["HGETALL", "iso:h"],
        &["EVAL", "return redis.call('GET', KEYS[1])", "1", "iso:marker"],
        &["ECHO", "done"],
    ];
    let mut out = Vec::new();
    for cmd in cmds {
        c.send_cmd(cmd);
        match c.try_read_frame(Duration::from_secs(3)) {
            Ok(f) => out.push(f),
            Err(_) => {
                out.push(format!("<no reply to {cmd:?}>").into_bytes());
                break;
            }
        }
    }
    out
}

#[test]
fn state_left_by_one_client_never_reaches_another() {
    let redis = RedisServer::start();
    let mut d = redis.client();
    d.assert_cmd(&["SET", "iso:marker", "db0"], b"+OK\r\n");
    d.cmd(&["HSET", "iso:h", "f", "v"]);
    let want = probe(&mut redis.client());
    let proxy = Proxy::start(redis.port, &["--threads", "1", "--shared-links", "1"]);
    // (what the first client sends, how many replies it reads before the
    // second client's probe)
    let cases: &[(&str, &[&[&str]], usize)] = &[
        ("SCRIPT DEBUG YES", &[&["SCRIPT", "DEBUG", "YES"], &["EVAL", "return 'INJECTED'", "0"]], 1),
        ("CLIENT REPLY OFF", &[&["CLIENT", "REPLY", "OFF"]], 0),
        ("CLIENT REPLY SKIP", &[&["CLIENT", "REPLY", "SKIP"]], 0),
        ("CLIENT TRACKING", &[&["CLIENT", "TRACKING", "ON"], &["GET", "iso:k"]], 2),
        ("CLIENT NO-EVICT", &[&["CLIENT", "NO-EVICT", "ON"]], 1),
        ("READONLY", &[&["READONLY"]], 1),
        ("READWRITE", &[&["READWRITE"]], 1),
        ("SELECT", &[&["SELECT", "3"]], 1),
        ("HELLO 3", &[&["HELLO", "3"]], 1),
        ("RESET", &[&["SELECT", "2"], &["RESET"]], 2),
        ("MULTI", &[&["MULTI"], &["SET", "iso:k", "from-multi"]], 2),
        ("WATCH", &[&["WATCH", "iso:k"]], 1),
        ("MONITOR", &[&["MONITOR"]], 1),
        ("SUBSCRIBE", &[&["SUBSCRIBE", "iso:ch"]], 1),
        ("unknown command", &[&["NOSUCHCOMMAND", "x"]], 1),
        ("DEBUG", &[&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]], 1),
    ];
    for (what, cmds, replies) in cases {
        let mut a = proxy.client();
        if cmds[0][0] == "HELLO" {
            a.proto = respseal::protocol::Proto::Resp3;
        }
        for c in *cmds {
            a.send_cmd(c);
        }
        for _ in 0..*replies {
            a.try_read_frame(Duration::from_secs(3)).unwrap_or_else(|e| panic!("{what}: first client: {e:?}"));
        }
        let got = probe(&mut proxy.client());
        assert!(got == want, "{what}: the second client saw {:?}, directly {:?}", shows(&got), shows(&want));
        drop(a);
    }
}

fn shows(v: &[Vec<u8>]) -> Vec<String> {
    v.iter().map(|f| show(f)).collect()
}

/// `SCRIPT DEBUG SYNC` blocks all of Redis while its script is debugged;
/// Redis ends the session when that client disconnects. Through respseal
/// the debugging client has its own connection, which closes with it, so
/// Redis serves everyone again at once.
#[test]
fn a_sync_debugger_ends_with_its_client() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port, &["--threads", "1", "--shared-links", "1"]);
    let mut a = proxy.client();
    a.assert_cmd(&["SCRIPT", "DEBUG", "SYNC"], b"+OK\r\n");
    a.send_cmd(&["EVAL", "return 1", "0"]);
    let _ = a.try_read_frame(Duration::from_secs(3));
    drop(a);
    let start = Instant::now();
    let mut b = proxy.client();
    b.assert_cmd(&["PING"], b"+PONG\r\n");
    let mut direct = redis.client();
    direct.assert_cmd(&["PING"], b"+PONG\r\n");
    assert!(start.elapsed() < Duration::from_secs(5), "Redis stayed blocked {:?}", start.elapsed());
}
