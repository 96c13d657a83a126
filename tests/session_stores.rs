//! What the session stores send, through respseal to a real Redis: hash
//! rules (Spring Session's and ASP.NET Core's hashes), RENAME/RENAMENX/COPY
//! carried out by respseal, sealed pub/sub channels, declared scripts, and
//! `seal = false` exemptions. Every test checks both what the client sees
//! and what Redis itself holds.

mod common;

use std::time::Duration;

use common::*;

const MAGIC: &[u8] = b"\x00RE\x01";

fn sha1_hex(body: &str) -> String {
    let out = std::process::Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha1sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_string()
}

/// A Redis and a respseal with `rules` (TOML `[[rule]]`/`[[script]]`
/// sections) and one primary key.
fn setup(rules: &str) -> (RedisServer, Proxy, tempfile::TempDir) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!("{rules}\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n", key.display());
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    (redis, proxy, dir)
}

const SPRING: &str = "[[rule]]\npattern = \"spring:session:sessions:expires:*\"\nseal = false\n\
                      [[rule]]\npattern = \"spring:session:sessions:*\"\nfields = \"sessionAttr:*\"\n\
                      [[rule]]\nchannel = \"spring:session:event:*\"\n";

/// The raw value of one hash field in Redis.
fn raw_field(redis: &RedisServer, key: &str, field: &str) -> Vec<u8> {
    let r = redis.client().cmd(&["HGET", key, field]);
    let start = r.iter().position(|&b| b == b'\n').expect("bulk") + 1;
    r[start..r.len() - 2].to_vec()
}

fn pairs(words: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        v.extend(bulk(w.as_bytes()));
    }
    v
}

