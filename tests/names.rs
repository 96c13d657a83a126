//! Pseudonymised key names: under `names = "pseudonymise"` Redis never holds
//! a client's key name in a pseudonymised namespace, and clients see their
//! own names everywhere a name comes back (KEYS, SCAN, RANDOMKEY, the pops).

mod common;

use common::*;

/// The key names in the Redis behind respseal, straight from it.
fn stored_names(redis: &RedisServer) -> Vec<String> {
    let reply = redis.client().cmd(&["KEYS", "*"]);
    let mut names = array_strings(&reply);
    names.sort();
    names
}

/// A flat array of bulk strings, as text.
fn array_strings(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with('*'), "{text}");
    let mut out = Vec::new();
    let mut i = 1;
    while i + 1 < lines.len() {
        if lines[i].starts_with('$') && lines[i] != "$-1" {
            out.push(lines[i + 1].to_string());
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every name a SCAN loop through `c` returns for `pattern`.
fn scan_all(c: &mut Client, pattern: Option<&str>) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let mut cmd = vec!["SCAN".to_string(), cursor.clone(), "COUNT".into(), "3".into()];
        if let Some(p) = pattern {
            cmd.extend(["MATCH".to_string(), p.to_string()]);
        }
        let reply = c.cmd(&cmd);
        let text = String::from_utf8_lossy(&reply).into_owned();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "*2", "{text}");
        cursor = lines[2].to_string();
        let page = text.splitn(4, "\r\n").nth(3).unwrap_or_default();
        seen.extend(array_strings(page.as_bytes()));
        if cursor == "0" {
            return sorted(seen);
        }
    }
    panic!("SCAN does not end");
}

fn config(dir: &std::path::Path) -> String {
    let (key, _) = keygen(dir, "k.key");
    let (names, _) = keygen(dir, "names.key");
    format!(
        "[[rule]]\npattern = \"PHPREDIS_SESSION:*_LOCK\"\nseal = false\nnames = \"pseudonymise\"\n\
         [[rule]]\npattern = \"PHPREDIS_SESSION:*\"\nnames = \"pseudonymise\"\n\
         [[rule]]\npattern = \"sess:*\"\nnames = \"pseudonymise\"\n\
         [[rule]]\npattern = \"queue:*\"\nseal = false\nnames = \"pseudonymise\"\n\
         [[key]]\nfile = \"{}\"\nstate = \"primary\"\n\
         [names]\nkey_file = \"{}\"\n",
        key.display(),
        names.display()
    )
}

const IDS: [&str; 3] = ["k9Qz2LmP0aXv7RtY", "0bd3c1e5-6f7a-4b8c", "short"];

