#!/usr/bin/env bash
# Builds the DISTL step bench (crates/sevit-distill/benches/distl_step.rs, release) and prints the
# path of its executable. Usage: scripts/distl-step-bin.sh PYTHON BUILD_LOG
# (PYTHON parses cargo's JSON messages; BUILD_LOG receives cargo's stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
py="$1"
log="$2"
cargo bench -p sevit-distill --bench distl_step --no-run --message-format=json 2>"$log" \
    | "$py" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "distl_step":
        print(m["executable"])' | tail -n1
