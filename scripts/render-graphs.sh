#!/usr/bin/env bash
# Renders the README's graphs (docs/graphs/*.png) from a real run:
# a private Postfix, a private snmpd and the agent, real SMTP traffic for a
# few minutes (delivered to a fake remote MTA and locally, rejected for three
# reasons, deferred to a closed port, some put on hold), polled through
# snmpd with snmpget every 10 s into RRDs, drawn with rrdtool.
#
#   sudo bash scripts/render-graphs.sh [MINUTES]   (default 4)
#
# Needs root (postfix start), postfix, snmpd, snmp, rrdtool, python3:
#   apt-get install -y postfix snmpd snmp rrdtool python3
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/private-postfix.sh
repo=$PWD
minutes=${1:-4}
root_oid=1.3.6.1.4.1.8072.9999.9999.25

for p in postfix snmpd snmpget rrdtool python3 smtp-sink postsuper; do
    command -v "$p" >/dev/null || PATH=$PATH:/usr/sbin:/usr/lib/postfix/sbin
    command -v "$p" >/dev/null || {
        echo "missing $p: apt-get install -y postfix snmpd snmp rrdtool python3" >&2
        exit 1
    }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root: a private Postfix needs postfix start" >&2; exit 1; }

cargo build --quiet --bin postfix-agentx
agent_bin=$repo/target/debug/postfix-agentx

