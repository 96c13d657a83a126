# Shared by bench/ab.sh and bench/hash.sh (sourced after W is set): the
# processes they start are stopped and W removed on exit; free ports,
# waiting for a listener, a process's CPU ticks.
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
