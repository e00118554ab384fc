#!/usr/bin/env bash
# Abuse benchmark (issue #29): while 32 clients hammer the API's expensive routes (12 pcap exports
# read at 2 KB/s, 12 live streams, 8 loops of /stats), do /healthz, /readyz and a /packets page
# still answer within 3x their usual p99? Each probe is measured with wrk (2 connections) alone
# first, then under the hammering, in the same run. Writes docs/benchmarks.md.
#
# Usage: bash bench/abuse.sh [rows, default 1000000] [seconds per measurement, default 15]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rows=${1:-1000000} seconds=${2:-15}

source bench/api-data.sh
hammering=()
stop_hammering() {
  for pid in "${hammering[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  hammering=()
}
trap 'stop_hammering; cleanup' EXIT

"$bin/trawl-api" --database-url "$url" --listen 127.0.0.1:$port >"$work/api.log" 2>&1 &
api=$!
until curl -fsS http://127.0.0.1:$port/readyz >/dev/null 2>&1; do sleep 0.1; done
base=http://127.0.0.1:$port
probes=(
  "/healthz"
  "/readyz"
  "/api/v1/packets?session=bench/api&since=6h&q=tcp%20and%20port%20443%20and%20src%2010.0.6.0/24&limit=100"
)
measure() { # label -> rows "probe|p50|p99|req/s" into $work/$label
  : >"$work/$1"
  for probe in "${probes[@]}"; do
    read -r p50 p99 rps < <(wrk_percentiles "$base$probe" 2)
    echo "${probe%%\?*}|$p50|$p99|$rps" >>"$work/$1"
  done
}
log "probes alone"; measure alone

log "32 clients hammering: 12 slow pcap exports, 12 live streams, 8 /stats loops"
export_url="$base/api/v1/sessions/bench/api/pcap"
stream_url="$base/api/v1/stream?session=bench/api"
stats_url="$base/api/v1/stats?session=bench/api&since=1h"
: >"$work/statuses"
# A hammer that is refused waits as the 429's Retry-After says, as a client library would.
hammer() { # url [curl options...]
  local url=$1
  shift
  setsid bash -c "while :; do
    code=\$(curl -s -o /dev/null -w '%{http_code}' $* '$url'); echo \$code >>'$work/statuses'
    [ \$code = 429 ] && sleep 2
  done" &
  hammering+=($!)
}
for _ in $(seq 1 12); do
  hammer "$export_url" --limit-rate 2k --max-time 40
  hammer "$stream_url" -N --max-time 40
done
for _ in $(seq 1 8); do
  hammer "$stats_url"
done
# Until every hammer has had its first answer or been held: then the bounds are in force.
for _ in $(seq 1 100); do [ "$(wc -l <"$work/statuses")" -ge 8 ] && break; sleep 0.1; done
measure hammered
stop_hammering
refused=$(grep -c '^429' "$work/statuses" || true)
served=$(grep -c '^200' "$work/statuses" || true)

section=$(mktemp)
{
  echo "<!-- abuse:begin (written by bench/abuse.sh; do not edit by hand) -->"
  echo "## API under abuse: probes while 32 clients hammer exports, streams and /stats"
  echo
  echo "Command: \`bash bench/abuse.sh $rows $seconds\` on $(nproc) cores, $(date -u +%Y-%m-%d). A release-built trawl-api over $rows"
  echo "generated packet rows (bench/api-data.sh). Each probe runs under \`wrk -c2 --latency\` for ${seconds} s, first alone, then while"
  echo "12 pcap exports read at 2 KB/s, 12 live streams and 8 loops of \`/stats\` run against the same API (goal: p99 under 3x)."
  echo "The hammers are curl processes on the same two cores as the API and PostgreSQL; a refused one waits 2 s (Retry-After)."
  echo "Over the hammering the hammers got $served answers of 200 and $refused of 429 (the bounds: 4 exports, 2 per caller, 64 streams, 8 per caller, one /stats at a time)."
  echo
  echo "| probe | alone p50 ms | alone p99 ms | hammered p50 ms | hammered p99 ms | p99 ratio | goal |"
  echo "|---|---|---|---|---|---|---|"
  paste -d'|' "$work/alone" "$work/hammered" | while IFS='|' read -r probe a50 a99 _ _ h50 h99 _; do
    ratio=$(awk -v a="$h99" -v b="$a99" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
    goal=$(awk -v r="$ratio" 'BEGIN { print (r <= 3 ? "met" : "missed") }')
    echo "| \`$probe\` | $a50 | $a99 | $h50 | $h99 | ${ratio}x | $goal |"
  done
  echo "<!-- abuse:end -->"
} >"$section"
cat "$section"
python3 bench/report.py abuse "$section"
log "written to docs/benchmarks.md"
