//! Random sequences of string, hash, rename, copy and MULTI commands on
//! sealed keys give the same logical results through respseal as against
//! Redis directly, and a plaintext canary never appears in the Redis
//! behind respseal.
//!
//! Two redis-servers: one behind respseal (strings under `s:*` sealed, hash
//! fields `f*` under `h:*` sealed, `p:*` plain), one used directly. Each
//! seed drives the same sequence into both; replies are compared after
//! normalising what legitimately differs (the order of a hash's fields,
//! which depends on its encoding and so on value sizes; the exact TTL).

mod common;

use common::*;

const CANARY: &str = "CANARY-prop-5f1d";
const SEEDS: [u64; 4] = [1, 7, 42, 20261202];
const STEPS: usize = 250;

const STRINGS: [&str; 3] = ["s:1", "s:2", "s:3"];
const HASHES: [&str; 3] = ["h:1", "h:2", "h:3"];
const PLAIN: [&str; 2] = ["p:1", "p:2"];
const FIELDS: [&str; 4] = ["f1", "f2", "g1", "g2"];

/// A value; the canary only where it will be sealed.
fn value(r: &mut Rng, sealed: bool) -> String {
    match r.below(4) {
        0 if sealed => format!("{CANARY}-{}", r.below(1000)),
        0 => format!("plain-{}", r.below(1000)),
        1 => String::new(),
        2 => r.below(100_000).to_string(),
        _ => "x".repeat(r.below(200)),
    }
}

/// One random command (as words).
fn command(r: &mut Rng) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    match r.below(16) {
        0 | 1 => {
            let mut c = s(&["SET", r.pick(&STRINGS)]);
            c.push(value(r, true));
            if r.below(3) == 0 {
                c.extend(s(&["EX", "1000"]));
            }
            c
        }
        2 => s(&["GET", r.pick(&STRINGS)]),
        3 => s(&["MGET", r.pick(&STRINGS), r.pick(&PLAIN), r.pick(&STRINGS)]),
        4 => {
            let mut c = s(&["HSET", r.pick(&HASHES)]);
            for _ in 0..2 {
                let f = r.pick(&FIELDS);
                c.push(f.to_string());
                c.push(value(r, f.starts_with('f')));
            }
            c
        }
        5 => s(&["HGET", r.pick(&HASHES), r.pick(&FIELDS)]),
        6 => s(&["HMGET", r.pick(&HASHES), r.pick(&FIELDS), r.pick(&FIELDS)]),
        7 => s(&["HGETALL", r.pick(&HASHES)]),
        8 => s(&["HDEL", r.pick(&HASHES), r.pick(&FIELDS)]),
        9 => {
            let pool: &[&str] = if r.below(2) == 0 { &STRINGS } else { &HASHES };
            s(&[r.pick(&["RENAME", "RENAMENX"]), r.pick(pool), r.pick(pool)])
        }
        10 => {
            let pool: &[&str] = if r.below(2) == 0 { &STRINGS } else { &HASHES };
            let mut c = s(&["COPY", r.pick(pool), r.pick(pool)]);
            if r.below(2) == 0 {
                c.push("REPLACE".into());
            }
            c
        }
        // Plain values moved onto sealed names get sealed.
        11 => {
            let mut c = s(&["SET", r.pick(&PLAIN)]);
            c.push(value(r, false));
            c
        }
        12 => s(&["RENAME", r.pick(&PLAIN), r.pick(&STRINGS)]),
        13 => s(&["DEL", r.pick(&STRINGS), r.pick(&HASHES)]),
        14 => s(&["EXISTS", r.pick(&STRINGS), r.pick(&HASHES), r.pick(&PLAIN)]),
        _ => s(&["TTL", r.pick(&STRINGS)]),
    }
}

/// The parts of a reply that must agree.
fn normalise(cmd: &[String], reply: Vec<u8>) -> Vec<u8> {
    match cmd[0].as_str() {
        // Field order depends on the hash's encoding (sealed values are longer).
        "HGETALL" if reply.starts_with(b"*") => {
            let mut pairs: Vec<Vec<u8>> = split(&reply).chunks(2).map(|p| p.concat()).collect();
            pairs.sort();
            pairs.concat()
        }
        "TTL" => match reply.as_slice() {
            b":-1\r\n" | b":-2\r\n" => reply,
            _ => b":positive\r\n".to_vec(),
        },
        _ => reply,
    }
}

/// The elements of a flat array of bulk strings / nulls.
fn split(reply: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = reply.iter().position(|&b| b == b'\n').expect("header") + 1;
    while pos < reply.len() {
        let nl = pos + reply[pos..].iter().position(|&b| b == b'\n').expect("line");
        if reply[pos..].starts_with(b"$-1") {
            out.push(b"$-1".to_vec());
            pos = nl + 1;
            continue;
        }
        let len: usize = std::str::from_utf8(&reply[pos + 1..nl - 1]).expect("ascii").parse().expect("len");
        out.push(reply[pos..nl + 1 + len + 2].to_vec());
        pos = nl + 1 + len + 2;
    }
    out
}

fn run(c: &mut Client, cmd: &[String]) -> Vec<u8> {
    normalise(cmd, c.cmd(cmd))
}

#[test]
fn random_sequences_agree_with_redis_and_leave_no_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let config = format!(
        "[[rule]]\npattern = \"s:*\"\n[[rule]]\npattern = \"h:*\"\nfields = \"f*\"\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n",
        key.display()
    );
    agree_with_redis(&config, false);
}

