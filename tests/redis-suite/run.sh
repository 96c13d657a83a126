#!/usr/bin/env bash
# Run Redis 7.0.15's own Tcl test suite against a plain redis-server
# ("direct") and through respseal in default and --dedicated mode, then
# report every test that passed directly but not through the proxy.
#
# Usage: tests/redis-suite/run.sh
#
# Environment (all optional):
#   RESPSEAL_BIN               proxy binary (default: target/release/respseal if
#                              present, else target/debug/respseal)
#   RESPSEAL_SUITE_DIR         cache dir (default: <repo>/target/redis-suite)
#   RESPSEAL_SUITE_UNITS       space-separated units (default: the 11 below)
#   RESPSEAL_SUITE_MODES       proxy modes to run, never empty (default: "default dedicated sealed";
#                              empty is refused: it would not test respseal). "sealed" is the
#                              default mode with a rule that seals everything (pattern "*",
#                              hash fields "*"); its failures must be listed, with their reason,
#                              in sealed-exceptions.txt, and each must be a test that uses a
#                              command respseal refuses on sealed keys by design
#   RESPSEAL_SUITE_TAGS        value for runtest --tags (default: "-slow")
#   RESPSEAL_SUITE_TEST_TIMEOUT   runtest --timeout, seconds without progress (default 60)
#   RESPSEAL_SUITE_UNIT_TIMEOUT   hard wall-clock bound per unit run (default 300)
#   RESPSEAL_SUITE_TARGET_TIMEOUT hard wall-clock bound per target (default 600)
#   RESPSEAL_SUITE_EXCEPTIONS  exceptions file (default: tests/redis-suite/exceptions.txt)
#   RESPSEAL_SUITE_RUNTEST_ARGS extra runtest arguments for every run, split on
#                              spaces (debugging, e.g. "--verbose"); for
#                              --skiptest/--only use a skip file: --skipfile FILE
#
# Exit status: 0 when every directly-passing test also passed through every
# proxy mode (or is listed in the exceptions file); 1 on regressions; 2 on a
# harness problem (no direct passes, missing binary, preparation failure).

set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

SUITE_DIR="${RESPSEAL_SUITE_DIR:-$REPO_ROOT/target/redis-suite}"
LOG_DIR="$SUITE_DIR/logs"
RESULTS_DIR="$SUITE_DIR/results"
REDIS_TESTS_DIR="$SUITE_DIR/redis-tests"
EXCEPTIONS_FILE="${RESPSEAL_SUITE_EXCEPTIONS:-$SCRIPT_DIR/exceptions.txt}"
UNITS="${RESPSEAL_SUITE_UNITS:-unit/type/string unit/type/hash unit/type/incr unit/expire unit/multi unit/keyspace unit/pubsub unit/protocol unit/scan unit/scripting unit/functions}"
# Units the seal-everything mode does not run: with the pattern "*" every
# script and function call names a sealed key, so respseal refuses each one
# by design (Data::Script) and the unit would only count refusals.
SEALED_SKIP_UNITS="unit/scripting unit/functions"
MODES="${RESPSEAL_SUITE_MODES-default dedicated sealed}"
SEALED_EXCEPTIONS_FILE="${RESPSEAL_SUITE_SEALED_EXCEPTIONS:-$SCRIPT_DIR/sealed-exceptions.txt}"
TAGS="${RESPSEAL_SUITE_TAGS--slow}"
TEST_TIMEOUT="${RESPSEAL_SUITE_TEST_TIMEOUT:-60}"
UNIT_TIMEOUT="${RESPSEAL_SUITE_UNIT_TIMEOUT:-300}"
TARGET_TIMEOUT="${RESPSEAL_SUITE_TARGET_TIMEOUT:-600}"
SUITE_UPSTREAM_VERSION="7.0.15"
MAX_RERUNS=2
read -r -a EXTRA_RUNTEST_ARGS <<<"${RESPSEAL_SUITE_RUNTEST_ARGS:-}"

if [[ -n "${RESPSEAL_BIN:-}" ]]; then
    PROXY_BIN="$RESPSEAL_BIN"
elif [[ -x "$REPO_ROOT/target/release/respseal" ]]; then
    PROXY_BIN="$REPO_ROOT/target/release/respseal"
else
    PROXY_BIN="$REPO_ROOT/target/debug/respseal"
fi

