# shellcheck shell=bash
# Shared by the release scripts that poll a private snmpd and the agent
# built from this tree with a real NMS (cacti.sh, prometheus.sh, zabbix.sh).
# The caller keeps the pids of what it starts in the array `pids` and kills
# them on exit.

AGENT_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/debug/postfix-agentx"

# free_port udp|tcp: a free loopback port, below 32768 (zabbix_server's
# ListenPort maximum, so one rule serves every script).
free_port() {
    python3 - "$1" <<'PY'
import random, socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
while True:
    port = random.randint(20000, 32767)
    s = socket.socket(type=kind)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
PY
}

# start_snmpd DIR PORT [CONF_LINE...]: snmpd as AgentX master on
# udp:127.0.0.1:PORT with its socket at DIR/agentx.sock, community public,
# the extra snmpd.conf lines given (a trap sink, ...); logs to DIR/snmpd.log.
start_snmpd() {
    local dir=$1 port=$2 line
    shift 2
    {
        echo "master agentx"
        echo "agentXSocket unix:$dir/agentx.sock"
        echo "agentXPerms 0660 0755"
        echo "rocommunity public 127.0.0.1"
        for line in "$@"; do echo "$line"; done
    } > "$dir/snmpd.conf"
    mkdir -p "$dir/persist"
    SNMP_PERSISTENT_DIR=$dir/persist MIBS='' snmpd -f -Lf "$dir/snmpd.log" -C -I -smux \
        -c "$dir/snmpd.conf" -p "$dir/snmpd.pid" "udp:127.0.0.1:$port" &
    pids+=($!)
}

# start_agent DIR < CONFIG: the agent (debug build of this tree) with the
# AgentX socket of start_snmpd DIR and the TOML read from stdin after it;
# logs to DIR/agent.log; its pid is also in agent_pid.
start_agent() {
    local dir=$1
    {
        printf '[agentx]\nsocket = "unix:%s/agentx.sock"\n' "$dir"
        cat
    } > "$dir/agent.toml"
    "$AGENT_BIN" run --allow-root -c "$dir/agent.toml" > "$dir/agent.log" 2>&1 &
    agent_pid=$!
    pids+=("$agent_pid")
}
