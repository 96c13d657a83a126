//! Opening fails closed on hostile replies: a fake Redis (a small RESP server
//! in the test) answers sealed GET, MGET and EXEC with every shape a sealed
//! value cannot have. None of it reaches the client; the rule's policy
//! applies.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;

type Replies = Arc<Mutex<HashMap<&'static str, Vec<u8>>>>;

/// A fake Redis: PING, MULTI/EXEC queueing, and GET/MGET/EXEC/HGETALL
/// answered with whatever the test put in `replies`.
fn fake_backend() -> (u16, Replies) {
    let replies: Replies = Arc::default();
    let shared = Arc::clone(&replies);
    let (port, _) = fake_redis(move || {
        let replies = Arc::clone(&shared);
        let mut in_multi = false;
        move |args: &[Vec<u8>]| {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let canned = |k: &str| replies.lock().expect("lock").get(k).cloned().unwrap_or(b"+OK\r\n".to_vec());
            Some(match name.as_str() {
                "PING" => b"+PONG\r\n".to_vec(),
                "MULTI" => {
                    in_multi = true;
                    b"+OK\r\n".to_vec()
                }
                "EXEC" => {
                    in_multi = false;
                    canned("EXEC")
                }
                _ if in_multi => b"+QUEUED\r\n".to_vec(),
                "GET" => canned("GET"),
                "MGET" | "HGETALL" => canned("MGET"),
                _ => b"+OK\r\n".to_vec(),
            })
        }
    });
    (port, replies)
}

fn proxy_for(port: u16, on_failure: &str, dir: &std::path::Path) -> Proxy {
    let (key, _) = keygen(dir, &format!("{on_failure}.key"));
    let config = format!("[[rule]]\npattern = \"sess:*\"\non_failure = \"{on_failure}\"\n");
    Proxy::start_with_config(port, &config, &["--key-file", key.to_str().expect("utf-8 path")])
}

/// Shapes no sealed value can have on a RESP2 link.
const WRONG_VALUES: &[&[u8]] =
    &[b"+OK\r\n", b"+plaintext-forgery\r\n", b":1\r\n", b"*1\r\n$5\r\nforge\r\n", b"*-1\r\n", b"*0\r\n"];

#[test]
fn a_sealed_get_answered_with_a_wrong_shape_never_reaches_the_client() {
    let (port, replies) = fake_backend();
    let dir = tempfile::tempdir().expect("tempdir");
    for (policy, want) in
        [("nil", &b"$-1\r\n"[..]), ("error", &b"-ERR respseal: sealed value could not be opened (bad_shape)\r\n"[..])]
    {
        let proxy = proxy_for(port, policy, dir.path());
        let mut c = proxy.client();
        for shape in WRONG_VALUES {
            replies.lock().expect("lock").insert("GET", shape.to_vec());
            c.assert_cmd(&["GET", "sess:x"], want);
            // Every other command that returns a sealed value gets the
            // fake's "+OK", also not a value.
            for cmd in [
                &["GETDEL", "sess:x"][..],
                &["GETEX", "sess:x"],
                &["GETSET", "sess:x", "v"],
                &["SET", "sess:x", "v", "GET"],
            ] {
                c.assert_cmd(cmd, want);
            }
        }
        // Nulls and Redis's own errors pass on.
        replies.lock().expect("lock").insert("GET", b"$-1\r\n".to_vec());
        c.assert_cmd(&["GET", "sess:x"], b"$-1\r\n");
        replies.lock().expect("lock").insert("GET", b"-WRONGTYPE Operation against a key\r\n".to_vec());
        c.assert_cmd(&["GET", "sess:x"], b"-WRONGTYPE Operation against a key\r\n");
        // An unsealed key gets whatever Redis sends.
        replies.lock().expect("lock").insert("GET", b"+OK\r\n".to_vec());
        c.assert_cmd(&["GET", "plain"], b"+OK\r\n");
    }
}

