#!/usr/bin/env bash
# make test: every test in the workspace, then one closing line that adds up all
# of cargo's per-binary "test result" lines, so a reader (or CI) sees the total.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/test-output.log
cargo test --locked --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed;?$/) passed += $i
         if ($(i+1) ~ /^failed;?$/) failed += $i
       }
     }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
