#!/usr/bin/env bash
# The real thing, privately, in one command (as root on Debian):
#   a private Postfix instance with real mail traffic, a private snmpd as
#   AgentX master, postfix-agentx registered with it, and net-snmp's own
#   tools walking POSTFIX-MIB. Nothing outside a temp directory is touched;
#   everything stops when the script ends (or set DEMO_KEEP=1 to keep it
#   running until Enter is pressed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/private-postfix.sh
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "the demo starts a private Postfix instance, which needs root: sudo $0" >&2
  exit 1
fi

bash scripts/install-deps.sh >/dev/null
echo "== building postfix-agentx (release)"
cargo build --release --quiet
agent="$repo/target/release/postfix-agentx"

work=$(mktemp -d /tmp/postfix-agentx-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  postfix -c "$work/etc" stop >/dev/null 2>&1
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
smtp_port=$(free_port)
snmp_port=$(free_port)
closed_port=$(free_port)

echo "== starting a private Postfix on 127.0.0.1:$smtp_port (config and queue in $work)"
mkdir -p "$work"/{etc,spool,data,log,mail}
chmod 1777 "$work/mail"
chown postfix "$work/data"
{
    private_postfix_main_cf "$work" mx.demo.invalid
    cat <<EOF
mydestination = \$myhostname, localhost
inet_interfaces = 127.0.0.1
mynetworks = 127.0.0.0/8
alias_maps = hash:$work/etc/aliases
alias_database = hash:$work/etc/aliases
local_recipient_maps = \$alias_maps
disable_dns_lookups = yes
smtp_host_lookup = native
transport_maps = inline:{ {unreachable.invalid=smtp:[127.0.0.1]:$closed_port} }
smtpd_helo_restrictions = reject_invalid_helo_hostname
EOF
} >"$work/etc/main.cf"
{
  echo "127.0.0.1:$smtp_port inet n - n - - smtpd"
  grep -v '^#' tests/fixtures/postfix-master.cf
} > "$work/etc/master.cf"
printf 'postmaster: root\nalice: %s/mail/alice\nbob: %s/mail/bob\n' "$work" "$work" > "$work/etc/aliases"
postalias -c "$work/etc" "$work/etc/aliases"
postfix -c "$work/etc" start >/dev/null

echo "== starting a private snmpd (AgentX master) on udp:127.0.0.1:$snmp_port"
cat > "$work/snmpd.conf" <<EOF
master agentx
agentXSocket unix:$work/agentx.sock
agentXPerms 0660 0755
rocommunity public 127.0.0.1
EOF
SNMP_PERSISTENT_DIR="$work/snmp" snmpd -f -Lo -C -I -smux -c "$work/snmpd.conf" "udp:127.0.0.1:$snmp_port" \
  > "$work/snmpd.log" 2>&1 &
pids+=($!)

echo "== starting postfix-agentx"
cat > "$work/agent.toml" <<EOF
[agentx]
socket = "unix:$work/agentx.sock"
[log]
path = ["$work/log/maillog"]
start_at = "beginning"
[state]
directory = "$work/state"
[postfix]
config_directory = "$work/etc"
queue_directory = "$work/spool"
[queue]
interval_seconds = 2
[process]
interval_seconds = 2
# The banner check against the demo's own Postfix (the default probes port 25).
[[probe]]
name = "smtp"
type = "smtp"
target = "127.0.0.1:$smtp_port"
interval_seconds = 2
EOF
# The agent needs no root; --allow-root only because this demo runs as root.
"$agent" run -c "$work/agent.toml" --allow-root > "$work/agent.log" 2>&1 &
pids+=($!)

echo "== sending real mail through Postfix"
smtp() { # from, rcpt..., with a tiny SMTP dialogue
  python3 - "$smtp_port" "$@" <<'PY'
import smtplib, sys
port, sender, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.demo.invalid")
try:
    s.sendmail(sender, rcpts, "Subject: demo\r\n\r\nhello from the postfix-agentx demo\r\n")
except smtplib.SMTPException as e:
    print("   SMTP said:", e)
s.quit()
PY
}
for i in 1 2 3; do smtp "sender$i@example.org" alice@mx.demo.invalid bob@mx.demo.invalid; done
smtp sender@example.org nobody@mx.demo.invalid        # unknown user: rejected
smtp sender@example.org someone@unreachable.invalid   # relay to a closed port: deferred
printf 'Subject: local\n\nvia sendmail\n' | sendmail -C "$work/etc" alice@mx.demo.invalid

# Wait for what Postfix and the agent say, not for a fixed time (a slow
# machine takes longer): first until no message waits for delivery...
wait_for() { # SECONDS COMMAND...: true once COMMAND succeeds
  local tries=$(($1 * 4)); shift
  while [ "$tries" -gt 0 ]; do "$@" && return 0; sleep 0.25; tries=$((tries - 1)); done
  return 1
}
queue_settled() {
  postqueue -c "$work/etc" -j | python3 -c 'import json, sys
sys.exit(any(json.loads(l)["queue_name"] in ("maildrop", "incoming", "active") for l in sys.stdin if l.strip()))'
}
wait_for 60 queue_settled || echo "   (Postfix still has mail in flight after 60 s)"
# ...then put the deferred message on hold, as an admin would.
qid=$(postqueue -c "$work/etc" -j | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["queue_id"])' 2>/dev/null || true)
if [ -n "$qid" ]; then postsuper -c "$work/etc" -h "$qid" >/dev/null 2>&1 || true; fi

mibs="$work/mibs"
mkdir -p "$mibs"
(cd "$work" && npm pack net-snmp --silent >/dev/null 2>&1 && tar xzf net-snmp-*.tgz) || true
for m in SNMPv2-SMI SNMPv2-TC SNMPv2-CONF SNMPv2-MIB; do
  [ -f "$work/package/lib/mibs/$m.mib" ] && cp "$work/package/lib/mibs/$m.mib" "$mibs/$m.txt"
done
snmp=(-v2c -c public -M "$mibs:$repo/mibs" -m POSTFIX-MIB "udp:127.0.0.1:$snmp_port")
export MIBS=

# Then until the agent, read through snmpd, has counted the whole log
# (what `parse` counts in it), and its queue and probe tables are filled.
agent_caught_up() {
  local want got
  want=$("$agent" parse --format json "$work/log/maillog" |
    python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["delivered"], c["held"], c["rejected"])')
  got=$(snmpget -OqvU "${snmp[@]}" POSTFIX-MIB::postfixDelivered.0 POSTFIX-MIB::postfixHeld.0 \
    POSTFIX-MIB::postfixRejected.0 2>/dev/null | tr '\n' ' ')
  [ "$want " = "$got" ] || return 1
  snmpget -OqvU "${snmp[@]}" POSTFIX-MIB::postfixQueueMessages.hold 2>/dev/null | grep -qE '^1( |$)' &&
    snmpget -OqvU "${snmp[@]}" 'POSTFIX-MIB::postfixProbeStatus."smtp"' 2>/dev/null | grep -q ok
}
wait_for 30 agent_caught_up || echo "   (the agent had not caught up after 30 s)"

echo
echo "== snmpwalk POSTFIX-MIB::postfixLog (counters from the log Postfix just wrote)"
snmpwalk "${snmp[@]}" POSTFIX-MIB::postfixLog | grep -vE 'Reject(4xx|5xx)|RejectCount|RejectReasonName' | head -40
echo
echo "== snmptable POSTFIX-MIB::postfixRejectTable"
snmptable -Cb "${snmp[@]}" POSTFIX-MIB::postfixRejectTable
echo
echo "== snmptable POSTFIX-MIB::postfixQueueTable (compare: postqueue -j below)"
snmptable -Cb "${snmp[@]}" POSTFIX-MIB::postfixQueueTable
postqueue -c "$work/etc" -j | python3 -c 'import json,sys
for l in sys.stdin: m=json.loads(l); print("   postqueue -j:", m["queue_name"], m["queue_id"])'
echo
echo "== snmptable POSTFIX-MIB::postfixProcessTable"
snmptable -Cb "${snmp[@]}" POSTFIX-MIB::postfixProcessTable
echo
echo "== snmptable POSTFIX-MIB::postfixProbeTable (SMTP banner check of this Postfix)"
snmptable -Cb "${snmp[@]}" POSTFIX-MIB::postfixProbeTable
echo
echo "== snmptable POSTFIX-MIB::postfixSourceTable (health of each data source)"
snmptable -Cb "${snmp[@]}" POSTFIX-MIB::postfixSourceTable
echo
echo "== what actually happened: $(grep -c '^From ' "$work/mail/alice" 2>/dev/null || echo 0) messages in alice's mailbox, $(grep -c '^From ' "$work/mail/bob" 2>/dev/null || echo 0) in bob's"
echo "== postfix-agentx parse over the same log:"
"$agent" parse "$work/log/maillog" | grep -E '^(delivered|received|rejected|deferred|held) '

if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo
  echo "running; try: snmpwalk ${snmp[*]} POSTFIX-MIB::postfixMIB    (Enter stops everything)"
  read -r _
fi
