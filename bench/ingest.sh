# Sourced by the benchmarks that need packets stored by a real parser: builds the release
# parser and the queue filler, and defines
#   ingest DATABASE [parser flags...]
# which recreates DATABASE, fills a queue with $batches batches of $per_batch packets (the
# parser benchmark's mix: DNS, HTTP, TLS hellos, TCP ACKs), drains it with one trawl-parser and
# prints its rate in packets/s, timed from the first committed batch to the last. The parser's last
# /metrics are left in $work/metrics.txt and its peak memory (KiB) in $work/peak_kib. With
# $ingest_sources set, the packets come from that many source addresses (see fill_queue); with
# $ingest_keep_db set, DATABASE is kept as the last run left it; with $ingest_mix=grpc, the packets
# are unary gRPC calls over 200 long-lived HTTP/2 connections (see fill_queue); with
# $ingest_queue_type=quorum, the queue is a quorum queue (a single-node Raft log here).
# Needs: $root, $batches, $per_batch, $work (a scratch folder); defines psql_ and mgmt.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PGPASSWORD=trawl
psql_() { psql -qAt -h 127.0.0.1 -U trawl "$@"; }
mgmt() { curl -fsS -u guest:guest -H 'content-type: application/json' -X "$1" "http://127.0.0.1:15672/api$2" ${3:+-d "$3"} >/dev/null; }

bash "$root/hack/deps.sh"
bash "$root/hack/services.sh"
cargo build --release -q -p parser --bin trawl-parser --example fill_queue
ingest_bin=$CARGO_TARGET_DIR/release
ingest_queue=trawl-bench-ingest ingest_port=19191
total=$((batches * per_batch))

ingest_rows() { curl -fsS http://127.0.0.1:$ingest_port/metrics 2>/dev/null | awk '$1 == "trawl_parser_rows_written_total" {print $2}'; }

ingest() {
  local db=$1 t0 t1 r0 parser
  shift
  # $ingest_keep_db: store into the database as the last run left it (new batch ids, so stored again).
  [ -n "${ingest_keep_db:-}" ] || psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  mgmt DELETE /queues/%2f/$ingest_queue 2>/dev/null || true
  mgmt PUT /queues/%2f/$ingest_queue "{\"durable\":true,\"arguments\":{\"x-queue-type\":\"${ingest_queue_type:-classic}\"}}"
  log "filling the queue with $batches batches of $per_batch packets"
  FILL_MIX=${ingest_mix:-} "$ingest_bin/examples/fill_queue" amqp://guest:guest@127.0.0.1:5672/%2f $ingest_queue "$batches" "$per_batch" \
    ${ingest_sources:-1} >/dev/null
  "$ingest_bin/trawl-parser" --session bench/parser --queue $ingest_queue \
    --database-url "postgres://trawl:trawl@127.0.0.1:5432/$db" --listen 127.0.0.1:$ingest_port \
    --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f "$@" >"$work/parser.log" 2>&1 &
  parser=$!
  # The clock starts at the first committed batch, so start-up and migrations are not counted.
  until [ "$(ingest_rows)" -gt 0 ] 2>/dev/null; do sleep 0.01; done
  t0=$(date +%s.%N) r0=$(ingest_rows)
  until [ "$(ingest_rows)" -ge "$total" ] 2>/dev/null; do sleep 0.05; done
  t1=$(date +%s.%N)
  curl -fsS http://127.0.0.1:$ingest_port/metrics >"$work/metrics.txt"
  awk '/^VmHWM:/ {print $2}' /proc/$parser/status >"$work/peak_kib"
  kill -TERM $parser; wait $parser || true
  mgmt DELETE /queues/%2f/$ingest_queue || true
  awk -v n=$((total - r0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}
