#!/usr/bin/env bash
# User-space instructions per request of respseal builds, under callgrind:
# bench/instr.sh [N] BIN [BIN ...]
#
# Starts one redis-server and, for each BIN, respseal under valgrind
# (shared mode, sealing key:*), fills 2,000 keys through it, zeroes the
# counters, runs N (default 10,000) GETs and then N SETs (1 KiB, 50 clients,
# depth 1) and prints the instructions respseal executed per request. Unlike
# CPU time on a shared 2-core VM, the count repeats from run to run (SET to
# within 0.1%, GET to within about 6%), so it shows a change in respseal's
# own code that bench/ab.sh cannot resolve from the noise. It leaves out the
# kernel (about three quarters of the proxy's CPU time at depth 1), and
# valgrind's CPU has no AVX-512, so the AES in it is the AES-NI path, not
# the VAES one.
set -euo pipefail
N=10000
[[ "${1:-}" =~ ^[0-9]+$ ]] && { N=$1; shift; }
[ "$#" -ge 1 ] || { echo "usage: $0 [N] BIN [BIN ...]" >&2; exit 64; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install -y valgrind)" >&2; exit 69; }
W="$(mktemp -d /tmp/respseal-instr.XXXXXX)"
. "$(dirname "$0")/lib.sh"

start_redis
"$1" keygen --out "$W/key" >/dev/null
for b in "$@"; do
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$b" serve --listen "127.0.0.1:$port" \
        --backend "redis://127.0.0.1:$RP/1" --seal 'key:*' --key-file "$W/key" --log warn >"$W/vg.log" 2>&1 &
    vpid=$!
    wait_port "$port" 300 # valgrind starts slowly
    redis-benchmark -p "$port" -t set -d 1024 -r 2000 -n 4000 -c 50 -q >/dev/null 2>&1
    line="$b"
    for cmd in get set; do
        rm -f "$W"/cg.out.*
        callgrind_control -z "$vpid" >/dev/null 2>&1
        redis-benchmark -p "$port" -t "$cmd" -d 1024 -r 2000 -n "$N" -c 50 -P 1 -q >/dev/null 2>&1
        callgrind_control -d "$vpid" >/dev/null 2>&1
        ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$W"/cg.out.*)
        line+="  $cmd $((ir / N)) instr/req"
    done
    kill "$vpid"; wait "$vpid" 2>/dev/null || true
    echo "$line"
done
