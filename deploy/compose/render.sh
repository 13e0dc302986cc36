#!/usr/bin/env bash
# Renders the quickstart resources (deploy/quickstart/edge.yaml) for the
# docker-compose stack into deploy/compose/config/: the same resources and
# renderer `make run` and the tests use, with the compose stack's addresses.
# Every container shares the host's network (network_mode: host), so each
# part is on 127.0.0.1 at a fixed port.
#
#   deploy/compose/render.sh [OUT_DIR]     (default: deploy/compose/config)
#   GATEHOUSE=path/to/gatehouse            (default: target/release/gatehouse, then target/debug/gatehouse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../find-gatehouse.sh
source "$here/../find-gatehouse.sh"
out="${1:-$here/config}"
exec "$gatehouse" render -f "$root/deploy/quickstart/edge.yaml" -o "$out" \
  --set DEMO=127.0.0.1:8090 \
  --set DEMO_V2=127.0.0.1:8092 \
  --set CATALOG=127.0.0.1:8093 \
  --set JWKS=http://127.0.0.1:8091 \
  --set IDP=http://127.0.0.1:9000 \
  --set ORIGIN=http://127.0.0.1:8080 \
  --listen-port 8080 --admin-port 9901 \
  --jwt-wasm /etc/gatehouse/wasm/gatehouse_jwt.wasm \
  --router-wasm /etc/gatehouse/wasm/gatehouse_router.wasm \
  --session-wasm /etc/gatehouse/wasm/gatehouse_session.wasm \
  --feed-socket /run/gatehouse/feed.sock \
  --authz 127.0.0.1:9191 \
  --ratelimit 127.0.0.1:8081 \
  --secrets-dir /etc/gatehouse/secrets
