#!/usr/bin/env bash
# Property-based requests against the API's own OpenAPI document (issue #22): schemathesis with
# every check (server errors, response schemas and headers, status codes the document lists,
# authentication, schema-violating requests rejected, stateful links) over its examples, coverage,
# fuzzing and stateful phases, once without a tokens file and once with one. Any failure fails.
#
# One check is left out: positive data acceptance, which expects every schema-valid value to be
# accepted. `q`, `since`/`until`, `bucket`, addresses and cursors are small languages (a filter
# expression, RFC 3339 or a duration, CIDR, opaque tokens) that a JSON Schema can only type as
# strings; their invalid values get a 400 that names the parameter, which that check would count
# as a failure.
#
# Usage: bash hack/api-fuzz.sh [seconds per mode, default 60] [trawl-api binary]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${TRAWL_CACHE:-$HOME/.cache/trawl}
seconds=${1:-60}
api_bin=${2:-${CARGO_TARGET_DIR:-$cache/target}/debug/trawl-api}
log() { echo "api-fuzz: $*" >&2; }

venv=$cache/schemathesis
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q 4.32.5; then
  log "installing schemathesis 4.32.5 into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi

export PGPASSWORD=trawl
db=trawl_api_fuzz port=19595
work=$(mktemp -d)
api=
cleanup() {
  [ -n "$api" ] && kill "$api" 2>/dev/null && wait "$api" 2>/dev/null
  psql -qAt -h 127.0.0.1 -U trawl -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -qAt -h 127.0.0.1 -U trawl -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
token=api-fuzz-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/tokens.yaml" <<YAML
tokens:
  - name: api-fuzz
    token: $token
    scopes: [read, payload, pcap]
YAML

for mode in open tokens; do
  args=() auth=()
  if [ $mode = tokens ]; then
    args=(--tokens-file "$work/tokens.yaml")
    auth=(--header "Authorization: Bearer $token")
  fi
  "$api_bin" --database-url "postgres://trawl:trawl@127.0.0.1:5432/$db" --listen 127.0.0.1:$port \
    --static-dir "$work" "${args[@]}" >"$work/api-$mode.log" 2>&1 &
  api=$!
  for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  log "$mode: ${seconds} s of generated requests"
  if ! (cd "$work" && "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
      --checks all --exclude-checks positive_data_acceptance --max-time "$seconds" --request-timeout 20 \
      --no-color "${auth[@]}" >"$work/st-$mode.log" 2>&1); then
    cp "$work/st-$mode.log" /tmp/api-fuzz-$mode.log 2>/dev/null || true
    cat "$work/st-$mode.log" >&2
    log "$mode: failures (above); the API's log:"
    tail -20 "$work/api-$mode.log" >&2
    exit 1
  fi
  grep -E "test cases|passed|generated" "$work/st-$mode.log" | tail -2 >&2
  kill "$api"; wait "$api" 2>/dev/null || true
  api=
done
log "no failures"
