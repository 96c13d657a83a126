#!/usr/bin/env bash
# Run respseal in front of a local Redis, for development.
#
# * Backend: $RESPSEAL_BACKEND if set; otherwise a Redis on 127.0.0.1:6379,
#   installed (Debian) and started if none answers there.
# * Configuration: config.toml (sealing connect-redis's sessions, `sess:*`;
#   admin endpoints on 127.0.0.1:9180). $RESPSEAL_SEAL adds rules.
# * Key: config.toml's .dev/respseal-dev.key, created on first run (a
#   DEVELOPMENT key: never use it in production). With $RESPSEAL_KEY_FILE
#   that key seals instead and the development key only opens.
# Extra arguments go to `respseal serve` (e.g. --listen 0.0.0.0:6380).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${RESPSEAL_BACKEND:-}" ]; then
    if ! command -v redis-server >/dev/null; then
        echo "dev: no redis-server here; installing the Debian package (apt-get, about a minute)" >&2
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server redis-tools >&2
        echo "dev: redis-server installed" >&2
    fi
    if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
        echo "dev: starting redis-server on 127.0.0.1:6379 (data in .dev/redis)" >&2
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

if [ -n "${RESPSEAL_BIN:-}" ]; then
    BIN=$RESPSEAL_BIN # a binary built already (the tests)
else
    if [ ! -x target/release/respseal ]; then
        echo "dev: building respseal (release). A first build compiles every dependency: about 2-3 minutes on 2 cores; later builds take seconds." >&2
    else
        echo "dev: building respseal (release; only what changed)" >&2
    fi
    # cargo's own progress bar shows on a terminal.
    cargo build --release >&2
    BIN=target/release/respseal
fi

DEV_KEY=.dev/respseal-dev.key # the [[key]] in config.toml
if [ -z "${RESPSEAL_KEY_FILE:-}" ] || [ ! -f "$DEV_KEY" ]; then
    if [ ! -f "$DEV_KEY" ]; then
        mkdir -p .dev
        "$BIN" keygen --out "$DEV_KEY"
        cat >&2 <<WARN

  ############################################################################
  #  WARNING: created a DEVELOPMENT key in $DEV_KEY
  #  Values sealed with it are only as safe as that file. Never use it in
  #  production: generate a key with 'respseal keygen --out PATH' and keep it
  #  out of the repository (see docs/sealing.md, "Keys").
  ############################################################################

WARN
    else
        echo "dev: using DEVELOPMENT key $DEV_KEY (not for production)" >&2
    fi
fi
echo "dev: respseal on 127.0.0.1:6380 -> $RESPSEAL_BACKEND, sealing 'sess:*'${RESPSEAL_SEAL:+ and '$RESPSEAL_SEAL'}; metrics on http://127.0.0.1:9180/metrics" >&2
exec "$BIN" serve --config config.toml "$@"
