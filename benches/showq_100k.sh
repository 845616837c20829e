#!/usr/bin/env bash
# showq with 100 000 queued messages: our showq method against
# `postqueue -j | wc -l`, on the same real Postfix queue.
#
# A private Postfix instance (its own config, queue and log in a temp dir;
# nothing of the system's Postfix is touched) gets a few real messages
# through sendmail, which are deferred (defer_transports = smtp) and then
# put on hold with `postsuper -h ALL`. Their queue files are copied until
# hold/ holds COUNT messages: each copy gets a fresh valid short queue ID
# (5 hex digits of microseconds, then the file's inode number in hex, as
# Postfix names them and `postsuper -s` checks), owner and mode as
# Postfix's own (postfix, 0700 = ready) and the hashed subdirectory
# hash_queue_depth asks for if hold is in hash_queue_names. Postfix itself
# must list COUNT messages (`postqueue -j | wc -l`) before anything is
# timed.
#
# Timed, best of RUNS runs each (warm page cache, the showq daemon already
# running):
#   ours, showq     target/release/examples/queue_scan --method showq
#   postqueue -j    sh -c 'postqueue -j | wc -l'
#   ours, directory the directory method on the same queue (reference)
# Wall time includes the work of Postfix's showq daemon, which opens and
# reads every queue file for both clients; client CPU is user + system of
# the client processes only; the showq daemon's CPU per run is measured
# apart (from /proc). Peak RSS: the client's largest process (GNU time
# %M), and the showq daemon's VmHWM.
#
# Usage: benches/showq_100k.sh [COUNT]        (default 100000; needs root)
# Env:   RUNS (default 5), KEEP=1 keeps the instance and its queue
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/private-postfix.sh

count=${1:-100000}
runs=${RUNS:-5}
templates=10

[ "$(id -u)" -eq 0 ] || { echo "starting a private Postfix instance needs root" >&2; exit 1; }
. benches/lib.sh
need postfix postfix
need postqueue postfix
need postsuper postfix
need sendmail postfix
need python3 python3
need /usr/bin/time time

cargo build --release --quiet --example queue_scan
scan=target/release/examples/queue_scan

work=$(mktemp -d /var/tmp/pfagentx-showq.XXXXXX)
chmod 755 "$work"
cleanup() {
    set +e
    if [ -n "${KEEP:-}" ]; then
        echo "kept: postfix -c $work/etc stop; rm -rf $work"
        return
    fi
    postfix -c "$work/etc" stop >/dev/null 2>&1
    for _ in $(seq 50); do [ -e "$work/spool/pid/master.pid" ] || break; sleep 0.2; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work"/{etc,spool,data,log}
chown postfix "$work/data"
{
    private_postfix_main_cf "$work" mx.bench.invalid
    cat <<EOF
mydestination =
inet_interfaces = loopback-only
alias_maps =
alias_database =
disable_dns_lookups = yes
smtp_host_lookup = native
# Remote mail waits for a flush that never comes: it stays queued.
defer_transports = smtp
enable_long_queue_ids = no
EOF
} >"$work/etc/main.cf"
grep -v '^#' tests/fixtures/postfix-master.cf >"$work/etc/master.cf"
postfix -c "$work/etc" start >/dev/null 2>&1 || {
    postfix -c "$work/etc" start
    exit 1
}
pq() { postqueue -c "$work/etc" "$@"; }
queued() { pq -j | wc -l; }
in_hold() { pq -j | grep -c '"queue_name": *"hold"' || true; }

echo "== $templates real messages through sendmail, deferred, then held"
mkdir "$work/msgs"
for i in $(seq 0 $((templates - 1))); do
    # 1 to 3 recipients, 1 to 19 KB: a small mix of real messages.
    rcpts=$(for r in $(seq 0 $((i % 3))); do printf 'user%s-%s@example%s.net ' "$i" "$r" "$r"; done)
    {
        printf 'From: sender%s@example.org\nTo: %s\nSubject: showq bench %s\n\n' "$i" "$rcpts" "$i"
        for j in $(seq $((20 + 40 * i))); do echo "line $j of a test message for the showq benchmark"; done
    } >"$work/msgs/$i"
    # shellcheck disable=SC2086 # one word per recipient
    sendmail -C "$work/etc" -f "sender$i@example.org" $rcpts <"$work/msgs/$i"
done
for _ in $(seq 100); do [ "$(queued)" -eq "$templates" ] && break; sleep 0.2; done
for _ in $(seq 50); do
    postsuper -c "$work/etc" -h ALL >/dev/null 2>&1 || true
    [ "$(in_hold)" -eq "$templates" ] && break
    sleep 0.2
done
[ "$(in_hold)" -eq "$templates" ] || {
    echo "expected $templates held messages; postqueue -j:" >&2
    pq -j >&2
    exit 1
}

echo "== copying them in hold/ up to $count messages under fresh queue IDs"
hash_names=$(postconf -c "$work/etc" -h hash_queue_names)
hash_depth=$(postconf -c "$work/etc" -h hash_queue_depth)
python3 - "$work/spool" "$count" "$hash_names" "$hash_depth" <<'PY'
import os, random, re, sys

spool, count, hash_names, hash_depth = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
hold = os.path.join(spool, "hold")
depth = hash_depth if "hold" in re.split(r"[\s,]+", hash_names) else 0

def files(d):
    for root, _, names in os.walk(d):
        for n in names:
            yield os.path.join(root, n)

originals = sorted(files(hold))
templates = []
for path in originals:
    st = os.stat(path)
    with open(path, "rb") as f:
        templates.append((f.read(), st))
tmpdir = os.path.join(spool, "bench-tmp")  # same file system; no queue directory
os.makedirs(tmpdir, exist_ok=True)
rng = random.Random(4)
for i in range(count - len(originals)):
    data, st = templates[i % len(templates)]
    tmp = os.path.join(tmpdir, "copy")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, 0o700)  # MAIL_QUEUE_STAT_READY: a complete queue file
    os.close(fd)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    inode = os.stat(tmp).st_ino
    # A short queue ID: microseconds (5 hex digits), then the inode in hex.
    qid = "%05X%X" % (rng.randrange(0x100000), inode)
    sub = os.path.join(hold, *qid[:depth])
    if depth:
        os.makedirs(sub, mode=0o700, exist_ok=True)
        os.chown(sub, st.st_uid, st.st_gid)
    os.rename(tmp, os.path.join(sub, qid))
