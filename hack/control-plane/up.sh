#!/usr/bin/env bash
# Starts a real, local Kubernetes control plane as plain processes: etcd, kube-apiserver
# (127.0.0.1 only, self-signed serving certificate, RBAC, service-account signing keys, an
# admin client certificate), kube-controller-manager, kube-scheduler, and kwok with fake
# nodes that run pods without containers. Binaries come from build.sh.
#
# Usage: hack/control-plane/up.sh [--dir DIR] [--owner-pid PID] [--real-node | --real-nodes N]
#          [--load-image IMAGE]...
#   Stays in the foreground; Ctrl-C, SIGTERM, or the end of the owner process (a test run)
#   stops every process and removes DIR. When the API is ready it writes DIR/kubeconfig and
#   then DIR/ready, and prints `export KUBECONFIG=...`.
#   --real-node also joins this machine as node `trawl-node` (node.sh: containerd, kubelet,
#   kube-proxy, CNI bridge 10.244.0.0/24, node address 10.244.0.1, labelled trawl.dev/pool=capture),
#   with each --load-image copied from Docker into its containerd. The API server then listens on
#   every address (pods reach it through the `kubernetes` Service), and the kwok nodes are
#   tainted kwok.x-k8s.io/node=fake:NoSchedule so that only what tolerates them lands there.
#   --real-nodes 2 adds `trawl-node-2` in a network namespace of its own (node.sh --netns: pod
#   subnet 10.244.1.0/24, node address 10.245.1.2, uplink to the host 10.245.1.1, labelled
#   trawl.dev/pool=capture and zone-b), with the same images.
# Fake nodes (all labelled kubernetes.io/os=linux and type=kwok):
#   kwok-node-0  trawl.dev/pool=capture  topology.kubernetes.io/zone=zone-a
#   kwok-node-1  trawl.dev/pool=capture  topology.kubernetes.io/zone=zone-b
#   kwok-node-2  trawl.dev/pool=general  topology.kubernetes.io/zone=zone-a
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir="" owner="" real_node=0 real_nodes=0 node_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --owner-pid) owner=$2; shift 2 ;;
    --real-node) real_nodes=1; shift ;;
    --real-nodes) real_nodes=$2; shift 2 ;;
    --load-image) node_args+=(--load-image "$2"); shift 2 ;;
    *) echo "usage: $0 [--dir DIR] [--owner-pid PID] [--real-node | --real-nodes N] [--load-image IMAGE]..." >&2; exit 2 ;;
  esac
done
case $real_nodes in 0|1|2) ;; *) echo "$0: --real-nodes is 1 or 2" >&2; exit 2 ;; esac
[ "$real_nodes" = 0 ] || real_node=1
node_ip=10.244.0.1
assets=${TRAWL_CONTROL_PLANE_ASSETS:-$("$here/build.sh")}
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/trawl-control-plane.XXXXXX")
mkdir -p "$dir/logs" "$dir/pki"
role=control-plane
# shellcheck source=processes.sh
source "$here/processes.sh"

