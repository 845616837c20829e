# shellcheck shell=sh
# On erase (not upgrade: $1 is 0 only when the last version goes), stop
# and disable the unit.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now postfix-agentx.service >/dev/null 2>&1 || :
fi
