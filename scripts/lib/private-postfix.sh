# shellcheck shell=bash
# Sourced by scripts/demo.sh, scripts/render-graphs.sh and benches/showq_100k.sh
# (tests/support/postfix.rs does the same in Rust): the main.cf lines every
# private Postfix instance needs. It keeps its queue, data and log under DIR,
# uses Debian's program paths, and logs to a file, so no syslog is needed.
# The caller appends its own settings.
#
# private_postfix_main_cf DIR MYHOSTNAME   (prints to standard output)
private_postfix_main_cf() {
    local dir=$1 host=$2
    cat <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = $host
inet_protocols = ipv4
maillog_file = $dir/log/maillog
maillog_file_prefixes = $dir/log
EOF
}
