"""Session-store flows through a sealing respseal, with redis-py and the
stores' own Python packages, each checked directly in Redis (only the
intended values sealed, no plaintext canary anywhere).

usage: stores.py PROXY_PORT REDIS_PORT ASPNET_SET_SHA1

The proxy's configuration (tests/external.rs) has the presets:
  spring:session:sessions:expires:*   seal = false (Spring's shadow keys)
  spring:session:sessions:*           fields = "sessionAttr:*"
  channel spring:session:event:*
  aspnet:*                            fields = "data", with the SetScript profile
  session:*                           Flask-Session
  :1:django.contrib.sessions.cache*   Django's cache session engine

Flows:
  * Spring Session (RESP3, as Lettuce speaks it): HMSET of sessionAttr:* with
    plaintext metadata, PEXPIREAT, RENAME on a session id change, HGETALL as
    a map, the created event PUBLISHed on its channel, and the
    `APPEND spring:session:sessions:expires:<id> ""` shadow key.
  * ASP.NET Core: HMSET absexp/sldexp/data, EXPIRE, HMGET; then again with
    the older SetScript (EVALSHA, data in ARGV[4]).
  * Flask-Session and Django's cache sessions, each in RESP2 and RESP3.
"""

import sys
import time
import uuid

import redis

PROXY, REDIS, SET_SHA = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
MAGIC = b"\x00RE\x01"
CANARY = "CANARY-" + uuid.uuid4().hex
direct = redis.Redis(port=REDIS)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL {what}")
        sys.exit(1)
    checks += 1


def sealed(v):
    return isinstance(v, bytes) and v.startswith(MAGIC)


def no_canary_anywhere():
    for k in direct.scan_iter(count=1000):
        check(CANARY.encode() not in k, f"canary in key name {k!r}")
        t = direct.type(k)
        if t == b"string":
            check(CANARY.encode() not in (direct.get(k) or b""), f"canary in {k!r}")
        elif t == b"hash":
            for f, v in direct.hgetall(k).items():
                check(CANARY.encode() not in v, f"canary in {k!r} field {f!r}")
        dump = direct.dump(k) or b""
        check(CANARY.encode() not in dump, f"canary in DUMP of {k!r}")


def spring():
    r = redis.Redis(port=PROXY, protocol=3)
    sub = redis.Redis(port=PROXY, protocol=3).pubsub()
    sub.psubscribe("spring:session:event:0:created:*")
    sub.get_message(timeout=2)
    raw_sub = redis.Redis(port=REDIS).pubsub()
    raw_sub.psubscribe("spring:session:event:0:created:*")
    raw_sub.get_message(timeout=2)
    old, new = "a" + uuid.uuid4().hex, "b" + uuid.uuid4().hex
    key = f"spring:session:sessions:{old}"
    now = int(time.time() * 1000)
    r.hset(key, mapping={
        "creationTime": now,
        "lastAccessedTime": now,
        "maxInactiveInterval": 1800,
        "sessionAttr:user": f"alice {CANARY}",
        "sessionAttr:SPRING_SECURITY_CONTEXT": f"ctx {CANARY}",
    })
    r.pexpireat(key, now + 1_800_000 + 300_000)
    r.publish(f"spring:session:event:0:created:{old}", f'{{"sessionAttr:user":"alice {CANARY}"}}')
    r.append(f"spring:session:sessions:expires:{old}", "")
    r.pexpire(f"spring:session:sessions:expires:{old}", 1_800_000)
    for f, v in direct.hgetall(key).items():
        if f.startswith(b"sessionAttr:"):
            check(sealed(v), f"spring {f!r} sealed in Redis")
        else:
            check(not sealed(v) and v.isdigit(), f"spring {f!r} plain in Redis")
    check(direct.get(f"spring:session:sessions:expires:{old}") == b"", "the shadow key stays plain")
    msg = sub.get_message(timeout=5)
    while msg and msg["type"] != "pmessage":
        msg = sub.get_message(timeout=5)
    check(msg and msg["data"] == f'{{"sessionAttr:user":"alice {CANARY}"}}'.encode(), f"created event opened: {msg}")
    raw = raw_sub.get_message(timeout=5)
    while raw and raw["type"] != "pmessage":
        raw = raw_sub.get_message(timeout=5)
    check(raw and sealed(raw["data"]), "the event is ciphertext in Redis")
    # A session id change: Spring renames the key.
    newkey = f"spring:session:sessions:{new}"
    check(r.rename(key, newkey), "RENAME on session id change")
    r.rename(f"spring:session:sessions:expires:{old}", f"spring:session:sessions:expires:{new}")
    got = r.hgetall(newkey)
    check(isinstance(got, dict), "HGETALL is a map in RESP3")
    check(got[b"sessionAttr:user"] == f"alice {CANARY}".encode(), f"attribute opened after the rename: {got}")
    check(got[b"maxInactiveInterval"] == b"1800", "metadata intact")
    check(r.pttl(newkey) > 1_800_000, "the TTL survived the rename")
    check(not r.exists(key), "the old id is gone")
    check(sealed(direct.hget(newkey, "sessionAttr:user")), "sealed under the new name")
    sub.close()
    raw_sub.close()


