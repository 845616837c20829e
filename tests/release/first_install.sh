#!/usr/bin/env bash
# Commands in single quotes run in the container and expand there.
# shellcheck disable=SC2016,SC2012
# Release test: a user's first install. Boots Debian 12 with systemd as PID 1
# (tests/release/container.sh), then runs docs/deployment.md's command
# blocks word for word, in the order a user meets them, and checks after
# each what the user would check: the unit, the groups, the values snmpd
# serves, the counters across restarts, a reboot and a log-source switch,
# a refused configuration, an alarm, remove/purge, and the by-hand install.
#
#   bash tests/release/first_install.sh        (as root; ~3 min once built)
#
# Every block of deployment.md must carry a `<!-- release-test: NAME -->`
# marker and be run here: a block without one fails the test, so the page
# cannot gain an untested command. Blocks marked "(on the build machine"
# run in the source tree on this host; the others run inside the container
# in /src, the source tree mounted read-only (a user's copy of it).
#
# The only things done for the user: apt's "Do you want to continue? [Y/n]"
# is answered yes (APT::Get::Assume-Yes) and Postfix's debconf questions
# are preseeded ("Local only"), since no one sits at the terminal.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CT="$REPO/tests/release/container.sh"
DOC="$REPO/docs/deployment.md"
ROOT=${POSTFIX_AGENTX_RELEASE_ROOT:-/var/tmp/pfagentx-first-install}
OID=.1.3.6.1.4.1.8072.9999.9999.25
DELIVERED=$OID.1.1.1.0
RECEIVED=$OID.1.1.3.0
ALARM_NAMES=$OID.1.6.10.1.2