#[test]
fn redis_holds_no_session_id_and_clients_see_their_names() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start_with_config(redis.port, &config(dir.path()), &[]);
    let mut c = proxy.client();
    for id in IDS {
        c.assert_cmd(&["SET", &format!("sess:{id}"), "v", "EX", "100"], b"+OK\r\n");
        c.assert_cmd(&["SET", &format!("PHPREDIS_SESSION:{id}"), "php"], b"+OK\r\n");
        c.assert_cmd(&["SET", &format!("PHPREDIS_SESSION:{id}_LOCK"), "1", "NX"], b"+OK\r\n");
    }
    c.assert_cmd(&["SET", "plain:a", "p"], b"+OK\r\n");
    let stored = stored_names(&redis);
    assert_eq!(stored.len(), 10, "{stored:?}");
    for name in &stored {
        for id in IDS {
            assert!(!name.contains(id), "Redis holds the id {id} in {name}");
        }
        assert!(name == "plain:a" || name.starts_with("sess:") || name.starts_with("PHPREDIS_SESSION:"), "{name}");
    }
    // The lock stays plaintext (seal = false) under a pseudonymised name.
    let mut d = redis.client();
    let locks: Vec<&String> = stored
        .iter()
        .filter(|n| n.starts_with("PHPREDIS_SESSION:") && d.cmd(&["GET", n.as_str()]) == b"$1\r\n1\r\n")
        .collect();
    assert_eq!(locks.len(), 3, "{stored:?}");

    // Reads by name, through respseal.
    for id in IDS {
        c.assert_cmd(&["GET", &format!("sess:{id}")], b"$1\r\nv\r\n");
        c.assert_cmd(&["EXISTS", &format!("sess:{id}"), &format!("PHPREDIS_SESSION:{id}_LOCK")], b":2\r\n");
        assert_line_prefix(&c.cmd(&["TTL", &format!("sess:{id}")]), b":");
        c.assert_cmd(&["TYPE", &format!("PHPREDIS_SESSION:{id}")], b"+string\r\n");
    }
    let all: Vec<String> = sorted(
        IDS.iter()
            .flat_map(|id| {
                [format!("sess:{id}"), format!("PHPREDIS_SESSION:{id}"), format!("PHPREDIS_SESSION:{id}_LOCK")]
            })
            .chain(["plain:a".to_string()])
            .collect(),
    );
    // Listings give the client's names back, with any pattern.
    assert_eq!(sorted(array_strings(&c.cmd(&["KEYS", "*"]))), all);
    assert_eq!(scan_all(&mut c, None), all);
    let want = |f: &dyn Fn(&str) -> bool| all.iter().filter(|n| f(n)).cloned().collect::<Vec<_>>();
    for (pattern, f) in [
        ("sess:*", &(|n: &str| n.starts_with("sess:")) as &dyn Fn(&str) -> bool),
        ("sess:k9*", &|n: &str| n.starts_with("sess:k9")),
        ("*_LOCK", &|n: &str| n.ends_with("_LOCK")),
        ("PHPREDIS_SESSION:short", &|n: &str| n == "PHPREDIS_SESSION:short"),
        ("*short*", &|n: &str| n.contains("short")),
        ("plain:*", &|n: &str| n.starts_with("plain:")),
        ("sess:nothing*", &|_: &str| false),
    ] {
        assert_eq!(sorted(array_strings(&c.cmd(&["KEYS", pattern]))), want(f), "KEYS {pattern}");
        assert_eq!(scan_all(&mut c, Some(pattern)), want(f), "SCAN MATCH {pattern}");
    }
    let random = c.cmd(&["RANDOMKEY"]);
    assert!(all.contains(&bulk_text(&random)), "{}", show(&random));

    // Moves of sealed names are carried out under the stored names.
    c.assert_cmd(&["RENAME", "sess:short", "sess:renamed"], b"+OK\r\n");
    c.assert_cmd(&["GET", "sess:renamed"], b"$1\r\nv\r\n");
    c.assert_cmd(&["GET", "sess:short"], b"$-1\r\n");
    c.assert_cmd(&["COPY", "PHPREDIS_SESSION:short_LOCK", "queue:copied"], b":1\r\n");
    assert!(!stored_names(&redis).iter().any(|n| n.contains("renamed") || n.contains("copied")));
    c.assert_cmd(&["GET", "queue:copied"], b"$1\r\n1\r\n");
    // Several keys in one command, and a transaction.
    c.assert_cmd(&["MSET", "sess:m1", "a", "sess:m2", "b"], b"+OK\r\n");
    c.assert_cmd(&["MGET", "sess:m1", "plain:a", "sess:m2"], b"*3\r\n$1\r\na\r\n$1\r\np\r\n$1\r\nb\r\n");
    c.assert_cmd(&["MULTI"], b"+OK\r\n");
    c.assert_cmd(&["SET", "sess:tx", "t"], b"+QUEUED\r\n");
    c.assert_cmd(&["KEYS", "sess:t*"], b"+QUEUED\r\n");
    c.assert_cmd(&["EXEC"], b"*2\r\n+OK\r\n*1\r\n$7\r\nsess:tx\r\n");
    c.assert_cmd(&["DEL", "sess:m1", "sess:m2", "sess:tx"], b":3\r\n");
    assert!(!stored_names(&redis).iter().any(|n| n.contains("m1") || n.contains("tx")));

    // RESP3 listings.
    let mut r3 = proxy.client();
    r3.hello3();
    let keys = r3.cmd(&["KEYS", "sess:k9*"]);
    assert_bytes(&keys, b"*1\r\n$21\r\nsess:k9Qz2LmP0aXv7RtY\r\n");
}

