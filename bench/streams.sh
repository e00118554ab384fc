#!/usr/bin/env bash
# TCP stream reassembly's cost (issue #19): the parser's per-packet dissection with and without
# feeding each TCP payload to its stream, and the memory of open flows, measured in one run by
# dissect/examples/stream_cost.rs. Writes docs/benchmarks.md.
#
# Usage: bash bench/streams.sh [flows, default 10000] [rounds, default 5]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
flows=${1:-10000} rounds=${2:-5}
cargo build --release -q -p dissect --example stream_cost
out=$("$CARGO_TARGET_DIR/release/examples/stream_cost" "$flows" "$rounds")
value() { awk -F= -v k="$1" '$1 == k { print $2 }' <<<"$out"; }
without=$(value ns_per_packet_without) with=$(value ns_per_packet_with)
section=$(mktemp)
trap 'rm -f "$section"' EXIT
cat >"$section" <<EOT
<!-- streams:begin (written by bench/streams.sh; do not edit by hand) -->
## TCP stream reassembly: cost per packet and memory per open flow

Command: \`bash bench/streams.sh $flows $rounds\` on $(nproc) cores, $(date -u +%Y-%m-%d), best of $rounds rounds.
$(value flows) connections each send a SYN, a 1.9 KB ClientHello in two segments (1448 bytes, then the rest) and
three ACKs ($(value packets) packets); every connection gets its first segment before any gets its second, so all
$(value flows) streams hold an unfinished hello at once. Per packet: the parser's dissection alone, and with the
TCP payload fed to its stream in a table keyed by both endpoints (what parser/src/streams/mod.rs adds).

| | ns per packet |
|---|---|
| dissection per packet (no reassembly) | $without |
| dissection + stream reassembly | $with |
| added by reassembly | $((with - without)) |

Memory with $(value flows) open flows each holding an unfinished 1448-byte segment: $(value held_bytes_per_flow) bytes held
per flow, $(value resident_bytes_per_flow_holding) bytes of resident memory per flow (process RSS growth, allocator and table included),
so about $(( $(value resident_bytes_per_flow_holding) * 10000 / 1048576 )) MiB per 10 000 such flows. Between messages a stream
holds no bytes: an open flow then costs its table entry, $(value entry_bytes) bytes (plus the table's spare capacity).
Where the added time goes (perf on the example): mostly copying segments into stream buffers and allocating them.
The parser bounds the table at 65 536 directions and each direction at 16 KiB.
<!-- streams:end -->
EOT
cat "$section"
python3 bench/report.py streams "$section"
echo "bench: written to docs/benchmarks.md" >&2
