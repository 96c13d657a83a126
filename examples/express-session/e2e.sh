#!/usr/bin/env bash
# End-to-end test of the express-session example through respseal.
#
# usage: examples/express-session/e2e.sh [CLIENT[:MODE] ...]
#   CLIENT: redis6 (node-redis 6, RESP3) or redis5 (node-redis 5, RESP2)
#   MODE:   shared (default) or dedicated (respseal --dedicated)
#   default: redis6 redis5 redis6:dedicated redis5:dedicated
#
# For each scenario, in a fresh temp dir: a redis-server on a free port
# (--save "" --appendonly no --rdbcompression no, so RDB/DUMP bytes are plain),
# a key from `respseal keygen`, `respseal serve --seal 'sess:*'` in front of it,
# and app.js with REDIS_URL pointing at respseal. Every start is waited for by
# polling with a deadline. Then, with curl and two cookie jars:
#   - jar A counts 1..20, jar B counts 1..5 interleaved with A's 11..15;
#   - every key read directly from Redis (raw bytes) is a sessions key whose
#     value starts with 00 52 45 01, and the per-run plaintext canary the app
#     puts into each session is in no value, DUMP payload, key name or RDB;
#     through respseal the same keys read back as the plain JSON sessions;
#   - session A's ciphertext is copied onto session B's key inside Redis
#     (COPY ... REPLACE, then B's TTL put back): respseal must read B as nil,
#     so B's next request starts a new session (Counter: 1) while A goes on to 21;
#   - 8 more jars count 1..3 in parallel, and everything in Redis is checked again.
# Prints "ok ..." / "FAIL ..." per check and ends with exactly "N passed, N failed";
# exits non-zero on any failure. Every process started is killed on exit.
#
# Environment: RESPSEAL_BIN (default /work/bin/respseal, else target/{release,debug}
# of this repo), E2E_KEEP=1 keeps the temp dir (logs, snapshots) for inspection.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
START_TIMEOUT=${START_TIMEOUT:-20} # seconds, per process start
PARALLEL=8                          # concurrent cookie jars in the last step
CURL=(curl -sS --max-time 5)

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { # NAME DETAIL...
  fail=$((fail + 1))
  echo "FAIL $1"
  shift
  local line
  for line in "$@"; do printf '     %s\n' "$line"; done
}
log() { echo "e2e: $*" >&2; }

