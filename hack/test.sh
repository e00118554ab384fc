#!/usr/bin/env bash
# Runs every check and test of Trawl on this machine, installing and starting what they need:
# system packages, PostgreSQL, RabbitMQ, the test control plane and a real node's binaries (built
# once, then cached), a Docker engine and the four images, the web UI's npm packages and Chromium.
# Caches live in ${TRAWL_CACHE:-$HOME/.cache/trawl}, outside the clone, so reruns are fast.
# Usage: hack/test.sh [extra cargo test arguments]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export TRAWL_CACHE=${TRAWL_CACHE:-$HOME/.cache/trawl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TRAWL_CACHE/target}
# Incremental state only pays off for edit-compile loops; in a test run it grows the cache by
# gigabytes per change while saving little.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
step() { echo "== $*" >&2; }

step "dependencies"; bash hack/deps.sh
step "services"; bash hack/services.sh
step "test control plane"; TRAWL_CONTROL_PLANE_ASSETS=$(bash hack/control-plane/build.sh)
export TRAWL_CONTROL_PLANE_ASSETS
step "cargo fmt"; cargo fmt --all -- --check
step "no import circles between modules"; python3 hack/import-cycles.py
step "cargo clippy"; cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"; cargo test --workspace --locked "$@"
step "API: schemathesis against its OpenAPI document, open and with tokens (60 s each)"; bash hack/api-fuzz.sh 60
# The images' runtime stages from binaries built here (release); the full multi-stage build
# (`make images`) compiles the same sources inside the builder stage and takes far longer.
step "images"; DOCKER=$(bash hack/docker.sh); export DOCKER
bash images/build.sh --prebuilt --local-bases
bash images/test-pod.sh >/dev/null
step "two real nodes: helm install, kubectl apply, packets through the API's Service, each packet once"
cargo test -p e2e --locked --test real_node -- --ignored --nocapture
step "fuzz the dissector and the batch decoder (20 s each)"; bash hack/fuzz.sh 20
step "web UI: types current with the API's OpenAPI document, lint, type check, unit tests"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent api-types:check && npm run --silent lint && npm run --silent typecheck && npm test --silent)
step "local run: smoke test and the UI's end-to-end tests"; bash hack/local/smoke.sh