log() { printf '[redis-suite] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; echo "0 passed, 1 failed"; exit 2; }

# ---------------------------------------------------------------- cleanup --
PIDS_TO_KILL=()
WORK_TMP="$(mktemp -d /tmp/respseal-redis-suite.XXXXXX)"
cleanup() {
    local pid
    for pid in "${PIDS_TO_KILL[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS_TO_KILL[@]}"; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ preparation --
APT_UPDATED=0
apt_update_once() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$LOG_DIR/apt-update.log" 2>&1 \
            || { cat "$LOG_DIR/apt-update.log" >&2; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
}

apt_install() {
    apt_update_once
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >"$LOG_DIR/apt-install.log" 2>&1 \
        || { cat "$LOG_DIR/apt-install.log" >&2; die "apt-get install $* failed"; }
}

ensure_tools() {
    local pkgs=()
    command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
    # runtest looks for tclsh8.5/8.6/8.7 explicitly.
    command -v tclsh8.6 >/dev/null 2>&1 || command -v tclsh8.5 >/dev/null 2>&1 \
        || command -v tclsh8.7 >/dev/null 2>&1 || pkgs+=(tcl)
    command -v timeout >/dev/null 2>&1 || pkgs+=(coreutils)
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        [[ $(id -u) -eq 0 ]] || die "missing ${pkgs[*]} and not root to install them"
        apt_install "${pkgs[@]}"
    fi
}

# Add deb-src entries mirroring the Debian deb entries, if none exist yet.
ensure_deb_src() {
    if grep -rqsE '^[[:space:]]*deb-src[[:space:]]|^Types:.*deb-src' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
        return 0
    fi
    log "no deb-src entries found; adding /etc/apt/sources.list.d/respseal-deb-src.*"
    local f out_sources=/etc/apt/sources.list.d/respseal-deb-src.sources
    local out_list=/etc/apt/sources.list.d/respseal-deb-src.list
    : >"$out_sources.tmp"
    : >"$out_list.tmp"
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        # Copy every stanza that is of type deb and points at a Debian archive,
        # with its Types line replaced by deb-src.
        awk 'BEGIN { RS=""; ORS="\n\n" }
             /(^|\n)Types:[^\n]*deb/ && /(^|\n)URIs:[^\n]*debian/ && !/(^|\n)Enabled:[[:space:]]*no/ {
                 n = split($0, lines, "\n"); out = ""
                 for (i = 1; i <= n; i++) {
                     if (lines[i] ~ /^Types:/) lines[i] = "Types: deb-src"
                     out = out lines[i] "\n"
                 }
                 printf "%s\n", out
             }' "$f" >>"$out_sources.tmp"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk '$1 == "deb" && $0 ~ /debian/ { $1 = "deb-src"; print }' "$f" >>"$out_list.tmp"
    done
    if [[ -s "$out_sources.tmp" ]]; then mv "$out_sources.tmp" "$out_sources"; else rm -f "$out_sources.tmp"; fi
    if [[ -s "$out_list.tmp" ]]; then mv "$out_list.tmp" "$out_list"; else rm -f "$out_list.tmp"; fi
    [[ -f "$out_sources" || -f "$out_list" ]] || die "could not derive deb-src entries from the apt sources"
    APT_UPDATED=0
}

prepare_suite() {
    local marker="$REDIS_TESTS_DIR/.prepared"
    if [[ -f "$marker" && -x "$REDIS_TESTS_DIR/runtest" && -f "$REDIS_TESTS_DIR/tests/test_helper.tcl" ]]; then
        log "suite already prepared: $(cat "$marker")"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "suite not prepared and not root (needs apt-get source)"
    command -v dpkg-source >/dev/null 2>&1 || apt_install dpkg-dev
    ensure_deb_src
    apt_update_once

    local dl="$SUITE_DIR/download"
    rm -rf "$dl"
    mkdir -p "$dl"
    chmod 755 "$dl"
    # Prefer the exact source version of the installed redis-server.
    local ver
    ver="$(dpkg-query -W -f='${Version}' redis-server 2>/dev/null || true)"
    log "apt-get source redis${ver:+=$ver}"
    if ! (cd "$dl" && apt-get source -qq "redis${ver:+=$ver}") >"$LOG_DIR/apt-source.log" 2>&1; then
        log "exact version not available, falling back to the candidate version"
        (cd "$dl" && apt-get source -qq redis) >>"$LOG_DIR/apt-source.log" 2>&1 \
            || { cat "$LOG_DIR/apt-source.log" >&2; die "apt-get source redis failed"; }
    fi
    local src
    src="$(find "$dl" -mindepth 1 -maxdepth 1 -type d -name 'redis-*' | head -n1)"
    [[ -n "$src" && -f "$src/runtest" && -d "$src/tests" ]] || die "unexpected source layout in $dl"
    local upstream
    upstream="$(basename "$src")"
    upstream="${upstream#redis-}"
    if [[ "$upstream" != "$SUITE_UPSTREAM_VERSION" ]]; then
        log "WARNING: got redis $upstream sources, expected $SUITE_UPSTREAM_VERSION"
    fi

    # Keep only what runtest needs for external-server unit tests.
    local stage="$SUITE_DIR/redis-tests.new"
    rm -rf "$stage"
    mkdir -p "$stage/tests"
    cp "$src/runtest" "$stage/"
    [[ -f "$src/COPYING" ]] && cp "$src/COPYING" "$stage/"
    cp -r "$src/tests/test_helper.tcl" "$src/tests/support" "$src/tests/helpers" \
        "$src/tests/unit" "$src/tests/assets" "$stage/tests/"
    mkdir -p "$stage/tests/tmp"
    echo "redis source $(basename "$src") (package version ${ver:-candidate}), prepared $(date -u +%FT%TZ)" \
        >"$stage/.prepared"
    rm -rf "$REDIS_TESTS_DIR"
    mv "$stage" "$REDIS_TESTS_DIR"
    rm -rf "$dl"
    log "suite prepared in $REDIS_TESTS_DIR"
}

# -------------------------------------------------------- process helpers --
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print a port that nothing listens on, below the kernel's ephemeral range
# (outgoing connections take ports from that range, so a port picked there
# can be taken between the check and the bind) and away from runtest's own
# ports (21079-21110 for its test server).
free_port() {
    local p i lo=32768
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    local base=12000 span=9000
    ((lo - 1 < base + span)) && span=$((lo - 1 - base))
    ((span < 100)) && { base=1100; span=$((lo - 1 - base)); }
    for i in $(seq 1 200); do
        p=$((base + RANDOM % span))
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_ping PORT PID DEADLINE_SECONDS -> 0 when PING answers PONG
wait_ping() {
    local port="$1" pid="$2" secs="$3"
    local end=$((SECONDS + secs))
    while ((SECONDS < end)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

stop_pid() {
    local pid="$1" i
    [[ -n "$pid" ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local keep=()
    for i in "${PIDS_TO_KILL[@]}"; do [[ "$i" == "$pid" ]] || keep+=("$i"); done
    PIDS_TO_KILL=("${keep[@]}")
}

# Options the upstream external-server CI passes; DEBUG is needed by the
# needs:debug tests. An option this redis-server rejects is dropped.
REDIS_EXTRA_OPTS=(--enable-debug-command yes --enable-protected-configs yes --enable-module-command yes)
# start_redis LOGPREFIX -> sets REDIS_PID, REDIS_PORT
start_redis() {
    local logprefix="$1" dir attempt bad
    : >"$logprefix.redis.log"
    for attempt in 1 2 3 4 5 6; do
        REDIS_PORT="$(free_port)" || die "no free port"
        echo "=== respseal redis-suite: redis-server attempt $attempt on port $REDIS_PORT ===" >>"$logprefix.redis.log"
        dir="$(mktemp -d "$WORK_TMP/redis.XXXXXX")"
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$dir" --logfile "" --daemonize no "${REDIS_EXTRA_OPTS[@]}" \
            >>"$logprefix.redis.log" 2>&1 &
        REDIS_PID=$!
        PIDS_TO_KILL+=("$REDIS_PID")
        if wait_ping "$REDIS_PORT" "$REDIS_PID" 15; then
            return 0
        fi
        stop_pid "$REDIS_PID"
        bad="$(sed -n "s/^>>> '\([a-z-]*\) .*/\1/p" "$logprefix.redis.log" | tail -n1)"
        if [[ -n "$bad" ]] && grep -q "FATAL CONFIG" "$logprefix.redis.log"; then
            local i new=()
            for ((i = 0; i < ${#REDIS_EXTRA_OPTS[@]}; i += 2)); do
                [[ "${REDIS_EXTRA_OPTS[i]}" == "--$bad" ]] || new+=("${REDIS_EXTRA_OPTS[i]}" "${REDIS_EXTRA_OPTS[i+1]}")
            done
            if [[ ${#new[@]} -lt ${#REDIS_EXTRA_OPTS[@]} ]]; then
                log "redis-server rejects --$bad; running without it"
                REDIS_EXTRA_OPTS=("${new[@]}")
                continue
            fi
        fi
        log "redis-server did not come up on port $REDIS_PORT (attempt $attempt), see $logprefix.redis.log"
    done
    die "cannot start redis-server"
}

# start_proxy MODE LOGPREFIX -> sets PROXY_PID, PROXY_PORT (uses REDIS_PORT)
start_proxy() {
    local mode="$1" logprefix="$2" attempt
    local extra=()
    [[ "$mode" == "dedicated" ]] && extra+=(--dedicated)
    if [[ "$mode" == "sealed" ]]; then
        # Seal every key name: strings and every hash field.
        if [[ ! -f "$WORK_TMP/seal-all.key" ]]; then
            "$PROXY_BIN" keygen --out "$WORK_TMP/seal-all.key" >/dev/null || die "keygen failed"
            printf '[[rule]]\npattern = "*"\nfields = "*"\n[[key]]\nfile = "%s"\nstate = "primary"\n' \
                "$WORK_TMP/seal-all.key" >"$WORK_TMP/seal-all.toml"
        fi
        extra+=(--config "$WORK_TMP/seal-all.toml")
    fi
    : >"$logprefix.proxy.log"
    for attempt in 1 2 3; do
        PROXY_PORT="$(free_port)" || die "no free port"
        echo "=== respseal redis-suite: proxy attempt $attempt on port $PROXY_PORT ===" >>"$logprefix.proxy.log"
        # The proxy reads RESPSEAL_* settings from the environment; make sure
        # none from the caller changes the mode under test.
        env -u RESPSEAL_CONFIG -u RESPSEAL_LISTEN -u RESPSEAL_BACKEND -u RESPSEAL_MODE \
            -u RESPSEAL_SHARED_LINKS -u RESPSEAL_MAX_CLIENTS \
            RUST_BACKTRACE=1 "$PROXY_BIN" serve --listen "127.0.0.1:$PROXY_PORT" \
            --backend "redis://127.0.0.1:$REDIS_PORT" "${extra[@]}" \
            >>"$logprefix.proxy.log" 2>&1 &
        PROXY_PID=$!
        PIDS_TO_KILL+=("$PROXY_PID")
        if wait_ping "$PROXY_PORT" "$PROXY_PID" 20; then
            return 0
        fi
        stop_pid "$PROXY_PID"
        log "respseal ($mode) did not answer PING on port $PROXY_PORT (attempt $attempt), see $logprefix.proxy.log"
    done
    return 1
}

# ------------------------------------------------------------ run + parse --
# parse_log LOGFILE OUTFILE: writes "status<TAB>name" lines.  Repeated names
# within a unit get a " [#N]" suffix so that each occurrence is compared.
parse_log() {
    sed -e 's/\x1b\[[0-9;]*m//g' "$1" | awk '
        function emit(st, name) {
            seen[name]++
            if (seen[name] > 1) name = name " [#" seen[name] "]"
            print st "\t" name
        }
        /^\[ok\]: / {
            s = substr($0, 7); sub(/ \([0-9]+ ms\)$/, "", s); emit("ok", s); next
        }
        /^\[err\]: / {
            s = substr($0, 8); sub(/ in tests\/[^ ]*\.tcl$/, "", s); emit("err", s); next
        }
        /^\[skip\]: / { emit("skip", substr($0, 9)); next }
        /^\[exception\]: / { print "exception\t" substr($0, 14); next }
        /^\[TIMEOUT\]: clients state/ { timeout = 1; next }
        timeout && /=> \(IN PROGRESS\) / {
            s = $0; sub(/^.*=> \(IN PROGRESS\) /, "", s)
            print "exception\tTIMEOUT: no progress for --timeout seconds in test: " s
            emit("timeout", s); timeout = 0; next
        }
        /^\[TIMEOUT\] harness bound/ { print "exception\t" substr($0, 11); next }
        END { if (timeout) print "exception\tTIMEOUT: no progress for --timeout seconds" }
    ' >"$2"
}

UNIT_SECONDS=()   # "target unit seconds"
# run_unit UNIT PORT LOGFILE BUDGET [extra runtest args...]
run_unit() {
    local unit="$1" port="$2" logfile="$3" budget="$4" rc
    shift 4
    (
        cd "$REDIS_TESTS_DIR" || exit 99
        # timeout runs runtest in its own process group and kills the whole
        # group (server + test-client tclsh processes) when the bound expires.
        TERM=dumb exec timeout -k 10 "$budget" ./runtest \
            --host 127.0.0.1 --port "$port" --single "$unit" \
            --tags "$TAGS" --timeout "$TEST_TIMEOUT" --clients 1 --durable \
            ${EXTRA_RUNTEST_ARGS[@]+"${EXTRA_RUNTEST_ARGS[@]}"} "$@"
    ) </dev/null >"$logfile" 2>&1
    rc=$?
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "[TIMEOUT] harness bound of ${budget}s hit for $unit" >>"$logfile"
    fi
    return 0
}

# merge_results INTO FROM: add FROM's test lines whose name INTO lacks, and
# all of FROM's exception lines.
merge_results() {
    awk -F'\t' 'FILENAME == ARGV[1] { print; if ($1 != "exception") have[$2] = 1; next }
                 $1 == "exception" || !($2 in have) { print }' "$1" "$2" >"$1.merged"
    mv "$1.merged" "$1"
}

unit_key() { echo "${1//\//_}"; }

sealed_skips() { [[ " $SEALED_SKIP_UNITS " == *" $1 "* ]]; }

# sealed_refusals LOGFILE KEY: add the tests of LOGFILE that failed because
# respseal refused a command (tests/redis-suite/refusals.py) to
# RESULTS/sealed/KEY.refused.tsv (test<TAB>command); true if any was new
# (listed in $WORK_TMP/new-refused.tsv).
sealed_refusals() {
    local known="$RESULTS_DIR/sealed/$2.refused.tsv"
    python3 "$SCRIPT_DIR/refusals.py" "$1" \
        | awk -F'\t' 'FILENAME == ARGV[1] { have[$1] = 1; next } !($1 in have)' "$known" - >"$WORK_TMP/new-refused.tsv"
    cat "$WORK_TMP/new-refused.tsv" >>"$known"
    [[ -s "$WORK_TMP/new-refused.tsv" ]]
}

# run_target TARGET  (TARGET = direct | default | dedicated)
run_target() {
    local target="$1" unit key logprefix port budget
    local tdeadline=$((SECONDS + TARGET_TIMEOUT))
    mkdir -p "$LOG_DIR/$target" "$RESULTS_DIR/$target"
    rm -f "$LOG_DIR/$target"/* "$RESULTS_DIR/$target"/*
    log "target $target: running $(echo "$UNITS" | wc -w) units"
    for unit in $UNITS; do
        key="$(unit_key "$unit")"
        logprefix="$LOG_DIR/$target/$key"
        if [[ "$target" == "sealed" ]] && sealed_skips "$unit"; then
            log "  $unit: not run in the seal-everything mode (every script is refused there by design)"
            : >"$RESULTS_DIR/$target/$key.tsv"
            UNIT_SECONDS+=("$target $unit -")
            continue
        fi
        budget=$((tdeadline - SECONDS))
        ((budget > UNIT_TIMEOUT)) && budget=$UNIT_TIMEOUT
        if ((budget <= 5)); then
            log "  $unit: skipped, target time bound (${TARGET_TIMEOUT}s) exhausted"
            echo "exception	not run: target time bound exhausted" >"$RESULTS_DIR/$target/$key.tsv"
            UNIT_SECONDS+=("$target $unit -")
            continue
        fi
        # Fresh redis-server (and proxy) for every unit: units change server
        # config (e.g. hash-max-listpack-entries) and must not leak into each
        # other. When a test hangs (runtest --timeout), the unit is run again
        # on fresh servers without the hung test(s) so the tests after it
        # still get a result; at most MAX_RERUNS times.
        local result="$RESULTS_DIR/$target/$key.tsv" attempt=0 skip=() ustart=$SECONDS refusal_runs=0
        : >"$RESULTS_DIR/$target/$key.refused.tsv"
        local logfile hung lp
        : >"$result"
        while :; do
            lp="$logprefix"
            ((attempt > 0)) && lp="$logprefix.rerun$attempt"
            logfile="$lp.runtest.log"
            start_redis "$lp"
            port="$REDIS_PORT"
            PROXY_PID=""
            if [[ "$target" != "direct" ]]; then
                if ! start_proxy "$target" "$lp"; then
                    echo "exception	respseal did not start (see $lp.proxy.log)" >>"$result"
                    stop_redis_and_proxy
                    break
                fi
                port="$PROXY_PORT"
            fi
            run_unit "$unit" "$port" "$logfile" "$budget" ${skip[@]+"${skip[@]}"}
            if [[ -n "$PROXY_PID" ]] && ! kill -0 "$PROXY_PID" 2>/dev/null; then
                echo "[exception]: respseal process exited during the run (see $lp.proxy.log)" \
                    >>"$logfile"
            fi
            stop_redis_and_proxy
            parse_log "$logfile" "$WORK_TMP/attempt.tsv"
            if [[ "$target" == "sealed" ]] && sealed_refusals "$logfile" "$key" && ((refusal_runs < 15)); then
                # Tests refused by design are skipped from now on, so that
                # what they leave behind when they stop half-way (an open
                # MULTI, maxmemory set, readraw mode) cannot fail the tests
                # after them; the unit runs again from the start.
                refusal_runs=$((refusal_runs + 1))
                : >"$result"
                while IFS=$'\t' read -r name _; do skip+=(--skiptest "$name"); done <"$WORK_TMP/new-refused.tsv"
                log "  $unit: $(wc -l <"$WORK_TMP/new-refused.tsv") test(s) refused by design; running the unit again without them"
                continue
            fi
            merge_results "$result" "$WORK_TMP/attempt.tsv"
            hung="$(awk -F'\t' '$1 == "timeout" { sub(/ \[#[0-9]+\]$/, "", $2); print $2; exit }' "$WORK_TMP/attempt.tsv")"
            budget=$((tdeadline - SECONDS))
            ((budget > UNIT_TIMEOUT)) && budget=$UNIT_TIMEOUT
            if [[ -z "$hung" ]] || ((attempt >= MAX_RERUNS || budget <= 5)); then
                break
            fi
            attempt=$((attempt + 1))
            skip+=(--skiptest "$hung")
            log "  $unit: '$hung' hung; running the unit again without it (rerun $attempt)"
        done
        if [[ "$target" == "sealed" ]]; then
            # The tests skipped as refused failed, by refusal.
            awk -F'\t' '{ print "err\t" $1 }' "$RESULTS_DIR/$target/$key.refused.tsv" >"$WORK_TMP/refused-err.tsv"
            merge_results "$result" "$WORK_TMP/refused-err.tsv"
        fi
        UNIT_SECONDS+=("$target $unit $((SECONDS - ustart))")
        log "  $unit: $(count_status "$result" ok) ok, $(count_status "$result" err) err, $(count_status "$result" timeout) hung, $(count_status "$result" exception) exception ($(last_seconds)s)"
    done
}

last_seconds() { local l="${UNIT_SECONDS[-1]}"; echo "${l##* }"; }

stop_redis_and_proxy() {
    [[ -n "${PROXY_PID:-}" ]] && stop_pid "$PROXY_PID"
    PROXY_PID=""
    stop_pid "$REDIS_PID"
}

count_status() { awk -F'\t' -v s="$2" '$1 == s { n++ } END { print n + 0 }' "$1"; }

# --------------------------------------------------------------- compare --
# Exceptions: "unit<TAB>test name<TAB>reason"; '#' comments and blank lines ignored.
load_exceptions() {
    if [[ -f "$EXCEPTIONS_FILE" ]]; then
        awk -F'\t' '/^[[:space:]]*#/ || NF == 0 { next }
                    NF < 3 || $3 == "" { printf "malformed exceptions line %d: %s\n", NR, $0 > "/dev/stderr"; bad = 1; next }
                    { print $1 "\t" $2 }
                    END { exit bad }' "$EXCEPTIONS_FILE" >"$WORK_TMP/exceptions.tsv" \
            || die "malformed $EXCEPTIONS_FILE (need unit<TAB>test name<TAB>reason)"
    else
        : >"$WORK_TMP/exceptions.tsv"
    fi
    # The seal-everything mode's own list: each reason names the command
    # respseal refuses on sealed keys by design.
    cp "$WORK_TMP/exceptions.tsv" "$WORK_TMP/exceptions-sealed.tsv"
    if [[ -f "$SEALED_EXCEPTIONS_FILE" ]]; then
        awk -F'\t' '/^[[:space:]]*#/ || NF == 0 { next }
                    NF < 3 || $3 !~ /^(refused|ciphertext|after refused): / { printf "malformed sealed exceptions line %d (need unit<TAB>test<TAB>refused: COMMAND ...): %s\n", NR, $0 > "/dev/stderr"; bad = 1; next }
                    { print $1 "\t" $2 }
                    END { exit bad }' "$SEALED_EXCEPTIONS_FILE" >>"$WORK_TMP/exceptions-sealed.tsv" \
            || die "malformed $SEALED_EXCEPTIONS_FILE"
    fi
}

main() {
    # A run with no proxy mode proves nothing about respseal: set but empty
    # (or only blanks) is a failure, not "0 passed, 0 failed".
    if [[ -z "${MODES//[[:space:]]/}" ]]; then
        die "RESPSEAL_SUITE_MODES is empty: no run through respseal would happen"
    fi
    mkdir -p "$SUITE_DIR"
    # One run at a time per cache dir: runs share the prepared suite, logs
    # and results (and runtest cleans its tests/tmp on start).
    exec 9>"$SUITE_DIR/.lock"
    if ! flock -n 9; then
        log "another run holds $SUITE_DIR/.lock; waiting for it (at most 30 min)"
        flock -w 1800 9 || die "timed out waiting for $SUITE_DIR/.lock"
    fi
    mkdir -p "$LOG_DIR" "$RESULTS_DIR"
    ensure_tools
    prepare_suite
    load_exceptions
    [[ -x "$PROXY_BIN" ]] || die "respseal binary not found or not executable: $PROXY_BIN (set RESPSEAL_BIN or build it)"
    log "proxy binary: $PROXY_BIN"
    log "units: $UNITS"
    log "runtest --tags \"$TAGS\" --timeout $TEST_TIMEOUT; bounds: ${UNIT_TIMEOUT}s/unit, ${TARGET_TIMEOUT}s/target"
    log "logs: $LOG_DIR"

    local target
    run_target direct
    for target in $MODES; do
        run_target "$target"
    done

    # ---- summary ----
    local unit key mode rc=0 total_pass=0 total_fail=0 direct_total=0
    local regress_report="$WORK_TMP/regressions.txt" allowed_report="$WORK_TMP/allowed.txt"
    local zero_units=()
    : >"$regress_report"
    : >"$allowed_report"

    local header
    header="$(printf '%-18s %7s' unit direct)"
    for mode in $MODES; do header+="$(printf ' %10s %8s' "$mode" "regr")"; done
    echo
    echo "Redis $SUITE_UPSTREAM_VERSION test suite through respseal (runtest --tags \"$TAGS\")"
    echo "$header"
    echo "$(printf '%*s' ${#header} '' | tr ' ' '-')"
    for unit in $UNITS; do
        key="$(unit_key "$unit")"
        local dfile="$RESULTS_DIR/direct/$key.tsv"
        local dpass
        dpass="$(count_status "$dfile" ok)"
        direct_total=$((direct_total + dpass))
        ((dpass == 0)) && zero_units+=("$unit")
        local line
        line="$(printf '%-18s %7s' "${unit#unit/}" "$dpass")"
        for mode in $MODES; do
            local pfile="$RESULTS_DIR/$mode/$key.tsv"
            if [[ "$mode" == "sealed" ]] && sealed_skips "$unit"; then
                line+="$(printf ' %10s %8s' - -)"
                continue
            fi
            # Print, per directly-passing test: pass | regress | allowed
            awk -F'\t' -v unit="$unit" -v mode="$mode" \
                -v regf="$regress_report" -v allf="$allowed_report" '
                FILENAME == ARGV[1] { exc[$1 "\t" $2] = 1; next }
                FILENAME == ARGV[2] { if ($1 == "ok") dok[$2] = 1; order[++n] = $2; st[$2] = $1; next }
                FILENAME == ARGV[3] { if ($1 == "ok") pok[$2] = 1; else if (!($2 in pst)) pst[$2] = $1; next }
                END {
                    pass = 0; reg = 0
                    for (i = 1; i <= n; i++) {
                        t = order[i]
                        if (!(t in dok)) continue
                        if (t in pok) { pass++; continue }
                        why = (t in pst) ? pst[t] : "not run"
                        base = t; sub(/ \[#[0-9]+\]$/, "", base)
                        if ((unit "\t" t) in exc || (unit "\t" base) in exc) {
                            printf "%s\t%s\t%s\t%s\n", mode, unit, t, why >> allf
                        } else {
                            reg++
                            printf "%s\t%s\t%s\t%s\n", mode, unit, t, why >> regf
                        }
                    }
                    print pass, reg
                }' "$WORK_TMP/exceptions$([[ $mode == sealed ]] && echo -sealed).tsv" "$dfile" "$pfile" >"$WORK_TMP/cmp.out"
            local p r
            read -r p r <"$WORK_TMP/cmp.out"
            total_pass=$((total_pass + p))
            total_fail=$((total_fail + r))
            line+="$(printf ' %10s %8s' "$p" "$r")"
        done
        echo "$line"
    done
    echo

    echo "Timings (seconds):"
    printf '  %-18s' unit
    for target in direct $MODES; do printf ' %10s' "$target"; done
    echo
    for unit in $UNITS; do
        printf '  %-18s' "${unit#unit/}"
        for target in direct $MODES; do
            local s="-" entry
            for entry in "${UNIT_SECONDS[@]}"; do
                [[ "$entry" == "$target $unit "* ]] && s="${entry##* }"
            done
            printf ' %10s' "$s"
        done
        echo
    done
    echo

    # Exceptions (runtime errors / timeouts) reported by runtest itself.
    for target in direct $MODES; do
        for unit in $UNITS; do
            key="$(unit_key "$unit")"
            awk -F'\t' -v t="$target" -v u="$unit" '$1 == "exception" { printf "  %s %s: %s\n", t, u, substr($2, 1, 200) }' \
                "$RESULTS_DIR/$target/$key.tsv"
        done
    done >"$WORK_TMP/exc.txt"
    if [[ -s "$WORK_TMP/exc.txt" ]]; then
        echo "runtest exceptions/timeouts (after a hang the unit was re-run without the hung test):"
        cat "$WORK_TMP/exc.txt"
        echo
    fi

    {
        printf 'mode\tunit\ttest\tstatus\n'
        cat "$regress_report"
    } >"$SUITE_DIR/regressions.tsv"
    if [[ -s "$allowed_report" ]]; then
        echo "Allowed differences (listed in ${EXCEPTIONS_FILE#"$REPO_ROOT"/}):"
        awk -F'\t' '{ k = $2 ": " $3; if (!(k in m)) { order[++n] = k; m[k] = "" }
                       m[k] = m[k] (m[k] == "" ? "" : ", ") $1 " " $4 }
                     END { for (i = 1; i <= n; i++) printf "  %s [%s]\n", order[i], m[order[i]] }' "$allowed_report"
        echo
    fi
    if [[ -s "$regress_report" ]]; then
        echo "REGRESSIONS (passed directly, not through the proxy):"
        # Tests that did not run because the unit died earlier are collapsed;
        # the full list is in $SUITE_DIR/regressions.tsv.
        awk -F'\t' '
            $4 != "not run" { printf "  [%s] %s: %s (%s)\n", $1, $2, $3, $4; next }
            { k = "[" $1 "] " $2; if (!(k in nr)) { order[++n] = k; first[k] = $3 } nr[k]++ }
            END { for (i = 1; i <= n; i++) { k = order[i]
                    printf "  %s: %d test(s) never ran (unit aborted or out of time; first: %s)\n", k, nr[k], first[k] } }
        ' "$regress_report"
        echo "  details: $LOG_DIR/<mode>/<unit>.runtest.log and .proxy.log"
        echo
        rc=1
    else
        echo "No regressions."
        echo
    fi

    if ((direct_total == 0)); then
        log "ERROR: the direct run passed zero tests; the harness is broken (see $LOG_DIR/direct/)"
        rc=2
    elif ((total_pass == 0)); then
        log "ERROR: no test passed through respseal in any mode (see $LOG_DIR/)"
        total_fail=$((total_fail + 1))
        rc=2
    elif ((${#zero_units[@]} > 0)); then
        log "ERROR: the direct run passed zero tests in: ${zero_units[*]} (see $LOG_DIR/direct/)"
        rc=2
    fi

    echo "$total_pass passed, $total_fail failed"
    return $rc
}

main "$@"
exit $?
