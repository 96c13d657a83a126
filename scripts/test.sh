#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then
# runs every test (unit, protocol, sealing, the sealing boundary, real
# clients, the express-session example, Redis's own Tcl suite) through cargo,
# and ends with one line "N passed, N failed" summing every test binary.
#
# Every binary runs (--no-fail-fast), and the summary is honest: a binary
# that started but printed no "test result:" line (it crashed, was killed,
# hung past its harness's deadline) counts as one failure, and so does a
# build or a cargo run that failed without any test reporting a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --no-fail-fast --lib --bins --tests -- --test-threads="${RESPSEAL_TEST_THREADS:-4}" 2>&1 | tee "$log" || status=$?
awk -f scripts/test-summary.awk -v status="$status" "$log"
exit "$status"
