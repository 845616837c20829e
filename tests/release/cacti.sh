#!/usr/bin/env bash
# Release tier: the Cacti package (templates/cacti/postfix-agentx_cacti-package.xml.gz)
# on Debian 12's Cacti 1.2, the user's way (docs/templates.md, "Cacti"):
#
#  1. installs mariadb-server, cacti (debconf preseeded for dbconfig-common),
#     snmp, snmpd and rrdtool unless present; starts MariaDB if it is not running;
#  2. starts a private snmpd (AgentX master on a unix socket, a free loopback
#     UDP port) and the agent built from this tree, following a log this
#     script keeps appending Postfix lines to (tests/fixtures/postfix-3.7-sample.log);
#  3. imports the package with Cacti's import_package.php, the command
#     docs/templates.md prints (with its --profile-id for a 1-minute poller);
#  4. adds the device with the device template "Postfix (postfix-agentx)"
#     (add_device.php --template), sets the data queries to re-index on
#     "Index Count Changed" (add_data_query.php --reindex-method=2), creates
#     the graphs (add_graphs.php) and runs Cacti's poller (poller.php --force)
#     three times (CACTI_POLLS), a minute apart;
#  5. checks the RRD files Cacti wrote: every data source holds values, the
#     gauges equal what snmpget reads from the agent, the counters' last raw
#     values match snmpget and their stored rates match the counters' deltas;
#     renders the message graph with Cacti's own graph code to
#     target/cacti/messages.png.
#
# Run as root: bash tests/release/cacti.sh (about 3 minutes once Cacti is
# installed; the first install takes a few minutes more). Cacti's settings
# "poller_interval" and "cron_interval" are set to 60 s (Console ->
# Configuration -> Settings -> Poller) for the test's 1-minute polls.
set -euo pipefail
# shellcheck source=tests/release/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
repo=$PWD
[ "$(id -u)" -eq 0 ] || { echo "run as root (installs packages, runs Cacti's CLI)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
cli=/usr/share/cacti/cli
site=/usr/share/cacti/site
package=templates/cacti/postfix-agentx_cacti-package.xml.gz
root_oid=.1.3.6.1.4.1.8072.9999.9999.25

# --- 1. Cacti and MariaDB ---
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in mariadb-server snmp snmpd rrdtool; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
pgrep -x mariadbd >/dev/null || /etc/init.d/mariadb start
if ! installed cacti; then
    debconf-set-selections <<'EOF'
cacti cacti/webserver select apache2
cacti cacti/dbconfig-install boolean true
cacti cacti/database-type select mysql
cacti cacti/mysql/app-pass password cacti-test-password
cacti cacti/app-password-confirm password cacti-test-password
cacti cacti/mysql/admin-user string root
cacti cacti/mysql/admin-pass password
EOF
    apt-get install -y --no-install-recommends cacti
fi
# Read-only look-ups in Cacti's database (ids, file paths); nothing is
# written with SQL.
sql() { mysql --batch --skip-column-names cacti -e "$1"; }
cacti_php() { php -r "chdir('$site'); include('$site/include/cli_check.php'); $1"; }

# --- 2. snmpd and the agent ---
cargo build --quiet --bin postfix-agentx
base=$(mktemp -d /tmp/pfagentx-cacti-XXXXXX)
chmod 755 "$base"
pids=()
cleanup() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        for log in snmpd agent; do
            echo "--- $log.log (last lines)"; tail -n 20 "$base/$log.log" 2>/dev/null || true
        done
        ps -o pid,stat,cmd -p "${pids[@]}" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$base"
}
trap cleanup EXIT
snmp_port=$(free_port udp)
start_snmpd "$base" "$snmp_port"
: > "$base/maillog"
start_agent "$base" <<EOF
[log]
source = "file"
path = ["$base/maillog"]
[state]
directory = "$base/state"
[queue]
interval_seconds = 10
[process]
interval_seconds = 10
EOF
# Replays the fixture log, a few lines a second, so counters move.
(
    while true; do
        while IFS= read -r line; do
            printf '%s %s\n' "$(date '+%b %e %H:%M:%S')" "${line#* * * }" >> "$base/maillog"
            sleep 0.2
        done < tests/fixtures/postfix-3.7-sample.log
    done
) &
pids+=($!)
get() { MIBS='' snmpget -v2c -c public -t 2 -r 1 -Oqv "udp:127.0.0.1:$snmp_port" "$1"; }
for _ in $(seq 100); do
    get "$root_oid.1.9.1.0" 2>/dev/null | grep -q . && break
    sleep 0.2
