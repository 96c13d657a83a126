#!/usr/bin/env bash
# respseal benchmark: direct Redis vs respseal (shared and dedicated links)
# vs twemproxy vs haproxy (TCP), all on this machine, loopback only.
#
#   bench/run.sh                 # full run (~10-12 minutes)
#   BENCH_QUICK=1 bench/run.sh   # smoke run (~1 minute, numbers not meaningful)
#
# See bench/README.md for what is measured and every knob.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
BIN="${RESPSEAL_BIN:-$REPO_DIR/target/release/respseal}"
SHARED_LINKS="${BENCH_SHARED_LINKS:-}"   # empty: respseal's default

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -x "$BIN" ] || die "respseal binary not found at $BIN (build it with cargo build --release, or set RESPSEAL_BIN)"

# ---------------------------------------------------------------- deps
need_pkgs=()
command -v redis-server    >/dev/null || need_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null || need_pkgs+=(redis-tools)
command -v redis-cli       >/dev/null || need_pkgs+=(redis-tools)
command -v nutcracker      >/dev/null || need_pkgs+=(nutcracker)
command -v haproxy         >/dev/null || need_pkgs+=(haproxy)
command -v python3         >/dev/null || need_pkgs+=(python3)
command -v ss              >/dev/null || need_pkgs+=(iproute2)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# File descriptors: 1000 idle clients (+1000 backend links in dedicated mode),
# Redis maxclients 10000.
hard_nofile="$(ulimit -Hn)"
if [ "$hard_nofile" = unlimited ] || [ "$hard_nofile" -gt 65536 ]; then hard_nofile=65536; fi
ulimit -n "$hard_nofile" || true

