#!/usr/bin/env bash
# Renders the quickstart resources (deploy/quickstart/edge.yaml) for the
# docker-compose stack into deploy/compose/config/: the same resources and
# renderer `make run` and the tests use, with the compose stack's addresses.
# Every container shares the host's network (network_mode: host), so each
# part is on 127.0.0.1 at a fixed port.
#
# It also writes config-xds/envoy.yaml: the bootstrap of the Envoy that
# joins `gatehouse serve` in docker-compose.xds.yaml.
#
#   deploy/compose/render.sh [OUT_DIR [XDS_DIR]]   (defaults: deploy/compose/config, deploy/compose/config-xds)
#   GATEHOUSE=path/to/gatehouse            (default: target/release/gatehouse, then target/debug/gatehouse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../find-gatehouse.sh
source "$here/../find-gatehouse.sh"
out="${1:-$here/config}"
xds="${2:-$here/config-xds}"
# The compose stack's addresses (docker-compose.xds.yaml gives gatehouse
# serve the same).
vars=(
  --set DEMO=127.0.0.1:8090
  --set DEMO_V2=127.0.0.1:8092
  --set CATALOG=127.0.0.1:8093
  --set JWKS=http://127.0.0.1:8091
  --set IDP=http://127.0.0.1:9000
  --set ORIGIN=http://127.0.0.1:8080
)
"$gatehouse" render -f "$root/deploy/quickstart/edge.yaml" -o "$out" "${vars[@]}" \
  --listen-port 8080 --admin-port 9901 \
  --jwt-wasm /etc/gatehouse/wasm/gatehouse_jwt.wasm \
  --router-wasm /etc/gatehouse/wasm/gatehouse_router.wasm \
  --session-wasm /etc/gatehouse/wasm/gatehouse_session.wasm \
  --feed-socket /run/gatehouse/feed.sock \
  --authz 127.0.0.1:9191 \
  --ratelimit 127.0.0.1:8081 \
  --secrets-dir /etc/gatehouse/secrets
# The xDS stack's Envoy: its node, its admin, and the control plane.
"$gatehouse" render -f "$root/deploy/quickstart/edge.yaml" -o "$xds" --xds 127.0.0.1:18000 \
  --node-id compose-edge --admin-port 9901 "${vars[@]}"
# Only the bootstrap: the services take their files from gatehouse serve.
rm -rf "$xds/authz.yaml" "$xds/ratelimit"
