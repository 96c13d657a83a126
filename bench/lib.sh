# Shared by bench/ab.sh, hash.sh, cluster.sh and instr.sh (sourced after W
# is set): the processes they start are stopped and W removed on exit; free
# ports, waiting for a listener, one throwaway Redis, a process's CPU ticks.
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT [TENTHS]: up to TENTHS tenths of a second (default 100).
wait_port() { for _ in $(seq 1 "${2:-100}"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
# start_redis: a redis-server without persistence on a free port, in $RP.
start_redis() {
    RP=$(free_port)
    redis-server --bind 127.0.0.1 --port "$RP" --save '' --appendonly no --dir "$W" >/dev/null 2>&1 &
    PIDS+=($!); wait_port "$RP"
}
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
