#!/usr/bin/env bash
# Log parsing throughput, side by side in one run:
#   postfix-agentx parse, the seed's 12 `grep -c` patterns, `wc -l`,
#   benches/first_token_floor.c (the least a first-token parser does),
#   pflogsumm, mtail (--one_shot with Debian's example postfix.mtail) and
#   prometheus-postfix-exporter (it only tails: it is started on an empty
#   file, the log is appended, and the time until its counters stop moving
#   is measured).
#
# Usage: benches/parse_throughput.sh [MIN_BYTES]   (default 1100000000)
# Env:   WORK=/tmp/pfagentx-bench  SKIP="pflogsumm mtail exporter"  ROUNDS=5
#
# The log is the real Postfix 3.7 sample (tests/fixtures) repeated with fresh
# queue ids and advancing timestamps (half RFC 3164, half RFC 3339); see
# examples/parse_bench.rs. Throughput is given per CPU second (user+sys:
# what one core does) and per wall second; peak RSS from /usr/bin/time.
# postfix-agentx, `wc -l` and the floor take a second or less each and a
# shared VM's speed drifts by tens of percent: they run ROUNDS times,
# interleaved, and each gets a median row and a best row. The slow peers
# (minutes each) run once.
set -euo pipefail

MIN_BYTES=${1:-1100000000}
WORK=${WORK:-/tmp/pfagentx-bench}
SKIP=${SKIP:-}
ROUNDS=${ROUNDS:-5}
cd "$(dirname "$0")/.."

. benches/lib.sh
need /usr/bin/time time
need cc gcc

cargo build --release --quiet --bin postfix-agentx --example parse_bench
FLOOR_BIN=target/release/first_token_floor
cc -O2 -o "$FLOOR_BIN" benches/first_token_floor.c
LOG=$(bench_log "$MIN_BYTES")
cat "$LOG" >/dev/null # warm the page cache: measure parsing, not the disk
LINES=$(wc -l <"$LOG")
BYTES=$(stat -c %s "$LOG")
echo "log: $LOG, $BYTES bytes, $LINES lines; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %9s %9s %12s %12s %9s\n' tool "wall s" "cpu s" "Mlines/cpu-s" "Mlines/wall-s" "RSS MB"

# M lines per CPU second of each row, for the comparison with the issue's
# reference machine at the end.
declare -A RATE=()
row() { # name wall cpu rss_kb
    RATE[$1]=$(awk -v c="$3" -v l="$LINES" 'BEGIN { printf "%.4f", (c > 0 ? l / c / 1e6 : 0) }')
    awk -v n="$1" -v w="$2" -v c="$3" -v r="$4" -v l="$LINES" 'BEGIN {
        printf "%-44s %9.2f %9.2f %12.2f %12.2f %9.1f\n", n, w, c, (c > 0 ? l / c / 1e6 : 0), (w > 0 ? l / w / 1e6 : 0), r / 1024 }'
}

measure() { # name command...
    local name=$1
    shift
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || true
    local wall user sys rss
    read -r wall user sys rss <"$WORK/$name.time"
    row "$name" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')" "$rss"
}

# The fast rows: ROUNDS interleaved runs each, then a median and a best row.
declare -A FAST=(
    ["postfix-agentx parse"]="target/release/postfix-agentx parse --format json $LOG"
    ["wc -l"]="wc -l $LOG"
    ["first-token floor (C)"]="$FLOOR_BIN $LOG"
)
FAST_ORDER=("postfix-agentx parse" "wc -l" "first-token floor (C)")
for round in $(seq 1 "$ROUNDS"); do
    for name in "${FAST_ORDER[@]}"; do
        # shellcheck disable=SC2086 # the command line is split on purpose
        /usr/bin/time -f "%e %U %S %M" -o "$WORK/$name.$round.time" ${FAST[$name]} \
            >"$WORK/$name.out" 2>"$WORK/$name.err" || true
    done
done
for name in "${FAST_ORDER[@]}"; do
    # One line per round: cpu wall rss, sorted by CPU time.
    for round in $(seq 1 "$ROUNDS"); do
        awk '{print $2 + $3, $1, $4}' "$WORK/$name.$round.time"
    done | sort -n >"$WORK/$name.rounds"
    read -r cpu wall rss < <(sed -n "$(((ROUNDS + 1) / 2))p" "$WORK/$name.rounds")
    row "$name, median of $ROUNDS" "$wall" "$cpu" "$rss"
    read -r cpu wall rss < <(head -1 "$WORK/$name.rounds")
    row "$name, best of $ROUNDS" "$wall" "$cpu" "$rss"
