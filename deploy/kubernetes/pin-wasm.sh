#!/usr/bin/env bash
# Pins the wasm filters by SHA-256: writes base/wasm.sha256 from the files
# built by `make build` (the ones the gatehouse-wasm image carries). The
# Envoy pod's init container refuses to start Envoy with any other bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wasm="$here/../../target/wasm32-wasip1/wasm-release"
cd "$wasm"
sha256sum gatehouse_jwt.wasm gatehouse_router.wasm > "$here/base/wasm.sha256"
cat "$here/base/wasm.sha256"
