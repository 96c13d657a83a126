#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (run as
# root). Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v tclsh >/dev/null || need_apt+=(tcl)
command -v dpkg-source >/dev/null || need_apt+=(dpkg-dev)
command -v curl >/dev/null || need_apt+=(curl)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v openssl >/dev/null || need_apt+=(openssl)          # TLS test certificates
command -v docker-compose >/dev/null || need_apt+=(docker-compose) # validates docker-compose.yml
command -v php >/dev/null || need_apt+=(php-cli)                     # phpredis session handler flow
php -m 2>/dev/null | grep -qx redis || need_apt+=(php-redis)
ruby -e 'require "redis"' 2>/dev/null || need_apt+=(ruby-redis)      # Rails-style redis-rb flow
if ((${#need_apt[@]})); then
    echo "install-test-deps: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# A redis-server started by the package is not used by the tests (each test
# starts its own on a free port), but stop it so port 6379 stays free for the
# development command.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
fi

for dir in tests/clients/node examples/express-session; do
    if [ -f "$dir/package-lock.json" ]; then
        stamp="$dir/node_modules/.respseal-lock.sha256"
        want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
        if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
            echo "install-test-deps: npm ci in $dir"
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
            echo "$want" >"$stamp"
        fi
    fi
done

if ! python3 -c 'import redis, flask, flask_session, django, sys
sys.exit(0 if (redis.__version__, flask_session.__version__, django.__version__) == ("8.1.0", "0.8.0", "5.2.19") else 1)' 2>/dev/null; then
    echo "install-test-deps: pip install -r tests/clients/python/requirements.txt"
    python3 -m pip install -q -r tests/clients/python/requirements.txt
fi