#[test]
fn hash_rules_seal_only_the_matching_fields_and_open_every_read() {
    let (redis, proxy, _dir) = setup(SPRING);
    let k = "spring:session:sessions:abc";
    let mut c = proxy.client();
    c.assert_cmd(
        &["HSET", k, "creationTime", "1700", "sessionAttr:user", "alice", "maxInactiveInterval", "1800"],
        b":3\r\n",
    );
    c.assert_cmd(&["HMSET", k, "sessionAttr:role", "admin", "lastAccessedTime", "1701"], b"+OK\r\n");
    c.assert_cmd(&["HSETNX", k, "sessionAttr:csrf", "tok"], b":1\r\n");
    c.assert_cmd(&["HSETNX", k, "sessionAttr:csrf", "other"], b":0\r\n");
    // In Redis: attributes sealed (bound to key and field), metadata plain.
    for f in ["sessionAttr:user", "sessionAttr:role", "sessionAttr:csrf"] {
        let v = raw_field(&redis, k, f);
        assert!(v.starts_with(MAGIC), "{f}: {}", show(&v));
    }
    for (f, v) in [("creationTime", "1700"), ("lastAccessedTime", "1701"), ("maxInactiveInterval", "1800")] {
        assert_eq!(raw_field(&redis, k, f), v.as_bytes());
    }
    // Reads.
    c.assert_cmd(&["HGET", k, "sessionAttr:user"], b"$5\r\nalice\r\n");
    c.assert_cmd(&["HGET", k, "creationTime"], b"$4\r\n1700\r\n");
    c.assert_cmd(
        &["HMGET", k, "sessionAttr:role", "creationTime", "nope"],
        b"*3\r\n$5\r\nadmin\r\n$4\r\n1700\r\n$-1\r\n",
    );
    let all = c.cmd(&["HGETALL", k]);
    assert!(
        all.starts_with(b"*12\r\n") && contains(&all, b"$5\r\nalice\r\n") && !contains(&all, MAGIC),
        "{}",
        show(&all)
    );
    let vals = c.cmd(&["HVALS", k]);
    assert!(
        vals.starts_with(b"*6\r\n") && contains(&vals, b"$3\r\ntok\r\n") && !contains(&vals, MAGIC),
        "{}",
        show(&vals)
    );
    let scan = c.cmd(&["HSCAN", k, "0", "COUNT", "100"]);
    assert!(contains(&scan, b"$5\r\nadmin\r\n") && !contains(&scan, MAGIC), "{}", show(&scan));
    let rand = c.cmd(&["HRANDFIELD", k, "-20", "WITHVALUES"]);
    assert!(rand.starts_with(b"*40\r\n") && !contains(&rand, MAGIC), "{}", show(&rand));
    assert_eq!(c.cmd(&["HRANDFIELD", k, "2"])[..4], *b"*2\r\n");
    // Untouched, refused.
    c.assert_cmd(&["HLEN", k], b":6\r\n");
    c.assert_cmd(&["HEXISTS", k, "sessionAttr:user"], b":1\r\n");
    assert!(c.cmd(&["HKEYS", k]).starts_with(b"*6\r\n"));
    c.assert_cmd(&["HINCRBY", k, "creationTime", "1"], b":1701\r\n");
    c.assert_cmd(&["HSTRLEN", k, "creationTime"], b":4\r\n");
    for refused in [["HSTRLEN", k, "sessionAttr:user", ""], ["HINCRBY", k, "sessionAttr:user", "1"]] {
        let args: Vec<&str> = refused.iter().copied().filter(|a| !a.is_empty()).collect();
        assert_line_prefix(
            &c.cmd(&args),
            format!("-ERR respseal: {} is not allowed on sealed keys", args[0]).as_bytes(),
        );
    }
    assert_line_prefix(&c.cmd(&["HINCRBYFLOAT", k, "sessionAttr:x", "1.5"]), b"-ERR respseal: HINCRBYFLOAT");
    c.assert_cmd(&["HDEL", k, "sessionAttr:csrf"], b":1\r\n");
    // RESP3: HGETALL is a map, HRANDFIELD … WITHVALUES an array of pairs.
    let mut r3 = proxy.client();
    r3.hello3();
    let map = r3.cmd(&["HGETALL", k]);
    assert!(
        map.starts_with(b"%5\r\n") && contains(&map, b"$5\r\nalice\r\n") && !contains(&map, MAGIC),
        "{}",
        show(&map)
    );
    let rand = r3.cmd(&["HRANDFIELD", k, "2", "WITHVALUES"]);
    assert!(rand.starts_with(b"*2\r\n*2\r\n") && !contains(&rand, MAGIC), "{}", show(&rand));
    // A hash under a rule without `fields` is still refused.
    let (_r, p2, _d) = setup("[[rule]]\npattern = \"sess:*\"\n");
    assert_line_prefix(
        &p2.client().cmd(&["HSET", "sess:h", "f", "v"]),
        b"-ERR respseal: HSET is not supported on sealed keys unless the rule seals hash fields",
    );
}

#[test]
fn a_hash_field_that_does_not_open_fails_the_whole_reply() {
    let (redis, proxy, _dir) =
        setup(&format!("{SPRING}[[rule]]\npattern = \"strict:*\"\nfields = \"*\"\non_failure = \"error\"\n"));
    let k = "spring:session:sessions:t";
    let mut c = proxy.client();
    c.assert_cmd(&["HSET", k, "sessionAttr:a", "one", "sessionAttr:b", "two", "creationTime", "1"], b":3\r\n");
    // A sealed value moved to another field (or forged) does not open:
    // the binding covers the field name.
    let a = raw_field(&redis, k, "sessionAttr:a");
    let mut d = redis.client();
    d.send_cmd(&[&b"HSET"[..], k.as_bytes(), b"sessionAttr:b", &a]);
    d.read_frame();
    c.assert_cmd(&["HGET", k, "sessionAttr:b"], b"$-1\r\n");
    c.assert_cmd(&["HGET", k, "sessionAttr:a"], b"$3\r\none\r\n");
    // Nothing of the session reaches the client: no `one`, no `1`.
    c.assert_cmd(&["HGETALL", k], b"*0\r\n");
    c.assert_cmd(&["HVALS", k], b"*0\r\n");
    c.assert_cmd(&["HMGET", k, "sessionAttr:a", "creationTime"], b"*2\r\n$3\r\none\r\n$1\r\n1\r\n");
    c.assert_cmd(&["HMGET", k, "sessionAttr:a", "sessionAttr:b", "creationTime"], b"*3\r\n$-1\r\n$-1\r\n$-1\r\n");
    assert!(c.cmd(&["HSCAN", k, "0"]).ends_with(b"*0\r\n"));
    let mut r3 = proxy.client();
    r3.hello3();
    r3.assert_cmd(&["HGETALL", k], b"%0\r\n");
    // With on_failure = "error", an error.
    c.assert_cmd(&["HSET", "strict:h", "a", "1", "b", "2"], b":2\r\n");
    d.assert_cmd(&["HSET", "strict:h", "b", "forged"], b":0\r\n");
    assert_line_prefix(
        &c.cmd(&["HGETALL", "strict:h"]),
        b"-ERR respseal: sealed value could not be opened (legacy_plaintext)",
    );
}

