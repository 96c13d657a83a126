#!/usr/bin/env python3
"""Real-client compatibility check for respseal (or plain Redis) with redis-py.

usage: python3 check.py --port P [--host H] --protocol 2|3

Connects with redis-py's default settings plus the requested protocol (so its
normal handshake runs: HELLO 3 for protocol 3, CLIENT SETINFO, and SELECT
because the URL names db 2), runs a fixed set of commands and asserts every
reply. Prints "ok redis-py<version> resp=N" and exits 0 on success; prints
"FAIL redis-py [<step>]: <reason>" and exits 1 on any failure. Every wait has a
deadline and the whole script is bounded by OVERALL_S (SIGALRM).
"""

import argparse
import os
import secrets
import signal
import sys
import threading
import time
import traceback

OVERALL_S = 20
DB = 2

current_step = "init"


def fail(msg):
    print(f"FAIL redis-py [{current_step}]: {msg}", file=sys.stderr, flush=True)
    os._exit(1)


def on_alarm(signum, frame):
    fail(f"overall timeout of {OVERALL_S} s exceeded")


class CheckError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckError(what)


def eq(actual, expected, what):
    if actual != expected or type(actual) is not type(expected):
        raise CheckError(f"{what}: expected {expected!r}, got {actual!r}")


def step(name):
    """Decorator: run the function now as a named step."""

    def run(fn):
        global current_step
        current_step = name
        try:
            fn()
        except CheckError as e:
            fail(str(e))
        except Exception as e:
            if type(e).__module__.startswith("redis"):
                # A redis-py error: the message says it; add where in this file.
                here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
                at = f" (check.py line {here[-1].lineno}: {here[-1].line})" if here else ""
                fail(f"{type(e).__name__}: {e}{at}")
            fail(traceback.format_exc())
        return fn

    return run