done

# The seed's patterns, one grep -c pass each (C locale: the fastest grep).
cat >"$WORK/seed-greps.sh" <<'EOF'
for p in " status=sent (delivered to" "status=sent (forwarded to" "reject:" "postfix/pickup" \
         "discard:" "status=deferred" "status=bounced" "hold:" " fatal:" " warning:" " panic:" " error:"; do
    printf '%s\t%s\n' "$p" "$(LC_ALL=C grep -cF -- "$p" "$1")"
done
EOF
measure "seed greps (12 x grep -c)" bash "$WORK/seed-greps.sh" "$LOG"

if [[ " $SKIP " != *" pflogsumm "* ]] && need pflogsumm pflogsumm; then
    measure "pflogsumm" pflogsumm "$LOG"
fi

if [[ " $SKIP " != *" mtail "* ]] && need mtail mtail; then
    mkdir -p "$WORK/mtail-progs"
    cp /usr/share/doc/mtail/examples/postfix.mtail "$WORK/mtail-progs/"
    measure "mtail --one_shot (postfix.mtail)" mtail --progs "$WORK/mtail-progs" --logs "$LOG" \
        --one_shot --one_shot_format json --logtostderr=false
fi

if [[ " $SKIP " != *" exporter "* ]] && need prometheus-postfix-exporter prometheus-postfix-exporter; then
    FEED=$WORK/feed.log
    : >"$FEED"
    PORT=$((20000 + RANDOM % 20000))
    prometheus-postfix-exporter --web.listen-address="127.0.0.1:$PORT" \
        --postfix.logfile_path="$FEED" --postfix.showq_path=/nonexistent >"$WORK/exporter.err" 2>&1 &
    EXPORTER=$!
    trap 'kill $EXPORTER 2>/dev/null || true' EXIT
    sleep 1
    metric() { curl -s "127.0.0.1:$PORT/metrics" | awk '/^postfix_smtpd_connects_total /{print $2}'; }
    start=$(date +%s.%N)
    cat "$LOG" >>"$FEED"
    last=-1
    stable=0
    while [ "$stable" -lt 10 ]; do
        sleep 1
        now=$(metric)
        if [ "$now" = "$last" ]; then stable=$((stable + 1)); else stable=0; last=$now; done_at=$(date +%s.%N); fi
    done
    ticks=$(getconf CLK_TCK)
    read -r utime stime < <(awk '{print $14, $15}' "/proc/$EXPORTER/stat")
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$EXPORTER/status")
    kill "$EXPORTER"
    wall=$(awk -v a="$start" -v b="$done_at" 'BEGIN{print b-a}')
    cpu=$(awk -v u="$utime" -v s="$stime" -v t="$ticks" 'BEGIN{print (u+s)/t}')
    row "prometheus-postfix-exporter (tail)" "$wall" "$cpu" "$hwm"
    echo "  exporter smtpd connects: $last"
    rm -f "$FEED"
fi

echo
echo "postfix-agentx counters:"
grep -E '"(delivered|received|rejected|linesRead|linesUnparsed|smtpConnections)"' "$WORK/postfix-agentx parse.out" | tr -d ' ,' | paste -sd' '
echo "seed greps:"
paste -sd' ' "$WORK/seed greps (12 x grep -c).out"

# The issue that set the 10 M lines/s target measured the peers on its own
# machine (M lines/s): wc -l 59, 12 x grep 1.3, pflogsumm 0.218, mtail 0.2,
# the exporter 0.17. Each peer's ratio between that machine and this run
# scales our median: what this parser would do there if it sped up as that
# peer did. An estimate with a spread, not a measurement (the issue's log
# and mtail program are not known).
echo
echo "scaled to the issue's reference machine (its figure / this run's, times our median):"
ours=${RATE["postfix-agentx parse, median of $ROUNDS"]:-0}
for ref in "wc -l, median of $ROUNDS:59" "seed greps (12 x grep -c):1.3" "pflogsumm:0.218" \
    "mtail --one_shot (postfix.mtail):0.2" "prometheus-postfix-exporter (tail):0.17"; do
    name=${ref%:*}
    here=${RATE[$name]:-}
    # A row too fast to time (a small log) has no rate.
    if [ -z "$here" ] || ! awk -v h="$here" 'BEGIN { exit !(h > 0) }'; then continue; fi
    awk -v n="$name" -v r="${ref##*:}" -v h="$here" -v o="$ours" 'BEGIN {
        printf "  by %-40s %7.3f there / %7.3f here = %5.2fx -> %5.2f M lines/s\n", n, r, h, r / h, o * r / h }'
done