/// The same with every name pseudonymised (`p:*` names only, values
/// plain): the replies agree, listings give the same names, and no name a
/// client used is a name in the Redis behind respseal.
#[test]
fn random_sequences_on_pseudonymised_names_agree_with_redis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "k.key");
    let (names, _) = keygen(dir.path(), "names.key");
    let config = format!(
        "[[rule]]\npattern = \"s:*\"\nnames = \"pseudonymise\"\n\
         [[rule]]\npattern = \"h:*\"\nfields = \"f*\"\nnames = \"pseudonymise\"\n\
         [[rule]]\npattern = \"p:*\"\nseal = false\nnames = \"pseudonymise\"\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n[names]\nkey_file = \"{}\"\n",
        key.display(),
        names.display()
    );
    agree_with_redis(&config, true);
}

/// Sorted listings through `p` and on `d` agree.
fn assert_listings_agree(p: &mut Client, d: &mut Client, context: &str) {
    for pattern in ["*", "s:*", "?:1", "*2", "h:[12]"] {
        let (mut pk, mut dk) = (split(&p.cmd(&["KEYS", pattern])), split(&d.cmd(&["KEYS", pattern])));
        pk.sort();
        dk.sort();
        assert_eq!(pk, dk, "{context}: KEYS {pattern}");
    }
}

fn agree_with_redis(config: &str, names: bool) {
    let sealed_redis = RedisServer::start();
    let direct_redis = RedisServer::start();
    let config = config.to_string();
    for mode in [&[][..], &["--dedicated"][..]] {
        let proxy = Proxy::start_with_config(sealed_redis.port, &config, mode);
        for seed in SEEDS {
            let mut p = proxy.client();
            let mut d = direct_redis.client();
            p.assert_cmd(&["FLUSHALL"], b"+OK\r\n");
            d.assert_cmd(&["FLUSHALL"], b"+OK\r\n");
            let mut r = Rng(seed);
            let mut history = Vec::new();
            for step in 0..STEPS {
                if r.below(12) == 0 {
                    // A transaction of a few (non-move) commands.
                    let n = 1 + r.below(4);
                    let mut cmds = Vec::new();
                    while cmds.len() < n {
                        let c = command(&mut r);
                        if !matches!(c[0].as_str(), "RENAME" | "RENAMENX" | "COPY") {
                            cmds.push(c);
                        }
                    }
                    for c in [&vec!["MULTI".to_string()]].into_iter().chain(cmds.iter()) {
                        assert_eq!(p.cmd(c), d.cmd(c), "seed {seed} step {step} {c:?}");
                    }
                    let (pe, de) = (p.cmd(&["EXEC"]), d.cmd(&["EXEC"]));
                    // Each element normalised like its command's own reply.
                    let (pe, de) = (exec_elements(&pe, &cmds), exec_elements(&de, &cmds));
                    assert_eq!(pe, de, "seed {seed} step {step} EXEC of {cmds:?}; history {history:?}");
                    history.push(format!("MULTI {cmds:?}"));
                    continue;
                }
                let c = command(&mut r);
                let (pr, dr) = (run(&mut p, &c), run(&mut d, &c));
                assert_eq!(
                    show(&pr),
                    show(&dr),
                    "seed {seed} step {step}: {c:?} differs; last commands {:?}",
                    &history[history.len().saturating_sub(8)..]
                );
                history.push(format!("{c:?}"));
                if names && step % 50 == 0 {
                    assert_listings_agree(&mut p, &mut d, &format!("seed {seed} step {step}"));
                }
            }
            assert_no_plaintext(&sealed_redis);
            if names {
                assert_listings_agree(&mut p, &mut d, &format!("seed {seed}"));
                let stored = split(&sealed_redis.client().cmd(&["KEYS", "*"]));
                for name in STRINGS.iter().chain(&HASHES).chain(&PLAIN) {
                    assert!(!stored.contains(&bulk(name.as_bytes())), "{name} is a name in Redis");
                }
            }
        }
    }
}

/// EXEC's array, its elements normalised by their commands.
fn exec_elements(reply: &[u8], cmds: &[Vec<String>]) -> Vec<Vec<u8>> {
    if !reply.starts_with(b"*") || reply.starts_with(b"*-1") {
        return vec![reply.to_vec()];
    }
    let mut out = Vec::new();
    let mut pos = reply.iter().position(|&b| b == b'\n').expect("header") + 1;
    for c in cmds {
        let len = respseal::protocol::reply::frame_len(&reply[pos..], respseal::protocol::Proto::Resp2)
            .expect("valid")
            .expect("complete");
        out.push(normalise(c, reply[pos..pos + len].to_vec()));
        pos += len;
    }
    out
}

/// Straight from the Redis behind respseal: no canary anywhere (values,
/// fields, DUMP payloads); every value under a sealed name is an envelope.
fn assert_no_plaintext(redis: &RedisServer) {
    let mut c = redis.client();
    let keys = c.cmd(&["KEYS", "*"]);
    for k in split(&keys) {
        let name = String::from_utf8_lossy(&k[k.iter().position(|&b| b == b'\n').expect("bulk") + 1..k.len() - 2])
            .into_owned();
        let dump = c.cmd(&["DUMP", &name]);
        assert!(!contains(&dump, CANARY.as_bytes()), "canary in DUMP of {name}");
        if name.starts_with("s:") {
            let v = c.cmd(&["GET", &name]);
            assert!(contains(&v, b"\x00RE\x01"), "{name} not sealed: {}", show(&v));
        }
        if name.starts_with("h:") {
            for f in ["f1", "f2"] {
                let v = c.cmd(&["HGET", &name, f]);
                assert!(v.starts_with(b"$-1") || contains(&v, b"\x00RE\x01"), "{name}.{f} not sealed: {}", show(&v));
            }
        }
    }
}
