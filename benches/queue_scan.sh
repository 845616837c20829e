#!/usr/bin/env bash
# Queue scan benchmark: our directory scan (counts only, and with bytes and
# oldest arrival) against `find DIR -type f | wc -l` and a bare getdents64
# loop, on synthetic Postfix-shaped trees (deferred/[0-F]/ID, hash_queue_depth
# = 1) of 10 k, 100 k and 1 M sparse 300-byte files. Warm page cache; each
# figure is the best of RUNS runs, in seconds, including process start.
# Columns: find = `find -type f | wc -l`; floor = bare getdents64 loop (C);
# counts = ours, messages only; floor-stat = getdents64 + statx per file (C);
# detail = ours with bytes and oldest arrival; -1t = one thread.
#
# Usage: benches/queue_scan.sh [SIZES...]      (default: 10000 100000 1000000)
# Env:   BENCH_DIR (default: a temp dir, removed at the end), RUNS (default 5)
set -euo pipefail

cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
runs=${RUNS:-5}

command -v cc >/dev/null || { echo "needs a C compiler: apt-get install -y gcc" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install -y time" >&2; exit 1; }
command -v bc >/dev/null || { echo "needs bc: apt-get install -y bc" >&2; exit 1; }
cargo build --release --quiet --example queue_scan
scan=target/release/examples/queue_scan
floor_bin=target/release/getdents_floor
cc -O2 -o "$floor_bin" benches/getdents_floor.c

own_dir=
if [ -z "${BENCH_DIR:-}" ]; then
    BENCH_DIR=$(mktemp -d /var/tmp/pfagentx-bench.XXXXXX)
    own_dir=$BENCH_DIR
fi
cleanup() { [ -n "$own_dir" ] && rm -rf "$own_dir"; }
trap cleanup EXIT

# best_of CMD...: the fastest wall time and the smallest CPU time (user +
# system) of $runs runs, as "WALL/CPU" in seconds. On a loaded machine the
# CPU time is the steadier figure: wall time includes waiting for a core.
best_of() {
    local best_wall='' best_cpu='' out wall cpu
    for _ in $(seq "$runs"); do
        out=$( { /usr/bin/time -f '%e %U %S' "$@" >/dev/null; } 2>&1 | tail -1)
        wall=$(echo "$out" | awk '{print $1}')
        cpu=$(echo "$out" | awk '{print $2 + $3}')
        if [ -z "$best_wall" ] || [ "$(echo "$wall < $best_wall" | bc -l)" = 1 ]; then best_wall=$wall; fi
        if [ -z "$best_cpu" ] || [ "$(echo "$cpu < $best_cpu" | bc -l)" = 1 ]; then best_cpu=$cpu; fi
    done
    printf '%.2f/%.2f' "$best_wall" "$best_cpu"
}

find_count() { find "$1" -type f | wc -l; }

printf 'cpus: %s, kernel: %s, fs: %s, load: %s\n' "$(nproc)" "$(uname -r)" \
    "$(df -T "$BENCH_DIR" | awk 'NR==2{print $2}')" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "each cell: best wall seconds / best CPU (user+system) seconds"
printf '%-8s %11s %11s %11s %11s %11s %11s %11s\n' \
    files find floor counts-1t counts floor-stat detail-1t detail
for n in "${sizes[@]}"; do
    q=$BENCH_DIR/q$n
    if [ ! -d "$q/deferred" ]; then
        "$scan" --generate "$n" --queue-dir "$q"
    fi
    # Sanity: every method sees all n files.
    got_floor=$("$floor_bin" "$q/deferred")
    got_find=$(find_count "$q/deferred")
    got_ours=$("$scan" --queue-dir "$q" --method directory --counts-only |
        sed -n 's/.*"total":\([0-9]*\).*/\1/p')
    if [ "$got_floor" != "$n" ] || [ "$got_find" != "$n" ] || [ "$got_ours" != "$n" ]; then
        echo "count mismatch for $n: floor $got_floor find $got_find ours $got_ours" >&2
        exit 1
    fi
    # $1 is the inner bash's argument: it must not expand here.
    # shellcheck disable=SC2016
    t_find=$(best_of bash -c 'find "$1" -type f | wc -l' find "$q/deferred")
    t_floor=$(best_of "$floor_bin" "$q/deferred")
    t_c1=$(best_of "$scan" --queue-dir "$q" --method directory --counts-only --threads 1)
    t_c=$(best_of "$scan" --queue-dir "$q" --method directory --counts-only)
    t_fs=$(best_of "$floor_bin" --stat "$q/deferred")
    t_d1=$(best_of "$scan" --queue-dir "$q" --method directory --threads 1)
    t_d=$(best_of "$scan" --queue-dir "$q" --method directory)
    printf '%-8s %11s %11s %11s %11s %11s %11s %11s\n' \
        "$n" "$t_find" "$t_floor" "$t_c1" "$t_c" "$t_fs" "$t_d1" "$t_d"
done
