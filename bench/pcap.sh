#!/usr/bin/env bash
# Pcap export benchmark: one trawl-parser stores N packets (the parser benchmark's mix, headers
# only) from a pre-filled queue; then trawl-api exports them as pcap, the whole session and a
# filtered half, timed with curl and checked with tcpdump. Next to it, in the same run: PostgreSQL
# alone reading the same segments' bytes out (`psql \copy (SELECT records FROM segments)`), the
# floor for an export that has to read them. Writes docs/benchmarks.md.
#
# Usage: bash bench/pcap.sh [batches, default 1000] [packets per batch, default 1000]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
batches=${1:-1000} per_batch=${2:-1000}
db=trawl_bench_pcap api_port=19195
work=$(mktemp -d)
cleanup() {
  kill "${api:-}" 2>/dev/null || true
  rm -rf "$work"
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
}
trap cleanup EXIT
source bench/ingest.sh
cargo build --release -q -p api --bin trawl-api
bin=$CARGO_TARGET_DIR/release
url="postgres://trawl:trawl@127.0.0.1:5432/$db"
log "storing $total packets"
ingest $db >/dev/null
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