cleanup() {
  trap - EXIT INT TERM
  # Stop in reverse start order (kwok and controllers before the API server, etcd last), each
  # given up to 30 s (the real node takes its pods down) before it is killed, so that nothing
  # outlives this script.
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[$i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# Certificates: one CA signs the serving certificate and the admin's client certificate.
pki=$dir/pki
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=trawl-test-ca" -keyout ca.key -out ca.crt
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr
  # 10.96.0.1 is the `kubernetes` Service's address, the node's the one its endpoint names.
  printf 'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' "$node_ip" > apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=trawl-admin" -keyout admin.key -out admin.csr
  # Extensions make these X.509 v3 certificates, which rustls requires.
  printf 'extendedKeyUsage=clientAuth\n' > admin.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile admin.ext -out admin.crt
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
  # The aggregation layer's own CA and client: the API server proxies aggregated APIs (trawl-api's
  # data.trawl.dev) with this certificate and the caller's identity in X-Remote-* headers.
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=trawl-test-front-proxy-ca" \
    -keyout front-proxy-ca.key -out front-proxy-ca.crt
  openssl req -newkey rsa:2048 -nodes -subj "/CN=front-proxy-client" -keyout front-proxy-client.key -out front-proxy-client.csr
  openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial \
    -days 3650 -extfile admin.ext -out front-proxy-client.crt
) >"$dir/logs/pki.log" 2>&1 || fail "certificate generation failed"

etcd_client=$(free_port) etcd_peer=$(free_port) api_port=$(free_port)
start etcd "$assets/etcd" --name trawl --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "trawl=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
wait_for 30 etcd curl -fsS "http://127.0.0.1:$etcd_client/health"

# Without a real node nothing outside this machine's loopback needs the API server; with one,
# pods reach it through the `kubernetes` Service, whose endpoint is the node's bridge address.
if [ $real_node = 1 ]; then
  network=(--bind-address 0.0.0.0 --advertise-address "$node_ip"
    --kubelet-preferred-address-types InternalIP
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key")
else
  network=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
fi
start kube-apiserver "$assets/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_client" \
  "${network[@]}" --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true --cert-dir "$pki" \
  --enable-priority-and-fairness=false \
  --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
  --enable-aggregator-routing=true

kubeconfig=$dir/kubeconfig
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: trawl-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: trawl-admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/admin.crt")
    client-key-data: $(base64 -w0 "$pki/admin.key")
contexts:
- name: trawl-test
  context: {cluster: trawl-test, user: trawl-admin, namespace: default}
current-context: trawl-test
EOF
kubectl() { "$assets/kubectl" --kubeconfig "$kubeconfig" "$@"; }
wait_for 60 "kube-apiserver /readyz" kubectl get --raw /readyz

# A real node cut off is marked NotReady after 30 s rather than 40 (its kubelet renews its lease
# every 10 s), so that tests of a lost node wait less.
lifecycle=()
[ $real_node = 1 ] && lifecycle=(--node-monitor-grace-period 30s)
start kube-controller-manager "$assets/kube-controller-manager" --kubeconfig "$kubeconfig" --leader-elect=false \
  "${lifecycle[@]}" \
  --bind-address 127.0.0.1 --secure-port "$(free_port)" \
  --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
  --controllers '*' --concurrent-gc-syncs 5
start kube-scheduler "$assets/kube-scheduler" --kubeconfig "$kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port "$(free_port)"
start kwok "$assets/kwok" --kubeconfig "$kubeconfig" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-ip 10.0.0.1 --cidr 10.0.0.1/24 --node-lease-duration-seconds 40 \
  --server-address "127.0.0.1:$(free_port)"

taints=""
[ $real_node = 1 ] && taints="  taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]"
for i in 0 1 2; do
  pool=capture zone=zone-a
  [ $i = 1 ] && zone=zone-b
  [ $i = 2 ] && pool=general
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    trawl.dev/pool: $pool
    topology.kubernetes.io/zone: $zone
spec:
$taints
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "250"}
  capacity: {cpu: "32", memory: 256Gi, pods: "250"}
EOF
done > "$dir/nodes.yaml"
wait_for 30 "the default namespace" kubectl get namespace default
kubectl apply -f "$dir/nodes.yaml" >/dev/null
wait_for 60 "kwok nodes to be Ready" kubectl wait --for=condition=Ready node --all --timeout=1s
wait_for 60 "the default service account" kubectl get serviceaccount default

if [ $real_node = 1 ]; then
  "$here/node.sh" --dir "$dir/node" --kubeconfig "$kubeconfig" --ca-dir "$pki" --owner-pid $$ \
    --label trawl.dev/pool=capture --label topology.kubernetes.io/zone=zone-a "${node_args[@]}" \
    >"$dir/logs/node.log" 2>&1 &
  pids+=($!)
  wait_for 300 "the real node (node.sh)" test -e "$dir/node/ready"
fi
if [ "$real_nodes" = 2 ]; then
  "$here/node.sh" --dir "$dir/second-node" --kubeconfig "$kubeconfig" --ca-dir "$pki" --owner-pid $$ \
    --name trawl-node-2 --subnet 10.244.1 --netns trawl-node-2 --api-address "$node_ip" \
    --label trawl.dev/pool=capture --label topology.kubernetes.io/zone=zone-b "${node_args[@]}" \
    >"$dir/logs/second-node.log" 2>&1 &
  pids+=($!)
  wait_for 300 "the second real node (node.sh --netns)" test -e "$dir/second-node/ready"
fi

echo "$kubeconfig" >"$dir/ready"
log "ready in ${SECONDS}s; logs in $dir/logs"
echo "export KUBECONFIG=$kubeconfig"

watch_until_owner_exits
