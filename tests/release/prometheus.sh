#!/usr/bin/env bash
# Release tier: the Prometheus templates (templates/prometheus/) against the
# real programs of Debian 12: prometheus-snmp-exporter 0.21 (the exporter
# and its generator), prometheus 2.42 (promtool and the server), snmpd and
# the agent built from this tree. No systemd: every daemon is started by
# hand on private loopback ports and stopped at the end. About 1 minute
# once the packages are installed.
#
#  1. snmp.yml is what prometheus-snmp-generator makes of generator.yml and
#     mibs/POSTFIX-MIB.txt (regenerated and compared);
#  2. promtool check rules / test rules on the alert rules and their tests;
#  3. a private snmpd + the agent, reading a log of Postfix lines
#     (tests/fixtures/postfix-3.7-sample.log), with an SMTP probe of a
#     closed port and a certificate that expires in 5 days; the exporter
#     runs with templates/prometheus/snmp.yml, and every sample of
#     /snmp?module=postfix_agentx equals what snmpwalk returns for its OID,
#     table rows labelled with their names;
#  4. a Prometheus server scrapes the exporter with the scrape configuration
#     of docs/templates.md and loads the rules: the alerts for the down
#     master, the failing probe, the expiring certificate and new
#     panic:/fatal: lines become active on the agent's real data, every
#     PromQL expression of grafana-dashboard.json returns series, and once
#     the agent is stopped PostfixAgentDown becomes active.
# KEEP=1 keeps the work directory (/tmp/pfagentx-prom-*) for a look.
set -euo pipefail
# shellcheck source=tests/release/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
repo=$PWD
[ "$(id -u)" -eq 0 ] || { echo "run as root (installs packages)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
tpl=$repo/templates/prometheus

# --- packages ---
missing=()
for p in prometheus-snmp-exporter prometheus snmpd snmp openssl curl python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
    # The packages start their own services where systemd runs; this test
    # starts private instances, so stop the ones it has just installed.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        for svc in prometheus prometheus-snmp-exporter; do
            if [[ " ${missing[*]} " == *" $svc "* ]]; then systemctl stop "$svc" || true; fi
        done
    fi
fi

base=$(mktemp -d /tmp/pfagentx-prom-XXXXXX)
chmod 755 "$base"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$base"/*.log; do echo "--- $f"; tail -n 20 "$f"; done >&2
    exit 1
}

# --- 1. snmp.yml is the generator's output ---
# The IETF base MIBs (SNMPv2-SMI, -TC, -CONF) are not in Debian (non-free
# snmp-mibs-downloader); they come from the npm package net-snmp, as in
# tests/support/mibs.rs.
mibs=$base/mibs
mkdir -p "$mibs"
base_mibs=${POSTFIX_AGENTX_BASE_MIBS:-/tmp/postfix-agentx-base-mibs}
if [ ! -f "$base_mibs/SNMPv2-SMI.txt" ]; then
    (cd "$base" && npm pack net-snmp --silent >/dev/null && tar xzf net-snmp-*.tgz)
    for m in SNMPv2-SMI SNMPv2-TC SNMPv2-CONF SNMPv2-MIB; do
        cp "$base/package/lib/mibs/$m.mib" "$mibs/$m.txt"
    done
else
    cp "$base_mibs"/SNMPv2-*.txt "$mibs/"
fi
cp mibs/POSTFIX-MIB.txt "$mibs/"
mkdir "$base/gen"
cp "$tpl/generator.yml" "$base/gen/"
(cd "$base/gen" && MIBDIRS=$mibs prometheus-snmp-generator --fail-on-parse-errors generate) \
    > "$base/generator.log" 2>&1 || fail "prometheus-snmp-generator failed"
diff -u "$tpl/snmp.yml" "$base/gen/snmp.yml" ||
    fail "templates/prometheus/snmp.yml is not the generator's output of generator.yml"
echo "snmp.yml: identical to prometheus-snmp-generator's output ($(grep -c '^  - name:' "$tpl/snmp.yml") metrics)"

# --- 2. rules ---
promtool check rules "$tpl/postfix-agentx.rules.yml"
promtool test rules "$tpl/rules_test.yml"

