#!/usr/bin/env bash
# redis-cli (RESP2 and -3) through a sealing respseal (sess:*): the README's
# demonstration, checked — plaintext through the proxy, the envelope in Redis.
# Usage: redis-cli-sealed.sh PROXY_PORT REDIS_PORT
set -euo pipefail
P=$1; R=$2
fail() { echo "redis-cli sealed: $*" >&2; exit 1; }
for proto in 2 3; do
    flag=(); [ "$proto" = 3 ] && flag=(-3)
    k="sess:cli$proto"
    [ "$(redis-cli "${flag[@]}" -p "$P" SET "$k" 'ada@example.com' EX 100)" = OK ] || fail "SET"
    [ "$(redis-cli "${flag[@]}" -p "$P" GET "$k")" = 'ada@example.com' ] || fail "GET through respseal"
    raw=$(redis-cli -p "$R" --no-raw GET "$k")
    case "$raw" in '"\x00RE\x01'*) ;; *) fail "not sealed in Redis: $raw" ;; esac
    case "$raw" in *ada@example.com*) fail "plaintext in Redis" ;; esac
    # Pipelined from stdin: SET ... GET, MGET, GETEX, GETDEL.
    out=$(printf 'SET %s second GET\nMGET %s plain:cli\nGETEX %s PERSIST\nGETDEL %s\n' "$k" "$k" "$k" "$k" \
        | redis-cli "${flag[@]}" -p "$P")
    want=$(printf 'ada@example.com\nsecond\n\nsecond\nsecond')
    [ "$out" = "$want" ] || fail "pipeline through respseal gave: $out"
    echo "redis-cli RESP$proto: plaintext through respseal, envelope in Redis, pipelined SET GET/MGET/GETEX/GETDEL"
done
