#!/usr/bin/env bash
# Build the image and run docker-compose.yml's stack, where a container
# engine can run containers (it needs the rust, debian, redis and node base
# images from a registry). Checks: the app's counter goes 1, 2 through
# respseal; the session reads as plaintext through respseal and as
# ciphertext (the 00 52 45 envelope) straight from Redis; /readyz is 200.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
    echo "compose-smoke: no container engine can run containers here; nothing was run" >&2
    exit 2
fi
mkdir -p .dev
[ -f .dev/respseal-dev.key ] || cargo run --quiet -- keygen --out .dev/respseal-dev.key
export RESPSEAL_UID
RESPSEAL_UID=$(id -u)
trap 'docker-compose down -v >/dev/null 2>&1 || true' EXIT
docker-compose up --build -d
jar=$(mktemp)
for _ in $(seq 1 120); do curl -sf -c "$jar" -b "$jar" http://127.0.0.1:3000/ >/dev/null && break; sleep 1; done
[ "$(curl -sf -c "$jar" -b "$jar" http://127.0.0.1:3000/)" = "Counter: 2" ]
key=$(docker-compose exec -T redis redis-cli --scan --pattern 'sess:*' | head -1)
docker-compose exec -T redis redis-cli --no-raw GET "$key" | grep -q '^"\\x00RE'
redis-cli -p 6380 GET "$key" | grep -q '"views":2'
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9180/readyz)" = 200 ]
echo "compose-smoke: ok"