#[test]
fn pops_name_their_key_and_unknown_key_positions_are_refused() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start_with_config(redis.port, &config(dir.path()), &[]);
    let mut c = proxy.client();
    c.assert_cmd(&["RPUSH", "queue:jobs", "j1", "j2", "j3"], b":3\r\n");
    c.assert_cmd(&["BLPOP", "queue:none", "queue:jobs", "1"], b"*2\r\n$10\r\nqueue:jobs\r\n$2\r\nj1\r\n");
    c.assert_cmd(&["LMPOP", "2", "queue:none", "queue:jobs", "LEFT"], b"*2\r\n$10\r\nqueue:jobs\r\n*1\r\n$2\r\nj2\r\n");
    c.assert_cmd(&["BLPOP", "queue:none", "0.01"], b"*-1\r\n");
    redis.client().assert_cmd(&["RPUSH", "plain:list", "j3"], b":1\r\n");
    let direct = redis.client().cmd(&["OBJECT", "ENCODING", "plain:list"]);
    c.assert_cmd(&["OBJECT", "ENCODING", "queue:jobs"], &direct);
    assert!(!stored_names(&redis).iter().any(|n| n.contains("jobs")));
    // Where respseal cannot tell the key names (SORT, XREAD, unknown
    // commands, scripts), a name in a pseudonymised namespace is refused.
    for cmd in [
        &["SORT", "queue:jobs", "ALPHA"][..],
        &["XREAD", "STREAMS", "queue:s", "0"],
        &["NOSUCHCOMMAND", "queue:jobs"],
        &["EVAL", "return redis.call('llen', KEYS[1])", "1", "queue:jobs"],
        &["EVAL", "return redis.call('llen', 'queue:jobs')", "0"],
    ] {
        let reply = c.cmd(cmd);
        assert_line_prefix(&reply, b"-ERR respseal: ");
    }
    c.assert_cmd(&["SORT", "plain:list", "ALPHA"], b"*1\r\n$2\r\nj3\r\n");
    c.assert_cmd(&["EVAL", "return 1", "0"], b":1\r\n");
}

#[test]
fn names_that_do_not_decode_are_left_out_and_values_stay_bound_to_their_name() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let proxy = Proxy::start_with_config(redis.port, &config(dir.path()), &["--admin-listen", &admin_addr]);
    let mut c = proxy.client();
    c.assert_cmd(&["SET", "sess:victim", "secret"], b"+OK\r\n");
    let victim = stored_names(&redis).pop().expect("one name");
    c.assert_cmd(&["SET", "sess:attacker", "mine"], b"+OK\r\n");
    let attacker = stored_names(&redis).into_iter().find(|n| *n != victim).expect("two names");
    let mut d = redis.client();
    // The victim's sealed value copied under the attacker's stored name
    // does not open there: the value stays bound to the real name.
    d.assert_cmd(&["COPY", &victim, &attacker, "REPLACE"], b":1\r\n");
    c.assert_cmd(&["GET", "sess:attacker"], b"$-1\r\n");
    c.assert_cmd(&["GET", "sess:victim"], b"$6\r\nsecret\r\n");
    // A stored name moved to another prefix does not decode there.
    d.assert_cmd(&["COPY", &victim, &format!("queue:{}", &victim["sess:".len()..])], b":1\r\n");
    // Names written straight into Redis under a namespace: not listed,
    // counted, never shown.
    d.assert_cmd(&["SET", "sess:forged", "x"], b"+OK\r\n");
    d.assert_cmd(&["SET", "sess:{tag}AAAAAAAAAAAAAAAAAAAAAAAA", "x"], b"+OK\r\n");
    let before =
        metric(&http_get(admin, "/metrics").expect("metrics").1, "respseal_open_failures_total{reason=\"name\"}");
    assert_eq!(sorted(array_strings(&c.cmd(&["KEYS", "*"]))), ["sess:attacker", "sess:victim"]);
    assert_eq!(scan_all(&mut c, Some("sess:*")), ["sess:attacker", "sess:victim"]);
    let after =
        metric(&http_get(admin, "/metrics").expect("metrics").1, "respseal_open_failures_total{reason=\"name\"}");
    assert_eq!(after, before + 5.0, "3 names left out of KEYS *, 2 out of SCAN MATCH sess:*");
    // A client name that looks like a stored name is just a name: it is
    // pseudonymised in turn and finds nothing.
    c.assert_cmd(&["GET", &victim], b"$-1\r\n");
    c.assert_cmd(&["EXISTS", "sess:forged"], b":0\r\n");
    let log = proxy.log();
    assert!(!log.contains("victim") && !log.contains("attacker") && !log.contains("secret"), "{log}");
}

