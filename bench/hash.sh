#!/usr/bin/env bash
# HGETALL of a 20-field Spring-Session-shaped session, direct and through
# respseal (shared mode), in one run: bench/hash.sh [REPS] [BIN]
#
# Each session hash has 17 sessionAttr:* fields (sealed under the rule
# pattern = "spring:session:sessions:*", fields = "sessionAttr:*"; 100-byte
# values) and 3 plaintext metadata fields. 1000 sessions are written through
# respseal (so the sealed ones hold envelopes) and directly into another
# database (plaintext, for the direct target), named with redis-benchmark's
# 12-digit __rand_int__. redis-benchmark then reads
# random sessions with HGETALL (50 clients, depth 1 and 16), REPS times,
# interleaved. Prints median rps, the ratio to direct Redis and respseal's
# CPU time per request (/proc/PID/stat).
set -euo pipefail
REPS=${1:-5}
BIN=${2:-target/release/respseal}
[ -x "$BIN" ] || cargo build --release --quiet
W="$(mktemp -d /tmp/respseal-hash.XXXXXX)"
. "$(dirname "$0")/lib.sh"

start_redis
"$BIN" keygen --out "$W/key" >/dev/null
printf '[[rule]]\npattern = "spring:session:sessions:*"\nfields = "sessionAttr:*"\n[[key]]\nfile = "%s"\nstate = "primary"\n' \
    "$W/key" >"$W/c.toml"
PP=$(free_port)
"$BIN" serve --listen "127.0.0.1:$PP" --backend "redis://127.0.0.1:$RP/1" --config "$W/c.toml" --log warn >"$W/rs.log" 2>&1 &
RPID=$!; PIDS+=($RPID); wait_port "$PP"
python3 - "$PP" "$RP" <<'PY'
import socket, sys
def conn(port, db):
    s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
    def cmd(*a):
        s.sendall(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a))
        return f.readline()
    if db is not None:
        cmd(b"SELECT", db)
    return cmd
# respseal's own database (1, from its backend URL) and db 0 directly.
for port, db in ((int(sys.argv[1]), None), (int(sys.argv[2]), b"0")):
    cmd = conn(port, db)
    for i in range(1000):
        args = [b"HSET", b"spring:session:sessions:%012d" % i, b"creationTime", b"1700000000000",
                b"lastAccessedTime", b"1700000000000", b"maxInactiveInterval", b"1800"]
        for a in range(17):
            args += [b"sessionAttr:attr%d" % a, b"v" * 100]
        r = cmd(*args)
        assert r.startswith(b":"), r
# Through respseal a session reads back whole and opened.
cmd = conn(int(sys.argv[1]), None)
assert cmd(b"HGETALL", b"spring:session:sessions:000000000007") == b"*40\r\n"
PY
targets=("direct:$RP:0" "respseal:$PP:$RPID")
for rep in $(seq 1 "$REPS"); do
    for t in $(printf '%s\n' "${targets[@]}" | shuf); do
        IFS=: read -r name port pid <<<"$t"
        for depth in 1 16; do
            n=$(( depth == 1 ? 50000 : 200000 ))
            c0=0; [ "$pid" != 0 ] && c0=$(cpu "$pid")
            rps=$(redis-benchmark -p "$port" -n "$n" -c 50 -P "$depth" -r 1000 -q \
                HGETALL "spring:session:sessions:__rand_int__" 2>/dev/null \
                | tr '\r' '\n' | grep -i "requests per second" | tail -1 | sed 's/.*: \([0-9.]*\) requests.*/\1/')
            c1=0; [ "$pid" != 0 ] && c1=$(cpu "$pid")
            echo "$name $depth $rps $c0 $c1 $n"
        done
    done
done >"$W/results"
python3 - "$W/results" "$(getconf CLK_TCK)" <<'PY'
import collections, statistics, sys
rps, cpu = collections.defaultdict(list), collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, depth, r, c0, c1, n = line.split()
    rps[(name, depth)].append(float(r))
    cpu[(name, depth)].append((int(c1) - int(c0)) / int(sys.argv[2]) * 1e6 / int(n))
for (name, depth), v in sorted(rps.items(), key=lambda kv: (int(kv[0][1]), kv[0][0])):
    d = statistics.median(rps[("direct", depth)])
    us = "" if name == "direct" else f"  proxy CPU {statistics.median(cpu[(name, depth)]):.1f} us/req"
    print(f"HGETALL 20 fields, depth {depth:>2}  {name:9} {statistics.median(v):9,.0f} rps  "
          f"{statistics.median(v) / d:.2f}x direct{us}  runs {[int(x) for x in v]}")
PY
