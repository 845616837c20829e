#!/usr/bin/env bash
# Imports templates/zabbix/postfix-agentx_zabbix_6.0.yaml into a real Zabbix
# 6.0 (Debian 12's zabbix-frontend-php with a local MariaDB) through the
# frontend's JSON-RPC API (configuration.import), then reads back what Zabbix
# created. Not part of `cargo test` (it installs Zabbix); run as root:
#
#   bash tests/zabbix/import.sh
#
# It creates the database `zabbix` if missing and serves the frontend with
# `php -S` on a free loopback port for the duration of the script.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
[ "$(id -u)" -eq 0 ] || { echo "run as root (installs packages, creates a database)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

if ! dpkg-query -W -f='${Status}' zabbix-frontend-php 2>/dev/null | grep -q "install ok installed"; then
    apt-get install -y --no-install-recommends mariadb-server zabbix-server-mysql zabbix-frontend-php \
        php8.2-mysql php-cli python3
fi
pgrep -x mariadbd >/dev/null || /etc/init.d/mariadb start

if [ -z "$(mysql --batch --skip-column-names -e "SHOW DATABASES LIKE 'zabbix'")" ] ||
   [ -z "$(mysql --batch --skip-column-names zabbix -e "SHOW TABLES LIKE 'dbversion'")" ]; then
    mysql -e "CREATE DATABASE IF NOT EXISTS zabbix CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
              SET GLOBAL log_bin_trust_function_creators = 1;"
    for f in schema images data; do
        zcat "/usr/share/zabbix-server-mysql/$f.sql.gz" | mysql zabbix
    done
fi
mysql -e "CREATE USER IF NOT EXISTS 'zabbix'@'localhost' IDENTIFIED BY 'zabbix-test-password';
          ALTER USER 'zabbix'@'localhost' IDENTIFIED BY 'zabbix-test-password';
          GRANT ALL ON zabbix.* TO 'zabbix'@'localhost';"
conf=/etc/zabbix/zabbix.conf.php # CConfigFile::CONFIG_FILE_PATH on Debian
if [ ! -f "$conf" ]; then
    sed -e "s/^\$DB\['PASSWORD'\].*/\$DB['PASSWORD'] = 'zabbix-test-password';/" \
        /usr/share/zabbix/conf/zabbix.conf.php.example > "$conf"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
php -S "127.0.0.1:$port" -t /usr/share/zabbix >/tmp/zabbix-php-$$.log 2>&1 &
php_pid=$!
trap 'kill $php_pid 2>/dev/null || true; rm -f /tmp/zabbix-php-$$.log' EXIT
sleep 1

python3 - "$port" "$repo/templates/zabbix/postfix-agentx_zabbix_6.0.yaml" <<'PY'
import json, sys, urllib.request
port, path = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}/api_jsonrpc.php"
def call(method, params, auth=None):
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    if auth:
        body["auth"] = auth
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json-rpc"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.load(r)
    if "error" in out:
        sys.exit(f"{method}: {out['error']}")
    return out["result"]
auth = call("user.login", {"username": "Admin", "password": "zabbix"})
name = "Postfix by SNMP postfix-agentx"
old = call("template.get", {"filter": {"host": name}}, auth)
if old:
    call("template.delete", [t["templateid"] for t in old], auth)
rules = {k: {"createMissing": True, "updateExisting": True}
         for k in ["templates", "items", "triggers", "graphs", "discoveryRules", "valueMaps"]}
rules["groups"] = {"createMissing": True}
with open(path) as f:
    source = f.read()
call("configuration.import", {"format": "yaml", "source": source, "rules": rules}, auth)
t = call("template.get", {"filter": {"host": name}, "selectItems": "count", "selectTriggers": "count",
                           "selectGraphs": "count", "selectDiscoveries": "count", "selectMacros": "extend",
                           "selectValueMaps": "extend"}, auth)
if not t:
    sys.exit("template not created")
t = t[0]
tid = t["templateid"]
protos = call("itemprototype.get", {"templateids": tid, "countOutput": True}, auth)
tprotos = call("triggerprototype.get", {"templateids": tid, "countOutput": True}, auth)
gprotos = call("graphprototype.get", {"templateids": tid, "countOutput": True}, auth)
print(f"imported '{name}': items={t['items']} triggers={t['triggers']} graphs={t['graphs']} "
      f"discovery rules={t['discoveries']} item prototypes={protos} trigger prototypes={tprotos} "
      f"graph prototypes={gprotos} macros={len(t['macros'])} value maps={len(t['valuemaps'])}")
if int(t["discoveries"]) != 7 or int(protos) < 20 or int(tprotos) < 5:
    sys.exit("import incomplete")
PY
