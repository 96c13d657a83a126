#!/usr/bin/env bash
# The session stores' own flows through a sealing respseal (the presets of
# tests/external.rs's session-store test): Spring Session, ASP.NET Core,
# Flask-Session and Django with redis-py (RESP2 and RESP3), PHP's phpredis
# session handler with locking (parallel requests on one session), and
# Rails-style redis-rb. Each checks directly in Redis what is sealed.
# usage: tests/clients/run-stores.sh PROXY_PORT REDIS_PORT ASPNET_SET_SHA1
set -euo pipefail
P=${1:?usage: run-stores.sh PROXY_PORT REDIS_PORT SHA1}
R=${2:?}
SHA=${3:?}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout --kill-after=5 120 "${PYTHON:-python3}" "$HERE/python/stores.py" "$P" "$R" "$SHA"

# PHP: 8 requests on one session at once; the session lock serialises them,
# so the counter ends at exactly 8 (a lost lock would lose an update).
sid="php$(date +%s%N)"
canary="CANARY-php-$RANDOM$RANDOM"
pids=()
for _ in $(seq 1 8); do
    timeout --kill-after=5 60 php "$HERE/php/session.php" "$P" "$sid" "$canary" >/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
last=$(timeout 30 php "$HERE/php/session.php" "$P" "$sid" "$canary")
[ "$last" = 9 ] || { echo "FAIL php: 8 parallel requests then one more gave views=$last, not 9"; exit 1; }
raw=$(redis-cli -p "$R" --no-raw GET "PHPREDIS_SESSION:$sid")
case "$raw" in '"\x00RE\x01'*) ;; *) echo "FAIL php: session not sealed in Redis: $raw"; exit 1 ;; esac
if redis-cli -p "$R" --no-raw GET "PHPREDIS_SESSION:$sid" | grep -q "$canary"; then echo "FAIL php: canary in Redis"; exit 1; fi
[ "$(redis-cli -p "$R" EXISTS "PHPREDIS_SESSION:${sid}_LOCK")" = 0 ] || { echo "FAIL php: lock left behind"; exit 1; }
echo "php: 9 requests (8 in parallel, locked) counted 9, session sealed, lock released"

timeout --kill-after=5 60 ruby "$HERE/ruby/rails_store.rb" "$P" "$R"
echo "stores: every session store's flow passed"
