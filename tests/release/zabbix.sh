#!/usr/bin/env bash
# Release test: the Zabbix 6.0 template against a real Zabbix server that
# polls a real snmpd + postfix-agentx and receives the agent's traps.
#
#   bash tests/release/zabbix.sh        (as root; ~2 min once installed)
#
# KEEP=1 keeps the temporary directory (logs, configuration files,
# SNMPTrapperFile) and the database for a look after the run.
#
# What it does, all on loopback with private ports and files:
#  1. installs Debian 12's Zabbix 6.0 (zabbix-server-mysql,
#     zabbix-frontend-php, php-cli, php8.2-mysql), MariaDB, snmpd, snmp and
#     snmptrapd if missing, and starts MariaDB if it is not running;
#  2. (re)creates its own database pfagentx_zabbix_test from the schema
#     Zabbix ships, and its own database user;
#  3. starts snmptrapd with docs/templates.md's configuration (outputOption
#     n, traphandle templates/zabbix/zabbix_traphandle.sh into the
#     SNMPTrapperFile), snmpd as AgentX master with trap2sink to that
#     snmptrapd, the agent built from this tree following a mail log that
#     this script writes, zabbix_server by hand (its own configuration file:
#     StartSNMPTrapper=1, SNMPTrapperFile) and the frontend with `php -S`
#     (its zabbix.conf.php bind-mounted over /etc/zabbix in a private mount
#     namespace, so the host's Zabbix configuration is not touched);
#  4. through Zabbix's API: imports the template (configuration.import),
#     creates a host with an SNMP interface on the private snmpd and
#     {$POSTFIX.ALARM.INTERVAL}=10s;
#  5. checks that polled values equal what snmpget reads, then writes a
#     Postfix "fatal:" line to the mail log: the agent raises its log:fatal
#     alarm (log_alarm_seconds = 45), and Zabbix must show it as a problem
#     from polling (postfixStatus critical) and from the trap (tag
#     alarm=log:fatal), discover its postfixAlarmTable row, then resolve both
#     problems when the alarm clears (postfixStatus ok, the clear trap) and
#     drop the row's items.
set -euo pipefail
# shellcheck source=tests/release/lib.sh
source "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
DB=pfagentx_zabbix_test
DB_USER=pfagentx_zabbix
DB_PASSWORD=pfagentx-zabbix-test-password
OID=.1.3.6.1.4.1.8072.9999.9999.25

step() { printf '\n=== %s\n' "$*" >&2; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root (installs packages, creates a database, mounts a private /etc/zabbix)"
export DEBIAN_FRONTEND=noninteractive

step "packages"
need=()
for pkg in mariadb-server zabbix-server-mysql zabbix-frontend-php php-cli php8.2-mysql snmpd snmp snmptrapd python3; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update
    apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}"
fi
for prog in mysql zabbix_server php snmpd snmptrapd snmpget python3 unshare cargo; do
    command -v "$prog" >/dev/null || fail "$prog not found (apt-get install the package that has it; cargo: rustup)"
done
pgrep -x mariadbd >/dev/null || /etc/init.d/mariadb start
cargo build --quiet --bin postfix-agentx

step "database $DB"
mysql -e "DROP DATABASE IF EXISTS $DB;
          CREATE DATABASE $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
          SET GLOBAL log_bin_trust_function_creators = 1;
          CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
          ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
          GRANT ALL ON $DB.* TO '$DB_USER'@'localhost';"
for f in schema images data; do
    zcat "/usr/share/zabbix-server-mysql/$f.sql.gz" | mysql "$DB"
done