/// Names with a `{hash tag}` keep one tag pseudonym per tag, so names
/// Redis Cluster co-locates stay co-located.
#[test]
fn hash_tags_are_pseudonymised_on_their_own() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start_with_config(redis.port, &config(dir.path()), &[]);
    let mut c = proxy.client();
    for name in ["sess:{user1}a", "sess:{user1}b", "sess:{user2}a", "sess:x{user1}"] {
        c.assert_cmd(&["SET", name, "v"], b"+OK\r\n");
    }
    let tags: Vec<String> = stored_names(&redis)
        .iter()
        .map(|n| n.split_once('{').and_then(|(_, r)| r.split_once('}')).map(|(t, _)| t.to_string()).unwrap_or_default())
        .collect();
    let mut distinct = tags.clone();
    distinct.sort();
    distinct.dedup();
    // user1 three times (one of them after a prefix of the rest), user2 once.
    assert_eq!(distinct.len(), 2, "{tags:?}");
    assert!(tags.iter().all(|t| !t.contains("user")), "{tags:?}");
    assert_eq!(
        sorted(array_strings(&c.cmd(&["KEYS", "sess:*{user1}*"]))),
        ["sess:x{user1}", "sess:{user1}a", "sess:{user1}b"]
    );
}

/// `respseal check` opens, and `respseal rewrap` re-seals, values under
/// pseudonymised names: walked by their stored names, bound to the real ones.
#[test]
fn check_and_rewrap_walk_pseudonymised_names() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, _) = keygen(dir.path(), "old.key");
    let (new, new_id) = keygen(dir.path(), "new.key");
    let (names, _) = keygen(dir.path(), "names.key");
    let cfg = |keys: &str| {
        format!(
            "backend = \"{}\"\n[[rule]]\npattern = \"sess:*\"\nnames = \"pseudonymise\"\n\
             [[rule]]\npattern = \"t????\"\nnames = \"pseudonymise\"\n{keys}[names]\nkey_file = \"{}\"\n",
            redis.url(),
            names.display()
        )
    };
    let key =
        |path: &std::path::Path, state: &str| format!("[[key]]\nfile = \"{}\"\nstate = \"{state}\"\n", path.display());
    {
        let p = Proxy::start_with_config(redis.port, &cfg(&key(&old, "primary")), &[]);
        let mut c = p.client();
        for i in 0..20 {
            c.assert_cmd(&["SET", &format!("sess:{i}"), &format!("v{i}"), "EX", "1000"], b"+OK\r\n");
        }
        c.assert_cmd(&["SET", "t1234", "tv"], b"+OK\r\n");
        c.assert_cmd(&["SET", "tother", "not matched by t????"], b"+OK\r\n");
    }
    let rotated = cfg(&format!("{}{}", key(&old, "decrypt-only"), key(&new, "primary")));
    let path = write_file(dir.path(), "rotated.toml", &rotated);
    let path = path.to_str().expect("utf-8");
    let (status, out, err) = run_respseal(&["check", "--config", path], &[], std::time::Duration::from_secs(20));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("sample: 21 sealed values opened, 0 failed"), "{out}");
    let (status, out, err) = run_respseal(&["rewrap", "--config", path], &[], std::time::Duration::from_secs(30));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("scanned 21, rewrapped 21"), "{out}");
    let p = Proxy::start_with_config(redis.port, &rotated, &[]);
    let mut c = p.client();
    for i in 0..20 {
        c.assert_cmd(&["GET", &format!("sess:{i}")], &bulk(format!("v{i}").as_bytes()));
    }
    c.assert_cmd(&["GET", "t1234"], b"$2\r\ntv\r\n");
    let mut d = redis.client();
    c.assert_cmd(&["GET", "tother"], b"$20\r\nnot matched by t????\r\n");
    for name in stored_names(&redis) {
        let v = d.cmd(&["GET", &name]);
        if v == b"$20\r\nnot matched by t????\r\n" {
            continue;
        }
        // Every value is now under the new key (its id in the envelope header).
        let id = u32::from_str_radix(&new_id, 16).expect("hex").to_be_bytes();
        assert!(v.windows(4).any(|w| w == id), "{name}");
    }
}