# --- 3. snmpd, the agent, the exporter ---
cargo build --quiet --bin postfix-agentx
snmp_port=$(free_port udp)
exporter_port=$(free_port tcp)
prom_port=$(free_port tcp)
closed_port=$(free_port tcp)
start_snmpd "$base" "$snmp_port"
# A certificate that expires in 5 days, and a private queue directory (the
# agent counts its files; nothing runs Postfix here, so master is "down").
openssl req -x509 -newkey rsa:2048 -nodes -days 5 -subj /CN=mx.test.invalid \
    -keyout "$base/key.pem" -out "$base/cert.pem" 2>/dev/null
for q in maildrop incoming active deferred hold corrupt; do mkdir -p "$base/spool/$q"; done
mkdir -p "$base/spool/deferred/A" "$base/postfix-etc"
head -c 2000 /dev/zero > "$base/spool/deferred/A/A1B2C3D4E5"
head -c 3000 /dev/zero > "$base/spool/deferred/A/A1B2C3D4E6"
replay() {
    while IFS= read -r line; do
        printf '%s %s\n' "$(date '+%b %e %H:%M:%S')" "${line#* * * }"
    done < tests/fixtures/postfix-3.7-sample.log >> "$base/maillog"
}
replay
fixture_lines=$(wc -l < tests/fixtures/postfix-3.7-sample.log)
start_agent "$base" <<EOF
[log]
source = "file"
path = ["$base/maillog"]
start_at = "beginning"
[state]
directory = "$base/state"
[postfix]
config_directory = "$base/postfix-etc"
queue_directory = "$base/spool"
[queue]
method = "directory"
interval_seconds = 5
[process]
interval_seconds = 5
[[probe]]
name = "smtp-closed"
type = "smtp"
target = "127.0.0.1:$closed_port"
interval_seconds = 3600
timeout_seconds = 2
[certs]
files = ["$base/cert.pem"]
from_postfix = false
EOF
root_oid=1.3.6.1.4.1.8072.9999.9999.25
get() { MIBS='' snmpget -v2c -c public -t 1 -r 0 -Oqv "udp:127.0.0.1:$snmp_port" "$1" 2>/dev/null; }
# Every line of the fixture read, the probe run, the certificate read.
for _ in $(seq 150); do
    [ "$(get "$root_oid.1.9.4.0")" = "$fixture_lines" ] &&
        [ "$(MIBS='' snmpwalk -v2c -c public -Oqv "udp:127.0.0.1:$snmp_port" "$root_oid.1.4.10.1.5" 2>/dev/null)" = 2 ] &&
        MIBS='' snmpwalk -v2c -c public -Oqv "udp:127.0.0.1:$snmp_port" "$root_oid.1.5.10.1.5" 2>/dev/null | grep -qx '[0-9]*' &&
        [ "$(MIBS='' snmpwalk -v2c -c public -Oqv "udp:127.0.0.1:$snmp_port" "$root_oid.1.2.10.1.3.4" 2>/dev/null)" = 2 ] &&
        break
    sleep 0.2
done
[ "$(get "$root_oid.1.9.4.0")" = "$fixture_lines" ] || fail "the agent did not read the $fixture_lines fixture lines"

prometheus-snmp-exporter --config.file="$tpl/snmp.yml" \
    --web.listen-address="127.0.0.1:$exporter_port" >"$base/exporter.log" 2>&1 &
pids+=($!)
scrape_url="http://127.0.0.1:$exporter_port/snmp?target=127.0.0.1:$snmp_port&module=postfix_agentx"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$exporter_port/" && break; sleep 0.2; done

walk() { MIBS='' snmpwalk -v2c -c public -On -Oe -Ox -Ot "udp:127.0.0.1:$snmp_port" "$root_oid.1"; }
walk > "$base/walk1.txt"
curl -sf "$scrape_url" > "$base/scrape.txt" || fail "scrape of $scrape_url failed"
walk > "$base/walk2.txt"

# Every sample of the module equals the SNMP value of its OID (in the walk
# before or after the scrape: gauges such as the scan duration move), and
# carries the row's labels as snmp.yml says.
python3 - "$tpl/snmp.yml" "$base/scrape.txt" "$base/walk1.txt" "$base/walk2.txt" <<'PY'
import re, sys

snmp_yml, scrape, walks = sys.argv[1], sys.argv[2], sys.argv[3:]

# snmp.yml: name -> oid, type, enum values.
metrics = {}
name = None
for line in open(snmp_yml):
    m = re.match(r"  - name: (\w+)$", line)
    if m:
        name = m.group(1)
        metrics[name] = {"enum": {}}
    m = re.match(r"    (oid|type): (\S+)$", line)
    if m and name:
        metrics[name][m.group(1)] = m.group(2)
    m = re.match(r"      (\d+): (\w+)$", line)
    if m and name:
        metrics[name]["enum"][m.group(1)] = m.group(2)

