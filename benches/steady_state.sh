#!/usr/bin/env bash
# Steady-state cost of following a live mail log, side by side in one run:
# postfix-agentx (the daemon, log source only), prometheus-postfix-exporter
# and mtail (both tail the file), and the seed template, which runs its 12
# `grep -c` over the whole log at every poll.
#
# For each tool that follows the log, on a small (1 MB) and a big (1.1 GB)
# existing log, started at its end:
#   idle     CPU and bytes read in IDLE seconds without a new line;
#   burst    CPU per line and bytes read per appended byte for BURST lines
#            appended at once (until the tool's CPU stops moving);
#   steady   CPU share of one core while RATE lines/s are appended for
#            STEADY seconds.
# CPU is utime+stime from /proc/PID/stat, reads are rchar from /proc/PID/io
# (bytes passed to read(2)-like calls), peak RSS is VmHWM.
# For the seed: CPU seconds of one poll (12 x grep -c) on each log.
#
# Usage: benches/steady_state.sh
# Env:   WORK=/tmp/pfagentx-bench  IDLE=30 BURST=500000 RATE=10000 STEADY=20
#        SKIP="exporter mtail"
set -euo pipefail

WORK=${WORK:-/tmp/pfagentx-bench}
IDLE=${IDLE:-30}
BURST=${BURST:-500000}
RATE=${RATE:-10000}
STEADY=${STEADY:-20}
SKIP=${SKIP:-}
cd "$(dirname "$0")/.."

. benches/lib.sh
need python3 python3
need curl curl

cargo build --release --quiet --bin postfix-agentx --example parse_bench
BIN=$PWD/target/release/postfix-agentx
LOG=$(bench_log 1100000000)
RUN=$WORK/steady
rm -rf "$RUN"
mkdir -p "$RUN"
# What is appended: the first lines of the generated log (real Postfix 3.7
# lines with fresh queue ids); the existing logs are the tools' starting point.
head -n "$BURST" "$LOG" >"$RUN/burst.log"
head -n "$((RATE * STEADY))" "$LOG" >"$RUN/steady.log"
head -n 7800 "$LOG" >"$RUN/small.base" # about 1 MB
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); idle ${IDLE} s, burst ${BURST} lines, steady ${RATE} lines/s for ${STEADY} s"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rchar() { awk '/^rchar:/{print $2}' "/proc/$1/io"; }
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

# Wait until the CPU time of $1 has not moved for 2 s (at most 10 minutes).
settle() {
    local last=-1 same=0 now i
    for ((i = 0; i < 1200; i++)); do
        now=$(ticks "$1")
        if [ "$now" = "$last" ]; then
            same=$((same + 1))
            [ "$same" -ge 4 ] && return 0
        else
            same=0
            last=$now
        fi
        sleep 0.5
    done
    echo "warning: pid $1 never settled" >&2
}

# Append $2 to $1 at RATE lines per second, in tenths of a second.
paced_append() {
    python3 - "$1" "$2" "$RATE" <<'EOF'
import sys, time
dst, src, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src, 'rb').read().splitlines(keepends=True)
step = max(1, rate // 10)
start = time.monotonic()
with open(dst, 'ab') as out:
    for i in range(0, len(lines), step):
        out.write(b''.join(lines[i:i + step]))
        out.flush()
        time.sleep(max(0.0, start + (i + step) / rate - time.monotonic()))
EOF
}

printf '%-30s %-6s %14s %14s %12s %12s %12s %8s\n' tool log "idle CPU ms/min" "idle KB read/min" \
    "burst us/line" "read/appended" "steady CPU %" "RSS MB"

# measure NAME SIZE PID LOGFILE: the three phases against a running tool.
measure() {
    local name=$1 size=$2 pid=$3 file=$4
    sleep 3
    settle "$pid"
    local c0 r0 c1 r1 c2 r2 c3 bytes
    c0=$(ticks "$pid") r0=$(rchar "$pid")
    sleep "$IDLE"
    c1=$(ticks "$pid") r1=$(rchar "$pid")
    bytes=$(stat -c %s "$RUN/burst.log")
    cat "$RUN/burst.log" >>"$file"
    settle "$pid"
    c2=$(ticks "$pid") r2=$(rchar "$pid")
    paced_append "$file" "$RUN/steady.log"
    settle "$pid"
    c3=$(ticks "$pid")
    awk -v n="$name" -v s="$size" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v c3="$c3" \
        -v r0="$r0" -v r1="$r1" -v r2="$r2" -v b="$bytes" -v t="$TCK" -v idle="$IDLE" \
        -v lines="$BURST" -v steady="$STEADY" -v hwm="$(hwm_kb "$pid")" 'BEGIN {
        printf "%-30s %-6s %14.1f %14.1f %12.2f %12.3f %12.1f %8.1f\n", n, s,
            (c1 - c0) * 1000 / t * 60 / idle, (r1 - r0) / 1024 * 60 / idle,
            (c2 - c1) / t * 1e6 / lines, (r2 - r1) / b,
            (c3 - c2) / t * 100 / steady, hwm / 1024 }'
}

