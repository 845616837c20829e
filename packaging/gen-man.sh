#!/usr/bin/env bash
# Generates the man pages from the command line definition:
#   gen-man.sh BINARY OUT_DIR   ->  OUT_DIR/postfix-agentx*.1.gz
set -euo pipefail
binary=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
"$binary" man --out-dir "$out"
# -n: no timestamp in the gzip header, so builds are reproducible.
gzip -9 -n -f "$out"/*.1
