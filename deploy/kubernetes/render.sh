#!/usr/bin/env bash
# Renders the quickstart resources (deploy/quickstart/edge.yaml) for
# Kubernetes into deploy/kubernetes/base/config/: services by their cluster
# DNS names, the wasm files where the init container puts them, Secrets
# where the pods mount them. Edit the --set values for your own edge (or
# render your own resource files the same way).
#
#   deploy/kubernetes/render.sh [EDGE_DIR [SIDECAR_DIR [TLS_DIR [XDS_DIR]]]]
#       (defaults: base/config, overlays/sidecar/config, overlays/tls/config, overlays/xds/config)
#   GATEHOUSE=path/to/gatehouse             (default: target/release/gatehouse, then target/debug/gatehouse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../find-gatehouse.sh
source "$here/../find-gatehouse.sh"
out="${1:-$here/base/config}"
render() {
  local out="$1" demo="$2" demo_v2="$3"
  shift 3
  "$gatehouse" render -f "$root/deploy/quickstart/edge.yaml" -o "$out" "$@" \
  --set DEMO="$demo" \
  --set DEMO_V2="$demo_v2" \
  --set CATALOG="$demo" \
  --set JWKS=https://login.example.com \
  --set IDP=https://login.example.com \
  --set ORIGIN=https://app.example.com \
  --listen-port 8080 --admin-port 9901 \
  --jwt-wasm /etc/gatehouse/wasm/gatehouse_jwt.wasm \
  --router-wasm /etc/gatehouse/wasm/gatehouse_router.wasm \
  --authz gatehouse-authz:9191 \
  --ratelimit gatehouse-ratelimit:8081 \
  --secrets-dir /etc/gatehouse/secrets \
  --no-fast-path
}
# The edge Deployment sends to the apps' Services; a sidecar to its own app
# on the pod's loopback. The demo app stands in for the catalog API (the
# manifests run no catalog: its route answers as the demo does).
render "$out" demo:8080 demo-v2:8080
sidecar="${2:-$here/overlays/sidecar/config}"
render "$sidecar" 127.0.0.1:3000 127.0.0.1:3000
# The sidecar shares the base's gatehouse-authz and gatehouse-ratelimit.
rm -rf "$sidecar/authz.yaml" "$sidecar/ratelimit"
# The TLS overlay's edge calls the two services over TLS.
tls="${3:-$here/overlays/tls/config}"
render "$tls" demo:8080 demo-v2:8080 --services-tls-ca /etc/gatehouse/services-ca/ca.crt
rm -rf "$tls/authz.yaml" "$tls/ratelimit"
# The xDS overlay's edge joins gatehouse serve (the gatehouse-xds Service),
# which renders the resources itself: the bootstrap, and the resources.
xds="${4:-$here/overlays/xds/config}"
render "$xds" demo:8080 demo-v2:8080 --xds gatehouse-xds:18000 --node-id edge
rm -rf "$xds/authz.yaml" "$xds/ratelimit"
cp "$root/deploy/quickstart/edge.yaml" "$xds/edge.yaml"
