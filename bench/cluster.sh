#!/usr/bin/env bash
# Scaling benchmark, one run: a 3-master Redis Cluster on loopback read and
# written by redis-benchmark's cluster mode directly (a cluster-aware
# client), and through respseal (redis-cluster://, sealing every key);
# beside them a single respseal in front of one Redis, and that Redis
# directly.
#
#   bench/cluster.sh [REPS] [BIN]
#   BIN_B=other/respseal bench/cluster.sh 5   # adds respseal-cluster-b: two builds, same run
#
# redis-benchmark -t set,get -d 100 -r 100000, 50 clients, depth 1 and 16,
# REPS times with the targets in a new random order each time. The keys
# are key:{tag}:__rand_int__ (redis-benchmark --cluster adds the tag), and
# respseal seals key:*. Prints median rps, the ratio to the cluster read
# directly, and respseal's CPU time per request (/proc/PID/stat). The
# machine's cores are shared by everything, the three cluster nodes
# included.
set -euo pipefail
REPS=${1:-5}
BIN=${2:-target/release/respseal}
[ -x "$BIN" ] || cargo build --release --quiet
W="$(mktemp -d /tmp/respseal-cluster.XXXXXX)"
. "$(dirname "$0")/lib.sh"

NODES=()
for i in 1 2 3; do
    p=$(free_port)
    mkdir -p "$W/n$p"
    (cd "$W/n$p" && exec redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$(free_port)" >/dev/null 2>&1) &
    PIDS+=($!); wait_port "$p"; NODES+=("127.0.0.1:$p")
done
redis-cli --cluster create "${NODES[@]}" --cluster-yes >/dev/null
for _ in $(seq 1 100); do
    ok=1
    for n in "${NODES[@]}"; do
        redis-cli -h 127.0.0.1 -p "${n##*:}" CLUSTER INFO | grep -q cluster_state:ok || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
done
start_redis
SP=$RP

"$BIN" keygen --out "$W/key" >/dev/null
printf '[[rule]]\npattern = "key:*"\n[[key]]\nfile = "%s"\nstate = "primary"\n' "$W/key" >"$W/c.toml"
CP=$(free_port)
"$BIN" serve --listen "127.0.0.1:$CP" --backend "redis-cluster://${NODES[0]},${NODES[1]}" --config "$W/c.toml" \
    --log warn >"$W/rc.log" 2>&1 &
CPID=$!; PIDS+=($CPID); wait_port "$CP"
OP=$(free_port)
"$BIN" serve --listen "127.0.0.1:$OP" --backend "redis://127.0.0.1:$SP" --config "$W/c.toml" \
    --log warn >"$W/rs.log" 2>&1 &
OPID=$!; PIDS+=($OPID); wait_port "$OP"

# fred itself as the data path (the one respseal did not choose): its own
# CPU per request against the same cluster, 50 tasks, same keys and values.
FRED="${FRED_BIN:-$(dirname "$BIN")/examples/fred_cluster_load}"
[ -x "$FRED" ] || cargo build --release --quiet --example fred_cluster_load

targets=("cluster-direct:${NODES[0]##*:}:0:--cluster" "respseal-cluster:$CP:$CPID:" \
         "respseal-one-redis:$OP:$OPID:" "one-redis-direct:$SP:0:")
if [ -n "${BIN_B:-}" ]; then
    BP=$(free_port)
    "$BIN_B" serve --listen "127.0.0.1:$BP" --backend "redis-cluster://${NODES[0]},${NODES[1]}" --config "$W/c.toml" \
        --log warn >"$W/rb.log" 2>&1 &
    BPID=$!; PIDS+=($BPID); wait_port "$BP"
    targets+=("respseal-cluster-b:$BP:$BPID:")
fi
for rep in $(seq 1 "$REPS"); do
    for t in $(printf '%s\n' "${targets[@]}" | shuf); do
        IFS=: read -r name port pid flag <<<"$t"
        for depth in 1 16; do
            n=$(( depth == 1 ? 100000 : 400000 ))
            c0=0; [ "$pid" != 0 ] && c0=$(cpu "$pid")
            # shellcheck disable=SC2086 # $flag is one word or none
            redis-benchmark -p "$port" $flag -n "$n" -c 50 -P "$depth" -r 100000 -d 100 -q -t set,get 2>/dev/null \
                | tr '\r' '\n' | grep -E '^(SET|GET): [0-9.]+ requests per second' \
                | sed 's/^\([A-Z]*\): \([0-9.]*\) .*/\1 \2/' >"$W/out"
            c1=0; [ "$pid" != 0 ] && c1=$(cpu "$pid")
            while read -r test rps; do
                echo "$name $depth $test $rps $c0 $c1 $((n * 2))"
            done <"$W/out"
        done
    done
    for depth in 1 16; do
        "$FRED" "${NODES[0]}" 50 "$depth" $(( depth == 1 ? 100000 : 400000 )) \
            | sed -n 's/^fred \([A-Z]*\) depth [0-9]*: \([0-9]*\) rps, \([0-9.]*\) us.*/\1 \2 \3/p' \
            | while read -r test rps us; do echo "fred-client $depth $test $rps $us"; done
    done
done >"$W/results"
python3 - "$W/results" "$(getconf CLK_TCK)" <<'PY'
import collections, statistics, sys
rps, cpu = collections.defaultdict(list), collections.defaultdict(list)
fred = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("fred-client"):
        _, depth, test, r, us = line.split()
        rps[("fred-client", depth, test)].append(float(r))
        fred[(depth, test)].append(float(us))
        continue
    name, depth, test, r, c0, c1, n = line.split()
    rps[(name, depth, test)].append(float(r))
    # CPU over both tests of the run, per request of either.
    cpu[(name, depth)].append((int(c1) - int(c0)) / int(sys.argv[2]) * 1e6 / int(n))
order = ["cluster-direct", "respseal-cluster", "respseal-cluster-b", "fred-client", "respseal-one-redis", "one-redis-direct"]
print(f"{'':22} {'depth':>5} {'test':4} {'median rps':>12}  {'/ cluster direct':>16}  proxy CPU/req")
for depth in ("1", "16"):
    for test in ("SET", "GET"):
        base = statistics.median(rps[("cluster-direct", depth, test)])
        for name in order:
            v = rps.get((name, depth, test))
            if not v:
                continue
            m = statistics.median(v)
            us = f"{statistics.median(cpu[(name, depth)]):.1f} us" if name.startswith("respseal") else ""
            if name == "fred-client":
                us = f"{statistics.median(fred[(depth, test)]):.1f} us"
            print(f"{name:22} {depth:>5} {test:4} {m:12,.0f}  {m / base:15.2f}x  {us:>10}   runs {[int(x) for x in v]}")
PY
