#!/usr/bin/env python3
"""The sealing boundary, checked against every command the Redis under test knows.

Usage: check.py PROXY_PORT REDIS_PORT[,REDIS_PORT...] [--hash] [--cluster] [--names]
  (respseal seals sess:*; with --hash its rule also seals every hash field,
  `fields = "*"`, and a sess:* hash whose every field holds an envelope is
  allowed too; with --cluster respseal routes to a Redis Cluster whose
  masters are the ports given, every name carries the hash tag {b} so that
  the keys of one line share a slot, and every master is checked; with
  --names the rule also pseudonymises names, and no key in Redis may carry
  a sess: name a client used, anywhere in its name)

The commands and their argument grammars come from Redis itself (`COMMAND
DOCS`), not from a hand-written list, so a command that respseal's table
forgets is exercised too. For every command (and subcommand), argument
shapes are generated from the grammar (optional arguments with and without,
each `oneof` branch), then filled so that a sealed key name and a canary
value land in every position Redis accepts: every key position gets a
sealed name while the other keys are unsealed sources of each data type
holding the canary (and the other way round), and every string position
gets a sealed name in turn. Each line is sent through respseal; afterwards,
read directly from Redis, no key matching sess:* may be anything but a
string holding an envelope, and none may hold the canary in its DUMP.
"""

import itertools
import socket
import sys

import redis

CANARY = b"kX9canary7Qz"          # short: never LZF-compressed inside DUMP
MAGIC = b"\x00RE\x01"
TYPES = ["string", "list", "set", "zset", "hash", "stream", "geo", "hll"]
SCRIPT = b"redis.call('SET', ARGV[1], ARGV[2]) return 1"
LIBRARY = (b"#!lua name=boundlib\nredis.register_function('bset', function(k, a) "
           b"return redis.call('SET', a[1], a[2]) end)")
MAX_SHAPES = 6

# Commands that would take the test's own connection or server away, with
# the reason. Everything else Redis knows is exercised.
SKIP = {
    "shutdown": "stops the server",
    "debug": "can crash or stall the server",
    "monitor": "turns the connection into a stream",
    "sync": "turns the connection into a replication stream",
    "psync": "turns the connection into a replication stream",
    "replicaof": "changes replication",
    "slaveof": "changes replication",
    "failover": "changes replication",
    "replconf": "replication internals",
    "cluster": "cluster mode only",
    "client": "pause/kill/reply would take the test's connection away",
    "config": "could change the server's directory or limits",
    "acl": "could lock the test out",
    "module": "loads code",
    "quit": "closes the connection",
    "reset": "resets the connection",
    "auth": "answered by respseal, tested elsewhere",
    "hello": "answered by respseal, tested elsewhere",
    "select": "moves the connection; databases are checked below",
    "subscribe": "turns the connection into a subscriber",
    "psubscribe": "turns the connection into a subscriber",
    "ssubscribe": "turns the connection into a subscriber",
    "multi": "transactions are tested separately",
    "unsubscribe": "one reply per channel, subscriber state",
    "punsubscribe": "one reply per pattern, subscriber state",
    "sunsubscribe": "one reply per channel, subscriber state",
    "save": "slow, writes no keys",
    "bgsave": "writes no keys",
    "bgrewriteaof": "writes no keys",
}


class Raw:
    """A minimal RESP2 client: no per-command reply parsing to trip over."""

    def __init__(self, port):
        self.port = port
        self.connect()

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.buf = b""

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self.read()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest
        if kind == b"-":
            return RuntimeError(rest.decode(errors="replace"))
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"unexpected reply {line!r}")


def alternatives(arg):
    """Token lists one argument spec can produce (a few, not all)."""
    t = arg.get("type")
    name = arg.get("name", "")
    token = [arg["token"].encode()] if arg.get("token") else []
    if t == "key":
        base = [[("key",)]]
    elif t in ("string",):
        if name == "script":
            base = [[("lit", SCRIPT)]]
        elif name == "function-code":
            base = [[("lit", LIBRARY)]]
        elif name == "function":
            base = [[("lit", b"bset")]]
        else:
            base = [[("str",)]]
    elif t == "pattern":
        base = [[("str",)]]
    elif t == "integer":
        base = [[("lit", b"1")]]
    elif t == "double":
        base = [[("lit", b"0.01")]]
    elif t == "unix-time":
        base = [[("lit", b"4102444800")]]
    elif t == "pure-token":
        base = [[]]
    elif t == "oneof":
        base = []
        for sub in arg.get("arguments", []):
            base.extend(alternatives(sub))
    elif t == "block":
        base = [[]]
        for sub in arg.get("arguments", []):
            subs = alternatives(sub)
            base = [b + s for b in base for s in subs][:8]
    else:
        base = [[("str",)]]
    base = [[("lit", tok) for tok in token] + b for b in base]
    flags = arg.get("flags", [])
    if "multiple" in flags:
        base = base + [b + b for b in base[:1]]
    if "optional" in flags:
        base = [[]] + base
    return base


