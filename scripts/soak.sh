#!/bin/sh
# Long load and soak run (release build): 8 parallel snmpbulkwalk loops for
# N minutes while the log grows at 10 000 lines/s with a rename+create
# rotation every minute. Prints lines, walks, failures, RSS at start and
# end and CPU per 1 000 lines; fails if any walk failed or the final
# counters differ from `postfix-agentx parse` over the same files.
#
# Usage: scripts/soak.sh [MINUTES]   (default 10; needs snmpd and the snmp tools: apt-get install -y snmpd snmp)
set -eu
minutes=${1:-10}
cd "$(dirname "$0")/.."
POSTFIX_AGENTX_SOAK_SECONDS=$((minutes * 60)) \
POSTFIX_AGENTX_SOAK_ROTATE_SECONDS=60 \
    exec cargo test --release --test end_to_end soak_short -- --nocapture --test-threads=1