def date_and_time(hexvalue):
    """RFC 2579 DateAndTime octets -> Unix time, as the exporter converts it."""
    import datetime
    b = bytes.fromhex(hexvalue)
    if not any(b):
        return None  # all zero: "never"
    tz = datetime.timezone.utc
    if len(b) == 11:
        off = datetime.timedelta(hours=b[9], minutes=b[10])
        tz = datetime.timezone(off if b[8] == ord("+") else -off)
    t = datetime.datetime(int.from_bytes(b[0:2], "big"), b[2], b[3], b[4], b[5], b[6],
                          b[7] * 100000, tzinfo=tz)
    return t.timestamp()

def parse_walk(path):
    # "-On -Oe -Ox": numeric OIDs and enums, strings in hex (long ones go
    # on over several lines).
    entries = []
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("."):
            entries.append(line)
        elif entries:
            entries[-1] += " " + line
    values = {}
    for e in entries:
        oid, _, rest = e[1:].partition(" = ")
        if rest == '""':
            values[oid] = ("STRING", "")
            continue
        kind, _, value = rest.partition(": ")
        value = value.strip()
        if kind == "Hex-STRING":
            value = bytes.fromhex(value.replace(" ", "")).decode("utf-8", "replace")
        elif kind == "STRING":
            value = value.strip('"')
        if kind == "Hex-STRING":
            raw.setdefault(oid, []).append(rest.partition(": ")[2].replace(" ", ""))
        values[oid] = (kind, value)
    return values

raw = {}
snaps = [parse_walk(w) for w in walks]

def index_oid(labels, kind):
    """The OID suffix of a row from its index label."""
    # String-indexed tables: length + octets.
    for key in ("postfixProcessDaemon", "postfixDeliveryService", "postfixProbeKey",
                "postfixCertKey", "postfixAlarmKey", "postfixSourceKey"):
        if key in labels:
            b = labels[key].encode()
            return ".".join([str(len(b))] + [str(c) for c in b])
    return None

def name_of(table_col_oid, number, column):
    # postfixQueueName / postfixRejectReasonName of row `number`.
    return snaps[0].get(f"{table_col_oid}.{column}.{number}", (None, None))[1]

queue_entry = "1.3.6.1.4.1.8072.9999.9999.25.1.2.10.1"
reject_entry = "1.3.6.1.4.1.8072.9999.9999.25.1.1.30.1"
def row_by_name(entry, column, value):
    for oid, (_, v) in snaps[0].items():
        if oid.startswith(f"{entry}.{column}.") and v == value:
            return oid.rsplit(".", 1)[1]
    return None

checked, rows, labelled = 0, set(), set()
errors = []
sample_re = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")
label_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
for line in open(scrape):
    if line.startswith("#"):
        continue
    m = sample_re.match(line.strip())
    if not m:
        continue
    name, labelstr, value = m.groups()
    if name.startswith("snmp_"):
        continue
    if name.endswith("_info") and metrics.get(name[:-5], {}).get("type") == "EnumAsInfo":
        name = name[:-5]
    if name not in metrics:
        errors.append(f"{name}: not a metric of snmp.yml")
        continue
    meta = metrics[name]
    labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in label_re.findall(labelstr or "")}
    suffix = index_oid(labels, meta["type"])
    if "postfixQueueName" in labels:
        suffix = row_by_name(queue_entry, 2, labels["postfixQueueName"])
        labelled.add(("queue", labels["postfixQueueName"]))
    if "postfixRejectReasonName" in labels:
        suffix = row_by_name(reject_entry, 2, labels["postfixRejectReasonName"])
        labelled.add(("reject", labels["postfixRejectReasonName"]))
    oid = meta["oid"] + "." + (suffix if suffix else "0")
    found = [s.get(oid) for s in snaps]
    if all(f is None for f in found):
        errors.append(f"{line.strip()}: no OID {oid} in the walk")
        continue
    t = meta["type"]
    if t in ("counter", "gauge"):
        ok = any(f is not None and float(f[1]) == float(value) for f in found)
    elif t == "DisplayString":
        ok = float(value) == 1 and any(f is not None and labels.get(name) == f[1] for f in found)
    elif t == "EnumAsInfo":
        ok = float(value) == 1 and any(
            f is not None and labels.get(name) == meta["enum"].get(f[1]) for f in found)
    elif t == "DateAndTime":
        # All zero octets ("never") come out as year 0: -62169984000.
        stamps = [date_and_time(h) for h in raw.get(oid, [])]
        ok = any((s is None and float(value) < -6e10) or
                 (s is not None and abs(s - float(value)) < 1) for s in stamps)
    else:
        ok = False
    if not ok:
        errors.append(f"{line.strip()}: SNMP has {found}")
    checked += 1
    if suffix:
        rows.add(name)