def shapes(args):
    out = [[]]
    for a in args:
        alts = alternatives(a)
        out = [o + x for o in out for x in alts]
        if len(out) > 64:
            out = out[:64]
    # Keep variety: the fullest shapes first, then the shortest.
    out.sort(key=len, reverse=True)
    return out[:MAX_SHAPES - 1] + out[-1:] if len(out) > MAX_SHAPES else out


def fill(shape, keys, strs):
    line, ki, si = [], 0, 0
    for slot in shape:
        if slot[0] == "key":
            line.append(keys[ki] if ki < len(keys) else keys[-1])
            ki += 1
        elif slot[0] == "str":
            line.append(strs[si] if si < len(strs) else CANARY)
            si += 1
        else:
            line.append(slot[1])
    return line


def name(prefix, rest):
    """A key name; in cluster mode with the hash tag that puts every name of
    the test in one slot."""
    return prefix + TAG + rest


def lines_for(head, shape):
    nkeys = sum(1 for s in shape if s[0] == "key")
    nstrs = sum(1 for s in shape if s[0] == "str")
    sealed = [name(b"sess:", b"k%d" % i) for i in range(max(nkeys, 1))]
    out = [head + fill(shape, sealed, [CANARY] * nstrs)]
    for i in range(nkeys):
        for t in TYPES:
            src = name(b"plain:", t.encode())
            one_plain = [src if j == i else sealed[j] for j in range(nkeys)]
            one_sealed = [sealed[j] if j == i else src for j in range(nkeys)]
            out.append(head + fill(shape, one_plain, [CANARY] * nstrs))
            out.append(head + fill(shape, one_sealed, [CANARY] * nstrs))
    for j in range(nstrs):
        strs = [name(b"sess:", b"k0") if k == j else CANARY for k in range(nstrs)]
        out.append(head + fill(shape, [name(b"plain:", b"string")] * max(nkeys, 1), strs))
    if HASH_MODE and nkeys:
        # The first key a sealed hash, or a sealed name that does not exist
        # yet (sess:k0 is a string: hash commands would only get WRONGTYPE).
        for first in (name(b"sess:", b"h0"), name(b"sess:", b"new")):
            out.append(head + fill(shape, [first] + sealed[1:], [CANARY] * nstrs))
    return out


def populate(nodes, proxy):
    """Every node emptied, the plaintext sources written directly to the
    node that holds the test's slot (nodes[0])."""
    for n in nodes:
        n.flushall()
    direct = nodes[0]
    direct.set(name(b"plain:", b"string"), CANARY)
    direct.rpush(name(b"plain:", b"list"), CANARY)
    direct.sadd(name(b"plain:", b"set"), CANARY)
    direct.zadd(name(b"plain:", b"zset"), {CANARY: 1})
    direct.hset(name(b"plain:", b"hash"), "f", CANARY)
    direct.xadd(name(b"plain:", b"stream"), {"f": CANARY}, id="1-1")
    direct.geoadd(name(b"plain:", b"geo"), (13.36, 38.11, CANARY))
    direct.pfadd(name(b"plain:", b"hll"), CANARY)
    # A properly sealed value, written through respseal (on a new
    # connection if the last command left this one in another state).
    r = proxy.cmd("SET", name(b"sess:", b"k0"), CANARY)
    if r != b"OK":
        proxy.connect()
        r = proxy.cmd("SET", name(b"sess:", b"k0"), CANARY)
    assert r == b"OK", r
    if HASH_MODE:
        r = proxy.cmd("HSET", name(b"sess:", b"h0"), "f", CANARY)
        assert r in (1, b"1"), r


# The sess: names the lines use; with --names none may be (part of) a
# key name in Redis.
CLIENT_NAMES = (b"sess:k", b"sess:h0", b"sess:new")


def violations(nodes):
    found = []
    for direct, db in [(n, db) for n in nodes for db in DATABASES]:
        direct.execute_command("SELECT", db)
        if NAMES_MODE:
            for key in direct.scan_iter(count=1000):
                if any(c in key for c in CLIENT_NAMES):
                    found.append(f"db{db} {key!r} is a client's name in plain")
        for key in direct.scan_iter(match="sess:*", count=1000):
            t = direct.type(key)
            if t == b"none":
                continue  # expired between SCAN and TYPE (PEXPIRE … 1)
            if t == b"hash" and HASH_MODE:
                # Every field's value is an envelope (the rule seals "*").
                # Field names are stored as they are, by design (a line may
                # well put the canary there); values never.
                for f, v in direct.hgetall(key).items():
                    if not (v.startswith(MAGIC) and len(v) >= 56) or CANARY in v:
                        found.append(f"db{db} {key!r} field {f!r} holds a non-envelope {v[:40]!r}")
                continue
            if t != b"string":
                found.append(f"db{db} {key!r} is a {t.decode()}")
                continue
            v = direct.get(key)
            if v is None:
                continue
            if not (v.startswith(MAGIC) and len(v) >= 56):
                found.append(f"db{db} {key!r} holds a non-envelope {v[:40]!r}")
            d = direct.dump(key) or b""
            if CANARY in d:
                found.append(f"db{db} {key!r} holds the canary")
        direct.execute_command("SELECT", 0)
    return found


