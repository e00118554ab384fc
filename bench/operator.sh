#!/usr/bin/env bash
# Operator benchmark: applies N CaptureSessions at once to the test control plane (kwok nodes, so
# sniffer and parser pods are scheduled and reported ready without running) with a real RabbitMQ
# and PostgreSQL, and measures the time until every session is Ready, the reconciles per second
# meanwhile and once settled, and the operator's memory. Writes the figures into docs/benchmarks.md.
#
# Usage: bash bench/operator.sh [sessions, default 100]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sessions=${1:-100}

bash hack/deps.sh
bash hack/services.sh
cargo build --release -q -p operator --bin trawl-operator
bin=$CARGO_TARGET_DIR/release

work=$(mktemp -d) port=19292 db=trawl_bench_operator namespace=bench vhost=trawl-bench-operator
export PGPASSWORD=trawl
psql -qAt -h 127.0.0.1 -U trawl -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
# A vhost of its own, deleted at the end: the sessions' queues outlive the operator stopped below, and
# left in the broker's default vhost they piled up run after run (thousands of queues made the
# broker's next start take longer than the tests wait).
mgmt() { curl -fsS -u guest:guest -H 'content-type: application/json' -X "$1" "http://127.0.0.1:15672/api$2" ${3:+-d "$3"} >/dev/null; }
mgmt DELETE /vhosts/$vhost 2>/dev/null || true
mgmt PUT /vhosts/$vhost
mgmt PUT /permissions/$vhost/guest '{"configure": ".*", "write": ".*", "read": ".*"}'
bash hack/control-plane/up.sh --dir "$work/cp" --owner-pid $$ >"$work/control-plane.log" 2>&1 &
control_plane=$!
cleanup() {
  kill "${operator:-}" 2>/dev/null || true
  kill "$control_plane" 2>/dev/null || true
  wait "$control_plane" 2>/dev/null || true
  psql -qAt -h 127.0.0.1 -U trawl -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  mgmt DELETE /vhosts/$vhost || true
  rm -rf "$work"
}
trap cleanup EXIT
until [ -e "$work/cp/ready" ]; do
  kill -0 $control_plane 2>/dev/null || { cat "$work/control-plane.log"; exit 1; }
  sleep 0.2
done
export KUBECONFIG=$work/cp/kubeconfig
kubectl=$(bash hack/control-plane/build.sh)/kubectl
"$kubectl" apply --server-side -f crds/capturesession.yaml >/dev/null
"$kubectl" wait --for=condition=Established crd/capturesessions.trawl.dev --timeout=60s >/dev/null
"$kubectl" create namespace $namespace >/dev/null

"$bin/trawl-operator" --listen 127.0.0.1:$port --namespace $namespace \
  --amqp-url "amqp://guest:guest@127.0.0.1:5672/$vhost" \
  --database-url "postgres://trawl:trawl@127.0.0.1:5432/$db" >"$work/operator.log" 2>&1 &
operator=$!
until curl -fsS http://127.0.0.1:$port/readyz >/dev/null 2>&1; do sleep 0.1; done
reconciles() { curl -fsS http://127.0.0.1:$port/metrics | awk '$1 ~ /^trawl_operator_reconciles_total/ {n += $2} END {print n + 0}'; }

for i in $(seq -f "%03g" 0 $((sessions - 1))); do
  sed "s/name: web-and-dns/name: capture-$i/" examples/capture.yaml
  echo "---"
done >"$work/sessions.yaml"
ready() {
  "$kubectl" get cap -n $namespace -o json |
    jq '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length'
}

log "applying $sessions sessions"
r0=$(reconciles) t0=$(date +%s.%N)
"$kubectl" apply -n $namespace -f "$work/sessions.yaml" >/dev/null
t_applied=$(date +%s.%N)
until [ "$(ready)" -ge "$sessions" ]; do
  kill -0 $operator 2>/dev/null || { tail -50 "$work/operator.log"; exit 1; }
  sleep 0.2
done
t1=$(date +%s.%N) r1=$(reconciles)
# Settled: every session requeues for the autoscaler's poll; measure that steady load for 30 s.
sleep 30
t2=$(date +%s.%N) r2=$(reconciles)
rss_mib=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' /proc/$operator/status)
errors=$(curl -fsS http://127.0.0.1:$port/metrics | awk '$1 ~ /^trawl_operator_reconcile_errors_total/ {n += $2} END {print n + 0}')
# By the action that failed: a finalizer added while the session changed is refused on purpose
# (resourceVersion) and retried; others would be worth a look.
error_kinds=$(curl -fsS http://127.0.0.1:$port/metrics |
  awk -F'[{}"]' '$1 ~ /^trawl_operator_reconcile_errors_total/ {split($0, v, " "); printf "%s%s %s", sep, $3, v[2]; sep = ", "}')
mirrored=$(psql -qAt -h 127.0.0.1 -U trawl -d $db -c "SELECT count(*) FROM sessions WHERE ready")

to_ready=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
apply_s=$(awk -v a="$t0" -v b="$t_applied" 'BEGIN { printf "%.1f", b - a }')
burst_rate=$(awk -v n=$((r1 - r0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
steady_rate=$(awk -v n=$((r2 - r1)) -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", n / (b - a) }')
log "all $sessions Ready after ${to_ready}s; $burst_rate reconciles/s meanwhile, $steady_rate settled; peak RSS ${rss_mib} MiB"

section=$(mktemp)
cat >"$section" <<EOT
<!-- operator:begin (written by bench/operator.sh; do not edit by hand) -->
## Operator: $sessions sessions applied at once

Command: \`bash bench/operator.sh $sessions\` on $(nproc) cores, $(date -u +%Y-%m-%d). One release-built trawl-operator
(builtin autoscaler polling every 5 s, mirroring into PostgreSQL) on the test control plane (kube-apiserver v1.37, kwok
nodes: two match the sessions' node selector, so every session gets two sniffer pods and one parser pod) with a real
RabbitMQ. \`kubectl apply\` of $sessions copies of \`examples/capture.yaml\` took ${apply_s} s.

| measure | value |
|---|---|
| apply -> all $sessions sessions \`Ready=True\` | ${to_ready} s |
| reconciles until then | $((r1 - r0)) ($burst_rate/s) |
| reconciles/s once settled (30 s) | $steady_rate |
| reconcile errors (by action) | $errors (${error_kinds:-none}) |
| sessions mirrored Ready in PostgreSQL | $mirrored |
| operator peak RSS | ${rss_mib} MiB |
<!-- operator:end -->
EOT
cat "$section"
python3 bench/report.py operator "$section"
log "written to docs/benchmarks.md"