#[test]
fn an_mget_or_exec_array_of_the_wrong_shape_is_not_passed_on() {
    let (port, replies) = fake_backend();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy_for(port, "nil", dir.path());
    let mut c = proxy.client();
    // MGET of three keys, two sealed: any array but one of three elements,
    // or no array, becomes three nulls.
    for shape in
        [&b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"[..], b"*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", b"+OK\r\n", b"*-1\r\n", b":3\r\n"]
    {
        replies.lock().expect("lock").insert("MGET", shape.to_vec());
        c.assert_cmd(&["MGET", "sess:a", "plain", "sess:b"], b"*3\r\n$-1\r\n$-1\r\n$-1\r\n");
    }
    // The right length, but a sealed element of the wrong shape: that
    // element is a null, the unsealed one passes.
    replies.lock().expect("lock").insert("MGET", b"*3\r\n:1\r\n$5\r\nplain\r\n+forged\r\n".to_vec());
    c.assert_cmd(&["MGET", "sess:a", "plain", "sess:b"], b"*3\r\n$-1\r\n$5\r\nplain\r\n$-1\r\n");
    // EXEC with a sealed GET queued.
    let mut tx = proxy.client();
    for (exec, want) in [
        (&b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"[..], &b"*1\r\n$-1\r\n"[..]),
        (b"*1\r\n+forged\r\n", b"*1\r\n$-1\r\n"),
        (b"+OK\r\n", b"*1\r\n$-1\r\n"),
        (b"*0\r\n", b"*1\r\n$-1\r\n"),
        // A transaction aborted by WATCH, and EXECABORT, pass on.
        (b"*-1\r\n", b"*-1\r\n"),
        (b"-EXECABORT Transaction discarded\r\n", b"-EXECABORT Transaction discarded\r\n"),
    ] {
        replies.lock().expect("lock").insert("EXEC", exec.to_vec());
        tx.assert_cmd(&["MULTI"], b"+OK\r\n");
        tx.assert_cmd(&["GET", "sess:a"], b"+QUEUED\r\n");
        tx.assert_cmd(&["EXEC"], want);
    }
    // HGETALL on a sealed name under a rule without `fields` never reaches Redis.
    replies.lock().expect("lock").insert("MGET", b"*2\r\n$1\r\nf\r\n$6\r\nforged\r\n".to_vec());
    assert_line_prefix(
        &c.cmd(&["HGETALL", "sess:h"]),
        b"-ERR respseal: HGETALL is not supported on sealed keys unless",
    );
}

#[test]
fn hash_replies_of_the_wrong_shape_never_reach_the_client() {
    let (port, replies) = fake_backend();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = keygen(dir.path(), "h.key");
    let config = "[[rule]]\npattern = \"h:*\"\nfields = \"*\"\n";
    let proxy = Proxy::start_with_config(port, config, &["--key-file", key.to_str().expect("utf-8 path")]);
    let mut c = proxy.client();
    // A field value that is not a bulk string, an odd number of elements,
    // a field name that is not a string, no array at all, plaintext: the
    // whole reply is that of a missing hash, nothing of it is passed on.
    for shape in [
        &b"*2\r\n$1\r\nf\r\n:5\r\n"[..],
        b"*2\r\n$1\r\nf\r\n+forged\r\n",
        b"*3\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n",
        b"*2\r\n:1\r\n$1\r\nv\r\n",
        b"+OK\r\n",
        b":7\r\n",
        b"*2\r\n$1\r\nf\r\n$6\r\nforged\r\n",
    ] {
        replies.lock().expect("lock").insert("MGET", shape.to_vec());
        c.assert_cmd(&["HGETALL", "h:x"], b"*0\r\n");
    }
    // Nulls (RESP2 never sends one for HGETALL, but a hostile Redis may)
    // and Redis's own errors pass on.
    replies.lock().expect("lock").insert("MGET", b"-WRONGTYPE Operation against a key\r\n".to_vec());
    c.assert_cmd(&["HGETALL", "h:x"], b"-WRONGTYPE Operation against a key\r\n");
    replies.lock().expect("lock").insert("MGET", b"*0\r\n".to_vec());
    c.assert_cmd(&["HGETALL", "h:x"], b"*0\r\n");
}

#[test]
fn resp3_shapes_that_are_not_blob_strings_are_open_failures() {
    let (port, replies) = fake_backend();
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy_for(port, "nil", dir.path());
    // The fake answers HELLO with +OK: respseal then speaks RESP3 with the
    // client (what matters here is the RESP3 scanner on the link).
    let mut c = proxy.client();
    c.send_cmd(&["HELLO", "3"]);
    let _ = c.read_frame();
    c.proto = respseal::protocol::Proto::Resp3;
    for shape in [
        &b"=7\r\ntxt:abc\r\n"[..],
        b",1.5\r\n",
        b"#t\r\n",
        b"(123\r\n",
        b"%1\r\n+a\r\n+b\r\n",
        b"~1\r\n+a\r\n",
        b"|1\r\n+a\r\n+b\r\n$1\r\nx\r\n",
    ] {
        replies.lock().expect("lock").insert("GET", shape.to_vec());
        c.assert_cmd(&["GET", "sess:x"], b"_\r\n");
    }
}