done
get "$root_oid.1.9.1.0" >/dev/null
# Every table a data query indexes has rows before the device is added:
# Cacti sets up the row-count check of "Index Count Changed" from what it
# finds, and a table still empty then (deliveries, before the replay has
# reached a delivery line) would get none.
for xml in templates/cacti/postfix_*.xml; do
    index=$(sed -n 's:.*<oid_index>\(.*\)</oid_index>.*:\1:p' "$xml")
    for _ in $(seq 150); do
        MIBS='' snmpwalk -v2c -c public -t 2 -r 1 -On "udp:127.0.0.1:$snmp_port" "$index" 2>/dev/null |
            grep -qF "$index." && break
        sleep 0.4
    done
    MIBS='' snmpwalk -v2c -c public -t 2 -r 1 -On "udp:127.0.0.1:$snmp_port" "$index" 2>/dev/null |
        grep -qF "$index." || { echo "the agent serves no row of $index ($xml)" >&2; exit 1; }
done

# --- 3. import the package (docs/templates.md) ---
# A tampered copy must be refused: the package's signature is checked.
zcat "$package" | sed 's/Postfix (postfix-agentx)/Postfix (tampered)/' | gzip > "$base/tampered.xml.gz"
if php "$cli/import_package.php" --filename="$base/tampered.xml.gz" >"$base/tampered.log" 2>&1; then
    cat "$base/tampered.log"; echo "import_package.php accepted a tampered package" >&2; exit 1
fi
profile=$(sql "SELECT id FROM data_source_profiles WHERE step=60 ORDER BY id LIMIT 1")
php "$cli/import_package.php" --filename=templates/cacti/postfix-agentx_cacti-package.xml.gz --profile-id="$profile" \
    | tee "$base/import.log"
if grep -E '^\[(fail|error)' "$base/import.log"; then echo "import reported failures" >&2; exit 1; fi
for f in templates/cacti/postfix_*.xml; do
    cmp "$f" "$site/resource/snmp_queries/$(basename "$f")"
done
cacti_php "set_config_option('poller_interval', 60); set_config_option('cron_interval', 60);"

# --- 4. device, data queries, graphs, polls ---
template=$(php "$cli/add_device.php" --list-host-templates | awk -F'\t' '$2 == "Postfix (postfix-agentx)" {print $1}')
[ -n "$template" ] || { echo "device template not imported" >&2; exit 1; }
# A device left by an earlier run of this script.
php "$cli/remove_device.php" --ip=127.0.0.1 --confirm >/dev/null 2>&1 || true
out=$(php "$cli/add_device.php" --description="postfix-agentx test" --ip=127.0.0.1 --template="$template" \
    --version=2 --community=public --port="$snmp_port" --avail=snmp --ping_method=udp)
echo "$out"
host=$(echo "$out" | sed -n 's/.*device-id: (\([0-9]*\)).*/\1/p')
[ -n "$host" ] || { echo "add_device.php failed" >&2; exit 1; }
queries=$(sql "SELECT id FROM snmp_query WHERE xml_path LIKE '%/resource/snmp_queries/postfix\\_%'")
[ "$(echo "$queries" | wc -w)" -eq 6 ] || { echo "expected 6 data queries: $queries" >&2; exit 1; }
for q in $queries; do
    php "$cli/add_data_query.php" --host-id="$host" --data-query-id="$q" --reindex-method=2
done
[ "$(sql "SELECT COUNT(*) FROM host_snmp_query WHERE host_id=$host AND reindex_method=2")" -eq 6 ]
# Cacti's poller re-indexes each of them when the row count of its
# oid_index column changes (poller action 10: count the walked rows).
[ "$(sql "SELECT COUNT(*) FROM poller_reindex WHERE host_id=$host AND action=10 AND arg1 LIKE '$root_oid.%'")" -eq 6 ] ||
    { echo "data queries not set to re-index on Index Count Changed" >&2; exit 1; }
# Graphs of the device template's graph templates (the scalars)...
for gt in $(sql "SELECT graph_template_id FROM host_template_graph WHERE host_template_id=$template"); do
    php "$cli/add_graphs.php" --graph-type=cg --host-id="$host" --graph-template-id="$gt" || true
done
# ...and of every data query row (one graph per output field and row).
for q in $queries; do
    name_field=$(sed -n 's:.*<index_order>\([A-Za-z]*\).*:\1:p' \
        "$site/resource/snmp_queries/$(sql "SELECT SUBSTRING_INDEX(xml_path,'/',-1) FROM snmp_query WHERE id=$q")")
    rows=$(sql "SELECT COUNT(DISTINCT snmp_index) FROM host_snmp_cache WHERE host_id=$host AND snmp_query_id=$q")
    echo "data query $q: $rows rows"
    [ "$rows" -gt 0 ] || continue
    for qt in $(sql "SELECT id FROM snmp_query_graph WHERE snmp_query_id=$q"); do
        php "$cli/add_graphs.php" --graph-type=ds --host-id="$host" \
            --graph-template-id="$(sql "SELECT graph_template_id FROM snmp_query_graph WHERE id=$qt")" \
            --snmp-query-id="$q" --snmp-query-type-id="$qt" --snmp-field="$name_field" --snmp-value-regex='.*' >/dev/null
    done
