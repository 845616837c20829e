#!/usr/bin/env bash
# Builds the Debian package: release binary, man pages generated from the
# command line (target/man/*.1.gz), then `cargo deb`. Prints the .deb path.
#   bash packaging/build-deb.sh
# Needs cargo-deb (`cargo install cargo-deb`) and gzip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb is missing: run \`cargo install cargo-deb\`" >&2
    exit 1
fi

cargo build --release --locked
bash packaging/gen-man.sh target/release/postfix-agentx target/man
# --no-build: the binary above is the one packaged. --dbgsym: the binary is
# stripped, its debug symbols go to a separate -dbgsym .ddeb (Debian style).
# The last line printed is the .deb path.
cargo deb --no-build --locked --dbgsym --output target/debian/