base=$(mktemp -d /tmp/pfagentx-zabbix-XXXXXX)
chmod 755 "$base"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then
        echo "kept $base and the database $DB" >&2
    else
        rm -rf "$base"
        mysql -e "DROP DATABASE IF EXISTS $DB; DROP USER IF EXISTS '$DB_USER'@'localhost'" || true
    fi
}
trap cleanup EXIT
show_logs() {
    for f in "$base"/*.log; do
        echo "--- $f" >&2
        tail -n 40 "$f" >&2
    done
}
snmp_port=$(free_port udp)
trap_port=$(free_port udp)
zabbix_port=$(free_port tcp)
web_port=$(free_port tcp)
mkdir -p "$base/persist" "$base/etc-zabbix" "$base/state"
export SNMP_PERSISTENT_DIR=$base/persist

step "snmptrapd on udp:127.0.0.1:$trap_port, feeding $base/snmptraps.log"
cat >"$base/snmptrapd.conf" <<EOF
authCommunity log,execute public
outputOption n
traphandle default /bin/sh $REPO/templates/zabbix/zabbix_traphandle.sh $base/snmptraps.log
EOF
MIBS='' snmptrapd -f -Lf "$base/snmptrapd.log" -C -c "$base/snmptrapd.conf" -p "$base/snmptrapd.pid" \
    "udp:127.0.0.1:$trap_port" &
pids+=($!)

step "snmpd on udp:127.0.0.1:$snmp_port and the agent"
start_snmpd "$base" "$snmp_port" "trap2sink 127.0.0.1:$trap_port public"
: >"$base/maillog"
start_agent "$base" <<EOF
[log]
source = "file"
path = ["$base/maillog"]
[state]
directory = "$base/state"
[queue]
enabled = false
[process]
enabled = false
[probes]
enabled = false
[certs]
enabled = false
[alarms]
log_alarm_seconds = 45
log_silence_seconds = 0
EOF
for _ in $(seq 100); do
    MIBS='' snmpget -v2c -c public -t 1 -r 0 "udp:127.0.0.1:$snmp_port" "$OID.1.9.1.0" 2>/dev/null | grep -q STRING && break
    sleep 0.2
done
MIBS='' snmpget -v2c -c public -t 1 -r 0 "udp:127.0.0.1:$snmp_port" "$OID.1.9.1.0" "$OID.1.6.1.0" ||
    { show_logs; fail "the agent does not answer through snmpd"; }

step "zabbix_server on tcp:127.0.0.1:$zabbix_port"
cat >"$base/zabbix_server.conf" <<EOF
LogFile=$base/zabbix_server.log
LogFileSize=0
PidFile=$base/zabbix_server.pid
SocketDir=$base
ListenIP=127.0.0.1
ListenPort=$zabbix_port
DBHost=localhost
DBName=$DB
DBUser=$DB_USER
DBPassword=$DB_PASSWORD
StartSNMPTrapper=1
SNMPTrapperFile=$base/snmptraps.log
CacheUpdateFrequency=5
StartPollers=2
StartPollersUnreachable=1
StartPingers=1
StartDiscoverers=1
StartHTTPPollers=1
StartTrappers=2
StartLLDProcessors=1
Timeout=4
AllowRoot=1
# Zabbix 6.0.14 refuses Debian 12's MariaDB 10.11 without this.
AllowUnsupportedDBVersions=1
EOF
zabbix_server -f -c "$base/zabbix_server.conf" >/dev/null &
zabbix_pid=$!
pids+=("$zabbix_pid")
for _ in $(seq 60); do
    grep -q "server #0 started" "$base/zabbix_server.log" 2>/dev/null && break
    kill -0 "$zabbix_pid" 2>/dev/null || { show_logs; fail "zabbix_server exited"; }
    sleep 0.5
done
grep -q "server #0 started" "$base/zabbix_server.log" || { show_logs; fail "zabbix_server did not start"; }

step "frontend on http://127.0.0.1:$web_port"
sed -e "s/^\$DB\['DATABASE'\].*/\$DB['DATABASE'] = '$DB';/" \
    -e "s/^\$DB\['USER'\].*/\$DB['USER'] = '$DB_USER';/" \
    -e "s/^\$DB\['PASSWORD'\].*/\$DB['PASSWORD'] = '$DB_PASSWORD';/" \
    /usr/share/zabbix/conf/zabbix.conf.php.example >"$base/etc-zabbix/zabbix.conf.php"
printf "\$ZBX_SERVER = '127.0.0.1';\n\$ZBX_SERVER_PORT = '%s';\n" "$zabbix_port" >>"$base/etc-zabbix/zabbix.conf.php"
# The frontend reads /etc/zabbix/zabbix.conf.php (a path compiled into it):
# in a private mount namespace that directory is ours.
# shellcheck disable=SC2016 # $1 and $2 expand in the inner sh.
unshare --mount --propagation private sh -c \
    'mount --bind "$1" /etc/zabbix && exec php -S "127.0.0.1:$2" -t /usr/share/zabbix' \
    sh "$base/etc-zabbix" "$web_port" >"$base/php.log" 2>&1 &
pids+=($!)

step "API: import, host, polling, an alarm raised and cleared"
python3 - "$web_port" "$snmp_port" "$REPO/templates/zabbix/postfix-agentx_zabbix_6.0.yaml" \
    "$base/maillog" "$base/snmptraps.log" <<'PY' || { show_logs; fail "see above"; }
import json, subprocess, sys, time, urllib.request

web_port, snmp_port, template_file, maillog, trapfile = sys.argv[1:]
url = f"http://127.0.0.1:{web_port}/api_jsonrpc.php"
OID = ".1.3.6.1.4.1.8072.9999.9999.25"
NAME = "Postfix by SNMP postfix-agentx"
auth = None

def call(method, params):
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    if auth:
        body["auth"] = auth
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json-rpc"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.load(r)
    if "error" in out:
        sys.exit(f"{method}: {out['error']}")
    return out["result"]

def snmpget(oid):
    out = subprocess.run(["snmpget", "-v2c", "-c", "public", "-On", "-Oe", "-Oq", "-t", "2",
                          f"udp:127.0.0.1:{snmp_port}", oid],
                         capture_output=True, text=True, env={"MIBS": ""}, check=True).stdout
    value = out.strip().split(" ", 1)[1]
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value

def wait(what, check, timeout):
    start = time.time()
    while time.time() - start < timeout:
        got = check()
        if got:
            print(f"ok ({time.time() - start:.0f} s): {what}", flush=True)
            return got
        time.sleep(2)
    sys.exit(f"timed out after {timeout} s: {what}")

def item(key, hostid):
    items = call("item.get", {"hostids": hostid, "filter": {"key_": key},
                              "output": ["itemid", "lastvalue", "lastclock", "state", "error"]})
    return items[0] if items else None

for _ in range(60):
    try:
        auth = call("user.login", {"username": "Admin", "password": "zabbix"})
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("the frontend does not answer")

# The template, with Zabbix's own import.
rules = {k: {"createMissing": True, "updateExisting": True}
         for k in ["templates", "items", "triggers", "graphs", "discoveryRules", "valueMaps"]}
rules["groups"] = {"createMissing": True}
with open(template_file) as f:
    call("configuration.import", {"format": "yaml", "source": f.read(), "rules": rules})
t = call("template.get", {"filter": {"host": NAME}, "selectItems": "count", "selectTriggers": "count",
                          "selectDiscoveries": "count", "selectMacros": "extend",
                          "selectValueMaps": "extend"})
if not t:
    sys.exit("template not created")
t = t[0]
tid = t["templateid"]
protos = call("itemprototype.get", {"templateids": tid, "countOutput": True})
tprotos = call("triggerprototype.get", {"templateids": tid, "countOutput": True})
print(f"imported '{NAME}': items={t['items']} triggers={t['triggers']} "
      f"discovery rules={t['discoveries']} item prototypes={protos} trigger prototypes={tprotos} "
      f"macros={len(t['macros'])} value maps={len(t['valuemaps'])}", flush=True)
if int(t["discoveries"]) != 8 or int(t["triggers"]) < 7 or int(protos) < 27:
    sys.exit("import incomplete")

# A host on the private snmpd; the alarm items every 10 s.
group = call("hostgroup.get", {"filter": {"name": "Templates/Applications"}})[0]["groupid"]
hostid = call("host.create", {
    "host": "postfix-agentx-test",
    "groups": [{"groupid": group}],
    "templates": [{"templateid": tid}],
    "interfaces": [{"type": 2, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "",
                    "port": snmp_port,
                    "details": {"version": 2, "bulk": 1, "community": "{$SNMP_COMMUNITY}"}}],
    "macros": [{"macro": "{$POSTFIX.ALARM.INTERVAL}", "value": "10s"}],
})["hostids"][0]

# Polled values equal what snmpd serves.
wait("postfix.status polled, ok", lambda: (i := item("postfix.status", hostid))
     and i["lastclock"] != "0" and i["lastvalue"] == "1", 90)
if snmpget(f"{OID}.1.6.1.0") != "1":
    sys.exit(f"snmpget postfixStatus: {snmpget(OID + '.1.6.1.0')}")
version = item("postfix.agent.version", hostid)
call("task.create", [{"type": 6, "request": {"itemid": version["itemid"]}}])
served = snmpget(f"{OID}.1.9.1.0")
wait(f"postfix.agent.version (check now) = snmpget's {served!r}",
     lambda: item("postfix.agent.version", hostid)["lastvalue"] == served, 60)

def problems():
    """Open problems of the alarm triggers (not the log-rate ones)."""
    return [p for p in call("problem.get", {"hostids": hostid, "output": ["name", "eventid"],
                                            "selectTags": "extend"})
            if p["name"].startswith(("Postfix agent: critical alarm", "Postfix agent: warning alarm"))]

if problems():
    sys.exit(f"alarm problems before the alarm: {problems()}")

# A fatal line from Postfix: the agent's log:fatal alarm (critical).
line = "zabbix release test: simulated failure"
with open(maillog, "a") as f:
    f.write(time.strftime("%b %e %H:%M:%S") + f" mx postfix/smtpd[4242]: fatal: {line}\n")
raised = time.time()

def has(name, tag=None):
    return [p for p in problems() if p["name"] == name
            and (tag is None or {"tag": "alarm", "value": tag} in p["tags"])]

wait("polled problem 'Postfix agent: critical alarm'", lambda: has("Postfix agent: critical alarm"), 40)
wait("trap problem 'Postfix agent: critical alarm log:fatal (SNMP trap)', tag alarm=log:fatal",
     lambda: has("Postfix agent: critical alarm log:fatal (SNMP trap)", "log:fatal"), 40)
traps = item('snmptrap["1.3.6.1.4.1.8072.9999.9999.25.0.[0-9]+[^0-9]"]', hostid)
if f"{OID}.0.13" not in traps["lastvalue"] or line not in traps["lastvalue"]:
    sys.exit(f"trap item value: {traps['lastvalue']!r}")
with open(trapfile) as f:
    print("SNMPTrapperFile:\n" + f.read(), flush=True)
index = ".".join(str(b) for b in [len("log:fatal")] + list(b"log:fatal"))
wait("discovered alarm row log:fatal, its text polled",
     lambda: (i := item(f"postfix.alarm.text[{index}]", hostid)) and line in i["lastvalue"], 40)
served = snmpget(f"{OID}.1.6.10.1.8.{index}")
if item(f"postfix.alarm.text[{index}]", hostid)["lastvalue"] != served:
    sys.exit(f"alarm text differs from snmpget's {served!r}")
wait("alarm severity critical = snmpget",
     lambda: (i := item(f"postfix.alarm.severity[{index}]", hostid)) and i["lastvalue"] == "3"
     and snmpget(f"{OID}.1.6.10.1.4.{index}") == "3", 30)
if time.time() - raised > 40:
    sys.exit("the checks of the raised alarm outlasted log_alarm_seconds")

# Cleared by the agent after log_alarm_seconds: both problems resolve.
wait("no open problem (postfixStatus ok, clear trap)", lambda: not problems(), 120)
if snmpget(f"{OID}.1.6.1.0") != "1" or item("postfix.status", hostid)["lastvalue"] != "1":
    sys.exit("postfixStatus not back to ok")
traps = item('snmptrap["1.3.6.1.4.1.8072.9999.9999.25.0.[0-9]+[^0-9]"]', hostid)
if f"{OID}.0.14" not in traps["lastvalue"]:
    sys.exit(f"last trap is not postfixLogFatalClear: {traps['lastvalue']!r}")
events = [e for e in call("event.get", {"hostids": hostid, "value": 1, "output": ["name", "r_eventid"]})
          if e["name"].startswith(("Postfix agent: critical alarm", "Postfix agent: warning alarm"))]
print("problem events:", [(e["name"], "resolved" if e["r_eventid"] != "0" else "open") for e in events])
if sorted(e["name"] for e in events) != ["Postfix agent: critical alarm",
                                        "Postfix agent: critical alarm log:fatal (SNMP trap)"]:
    sys.exit("expected one polled and one trap problem, both critical")
if any(e["r_eventid"] == "0" for e in events):
    sys.exit("problem events not resolved")
wait("the row's items are gone (lost resources kept 0 s)",
     lambda: item(f"postfix.alarm.text[{index}]", hostid) is None, 60)
PY
echo "=== PASS zabbix: template imported, polled values = snmpget, log:fatal alarm raised and cleared (polling and trap)"
