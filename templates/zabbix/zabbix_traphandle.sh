#!/bin/sh
# snmptrapd "traphandle" that appends each notification to Zabbix's
# SNMPTrapperFile, for Zabbix's SNMP trapper (zabbix_server.conf:
# StartSNMPTrapper=1, SNMPTrapperFile=the same file). It is a shell
# alternative to Zabbix's zabbix_trap_receiver.pl, which Debian does not
# package and which needs snmptrapd's embedded Perl (libsnmp-perl).
#
# snmptrapd.conf:
#   authCommunity log,execute public
#   outputOption n
#   traphandle default /bin/sh /usr/share/doc/postfix-agentx/templates/zabbix/zabbix_traphandle.sh /var/log/snmptrap/snmptrap.log
#
# snmptrapd runs the handler once per notification, one at a time, with the
# notification on standard input: the sender's host name, its transport
# address ("UDP: [192.0.2.1]:41070->[192.0.2.2]:162"), then one line per
# varbind, "OID VALUE". The record written is what Zabbix expects: a first
# line "TIME ZBXTRAP ADDRESS" (Zabbix finds the host whose SNMP interface
# has ADDRESS and drops this line), then the notification's lines. Zabbix's
# SNMP trap items (snmptrap["regex"]) match their regex against the rest.
set -eu
file=${1:?usage: zabbix_traphandle.sh SNMPTrapperFile}
IFS= read -r host || exit 0
IFS= read -r transport || exit 0
case $transport in
*\[*\]*)
    addr=${transport#*\[}
    addr=${addr%%\]*}
    ;;
*) addr=$host ;;
esac
body=$(cat)
umask 022
# snmptrapd waits for each handler, so records do not interleave.
printf '%s ZBXTRAP %s\n%s\n%s\n%s\n' "$(date '+%H:%M:%S %Y/%m/%d')" "$addr" \
    "$host" "$transport" "$body" >>"$file"
