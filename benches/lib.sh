# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run; they use set -euo pipefail).

# need PROGRAM PACKAGE: fails, saying what to install, when PROGRAM is missing.
need() {
    command -v "$1" >/dev/null || [ -x "$1" ] ||
        { echo "missing $1: apt-get install -y $2" >&2; return 1; }
}

# bench_log MIN_BYTES: the generated log of at least MIN_BYTES in $WORK/maillog
# (the real Postfix 3.7 sample repeated with fresh queue ids, see
# examples/parse_bench.rs, built by the caller); prints its path.
bench_log() {
    local log=$WORK/maillog
    mkdir -p "$WORK"
    if [ ! -s "$log" ] || [ "$(stat -c %s "$log")" -lt "$1" ]; then
        target/release/examples/parse_bench generate "$log" "$1" >&2
    fi
    echo "$log"
}
