#!/usr/bin/env python3
"""redis-py transactions through respseal (sealing sess:*): a command that
respseal refuses while queueing discards the whole transaction, as a Redis
queue-time error does (EXECABORT), in RESP2 and RESP3.

Usage: execabort.py PROXY_PORT REDIS_PORT
"""
import sys

import redis

proxy_port, redis_port = int(sys.argv[1]), int(sys.argv[2])
direct = redis.Redis(port=redis_port)
for protocol in (2, 3):
    direct.delete("tx:a", "tx:b", "sess:tx")
    r = redis.Redis(port=proxy_port, protocol=protocol)
    pipe = r.pipeline(transaction=True)
    pipe.set("tx:a", "1")
    pipe.append("sess:tx", "y")
    pipe.set("tx:b", "2")
    try:
        pipe.execute()
        sys.exit(f"RESP{protocol}: the transaction ran although a command was refused")
    except redis.exceptions.ExecAbortError as e:
        print(f"redis-py RESP{protocol}: ExecAbortError: {e}")
    except redis.exceptions.ResponseError as e:
        if "EXECABORT" not in str(e) and "respseal" not in str(e):
            raise
        print(f"redis-py RESP{protocol}: {type(e).__name__}: {e}")
    assert direct.exists("tx:a", "tx:b") == 0, "a discarded transaction left writes behind"
    # A transaction without refusals still runs, and seals.
    pipe = r.pipeline(transaction=True)
    pipe.set("sess:tx", "secret")
    pipe.get("sess:tx")
    assert pipe.execute() == [True, b"secret"]
    assert direct.get("sess:tx").startswith(b"\x00RE\x01"), "not sealed inside MULTI"
print("redis-py: EXECABORT for refused commands in both protocols")
