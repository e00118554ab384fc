#!/usr/bin/env bash
# The local run's smoke test, and the web UI's end-to-end tests on top of it: starts
# `trawl-local up`, waits until packets of every demo protocol are visible through the API, runs
# the UI tests in headless Chromium against it, kills trawl-api and checks that only it was
# restarted, stops the run with SIGTERM (as Ctrl-C would), and checks that nothing is left
# running or listening.
#
# Usage: bash hack/local/smoke.sh        (root; part of hack/test.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/trawl/target}
export TRAWL_LOCAL_DIR=${TRAWL_LOCAL_DIR:-$root/.trawl}
port=${TRAWL_LOCAL_API_PORT:-8080}
log() { echo "smoke: $*" >&2; }
output=$(mktemp)

command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) >/dev/null

hack/local/trawl-local up >"$output" 2>&1 &
up=$!
stop() {
  kill -TERM $up 2>/dev/null || true
  wait $up 2>/dev/null || true
}
trap 'stop; rm -f "$output"' EXIT

# Packets of each demo protocol, as the API's protocol breakdown counts them.
deadline=$((SECONDS + 600))
until curl -fsS "http://127.0.0.1:$port/api/v1/stats?session=local/demo&since=15m" 2>/dev/null |
  python3 -c 'import json,sys; seen={p["name"] for p in json.load(sys.stdin)["protocols"]}; sys.exit(0 if {"dns","http","tls","tcp","udp"} <= seen else 1)' 2>/dev/null; do
  if [ $SECONDS -gt $deadline ] || ! kill -0 $up 2>/dev/null; then
    log "no packets of every demo protocol through the API; trawl-local said:"
    cat "$output"
    for f in "$TRAWL_LOCAL_DIR"/logs/*.log; do echo "== $f"; tail -20 "$f"; done
    exit 1
  fi
  sleep 1
done
log "DNS, HTTP, TLS, TCP and UDP packets are visible through the API"

(cd frontend && TRAWL_UI_URL="http://127.0.0.1:$port" TRAWL_SESSION=local/demo \
  TRAWL_API_BIN="$CARGO_TARGET_DIR/debug/trawl-api" TRAWL_DATABASE_URL="postgres://trawl@127.0.0.1:21432/trawl" \
  npm run e2e --silent)
# The README's screenshots are the ones this run just took of the current UI.
cp frontend/e2e/artifacts/*.png docs/screenshots/
log "screenshots of the current UI copied to docs/screenshots"

# A crash costs only the crashed service a restart: the supervisor starts it again, the data
# stores and the other services keep running.
kill -KILL "$(cat "$TRAWL_LOCAL_DIR/run/trawl-api.pid")"
deadline=$((SECONDS + 60))
# (grep reads a here-string: with pipefail, `status | grep -q` fails when grep stops reading early.)
until grep -q '^trawl-api .*running.*restarted 1 times' <<<"$(hack/local/trawl-local status 2>/dev/null)" &&
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  if [ $SECONDS -gt $deadline ] || ! kill -0 $up 2>/dev/null; then
    log "trawl-api was not restarted after a crash; trawl-local said:"; cat "$output"
    hack/local/trawl-local status || true
    exit 1
  fi
  sleep 0.5
done
after=$(hack/local/trawl-local status)
for service in postgresql rabbitmq trawl-parser trawl-sniffer; do
  grep -q "^$service .*running" <<<"$after" || { log "$service stopped with trawl-api:"; echo "$after"; exit 1; }
done
log "a killed trawl-api was started again; the data stores and the other services kept running"

stop
trap 'rm -f "$output"' EXIT
leftovers=$(pgrep -fa "trawl-(api|parser|sniffer) |hack/local/traffic.py|trawl-local@localhost|postgres.*-p 21432" || true)
listening=$(ss -ltnH | awk '{print $4}' | grep -E ":($port|21432|21672|21674|21090|21091)$" || true)
if [ -n "$leftovers$listening" ] || ip netns list | grep -qw trawl-demo; then
  log "left behind after stopping:"; echo "$leftovers"; echo "$listening"; ip netns list
  exit 1
fi
log "stopped cleanly: nothing left running or listening"
