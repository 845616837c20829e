#!/usr/bin/env bash
# Runs every test: installs what they need, then the unit and end-to-end
# suites (real snmpd, net-snmp tools, smilint, Postfix, Dovecot).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# tests/deb_install.rs builds the Debian package with cargo-deb.
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
