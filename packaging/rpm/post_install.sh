# shellcheck shell=sh
# Creates the agent's system user and adds it to the groups that give read
# access to the mail log, showq and the journal (those that exist here).
if ! getent passwd postfix-agentx >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/postfix-agentx --no-create-home \
        --shell /sbin/nologin --comment "postfix-agentx SNMP subagent" postfix-agentx
fi
for group in adm postdrop systemd-journal; do
    if getent group "$group" >/dev/null; then
        usermod -a -G "$group" postfix-agentx
    fi
done
install -d -o postfix-agentx -g postfix-agentx -m 0750 /var/lib/postfix-agentx
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