def aspnet():
    r = redis.Redis(port=PROXY)
    for run in ("hmset", "script"):
        key = f"aspnet:{uuid.uuid4().hex}"
        if run == "hmset":
            r.hset(key, mapping={"absexp": "638000000000000000", "sldexp": "12000000000", "data": f"blob {CANARY}"})
            r.expire(key, 1200)
        else:
            body_sha = r.script_load(
                "redis.call('HSET', KEYS[1], 'absexp', ARGV[1], 'sldexp', ARGV[2], 'data', ARGV[4])\n"
                "if ARGV[3] ~= '-1' then\n  redis.call('EXPIRE', KEYS[1], ARGV[3])\nend\nreturn 1"
            )
            check(body_sha == SET_SHA, "SCRIPT LOAD gives the declared SHA1")
            check(r.evalsha(SET_SHA, 1, key, "638000000000000000", "12000000000", 1200, f"blob {CANARY}") == 1, "SetScript")
        absexp, sldexp, data = r.hmget(key, "absexp", "sldexp", "data")
        check(data == f"blob {CANARY}".encode() and absexp == b"638000000000000000", f"aspnet {run} HMGET")
        check(sealed(direct.hget(key, "data")), f"aspnet {run}: data sealed")
        check(direct.hget(key, "absexp") == b"638000000000000000", f"aspnet {run}: absexp plain")
        check(0 < direct.ttl(key) <= 1200, f"aspnet {run}: expiry")


def flask_session(protocol):
    from flask import Flask, session
    from flask_session import Session

    app = Flask(f"respseal-flask-{protocol}")
    app.config.update(
        SECRET_KEY="test",
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis(port=PROXY, protocol=protocol),
    )
    Session(app)

    @app.route("/")
    def index():
        session["views"] = session.get("views", 0) + 1
        session["canary"] = CANARY
        return str(session["views"])

    c = app.test_client()
    for n in (1, 2, 3):
        body = c.get("/").get_data(as_text=True)
        check(body == str(n), f"flask RESP{protocol} view {n}: {body}")
    keys = [k for k in direct.scan_iter(match="session:*")]
    check(keys, "a Flask session in Redis")
    for k in keys:
        check(sealed(direct.get(k)), f"flask session {k!r} sealed")


def django_sessions(protocol):
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="test",
            INSTALLED_APPS=["django.contrib.sessions"],
            SESSION_ENGINE="django.contrib.sessions.backends.cache",
            CACHES={"default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{PROXY}",
                "OPTIONS": {"protocol": 3},
            }},
        )
        django.setup()
    from django.core.cache import caches
    from django.contrib.sessions.backends.cache import SessionStore

    caches["default"]._cache._pool_options["protocol"] = protocol
    caches["default"]._cache._pools = {}
    s = SessionStore()
    s["user"] = f"alice {CANARY}"
    s.save()
    again = SessionStore(session_key=s.session_key)
    check(again["user"] == f"alice {CANARY}", f"django RESP{protocol} round trip")
    again["n"] = 2
    again.save()
    check(SessionStore(session_key=s.session_key)["n"] == 2, f"django RESP{protocol} update")
    keys = list(direct.scan_iter(match=":1:django.contrib.sessions.cache*"))
    check(keys, "a Django session in Redis")
    for k in keys:
        check(sealed(direct.get(k)), f"django session {k!r} sealed")


spring()
aspnet()
for p in (2, 3):
    flask_session(p)
for p in (2, 3):
    django_sessions(p)
no_canary_anywhere()
print(f"stores: {checks} checks passed (Spring, ASP.NET Core, Flask-Session, Django; RESP2 and RESP3)")
