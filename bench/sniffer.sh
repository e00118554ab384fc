#!/usr/bin/env bash
# Capture benchmark: trafgen offers rising packet rates on a veth from inside a network namespace
# made here; trawl-sniffer (ring and pnet backends, capturing and publishing to the local RabbitMQ)
# and `tcpdump -w /dev/null` capture the same traffic in the same run, one after the other.
# Reports offered, captured, kernel drops and CPU microseconds per captured packet (utime + stime
# of the whole process, from /proc/PID/stat), and writes the table into docs/benchmarks.md.
#
# Usage (root): bash bench/sniffer.sh [seconds per run, default 10]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
seconds=${1:-10}

bash hack/deps.sh
command -v trafgen >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netsniff-ng >/dev/null
bash hack/services.sh
cargo build --release -q -p sniffer
sniffer=$CARGO_TARGET_DIR/release/trawl-sniffer

ns=trawl-bench-$$ host=twbench$$h inner=twbench$$n bridge=twbench$$b
mgmt=http://127.0.0.1:15672/api
api() { curl -fsS -u guest:guest -H 'content-type: application/json' -X "$1" "$mgmt$2" ${3:+-d "$3"} >/dev/null; }
cleanup() {
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  api DELETE /queues/%2f/trawl-bench 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip link add "$host" address 02:be:00:00:00:01 type veth peer name "$inner" address 02:be:00:00:00:02 netns "$ns"
sysctl -qw "net.ipv6.conf.$host.disable_ipv6=1"
ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$inner.disable_ipv6=1"
ip link set "$host" up
# The host end sits on a bridge, as a pod's veth does: a capture on both sees every packet twice
# (the bridge is promiscuous while captured), the case the sniffer's deduplication is for.
ip link add "$bridge" type bridge
sysctl -qw "net.ipv6.conf.$bridge.disable_ipv6=1"
ip link set "$host" master "$bridge"
ip link set "$bridge" up
ip -n "$ns" link set "$inner" up
api PUT /exchanges/%2f/trawl.packets '{"type":"direct","durable":true}'
api PUT /queues/%2f/trawl-bench '{"durable":true}'
api POST /bindings/%2f/e/trawl.packets/q/trawl-bench '{"routing_key":"trawl-bench"}'

conf=$(mktemp)
# 60-byte UDP frames between the two veth ends (TEST-NET-1 addresses, never routed). Each frame
# differs (random IPv4 id and four payload bytes), as real traffic does, so that the sniffer's
# deduplication remembers every packet rather than one.
cat >"$conf" <<'EOF'
{
  eth(da=02:be:00:00:00:01, sa=02:be:00:00:00:02),
  ipv4(id=drnd(), sa=192.0.2.2, da=192.0.2.1),
  udp(sp=40000, dp=5555),
  fill(0x41, 14),
  drnd(4)
}
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rx() { cat "/sys/class/net/$host/statistics/rx_packets"; }
metric() { curl -fsS "http://127.0.0.1:19190/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
ticks_per_second=$(getconf CLK_TCK)

# offer RATE: sends for $seconds at RATE (pps, or "max"); prints the packets the veth received.
offer() {
  local rate=$1 before count
  before=$(rx)
  if [ "$rate" = max ]; then
    ip netns exec "$ns" timeout "$seconds" trafgen --dev "$inner" --conf "$conf" --cpus 1 -q >/dev/null 2>&1 || true
  else
    count=$((rate * seconds))
    ip netns exec "$ns" trafgen --dev "$inner" --conf "$conf" --cpus 1 -q --num "$count" -b "${rate}pps" >/dev/null 2>&1 || true
  fi
  echo $(($(rx) - before))
}

results=()
run_sniffer() { # backend rate [interfaces label]
  local backend=$1 rate=$2 interfaces=${3:-$host} label=${4:-$1} pid t0 t1 offered captured drops
  api DELETE /queues/%2f/trawl-bench/contents
  "$sniffer" --session bench/bench --node bench --routing-key trawl-bench --interfaces "$interfaces" \
    --backend "$backend" --listen 127.0.0.1:19190 --buffer-bytes $((512 << 20)) >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:19190/readyz >/dev/null 2>&1 && break; sleep 0.1; done
  t0=$(cpu_ticks $pid)
  offered=$(offer "$rate")
  # Wait until everything captured is confirmed by the broker: CPU then covers encode and publish too.
  for _ in $(seq 1 600); do [ "$(metric trawl_sniffer_packets_pending)" = 0 ] && break; sleep 0.1; done
  t1=$(cpu_ticks $pid)
  captured=$(metric trawl_sniffer_packets_captured_total)
  drops=$(metric trawl_sniffer_kernel_drops_total)
  copies=$(metric trawl_sniffer_packets_deduplicated_total)
  kill -TERM $pid; wait $pid || true
  results+=("trawl-sniffer ($label)|$rate|$offered|$captured|$drops|$(per_packet "$t0" "$t1" "$captured")|$copies")
}

run_tcpdump() { # rate
  local rate=$1 pid t0 t1 offered out captured drops
  out=$(mktemp)
  tcpdump -i "$host" -w /dev/null -n 2>"$out" &
  pid=$!
  for _ in $(seq 1 50); do grep -q listening "$out" && break; sleep 0.1; done
  t0=$(cpu_ticks $pid)
  offered=$(offer "$rate")
  sleep 0.5 # tcpdump has no "caught up" signal; its counters below are exact regardless
  t1=$(cpu_ticks $pid)
  kill -INT $pid; wait $pid || true
  captured=$(awk '/packets captured/ {print $1}' "$out")
  drops=$(awk '/dropped by kernel/ {print $1}' "$out")
  results+=("tcpdump -w /dev/null|$rate|$offered|$captured|$drops|$(per_packet "$t0" "$t1" "$captured")|-")
  rm -f "$out"
}

per_packet() { # t0 t1 packets -> microseconds of CPU per packet
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$ticks_per_second" 'BEGIN { if (n > 0) printf "%.3f", (b - a) / hz * 1e6 / n; else print "-" }'
}

for rate in 50000 100000 200000 max; do
  log "rate $rate: tcpdump"; run_tcpdump "$rate"
  log "rate $rate: trawl-sniffer (ring)"; run_sniffer ring "$rate"
  log "rate $rate: trawl-sniffer (pnet)"; run_sniffer pnet "$rate"
  log "rate $rate: trawl-sniffer (ring, veth and bridge)"; run_sniffer ring "$rate" "$host,$bridge" "ring, veth + bridge"
done

table=$(mktemp)
{
  echo "<!-- sniffer:begin (written by bench/sniffer.sh; do not edit by hand) -->"
  echo "## Sniffer: capture cost per packet"
  echo
  echo "Command: \`bash bench/sniffer.sh $seconds\` on $(nproc) cores, $(date -u +%Y-%m-%d). trafgen sends 60-byte UDP"
  echo "frames from a network namespace into a veth for ${seconds} s per run; each capturer runs alone on the same traffic."
  echo "CPU is the capturer's whole process (utime + stime); for trawl-sniffer that includes encoding batches"
  echo "and publishing them to the local RabbitMQ with confirms. \"offered\" is the veth's rx counter. Every frame"
  echo "differs (random IPv4 id and payload bytes), so deduplication remembers each one. \"veth + bridge\" captures the"
  echo "veth and the bridge it sits on: every packet twice, one copy deduplicated (its CPU is per captured copy)."
  echo
  echo "| capturer | rate asked (pps) | offered | captured | kernel drops | deduplicated | CPU µs / packet | ratio to tcpdump |"
  echo "|---|---|---|---|---|---|---|---|"
  declare -A baseline=()
  for row in "${results[@]}"; do
    IFS='|' read -r who rate offered captured drops cpu copies <<<"$row"
    [ "$who" = "tcpdump -w /dev/null" ] && baseline[$rate]=$cpu
  done
  for row in "${results[@]}"; do
    IFS='|' read -r who rate offered captured drops cpu copies <<<"$row"
    ratio=$(awk -v a="$cpu" -v b="${baseline[$rate]:-0}" 'BEGIN { if (b > 0 && a != "-") printf "%.1fx", a / b; else print "-" }')
    echo "| $who | $rate | $offered | $captured | $drops | $copies | $cpu | $ratio |"
  done
  echo "<!-- sniffer:end -->"
} >"$table"
cat "$table"
python3 bench/report.py sniffer "$table"
log "written to docs/benchmarks.md"
