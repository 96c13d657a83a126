#!/usr/bin/env bash
# Drive redis-cli (RESP2 and -3) against PORT and assert its output.
#
# usage: tests/clients/redis-cli.sh PORT [HOST]
#
# Prints one line per check ("ok ..." / "FAIL ..." with expected vs actual),
# then "redis-cli: N passed, N failed"; exits non-zero on any failure.
# Every redis-cli invocation runs under `timeout`, so nothing can hang.
set -u

PORT=${1:?usage: redis-cli.sh PORT [HOST]}
HOST=${2:-127.0.0.1}
T=${REDIS_CLI_TIMEOUT:-10}
CLI=(timeout "$T" redis-cli -h "$HOST" -p "$PORT")

command -v redis-cli >/dev/null || { echo "FAIL redis-cli not installed"; exit 2; }

TAG="rscli:$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() {
  fail=$((fail + 1))
  echo "FAIL $1"
  local e=$2 a=$3
  echo "     expected: ${e@Q}"
  echo "     actual:   ${a@Q}"
}
# expect NAME EXPECTED ACTUAL
expect() { if [[ "$3" == "$2" ]]; then ok "$1"; else bad "$1" "$2" "$3"; fi; }
# expect_match NAME EXTENDED-REGEX ACTUAL
expect_match() { if [[ "$3" =~ $2 ]]; then ok "$1"; else bad "$1" "/$2/" "$3"; fi; }

cleanup() { "${CLI[@]}" -n 0 DEL "$TAG:a" "$TAG:bin" "$TAG:h" "$TAG:s" "$TAG:z" "$TAG:t" "$TAG:p1" "$TAG:p2" >/dev/null 2>&1
            "${CLI[@]}" -n 2 DEL "$TAG:db2" >/dev/null 2>&1; rm -rf "$TMPD"; }
TMPD=$(mktemp -d)
trap cleanup EXIT

# ---------------------------------------------------------------- RESP2, argv
first=$("${CLI[@]}" PING 2>&1)
if [[ "$first" != "PONG" ]]; then
  bad "PING (endpoint unusable, nothing else run)" "PONG" "$first"
  echo "redis-cli: $pass passed, $fail failed"
  exit 1
fi
ok "PING"
expect "ECHO byte-exact (--no-raw)" '"h\xc3\xa9 \r\n$-1"' "$("${CLI[@]}" --no-raw ECHO $'h\xc3\xa9 \r\n$-1' 2>&1)"
expect "SET" "OK" "$("${CLI[@]}" SET "$TAG:a" 'hello wörld' 2>&1)"
expect "GET (--no-raw)" '"hello w\xc3\xb6rld"' "$("${CLI[@]}" --no-raw GET "$TAG:a" 2>&1)"
expect "GET missing (--no-raw) is (nil)" "(nil)" "$("${CLI[@]}" --no-raw GET "$TAG:missing" 2>&1)"
expect "MGET with missing (--no-raw)" $'1) "hello w\\xc3\\xb6rld"\n2) (nil)' "$("${CLI[@]}" --no-raw MGET "$TAG:a" "$TAG:missing" 2>&1)"
expect "INCR error (--no-raw)" "(error) ERR value is not an integer or out of range" "$("${CLI[@]}" --no-raw INCR "$TAG:a" 2>&1)"

# binary value from stdin (-x) and back, escaped by --no-raw
printf 'x\000y\377\r\nz' | "${CLI[@]}" -x SET "$TAG:bin" >/dev/null 2>&1
expect "-x binary SET / GET (--no-raw)" '"x\x00y\xff\r\nz"' "$("${CLI[@]}" --no-raw GET "$TAG:bin" 2>&1)"
expect "STRLEN of binary value" "7" "$("${CLI[@]}" STRLEN "$TAG:bin" 2>&1)"

"${CLI[@]}" HSET "$TAG:h" f1 v1 f2 'v ☃' >/dev/null 2>&1
expect "HGETALL RESP2 (--no-raw) flat array" $'1) "f1"\n2) "v1"\n3) "f2"\n4) "v \\xe2\\x98\\x83"' "$("${CLI[@]}" --no-raw HGETALL "$TAG:h" 2>&1)"
expect "HGETALL RESP2 missing (--no-raw)" "(empty array)" "$("${CLI[@]}" --no-raw HGETALL "$TAG:missing" 2>&1)"
"${CLI[@]}" SADD "$TAG:s" member >/dev/null 2>&1
"${CLI[@]}" ZADD "$TAG:z" 1.5 m >/dev/null 2>&1
expect "ZSCORE RESP2 (--no-raw) bulk string" '"1.5"' "$("${CLI[@]}" --no-raw ZSCORE "$TAG:z" m 2>&1)"
expect_match "CLIENT INFO RESP2 resp=2" ' resp=2( |$)' "$("${CLI[@]}" CLIENT INFO 2>&1)"
expect_match "INFO server" 'redis_version:[0-9]+\.' "$("${CLI[@]}" INFO server 2>&1)"

