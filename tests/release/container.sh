#!/usr/bin/env bash
# A Debian 12 container booted with systemd as PID 1 (systemd-nspawn -b),
# for the release tests: a user's machine, not a chroot.
#
#   container.sh base            make (or reuse) the cached base root: debootstrap
#                                plus the packages the tests install, downloaded
#                                beforehand (the container has no network)
#   container.sh new ROOT        a fresh copy of the base root at ROOT
#   container.sh boot ROOT [BIND]  boot it in the background, wait until systemd
#                                says running/degraded; BIND (optional) is a host
#                                directory mounted read-only at /src inside
#   container.sh exec ROOT CMD   run CMD (bash -c) inside as root; its exit code
#   container.sh reboot ROOT     `systemctl reboot` inside, wait, boot again
#   container.sh stop ROOT       `systemctl poweroff` inside, wait (killed after 30 s)
#
# Why these nspawn options (same recipe as shared/tools/booted-debian.sh):
#  --register=no --keep-unit  the host's PID 1 is not systemd (no machined, no
#                             D-Bus), and nspawn would ask them otherwise;
#  --private-network          the host runs its own Postfix and snmpd; the
#                             container gets only its own loopback, so packages
#                             are downloaded from the host side into the base;
#  --console=passive          no tty; commands go in with nsenter.
# SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the container a cgroup v2 tree, as
# on a real Debian 12 install.
set -euo pipefail

CACHE=${POSTFIX_AGENTX_CONTAINER_CACHE:-/var/cache/postfix-agentx-tests}
BASE=$CACHE/deb12-base
# What the tests install inside, fetched beforehand. Changing the list makes
# a new base.
PACKAGES="postfix snmpd snmp rsyslog"
STAMP="bookworm dbus,systemd-sysv,ca-certificates,procps,iproute2 $PACKAGES v1"

die() { echo "container.sh: $*" >&2; exit 1; }
state() { echo "/tmp/pfagentx-nspawn-$(basename "$1")"; }

need_tools() {
    [ "$(id -u)" -eq 0 ] || die "needs root (systemd-nspawn, debootstrap)"
    if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap systemd-container >/dev/null ||
            die "cannot install debootstrap and systemd-container (apt-get install -y debootstrap systemd-container)"
    fi
}

mirror() {
    local m
    m=$(grep -rhoE '^(deb|URIs:) +\S*https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
        grep -oE 'https?://[^ ]+/debian' | head -1 || true)
    echo "${MIRROR:-${m:-http://deb.debian.org/debian}}"
}

make_base() {
    need_tools
    if [ -f "$BASE/.stamp" ] && [ "$(cat "$BASE/.stamp")" = "$STAMP" ]; then
        return 0
    fi
    rm -rf "$BASE" "$BASE.new"
    mkdir -p "$CACHE"
    local m; m=$(mirror)
    echo "container.sh: debootstrap bookworm from $m (once per machine)" >&2
    debootstrap --variant=minbase --include=dbus,systemd-sysv,ca-certificates,procps,iproute2 \
        bookworm "$BASE.new" "$m" > "$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed, see $CACHE/debootstrap.log: $(tail -3 "$CACHE/debootstrap.log")"
    cat > "$BASE.new/etc/apt/sources.list" <<SRC
deb $m bookworm main
deb $m bookworm-updates main
deb ${m%/debian}/debian-security bookworm-security main
SRC
    # Downloaded on the host side, installed inside with no network.
    chroot "$BASE.new" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -q && apt-get install -y -q --download-only $PACKAGES" > "$CACHE/download.log" 2>&1 ||
        die "downloading $PACKAGES failed, see $CACHE/download.log"
    echo "$STAMP" > "$BASE.new/.stamp"
    mv "$BASE.new" "$BASE"
}

