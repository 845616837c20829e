#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests use (needs root).
# Real programs only: snmpd as AgentX master, the net-snmp tools, smilint,
# Postfix, Dovecot, logrotate, journald tools, and debootstrap with
# systemd-nspawn for the release tier (a booted Debian 12), rpm to read back
# the RPM, shellcheck for every shell script. Safe to run again.
set -euo pipefail

packages=(snmpd snmp snmptrapd smitools libsnmp-base postfix dovecot-imapd dovecot-pop3d
          logrotate systemd systemd-journal-remote procps util-linux ca-certificates openssl faketime
          debootstrap systemd-container rpm shellcheck)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm carries the IETF base MIBs Debian does not ship; any npm will do.
command -v npm >/dev/null || missing+=(npm)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; run this script as root (sudo $0)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Postfix's package asks how to configure the system MTA; tests use private
  # instances, so "Local only" is enough and touches nothing outside.
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Package installs may start the system's own daemons; the tests start
# private instances and want nothing else on the AgentX socket or port 25.
if [ "$(id -u)" -eq 0 ]; then
  for svc in snmpd snmptrapd postfix dovecot; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
  pkill -x snmpd 2>/dev/null || true
  pkill -x snmptrapd 2>/dev/null || true
fi