# ---------------------------------------------------------------- RESP3 (-3)
expect "-3 HELLO 3 reply: proto 3" "proto 3" "$("${CLI[@]}" -3 HELLO 3 2>&1 | grep '^proto ')"
expect_match "-3 HELLO 3 (--no-raw) is a map" '^1# "server" => "redis"' "$("${CLI[@]}" -3 --no-raw HELLO 3 2>&1)"
expect "-3 HGETALL (--no-raw) is a map" $'1# "f1" => "v1"\n2# "f2" => "v \\xe2\\x98\\x83"' "$("${CLI[@]}" -3 --no-raw HGETALL "$TAG:h" 2>&1)"
expect "-3 HGETALL missing (--no-raw)" "(empty hash)" "$("${CLI[@]}" -3 --no-raw HGETALL "$TAG:missing" 2>&1)"
expect "-3 GET missing (--no-raw) is (nil)" "(nil)" "$("${CLI[@]}" -3 --no-raw GET "$TAG:missing" 2>&1)"
expect "-3 MGET with missing (--no-raw)" $'1) "hello w\\xc3\\xb6rld"\n2) (nil)' "$("${CLI[@]}" -3 --no-raw MGET "$TAG:a" "$TAG:missing" 2>&1)"
expect "-3 SMEMBERS (--no-raw) is a set" '1~ "member"' "$("${CLI[@]}" -3 --no-raw SMEMBERS "$TAG:s" 2>&1)"
expect "-3 ZSCORE (--no-raw) is a double" "(double) 1.5" "$("${CLI[@]}" -3 --no-raw ZSCORE "$TAG:z" m 2>&1)"
expect "-3 INCR (--no-raw)" "(integer) 1" "$("${CLI[@]}" -3 --no-raw INCR "$TAG:t" 2>&1)"
expect_match "-3 CLIENT INFO resp=3" ' resp=3( |$)' "$("${CLI[@]}" -3 CLIENT INFO 2>&1)"

# ---------------------------------------------------------------- stdin, interactive-style
expect "stdin: SET/GET/GET missing" $'OK\nb ☃\n\nx' \
  "$(printf 'SET %s "b ☃"\nGET %s\nGET %s\n' "$TAG:a" "$TAG:a" "$TAG:missing" | "${CLI[@]}" 2>&1; echo x)"
# (the trailing "x" keeps the empty line redis-cli prints for a nil reply)
expect "stdin: error then PING continues" $'ERR value is not an integer or out of range\n\nPONG' \
  "$(printf 'INCR %s\nPING\n' "$TAG:a" | "${CLI[@]}" 2>&1)"
expect "stdin: MULTI/EXEC (--no-raw)" $'OK\nQUEUED\nQUEUED\n1) OK\n2) (integer) 11' \
  "$(printf 'MULTI\nSET %s 10\nINCR %s\nEXEC\n' "$TAG:t" "$TAG:t" | "${CLI[@]}" --no-raw 2>&1)"
expect "stdin -3: HGETALL raw" $'f1 v1\nf2 v ☃' "$(printf 'HGETALL %s\n' "$TAG:h" | "${CLI[@]}" -3 2>&1)"
expect "stdin -3: HGETALL/GET missing (--no-raw)" $'1# "f1" => "v1"\n2# "f2" => "v \\xe2\\x98\\x83"\n(nil)' \
  "$(printf 'HGETALL %s\nGET %s\n' "$TAG:h" "$TAG:missing" | "${CLI[@]}" -3 --no-raw 2>&1)"

# -n 2: SELECT 2 then commands in db 2
expect "-n 2: SET in db 2" "OK" "$("${CLI[@]}" -n 2 SET "$TAG:db2" two 2>&1)"
expect "-n 2: GET in db 2" "two" "$("${CLI[@]}" -n 2 GET "$TAG:db2" 2>&1)"
expect "-n 0: key absent in db 0" "0" "$("${CLI[@]}" -n 0 EXISTS "$TAG:db2" 2>&1)"
expect_match "-n 2 -3: CLIENT INFO db=2 resp=3" ' db=2 .* resp=3( |$)' "$("${CLI[@]}" -3 -n 2 CLIENT INFO 2>&1)"

# ---------------------------------------------------------------- --pipe, --scan
klen=$(( ${#TAG} + 3 ))
pipe_in=$(printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\nv1\r\n*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$2\r\nv2\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n' \
  "$klen" "$TAG:p1" "$klen" "$TAG:p2" "$klen" "$TAG:p1"; echo x)
pipe_in=${pipe_in%x}
expect_match "--pipe mass insert" 'errors: 0, replies: 3' "$(printf '%s' "$pipe_in" | "${CLI[@]}" --pipe 2>&1)"
expect "--pipe wrote keys" $'v1\nv2' "$("${CLI[@]}" MGET "$TAG:p1" "$TAG:p2" 2>&1)"
expect "--scan --pattern" $'p1\np2' "$("${CLI[@]}" --scan --pattern "$TAG:p*" 2>&1 | sed 's/.*://' | sort)"

# ---------------------------------------------------------------- SUBSCRIBE (RESP2 and -3)
for proto in 2 3; do
  ch="$TAG:chan$proto"
  out="$TMPD/sub$proto"
  "${CLI[@]}" -$proto SUBSCRIBE "$ch" >"$out" 2>&1 &
  subpid=$!
  n=0
  for _ in $(seq 1 60); do # up to ~3 s for the subscriber to be there
    n=$("${CLI[@]}" PUBLISH "$ch" "msg ☃ $proto" 2>&1)
    [[ "$n" == "1" ]] && break
    sleep 0.05
  done
  for _ in $(seq 1 60); do grep -q "msg ☃ $proto" "$out" && break; sleep 0.05; done
  kill "$subpid" 2>/dev/null
  wait "$subpid" 2>/dev/null
  expect "-$proto SUBSCRIBE receives PUBLISH" "$(printf 'subscribe\n%s\n1\nmessage\n%s\nmsg ☃ %s' "$ch" "$ch" "$proto")" \
    "$(printf '%s' "$(cat "$out")")"
done

# ---------------------------------------------------------------- inline command over a raw socket
inline=$(timeout 5 bash -c 'exec 3<>/dev/tcp/"$1"/"$2"; printf "PING\r\nECHO hi\r\n" >&3; head -c 13 <&3' _ "$HOST" "$PORT" 2>&1)
expect "inline PING/ECHO over raw TCP" $'+PONG\r\n$2\r\nhi' "$inline"

echo "redis-cli: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