base=$(mktemp -d /tmp/pfagentx-graphs-XXXXXX)
chmod 755 "$base"
pids=()
cleanup() {
    postfix -c "$base/etc" stop >/dev/null 2>&1 || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$base"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
smtp_port=$(free_port)
sink_port=$(free_port)
closed_port=$(free_port) # nothing listens: deliveries there are deferred
snmp_port=$(python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# --- Postfix (same layout as tests/support/postfix.rs; services from tests/fixtures/postfix-master.cf) ---
mkdir -p "$base"/{etc,spool,data,log,mail,rrd,sink}
chmod 1777 "$base/mail"
chmod 777 "$base/sink"
chown postfix "$base/data"
{
    private_postfix_main_cf "$base" mx.test.invalid
    cat <<EOF
mydomain = test.invalid
myorigin = \$myhostname
mydestination = \$myhostname, localhost
inet_interfaces = 127.0.0.1
# 127.0.0.1 is not trusted, so relaying elsewhere is "Relay access denied".
mynetworks = 127.0.0.2/32
relay_domains = sink.test, dead.test
transport_maps = inline:{ sink.test=smtp:[127.0.0.1]:$sink_port, dead.test=smtp:[127.0.0.1]:$closed_port }
header_checks = regexp:$base/etc/header_checks
alias_maps = hash:$base/etc/aliases
alias_database = hash:$base/etc/aliases
smtputf8_enable = no
biff = no
disable_dns_lookups = yes
smtp_host_lookup = native
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
smtp_connect_timeout = 2s
EOF
} >"$base/etc/main.cf"
echo '/^Subject: .*SPAM/ REJECT spam' > "$base/etc/header_checks"
printf 'postmaster: root\nalice: %s/mail/alice\n' "$base" > "$base/etc/aliases"
{
    echo "127.0.0.1:$smtp_port inet n - n - - smtpd"
    grep -v '^#' tests/fixtures/postfix-master.cf
} > "$base/etc/master.cf"
postalias -c "$base/etc" "$base/etc/aliases"
smtp-sink -u nobody -h sink.test.invalid "127.0.0.1:$sink_port" 64 >/dev/null 2>&1 &
pids+=($!)
postfix -c "$base/etc" start >/dev/null

# --- snmpd and the agent ---
cat > "$base/snmpd.conf" <<EOF
master agentx
agentXSocket unix:$base/agentx.sock
agentXPerms 0660 0755
rocommunity public 127.0.0.1
EOF
mkdir -p "$base/persist"
SNMP_PERSISTENT_DIR=$base/persist MIBS='' snmpd -f -Lo -C -I -smux -c "$base/snmpd.conf" \
    "udp:127.0.0.1:$snmp_port" >"$base/snmpd.log" 2>&1 &
pids+=($!)
cat > "$base/agent.toml" <<EOF
[agentx]
socket = "unix:$base/agentx.sock"
[log]
source = "file"
path = ["$base/log/maillog"]
start_at = "beginning"
[state]
directory = "$base/state"
[postfix]
config_directory = "$base/etc"
[queue]
interval_seconds = 5
[process]
interval_seconds = 5
EOF
# Root only because this script starts Postfix; the agent needs none.
"$agent_bin" run --allow-root -c "$base/agent.toml" >"$base/agent.log" 2>&1 &
pids+=($!)

snmp() { MIBS='' snmpget -v2c -c public -On -Oqv -t 2 -r 1 "udp:127.0.0.1:$snmp_port" "$@"; }
for _ in $(seq 100); do
    snmp "$root_oid.1.9.1.0" >/dev/null 2>&1 && break
    sleep 0.2
done
snmp "$root_oid.1.9.1.0" >/dev/null || { cat "$base/agent.log" "$base/snmpd.log"; exit 1; }

# --- traffic: a python3 SMTP client, varying the load over time ---
python3 - "$smtp_port" "$minutes" "$base" <<'PY' &
import random, smtplib, subprocess, sys, time
port, minutes, base = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
random.seed(7)
end = time.time() + minutes * 60
start = time.time()
n = 0
while time.time() < end:
    phase = (time.time() - start) / 60.0
    # a busier second minute, a burst of spam in the third
    rate = 1.0 + (2.0 if 1 <= phase < 2 else 0.0)
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
        s.ehlo("client.test.invalid")
        subject = "SPAM offer" if (2 <= phase < 3 and random.random() < 0.5) else f"note {n}"
        rcpts = ["user%d@sink.test" % random.randint(1, 50)]
        if random.random() < 0.3:
            rcpts.append("alice@mx.test.invalid")
        if random.random() < 0.15:
            rcpts.append("user@dead.test")
        if random.random() < 0.2:
            rcpts.append("nosuchuser@mx.test.invalid")  # 550 User unknown
        if random.random() < 0.1:
            rcpts.append("someone@elsewhere.example")   # 554 Relay access denied
        s.mail("sender@client.test.invalid")
        ok = [r for r in rcpts if s.rcpt(r)[0] == 250]
        if ok:
            try:
                s.data(f"Subject: {subject}\r\n\r\nhello {n}\r\n" + "x" * random.randint(100, 20000))
            except smtplib.SMTPDataError:
                pass
        s.quit()
    except (OSError, smtplib.SMTPException) as e:
        print("smtp:", e, file=sys.stderr)
    n += 1
    if n % 40 == 0:
        # Put one deferred message on hold, as an admin would.
        out = subprocess.run(["postqueue", "-c", base + "/etc", "-j"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if '"queue_name": "deferred"' in line:
                qid = line.split('"queue_id": "')[1].split('"')[0]
                subprocess.run(["postsuper", "-c", base + "/etc", "-h", qid], capture_output=True)
                break
    time.sleep(random.expovariate(rate))
PY
pids+=($!)
traffic=$!

# --- RRDs: one per graph, 10 s step ---
step=10
start=$(date +%s)
rrd() { rrdtool create "$base/rrd/$1.rrd" --step $step --start $((start - step)) "${@:2}" RRA:AVERAGE:0.5:1:200; }
rrd messages DS:received:COUNTER:30:0:U DS:delivered:COUNTER:30:0:U DS:deferred:COUNTER:30:0:U \
    DS:bounced:COUNTER:30:0:U DS:rejected:COUNTER:30:0:U
rrd rejects DS:unknownUser:COUNTER:30:0:U DS:relayDenied:COUNTER:30:0:U DS:headerBody:COUNTER:30:0:U
rrd queues DS:active:GAUGE:30:0:U DS:deferred:GAUGE:30:0:U DS:hold:GAUGE:30:0:U DS:incoming:GAUGE:30:0:U
rrd memory DS:master:GAUGE:30:0:U DS:qmgr:GAUGE:30:0:U DS:smtpd:GAUGE:30:0:U DS:cleanup:GAUGE:30:0:U \
    DS:smtp:GAUGE:30:0:U

# A DisplayString table index: length, then the octets.
str_index() { local s=$1 out=${#1} i; for ((i = 0; i < ${#s}; i++)); do out+=".$(printf '%d' "'${s:i:1}")"; done; echo "$out"; }
L=$root_oid.1.1 Q=$root_oid.1.2.10.1.3 RJ=$root_oid.1.1.30.1.3 PM=$root_oid.1.3.10.1.6
values() { snmp "$@" | sed 's/^No Such.*/U/; s/"//g' | paste -sd:; }
while kill -0 "$traffic" 2>/dev/null; do
    now=$(date +%s)
    rrdtool update "$base/rrd/messages.rrd" "$now:$(values $L.3.0 $L.1.0 $L.6.0 $L.7.0 $L.4.0)"
    rrdtool update "$base/rrd/rejects.rrd" "$now:$(values $RJ.2 $RJ.3 $RJ.9)"
    rrdtool update "$base/rrd/queues.rrd" "$now:$(values $Q.3 $Q.4 $Q.5 $Q.2)"
    rrdtool update "$base/rrd/memory.rrd" "$now:$(values $PM."$(str_index master)" $PM."$(str_index qmgr)" \
        $PM."$(str_index smtpd)" $PM."$(str_index cleanup)" $PM."$(str_index smtp)")"
    sleep $step
done

# --- render ---
out=$repo/docs/graphs
mkdir -p "$out"
end=$(date +%s)
common=(--start "$start" --end "$end" --width 640 --height 200 --imgformat PNG --lower-limit 0
        --color BACK#FFFFFF --color CANVAS#FFFFFF --color SHADEA#FFFFFF --color SHADEB#FFFFFF)
m=$base/rrd/messages.rrd r=$base/rrd/rejects.rrd q=$base/rrd/queues.rrd p=$base/rrd/memory.rrd
rrdtool graph "$out/messages.png" "${common[@]}" --title "Postfix messages (postfix-agentx)" \
    --vertical-label "per minute" \
    "DEF:rc=$m:received:AVERAGE" "DEF:dl=$m:delivered:AVERAGE" "DEF:df=$m:deferred:AVERAGE" \
    "DEF:bo=$m:bounced:AVERAGE" "DEF:rj=$m:rejected:AVERAGE" \
    CDEF:rcm=rc,60,* CDEF:dlm=dl,60,* CDEF:dfm=df,60,* CDEF:bom=bo,60,* CDEF:rjm=rj,60,* \
    LINE2:rcm#2774A4:"received" LINE2:dlm#1A7C11:"delivered" LINE2:dfm#F0A000:"deferred attempts" \
    LINE2:bom#611F27:"bounced" LINE2:rjm#F63100:"rejected" >/dev/null
rrdtool graph "$out/rejects.png" "${common[@]}" --title "Postfix rejects by reason (postfixRejectTable)" \
    --vertical-label "per minute" \
    "DEF:u=$r:unknownUser:AVERAGE" "DEF:rl=$r:relayDenied:AVERAGE" "DEF:h=$r:headerBody:AVERAGE" \
    CDEF:um=u,60,* CDEF:rlm=rl,60,* CDEF:hm=h,60,* \
    AREA:um#2774A4:"unknown user" STACK:rlm#F0A000:"relay denied" STACK:hm#F63100:"header check" >/dev/null
rrdtool graph "$out/queues.png" "${common[@]}" --title "Postfix queues (postfixQueueTable)" \
    --vertical-label "messages" \
    "DEF:a=$q:active:AVERAGE" "DEF:d=$q:deferred:AVERAGE" "DEF:h=$q:hold:AVERAGE" "DEF:i=$q:incoming:AVERAGE" \
    LINE2:d#F0A000:"deferred" LINE2:h#6C59DC:"hold" LINE2:a#1A7C11:"active" LINE2:i#2774A4:"incoming" >/dev/null
rrdtool graph "$out/memory.png" "${common[@]}" --title "Postfix process memory (postfixProcessMemory, RSS)" \
    --vertical-label "bytes" --base 1024 \
    "DEF:ma=$p:master:AVERAGE" "DEF:qm=$p:qmgr:AVERAGE" "DEF:sd=$p:smtpd:AVERAGE" "DEF:cl=$p:cleanup:AVERAGE" \
    "DEF:sm=$p:smtp:AVERAGE" \
    AREA:ma#2774A4:"master" STACK:qm#1A7C11:"qmgr" STACK:sd#F0A000:"smtpd (all)" \
    STACK:cl#6C59DC:"cleanup (all)" STACK:sm#F63100:"smtp (all)" >/dev/null
ls -l "$out"/*.png
echo "counters at the end:"
"$agent_bin" parse "$base/log/maillog" | grep -E '^(received|delivered|deferred|bounced|rejected|held) ' || true