HASH_MODE = "--hash" in sys.argv
NAMES_MODE = "--names" in sys.argv
CLUSTER_MODE = "--cluster" in sys.argv
TAG = b"{b}" if CLUSTER_MODE else b""
# A cluster has database 0 only; standalone, a line may SELECT or MOVE.
DATABASES = (0,) if CLUSTER_MODE else (0, 1)


def connect_nodes(ports):
    """One connection per Redis port; in cluster mode the master holding
    the test's slot first."""
    nodes = [redis.Redis(port=p, protocol=2) for p in ports]
    if CLUSTER_MODE:
        def owns(n):
            try:
                n.type(name(b"sess:", b"k0"))
                return True
            except redis.exceptions.MovedError:
                return False
        owner = [n for n in nodes if owns(n)]
        assert len(owner) == 1, f"{len(owner)} of the masters given answer for the test's slot"
        nodes.remove(owner[0])
        nodes.insert(0, owner[0])
    return nodes


def main():
    proxy_port, redis_ports = int(sys.argv[1]), [int(p) for p in sys.argv[2].split(",")]
    nodes = connect_nodes(redis_ports)
    # Read raw, without redis-py's reply callback for COMMAND.
    conn = redis.Redis(port=redis_ports[0], protocol=3).connection_pool.get_connection()
    conn.send_command("COMMAND", "DOCS")
    docs = conn.read_response()
    proxy = Raw(proxy_port)
    commands = set()
    sent = refused = errors = 0
    problems = []
    entries = []
    for name, doc in sorted(docs.items()):
        name = name.decode() if isinstance(name, bytes) else name
        doc = {(k.decode() if isinstance(k, bytes) else k): v for k, v in doc.items()}
        if name in SKIP:
            continue
        subs = doc.get(b"subcommands") or doc.get("subcommands")
        if subs:
            for sub, sdoc in sorted(subs.items()):
                sub = sub.decode() if isinstance(sub, bytes) else sub
                sdoc = {(k.decode() if isinstance(k, bytes) else k): v for k, v in sdoc.items()}
                head = [p.upper().encode() for p in sub.split("|")]
                entries.append((sub, head, sdoc))
        else:
            entries.append((name, [name.upper().encode()], doc))
    for label, head, doc in entries:
        args = [decode(a) for a in doc.get("arguments", [])]
        commands.add(label)
        for shape in shapes(args):
            for line in lines_for(head, shape):
                populate(nodes, proxy)
                try:
                    r = proxy.cmd(*line)
                except (ConnectionError, socket.timeout, OSError) as e:
                    problems.append(f"{show(line)}: connection {e}")
                    proxy.connect()
                    continue
                sent += 1
                if isinstance(r, RuntimeError):
                    if str(r).startswith("ERR respseal"):
                        refused += 1
                    else:
                        errors += 1
                for v in violations(nodes):
                    problems.append(f"{show(line)} -> {v}")
    print(f"boundary: {len(commands)} commands and subcommands from COMMAND DOCS, {sent} lines sent, "
          f"{refused} refused by respseal, {errors} refused by Redis, {len(problems)} problems")
    print("boundary: skipped: " + ", ".join(f"{k} ({v})" for k, v in sorted(SKIP.items())))
    if problems:
        by_command = sorted({p.split(" ")[0] for p in problems})
        print("boundary: commands that left plaintext under a sealed name: " + ", ".join(by_command))
    for p in problems[:50]:
        print("PROBLEM:", p)
    assert proxy.cmd("PING") == b"PONG", "respseal stopped answering"
    assert len(commands) >= 200, f"only {len(commands)} commands generated: is COMMAND DOCS parsed?"
    assert refused > 100 and sent - refused - errors > 100, "the run exercised too little to mean anything"
    sys.exit(1 if problems else 0)


def decode(a):
    if isinstance(a, dict):
        return {(k.decode() if isinstance(k, bytes) else k): decode(v) for k, v in a.items()}
    if isinstance(a, (list, set, tuple)):
        return [decode(x) for x in a]
    if isinstance(a, bytes):
        return a.decode(errors="replace")
    return a


def show(line):
    return " ".join(x.decode(errors="replace")[:30] for x in line)


if __name__ == "__main__":
    main()