for size in small big; do
    file=$RUN/$size.log
    if [ "$size" = small ]; then src=$RUN/small.base; else src=$LOG; fi

    # postfix-agentx: the daemon with the log source only, no AgentX master
    # (it retries the connection in the background; answering requests is
    # benchmarked in agentx_latency).
    cp "$src" "$file"
    cat >"$RUN/agent.toml" <<EOF
[agentx]
socket = "unix:$RUN/no-master.sock"
[log]
source = "file"
path = ["$file"]
start_at = "end"
[state]
directory = "$RUN/state-$size"
[queue]
enabled = false
[process]
enabled = false
[probes]
enabled = false
[certs]
enabled = false
EOF
    root=()
    [ "$(id -u)" = 0 ] && root=(--allow-root)
    POSTFIX_AGENTX_LOG=warn "$BIN" run -c "$RUN/agent.toml" "${root[@]}" >"$RUN/agent-$size.err" 2>&1 &
    pid=$!
    measure "postfix-agentx run" "$size" "$pid" "$file"
    kill "$pid"
    wait "$pid" 2>/dev/null || true

    if [[ " $SKIP " != *" exporter "* ]] && need prometheus-postfix-exporter prometheus-postfix-exporter; then
        cp "$src" "$file"
        port=$((20000 + RANDOM % 20000))
        prometheus-postfix-exporter --web.listen-address="127.0.0.1:$port" \
            --postfix.logfile_path="$file" --postfix.showq_path=/nonexistent >"$RUN/exporter-$size.err" 2>&1 &
        pid=$!
        measure "prometheus-postfix-exporter" "$size" "$pid" "$file"
        echo "  exporter smtpd connects: $(curl -s "127.0.0.1:$port/metrics" | awk '/^postfix_smtpd_connects_total /{print $2}')"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    fi

    if [[ " $SKIP " != *" mtail "* ]] && need mtail mtail; then
        cp "$src" "$file"
        mkdir -p "$RUN/mtail-progs"
        cp /usr/share/doc/mtail/examples/postfix.mtail "$RUN/mtail-progs/"
        port=$((20000 + RANDOM % 20000))
        mtail --progs "$RUN/mtail-progs" --logs "$file" --address 127.0.0.1 --port "$port" \
            --logtostderr >"$RUN/mtail-$size.err" 2>&1 &
        pid=$!
        measure "mtail (postfix.mtail)" "$size" "$pid" "$file"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    fi

    # The seed: every poll greps the whole log (C locale: the fastest grep).
    # $p and $1 belong to the inner bash: they must not expand here.
    # shellcheck disable=SC2016
    /usr/bin/time -f "%e %U %S %M" -o "$RUN/seed-$size.time" bash -c '
        for p in " status=sent (delivered to" "status=sent (forwarded to" "reject:" "postfix/pickup" \
                 "discard:" "status=deferred" "status=bounced" "hold:" " fatal:" " warning:" " panic:" " error:"; do
            LC_ALL=C grep -cF -- "$p" "$1" || true
        done' _ "$src" >"$RUN/seed-$size.out" # not /dev/null: grep then stops at the first match
    read -r _wall user sys _rss <"$RUN/seed-$size.time"
    awk -v s="$size" -v u="$user" -v y="$sys" -v b="$(stat -c %s "$src")" 'BEGIN {
        printf "%-30s %-6s one poll: %.2f CPU s, %.0f MB read (%.1f %% of a core at one poll a minute)\n",
            "seed: 12 x grep -c per poll", s, u + y, b * 12 / 1e6, (u + y) * 100 / 60 }'
    rm -f "$file"
done
