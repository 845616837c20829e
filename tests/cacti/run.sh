#!/usr/bin/env bash
# End-to-end check of the Cacti data queries against a real Cacti (Debian's
# package with a local MariaDB) and a real agent. Not part of `cargo test`
# (it installs Cacti and takes a few minutes); run it as root with
#
#   bash tests/cacti/run.sh
#
# What it does:
#  1. installs mariadb-server and cacti (debconf preseeded for
#     dbconfig-common) unless present, and starts MariaDB if it is not running;
#  2. starts a private snmpd and the agent (built from this tree) following a
#     log file that this script keeps appending Postfix lines to (from
#     tests/fixtures/postfix-3.7-sample.log), so the counters move;
#  3. copies templates/cacti/*.xml to Cacti's resource/snmp_queries and
#     creates, in Cacti's database, one data query per file and for every
#     output field a data template (COUNTER/GAUGE from
#     templates/cacti/data_source_types.tsv, 1-minute profile), a graph
#     template and the data query's graph/RRD association -- what the Cacti
#     console does when you follow docs/templates.md;
#  4. adds the device with Cacti's CLI (add_device.php, add_data_query.php,
#     add_graphs.php), runs Cacti's poller every minute for a few minutes;
#  5. checks the RRD files Cacti created hold data and renders them with
#     rrdtool graph into target/cacti-graphs/*.png.
# Everything the script adds to Cacti is named "postfix-agentx test" and
# removed at the start of the next run.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
[ "$(id -u)" -eq 0 ] || { echo "run as root (installs packages, writes Cacti's database)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
polls=${CACTI_POLLS:-4}

# --- 1. Cacti and MariaDB ---
if ! dpkg-query -W -f='${Status}' cacti 2>/dev/null | grep -q "install ok installed"; then
    apt-get install -y --no-install-recommends mariadb-server
    pgrep -x mariadbd >/dev/null || /etc/init.d/mariadb start
    debconf-set-selections <<'EOF'
cacti cacti/webserver select apache2
cacti cacti/dbconfig-install boolean true
cacti cacti/database-type select mysql
cacti cacti/mysql/app-pass password cacti-test-password
cacti cacti/app-password-confirm password cacti-test-password
cacti cacti/mysql/admin-user string root
cacti cacti/mysql/admin-pass password
EOF
    apt-get install -y --no-install-recommends cacti snmp rrdtool
fi
pgrep -x mariadbd >/dev/null || /etc/init.d/mariadb start
cacti_dir=/usr/share/cacti/site
cli=/usr/share/cacti/cli
sql() { mysql --batch --skip-column-names cacti -e "$1"; }

# --- 2. snmpd and the agent ---
cargo build --quiet --bin postfix-agentx
base=$(mktemp -d /tmp/pfagentx-cacti-XXXXXX)
chmod 755 "$base"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$base"
}
trap cleanup EXIT
snmp_port=$(python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
: > "$base/maillog"
cat > "$base/agent.toml" <<EOF
[agentx]
socket = "unix:$base/agentx.sock"
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
"$repo/target/debug/postfix-agentx" run --allow-root -c "$base/agent.toml" >"$base/agent.log" 2>&1 &
pids+=($!)
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
root_oid=.1.3.6.1.4.1.8072.9999.9999.25
for _ in $(seq 100); do
    MIBS='' snmpget -v2c -c public -t 1 -r 0 "udp:127.0.0.1:$snmp_port" "$root_oid.1.9.1.0" 2>/dev/null | grep -q STRING && break
    sleep 0.2
done

# --- 3. data queries and templates ---
if [ -n "$(sql "SELECT id FROM host WHERE description='postfix-agentx test'")" ]; then
    # remove_device.php of Cacti 1.2.24 does not match --description here.
    php "$cli/remove_device.php" --ip=127.0.0.1 --confirm >/dev/null
fi
# remove_device.php leaves the data sources: drop those of our templates.
ours="SELECT l.id FROM data_local l JOIN data_template t ON t.id=l.data_template_id
      WHERE t.name LIKE 'postfix-agentx test%'"
sql "DELETE FROM poller_item WHERE local_data_id IN ($ours);
     DELETE FROM data_input_data WHERE data_template_data_id IN
         (SELECT id FROM data_template_data WHERE local_data_id IN ($ours));
     DELETE FROM data_template_rrd WHERE local_data_id IN ($ours);
     DELETE FROM data_template_data WHERE local_data_id IN ($ours);
     DELETE FROM data_local WHERE id IN (SELECT id FROM ($ours) AS x)"
for qid in $(sql "SELECT id FROM snmp_query WHERE name LIKE 'postfix-agentx test%'"); do
    for sqg in $(sql "SELECT id FROM snmp_query_graph WHERE snmp_query_id=$qid"); do
        sql "DELETE FROM snmp_query_graph_rrd WHERE snmp_query_graph_id=$sqg;
             DELETE FROM snmp_query_graph_sv WHERE snmp_query_graph_id=$sqg;
             DELETE FROM snmp_query_graph_rrd_sv WHERE snmp_query_graph_id=$sqg"
    done
    sql "DELETE FROM snmp_query_graph WHERE snmp_query_id=$qid; DELETE FROM snmp_query WHERE id=$qid"
done
for dt in $(sql "SELECT id FROM data_template WHERE name LIKE 'postfix-agentx test%'"); do
    sql "DELETE FROM data_input_data WHERE data_template_data_id IN (SELECT id FROM data_template_data WHERE data_template_id=$dt);
         DELETE FROM data_template_rrd WHERE data_template_id=$dt;
         DELETE FROM data_template_data WHERE data_template_id=$dt; DELETE FROM data_template WHERE id=$dt"
done
for gt in $(sql "SELECT id FROM graph_templates WHERE name LIKE 'postfix-agentx test%'"); do
    sql "DELETE FROM graph_templates_item WHERE graph_template_id=$gt;
         DELETE FROM graph_templates_graph WHERE graph_template_id=$gt; DELETE FROM graph_templates WHERE id=$gt"
done
sql "UPDATE settings SET value='60' WHERE name IN ('poller_interval','cron_interval')"
sql "INSERT IGNORE INTO settings (name,value) VALUES ('poller_interval','60'),('cron_interval','60')"

h() { head -c 16 /dev/urandom | md5sum | cut -c1-32; }
# Template data source "Interface - Traffic" gives the data input fields of
# "Get SNMP Data (Indexed)" with index_type/index_value/output_type per row.
model_dtd=$(sql "SELECT d.id FROM data_template_data d JOIN data_template t ON t.id=d.data_template_id
                 WHERE t.name='Interface - Traffic' AND d.local_data_id=0")
profile=$(sql "SELECT id FROM data_source_profiles WHERE step=60 LIMIT 1")
declare -A query_id name_field graphs
for xml in templates/cacti/*.xml; do
    file=$(basename "$xml")
    install -m 644 "$xml" "$cacti_dir/resource/snmp_queries/$file"
    title=$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$xml" | head -n 1)
    qid=$(sql "INSERT INTO snmp_query (hash,xml_path,name,description,graph_template_id,data_input_id)
               VALUES ('$(h)','<path_cacti>/resource/snmp_queries/$file','postfix-agentx test $title','',0,2);
               SELECT LAST_INSERT_ID()")
    query_id[$file]=$qid
    name_field[$file]=$(sed -n 's:.*<index_order>\([A-Za-z]*\).*:\1:p' "$xml")
    while IFS=$'\t' read -r qfile field object ds_type; do
        [ "$qfile" = "$file" ] || continue
        type_id=$([ "$ds_type" = COUNTER ] && echo 2 || echo 1)
        ds_name=$(echo "$field" | cut -c1-19)
        label="|host_description| - $field - |query_${name_field[$file]}|"
        dt=$(sql "INSERT INTO data_template (hash,name) VALUES ('$(h)','postfix-agentx test $field'); SELECT LAST_INSERT_ID()")
        dtd=$(sql "INSERT INTO data_template_data (local_data_template_data_id,local_data_id,data_template_id,data_input_id,
                       t_name,name,name_cache,data_source_path,t_active,active,t_rrd_step,rrd_step,
                       t_data_source_profile_id,data_source_profile_id)
                   VALUES (0,0,$dt,2,'','$label','','','','on','',60,'',$profile); SELECT LAST_INSERT_ID()")
        sql "INSERT INTO data_input_data (data_input_field_id,data_template_data_id,t_value,value)
             SELECT data_input_field_id,$dtd,t_value,value FROM data_input_data WHERE data_template_data_id=$model_dtd"
        rrd=$(sql "INSERT INTO data_template_rrd (hash,local_data_template_rrd_id,local_data_id,data_template_id,
                       t_rrd_maximum,rrd_maximum,t_rrd_minimum,rrd_minimum,t_rrd_heartbeat,rrd_heartbeat,
                       t_data_source_type_id,data_source_type_id,t_data_source_name,data_source_name,
                       t_data_input_field_id,data_input_field_id)
                   VALUES ('$(h)',0,0,$dt,'','U','','0','',120,'',$type_id,'','$ds_name','',0); SELECT LAST_INSERT_ID()")
        gt=$(sql "INSERT INTO graph_templates (hash,name,multiple,test_source) VALUES ('$(h)','postfix-agentx test $field','','');
                  SELECT LAST_INSERT_ID()")
        sql "INSERT INTO graph_templates_graph (local_graph_template_graph_id,local_graph_id,graph_template_id,
                 image_format_id,title,title_cache,height,width,upper_limit,lower_limit,vertical_label,slope_mode,
                 auto_scale,auto_scale_opts,auto_scale_log,scale_log_units,auto_scale_rigid,auto_padding,base_value,
                 grouping,unit_value,unit_exponent_value,alt_y_grid,right_axis,right_axis_label,right_axis_format,
                 right_axis_formatter,left_axis_formatter,no_gridfit,unit_length,tab_width,dynamic_labels,
                 force_rules_legend,legend_position,legend_direction)
             SELECT 0,0,$gt,image_format_id,'$label','',height,width,upper_limit,lower_limit,
                 '$([ "$ds_type" = COUNTER ] && echo 'per second' || echo "$object")',slope_mode,
                 auto_scale,auto_scale_opts,auto_scale_log,scale_log_units,auto_scale_rigid,auto_padding,base_value,
                 grouping,unit_value,unit_exponent_value,alt_y_grid,right_axis,right_axis_label,right_axis_format,
                 right_axis_formatter,left_axis_formatter,no_gridfit,unit_length,tab_width,dynamic_labels,
                 force_rules_legend,legend_position,legend_direction
             FROM graph_templates_graph WHERE graph_template_id=47 AND local_graph_id=0"
        # AREA of the data source, then its last value.
        sql "INSERT INTO graph_templates_item (hash,local_graph_template_item_id,local_graph_id,graph_template_id,
                 task_item_id,color_id,alpha,graph_type_id,line_width,cdef_id,vdef_id,consolidation_function_id,
                 text_format,value,hard_return,gprint_id,sequence)
             VALUES ('$(h)',0,0,$gt,$rrd,22,'FF',7,0,0,0,1,'$object','','',2,1),
                    ('$(h)',0,0,$gt,$rrd,0,'FF',9,0,0,0,4,'Current:','','on',2,2)"
        sqg=$(sql "INSERT INTO snmp_query_graph (hash,snmp_query_id,name,graph_template_id)
                   VALUES ('$(h)',$qid,'$field',$gt); SELECT LAST_INSERT_ID()")
        sql "INSERT INTO snmp_query_graph_rrd (snmp_query_graph_id,data_template_id,data_template_rrd_id,snmp_field_name)
             VALUES ($sqg,$dt,$rrd,'$field');
             INSERT INTO snmp_query_graph_sv (hash,snmp_query_graph_id,sequence,field_name,text)
             VALUES ('$(h)',$sqg,1,'title','$label');
             INSERT INTO snmp_query_graph_rrd_sv (hash,snmp_query_graph_id,data_template_id,sequence,field_name,text)
             VALUES ('$(h)',$sqg,$dt,1,'name','$label')"
        graphs[$file]="${graphs[$file]:-} $gt:$sqg"
    done < templates/cacti/data_source_types.tsv
done

# --- 4. device, data queries, graphs, polling ---
out=$(php "$cli/add_device.php" --description="postfix-agentx test" --ip=127.0.0.1 --template=0 \
    --version=2 --community=public --port="$snmp_port" --avail=snmp --ping_method=udp)
echo "$out"
host=$(echo "$out" | sed -n 's/.*device-id: (\([0-9]*\)).*/\1/p')
[ -n "$host" ] || { echo "add_device.php failed" >&2; exit 1; }
created=0
for file in "${!query_id[@]}"; do
    php "$cli/add_data_query.php" --host-id="$host" --data-query-id="${query_id[$file]}" --reindex-method=1
    rows=$(sql "SELECT COUNT(DISTINCT snmp_index) FROM host_snmp_cache WHERE host_id=$host AND snmp_query_id=${query_id[$file]}")
    echo "$file: $rows rows indexed"
    [ "$rows" -gt 0 ] || continue
    for pair in ${graphs[$file]}; do
        php "$cli/add_graphs.php" --graph-type=ds --host-id="$host" --graph-template-id="${pair%%:*}" \
            --snmp-query-id="${query_id[$file]}" --snmp-query-type-id="${pair##*:}" \
            --snmp-field="${name_field[$file]}" --snmp-value-regex='.*' --quiet || true
        created=$((created + 1))
    done
done
echo "graphs created for $created data query fields"
for i in $(seq "$polls"); do
    echo "poll $i/$polls"
    # As root, the user this script runs as (cron runs it as www-data; a
    # mix would leave files one of them cannot write).
    php "$cacti_dir/poller.php" --force | grep -v "^OK u:" || true
    [ "$i" -lt "$polls" ] && sleep 60
done

# --- 5. the RRDs Cacti filled, rendered ---
out_dir=$repo/target/cacti-graphs
mkdir -p "$out_dir"
rm -f "$out_dir"/*.png
ok=0
rising=0
while IFS=$'\t' read -r path ds name type_id; do
    path=${path/<path_rra>//var/lib/cacti/rra}
    [ -f "$path" ] || continue
    known=$(rrdtool fetch "$path" AVERAGE --start -10min | awk 'NR>2 && $2 !~ /nan/' | wc -l)
    png=$out_dir/$(basename "$path" .rrd).png
    rrdtool graph "$png" --start -10min --width 500 --height 150 --title "$name" \
        "DEF:v=$path:$ds:AVERAGE" "AREA:v#2774A4:$ds" >/dev/null
    echo "$name: $known values -> $png"
    [ "$known" -gt 0 ] && ok=$((ok + 1))
    # A COUNTER data source whose Postfix counter moved shows a rate above 0.
    if [ "$type_id" = 2 ] && rrdtool fetch "$path" AVERAGE --start -10min |
        awk 'NR>2 && $2 !~ /nan/ && $2+0 > 0 {found=1} END {exit !found}'; then
        rising=$((rising + 1))
    fi
done < <(sql "SELECT d.data_source_path, r.data_source_name, d.name_cache, r.data_source_type_id FROM data_template_data d
              JOIN data_local l ON l.id=d.local_data_id JOIN data_template_rrd r ON r.local_data_id=l.id
              WHERE l.host_id=$host")
echo "data sources with values: $ok; COUNTER data sources with a rate above 0: $rising"
[ "$ok" -gt 0 ] || { echo "no Cacti RRD holds data" >&2; exit 1; }
[ "$rising" -gt 0 ] || { echo "no COUNTER data source shows a rate" >&2; exit 1; }
