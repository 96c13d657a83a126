#!/usr/bin/awk -f
# Sum cargo test output into "N passed, N failed". A binary that was started
# ("Running ...") but gave no "test result:" line is counted as failed, and
# a non-zero cargo status with no failure counted is one failure.
# Usage: test-summary.awk -v status=CARGO_STATUS LOGFILE
function close_binary() {
    if (running != "" && !reported) {
        f += 1
        silent = silent (silent == "" ? "" : ", ") running
    }
    running = ""; reported = 0
}
/^ *Running / { close_binary(); running = $0; sub(/^ *Running /, "", running); sub(/ \(.*$/, "", running); next }
/^test result:/ {
    for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^passed/) p += $i
        if ($(i + 1) ~ /^failed/) f += $i
    }
    reported = 1
}
END {
    close_binary()
    if (silent != "") printf "test binaries that gave no result (counted as failed): %s\n", silent
    if (status != 0 && f == 0) { f = 1; print "cargo failed without a test reporting a failure (counted as failed)" }
    printf "%d passed, %d failed\n", p, f
}
