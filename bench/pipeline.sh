#!/usr/bin/env bash
# End-to-end benchmark: the highest offered rate the whole pipeline (sniffer on a veth, RabbitMQ,
# parsers, PostgreSQL) sustains for a while (60 s by default) with zero loss, and the wire-to-row latency, with 1 and
# with 2 parsers. Writes docs/benchmarks.md. Needs root (network namespaces).
#
# Usage: bash bench/pipeline.sh [seconds per rate, default 60]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seconds=${1:-60}

bash hack/deps.sh
bash hack/services.sh
# Each step's figures also go to this log as they come, so a stopped run keeps them.
log=$TRAWL_CACHE/bench-pipeline.log
# The services' own logs share stdout with the table: keep only the table's rows.
table=$(cargo run --release -q -p e2e --example sustained -- "$seconds" 2> >(tee "$log" >&2) | grep '^|')
steps=$(grep '^step: ' "$log" | sed 's/^step: /- /')

section=$(mktemp)
cat >"$section" <<EOT
<!-- pipeline:begin (written by bench/pipeline.sh; do not edit by hand) -->
## Pipeline: sustained rate with zero loss, end to end

Command: \`bash bench/pipeline.sh $seconds\` on $(nproc) cores, $(date -u +%Y-%m-%d). Release builds of trawl-sniffer (TPACKET_V3
ring on the host end of a veth pair) and trawl-parser, the shared RabbitMQ and PostgreSQL, all on this machine. The
generator (tcpreplay inside the namespace, paced by packets per second) offers UDP packets of 46 to 1 030 bytes for ${seconds} s per step
at rising rates; a step is kept up with when no packet is lost and the last row is stored within 5 s of the end of
the offer (so that a growing queue backlog does not pass for a sustained rate); a step still missing rows 30 s after the
offer has fallen behind and is abandoned with its backlog. The accounting balances at every step that kept up. The
second row per parser count is the highest rate whose wire-to-row p99 stayed under 1 s (issue #18's goal); two parsers
start at that rate. Latency runs from each packet's kernel timestamp to
the commit of its row, read from the parsers' \`trawl_parser_wire_to_stored_seconds\` histogram (upper bucket bounds).
All processes share the $(nproc) cores, the generator included; it sleeps between millisecond bursts (tcpreplay's default
timer spins on the clock, took a whole core and, in a first run, held both parser counts to 16 000 packets/s).

$table

Every step, as it ended (received: the veth's receive counter; stored: rows counted in PostgreSQL):

$steps
<!-- pipeline:end -->
EOT
cat "$section"
python3 bench/report.py pipeline "$section"
