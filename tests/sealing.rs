//! Sealing string values end to end: real Redis behind a real respseal,
//! checking both what the client sees and what Redis itself holds.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use respseal::protocol::Proto;

const MAGIC_V1: &[u8] = b"\x00RE\x01";
const CANARY: &str = "CANARY-7f3e-do-not-store-in-clear";

/// A key file made by `respseal keygen`, and its id.
/// A Redis and a respseal sealing `sess:*` in front of it (the key file lives
/// in the returned directory).
fn sealed_setup() -> (RedisServer, Proxy, tempfile::TempDir) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let proxy = sealing_proxy(&redis, &key, &[]);
    (redis, proxy, dir)
}

fn sealing_proxy(redis: &RedisServer, key: &Path, extra: &[&str]) -> Proxy {
    let mut args = vec!["--seal", "sess:*", "--key-file", key.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Proxy::start(redis.port, &args)
}

/// The raw bytes Redis holds for `key`.
fn raw(redis: &RedisServer, key: &str) -> Vec<u8> {
    let r = redis.client().cmd(&["GET", key]);
    assert!(r.starts_with(b"$") && !r.starts_with(b"$-1"), "{key} missing in Redis: {}", show(&r));
    let header_end = r.iter().position(|&b| b == b'\n').expect("bulk header") + 1;
    r[header_end..r.len() - 2].to_vec()
}

/// Every value in Redis: (key, value) for string keys.
fn all_strings(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let mut c = redis.client();
    let keys = c.cmd(&["KEYS", "*"]);
    let mut out = Vec::new();
    for k in array_texts(&keys) {
        if c.cmd(&["TYPE", &k]) == b"+string\r\n" {
            out.push((k.clone(), raw(redis, &k)));
        }
    }
    out
}

/// The elements of an array of bulk strings, as text.
fn array_texts(reply: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = reply.iter().position(|&b| b == b'\n').expect("array header") + 1;
    while pos < reply.len() {
        let nl = pos + reply[pos..].iter().position(|&b| b == b'\n').expect("bulk header");
        let len: usize = std::str::from_utf8(&reply[pos + 1..nl - 1]).expect("ascii").parse().expect("length");
        out.push(String::from_utf8_lossy(&reply[nl + 1..nl + 1 + len]).into_owned());
        pos = nl + 1 + len + 2;
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_sealed_in_redis(redis: &RedisServer) {
    let values = all_strings(redis);
    let sealed: Vec<_> = values.iter().filter(|(k, _)| k.starts_with("sess:")).collect();
    assert!(!sealed.is_empty(), "the workload wrote no sess:* keys");
    for (k, v) in &sealed {
        assert!(v.starts_with(MAGIC_V1), "{k} is not sealed in Redis: {}", show(v));
    }
    for (k, v) in &values {
        assert!(!contains(v, CANARY), "plaintext canary reached Redis under {k}");
        assert!(!contains(k.as_bytes(), CANARY));
    }
}

#[test]
fn writes_through_every_string_command_leave_only_ciphertext_in_redis() {
    let (redis, proxy, _dir) = sealed_setup();
    let v = |n: u32| format!("{{\"user\":{n},\"email\":\"{CANARY}\"}}");
    for proto in [Proto::Resp2, Proto::Resp3] {
        let mut c = proxy.client();
        if proto == Proto::Resp3 {
            c.proto = Proto::Resp3;
            let hello = c.cmd(&["HELLO", "3"]);
            assert!(hello.starts_with(b"%"), "{}", show(&hello));
        }
        let p = proto.number();
        c.assert_cmd(&["SET", &format!("sess:set{p}"), &v(1)], b"+OK\r\n");
        c.assert_cmd(&["SET", &format!("sess:opts{p}"), &v(2), "NX", "EX", "100"], b"+OK\r\n");
        c.assert_cmd(&["SETEX", &format!("sess:setex{p}"), "100", &v(3)], b"+OK\r\n");
        c.assert_cmd(&["PSETEX", &format!("sess:psetex{p}"), "100000", &v(4)], b"+OK\r\n");
        c.assert_cmd(&["SETNX", &format!("sess:setnx{p}"), &v(5)], b":1\r\n");
        c.assert_cmd(
            &["MSET", &format!("sess:m1{p}"), &v(6), &format!("plain:m2{p}"), "visible", &format!("sess:m3{p}"), &v(7)],
            b"+OK\r\n",
        );
        c.assert_cmd(&["MSETNX", &format!("sess:mx1{p}"), &v(8), &format!("sess:mx2{p}"), &v(9)], b":1\r\n");
        let old = c.cmd(&["GETSET", &format!("sess:set{p}"), &v(10)]);
        assert_bytes(&old, &bulk(v(1).as_bytes()));
        // Everything reads back as plaintext through the proxy.
        for (k, n) in [
            ("set", 10),
            ("opts", 2),
            ("setex", 3),
            ("psetex", 4),
            ("setnx", 5),
            ("m1", 6),
            ("m3", 7),
            ("mx1", 8),
            ("mx2", 9),
        ] {
            c.assert_cmd(&["GET", &format!("sess:{k}{p}")], &bulk(v(n).as_bytes()));
        }
        // Keys matching no rule are never touched.
        assert_eq!(raw(&redis, &format!("plain:m2{p}")), b"visible");
    }
    assert_sealed_in_redis(&redis);
}

#[test]
fn set_options_in_any_order_keep_their_meaning() {
    let (redis, proxy, _dir) = sealed_setup();
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:o", "one", "EX", "100", "NX"], b"+OK\r\n");
    c.assert_cmd(&["SET", "sess:o", "two", "NX"], b"$-1\r\n");
    // GET returns the old value opened; KEEPTTL keeps the expiry.
    c.assert_cmd(&["SET", "sess:o", "two", "KEEPTTL", "GET", "XX"], b"$3\r\none\r\n");
    let ttl = c.cmd(&["TTL", "sess:o"]);
    assert!(ttl.starts_with(b":") && ttl != b":-1\r\n", "KEEPTTL lost the TTL: {}", show(&ttl));
    c.assert_cmd(&["set", "sess:o", "three", "get"], b"$3\r\ntwo\r\n");
    assert_bytes(&c.cmd(&["TTL", "sess:o"]), b":-1\r\n");
    let future = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 500)
        .to_string();
    c.assert_cmd(&["SET", "sess:o", "four", "EXAT", &future, "GET"], b"$5\r\nthree\r\n");
    let pxat = format!("{future}000");
    c.assert_cmd(&["SET", "sess:o", "five", "GET", "PXAT", &pxat], b"$4\r\nfour\r\n");
    let ttl = c.cmd(&["TTL", "sess:o"]);
    assert!(ttl.starts_with(b":4") || ttl.starts_with(b":5"), "{}", show(&ttl));
    c.assert_cmd(&["GET", "sess:o"], b"$4\r\nfive\r\n");
    // SET … GET on a missing key gives nil, not an error.
    c.assert_cmd(&["SET", "sess:new", "x", "GET"], b"$-1\r\n");
    // GETEX and GETDEL open their values; GETDEL removes the key.
    c.assert_cmd(&["GETEX", "sess:o", "EX", "50"], b"$4\r\nfive\r\n");
    assert!(c.cmd(&["TTL", "sess:o"]).starts_with(b":5") || c.cmd(&["TTL", "sess:o"]).starts_with(b":4"));
    c.assert_cmd(&["GETDEL", "sess:o"], b"$4\r\nfive\r\n");
    c.assert_cmd(&["EXISTS", "sess:o"], b":0\r\n");
    assert!(raw(&redis, "sess:new").starts_with(MAGIC_V1));
}

#[test]
fn mget_opens_sealed_values_among_plain_and_missing_ones() {
    let (_redis, proxy, _dir) = sealed_setup();
    let mut c = proxy.client();
    c.assert_cmd(&["MSET", "sess:a", "alpha", "plain", "p", "sess:b", ""], b"+OK\r\n");
    c.assert_cmd(
        &["MGET", "sess:a", "plain", "sess:missing", "sess:b", "nokey"],
        b"*5\r\n$5\r\nalpha\r\n$1\r\np\r\n$-1\r\n$0\r\n\r\n$-1\r\n",
    );
    c.proto = Proto::Resp3;
    assert_bytes(&c.cmd(&["HELLO", "3"])[..1], b"%");
    c.assert_cmd(&["MGET", "sess:a", "sess:missing", "plain"], b"*3\r\n$5\r\nalpha\r\n_\r\n$1\r\np\r\n");
}

#[test]
fn a_value_copied_to_another_key_does_not_open() {
    let (redis, proxy, _dir) = sealed_setup();
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:victim", CANARY], b"+OK\r\n");
    redis.client().assert_cmd(&["COPY", "sess:victim", "sess:attacker"], b":1\r\n");
    c.assert_cmd(&["GET", "sess:attacker"], b"$-1\r\n");
    c.assert_cmd(
        &["MGET", "sess:victim", "sess:attacker"],
        &[b"*2\r\n".as_slice(), &bulk(CANARY.as_bytes()), b"$-1\r\n"].concat(),
    );
    // Tampering in place fails too.
    let mut v = raw(&redis, "sess:victim");
    let last = v.len() - 1;
    v[last] ^= 1;
    redis.client().assert_cmd(&[b"SET".as_slice(), b"sess:victim", &v], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:victim"], b"$-1\r\n");
    // Legacy plaintext on a sealed key is rejected by default.
    redis.client().assert_cmd(&["SET", "sess:legacy", "plaintext"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:legacy"], b"$-1\r\n");
    // The failures are logged with reason only: never key names or values.
    let log = wait_until("failure log lines", Duration::from_secs(5), || {
        let l = proxy.log();
        (l.matches("did not open").count() >= 3).then_some(l)
    });
    assert!(log.contains("tag_mismatch"), "{log}");
    assert!(log.contains("legacy_plaintext"), "{log}");
    assert!(!log.contains("sess:attacker") && !log.contains("sess:victim") && !log.contains(CANARY), "{log}");
}

#[test]
fn error_policy_and_migration_mode_per_rule() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!(
        "[[rule]]\npattern = \"strict:*\"\non_failure = \"error\"\n\n\
         [[rule]]\npattern = \"migrate:*\"\nlegacy = \"pass\"\nlegacy_until = \"2999-01-01\"\n\n\
         [[rule]]\npattern = \"reseal:*\"\nlegacy = \"reseal\"\nlegacy_until = \"2999-01-01\"\n\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        key.display()
    );
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let mut d = redis.client();
    d.assert_cmd(&["SET", "strict:a", "legacy"], b"+OK\r\n");
    d.assert_cmd(&["SET", "migrate:a", "legacy"], b"+OK\r\n");
    d.assert_cmd(&["SET", "reseal:a", "legacy", "EX", "1000"], b"+OK\r\n");
    let mut c = proxy.client();
    let err = c.cmd(&["GET", "strict:a"]);
    assert_line_prefix(&err, b"-ERR respseal: sealed value could not be opened (legacy_plaintext)");
    c.assert_cmd(&["GET", "migrate:a"], b"$6\r\nlegacy\r\n");
    assert_eq!(raw(&redis, "migrate:a"), b"legacy", "pass mode leaves the value as it is");
    c.assert_cmd(&["GET", "reseal:a"], b"$6\r\nlegacy\r\n");
    // The re-seal is a compare-and-set that keeps the TTL.
    // Sealed in place, with the re-sealed flag in its authenticated header.
    wait_until("reseal:a sealed in place", Duration::from_secs(5), || {
        raw(&redis, "reseal:a").starts_with(b"\x00RE\x81").then_some(())
    });
    let ttl = d.cmd(&["TTL", "reseal:a"]);
    assert!(ttl.starts_with(b":9") || ttl.starts_with(b":1000"), "TTL lost: {}", show(&ttl));
    c.assert_cmd(&["GET", "reseal:a"], b"$6\r\nlegacy\r\n");
    // Writes always seal, whatever the legacy policy.
    c.assert_cmd(&["SET", "migrate:b", "new"], b"+OK\r\n");
    assert!(raw(&redis, "migrate:b").starts_with(MAGIC_V1));
    // An error policy also fails a whole MGET.
    d.assert_cmd(&["COPY", "migrate:b", "strict:b"], b":1\r\n");
    assert_line_prefix(
        &c.cmd(&["MGET", "migrate:b", "strict:b"]),
        b"-ERR respseal: sealed value could not be opened (tag_mismatch)",
    );
}

#[test]
fn pipelined_commands_and_transactions_are_opened_in_order() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    for mode in [&[][..], &["--dedicated"][..]] {
        let proxy = sealing_proxy(&redis, &key, mode);
        let mut c = proxy.client();
        let mut batch = Vec::new();
        for i in 0..2000 {
            batch.extend(resp(&["SET", &format!("sess:p{i}"), &format!("v{i}")]));
            batch.extend(resp(&["GET", &format!("sess:p{i}")]));
            batch.extend(resp(&["GET", "plain:nothing"]));
        }
        c.send(&batch);
        for i in 0..2000 {
            assert_bytes(&c.read_frame(), b"+OK\r\n");
            assert_bytes(&c.read_frame(), &bulk(format!("v{i}").as_bytes()));
            assert_bytes(&c.read_frame(), b"$-1\r\n");
        }
        c.assert_cmd(&["SET", "plain", "p"], b"+OK\r\n");
        c.assert_cmd(&["MULTI"], b"+OK\r\n");
        c.assert_cmd(&["SET", "sess:t", "in-tx"], b"+QUEUED\r\n");
        c.assert_cmd(&["GET", "sess:t"], b"+QUEUED\r\n");
        c.assert_cmd(&["GET", "plain"], b"+QUEUED\r\n");
        c.assert_cmd(&["MGET", "sess:t", "plain", "sess:none"], b"+QUEUED\r\n");
        c.assert_cmd(&["GETDEL", "sess:t"], b"+QUEUED\r\n");
        c.assert_cmd(
            &["EXEC"],
            b"*5\r\n+OK\r\n$5\r\nin-tx\r\n$1\r\np\r\n*3\r\n$5\r\nin-tx\r\n$1\r\np\r\n$-1\r\n$5\r\nin-tx\r\n",
        );
        // A discarded transaction leaves nothing queued behind.
        c.assert_cmd(&["SET", "sess:d", "kept"], b"+OK\r\n");
        c.assert_cmd(&["MULTI"], b"+OK\r\n");
        c.assert_cmd(&["GET", "sess:d"], b"+QUEUED\r\n");
        c.assert_cmd(&["DISCARD"], b"+OK\r\n");
        c.assert_cmd(&["MULTI"], b"+OK\r\n");
        c.assert_cmd(&["GET", "plain"], b"+QUEUED\r\n");
        c.assert_cmd(&["GET", "sess:d"], b"+QUEUED\r\n");
        c.assert_cmd(&["EXEC"], b"*2\r\n$1\r\np\r\n$4\r\nkept\r\n");
    }
    assert!(raw(&redis, "sess:p1999").starts_with(MAGIC_V1));
    assert!(raw(&redis, "sess:d").starts_with(MAGIC_V1));
}

/// One write holding sealed and plain writes and reads of many sizes (up to
/// larger than the proxy reserves at a time for sealed requests), MSET with
/// sealed and plain keys, refused commands and inline commands: every reply
/// comes back in order and opened, and Redis holds only ciphertext.
#[test]
fn mixed_pipelines_keep_order_and_leave_only_ciphertext() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    for (m, mode) in [&[][..], &["--dedicated"][..]].into_iter().enumerate() {
        let proxy = sealing_proxy(&redis, &key, mode);
        let mut c = proxy.client();
        let value = |i: usize| {
            let size = match i {
                77 => 400_000,
                _ if i % 20 == 3 => 70_000,
                _ => [0, 10, 1000, 5000][i % 4],
            };
            let mut v = format!("{CANARY}:{m}:{i}:").into_bytes();
            v.resize(v.len() + size, b'a' + (i % 26) as u8);
            v
        };
        let mut batch = Vec::new();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for i in 0..200 {
            let (sk, pk) = (format!("sess:m{m}:{i}"), format!("plain:m{m}:{i}"));
            batch.extend(resp(&[&b"SET"[..], sk.as_bytes(), &value(i)]));
            expected.push(b"+OK\r\n".to_vec());
            batch.extend(resp(&["SET", &pk, "p"]));
            expected.push(b"+OK\r\n".to_vec());
            batch.extend(resp(&["GET", &sk]));
            expected.push(bulk(&value(i)));
            if i % 25 == 0 {
                batch.extend(resp(&[
                    &b"MSET"[..],
                    format!("sess:a{m}:{i}").as_bytes(),
                    &value(i + 1),
                    pk.as_bytes(),
                    b"q",
                    format!("sess:c{m}:{i}").as_bytes(),
                    CANARY.as_bytes(),
                ]));
                expected.push(b"+OK\r\n".to_vec());
                batch.extend(resp(&["MGET", &format!("sess:a{m}:{i}"), &pk, &format!("sess:c{m}:{i}")]));
                let mut mget = b"*3\r\n".to_vec();
                mget.extend(bulk(&value(i + 1)));
                mget.extend(bulk(b"q"));
                mget.extend(bulk(CANARY.as_bytes()));
                expected.push(mget);
            }
            if i % 50 == 7 {
                batch.extend(resp(&["APPEND", &sk, CANARY]));
                expected.push(b"-ERR respseal: APPEND".to_vec());
            }
            if i % 40 == 9 {
                batch.extend(format!("GET {sk}\r\n").into_bytes());
                expected.push(bulk(&value(i)));
                batch.extend(format!("SET sess:i{m}:{i} {CANARY}-inline\r\n").into_bytes());
                expected.push(b"+OK\r\n".to_vec());
            }
        }
        c.send(&batch);
        for (n, want) in expected.iter().enumerate() {
            let got = c.read_frame();
            if want.starts_with(b"-") {
                assert!(got.starts_with(want), "reply {n}: {}", show(&got));
            } else {
                assert!(got == *want, "reply {n}: {} (expected {} bytes)", show(&got[..got.len().min(80)]), want.len());
            }
        }
        c.assert_cmd(&["GET", &format!("sess:i{m}:9")], &bulk(format!("{CANARY}-inline").as_bytes()));
    }
    assert_sealed_in_redis(&redis);
}

#[test]
fn value_inspecting_commands_are_refused_on_sealed_keys_only() {
    let (_redis, proxy, _dir) = sealed_setup();
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:secret-name", "10"], b"+OK\r\n");
    c.assert_cmd(&["SET", "plain", "10"], b"+OK\r\n");
    let cases: &[&[&str]] = &[
        &["APPEND", "K", "x"],
        &["SETRANGE", "K", "0", "x"],
        &["GETRANGE", "K", "0", "1"],
        &["SUBSTR", "K", "0", "1"],
        &["STRLEN", "K"],
        &["INCR", "K"],
        &["INCRBY", "K", "2"],
        &["INCRBYFLOAT", "K", "1.5"],
        &["DECR", "K"],
        &["DECRBY", "K", "2"],
        &["SETBIT", "K", "1", "1"],
        &["GETBIT", "K", "1"],
        &["BITCOUNT", "K"],
        &["BITPOS", "K", "1"],
        &["BITFIELD", "K", "GET", "u4", "0"],
        &["BITFIELD_RO", "K", "GET", "u4", "0"],
        &["LCS", "K", "plain"],
        &["SORT", "K", "BY", "nosort"],
        &["SORT_RO", "K", "GET", "#"],
    ];
    for case in cases {
        let sealed: Vec<&str> = case.iter().map(|a| if *a == "K" { "sess:secret-name" } else { a }).collect();
        let r = c.cmd(&sealed);
        let text = String::from_utf8_lossy(&r).into_owned();
        assert!(text.starts_with("-ERR respseal: ") && text.contains("rule 'sess:*'"), "{sealed:?} → {text}");
        assert!(!text.contains("secret-name"), "the error names the key: {text}");
        let plain: Vec<&str> = case.iter().map(|a| if *a == "K" { "plain" } else { a }).collect();
        let r = c.cmd(&plain);
        assert!(
            !String::from_utf8_lossy(&r).contains("respseal"),
            "{plain:?} refused on an unsealed key: {}",
            show(&r)
        );
    }
    // SORT reads other keys' values through BY/GET and writes one with
    // STORE: any argument that can reach a sealed key is refused, a plain
    // SORT of a list is not.
    c.assert_cmd(&["RPUSH", "ids", "1", "2"], b":2\r\n");
    assert_line_prefix(&c.cmd(&["SORT", "ids", "BY", "sess:w_*", "GET", "#"]), b"-ERR respseal: SORT is not allowed");
    assert_line_prefix(&c.cmd(&["SORT_RO", "ids", "GET", "sess:*"]), b"-ERR respseal: SORT_RO is not allowed");
    assert_line_prefix(&c.cmd(&["SORT", "ids", "STORE", "sess:sorted"]), b"-ERR respseal: SORT is not allowed");
    c.assert_cmd(&["SORT", "ids", "GET", "#"], b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    // Collection members are never sealed: refused on a sealed name.
    assert_line_prefix(
        &c.cmd(&["RPUSH", "sess:list", "b", "a"]),
        b"-ERR respseal: RPUSH would keep plaintext list members under a sealed key",
    );
    // Unknown commands naming a sealed key fail closed; others pass.
    let r = c.cmd(&["MODULE.SET", "sess:x", "v"]);
    assert_line_prefix(&r, b"-ERR respseal: unknown command 'MODULE.SET' refused");
    assert_line_prefix(&c.cmd(&["MODULE.SET", "plain", "v"]), b"-ERR unknown command");
    // Nothing changed the sealed value.
    c.assert_cmd(&["GET", "sess:secret-name"], b"$2\r\n10\r\n");
}

#[test]
fn key_rotation_states() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, old_id) = keygen(dir.path(), "old.key");
    let (new, new_id) = keygen(dir.path(), "new.key");
    let rule = "[[rule]]\npattern = \"sess:*\"\n";
    let ring = |old_state: &str, new_state: &str| {
        format!(
            "{rule}[[key]]\nfile = \"{}\"\nstate = \"{old_state}\"\n[[key]]\nfile = \"{}\"\nstate = \"{new_state}\"\n",
            old.display(),
            new.display()
        )
    };
    {
        let p = sealing_proxy(&redis, &old, &[]);
        p.client().assert_cmd(&["SET", "sess:old", "sealed-under-old"], b"+OK\r\n");
    }
    assert_eq!(hex(&raw(&redis, "sess:old")[4..8]), old_id);
    // Step 2: new key primary, old decrypt-only.
    {
        let p = Proxy::start_with_config(redis.port, &ring("decrypt-only", "primary"), &[]);
        let mut c = p.client();
        c.assert_cmd(&["GET", "sess:old"], b"$16\r\nsealed-under-old\r\n");
        c.assert_cmd(&["SET", "sess:new", "sealed-under-new"], b"+OK\r\n");
    }
    assert_eq!(hex(&raw(&redis, "sess:new")[4..8]), new_id);
    // Step 3: old key disabled: its values no longer open; new ones do.
    for state in ["disabled", "destroyed"] {
        let cfg = if state == "destroyed" {
            format!(
                "{rule}[[key]]\nid = \"{old_id}\"\nstate = \"destroyed\"\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
                new.display()
            )
        } else {
            ring(state, "primary")
        };
        let p = Proxy::start_with_config(redis.port, &cfg, &[]);
        let mut c = p.client();
        c.assert_cmd(&["GET", "sess:old"], b"$-1\r\n");
        c.assert_cmd(&["GET", "sess:new"], b"$16\r\nsealed-under-new\r\n");
        let log = wait_until("key_not_open logged", Duration::from_secs(5), || {
            let l = p.log();
            l.contains("key_not_open").then_some(l)
        });
        assert!(log.contains(&old_id), "the key id is logged: {log}");
    }
}

#[test]
fn values_older_than_max_age_do_not_open() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let cfg = format!(
        "[[rule]]\npattern = \"sess:*\"\nmax_age_secs = 3\n[[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        key.display()
    );
    let proxy = Proxy::start_with_config(redis.port, &cfg, &[]);
    let mut c = proxy.client();
    // 3 s of age allowed: the read right after the write opens even on a
    // loaded machine, then the value ages out.
    c.assert_cmd(&["SET", "sess:a", "fresh"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:a"], b"$5\r\nfresh\r\n");
    wait_until("the value ages out", Duration::from_secs(15), || {
        (c.cmd(&["GET", "sess:a"]) == b"$-1\r\n").then_some(())
    });
}

#[test]
fn sealing_configuration_errors_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A rule without any key.
    let (status, _, err) = run_respseal(&["serve", "--seal", "sess:*"], &[], Duration::from_secs(10));
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("no primary key"), "{err}");
    // Key material is never accepted inline, and bad files are named.
    let bad = write_file(dir.path(), "bad.key", "id = \"00000000\"\nmaterial = \"zz\"\n");
    chmod(&bad, 0o600);
    let (status, _, err) = run_respseal(
        &["serve", "--seal", "sess:*", "--key-file", bad.to_str().expect("utf-8")],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("bad.key"), "{err}");
    let cfg = write_file(dir.path(), "c.toml", "[[key]]\nmaterial = \"00\"\nstate = \"primary\"\n");
    let (status, _, err) =
        run_respseal(&["serve", "--config", cfg.to_str().expect("utf-8")], &[], Duration::from_secs(10));
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("material"), "{err}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every command docs/sealing.md lists as refused on sealed keys (the list is
/// generated from the table, so the test walks the table): refused with
/// an error naming the command and the rule, never the key; and Redis never
/// sees it.
#[test]
fn every_refusal_in_the_readme_list_has_its_error() {
    use respseal::commands::table::{COMMANDS, Data, Keys};
    let (redis, proxy, _dir) = sealed_setup();
    let mut c = proxy.client();
    let mut monitor = redis.client();
    monitor.assert_cmd(&["MONITOR"], b"+OK\r\n");
    let mut checked = 0;
    for cmd in COMMANDS {
        // Moves respseal carries out (`Move(Some(_))`) are not refused.
        if !matches!(cmd.data, Data::Inspect | Data::Move(None) | Data::Script(_) | Data::Hash(_) | Data::Collection(_))
        {
            continue;
        }
        let mut args: Vec<String> = vec![cmd.name.to_string(), "1".into(), "1".into(), "1".into(), "1".into()];
        match cmd.keys {
            Keys::Range { first, .. } => args[first as usize] = "sess:secret-name".into(),
            Keys::NumKeys { at } => args[at as usize + 1] = "sess:secret-name".into(),
            Keys::Any | Keys::None => args[2] = "sess:secret-name".into(),
        }
        if matches!(cmd.name, "SCRIPT" | "FUNCTION") {
            // Only loading code is checked: a body that names a sealed key.
            args = vec![cmd.name.to_string(), "LOAD".into(), "return 'sess:secret-name'".into()];
        }
        let r = c.cmd(&args);
        let text = String::from_utf8_lossy(&r).into_owned();
        let want = match cmd.data {
            Data::Inspect => "is not allowed on sealed keys: Redis only holds ciphertext",
            Data::Move(_) => "is not supported on sealed keys: sealed values are bound to their key",
            Data::Script(_) => "cannot be used on sealed keys: scripts would see ciphertext",
            Data::Hash(_) => "is not supported on sealed keys unless the rule seals hash fields (`fields`)",
            _ => "members under a sealed key (allow_plaintext",
        };
        assert!(
            text.starts_with(&format!("-ERR respseal: {} ", cmd.name)) && text.contains(want),
            "{args:?} -> {text}"
        );
        assert!(text.trim_end().ends_with("(rule 'sess:*')") || text.contains("(allow_plaintext"), "{text}");
        assert!(!text.contains("secret-name"), "the error names the key: {text}");
        checked += 1;
    }
    assert!(checked > 100, "only {checked} refused rows");
    // Unknown commands (modules) naming a sealed key.
    assert_line_prefix(
        &c.cmd(&["JSON.SET", "sess:secret-name", "$", "1"]),
        b"-ERR respseal: unknown command 'JSON.SET' refused: an argument matches sealed key rule 'sess:*'",
    );
    // None of them reached Redis.
    c.assert_cmd(&["ECHO", "end-of-refusals"], b"$15\r\nend-of-refusals\r\n");
    let mut seen = Vec::new();
    while !common::contains(&seen, b"end-of-refusals") {
        seen.extend(monitor.read_frame());
    }
    assert!(!common::contains(&seen, b"secret-name"), "a refused command reached Redis: {}", show(&seen));
}

/// Values that do not open — tampered, copied from another key, legacy
/// plaintext — read through every command that returns a value, and
/// inside an EXEC result: each is a null (the default policy), never the
/// bytes Redis holds, and a write in the same command still seals.
#[test]
fn open_failures_through_every_reading_command_and_exec() {
    let (redis, proxy, _dir) = sealed_setup();
    let mut c = proxy.client();
    let mut d = redis.client();
    c.assert_cmd(&["SET", "sess:good", "good-value"], b"+OK\r\n");
    let sealed = raw(&redis, "sess:good");
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let set_raw = |d: &mut Client, key: &str, value: &[u8]| {
        assert_bytes(&d.cmd(&[&b"SET"[..], key.as_bytes(), value]), b"+OK\r\n");
    };
    let bad: [(&str, Vec<u8>); 3] =
        [("tampered", tampered), ("copied", sealed.clone()), ("legacy", b"{\"user\":\"plaintext\"}".to_vec())];
    let readers: &[&[&str]] = &[
        &["GETDEL", "K"],
        &["GETEX", "K", "PERSIST"],
        &["GETSET", "K", "new-value"],
        &["SET", "K", "new-value", "GET"],
        &["GET", "K"],
    ];
    for (kind, value) in &bad {
        for reader in readers {
            let key = format!("sess:{kind}");
            set_raw(&mut d, &key, value);
            let args: Vec<&str> = reader.iter().map(|a| if *a == "K" { key.as_str() } else { a }).collect();
            c.assert_cmd(&args, b"$-1\r\n");
            if args.contains(&"new-value") {
                // The write in the same command sealed the new value.
                let now = raw(&redis, &key);
                assert!(now.starts_with(MAGIC_V1), "{kind} {args:?} left {}", show(&now));
                c.assert_cmd(&["GET", &key], b"$9\r\nnew-value\r\n");
            }
        }
        // Inside a transaction, element by element.
        let key = format!("sess:{kind}");
        set_raw(&mut d, &key, value);
        c.assert_cmd(&["MULTI"], b"+OK\r\n");
        c.assert_cmd(&["GET", &key], b"+QUEUED\r\n");
        c.assert_cmd(&["GET", "sess:good"], b"+QUEUED\r\n");
        c.assert_cmd(&["GETDEL", &key], b"+QUEUED\r\n");
        c.assert_cmd(&["EXEC"], b"*3\r\n$-1\r\n$10\r\ngood-value\r\n$-1\r\n");
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A key file that group or others can read or write is refused with a
/// clear error, as ssh refuses such private keys; `--allow-insecure-key-file`
/// loads it and says so in the log.
#[test]
fn key_files_readable_by_others_are_refused_unless_allowed() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let path = key.to_str().expect("utf-8 path");
    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        chmod(&key, mode);
        let (status, _, err) =
            run_respseal(&["check", "--seal", "sess:*", "--key-file", path], &[], Duration::from_secs(10));
        assert_eq!(status.code(), Some(64), "mode {mode:o}: {err}");
        assert!(err.contains("lets group or others read or write it") && err.contains("k.key"), "{err}");
        assert!(err.contains("--allow-insecure-key-file"), "{err}");
    }
    chmod(&key, 0o644);
    let proxy = Proxy::start(redis.port, &["--seal", "sess:*", "--key-file", path, "--allow-insecure-key-file"]);
    proxy.client().assert_cmd(&["SET", "sess:a", "v"], b"+OK\r\n");
    let log = wait_until("the warning in the log", Duration::from_secs(10), || {
        let log = proxy.log();
        log.contains("insecure key file allowed").then_some(log)
    });
    assert!(log.contains("k.key") && log.contains("mode 0644"), "{log}");
    // 0600 and 0400 are fine without the flag.
    for mode in [0o600, 0o400] {
        chmod(&key, mode);
        let p = Proxy::start(redis.port, &["--seal", "sess:*", "--key-file", path]);
        p.client().assert_cmd(&["GET", "sess:a"], b"$1\r\nv\r\n");
    }
}

/// Values re-sealed from legacy plaintext during a migration can be found
/// and dropped afterwards with `respseal inspect`, which never prints a
/// value.
#[test]
fn inspect_lists_and_drops_values_resealed_from_legacy_plaintext() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = write_file(
        dir.path(),
        "c.toml",
        &format!(
            "backend = \"{}\"\n[[rule]]\npattern = \"reseal:*\"\nlegacy = \"reseal\"\nlegacy_until = \"2999-01-01\"\n\
             [[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
            redis.url(),
            key.display()
        ),
    );
    let proxy = Proxy::start_with_config(redis.port, &std::fs::read_to_string(&config).expect("config"), &[]);
    let mut d = redis.client();
    d.assert_cmd(&["SET", "reseal:forged", "legacy-value-written-directly"], b"+OK\r\n");
    let mut c = proxy.client();
    c.assert_cmd(&["GET", "reseal:forged"], b"$29\r\nlegacy-value-written-directly\r\n");
    c.assert_cmd(&["SET", "reseal:fresh", "written-through-respseal"], b"+OK\r\n");
    wait_until("reseal:forged re-sealed", Duration::from_secs(5), || {
        raw(&redis, "reseal:forged").starts_with(b"\x00RE\x81").then_some(())
    });
    d.assert_cmd(&["SET", "reseal:legacy", "still-plain"], b"+OK\r\n");
    let cfg = config.to_str().expect("utf-8");
    let (status, out, err) = run_respseal(&["inspect", "--config", cfg], &[], Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(out.contains("reseal:forged  sealed v1 key=") && out.contains("resealed from legacy plaintext"), "{out}");
    assert!(out.contains("reseal:fresh  sealed v1"), "{out}");
    assert!(out.contains("reseal:legacy  plaintext (no envelope)"), "{out}");
    assert!(out.contains("3 keys: 2 sealed (1 re-sealed from legacy plaintext), 1 without an envelope"), "{out}");
    for secret in ["legacy-value-written-directly", "written-through-respseal", "still-plain"] {
        assert!(!out.contains(secret) && !err.contains(secret), "inspect printed a value: {out}");
    }
    let (status, out, _) = run_respseal(&["inspect", "--config", cfg, "--resealed"], &[], Duration::from_secs(20));
    assert!(status.success());
    assert!(out.contains("reseal:forged") && !out.contains("reseal:fresh"), "{out}");
    let (status, out, err) =
        run_respseal(&["inspect", "--config", cfg, "--drop-resealed", "reseal:*"], &[], Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(out.contains("1 re-sealed values dropped"), "{out}");
    d.assert_cmd(&["EXISTS", "reseal:forged", "reseal:fresh", "reseal:legacy"], b":2\r\n");
    c.assert_cmd(&["GET", "reseal:fresh"], b"$24\r\nwritten-through-respseal\r\n");
}

/// A value re-sealed from legacy plaintext keeps its flag when respseal
/// moves it (RENAME, COPY): `inspect --resealed` still finds it under its
/// new names, and a plain value moved stays unflagged.
#[test]
fn moves_keep_the_resealed_flag() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = rules_with_new_key(
        dir.path(),
        "[[rule]]\npattern = \"reseal:*\"\nlegacy = \"reseal\"\nlegacy_until = \"2999-01-01\"\n",
    );
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let mut d = redis.client();
    d.assert_cmd(&["SET", "reseal:old", "legacy"], b"+OK\r\n");
    let mut c = proxy.client();
    c.assert_cmd(&["GET", "reseal:old"], b"$6\r\nlegacy\r\n");
    wait_until("reseal:old re-sealed", Duration::from_secs(5), || {
        raw(&redis, "reseal:old").starts_with(b"\x00RE\x81").then_some(())
    });
    c.assert_cmd(&["SET", "reseal:new", "fresh"], b"+OK\r\n");
    c.assert_cmd(&["RENAME", "reseal:old", "reseal:renamed"], b"+OK\r\n");
    c.assert_cmd(&["COPY", "reseal:renamed", "reseal:copied"], b":1\r\n");
    c.assert_cmd(&["COPY", "reseal:new", "reseal:new-copy"], b":1\r\n");
    assert!(raw(&redis, "reseal:renamed").starts_with(b"\x00RE\x81"));
    assert!(raw(&redis, "reseal:copied").starts_with(b"\x00RE\x81"));
    assert!(raw(&redis, "reseal:new-copy").starts_with(b"\x00RE\x01"));
    c.assert_cmd(&["GET", "reseal:copied"], b"$6\r\nlegacy\r\n");
    // A database Redis refuses: Redis's error, and nothing written.
    c.assert_cmd(&["COPY", "reseal:new", "reseal:copied", "DB", "16", "REPLACE"], b"-ERR DB index is out of range\r\n");
    assert!(raw(&redis, "reseal:copied").starts_with(b"\x00RE\x81"));
}
