#!/usr/bin/env python3
"""redis-py 8 through a sealing respseal (sess:*), RESP2 and RESP3: what the
client writes is ciphertext in Redis, what it reads is plaintext — single
commands, pipelines, transactions, MGET, GETEX, GETDEL, SET ... GET.

Usage: sealed.py PROXY_PORT REDIS_PORT
"""
import sys

import redis

MAGIC = b"\x00RE\x01"
proxy_port, redis_port = int(sys.argv[1]), int(sys.argv[2])
direct = redis.Redis(port=redis_port)


def sealed_in_redis(key, plain):
    raw = direct.get(key)
    assert raw is not None, f"{key} missing in Redis"
    assert raw.startswith(MAGIC), f"{key} is not sealed in Redis: {raw[:40]!r}"
    assert plain not in raw, f"{key} holds its plaintext in Redis"


for protocol in (2, 3):
    p = f"sess:py{protocol}:"
    r = redis.Redis(port=proxy_port, protocol=protocol)
    assert r.set(p + "a", "alpha-secret") is True
    assert r.get(p + "a") == b"alpha-secret"
    sealed_in_redis(p + "a", b"alpha-secret")
    # Pipelined, mixed with plain keys.
    pipe = r.pipeline(transaction=False)
    pipe.set(p + "b", "beta-secret")
    pipe.set("plain:py", "visible")
    pipe.get(p + "b")
    pipe.mget(p + "a", "plain:py", p + "missing", p + "b")
    pipe.getex(p + "a", ex=100)
    pipe.set(p + "a", "alpha2-secret", get=True)
    pipe.getdel(p + "b")
    got = pipe.execute()
    assert got == [
        True, True, b"beta-secret", [b"alpha-secret", b"visible", None, b"beta-secret"],
        b"alpha-secret", b"alpha-secret", b"beta-secret",
    ], got
    assert direct.get("plain:py") == b"visible", "an unsealed key was touched"
    # SET without KEEPTTL cleared GETEX's TTL, as in Redis; GETEX again.
    assert r.getex(p + "a", ex=50) == b"alpha2-secret"
    assert 0 < direct.ttl(p + "a") <= 50
    sealed_in_redis(p + "a", b"alpha2-secret")
    # A transaction.
    tx = r.pipeline(transaction=True)
    tx.set(p + "c", "gamma-secret")
    tx.get(p + "c")
    tx.mget(p + "a", p + "c")
    assert tx.execute() == [True, b"gamma-secret", [b"alpha2-secret", b"gamma-secret"]]
    sealed_in_redis(p + "c", b"gamma-secret")
    print(f"redis-py RESP{protocol}: writes sealed in Redis, reads plaintext (pipeline, MULTI, MGET, GETEX, GETDEL, SET GET)")