for e in errors:
    print("MISMATCH", e)
print(f"compared {checked} samples with snmpwalk; table metrics: {len(rows)}; "
      f"rows labelled by lookup: {sorted(labelled)}")
if errors or checked < 60:
    sys.exit(1)
PY

# The brief's named cases, spelled out: counters, and table rows with their
# name label.
sample() { grep -E "^$1 " "$base/scrape.txt" | awk '{print $2}'; }
expect() {
    local metric=$1 oid=$2 snmp
    snmp=$(get "$oid")
    local got
    got=$(sample "$(printf '%s' "$metric" | sed 's/[{}]/\\&/g')")
    if [ -z "$got" ] || [ "$got" != "$snmp" ]; then fail "$metric: exporter '$got', snmpget '$snmp' ($oid)"; fi
    echo "  $metric = $got (snmpget $oid: $snmp)"
}
echo "exporter vs snmpget:"
expect postfixReceived "$root_oid.1.1.3.0"
expect postfixDelivered "$root_oid.1.1.1.0"
expect postfixRejected "$root_oid.1.1.4.0"
expect postfixDeferred "$root_oid.1.1.6.0"
expect postfixBounced "$root_oid.1.1.7.0"
expect postfixLogFatal "$root_oid.1.1.10.0"
expect postfixLogPanic "$root_oid.1.1.12.0"
expect postfixAgentLinesRead "$root_oid.1.9.4.0"
[ "$(get "$root_oid.1.1.3.0")" -gt 0 ] || fail "postfixReceived is 0: the fixture was not counted"
# Reject reason 1 (rbl), queue 4 (deferred): the lookup labels.
[ "$(get "$root_oid.1.1.30.1.2.1")" = '"rbl"' ] || fail "postfixRejectReasonName.1 is not rbl"
expect 'postfixRejectCount{postfixRejectReasonName="rbl"}' "$root_oid.1.1.30.1.3.1"
expect 'postfixQueueMessages{postfixQueueName="deferred"}' "$root_oid.1.2.10.1.3.4"
expect 'postfixQueueBytes{postfixQueueName="deferred"}' "$root_oid.1.2.10.1.4.4"
# String index "smtp-closed" = 11 octets; "master" = 6.
expect 'postfixProbeStatus{postfixProbeKey="smtp-closed"}' \
    "$root_oid.1.4.10.1.5.11.$(printf 'smtp-closed' | od -An -tu1 | xargs | tr ' ' .)"
expect 'postfixProcessStatus{postfixProcessDaemon="master"}' \
    "$root_oid.1.3.10.1.8.6.$(printf 'master' | od -An -tu1 | xargs | tr ' ' .)"
cert_label=$(printf '%s' "$base/cert.pem")
cert_idx="${#cert_label}.$(printf '%s' "$cert_label" | od -An -tu1 | xargs | tr ' ' .)"
expect "postfixCertDaysToExpiry{postfixCertKey=\"$cert_label\"}" "$root_oid.1.5.10.1.5.$cert_idx"
grep -q "^postfixDeliverySent{postfixDeliveryService=\"[a-z]*\"} [1-9]" "$base/scrape.txt" ||
    fail "no delivery service row with deliveries"

