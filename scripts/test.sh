#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then
# runs every test (unit, protocol, real clients, the express-session example,
# Redis's own Tcl suite) through cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --quiet
exec cargo test -- --test-threads="${RESPSEAL_TEST_THREADS:-4}"
