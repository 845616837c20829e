#!/usr/bin/env bash
# Runs every test: installs what they need, then the unit and end-to-end
# suites (real snmpd, net-snmp tools, smilint, Postfix, Dovecot).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