# --- 4. Prometheus with the docs' scrape configuration and the rules ---
cp "$tpl/postfix-agentx.rules.yml" "$base/"
cat > "$base/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $base/postfix-agentx.rules.yml
scrape_configs:
  - job_name: postfix-agentx
    metrics_path: /snmp
    params:
      module: [postfix_agentx]
    static_configs:
      - targets: ['127.0.0.1:$snmp_port']
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:$exporter_port
EOF
promtool check config "$base/prometheus.yml"
prometheus --config.file="$base/prometheus.yml" --storage.tsdb.path="$base/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$base/prometheus.log" 2>&1 &
pids+=($!)
api=http://127.0.0.1:$prom_port/api/v1
query() { curl -sf --data-urlencode "query=$1" "$api/query"; }
count() { query "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))'; }
for _ in $(seq 100); do
    [ "$(count 'postfixAgentLinesRead' 2>/dev/null || echo 0)" -gt 0 ] && break
    sleep 0.3
done
[ "$(count 'up{job="postfix-agentx"} == 1')" = 1 ] || fail "Prometheus does not scrape the exporter"
# New mail log lines after Prometheus's first scrape: counters rise, and
# panic:/fatal: lines appear.
sleep 3
replay
active() { count "ALERTS{alertname=\"$1\"}"; }
for _ in $(seq 60); do
    n=0
    for a in PostfixDaemonDown PostfixProbeFailing PostfixCertificateExpiresSoon \
        PostfixCertificateExpiresVerySoon PostfixLogPanic PostfixLogFatal; do
        [ "$(active "$a")" -gt 0 ] && n=$((n + 1))
    done
    [ "$n" = 6 ] && break
    sleep 0.5
done
echo "alerts active on the agent's data:"
query 'ALERTS' | python3 -c 'import json,sys
for r in json.load(sys.stdin)["data"]["result"]:
    m = r["metric"]; print("  %s %s %s" % (m["alertname"], m["alertstate"], {k: v for k, v in m.items() if k.startswith("postfix")}))'
for a in PostfixDaemonDown PostfixProbeFailing PostfixCertificateExpiresSoon \
    PostfixCertificateExpiresVerySoon PostfixLogPanic PostfixLogFatal; do
    [ "$(active "$a")" -gt 0 ] || fail "alert $a is not active"
done
[ "$(count 'ALERTS{alertname="PostfixDaemonDown",postfixProcessDaemon="master"}')" = 1 ] ||
    fail "PostfixDaemonDown is not about master"
[ "$(count 'ALERTS{alertname="PostfixProbeFailing",postfixProbeKey="smtp-closed"}')" = 1 ] ||
    fail "PostfixProbeFailing is not about smtp-closed"
# The failing probe also puts the agent's "probes" source in error
# (postfixSourceStatus 2), and only that one.
probes_idx="6.$(printf 'probes' | od -An -tu1 | xargs | tr ' ' .)"
[ "$(get "$root_oid.1.9.10.1.3.$probes_idx")" = 2 ] || fail "the probes source is not in error"
if [ "$(active PostfixAgentSourceFailing)" != 1 ] ||
    [ "$(count 'ALERTS{alertname="PostfixAgentSourceFailing",postfixSourceKey="probes"}')" != 1 ]; then
    fail "PostfixAgentSourceFailing is not exactly about the probes source"
fi
for a in PostfixDeferredQueueLarge PostfixQueueLarge PostfixQueueGrowing PostfixHoldQueueNotEmpty \
    PostfixQueueOldMessage PostfixAgentDown; do
    [ "$(active "$a")" = 0 ] || fail "alert $a is active without its condition"
done
[ "$(count 'rate(postfixReceived[30s]) > 0')" = 1 ] || fail "no rate of postfixReceived"

# Every PromQL expression of the dashboard returns series, with Grafana's
# variables replaced as Grafana would ($instance: All).
python3 - "$tpl/grafana-dashboard.json" "$api" <<'PY'
import json, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
api = sys.argv[2]
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
var = dash["templating"]["list"][1]["query"]["query"]
exprs.append(var.replace("label_values(", "").split(",")[0])
bad = 0
for e in exprs:
    q = e.replace("$instance", ".*").replace("$__rate_interval", "30s")
    url = api + "/query?" + urllib.parse.urlencode({"query": q})
    try:
        res = json.load(urllib.request.urlopen(url))
    except Exception as err:
        print("ERROR", e, err); bad += 1; continue
    n = len(res["data"]["result"])
    print(f"  {n:3d} series  {e}")
    if res["status"] != "success" or n == 0:
        bad += 1
print(f"dashboard: {len(exprs)} expressions, {bad} without series")
sys.exit(1 if bad else 0)
PY

# The agent stops: snmpd answers without POSTFIX-MIB, the alert for it.
kill "$agent_pid"
for _ in $(seq 60); do
    [ "$(active PostfixAgentDown)" -gt 0 ] && break
    sleep 0.5
done
[ "$(active PostfixAgentDown)" -gt 0 ] || fail "PostfixAgentDown is not active with the agent stopped"
echo "PostfixAgentDown active once the agent stopped"
echo "=== PASS prometheus: snmp.yml generated, exporter = snmpwalk, rules tested, alerts and dashboard on live data"