#[test]
fn rename_and_copy_of_sealed_keys_reseal_under_the_new_name_and_keep_the_ttl() {
    let (redis, proxy, _dir) =
        setup(&format!("[[rule]]\npattern = \"plain:*\"\nseal = false\n{SPRING}[[rule]]\npattern = \"sess:*\"\n"));
    let mut c = proxy.client();
    let mut d = redis.client();
    // Strings.
    c.assert_cmd(&["SET", "sess:a", "value-a", "EX", "1000"], b"+OK\r\n");
    c.assert_cmd(&["RENAME", "sess:a", "sess:b"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:b"], b"$7\r\nvalue-a\r\n");
    c.assert_cmd(&["EXISTS", "sess:a"], b":0\r\n");
    let ttl = c.cmd(&["TTL", "sess:b"]);
    assert!(ttl.starts_with(b":99") || ttl == b":1000\r\n", "{}", show(&ttl));
    c.assert_cmd(&["SET", "sess:c", "value-c"], b"+OK\r\n");
    c.assert_cmd(&["RENAMENX", "sess:b", "sess:c"], b":0\r\n");
    c.assert_cmd(&["RENAMENX", "sess:b", "sess:d"], b":1\r\n");
    c.assert_cmd(&["COPY", "sess:d", "sess:c"], b":0\r\n");
    c.assert_cmd(&["COPY", "sess:d", "sess:c", "REPLACE"], b":1\r\n");
    c.assert_cmd(&["GET", "sess:c"], b"$7\r\nvalue-a\r\n");
    c.assert_cmd(&["COPY", "sess:d", "sess:e", "DB", "1"], b":1\r\n");
    c.assert_cmd(&["SELECT", "1"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:e"], b"$7\r\nvalue-a\r\n");
    c.assert_cmd(&["SELECT", "0"], b"+OK\r\n");
    assert_line_prefix(&c.cmd(&["RENAME", "sess:nothing", "sess:x"]), b"-ERR no such key");
    // To an unsealed name: refused, unless a `seal = false` rule names it.
    assert_line_prefix(&c.cmd(&["RENAME", "sess:c", "elsewhere"]), b"-ERR respseal: RENAME refused: the destination");
    c.assert_cmd(&["COPY", "sess:c", "plain:c"], b":1\r\n");
    d.assert_cmd(&["GET", "plain:c"], b"$7\r\nvalue-a\r\n");
    // From an unsealed name: sealed on the way in.
    c.assert_cmd(&["SET", "loose", "was-plain"], b"+OK\r\n");
    c.assert_cmd(&["RENAME", "loose", "sess:sealed-now"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:sealed-now"], b"$9\r\nwas-plain\r\n");
    let raw = d.cmd(&["GET", "sess:sealed-now"]);
    assert!(contains(&raw, MAGIC) && !contains(&raw, b"was-plain"), "{}", show(&raw));
    // Hashes: Spring's session id change.
    let (old, new) = ("spring:session:sessions:old", "spring:session:sessions:new");
    c.assert_cmd(&["HSET", old, "sessionAttr:user", "bob", "creationTime", "5"], b":2\r\n");
    c.assert_cmd(&["PEXPIREAT", old, "99999999999999"], b":1\r\n");
    c.assert_cmd(&["RENAME", old, new], b"+OK\r\n");
    c.assert_cmd(&["HGET", new, "sessionAttr:user"], b"$3\r\nbob\r\n");
    c.assert_cmd(&["HGET", new, "creationTime"], b"$1\r\n5\r\n");
    c.assert_cmd(&["PEXPIRETIME", new], b":99999999999999\r\n");
    // Inside MULTI: refused with a clear error, and the transaction discarded.
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "plain-in-tx", "x"], b"+QUEUED\r\n");
    assert_line_prefix(
        &c.cmd(&["RENAME", "sess:c", "sess:z"]),
        b"-ERR respseal: RENAME, RENAMENX and COPY of sealed keys",
    );
    assert_line_prefix(&c.cmd(&["EXEC"]), b"-EXECABORT");
    c.assert_cmd(&["EXISTS", "plain-in-tx", "sess:z"], b":0\r\n");
    // MOVE and SWAPDB pass through.
    c.assert_cmd(&["MOVE", "sess:c", "2"], b":1\r\n");
    c.assert_cmd(&["SWAPDB", "0", "2"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:c"], b"$7\r\nvalue-a\r\n");
}

#[test]
fn a_move_is_one_step_for_other_clients() {
    // A writer changes the source while RENAMEs run: every RENAME either
    // moves a value that opens, or is retried; no value is lost or left
    // unopenable.
    let (_redis, proxy, _dir) = setup("[[rule]]\npattern = \"sess:*\"\n");
    let port = proxy.port;
    let writer = std::thread::spawn(move || {
        let mut w = Client::connect(port);
        for i in 0..300 {
            w.assert_cmd(&["SET", "sess:src", &format!("v{i}")], b"+OK\r\n");
        }
    });
    let mut c = proxy.client();
    let mut moved = 0;
    for _ in 0..300 {
        let r = c.cmd(&["RENAME", "sess:src", "sess:dst"]);
        if r == b"+OK\r\n" {
            moved += 1;
            let v = c.cmd(&["GET", "sess:dst"]);
            assert!(v.starts_with(b"$") && !v.starts_with(b"$-1") && contains(&v, b"\r\nv"), "{}", show(&v));
        } else {
            assert!(
                r.starts_with(b"-ERR no such key") || r.starts_with(b"-ERR respseal: RENAME gave up"),
                "{}",
                show(&r)
            );
        }
    }
    writer.join().expect("writer");
    assert!(moved > 0);
}

#[test]
fn published_messages_on_sealed_channels_are_sealed_and_opened_in_both_protocols() {
    let (redis, proxy, _dir) = setup(SPRING);
    let ch = "spring:session:event:0:created:s1";
    let mut sub2 = proxy.client();
    sub2.assert_cmd(&["SUBSCRIBE", ch], &pairs_frame(&["subscribe", ch], 1));
    let mut psub = proxy.client();
    psub.send_cmd(&["PSUBSCRIBE", "spring:*"]);
    psub.read_frame();
    let mut sub3 = proxy.client();
    sub3.hello3();
    sub3.send_cmd(&["SUBSCRIBE", ch]);
    sub3.read_frame();
    let mut direct = redis.client();
    direct.send_cmd(&["SUBSCRIBE", ch]);
    direct.read_frame();
    let mut p = proxy.client();
    p.assert_cmd(&["PUBLISH", ch, "{\"sessionAttr:user\":\"alice\"}"], b":4\r\n");
    p.assert_cmd(&["PUBLISH", "spring:other", "plain"], b":1\r\n");
    let m = sub2.read_frame();
    assert_eq!(m, pairs(&["message", ch, "{\"sessionAttr:user\":\"alice\"}"]));
    let m = psub.read_frame();
    assert_eq!(m, pairs(&["pmessage", "spring:*", ch, "{\"sessionAttr:user\":\"alice\"}"]));
    assert_eq!(psub.read_frame(), pairs(&["pmessage", "spring:*", "spring:other", "plain"]));
    let m = sub3.read_frame();
    assert!(m.starts_with(b">3\r\n") && m.ends_with(b"{\"sessionAttr:user\":\"alice\"}\r\n"), "{}", show(&m));
    // Redis itself carries ciphertext.
    let raw = direct.read_frame();
    assert!(contains(&raw, MAGIC) && !contains(&raw, b"alice"), "{}", show(&raw));
    // Sharded pub/sub: SPUBLISH sealed, smessage opened.
    let mut ssub = proxy.client();
    ssub.send_cmd(&["SSUBSCRIBE", ch]);
    ssub.read_frame();
    p.assert_cmd(&["SPUBLISH", ch, "sharded"], b":1\r\n");
    assert_eq!(ssub.read_frame(), pairs(&["smessage", ch, "sharded"]));
    // A message published straight to Redis does not open: dropped.
    redis.client().assert_cmd(&["PUBLISH", ch, "forged"], b":4\r\n");
    p.assert_cmd(&["PUBLISH", ch, "after"], b":4\r\n");
    assert_eq!(sub2.read_frame(), pairs(&["message", ch, "after"]));
}

fn pairs_frame(words: &[&str], n: i64) -> Vec<u8> {
    let mut v = format!("*{}\r\n", words.len() + 1).into_bytes();
    for w in words {
        v.extend(bulk(w.as_bytes()));
    }
    v.extend(format!(":{n}\r\n").into_bytes());
    v
}

const ASPNET_SET: &str = "redis.call('HSET', KEYS[1], 'absexp', ARGV[1], 'sldexp', ARGV[2], 'data', ARGV[4])\n\
                          if ARGV[3] ~= '-1' then\n  redis.call('EXPIRE', KEYS[1], ARGV[3])\nend\nreturn 1";
const LARAVEL_ADD: &str = "return redis.call('exists',KEYS[1])<1 and redis.call('setex',KEYS[1],ARGV[2],ARGV[1])";
const ASPNET_GET: &str = "return redis.call('HGET', KEYS[1], 'data')";
const PAIR: &str = "return {redis.call('HGET', KEYS[1], 'absexp'), redis.call('HGET', KEYS[1], 'data')}";
const PHPREDIS_UNLOCK: &str =
    "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";

#[test]
fn declared_scripts_run_with_their_arguments_sealed_and_others_stay_refused() {
    let config = format!(
        "[[rule]]\npattern = \"aspnet:*\"\nfields = \"data\"\n\
         [[rule]]\npattern = \"laravel_cache:*\"\n\
         [[rule]]\npattern = \"PHPREDIS_SESSION:*_LOCK\"\nseal = false\n\
         [[rule]]\npattern = \"PHPREDIS_SESSION:*\"\n\
         [[script]]\nname = \"aspnet-set\"\nsha1 = \"{}\"\nseal_argv = [{{ argv = 4, key = 1, field = \"data\" }}]\n\
         [[script]]\nname = \"laravel-add\"\nsha1 = \"{}\"\nseal_argv = [{{ argv = 1, key = 1 }}]\n\
         [[script]]\nname = \"aspnet-get\"\nsha1 = \"{}\"\nopen_reply = [{{ key = 1, field = \"data\" }}]\n\
         [[script]]\nname = \"pair\"\nsha1 = \"{}\"\nopen_reply = [{{ index = 1, key = 1, field = \"data\" }}]\n",
        sha1_hex(ASPNET_SET),
        sha1_hex(LARAVEL_ADD),
        sha1_hex(ASPNET_GET),
        sha1_hex(PAIR),
    );
    let (redis, proxy, _dir) = setup(&config);
    let mut c = proxy.client();
    // ASP.NET Core's SetScript: EVAL first, then EVALSHA.
    c.assert_cmd(&["EVAL", ASPNET_SET, "1", "aspnet:s1", "111", "222", "600", "payload-one"], b":1\r\n");
    c.assert_cmd(&["EVALSHA", &sha1_hex(ASPNET_SET), "1", "aspnet:s2", "1", "2", "-1", "payload-two"], b":1\r\n");
    c.assert_cmd(&["HMGET", "aspnet:s1", "absexp", "sldexp", "data"], &pairs(&["111", "222", "payload-one"]));
    c.assert_cmd(&["HGET", "aspnet:s2", "data"], b"$11\r\npayload-two\r\n");
    assert!(raw_field(&redis, "aspnet:s1", "data").starts_with(MAGIC));
    assert_eq!(raw_field(&redis, "aspnet:s1", "absexp"), b"111");
    // Declared reads: the reply (or one element of it) is opened.
    c.assert_cmd(&["EVAL", ASPNET_GET, "1", "aspnet:s1"], b"$11\r\npayload-one\r\n");
    c.assert_cmd(&["EVAL", PAIR, "1", "aspnet:s1"], &pairs(&["111", "payload-one"]));
    // Laravel's add.
    c.assert_cmd(&["EVAL", LARAVEL_ADD, "1", "laravel_cache:k", "cached", "60"], b"+OK\r\n");
    c.assert_cmd(&["GET", "laravel_cache:k"], b"$6\r\ncached\r\n");
    let raw = redis.client().cmd(&["GET", "laravel_cache:k"]);
    assert!(contains(&raw, MAGIC), "{}", show(&raw));
    // Any other script on a sealed name is refused.
    assert_line_prefix(
        &c.cmd(&["EVAL", "return redis.call('get',KEYS[1])", "1", "laravel_cache:k"]),
        b"-ERR respseal: EVAL cannot be used on sealed keys",
    );
    // SCRIPT and FUNCTION subcommands that load no code pass; loading a body
    // that names a sealed key, or restoring functions, does not.
    c.assert_cmd(&["SCRIPT", "EXISTS", &sha1_hex(ASPNET_SET)], b"*1\r\n:1\r\n");
    assert!(c.cmd(&["FUNCTION", "LIST"]).starts_with(b"*"));
    assert_line_prefix(
        &c.cmd(&["SCRIPT", "LOAD", "return redis.call('set','laravel_cache:x','plain')"]),
        b"-ERR respseal: SCRIPT cannot be used on sealed keys",
    );
    assert_line_prefix(
        &c.cmd(&["FUNCTION", "RESTORE", "payload"]),
        b"-ERR respseal: FUNCTION cannot be used on sealed keys",
    );
    c.assert_cmd(&["SCRIPT", "FLUSH"], b"+OK\r\n");
    // phpredis's lock release on its *_LOCK key passes through.
    let lock = "PHPREDIS_SESSION:abc_LOCK";
    c.assert_cmd(&["SET", lock, "token", "NX", "PX", "30000"], b"+OK\r\n");
    c.assert_cmd(&["EVAL", PHPREDIS_UNLOCK, "1", lock, "token"], b":1\r\n");
    c.assert_cmd(&["EXISTS", lock], b":0\r\n");
    // The session itself is sealed; its lock was not.
    c.assert_cmd(&["SET", "PHPREDIS_SESSION:abc", "php-session"], b"+OK\r\n");
    assert!(contains(&redis.client().cmd(&["GET", "PHPREDIS_SESSION:abc"]), MAGIC));
}

#[test]
fn exemptions_come_first_and_keep_shadow_keys_plain() {
    let (redis, proxy, _dir) = setup(SPRING);
    let mut c = proxy.client();
    let shadow = "spring:session:sessions:expires:abc";
    c.assert_cmd(&["APPEND", shadow, ""], b":0\r\n");
    c.assert_cmd(&["EXPIRE", shadow, "60"], b":1\r\n");
    redis.client().assert_cmd(&["GET", shadow], b"$0\r\n\r\n");
    let _ = Duration::from_secs(0);
}
