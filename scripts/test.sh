#!/usr/bin/env bash
# Runs every test: installs what they need, then the unit tests and the
# component and end-to-end tiers (real snmpd, net-snmp tools, smilint,
# Postfix, Dovecot), then the release tier (a booted Debian 12, real NMSs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# tests/end_to_end/deb_install.rs builds the Debian package with cargo-deb.
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked
# tests/component/packaging.rs builds the RPM with cargo-generate-rpm.
cargo generate-rpm --version >/dev/null 2>&1 || cargo install cargo-generate-rpm --locked
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The API docs build without broken or private links.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
# The release build first: the demo and the package tests need it, and
# building it (fat LTO, minutes of both cores) while timing-sensitive tests
# run would only slow them down.
cargo build --release --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The release tier (tests/release.rs: a booted Debian 12, the docs followed
# word for word) is #[ignore]d in a plain `cargo test`; it runs here, after
# the rest, one test at a time.
cargo test --test release --no-fail-fast -- --ignored --test-threads=1 2>&1 | tee -a "$log"
release_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$release_status
set -e
# One closing line over every test binary (cargo prints one per target, and
# the last target is an example with no tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
