#!/usr/bin/env bash
# Ingest benchmark: one trawl-parser drains a pre-filled queue of sniffer-format batches into
# PostgreSQL, once for a headers-only session and once keeping payload. Then the very rows and
# segments it wrote (headers-only run) are loaded again with `psql \copy` into plain tables without
# any secondary index: the rate PostgreSQL itself sustains for those bytes. Also reports bytes on
# disk per packet (tables + indexes + TOAST) next to the same packets as a pcap file, and writes
# everything into docs/benchmarks.md.
#
# Usage: bash bench/parser.sh [batches, default 400] [packets per batch, default 1000]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
batches=${1:-400} per_batch=${2:-1000}
total=$((batches * per_batch))
export TRAWL_CACHE=${TRAWL_CACHE:-$HOME/.cache/trawl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TRAWL_CACHE/target}
log() { echo "bench: $*" >&2; }

bash hack/deps.sh
bash hack/services.sh
cargo build --release -q -p parser --bin trawl-parser --example fill_queue
bin=$CARGO_TARGET_DIR/release

queue=trawl-bench-parser port=19191
export PGPASSWORD=trawl
psql_() { psql -qAt -h 127.0.0.1 -U trawl "$@"; }
mgmt() { curl -fsS -u guest:guest -H 'content-type: application/json' -X "$1" "http://127.0.0.1:15672/api$2" ${3:+-d "$3"} >/dev/null; }
data=$(mktemp -d)
chmod 755 "$data"
cleanup() {
  kill "${parser:-}" 2>/dev/null || true
  mgmt DELETE /queues/%2f/$queue || true
  rm -rf "$data"
  for db in trawl_bench_parser trawl_bench_parser_payload; do
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
  done
}
trap cleanup EXIT
rows() { curl -fsS http://127.0.0.1:$port/metrics 2>/dev/null | awk '$1 == "trawl_parser_rows_written_total" {print $2}'; }

# ingest DATABASE [parser flags...]: fills the queue, drains it with one parser; prints packets/s.
ingest() {
  local db=$1 t0 t1 r0
  shift
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  mgmt DELETE /queues/%2f/$queue 2>/dev/null || true
  mgmt PUT /queues/%2f/$queue '{"durable":true}'
  log "filling the queue with $batches batches of $per_batch packets"
  "$bin/examples/fill_queue" amqp://guest:guest@127.0.0.1:5672/%2f $queue "$batches" "$per_batch" >/dev/null
  "$bin/trawl-parser" --session bench/parser --queue $queue --database-url "postgres://trawl:trawl@127.0.0.1:5432/$db" \
    --listen 127.0.0.1:$port --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f "$@" >"$data/parser.log" 2>&1 &
  parser=$!
  # The clock starts at the first committed batch, so start-up and migrations are not counted.
  until [ "$(rows)" -gt 0 ] 2>/dev/null; do sleep 0.01; done
  t0=$(date +%s.%N) r0=$(rows)
  until [ "$(rows)" -ge "$total" ] 2>/dev/null; do sleep 0.05; done
  t1=$(date +%s.%N)
  kill -TERM $parser; wait $parser || true
  awk -v n=$((total - r0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}

# disk DATABASE: bytes per packet of everything stored, and of the same packets as a pcap file.
disk() {
  psql_ -d "$1" -c "VACUUM ANALYZE" -c "SELECT round((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm'))::numeric
      / count(*), 1) || ' ' || round((24 + sum(16 + captured_len))::numeric / count(*), 1) FROM packets"
}

parser_rate=$(ingest trawl_bench_parser)
log "trawl-parser, headers only: $parser_rate packets/s"
read -r headers_disk headers_pcap <<<"$(disk trawl_bench_parser)"
payload_rate=$(ingest trawl_bench_parser_payload --store-payload)
log "trawl-parser, keeping payload: $payload_rate packets/s"
read -r payload_disk payload_pcap <<<"$(disk trawl_bench_parser_payload)"

db=trawl_bench_parser
psql_ -d $db -c "\\copy (SELECT * FROM packets) TO '$data/packets.bin' WITH (FORMAT binary)" \
  -c "\\copy (SELECT * FROM segments) TO '$data/segments.bin' WITH (FORMAT binary)" \
  -c "CREATE TABLE plain_packets (LIKE packets)" -c "CREATE TABLE plain_segments (LIKE segments INCLUDING COMPRESSION)" \
  -c "CHECKPOINT"
t0=$(date +%s.%N)
psql_ -d $db -c "\\copy plain_packets FROM '$data/packets.bin' WITH (FORMAT binary)" \
  -c "\\copy plain_segments FROM '$data/segments.bin' WITH (FORMAT binary)"
t1=$(date +%s.%N)
copy_rate=$(awk -v n=$total -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
log "psql \\copy into plain tables: $copy_rate packets/s"
ratio=$(awk -v a="$parser_rate" -v b="$copy_rate" 'BEGIN { printf "%.2f", a / b }')
payload_ratio=$(awk -v a="$payload_rate" -v b="$copy_rate" 'BEGIN { printf "%.2f", a / b }')

section=$(mktemp)
cat >"$section" <<EOT
<!-- parser:begin (written by bench/parser.sh; do not edit by hand) -->
## Parser: ingest rate into PostgreSQL

Command: \`bash bench/parser.sh $batches $per_batch\` on $(nproc) cores, $(date -u +%Y-%m-%d). One trawl-parser (prefetch 16, so a backlog is stored up to 16 batches per transaction)
drains a pre-filled queue of $batches batches of $per_batch packets (DNS, HTTP, TLS hellos, TCP ACKs): it dissects every
packet, writes one segment (the batch's frames) and a narrow index row per packet with binary COPY, upserts flows
and records each batch id, one transaction per batch; once for a headers-only session, once keeping payload.
The headers-only run's rows and segments are then loaded again with \`psql \\copy ... (FORMAT binary)\` into plain
tables without any index: the rate PostgreSQL itself sustains for those bytes on this machine.

| loader | packets/s | ratio to psql \\copy |
|---|---|---|
| trawl-parser, headers only (queue -> dissect -> PostgreSQL) | $parser_rate | $ratio |
| trawl-parser, keeping payload | $payload_rate | $payload_ratio |
| psql \\copy of the headers-only rows and segments, no indexes | $copy_rate | 1.00 |

Bytes on disk per packet (every table, index and TOAST after VACUUM), next to the same packets as a pcap file
(24-byte file header, 16 bytes per record, the captured bytes):

| session | stored bytes per packet | pcap bytes per packet |
|---|---|---|
| headers only | $headers_disk | $headers_pcap |
| keeping payload | $payload_disk | $payload_pcap |
<!-- parser:end -->
EOT
cat "$section"
python3 bench/report.py parser "$section"
log "written to docs/benchmarks.md"