step() { printf '\n=== %s\n' "$*" >&2; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The text of the ```sh block after the marker NAME in deployment.md.
block() {
    awk -v name="$1" '
        /<!-- release-test: / { m = $0; sub(/.*release-test: /, "", m); sub(/[ (].*/, "", m); marked = m; next }
        /^```sh$/ { inblock = 1; mine = (marked == name); marked = ""; next }
        /^```$/ && inblock { inblock = 0; mine = 0; next }
        inblock && mine { print }
    ' "$DOC"
}

# Every ```sh block has a marker on the line before it (blank lines aside).
check_markers() {
    awk '
        /<!-- release-test: / { marked = 1; next }
        /^```sh$/ { if (!marked) { printf "docs/deployment.md:%d: a sh block without a release-test marker\n", NR; bad = 1 } marked = 0; next }
        NF { marked = 0 }
        END { exit bad }
    ' "$DOC"
}

in_ct() { timeout 180 bash "$CT" exec "$ROOT" "$@"; }

# Runs block NAME as the docs print it: on the host in the source tree, or
# in the container in /src. Stops at its first failing command.
run_block() {
    local name=$1 expect=${2:-} text out
    text=$(block "$name")
    [ -n "$text" ] || fail "docs/deployment.md has no block marked release-test: $name"
    step "docs block '$name':"
    printf '    %s\n' "$text" >&2
    if grep -q "release-test: $name (on the build machine" "$DOC"; then
        out=$(cd "$REPO" && bash -e -o pipefail -c "$text" 2>&1) || { echo "$out" >&2; fail "block '$name' failed on the build machine"; }
    else
        out=$(in_ct "cd /src && set -e -o pipefail && $text" 2>&1) || { echo "$out" >&2; fail "block '$name' failed in the container"; }
    fi
    echo "$out" | tail -n 15 >&2
    # What the user is told to look for is in the output.
    if [ -n "$expect" ] && ! grep -qE "$expect" <<< "$out"; then
        echo "$out" >&2
        fail "block '$name' printed nothing matching /$expect/"
    fi
}

# wait_for SECONDS DESCRIPTION COMMAND (run in the container until it succeeds)
wait_for() {
    local secs=$1 what=$2 cmd=$3 i
    for ((i = 0; i < secs; i++)); do
        in_ct "$cmd" >/dev/null 2>&1 && return 0
        sleep 1
    done
    in_ct "$cmd" >&2 || true
    fail "after ${secs}s: $what"
}

get() { in_ct "snmpget -v2c -c public -OqvU localhost $1"; }

# wait_counter OID VALUE SECONDS WHAT
wait_counter() {
    wait_for "$3" "$4 should be $2 (snmpget $1 gives '$(get "$1" 2>&1 || true)')" \
        "[ \"\$(snmpget -v2c -c public -OqvU localhost $1)\" = $2 ]"
}

unit_prop() { in_ct "systemctl show -P $2 $1"; }

send_mail() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        in_ct "printf 'Subject: release test %s\n\nbody\n' $i | /usr/sbin/sendmail root" || fail "sendmail failed"
    done
}

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "/tmp/pfagentx-nspawn-$(basename "$ROOT").cpid" ]; then
        echo "--- journal of postfix-agentx and snmpd in the container (last 40 lines):" >&2
        in_ct "journalctl --no-pager -n 40 -u postfix-agentx -u snmpd" >&2 || true
    fi
    if [ "$rc" -ne 0 ] && [ -n "${KEEP:-}" ]; then
        echo "KEEP is set: the container runs on; bash $CT exec $ROOT CMD; bash $CT stop $ROOT" >&2
        exit "$rc"
    fi
    bash "$CT" stop "$ROOT" >/dev/null 2>&1 || true
    rm -rf "$ROOT"
    exit "$rc"
}

[ "$(id -u)" -eq 0 ] || fail "needs root (systemd-nspawn)"
check_markers || fail "every sh block of docs/deployment.md must be marked and run here"

run_block build
deb=$(ls -t "$REPO"/target/debian/postfix-agentx_*_amd64.deb | head -1)
[ -f "$deb" ] || fail "the build block made no target/debian/postfix-agentx_*_amd64.deb"

step "boot a fresh Debian 12 (systemd as PID 1)"
bash "$CT" new "$ROOT"
trap on_exit EXIT
bash "$CT" boot "$ROOT" "$REPO"
in_ct 'echo "APT::Get::Assume-Yes \"true\";" > /etc/apt/apt.conf.d/90release-test-yes'
# The container has no network: the packages were downloaded into the base.
in_ct 'echo "Acquire::http::Timeout \"2\"; Acquire::Retries \"0\";" > /etc/apt/apt.conf.d/90release-test-offline'

# --- The agent first, Postfix later: the order that broke before.
run_block install
in_ct '[ "$(systemctl is-active postfix-agentx)" = active ]' || fail "postfix-agentx is not active after install"
in_ct '[ "$(systemctl is-active snmpd)" = active ]' || fail "snmpd (a recommended package) is not active after install"
in_ct 'stat -c "%U:%G %a" /run/agentx/master | grep -qx "Debian-snmp:postfix-agentx 660"' ||
    fail "the AgentX socket is not Debian-snmp:postfix-agentx 0660: $(in_ct 'ls -l /run/agentx/' 2>&1)"
in_ct 'test -f /etc/snmp/snmpd.conf.d/postfix-agentx.conf' || fail "the snmpd snippet is not installed"
run_block check 'postfixDelivered\.0 +0'
wait_for 20 "the agent registers with snmpd before Postfix is installed" \
    "snmpwalk -v2c -c public localhost $OID.1.1 | grep -q Counter64"

step "install Postfix after the agent: the dpkg trigger adds postdrop and restarts the agent"
in_ct 'echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections &&
       echo "postfix postfix/mailname string release-test.example" | debconf-set-selections &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download postfix' > /dev/null ||
    fail "apt-get install postfix failed"
in_ct 'id -nG postfix-agentx | tr " " "\n" | grep -qx postdrop' || fail "the trigger did not add postfix-agentx to postdrop"
wait_for 20 "the agent's process has group postdrop (the trigger restarts it)" \
    'grep "^Groups:" /proc/$(systemctl show -P MainPID postfix-agentx)/status | tr -s " \t" "\n" | grep -qx "$(getent group postdrop | cut -d: -f3)"'
run_block check '9999\.25\.1\.1\.1\.0 = Counter64'
in_ct "snmpwalk -v2c -c public localhost $OID.1.9.10 | grep -q showq" ||
    fail "the queue source does not read showq: $(in_ct "runuser -u postfix-agentx -- postfix-agentx dump 2>/dev/null | grep -i sourcedetail" 2>&1)"

step "7 mails through the local Postfix: delivered and received are 7"
send_mail 7
wait_counter "$DELIVERED" 7 30 postfixDelivered
wait_counter "$RECEIVED" 7 10 postfixReceived

step "restarts keep the counts: snmpd, Postfix, the agent"
in_ct 'systemctl restart snmpd'
wait_counter "$DELIVERED" 7 20 "postfixDelivered after restarting snmpd"
in_ct 'systemctl restart postfix'
wait_counter "$DELIVERED" 7 20 "postfixDelivered after restarting Postfix"
in_ct 'systemctl restart postfix-agentx'
wait_counter "$DELIVERED" 7 20 "postfixDelivered after restarting the agent"

step "reboot"
bash "$CT" reboot "$ROOT" "$REPO"
wait_counter "$DELIVERED" 7 30 "postfixDelivered after a reboot"
[ "$(unit_prop postfix-agentx NRestarts)" = 0 ] || fail "the agent was restarted by systemd (NRestarts $(unit_prop postfix-agentx NRestarts))"

step "install rsyslog: the agent switches from the journal to /var/log/mail.log without counting twice"
in_ct 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download rsyslog' > /dev/null || fail "apt-get install rsyslog failed"
# A line for rsyslog to write, so mail.log exists and starts before the switch.
send_mail 1
wait_for 20 "rsyslog writes /var/log/mail.log" 'grep -q "status=sent" /var/log/mail.log'
wait_counter "$DELIVERED" 8 20 "postfixDelivered (journal source) after one more mail"
in_ct 'systemctl restart postfix-agentx'
wait_for 20 "the agent follows /var/log/mail.log" \
    'journalctl -u postfix-agentx -b --no-pager | tail -20 | grep -q "following the mail log: /var/log/mail.log"'
wait_counter "$DELIVERED" 8 20 "postfixDelivered right after the switch to mail.log (8: nothing counted twice)"
sleep 3
[ "$(get "$DELIVERED")" = 8 ] || fail "postfixDelivered changed to $(get "$DELIVERED") with no new mail after the switch"
send_mail 2
wait_counter "$DELIVERED" 10 30 "postfixDelivered after 2 more mails from mail.log"

run_block snmpv3 '9999\.25\.1\.1\.1\.0 = Counter64: 10'
v3=$(in_ct "snmpget -v3 -l authPriv -u postfixmon -a SHA -A 'long auth passphrase' -x AES -X 'long priv passphrase' -OqvU localhost $DELIVERED" 2>&1 || true)
[ "$v3" = 10 ] || fail "postfixDelivered over SNMPv3 is '$v3', not 10"
in_ct "! snmpget -v3 -l authPriv -u postfixmon -a SHA -A 'wrong auth passphrase' -x AES -X 'long priv passphrase' -r 0 -t 2 localhost $DELIVERED" ||
    fail "a wrong SNMPv3 passphrase was accepted"

run_block directory-queue
wait_for 30 "the queue source counts by directory" \
    "snmpwalk -v2c -c public localhost $OID.1.9.10 | grep -q 'directory /var/spool/postfix'"

step "a refused configuration: exit 78, no restart loop, a journal line that says what to fix"
in_ct 'cp /etc/postfix-agentx/postfix-agentx.toml /root/good.toml &&
       printf "\n[[probe]]\nname = \"imap\"\ntype = \"imap-roundtrip\"\nto = \"root\"\nuser = \"root\"\npassword = \"secret\"\n" >> /etc/postfix-agentx/postfix-agentx.toml &&
       chmod 0644 /etc/postfix-agentx/postfix-agentx.toml'
in_ct 'systemctl restart postfix-agentx' || true
sleep 12
[ "$(unit_prop postfix-agentx ExecMainStatus)" = 78 ] ||
    fail "the agent's exit status is $(unit_prop postfix-agentx ExecMainStatus), not 78"
[ "$(unit_prop postfix-agentx NRestarts)" = 0 ] || fail "systemd restarted a refused configuration (NRestarts $(unit_prop postfix-agentx NRestarts))"
in_ct 'journalctl -u postfix-agentx -n 20 --no-pager | grep -q "/etc/postfix-agentx/postfix-agentx.toml"' ||
    fail "the journal does not name the refused file: $(in_ct 'journalctl -u postfix-agentx -n 5 --no-pager')"
in_ct 'cp /root/good.toml /etc/postfix-agentx/postfix-agentx.toml && systemctl restart postfix-agentx'
wait_counter "$DELIVERED" 10 20 "postfixDelivered after fixing the configuration"

step "Postfix stopped: one alarm, for master"
in_ct 'systemctl stop postfix'
wait_for 40 "an alarm process:master" "snmpwalk -v2c -c public -OqvU localhost $ALARM_NAMES | grep -qx '\"process:master\"'"
procs=$(in_ct "snmpwalk -v2c -c public -OqvU localhost $ALARM_NAMES | grep -c process: || true")
[ "$procs" = 1 ] || fail "stopping Postfix raised $procs process alarms: $(in_ct "snmpwalk -v2c -c public -OqvU localhost $ALARM_NAMES")"
in_ct 'systemctl start postfix'
wait_for 40 "the master alarm clears" "! snmpwalk -v2c -c public -OqvU localhost $ALARM_NAMES | grep -q process:master"

step "reinstall keeps counting; remove keeps the state and the snippet; purge removes them"
in_ct "cd /src && apt install --reinstall ./target/debian/$(basename "$deb")" > /dev/null || fail "reinstall failed"
wait_counter "$DELIVERED" 10 20 "postfixDelivered after a reinstall"
in_ct 'apt remove postfix-agentx' > /dev/null || fail "apt remove failed"
in_ct 'test -f /var/lib/postfix-agentx/log-state.json && test -f /etc/snmp/snmpd.conf.d/postfix-agentx.conf && id postfix-agentx' > /dev/null ||
    fail "apt remove removed the state, the snippet or the user"
since=$(in_ct 'date +%s')
in_ct 'apt purge postfix-agentx' > /dev/null || fail "apt purge failed"
in_ct '! test -e /var/lib/postfix-agentx && ! test -e /etc/snmp/snmpd.conf.d/postfix-agentx.conf && ! id postfix-agentx' 2>/dev/null ||
    fail "apt purge left the state, the snippet or the user"
in_ct '[ "$(systemctl is-active snmpd)" = active ]' || fail "snmpd is not running after purge"
in_ct "systemctl restart snmpd && ! journalctl -u snmpd --since=@$since --no-pager | grep -i \"can't identify\"" ||
    fail "snmpd complains after purge: $(in_ct "journalctl -u snmpd --since=@$since --no-pager | tail -5")"

run_block by-hand-build
run_block by-hand-install
wait_for 30 "the by-hand install serves POSTFIX-MIB" "snmpget -v2c -c public -OqvU localhost $DELIVERED | grep -qE '^[0-9]+\$'"
sleep 3
before=$(get "$DELIVERED")
send_mail 1
wait_counter "$DELIVERED" $((before + 1)) 30 "postfixDelivered after one more mail (by-hand install)"
[ "$(unit_prop postfix-agentx NRestarts)" = 0 ] || fail "the by-hand unit restarted"

step "a second fresh Debian 12: the agent and Postfix in one apt command"
bash "$CT" stop "$ROOT" >/dev/null
bash "$CT" new "$ROOT"
bash "$CT" boot "$ROOT" "$REPO"
in_ct 'echo "APT::Get::Assume-Yes \"true\";" > /etc/apt/apt.conf.d/90release-test-yes'
in_ct 'echo "Acquire::http::Timeout \"2\"; Acquire::Retries \"0\";" > /etc/apt/apt.conf.d/90release-test-offline'
in_ct 'echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections &&
       echo "postfix postfix/mailname string release-test.example" | debconf-set-selections'
run_block install-with-postfix
run_block check '9999\.25\.1\.1\.1\.0 = Counter64'
in_ct 'id -nG postfix-agentx | tr " " "\n" | grep -qx postdrop' ||
    fail "installed with Postfix in one command, postfix-agentx is not in postdrop: $(in_ct 'id postfix-agentx')"
wait_for 20 "the agent's process has group postdrop (installed with Postfix in one command)" \
    'grep "^Groups:" /proc/$(systemctl show -P MainPID postfix-agentx)/status | tr -s " \t" "\n" | grep -qx "$(getent group postdrop | cut -d: -f3)"'
wait_for 30 "the queue source reads showq without error" \
    "snmpwalk -v2c -c public -OqvU localhost $OID.1.9.10.1.4.5.113.117.101.117.101 | grep -q showq"
last_error=$(in_ct "snmpget -v2c -c public -OqvU localhost $OID.1.9.10.1.6.5.113.117.101.117.101")
[ "$last_error" = '""' ] || fail "the queue source's last error is $last_error"
send_mail 3
wait_counter "$DELIVERED" 3 30 "postfixDelivered after 3 mails (installed with Postfix in one command)"
[ "$(unit_prop postfix-agentx NRestarts)" = 0 ] || fail "systemd restarted the agent (NRestarts $(unit_prop postfix-agentx NRestarts))"

step "PASS: first install on a booted Debian 12, every block of docs/deployment.md"
