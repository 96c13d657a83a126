//! Transactions keep respseal and Redis in step: random sequences of
//! MULTI, SELECT, GET, SET, RENAME, COPY, EXEC and DISCARD (on plain and
//! sealed names) sent through respseal give the replies the same sequence
//! gives on a Redis of its own, directly.
//!
//! A SELECT inside MULTI takes effect when EXEC runs it, as in Redis (and
//! the moves respseal carries out afterwards act on that database). Moves
//! of sealed names inside MULTI are refused by respseal at queue time (it
//! carries them out itself), so EXEC answers EXECABORT; the direct side of
//! the comparison sends a move that Redis also refuses at queue time (wrong
//! arity) in their place. Error texts are compared by their first word
//! (`ERR`, `EXECABORT`), everything else byte for byte.

mod common;

use common::*;

/// Error lines cut to their first word, inside arrays too.
fn normalise(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < reply.len() {
        let end = reply[i..].windows(2).position(|w| w == b"\r\n").map_or(reply.len(), |p| i + p + 2);
        let line = &reply[i..end];
        if line.first() == Some(&b'-') {
            let word = line.iter().position(|&b| b == b' ' || b == b'\r').unwrap_or(line.len());
            out.extend_from_slice(&line[..word]);
            out.extend_from_slice(b"\r\n");
        } else if line.first() == Some(&b'$') && line.len() > 3 && line[1] != b'-' {
            // A bulk: header and payload as they are.
            let n: usize = std::str::from_utf8(&line[1..line.len() - 2]).expect("len").parse().expect("len");
            out.extend_from_slice(&reply[i..end + n + 2]);
            i = end + n + 2;
            continue;
        } else {
            out.extend_from_slice(line);
        }
        i = end;
    }
    out
}

fn step(rng: &mut Rng, in_multi: bool) -> (Vec<String>, Vec<String>) {
    let key = |rng: &mut Rng| ["a", "b", "sess:x", "sess:y"][rng.below(4)].to_string();
    let pair = |rng: &mut Rng| {
        let names = if rng.below(2) == 0 { ["a", "b"] } else { ["sess:x", "sess:y"] };
        (names[rng.below(2)].to_string(), names[rng.below(2)].to_string())
    };
    let v = |rng: &mut Rng| format!("v{}", rng.below(100));
    let words: Vec<String> = match rng.below(14) {
        0 | 1 => vec!["MULTI".into()],
        2 => vec!["EXEC".into()],
        3 => vec!["DISCARD".into()],
        4 => vec!["SELECT".into(), ["0", "1", "16"][rng.below(3)].into()],
        5 | 6 => vec!["GET".into(), key(rng)],
        7 | 8 => vec!["SET".into(), key(rng), v(rng)],
        // Moves stay within sealed or within plain names (respseal refuses
        // a move across, by policy).
        9 => {
            let (src, dst) = pair(rng);
            vec!["RENAME".into(), src, dst]
        }
        10 => {
            let (src, dst) = pair(rng);
            let mut c = vec!["COPY".into(), src, dst];
            if rng.below(2) == 0 {
                c.extend(["DB".into(), ["1", "16"][rng.below(2)].into()]);
            }
            if rng.below(2) == 0 {
                c.push("REPLACE".into());
            }
            c
        }
        11 => vec!["DEL".into(), key(rng)],
        12 => vec!["EXISTS".into(), key(rng), key(rng)],
        _ => vec!["DBSIZE".into()],
    };
    // What Redis is sent instead: a SELECT it refuses at queue time too.
    // Moves of sealed names are carried out by respseal, which refuses them
    // inside MULTI: Redis is sent a move it refuses at queue time.
    let sealed_move = matches!(words[0].as_str(), "RENAME" | "COPY") && words.iter().any(|w| w.starts_with("sess:"));
    let direct = match words[0].as_str() {
        _ if in_multi && sealed_move => vec![words[0].clone()],
        _ => words.clone(),
    };
    (words, direct)
}

#[test]
fn random_transactions_match_redis() {
    let through_redis = RedisServer::start();
    let direct_redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = rules_with_new_key(dir.path(), "[[rule]]\npattern = \"sess:*\"\n");
    let proxy = Proxy::start_with_config(through_redis.port, &config, &[]);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64;
    for (round, seed) in [0x7a5c_0001_u64, seed].into_iter().enumerate() {
        let mut rng = Rng(seed | 1);
        for session in 0..15 {
            for r in [&through_redis, &direct_redis] {
                r.client().assert_cmd(&["FLUSHALL"], b"+OK\r\n");
            }
            let mut p = proxy.client();
            let mut d = direct_redis.client();
            let mut in_multi = false;
            let mut log = Vec::new();
            for _ in 0..40 {
                let (words, direct) = step(&mut rng, in_multi);
                match words[0].as_str() {
                    "MULTI" => in_multi = true,
                    "EXEC" | "DISCARD" => in_multi = false,
                    _ => {}
                }
                let got = normalise(&p.cmd(&words));
                let want = normalise(&d.cmd(&direct));
                log.push(format!("{} -> {}", words.join(" "), show(&want)));
                assert!(
                    got == want,
                    "seed {seed:#x} (round {round}) session {session}: respseal answered {} where Redis answered {}\n{}",
                    show(&got),
                    show(&want),
                    log.join("\n")
                );
            }
            // The data agrees too, in both databases (sealed values are
            // compared by what respseal opens).
            for db in ["0", "1"] {
                let _ = p.cmd(&["DISCARD"]);
                let _ = d.cmd(&["DISCARD"]);
                p.assert_cmd(&["SELECT", db], b"+OK\r\n");
                d.assert_cmd(&["SELECT", db], b"+OK\r\n");
                for k in ["a", "b", "sess:x", "sess:y"] {
                    assert_bytes(&p.cmd(&["GET", k]), &d.cmd(&["GET", k]));
                }
            }
        }
    }
}

/// The cases that went wrong before: `MULTI; SELECT 3; GET sess:x; EXEC`
/// answers both replies, and a RENAME of sealed names afterwards acts on
/// database 3; HELLO inside MULTI is refused at queue time.
#[test]
fn select_inside_multi_takes_effect_at_exec() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = rules_with_new_key(dir.path(), "[[rule]]\npattern = \"sess:*\"\n");
    let proxy = Proxy::start_with_config(redis.port, &config, &[]);
    let mut c = proxy.client();
    c.assert_cmd(&["SELECT", "3"], b"+OK\r\n");
    c.assert_cmd(&["SET", "sess:x", "in-db3"], b"+OK\r\n");
    c.assert_cmd(&["SELECT", "0"], b"+OK\r\n");
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SELECT", "3"], b"+QUEUED\r\n");
    c.assert_cmd(&["GET", "sess:x"], b"+QUEUED\r\n");
    c.assert_cmd(&["EXEC"], b"*2\r\n+OK\r\n$6\r\nin-db3\r\n");
    c.assert_cmd(&["RENAME", "sess:x", "sess:y"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:y"], b"$6\r\nin-db3\r\n");
    let mut d = redis.client();
    d.assert_cmd(&["SELECT", "3"], b"+OK\r\n");
    d.assert_cmd(&["EXISTS", "sess:x", "sess:y"], b":1\r\n");
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    assert_line_prefix(&c.cmd(&["HELLO", "3"]), b"-ERR respseal: HELLO cannot be queued inside MULTI");
    assert_line_prefix(&c.cmd(&["EXEC"]), b"-EXECABORT");
    c.assert_cmd(&["GET", "sess:y"], b"$6\r\nin-db3\r\n");
}