done
graphs=$(sql "SELECT COUNT(*) FROM graph_local WHERE host_id=$host")
echo "graphs: $graphs"
[ "$graphs" -ge 20 ] || { echo "too few graphs" >&2; exit 1; }

declare -A last_at last_value
ds_rows() {
    sql "SELECT d.data_source_path, r.data_source_name, r.data_source_type_id, t.name
         FROM data_template_data d JOIN data_local l ON l.id=d.local_data_id
         JOIN data_template_rrd r ON r.local_data_id=l.id JOIN data_template t ON t.id=l.data_template_id
         WHERE l.host_id=$host" | sed 's:<path_rra>:/var/lib/cacti/rra:'
}
polls=${CACTI_POLLS:-3}
for i in $(seq "$polls"); do
    echo "poll $i/$polls"
    php "$site/poller.php" --force | grep -v "^OK u:" || true
    # Scalar counters: Cacti's last raw value against the agent's now.
    while IFS=$'\t' read -r path ds type name; do
        object=${name##* - }
        oid=$(awk -F'\t' -v o="$object" '$4 == o {print $5}' templates/cacti/scalars.tsv)
        if [ -z "$oid" ] || [ ! -f "$path" ]; then continue; fi
        raw=$(rrdtool info "$path" | sed -n "s/^ds\[$ds\].last_ds = \"\(.*\)\"/\1/p")
        now=$(get "$oid")
        echo "  $object: Cacti read $raw, agent now $now"
        if [ "$type" = 2 ]; then
            # A counter only grows; the agent's value is read after Cacti's.
            if [ "$raw" -gt "$now" ] || [ $((now - raw)) -ge 1000 ]; then
                echo "$object: Cacti's $raw does not match the agent's $now" >&2; exit 1
            fi
            last_value[$object]="${last_value[$object]:-} $raw"
            last_at[$object]="${last_at[$object]:-} $(rrdtool last "$path")"
        else
            [ "$raw" = "$now" ] || { echo "$object: Cacti stored $raw, the agent serves $now" >&2; exit 1; }
        fi
    done < <(ds_rows)
    [ "$i" -lt "$polls" ] && sleep 60
done

# --- 5. the RRDs ---
ok=0; empty=0
while IFS=$'\t' read -r path ds type name; do
    [ -f "$path" ] || { echo "$name: no RRD file $path" >&2; exit 1; }
    known=$(rrdtool fetch "$path" AVERAGE -r 60 --start -5min | awk 'NR>2 && $2 !~ /nan/' | wc -l)
    if [ "$known" -gt 0 ]; then ok=$((ok + 1)); else empty=$((empty + 1)); echo "no values: $name $path"; fi
done < <(ds_rows)
echo "data sources with values: $ok, without: $empty"
if [ "$empty" -ne 0 ] || [ "$ok" -lt 20 ]; then echo "Cacti's RRD files lack values" >&2; exit 1; fi

# The counters' stored rates against the deltas of the raw values Cacti read.
for object in postfixDelivered postfixReceived; do
    read -r -a v <<< "${last_value[$object]}"
    read -r -a t <<< "${last_at[$object]}"
    n=${#v[@]}
    expected=$(awk -v a="${v[0]}" -v b="${v[n-1]}" -v s="${t[0]}" -v e="${t[n-1]}" 'BEGIN {printf "%.4f", (b-a)/(e-s)}')
    path=$(ds_rows | awk -F'\t' -v o="$object" '$4 ~ " - "o"$" {print $1}')
    stored=$(rrdtool fetch "$path" AVERAGE -r 60 --start "${t[0]}" --end "${t[n-1]}" |
        awk 'NR>2 && $2 !~ /nan/ {s+=$2; n++} END {if (n) printf "%.4f", s/n; else print "nan"}')
    echo "$object: $expected per second from the counter, $stored per second in the RRD (raw ${v[*]})"
    awk -v x="$expected" -v y="$stored" 'BEGIN {exit !(x > 0 && y > x/2 && y < x*2)}' ||
        { echo "$object: the RRD's rate does not match the counter" >&2; exit 1; }
done

# The message graph, drawn by Cacti's own graph code.
mkdir -p target/cacti
graph=$(sql "SELECT l.id FROM graph_local l JOIN graph_templates g ON g.id=l.graph_template_id
             WHERE l.host_id=$host AND g.name='Postfix (postfix-agentx) - Messages'")
cacti_php "include_once('$site/lib/rrd.php'); \$n = array();
    \$png = rrdtool_function_graph($graph, 0, array('graph_start' => time() - 60 * ($polls + 2), 'graph_end' => time()), '', \$n, 0);
    file_put_contents('$repo/target/cacti/messages.png', \$png);"
file target/cacti/messages.png | grep -q 'PNG image' || { echo "Cacti drew no PNG" >&2; exit 1; }
echo "graph: target/cacti/messages.png"
php "$cli/remove_device.php" --ip=127.0.0.1 --confirm >/dev/null
echo "=== PASS cacti: package imported, $graphs graphs, $ok data sources with values"
