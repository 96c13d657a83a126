#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then
# runs every test (unit, protocol, sealing, real clients, the express-session
# example, Redis's own Tcl suite) through cargo, and ends with one line
# "N passed, N failed" summing every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --lib --bins --tests -- --test-threads="${RESPSEAL_TEST_THREADS:-4}" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
