#!/usr/bin/env bash
# Run respseal in front of a local Redis, for development.
#
# * Backend: $RESPSEAL_BACKEND if set; otherwise a Redis on 127.0.0.1:6379,
#   installed (Debian) and started if none answers there.
# * Key: $RESPSEAL_KEY_FILE if set; otherwise .dev/respseal-dev.key, created
#   on first run (a DEVELOPMENT key: never use it in production).
# * Sealed keys: $RESPSEAL_SEAL if set (comma-separated globs); otherwise
#   connect-redis's sessions, `sess:*`.
# Extra arguments go to `respseal serve` (e.g. --listen 0.0.0.0:6380).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${RESPSEAL_BACKEND:-}" ]; then
    if ! command -v redis-server >/dev/null; then
        echo "dev: installing redis-server (Debian package)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    fi
    if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
        echo "dev: starting redis-server on 127.0.0.1:6379 (data in .dev/redis)"
        mkdir -p .dev/redis
        redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --dir "$PWD/.dev/redis" \
            --logfile "$PWD/.dev/redis/redis.log" --save "" --appendonly no
        for _ in $(seq 1 100); do
            redis-cli -p 6379 ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        redis-cli -p 6379 ping >/dev/null
    fi
    export RESPSEAL_BACKEND=redis://127.0.0.1:6379
fi

cargo build --release --quiet
BIN=target/release/respseal

if [ -z "${RESPSEAL_KEY_FILE:-}" ]; then
    export RESPSEAL_KEY_FILE=.dev/respseal-dev.key
    if [ ! -f "$RESPSEAL_KEY_FILE" ]; then
        mkdir -p .dev
        "$BIN" keygen --out "$RESPSEAL_KEY_FILE"
        cat >&2 <<WARN

  ############################################################################
  #  WARNING: created a DEVELOPMENT key in $RESPSEAL_KEY_FILE
  #  Values sealed with it are only as safe as that file. Never use it in
  #  production: generate a key with 'respseal keygen --out PATH' and keep it
  #  out of the repository (see README, "Keys").
  ############################################################################

WARN
    else
        echo "dev: using DEVELOPMENT key $RESPSEAL_KEY_FILE (not for production)" >&2
    fi
fi
export RESPSEAL_SEAL="${RESPSEAL_SEAL:-sess:*}"
echo "dev: respseal on 127.0.0.1:6380 -> $RESPSEAL_BACKEND, sealing '$RESPSEAL_SEAL'" >&2
exec "$BIN" serve "$@"