os.rmdir(tmpdir)
PY
listed=$(queued)
held=$(in_hold)
echo "postqueue -j | wc -l: $listed (on hold: $held)"
if ! { [ "$listed" -eq "$count" ] && [ "$held" -eq "$count" ]; }; then
    echo "Postfix lists $listed messages ($held on hold), not $count" >&2
    exit 1
fi
ours=$("$scan" --queue-dir "$work/spool" --method showq | sed -n 's/.*"total":\([0-9]*\).*/\1/p')
[ "$ours" -eq "$count" ] || { echo "our showq method counted $ours, not $count" >&2; exit 1; }

master=$(tr -d ' ' <"$work/spool/pid/master.pid")
# CPU ticks of master's showq children (the daemon serving both clients).
showq_ticks() {
    local t=0 p
    for p in $(pgrep -P "$master" -x showq); do
        t=$((t + $(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$p/stat")))
    done
    echo "$t"
}
showq_hwm() {
    local m=0 p v
    for p in $(pgrep -P "$master" -x showq); do
        v=$(awk '/^VmHWM/ { print $2 }' "/proc/$p/status")
        [ "$v" -gt "$m" ] && m=$v
    done
    echo "$m"
}
hz=$(getconf CLK_TCK)

# best_of NAME CMD...: best wall, best client CPU, best showq CPU (s), and
# the largest client peak RSS (KiB) over $runs runs.
best_of() {
    local name=$1 wall cpu rss t0 t1 sq
    shift
    "$@" >/dev/null # warm-up: page cache, a running showq daemon
    local bw='' bc='' bs='' br=0
    for _ in $(seq "$runs"); do
        t0=$(showq_ticks)
        /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >/dev/null
        t1=$(showq_ticks)
        read -r wall u s rss <"$work/time"
        cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')
        sq=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN { d = b - a; print (d < 0 ? 0 : d) / hz }')
        [ -z "$bw" ] || awk -v a="$wall" -v b="$bw" 'BEGIN { exit !(a < b) }' && bw=$wall
        [ -z "$bc" ] || awk -v a="$cpu" -v b="$bc" 'BEGIN { exit !(a < b) }' && bc=$cpu
        [ -z "$bs" ] || awk -v a="$sq" -v b="$bs" 'BEGIN { exit !(a < b) }' && bs=$sq
        [ "$rss" -gt "$br" ] && br=$rss
    done
    printf '| %-30s | %6.2f | %6.2f | %6.2f | %7.1f |\n' "$name" "$bw" "$bc" "$bs" "$(awk -v r="$br" 'BEGIN { print r / 1024 }')"
}

echo
printf 'cpus %s, kernel %s, postfix %s, load average %s\n' "$(nproc)" "$(uname -r)" \
    "$(postconf -c "$work/etc" -h mail_version)" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "$count messages on hold, $(du -sh "$work/spool/hold" | cut -f1) of queue files; best of $runs runs"
echo
echo "| client                         | wall s | client CPU s | showq daemon CPU s | client peak RSS MB |"
echo "|--------------------------------|-------:|-------------:|-------------------:|-------------------:|"
best_of "ours, showq method" "$scan" --queue-dir "$work/spool" --method showq
# $1 is the inner sh's argument: it must not expand here.
# shellcheck disable=SC2016
best_of "postqueue -j \| wc -l" sh -c 'postqueue -c "$1" -j | wc -l' sh "$work/etc"
best_of "ours, directory method" "$scan" --queue-dir "$work/spool" --method directory
echo
echo "showq daemon peak RSS: $(awk -v r="$(showq_hwm)" 'BEGIN { printf "%.1f", r / 1024 }') MB; load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
