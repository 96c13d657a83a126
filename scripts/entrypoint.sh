#!/bin/sh
# respseal's container entrypoint (the image's ENTRYPOINT), also run by the
# tests outside a container: serve with the mounted configuration and the
# key given as a secret file.
#
#   RESPSEAL_CONFIG    configuration file      [default: /etc/respseal/config.toml]
#   RESPSEAL_KEY_FILE  the primary key file    [default: /run/secrets/respseal_key, if present]
#   RESPSEAL_BIN       the binary              [default: respseal on PATH]
# Any other RESPSEAL_* variable (RESPSEAL_BACKEND, RESPSEAL_LISTEN,
# RESPSEAL_ADMIN_LISTEN ...) is read by respseal itself. Arguments are
# passed to `respseal serve`. The configuration is checked first (without
# sampling Redis, which may still be starting); an invalid one stops here
# with every problem listed.
set -eu
BIN=${RESPSEAL_BIN:-respseal}
export RESPSEAL_CONFIG="${RESPSEAL_CONFIG:-/etc/respseal/config.toml}"
if [ -z "${RESPSEAL_KEY_FILE:-}" ] && [ -f /run/secrets/respseal_key ]; then
    export RESPSEAL_KEY_FILE=/run/secrets/respseal_key
fi
# Exit 69 (backend down) is fine at this point: Redis may start later.
status=0
"$BIN" check --sample 0 >/dev/null || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 69 ]; then
    "$BIN" check --sample 0 || true
    exit "$status"
fi
exec "$BIN" serve "$@"
