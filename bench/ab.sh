#!/usr/bin/env bash
# Quick A/B of respseal builds: bench/ab.sh DEPTH REPS BIN [BIN ...]
#
# Starts one redis-server, one respseal per BIN (shared mode, sealing key:*,
# extra flags after the binary path are not supported: wrap them in a small
# script) and twemproxy, fills the keys through each, then runs
# redis-benchmark GET and SET (1 KiB, 50 clients, -P DEPTH) against direct
# Redis, twemproxy and every respseal, REPS times, interleaved. Prints the
# median rps, the ratio to direct Redis and the proxy's CPU time per request
# (/proc/PID/stat). Targets run in a new random order each repetition. Much
# quicker than bench/run.sh (about 1 minute per repetition), for comparing
# builds while working; bench/run.sh is the report of record.
# AB_SIZE (default 1024) sets the value size in bytes and AB_KEYSPACE
# (default 100000) the number of keys, e.g. AB_SIZE=16384 AB_KEYSPACE=10000.
# AB_TESTS (default "get set") picks the workloads; "evalsha" runs
# EVALSHA of a script that GETs one key (s:RAND, not sealed: the same
# routing as a declared script, without its sealing), the request a
# session store that runs a script per request sends.
set -euo pipefail
[ "$#" -ge 3 ] || { echo "usage: $0 DEPTH REPS BIN [BIN ...]" >&2; exit 64; }
DEPTH=$1; REPS=$2; shift 2
BINS=("$@")
SIZE=${AB_SIZE:-1024}
KEYS=${AB_KEYSPACE:-100000}
TESTS=${AB_TESTS:-get set}
# Values above 4 KiB: fewer requests, in proportion (a quarter at 16 KiB).
N=$(( (DEPTH == 1 ? 100000 : 500000) * 4096 / (SIZE > 4096 ? SIZE : 4096) ))
W="$(mktemp -d /tmp/respseal-ab.XXXXXX)"
. "$(dirname "$0")/lib.sh"

start_redis
"${BINS[0]}" keygen --out "$W/key" >/dev/null
targets=("direct:$RP:0")
i=0
for b in "${BINS[@]}"; do
    port=$(free_port)
    "$b" serve --listen "127.0.0.1:$port" --backend "redis://127.0.0.1:$RP/1" --seal 'key:*' \
        --key-file "$W/key" --log warn >"$W/rs$i.log" 2>&1 &
    PIDS+=($!); wait_port "$port"
    targets+=("rs$i:$port:$!")
    i=$((i + 1))
done
TW=$(free_port)
printf 'ab:\n  listen: 127.0.0.1:%s\n  redis: true\n  preconnect: true\n  servers:\n    - 127.0.0.1:%s:1\n' "$TW" "$RP" >"$W/nc.yml"
nutcracker -c "$W/nc.yml" -o "$W/nc.log" &
PIDS+=($!); wait_port "$TW"
targets+=("twem:$TW:$!")
for t in "${targets[@]}"; do
    port=$(cut -d: -f2 <<<"$t")
    redis-benchmark -p "$port" -t set -d "$SIZE" -r "$KEYS" -n $((KEYS * 2)) -P 16 -q >/dev/null
done
SHA=$(redis-cli -p "$RP" SCRIPT LOAD "return redis.call('GET', KEYS[1])")
for rep in $(seq 1 "$REPS"); do
    # A new order each repetition: the position in the round showed a bias of
    # several percent on this machine.
    for t in $(printf '%s\n' "${targets[@]}" | shuf); do
        IFS=: read -r name port pid <<<"$t"
        for cmd in $TESTS; do
            c0=0; [ "$pid" != 0 ] && c0=$(cpu "$pid")
            case $cmd in
                evalsha) what=(EVALSHA "$SHA" 1 "s:__rand_int__") ;;
                *) what=(-t "$cmd") ;;
            esac
            rps=$(redis-benchmark -p "$port" -d "$SIZE" -r "$KEYS" -n "$N" -c 50 -P "$DEPTH" -q "${what[@]}" 2>/dev/null \
                | tr '\r' '\n' | grep -i "requests per second" | tail -1 | sed 's/.*: \([0-9.]*\) requests.*/\1/')
            c1=0; [ "$pid" != 0 ] && c1=$(cpu "$pid")
            echo "$name $cmd $rps $c0 $c1"
        done
    done
done >"$W/results"
python3 - "$W/results" "$N" "$(getconf CLK_TCK)" "${BINS[@]}" <<'PY'
import collections, statistics, sys
path, n, clk, bins = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rps, cpu = collections.defaultdict(list), collections.defaultdict(list)
for line in open(path):
    name, cmd, r, c0, c1 = line.split()
    rps[(name, cmd)].append(float(r))
    cpu[(name, cmd)].append((int(c1) - int(c0)) / clk * 1e6 / n)
label = {f"rs{i}": b for i, b in enumerate(bins)}
for (name, cmd), values in sorted(rps.items()):
    med = statistics.median(values)
    direct = statistics.median(rps[("direct", cmd)])
    us = "" if name == "direct" else f"  proxy CPU {statistics.median(cpu[(name, cmd)]):.2f} us/req"
    print(f"{label.get(name, name):40} {cmd}  {med:9,.0f} rps  {med / direct:.2f}x direct{us}  "
          f"runs {[int(v) for v in values]}")
PY
