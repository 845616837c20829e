#!/usr/bin/env bash
# Builds the RPM with cargo-generate-rpm (`cargo install cargo-generate-rpm`):
# release binary, man pages, then `cargo generate-rpm`. Prints the .rpm path.
#   bash packaging/build-rpm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo generate-rpm --version >/dev/null 2>&1; then
    echo "cargo-generate-rpm is missing: run \`cargo install cargo-generate-rpm\`" >&2
    exit 1
fi

cargo build --release --locked
bash packaging/gen-man.sh target/release/postfix-agentx target/man
# The RPM gets a copy without debug sections (Cargo.toml's asset path).
mkdir -p target/rpm
objcopy --strip-debug target/release/postfix-agentx target/rpm/postfix-agentx
cargo generate-rpm
# The newest .rpm (older builds may still be there).
newest=
for rpm in target/generate-rpm/*.rpm; do
    if [ -z "$newest" ] || [ "$rpm" -nt "$newest" ]; then newest=$rpm; fi
done
[ -f "$newest" ] || { echo "no .rpm in target/generate-rpm" >&2; exit 1; }
echo "$newest"