# ---------------------------------------------------------------- processes
PIDS=()
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/respseal-e2e-express.XXXXXX")
stop_pid() { # PID: TERM, then KILL after 5 s
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
stop_all() { # newest first: the app, then respseal, then Redis
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  PIDS=()
}
on_exit() {
  stop_all
  if [[ "${E2E_KEEP:-0}" == 1 ]]; then log "kept $TMPROOT"; else rm -rf "$TMPROOT"; fi
}
trap on_exit EXIT
interrupted() { # SIG EXIT-CODE
  bad "interrupted by SIG$1"
  echo "$pass passed, $fail failed"
  exit "$2"
}
trap 'interrupted INT 130' INT
trap 'interrupted TERM 143' TERM

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# wait_until WHAT PID LOGFILE CMD...: poll CMD every 50 ms until it succeeds;
# fail if PID exits first or START_TIMEOUT passes.
wait_until() {
  local what=$1 pid=$2 logf=$3
  shift 3
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      bad "$what started" "process $pid exited early; last lines of $logf:" "$(tail -n 15 "$logf" 2>/dev/null)"
      return 1
    fi
    "$@" && return 0
    if ((SECONDS >= deadline)); then
      bad "$what started" "not ready after ${START_TIMEOUT} s; last lines of $logf:" "$(tail -n 15 "$logf" 2>/dev/null)"
      return 1
    fi
    sleep 0.05
  done
}

# ---------------------------------------------------------------- prerequisites
find_bin() {
  if [[ -n "${RESPSEAL_BIN:-}" ]]; then echo "$RESPSEAL_BIN"; return; fi
  local c
  for c in /work/bin/respseal "$REPO/target/release/respseal" "$REPO/target/debug/respseal"; do
    [[ -x "$c" ]] && { echo "$c"; return; }
  done
  echo /work/bin/respseal
}
BIN=$(find_bin)

prereqs_ok=1
for tool in node npm curl redis-server redis-cli od cmp; do
  command -v "$tool" >/dev/null || { bad "prerequisite $tool" "not found on PATH"; prereqs_ok=0; }
done
[[ -x "$BIN" ]] || { bad "prerequisite respseal" "$BIN is not executable (set RESPSEAL_BIN)"; prereqs_ok=0; }

ensure_node_deps() { # npm ci when a dependency is missing or package-lock.json is newer than the install
  local nm="$HERE/node_modules" pkg stale=0
  for pkg in express express-session connect-redis redis redis5; do
    [[ -f "$nm/$pkg/package.json" ]] || stale=1
  done
  [[ -f "$nm/.package-lock.json" && ! "$HERE/package-lock.json" -nt "$nm/.package-lock.json" ]] || stale=1
  if ((stale)); then
    log "node_modules missing or stale: npm ci"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >&2 || return 1
  fi
}
if ((prereqs_ok)); then
  ensure_node_deps || { bad "npm ci" "could not install the example's dependencies"; prereqs_ok=0; }
fi

# ---------------------------------------------------------------- helpers
# hex of the first 4 bytes of FILE
magic_of() { head -c 4 "$1" | od -An -tx1 | tr -d ' \n'; }

# sid from the connect.sid cookie in a curl jar ("s%3A<sid>.<signature>")
sid_of() {
  awk -F'\t' '$6 == "connect.sid" { print $7 }' "$1" 2>/dev/null | tail -n 1 |
    sed -nE 's/^s%3A([^.]+)\..*$/\1/p'
}

# counter JAR: prints "<body>|<http code>"
counter() {
  local out
  out=$("${CURL[@]}" -b "$1" -c "$1" -w '|%{http_code}' "http://127.0.0.1:$APP_PORT/" 2>&1) || out+=" (curl exit $?)"
  printf '%s' "$out"
}

# expect_steps NAME JAR@N...: one request per step, in order; each must answer exactly "Counter: N"
expect_steps() {
  local name=$1 step jar n got
  shift
  for step in "$@"; do
    jar=${step%@*}
    n=${step##*@}
    got=$(counter "$jar")
    if [[ "$got" != "Counter: $n|200" ]]; then
      bad "$name" "request with $(basename "$jar"): expected 'Counter: $n' (HTTP 200)" "actual body|status: ${got@Q}"
      return 1
    fi
  done
  ok "$name"
}

# snapshot DIR: every key of our Redis, as raw bytes (see redis-raw.mjs)
snapshot() { node "$HERE/redis-raw.mjs" "$REDIS_PORT" "$1"; }

# file of KEY's GET bytes in snapshot DIR ("" when absent)
snap_file() { # DIR KEY EXT
  local i
  i=$(awk -F'\t' -v k="$2" '$2 == k { print $1 }' "$1/keys.tsv")
  [[ -n "$i" && -f "$1/$i.$3" ]] && echo "$1/$i.$3"
}
snap_pttl() { awk -F'\t' -v k="$2" '$2 == k { print $4 }' "$1/keys.tsv"; }

# check_sealed LABEL DIR EXPECTED-KEY...: the snapshot holds exactly these keys,
# all sealed strings with a TTL, and the canary is nowhere in Redis.
check_sealed() {
  local label=$1 dir=$2
  shift 2
  local first_key=$1 want got problems=() key f m pttl
  want=$(printf '%s\n' "$@" | sort)
  got=$(cut -f2 "$dir/keys.tsv" | sort)
  if [[ "$got" == "$want" ]]; then ok "$label: Redis holds exactly the $# session keys"; else
    bad "$label: Redis holds exactly the $# session keys" "expected: ${want//$'\n'/ }" "actual:   ${got//$'\n'/ }"
  fi
  while IFS=$'\t' read -r _ key type pttl; do
    f=$(snap_file "$dir" "$key" get)
    if [[ "$type" != string || -z "$f" ]]; then problems+=("$key: type $type, no GET value"); continue; fi
    m=$(magic_of "$f")
    [[ "$m" == 00524501 ]] || problems+=("$key: value starts with $m, not 00524501 ($(head -c 40 "$f" | od -An -c | tr -s ' ' | head -n 2 | tr '\n' ' '))")
    [[ "$pttl" =~ ^[0-9]+$ ]] && ((pttl > 0)) || problems+=("$key: PTTL $pttl (connect-redis sets EX 86400)")
  done <"$dir/keys.tsv"
  if ((${#problems[@]} == 0)); then ok "$label: every value in Redis is sealed (00 52 45 01) and has a TTL"; else
    bad "$label: every value in Redis is sealed (00 52 45 01) and has a TTL" "${problems[@]}"
  fi

  # the canary (and the session JSON around it) in GET values, DUMP payloads, key names
  local leaks=() idx ext
  while IFS=$'\t' read -r idx key _; do
    for ext in get dump; do
      [[ -f "$dir/$idx.$ext" ]] && grep -qaF -e "$CANARY" -e '"views"' -e '"cookie"' "$dir/$idx.$ext" &&
        leaks+=("$key: ${ext^^} bytes: $(head -c 60 "$dir/$idx.$ext" | tr -c '[:print:]' '.')")
    done
    [[ "$key" == *"$CANARY"* ]] && leaks+=("key name $key")
  done <"$dir/keys.tsv"
  if ((${#leaks[@]} == 0)); then ok "$label: no plaintext session data in any value, DUMP payload or key name"; else
    bad "$label: no plaintext session data in any value, DUMP payload or key name" "${leaks[@]}"
  fi

  # ... and in an RDB of the whole dataset (uncompressed: --rdbcompression no)
  local rdb="$dir/dump.rdb" rdblog="$dir/rdb.log"
  local rdb_ok=0 deadline=$((SECONDS + 10))
  if timeout 10 redis-cli -p "$REDIS_PORT" --rdb "$rdb" >"$rdblog" 2>&1; then
    # let Redis reap its RDB child before anything stops Redis (else the child outlives it as a zombie)
    while ((SECONDS < deadline)); do
      redis-cli -p "$REDIS_PORT" INFO persistence 2>/dev/null | tr -d '\r' | grep -qx 'rdb_bgsave_in_progress:0' && { rdb_ok=1; break; }
      sleep 0.05
    done
  fi
  if ((!rdb_ok)); then
    bad "$label: RDB has no plaintext session data" "redis-cli --rdb failed or its RDB child did not finish within 10 s: $(cat "$rdblog")"
  elif ! grep -qaF -- "$first_key" "$rdb"; then
    bad "$label: RDB has no plaintext session data" "control failed: key name $first_key not in the RDB, so the scan proves nothing"
  elif grep -qaF -e "$CANARY" -e '"views"' -- "$rdb"; then
    bad "$label: RDB has no plaintext session data" "canary or session JSON found in $rdb"
  else
    ok "$label: RDB has no plaintext session data"
  fi
}

# through_proxy [--raw|--no-raw] KEY: GET through respseal (--no-raw shows nil as "(nil)")
through_proxy() { timeout 10 redis-cli "$1" -p "$PROXY_PORT" GET "$2" 2>&1; }

# ---------------------------------------------------------------- one scenario
run_scenario() { # CLIENT MODE
  local client=$1 mode=$2 name="$1/$2"
  local dir
  dir=$(mktemp -d "$TMPROOT/$client-$mode.XXXX")
  CANARY="CANARY-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  echo "--- $name"

  # Redis
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --rdbcompression no --repl-diskless-sync-delay 0 --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
  local redis_pid=$!
  PIDS+=("$redis_pid")
  redis_is_ours() {
    [[ "$(timeout 2 redis-cli -p "$REDIS_PORT" INFO server 2>/dev/null | tr -d '\r' | grep '^process_id:')" == "process_id:$redis_pid" ]]
  }
  wait_until "$name: redis-server on $REDIS_PORT" "$redis_pid" "$dir/redis.log" redis_is_ours || return 1

  # respseal
  if ! "$BIN" keygen --out "$dir/seal.key" >"$dir/keygen.log" 2>&1; then
    bad "$name: respseal keygen" "$(cat "$dir/keygen.log")"
    return 1
  fi
  PROXY_PORT=$(free_port)
  local mode_args=()
  [[ "$mode" == dedicated ]] && mode_args=(--dedicated)
  "$BIN" serve --listen "127.0.0.1:$PROXY_PORT" --backend "redis://127.0.0.1:$REDIS_PORT" \
    --seal 'sess:*' --key-file "$dir/seal.key" "${mode_args[@]}" >"$dir/respseal.log" 2>&1 &
  local proxy_pid=$!
  PIDS+=("$proxy_pid")
  # ready = answers on PROXY_PORT *and* forwards to our Redis (a probe key set directly in Redis reads back through it)
  local probe="e2e:probe:$RANDOM$RANDOM"
  timeout 2 redis-cli -p "$REDIS_PORT" SET e2e:probe "$probe" >/dev/null
  proxy_is_ours() { [[ "$(timeout 2 redis-cli -p "$PROXY_PORT" GET e2e:probe 2>/dev/null)" == "$probe" ]]; }
  wait_until "$name: respseal on $PROXY_PORT" "$proxy_pid" "$dir/respseal.log" proxy_is_ours || return 1
  timeout 2 redis-cli -p "$REDIS_PORT" DEL e2e:probe >/dev/null
  ok "$name: redis-server :$REDIS_PORT and respseal :$PROXY_PORT ($mode) up"

  # the app
  APP_PORT=$(free_port)
  (cd "$HERE" && exec env REDIS_URL="redis://127.0.0.1:$PROXY_PORT" REDIS_CLIENT="$client" PORT="$APP_PORT" \
    SESSION_CANARY="$CANARY" node app.js) >"$dir/app.log" 2>&1 &
  local app_pid=$!
  PIDS+=("$app_pid")
  app_ready() { grep -qF "listening on http://127.0.0.1:$APP_PORT" "$dir/app.log"; }
  wait_until "$name: app on $APP_PORT" "$app_pid" "$dir/app.log" app_ready || return 1
  local want_resp=3 resp
  [[ "$client" == redis5 ]] && want_resp=2
  resp=$(sed -nE 's/.*CLIENT INFO resp=([0-9]+).*/\1/p' "$dir/app.log" | head -n 1)
  if [[ "$resp" == "$want_resp" ]]; then ok "$name: app up, client speaks RESP$resp through respseal"; else
    bad "$name: app up, client speaks RESP$want_resp through respseal" "app.log: $(head -n 3 "$dir/app.log")"
  fi

  # two independent sessions
  local A="$dir/jar-a" B="$dir/jar-b" sid_a sid_b
  : >"$A"
  : >"$B"
  local i steps=()
  for i in $(seq 1 10); do steps+=("$A@$i"); done
  expect_steps "$name: jar A counts 1..10" "${steps[@]}" || return 1
  sid_a=$(sid_of "$A")
  steps=()
  for i in 1 2 3 4 5; do steps+=("$B@$i" "$A@$((10 + i))"); done
  expect_steps "$name: jar B counts 1..5 interleaved with jar A 11..15" "${steps[@]}" || return 1
  steps=()
  for i in $(seq 16 20); do steps+=("$A@$i"); done
  expect_steps "$name: jar A counts 16..20" "${steps[@]}" || return 1
  sid_b=$(sid_of "$B")
  if [[ -n "$sid_a" && -n "$sid_b" && "$sid_a" != "$sid_b" && "$(sid_of "$A")" == "$sid_a" ]]; then
    ok "$name: two sessions, A kept its id ($sid_a, $sid_b)"
  else
    bad "$name: two sessions, A kept its id" "sid A ${sid_a@Q} (now $(sid_of "$A")), sid B ${sid_b@Q}"
    return 1
  fi

  # what Redis holds
  snapshot "$dir/snap1" || { bad "$name: raw snapshot of Redis" "redis-raw.mjs failed"; return 1; }
  check_sealed "$name" "$dir/snap1" "sess:$sid_a" "sess:$sid_b"

  # what the app sees through respseal
  local ga gb
  ga=$(through_proxy --raw "sess:$sid_a")
  gb=$(through_proxy --raw "sess:$sid_b")
  if [[ "$ga" == *"\"views\":20"* && "$ga" == *"\"canary\":\"$CANARY\""* && "$gb" == *"\"views\":5"* && "$gb" == *"$CANARY"* ]]; then
    ok "$name: through respseal the sessions read as plain JSON"
  else
    bad "$name: through respseal the sessions read as plain JSON" "GET sess:A -> ${ga@Q}" "GET sess:B -> ${gb@Q}"
  fi

  # move A's ciphertext onto B's key inside Redis, keeping B's TTL
  local pttl_b copy pexp
  pttl_b=$(snap_pttl "$dir/snap1" "sess:$sid_b")
  copy=$(timeout 5 redis-cli -p "$REDIS_PORT" COPY "sess:$sid_a" "sess:$sid_b" REPLACE 2>&1)
  pexp=$(timeout 5 redis-cli -p "$REDIS_PORT" PEXPIRE "sess:$sid_b" "$pttl_b" 2>&1)
  snapshot "$dir/snap2" || { bad "$name: raw snapshot of Redis" "redis-raw.mjs failed"; return 1; }
  local fa fb
  fa=$(snap_file "$dir/snap2" "sess:$sid_a" get)
  fb=$(snap_file "$dir/snap2" "sess:$sid_b" get)
  if [[ "$copy" == 1 && "$pexp" == 1 && -n "$fa" && -n "$fb" ]] && cmp -s "$fa" "$fb"; then
    ok "$name: A's ciphertext copied byte for byte onto sess:B in Redis"
  else
    bad "$name: A's ciphertext copied byte for byte onto sess:B in Redis" "COPY -> ${copy@Q}, PEXPIRE $pttl_b -> ${pexp@Q}"
    return 1
  fi
  gb=$(through_proxy --no-raw "sess:$sid_b")
  if [[ "$gb" == "(nil)" ]]; then ok "$name: through respseal the moved value reads as nil"; else
    bad "$name: through respseal the moved value reads as nil" "GET sess:B -> ${gb@Q}"
  fi

  expect_steps "$name: jar B starts over at 1 (moved value refused)" "$B@1"
  local sid_b2
  sid_b2=$(sid_of "$B")
  if [[ -n "$sid_b2" && "$sid_b2" != "$sid_b" && "$sid_b2" != "$sid_a" ]]; then
    ok "$name: jar B got a new session id"
  else
    bad "$name: jar B got a new session id" "old ${sid_b@Q}, now ${sid_b2@Q}, A ${sid_a@Q}"
  fi
  expect_steps "$name: jar A goes on at 21" "$A@21"
  expect_steps "$name: jar B goes on at 2 in its new session" "$B@2"

  # concurrent sessions: the app's one Redis connection then carries pipelined commands
  local k par_pids=() par_keys=() par_bad=() got sid
  for k in $(seq 1 "$PARALLEL"); do
    (for i in 1 2 3; do counter "$dir/jar-p$k"; echo; done >"$dir/par-$k.out") &
    par_pids+=($!)
  done
  wait "${par_pids[@]}"
  for k in $(seq 1 "$PARALLEL"); do
    got=$(cat "$dir/par-$k.out")
    sid=$(sid_of "$dir/jar-p$k")
    [[ "$got" == $'Counter: 1|200\nCounter: 2|200\nCounter: 3|200' && -n "$sid" ]] ||
      par_bad+=("jar $k (sid ${sid@Q}): ${got@Q}")
    par_keys+=("sess:$sid")
  done
  if ((${#par_bad[@]} == 0)) && [[ $(printf '%s\n' "${par_keys[@]}" | sort -u | wc -l) -eq $PARALLEL ]]; then
    ok "$name: $PARALLEL new sessions in parallel each count 1..3"
  else
    bad "$name: $PARALLEL new sessions in parallel each count 1..3" "${par_bad[@]}" "session keys: ${par_keys[*]}"
  fi

  snapshot "$dir/snap3" || { bad "$name: raw snapshot of Redis" "redis-raw.mjs failed"; return 1; }
  check_sealed "$name, at the end" "$dir/snap3" "sess:$sid_a" "sess:$sid_b" "sess:$sid_b2" "${par_keys[@]}"

  if kill -0 "$proxy_pid" 2>/dev/null && kill -0 "$app_pid" 2>/dev/null; then
    ok "$name: respseal and the app still running"
  else
    bad "$name: respseal and the app still running" "respseal.log: $(tail -n 5 "$dir/respseal.log")" "app.log: $(tail -n 5 "$dir/app.log")"
  fi
  if grep -qiE 'panic|redis client error' "$dir/respseal.log" "$dir/app.log"; then
    bad "$name: no panic or client error in the logs" "$(grep -hiE 'panic|redis client error' "$dir/respseal.log" "$dir/app.log" | head -n 5)"
  else
    ok "$name: no panic or client error in the logs"
  fi
  return 0
}

# ---------------------------------------------------------------- main
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(redis6 redis5 redis6:dedicated redis5:dedicated)
if ((prereqs_ok)); then
  log "respseal: $BIN ($("$BIN" --version 2>&1))"
  for s in "${scenarios[@]}"; do
    client=${s%%:*}
    mode=shared
    [[ "$s" == *:* ]] && mode=${s#*:}
    if [[ "$client" != redis6 && "$client" != redis5 ]] || [[ "$mode" != shared && "$mode" != dedicated ]]; then
      bad "scenario $s" "expected redis6|redis5 with optional :shared|:dedicated"
      continue
    fi
    fail_before=$fail
    run_scenario "$client" "$mode"
    if ((fail > fail_before)); then
      # keep the evidence next to the failure
      for f in "$TMPROOT/$client-$mode".*/{respseal,app}.log; do
        [[ -s "$f" ]] && { echo "     --- tail of $f"; tail -n 20 "$f" | sed 's/^/     | /'; }
      done
    fi
    stop_all
  done
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
