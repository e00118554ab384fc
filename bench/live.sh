#!/usr/bin/env bash
# Wire to Wireshark: the latency of the live pcapng export (what `kubectl trawl tap -w -` and the
# Wireshark extcap read) at a given rate, from each packet's kernel timestamp to a reader of the
# export holding it. Writes docs/benchmarks.md. Needs root (network namespaces).
#
# Usage: bash bench/live.sh [packets/s, default 10000] [seconds, default 30]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rate=${1:-10000} seconds=${2:-30}
bash hack/deps.sh
bash hack/services.sh
cargo build --release -q -p sniffer -p parser -p api
cargo build --release -q -p e2e --example live_export
read -r _ offered received p50 p99 max < <("$CARGO_TARGET_DIR/release/examples/live_export" "$rate" "$seconds" 2>/dev/null | grep '^live: ')
log "offered $offered, received $received live; p50 $p50 ms, p99 $p99 ms, max $max ms"

section=$(mktemp)
cat >"$section" <<EOT
<!-- live:begin (written by bench/live.sh; do not edit by hand) -->
## Live export: wire to Wireshark

Command: \`bash bench/live.sh $rate $seconds\` on $(nproc) cores, $(date -u +%Y-%m-%d). The end-to-end pipeline (release
trawl-sniffer on a veth, RabbitMQ, one trawl-parser, PostgreSQL) and a trawl-api over its database, all on this
machine; a reader follows the session's live pcapng export (\`/pcap?format=pcapng&follow=true\`, what \`kubectl trawl
tap -w -\` and the Wireshark extcap read) while the generator offers $rate packets/s for $seconds s. Latency runs from
each packet's kernel timestamp (its Enhanced Packet Block's) to the reader holding the block: capture, batching,
the broker, dissection and commit, and the export's polling of what was stored. Issue #34's goal: p99 under 2 s at
10 000 packets/s. All processes share the machine's cores with the generator.

| offered | received live | p50 | p99 | max |
|---|---|---|---|---|
| $offered | $received | $p50 ms | $p99 ms | $max ms |
<!-- live:end -->
EOT
cat "$section"
python3 bench/report.py live "$section"
log "written to docs/benchmarks.md"