boot() {
    local root=$1 bind=${2:-} st c="" s=""
    st=$(state "$root")
    local name; name=$(basename "$root")
    echo "$name" > "$root/etc/hostname"
    # debootstrap writes no /etc/hosts; the Debian installer writes this one
    # (without it "localhost" does not resolve).
    if [ ! -f "$root/etc/hosts" ]; then
        printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' "$name" > "$root/etc/hosts"
    fi
    local args=(-D "$root" --register=no --keep-unit --private-network --console=passive -b)
    [ -n "$bind" ] && args=(--bind-ro="$bind":/src "${args[@]}")
    rm -f "$st.rc"
    # In its own session: the wrapper must outlive this script and write
    # nspawn's exit code (133 after a reboot) when nspawn ends.
    # shellcheck disable=SC2016
    setsid bash -c 'SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn "${@:2}" > "$1.log" 2>&1; echo $? > "$1.rc"' \
        wrapper "$st" "${args[@]}" < /dev/null > /dev/null 2>&1 &
    echo $! > "$st.wrapper"
    for _ in $(seq 1 100); do
        local ns; ns=$(pgrep -f "^systemd-nspawn .*-D $root " | head -1 || true)
        # nspawn forks a short-lived helper first; the container's PID 1 is
        # the child that runs systemd.
        c=""
        if [ -n "$ns" ]; then
            for p in $(pgrep -P "$ns" || true); do
                [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && c=$p
            done
        fi
        [ -n "$c" ] && break
        [ -f "$st.rc" ] && die "systemd-nspawn exited at once (rc $(cat "$st.rc")): $(tail -5 "$st.log")"
        sleep 0.2
    done
    [ -n "$c" ] || die "systemd-nspawn did not start a container: $(tail -5 "$st.log")"
    echo "$c" > "$st.cpid"
    for _ in $(seq 1 90); do
        s=$(nsenter -t "$c" -a /usr/bin/systemctl is-system-running 2>/dev/null || true)
        case "$s" in running|degraded) break ;; esac
        [ -f "$st.rc" ] && die "container stopped while booting: $(tail -5 "$st.log")"
        sleep 1
    done
    case "$s" in running|degraded) ;; *) die "container did not finish booting in 90 s (state '$s'): $(tail -5 "$st.log")" ;; esac
}

in_container() {
    local root=$1; shift
    local c; c=$(cat "$(state "$root").cpid")
    nsenter -t "$c" -a /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$*"
}

wait_gone() {
    local root=$1 st; st=$(state "$root")
    local c; c=$(cat "$st.cpid")
    for _ in $(seq 1 60); do
        kill -0 "$c" 2>/dev/null || { wait_wrapper "$st"; return 0; }
        sleep 0.5
    done
    echo "container.sh: container did not stop in 30 s; killing it" >&2
    kill -9 "$c" 2>/dev/null || true
    sleep 1
    wait_wrapper "$st"
}

wait_wrapper() {
    local st=$1
    for _ in $(seq 1 20); do [ -f "$st.rc" ] && return 0; sleep 0.5; done
}

cmd=${1:?base|new|boot|exec|reboot|stop}; shift
case "$cmd" in
base) make_base ;;
new)
    root=${1:?ROOT}
    make_base
    rm -rf "$root"
    cp -a --reflink=auto "$BASE" "$root"
    ;;
boot) need_tools; boot "${1:?ROOT}" "${2:-}" ;;
exec) root=${1:?ROOT}; shift; in_container "$root" "$@" ;;
reboot)
    root=${1:?ROOT}
    in_container "$root" "systemctl reboot" || true
    wait_gone "$root"
    # nspawn exits with 133 when the container asks for a reboot.
    rc=$(cat "$(state "$root").rc" 2>/dev/null || echo none)
    [ "$rc" = 133 ] || die "after 'systemctl reboot' nspawn exited with $rc, not 133"
    boot "$root" "${2:-}"
    ;;
stop)
    root=${1:?ROOT}
    in_container "$root" "systemctl poweroff" >/dev/null 2>&1 || true
    wait_gone "$root"
    ;;
*) die "unknown command $cmd" ;;
esac
