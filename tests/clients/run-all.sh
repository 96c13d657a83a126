#!/usr/bin/env bash
# Run every real-client compatibility check against a Redis-protocol endpoint
# (plain Redis, or respseal in front of one).
#
# usage: tests/clients/run-all.sh PORT [HOST]
#
# Installs what is missing first (npm ci in node/ when node_modules is missing
# or does not match package-lock.json; pip install -r python/requirements.txt
# when redis-py 8.1.0 is not importable), then runs:
#   node check.mjs  for redis5, redis6, ioredis5, ioredis6
#   python check.py for protocol 2 and 3
#   redis-cli.sh
# One line per check, then exactly "N passed, N failed". Exit status is
# non-zero when any check failed (or deps could not be installed).
set -u

PORT=${1:?usage: run-all.sh PORT [HOST]}
HOST=${2:-127.0.0.1}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-40} # each check bounds itself at ~20 s; this is a backstop
PY_REDIS_VERSION=8.1.0

log() { echo "run-all: $*" >&2; }

# ---------------------------------------------------------------- dependencies
ensure_node_deps() {
  local dir="$HERE/node" stamp="$HERE/node/node_modules/.respseal-lock.sha256"
  local want have=""
  command -v node >/dev/null && command -v npm >/dev/null || { log "node/npm not found"; return 1; }
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [[ -f "$stamp" ]] && have=$(cat "$stamp")
  local missing=0 pkg
  for pkg in redis5 redis6 ioredis5 ioredis6; do
    [[ -f "$dir/node_modules/$pkg/package.json" ]] || missing=1
  done
  if [[ $missing -eq 1 || "$want" != "$have" ]]; then
    log "node_modules missing or stale: npm ci"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || { log "npm ci failed"; return 1; }
    echo "$want" >"$stamp"
  fi
}

py_redis_ok() {
  "$PYTHON" -c "import sys, redis; sys.exit(0 if redis.__version__ == '$PY_REDIS_VERSION' else 1)" 2>/dev/null
}

ensure_py_deps() {
  command -v "$PYTHON" >/dev/null || { log "$PYTHON not found"; return 1; }
  if ! py_redis_ok; then
    log "redis-py $PY_REDIS_VERSION not importable: pip install -r python/requirements.txt"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$HERE/python/requirements.txt" >&2 ||
      { log "pip install failed"; return 1; }
    py_redis_ok || { log "redis-py $PY_REDIS_VERSION still not importable after pip install"; return 1; }
  fi
}

# ---------------------------------------------------------------- checks
pass=0
fail=0
run_check() { # NAME CMD...
  local name=$1 out rc summary
  shift
  out=$(timeout --kill-after=5 "$CHECK_TIMEOUT" "$@" 2>&1)
  rc=$?
  [[ $rc -eq 124 ]] && out+=$'\n'"(killed by run-all after ${CHECK_TIMEOUT} s)"
  # the check's own last line, without its "N passed, N failed" wording
  summary=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1 | sed -E 's/([0-9]+) passed, ([0-9]+) failed/\1 ok, \2 bad/')
  if [[ $rc -eq 0 ]]; then
    pass=$((pass + 1))
    printf 'ok   %-22s %s\n' "$name" "$summary"
  else
    fail=$((fail + 1))
    printf 'FAIL %-22s exit %d\n' "$name" "$rc"
    printf '%s\n' "$out" | grep -v '^ok ' | sed -E 's/([0-9]+) passed, ([0-9]+) failed/\1 ok, \2 bad/; s/^/       | /'
  fi
}

dep_fail=0
if ensure_node_deps; then
  for c in redis5 redis6 ioredis5 ioredis6; do
    run_check "node $c" node "$HERE/node/check.mjs" --host "$HOST" --port "$PORT" --client "$c"
  done
else
  dep_fail=1
  for c in redis5 redis6 ioredis5 ioredis6; do
    fail=$((fail + 1))
    printf 'FAIL %-22s node dependencies could not be installed\n' "node $c"
  done
fi

if ensure_py_deps; then
  for p in 2 3; do
    run_check "python redis-py p$p" "$PYTHON" "$HERE/python/check.py" --host "$HOST" --port "$PORT" --protocol "$p"
  done
else
  dep_fail=1
  for p in 2 3; do
    fail=$((fail + 1))
    printf 'FAIL %-22s python dependencies could not be installed\n' "python redis-py p$p"
  done
fi

if command -v redis-cli >/dev/null; then
  run_check "redis-cli" bash "$HERE/redis-cli.sh" "$PORT" "$HOST"
else
  fail=$((fail + 1))
  printf 'FAIL %-22s redis-cli not installed\n' "redis-cli"
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 && $dep_fail -eq 0 ]]