# ---------------------------------------------------------------- cleanup
WORK="$(mktemp -d /tmp/respseal-bench.XXXXXX)"
PIDS=()
DRIVER_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DRIVER_PID" 2>/dev/null || true
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    local i pid
    for ((i=${#PIDS[@]}-1; i>=0; i--)); do
        pid="${PIDS[$i]}"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept work dir $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a private copy of the binary: a rebuild during the run cannot change
# what is measured, and the report names what was measured.
BENCH_BIN_ORIG="$BIN"
BENCH_BIN_MTIME="$(date -r "$BIN" '+%Y-%m-%d %H:%M:%S')"
BENCH_BIN_SHA="$(sha256sum "$BIN" | cut -c1-12)"
BENCH_COMMIT="$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
BENCH_COMMIT_TIME="$(git -C "$REPO_DIR" log -1 --format=%ci 2>/dev/null || echo unknown)"
BENCH_STALE=0
commit_epoch="$(git -C "$REPO_DIR" log -1 --format=%ct 2>/dev/null || echo 0)"
[ "$(date -r "$BIN" +%s)" -lt "$commit_epoch" ] && BENCH_STALE=1
BENCH_DIRTY="$(git -C "$REPO_DIR" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
cp "$BIN" "$WORK/respseal"
BIN="$WORK/respseal"
export BENCH_BIN_ORIG BENCH_BIN_MTIME BENCH_BIN_SHA BENCH_COMMIT BENCH_COMMIT_TIME BENCH_DIRTY BENCH_STALE
[ "$BENCH_STALE" = 1 ] && log "note: $BENCH_BIN_ORIG is older than the HEAD commit (rebuild with cargo build --release to measure HEAD)"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port NAME PID PORT LOGFILE: poll until PORT accepts, PID must stay alive.
wait_port() {
    local name="$1" pid="$2" port="$3" logf="$4" deadline=$((SECONDS + 15))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logf" >&2 || true
            die "$name (pid $pid) exited before listening on $port"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$logf" >&2 || true; die "$name did not listen on $port within 15s"; }
        sleep 0.1
    done
}

# ---------------------------------------------------------------- redis
REDIS_PORT="$(free_port)"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" --maxclients 10000 --protected-mode yes \
    --daemonize no &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_port redis-server "$REDIS_PID" "$REDIS_PORT" "$WORK/redis.log"
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"

# ---------------------------------------------------------------- respseal
# The sealed keys live in database 1 (backend URL /1) so that the plain
# targets (direct, twemproxy, haproxy: database 0) never overwrite them with
# plaintext: a plaintext value read through respseal is not a fair GET.
KEYFILE="$WORK/respseal.key"
"$BIN" keygen --out "$KEYFILE" >/dev/null
extra=()
[ -n "$SHARED_LINKS" ] && extra+=(--shared-links "$SHARED_LINKS")

# start_respseal LOGNAME LABEL DB [ARGS...]: one respseal instance on a free
# port, backend database DB, logs in $WORK/LOGNAME.log; waits until it
# listens and sets RS_PORT and RS_PID.
start_respseal() {
    local logname=$1 label=$2 db=$3
    shift 3
    RS_PORT="$(free_port)"
    "$BIN" serve --listen "127.0.0.1:$RS_PORT" --backend "redis://127.0.0.1:$REDIS_PORT/$db" \
        --log warn "$@" >"$WORK/$logname.log" 2>&1 &
    RS_PID=$!; PIDS+=("$RS_PID")
    wait_port "$label" "$RS_PID" "$RS_PORT" "$WORK/$logname.log"
}
sealing=(--seal 'key:*' --key-file "$KEYFILE")

start_respseal respseal-shared "respseal (shared)" 1 "${sealing[@]}" "${extra[@]}"
RS_SHARED_PORT=$RS_PORT; RS_SHARED_PID=$RS_PID
start_respseal respseal-dedicated "respseal (dedicated)" 1 "${sealing[@]}" --dedicated
RS_DED_PORT=$RS_PORT; RS_DED_PID=$RS_PID
log "respseal shared pid $RS_SHARED_PID on :$RS_SHARED_PORT, dedicated pid $RS_DED_PID on :$RS_DED_PORT"

# Optional: respseal in shared mode on one worker thread (--threads 1), to
# show the thread-count trade-off on a machine this small.
RS_1T_PORT=""; RS_1T_PID=""
if [ "${BENCH_THREADS1:-0}" = 1 ]; then
    start_respseal respseal-1t "respseal (1 thread)" 1 "${sealing[@]}" --threads 1 "${extra[@]}"
    RS_1T_PORT=$RS_PORT; RS_1T_PID=$RS_PID
    log "respseal shared on one thread pid $RS_1T_PID on :$RS_1T_PORT"
fi

# Optional: respseal with no seal rule (pure forwarding, database 2), to
# separate the proxy's own cost from the sealing cost.
RS_NOSEAL_PORT=""; RS_NOSEAL_PID=""
if [ "${BENCH_NOSEAL:-0}" = 1 ]; then
    start_respseal respseal-noseal "respseal (no seal)" 2 "${extra[@]}"
    RS_NOSEAL_PORT=$RS_PORT; RS_NOSEAL_PID=$RS_PID
    log "respseal without seal rules pid $RS_NOSEAL_PID on :$RS_NOSEAL_PORT"
fi

# ---------------------------------------------------------------- twemproxy
# Defaults kept on purpose: server_connections 1, no timeout, 16 KiB mbufs.
TW_PORT="$(free_port)"; TW_STATS_PORT="$(free_port)"
cat >"$WORK/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$TW_PORT
  redis: true
  preconnect: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  servers:
    - 127.0.0.1:$REDIS_PORT:1
EOF
nutcracker -t -c "$WORK/nutcracker.yml" >/dev/null 2>&1 || die "nutcracker rejected $WORK/nutcracker.yml"
nutcracker -c "$WORK/nutcracker.yml" -o "$WORK/nutcracker.log" -s "$TW_STATS_PORT" -a 127.0.0.1 -v 4 &
TW_PID=$!; PIDS+=("$TW_PID")
wait_port twemproxy "$TW_PID" "$TW_PORT" "$WORK/nutcracker.log"

# ---------------------------------------------------------------- haproxy
HAP_PORT="$(free_port)"
hap_maxconn=$(( (hard_nofile - 100) / 2 )); [ "$hap_maxconn" -gt 20000 ] && hap_maxconn=20000
cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn $hap_maxconn
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend fe
    bind 127.0.0.1:$HAP_PORT
    maxconn $hap_maxconn
    default_backend be
backend be
    server redis 127.0.0.1:$REDIS_PORT maxconn $hap_maxconn
EOF
haproxy -q -c -f "$WORK/haproxy.cfg" || die "haproxy rejected $WORK/haproxy.cfg"
haproxy -q -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAP_PID=$!; PIDS+=("$HAP_PID")
wait_port haproxy "$HAP_PID" "$HAP_PORT" "$WORK/haproxy.log"
log "twemproxy pid $TW_PID on :$TW_PORT, haproxy pid $HAP_PID on :$HAP_PORT"

# ---------------------------------------------------------------- measure
export BENCH_WORK="$WORK" BENCH_REPO="$REPO_DIR" BENCH_BIN="$BIN" \
    REDIS_PORT REDIS_PID RS_SHARED_PORT RS_SHARED_PID RS_DED_PORT RS_DED_PID RS_NOSEAL_PORT RS_NOSEAL_PID \
    RS_1T_PORT RS_1T_PID \
    TW_PORT TW_PID HAP_PORT HAP_PID
python3 "$BENCH_DIR/bench.py" &
DRIVER_PID=$!
set +e
wait "$DRIVER_PID"; rc=$?
set -e
DRIVER_PID=""
for f in respseal-shared respseal-dedicated respseal-1t respseal-noseal; do
    [ -f "$WORK/$f.log" ] || continue
    n="$(grep -c -E 'WARN|ERROR' "$WORK/$f.log" || true)"
    [ "$n" = 0 ] || { log "$f logged $n warnings/errors; first lines:"; head -n 5 "$WORK/$f.log" >&2; }
done
exit "$rc"
