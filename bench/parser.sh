#!/usr/bin/env bash
# Ingest benchmark: one trawl-parser drains a pre-filled queue of sniffer-format batches into
# PostgreSQL; then the very rows it wrote are loaded again with `psql \copy` into the same,
# emptied table (same indexes, same partitions). Reports both rates and their ratio, and writes
# them into docs/benchmarks.md.
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

db=trawl_bench_parser queue=trawl-bench-parser port=19191
export PGPASSWORD=trawl
psql_() { psql -qAt -h 127.0.0.1 -U trawl "$@"; }
psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
url="postgres://trawl:trawl@127.0.0.1:5432/$db"
mgmt() { curl -fsS -u guest:guest -H 'content-type: application/json' -X "$1" "http://127.0.0.1:15672/api$2" ${3:+-d "$3"} >/dev/null; }
mgmt DELETE /queues/%2f/$queue 2>/dev/null || true
mgmt PUT /queues/%2f/$queue '{"durable":true}'
data=$(mktemp -d)
cleanup() { kill "${parser:-}" 2>/dev/null || true; mgmt DELETE /queues/%2f/$queue || true; rm -rf "$data"; }
trap cleanup EXIT

log "filling the queue with $batches batches of $per_batch packets"
"$bin/examples/fill_queue" amqp://guest:guest@127.0.0.1:5672/%2f $queue "$batches" "$per_batch" >/dev/null

rows() { curl -fsS http://127.0.0.1:$port/metrics 2>/dev/null | awk '$1 == "trawl_parser_rows_written_total" {print $2}'; }
"$bin/trawl-parser" --session bench/parser --queue $queue --database-url "$url" --prefetch 8 \
  --listen 127.0.0.1:$port --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f >"$data/parser.log" 2>&1 &
parser=$!
# The clock starts at the first committed batch, so start-up and migrations are not counted.
until [ "$(rows)" -gt 0 ] 2>/dev/null; do sleep 0.01; done
t0=$(date +%s.%N) r0=$(rows)
until [ "$(rows)" -ge "$total" ] 2>/dev/null; do sleep 0.05; done
t1=$(date +%s.%N)
kill -TERM $parser; wait $parser || true
parser_rate=$(awk -v n=$((total - r0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
log "trawl-parser: $parser_rate packets/s"

columns="session, ts, boot_id, seq, node, interface, original_len, captured_len, src, dst, src_port, dst_port, \
ip_protocol, transport, l7, l7_guessed, l7_name, tcp_flags, vlan, fragment, malformed, layers, data, payload_kept"
psql_ -d $db -c "\\copy (SELECT $columns FROM packets) TO '$data/rows.bin' WITH (FORMAT binary)"
psql_ -d $db -c "TRUNCATE packets"
t0=$(date +%s.%N)
psql_ -d $db -c "\\copy packets ($columns) FROM '$data/rows.bin' WITH (FORMAT binary)"
t1=$(date +%s.%N)
copy_rate=$(awk -v n=$total -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
log "psql \\copy: $copy_rate packets/s"
ratio=$(awk -v a="$parser_rate" -v b="$copy_rate" 'BEGIN { printf "%.2f", a / b }')

section=$(mktemp)
cat >"$section" <<EOT
<!-- parser:begin (written by bench/parser.sh; do not edit by hand) -->
## Parser: ingest rate into PostgreSQL

Command: \`bash bench/parser.sh $batches $per_batch\` on $(nproc) cores, $(date -u +%Y-%m-%d). One trawl-parser (prefetch 8)
drains a pre-filled queue of $batches batches of $per_batch packets (DNS, HTTP, TLS hellos, TCP ACKs): it dissects every
packet, writes the rows with binary COPY, upserts flows and records each batch id, one transaction per batch.
The same rows are then loaded again with \`psql \\copy ... (FORMAT binary)\` into the emptied table (same indexes
and partitions): the rate PostgreSQL itself sustains on this machine.

| loader | packets/s | ratio |
|---|---|---|
| trawl-parser (queue -> dissect -> PostgreSQL) | $parser_rate | $ratio |
| psql \\copy of the same rows | $copy_rate | 1.00 |
<!-- parser:end -->
EOT
cat "$section"
python3 bench/report.py parser "$section"
psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
log "written to docs/benchmarks.md"
