#!/usr/bin/env bash
# Every real client against a *sealing* respseal (rule sess:*): node-redis 5
# and 6, ioredis 5 and 6, redis-py 8 (RESP2 and RESP3), redis-cli (RESP2 and
# -3). Each writes sealed keys through the proxy and checks, directly in
# Redis, that they hold envelopes, and that its reads return plaintext.
# usage: tests/clients/run-sealed.sh PROXY_PORT REDIS_PORT
set -euo pipefail
P=${1:?usage: run-sealed.sh PROXY_PORT REDIS_PORT}
R=${2:?usage: run-sealed.sh PROXY_PORT REDIS_PORT}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
(cd "$HERE/node" && timeout --kill-after=5 60 node sealed.mjs "$P" "$R")
timeout --kill-after=5 60 "${PYTHON:-python3}" "$HERE/python/sealed.py" "$P" "$R"
timeout --kill-after=5 60 bash "$HERE/redis-cli-sealed.sh" "$P" "$R"
echo "sealed: every client's writes are envelopes in Redis, its reads plaintext"