def parse_client_info(s):
    if isinstance(s, bytes):
        s = s.decode()
    out = {}
    for part in s.strip().split("\n")[0].split(" "):
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--protocol", type=int, choices=(2, 3), required=True)
    args = ap.parse_args()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_S)

    import redis

    proto = args.protocol
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"redis://{host}:{args.port}/{DB}"
    tag = secrets.token_hex(6)
    base = f"rsck:redis-py-p{proto}:{tag}"
    created = set()

    def K(s):
        return f"{base}:{s}"

    def key(s):
        k = K(s)
        created.add(k)
        return k

    st = {}

    @step("connect")
    def _():
        # Defaults of redis-py 8 except the protocol under test; socket_timeout
        # (5 s by default in redis-py 8) bounds every read.
        st["r"] = redis.Redis.from_url(url, protocol=proto, socket_timeout=5, socket_connect_timeout=5)
        st["r"].ping()

    r = st["r"]

    @step("PING")
    def _():
        eq(r.ping(), True, "PING")
        eq(r.echo("hé ☃ \r\n"), "hé ☃ \r\n".encode(), "ECHO")

    bin_value = (
        bytes([0x00, 0x01, 0x02, 0x7F, 0x80, 0xC3, 0x28, 0xFE, 0xFF, 0x0D, 0x0A, 0x00])
        + b"\r\n$-1\r\n*2\r\n+OK\r\n_\r\n"
        + "héllo wörld ☃ 日本語 🚀".encode()
        + secrets.token_bytes(32)
    )
    uni_value = f"ünïcødé ☃ 日本語 🚀 {tag} \x00 end"

    @step("SET/GET binary + unicode")
    def _():
        kb, ku = key("bin"), key("uni")
        eq(r.set(kb, bin_value), True, "SET binary")
        eq(r.get(kb), bin_value, "GET binary")
        eq(r.set(ku, uni_value), True, "SET unicode")
        eq(r.get(ku), uni_value.encode(), "GET unicode")
        eq(r.get(K("missing")), None, "GET missing")

    @step("MGET with a missing key")
    def _():
        k1, k2 = key("m1"), key("m2")
        r.set(k1, "one")
        r.set(k2, "two ☃")
        eq(r.mget([k1, K("missing"), k2]), [b"one", None, "two ☃".encode()], "MGET")

    @step("HSET/HGETALL")
    def _():
        h = key("hash")
        mapping = {"f1": "v1", "fïeld ☃": "välue 🚀", "empty": "", "num": "42"}
        eq(r.hset(h, mapping=mapping), 4, "HSET new fields")
        got = r.hgetall(h)
        check(isinstance(got, dict), f"HGETALL should give a dict, got {got!r}")
        eq(got, {k.encode(): v.encode() for k, v in mapping.items()}, "HGETALL")
        eq(r.hgetall(K("missing-hash")), {}, "HGETALL missing key")

    def hundred(prefix, p):
        """Queue 100 commands on pipeline p; return the expected replies."""
        exp = []
        ctr, lst, hsh = key(f"{prefix}:ctr"), key(f"{prefix}:list"), key(f"{prefix}:h")
        for i in range(16):
            k = key(f"{prefix}:s{i}")
            p.set(k, f"val-{i}-☃"); exp.append(True)
            p.get(k); exp.append(f"val-{i}-☃".encode())
            p.incr(ctr); exp.append(i + 1)
            p.rpush(lst, f"e{i}"); exp.append(i + 1)
            p.hset(hsh, f"f{i}", str(i)); exp.append(1)
            p.hget(hsh, f"f{i}"); exp.append(str(i).encode())
        p.lrange(lst, 0, 2); exp.append([b"e0", b"e1", b"e2"])
        p.exists(ctr); exp.append(1)
        p.get(K(f"{prefix}:nope")); exp.append(None)
        p.ping(); exp.append(True)
        return exp

    def check_replies(got, exp, what):
        eq(len(got), len(exp), f"{what}: number of replies")
        for i, (g, e) in enumerate(zip(got, exp)):
            if isinstance(e, type) and issubclass(e, Exception):
                check(isinstance(g, e), f"{what}: reply #{i} expected {e.__name__}, got {g!r}")
            else:
                eq(g, e, f"{what}: reply #{i}")

    @step("pipeline(transaction=False) of 100 commands, error in the middle")
    def _():
        p = r.pipeline(transaction=False)
        exp = hundred("pipe", p)
        check(len(exp) == 100, "internal: not 100 commands")
        notint = key("pipe:notint")
        p.set(notint, "abc"); exp.append(True)
        p.incr(notint); exp.append(redis.ResponseError)
        p.get(notint); exp.append(b"abc")
        check_replies(p.execute(raise_on_error=False), exp, "pipeline")

    @step("pipeline(transaction=True) of 100 commands (MULTI/EXEC)")
    def _():
        p = r.pipeline(transaction=True)
        exp = hundred("tx100", p)
        check_replies(p.execute(), exp, "MULTI/EXEC pipeline")

    @step("MULTI/EXEC transaction")
    def _():
        k = key("tx")
        p = r.pipeline(transaction=True)
        p.set(k, "10").incr(k).incrby(k, 5).get(k).expire(k, 1000).ttl(k)
        check_replies(p.execute(), [True, 11, 16, b"16", True, 1000], "MULTI/EXEC")

    @step("WATCH + conflicting write aborts EXEC")
    def _():
        k = key("watched")
        r.set(k, "before")
        with r.pipeline(transaction=True) as p:
            p.watch(k)
            eq(p.get(k), b"before", "GET in WATCH mode")
            r.set(k, "changed")  # from another connection of the pool
            p.multi()
            p.set(k, "from-tx")
            try:
                p.execute()
            except redis.WatchError:
                pass
            else:
                raise CheckError("EXEC succeeded although the WATCHed key changed")
        eq(r.get(k), b"changed", "value after aborted EXEC")

    @step("INCR")
    def _():
        k = key("counter")
        eq(r.incr(k), 1, "INCR new")
        eq(r.incr(k), 2, "INCR again")
        s = key("notint")
        r.set(s, "not a number")
        try:
            r.incr(s)
        except redis.ResponseError as e:
            check("not an integer" in str(e), f"INCR error text: {e}")
        else:
            raise CheckError("INCR on a string did not fail")

    @step("EXPIRE/TTL")
    def _():
        k = key("ttl")
        r.set(k, "x")
        eq(r.ttl(k), -1, "TTL without expiry")
        eq(r.expire(k, 100), True, "EXPIRE")
        t = r.ttl(k)
        check(isinstance(t, int) and 90 < t <= 100, f"TTL after EXPIRE 100: {t!r}")
        eq(r.ttl(K("missing")), -2, "TTL missing")
        eq(r.expire(K("missing"), 100), False, "EXPIRE missing")

    @step("DEL")
    def _():
        a, b = key("del-a"), key("del-b")
        r.set(a, "1")
        r.set(b, "2")
        eq(r.delete(a, b, K("missing")), 2, "DEL count")
        eq(r.exists(a, b), 0, "EXISTS after DEL")

    @step("pub/sub round trip")
    def _():
        ch = K("chan")
        payload = f"hello ☃ {tag} \r\n*1\r\n".encode()
        ps = r.pubsub()
        st["pubsub"] = ps
        ps.subscribe(ch)
        deadline = time.monotonic() + 3
        confirmed = None
        while confirmed is None and time.monotonic() < deadline:
            confirmed = ps.get_message(timeout=0.5)
        check(confirmed is not None, "no subscribe confirmation within 3 s")
        eq(confirmed["type"], "subscribe", "subscribe confirmation type")
        eq(confirmed["channel"], ch.encode(), "subscribe confirmation channel")
        eq(confirmed["data"], 1, "subscribe confirmation count")
        eq(r.publish(ch, payload), 1, "PUBLISH receivers")
        msg = None
        deadline = time.monotonic() + 3
        while msg is None and time.monotonic() < deadline:
            msg = ps.get_message(ignore_subscribe_messages=True, timeout=0.5)
        check(msg is not None, "no pub/sub message within 3 s")
        eq(msg["type"], "message", "message type")
        eq(msg["channel"], ch.encode(), "message channel")
        eq(msg["data"], payload, "message payload")
        ps.unsubscribe(ch)
        # unsubscribe confirmation
        deadline = time.monotonic() + 3
        un = None
        while un is None and time.monotonic() < deadline:
            un = ps.get_message(timeout=0.5)
        check(un is not None and un["type"] == "unsubscribe", f"unsubscribe confirmation: {un!r}")
        ps.close()

    def blocked_clients():
        return int(r.info("clients")["blocked_clients"])

    @step("BLPOP answered by LPUSH from another connection")
    def _():
        k = key("blist")
        blk = redis.Redis.from_url(url, protocol=proto, socket_timeout=6, socket_connect_timeout=5)
        st["blk"] = blk
        blk.ping()
        before = blocked_clients()
        result = {}

        def worker():
            try:
                result["v"] = blk.blpop([k], timeout=4)
            except Exception as e:  # reported below
                result["e"] = e

        t = threading.Thread(target=worker, daemon=True)
        t.start()
        deadline = time.monotonic() + 3
        while blocked_clients() <= before:
            check(time.monotonic() < deadline, "BLPOP never showed up as blocked (INFO blocked_clients did not rise)")
            time.sleep(0.025)
        eq(r.lpush(k, "wake ☃"), 1, "LPUSH")
        t.join(3)
        check(not t.is_alive(), "BLPOP did not return within 3 s of LPUSH")
        if "e" in result:
            raise CheckError(f"BLPOP raised {result['e']!r}")
        eq(tuple(result["v"]) if result["v"] is not None else None, (k.encode(), "wake ☃".encode()), "BLPOP")
        eq(blk.blpop([K("empty-list")], timeout=0.1), None, "BLPOP timeout on empty list")

    @step("CLIENT SETNAME/GETNAME")
    def _():
        # A single connection: SETNAME is per connection, and the pool might
        # hand another one to the next call.
        c = redis.Redis.from_url(url, protocol=proto, single_connection_client=True, socket_timeout=5)
        st["named"] = c
        n = f"respseal-check-py{proto}-{tag}"
        eq(c.client_setname(n), True, "CLIENT SETNAME")
        got = c.client_getname()
        eq(got.decode() if isinstance(got, bytes) else got, n, "CLIENT GETNAME")
        eq(parse_client_info(c.execute_command("CLIENT", "INFO"))["name"], n, "CLIENT INFO name=")

    @step("INFO server")
    def _():
        info = r.info("server")
        check("redis_version" in info, f"INFO server has no redis_version: {list(info)[:10]}")
        check(str(info["redis_version"])[:1].isdigit(), f"redis_version looks wrong: {info['redis_version']!r}")

    @step("protocol version")
    def _():
        c = st["named"]
        ci = parse_client_info(c.execute_command("CLIENT", "INFO"))
        check("resp" in ci, f"CLIENT INFO has no resp= field: {ci}")
        eq(int(ci["resp"]), proto, "CLIENT INFO resp=")
        eq(int(ci["db"]), DB, "CLIENT INFO db= (URL asked for db 2, so SELECT 2 ran)")
        conn = c.connection
        eq(conn.protocol, proto, "redis-py connection.protocol")
        if proto == 3:
            hm = conn.handshake_metadata
            check(hm is not None, "no HELLO reply recorded for protocol 3")
            got = hm.get(b"proto", hm.get("proto"))
            eq(got, 3, "HELLO 3 reply proto")
        for label, cl in (("pool", r), ("blocking", st["blk"])):
            dci = parse_client_info(cl.execute_command("CLIENT", "INFO"))
            eq(int(dci["resp"]), proto, f"CLIENT INFO resp= on the {label} connection")
            eq(int(dci["db"]), DB, f"CLIENT INFO db= on the {label} connection")
        st["resp"] = int(ci["resp"])

    @step("cleanup")
    def _():
        if created:
            r.delete(*created)
        for name in ("blk", "named"):
            st[name].close()
        r.close()

    print(f"ok redis-py{redis.__version__} resp={st['resp']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
