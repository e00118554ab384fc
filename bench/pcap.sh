#!/usr/bin/env bash
# Pcap export benchmark: one trawl-parser stores N packets (the parser benchmark's mix, headers
# only) from a pre-filled queue; then trawl-api exports them as pcap, the whole session and a
# filtered half, timed with curl and checked with tcpdump. Next to it, in the same run: PostgreSQL
# alone reading the same segments' bytes out (`psql \copy (SELECT records FROM segments)`), the
# floor for an export that has to read them. Writes docs/benchmarks.md.
#
# Usage: bash bench/pcap.sh [batches, default 1000] [packets per batch, default 1000]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
batches=${1:-1000} per_batch=${2:-1000}
total=$((batches * per_batch))
export TRAWL_CACHE=${TRAWL_CACHE:-$HOME/.cache/trawl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TRAWL_CACHE/target}
log() { echo "bench: $*" >&2; }

bash hack/deps.sh
bash hack/services.sh
cargo build --release -q -p parser --bin trawl-parser --example fill_queue
cargo build --release -q -p api --bin trawl-api
bin=$CARGO_TARGET_DIR/release

db=trawl_bench_pcap queue=trawl-bench-pcap parser_port=19194 api_port=19195
export PGPASSWORD=trawl
psql_() { psql -qAt -h 127.0.0.1 -U trawl "$@"; }
mgmt() { curl -fsS -u guest:guest -H 'content-type: application/json' -X "$1" "http://127.0.0.1:15672/api$2" ${3:+-d "$3"} >/dev/null; }
work=$(mktemp -d)
cleanup() {
  kill "${parser:-}" "${api:-}" 2>/dev/null || true
  mgmt DELETE /queues/%2f/$queue || true
  rm -rf "$work"
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
}
trap cleanup EXIT
url="postgres://trawl:trawl@127.0.0.1:5432/$db"
psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
mgmt DELETE /queues/%2f/$queue 2>/dev/null || true
mgmt PUT /queues/%2f/$queue '{"durable":true}'
log "storing $total packets"
"$bin/examples/fill_queue" amqp://guest:guest@127.0.0.1:5672/%2f $queue "$batches" "$per_batch" >/dev/null
"$bin/trawl-parser" --session bench/parser --queue $queue --database-url "$url" --listen 127.0.0.1:$parser_port \
  --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f >"$work/parser.log" 2>&1 &
parser=$!
rows() { curl -fsS http://127.0.0.1:$parser_port/metrics 2>/dev/null | awk '$1 == "trawl_parser_rows_written_total" {print $2}'; }
until [ "$(rows)" = "$total" ] 2>/dev/null; do sleep 0.2; done
kill $parser; wait $parser || true; parser=
psql_ -d $db -c "VACUUM ANALYZE"

mkdir -p "$work/ui"
"$bin/trawl-api" --database-url "$url" --listen 127.0.0.1:$api_port --static-dir "$work/ui" >"$work/api.log" 2>&1 &
api=$!
until curl -fsS http://127.0.0.1:$api_port/readyz >/dev/null 2>&1; do sleep 0.1; done

# export NAME QUERY: prints "packets seconds rate"
export_pcap() {
  local t0 t1 n
  t0=$(date +%s.%N)
  curl -fsS -o "$work/$1.pcap" "http://127.0.0.1:$api_port/api/v1/sessions/bench/parser/pcap?$2"
  t1=$(date +%s.%N)
  n=$(tcpdump -r "$work/$1.pcap" -nn 2>/dev/null | wc -l)
  awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d %.2f %.0f\n", n, b - a, n / (b - a) }'
}
read -r all_n all_s all_rate < <(export_pcap all "since=1d")
log "whole session: $all_n packets in $all_s s ($all_rate/s)"
[ "$all_n" = "$total" ] || { log "the export holds $all_n packets, not $total"; exit 1; }
read -r tcp_n tcp_s tcp_rate < <(export_pcap tcp "since=1d&q=tcp")
log "q=tcp: $tcp_n packets in $tcp_s s ($tcp_rate/s)"
t0=$(date +%s.%N)
psql_ -d $db -c "\\copy (SELECT records FROM segments) TO '/dev/null' WITH (FORMAT binary)"
t1=$(date +%s.%N)
read -r copy_s copy_rate < <(awk -v n=$total -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f %.0f\n", b - a, n / (b - a) }')
log "psql \\copy of the segments: $copy_s s ($copy_rate packets/s)"

section=$(mktemp)
cat >"$section" <<EOT
<!-- pcap:begin (written by bench/pcap.sh; do not edit by hand) -->
## Pcap export

Command: \`bash bench/pcap.sh $batches $per_batch\` on $(nproc) cores, $(date -u +%Y-%m-%d). One trawl-parser stores
$total packets (the parser benchmark's mix, headers only); trawl-api then exports them with
\`curl .../sessions/bench/parser/pcap\`, and tcpdump counts the packets in the file. The reference is
PostgreSQL alone reading the same segments out with \`psql \\copy (SELECT records FROM segments)\`.

| export | packets | seconds | packets/s |
|---|---|---|---|
| whole session | $all_n | $all_s | $all_rate |
| \`q=tcp\` | $tcp_n | $tcp_s | $tcp_rate |
| psql \\copy of the segments (reference) | $total | $copy_s | $copy_rate |
<!-- pcap:end -->
EOT
cat "$section"
python3 bench/report.py pcap "$section"
log "written to docs/benchmarks.md"
