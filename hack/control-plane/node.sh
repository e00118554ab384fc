#!/usr/bin/env bash
# Joins this machine to the test control plane as a real node: containerd (Debian's, on a socket
# of its own), a kubelet and kube-proxy built by build.sh, and a CNI bridge with host-local
# addresses. Pods on it run in real containers, beside kwok's fake nodes.
#
# Usage: hack/control-plane/node.sh --dir DIR --kubeconfig FILE --ca-dir PKI [--owner-pid PID]
#          [--name NAME] [--subnet 10.244.0] [--label k=v]... [--load-image IMAGE]...
#          [--netns NAME --api-address ADDRESS]
#   Stays in the foreground and writes DIR/ready once the node is Ready and every --load-image
#   (a Docker image, imported into containerd) is there. Ctrl-C, SIGTERM or the end of the owner
#   process removes everything it made: pods' containers and mounts, the CNI bridge and its
#   iptables rules, kube-proxy's rules, cgroups, DIR.
#
# The node's address is the bridge's gateway (SUBNET.1): the API server reaches the kubelet there,
# pods reach the host there, and no traffic uses the machine's other interfaces. The settings
# this machine needs (cgroup v1, no CAP_SYS_RESOURCE) are commented where they are made.
#
# --netns makes a further node, as a second machine would be: a network namespace of its own
# wired to the host by a veth (its uplink: host 10.245.K.1/30, node 10.245.K.2/30 for SUBNET
# 10.244.K, the node's address), a host route to its pod subnet through it, and its containerd,
# kubelet and kube-proxy started inside it (nsenter, so that /sys keeps the cgroup mounts), with
# a cgroup root, pod log folder and runc state of their own. Its kubelet and pods reach the API
# server at ADDRESS (the first node's bridge address, in the server's certificate). Pods on any
# two nodes reach each other by address and through Services, routed by the host.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir="" kubeconfig="" pki="" owner="" name=trawl-node subnet=10.244.0 labels=() images=() netns="" api_address=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --kubeconfig) kubeconfig=$2; shift 2 ;;
    --ca-dir) pki=$2; shift 2 ;;
    --owner-pid) owner=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --subnet) subnet=$2; shift 2 ;;
    --label) labels+=("$2"); shift 2 ;;
    --load-image) images+=("$2"); shift 2 ;;
    --netns) netns=$2; shift 2 ;;
    --api-address) api_address=$2; shift 2 ;;
    *) echo "usage: $0 --dir DIR --kubeconfig FILE --ca-dir PKI [--owner-pid PID] [--name NAME] [--subnet A.B.C] [--label k=v]... [--load-image IMAGE]... [--netns NAME --api-address ADDRESS]" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] && [ -n "$kubeconfig" ] && [ -n "$pki" ] || { echo "$0: --dir, --kubeconfig and --ca-dir are needed" >&2; exit 2; }
[ -z "$netns" ] || [ -n "$api_address" ] || { echo "$0: --netns needs --api-address" >&2; exit 2; }
assets=${TRAWL_CONTROL_PLANE_ASSETS:-$("$here/build.sh")}
node_ip=$subnet.1 bridge=trawl-cni0 gateway=$subnet.1
if [ -n "$netns" ]; then
  k=${subnet##*.}
  uplink_host=10.245.$k.1 node_ip=10.245.$k.2 bridge=trawl-cni$k host_end=trawl-up$k
fi
# Runs a command in the node's network namespace (the host's for the first node); nsenter execs
# it, so a daemon started through it has the pid `start` records.
in_ns=()
[ -z "$netns" ] || in_ns=(nsenter --net="/run/netns/$netns")
in_node() { "${in_ns[@]}" "$@"; }
mkdir -p "$dir/logs"
dir=$(cd "$dir" && pwd)
role=node
# shellcheck source=processes.sh
source "$here/processes.sh"
sock=$dir/containerd.sock
ctr() { command ctr --address "$sock" -n k8s.io "$@"; }

need=()
command -v containerd >/dev/null || need+=(containerd)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cleanup() {
  trap - EXIT INT TERM
  local i pid
  # The kubelet first, so that it restarts nothing while the pods are taken down.
  for ((i = ${#pids[@]} - 1; i >= 1; i--)); do
    pid=${pids[$i]}
    kill "$pid" 2>/dev/null && for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -S "$sock" ]; then
    local c
    for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks rm -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr containers ls -q 2>/dev/null); do ctr containers rm "$c" >/dev/null 2>&1 || true; done
  fi
  for pid in "${pids[@]:0:1}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  # Shims outlive containerd by design; they are ours when their command line names our socket.
  pkill -9 -f "containerd-shim-runc-v2.*$dir" 2>/dev/null || true
  in_node "$assets/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # What is left of the kubelet's, kube-proxy's and the CNI plugins' iptables rules: the jumps
  # from the built-in chains first, then their own chains (a node's own namespace takes its
  # rules with it).
  local table chain rule
  [ -n "$netns" ] || for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | awk '$1 == "-A" && $2 !~ /^(KUBE|CNI)-/ && / -j (KUBE|CNI)-/ {sub(/^-A/, "-D"); print}' |
      while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  # Deepest first: pod volumes, container root filesystems, network namespaces.
  findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  in_node ip link del "$bridge" 2>/dev/null || true
  local cg
  if [ -n "$netns" ]; then
    for cg in /sys/fs/cgroup/*/"$name"; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    ip route del "$subnet.0/24" via "$node_ip" 2>/dev/null || true
    iptables -D FORWARD -i "$host_end" -j ACCEPT 2>/dev/null || true
    iptables -D FORWARD -o "$host_end" -j ACCEPT 2>/dev/null || true
    ip link del "$host_end" 2>/dev/null || true
    ip netns del "$netns" 2>/dev/null || true
  else
    for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

kubelet_extra="" runc_root="" node_kubeconfig=$kubeconfig
if [ -n "$netns" ]; then
  # The node's uplink, and the host's route to its pods (Docker leaves FORWARD at DROP).
  ip netns add "$netns"
  ip link add "$host_end" type veth peer name eth0 netns "$netns"
  ip addr add "$uplink_host/30" dev "$host_end"
  ip link set "$host_end" up
  ip -n "$netns" addr add "$node_ip/30" dev eth0
  ip -n "$netns" link set eth0 up
  ip -n "$netns" link set lo up
  ip -n "$netns" route add default via "$uplink_host"
  in_node sysctl -qw net.ipv4.ip_forward=1
  ip route replace "$subnet.0/24" via "$node_ip"
  iptables -I FORWARD -i "$host_end" -j ACCEPT
  iptables -I FORWARD -o "$host_end" -j ACCEPT
  # A cgroup root of its own under each v1 controller (cpuset's needs its parent's CPUs and
  # memory nodes), and its own pod log folder: a kubelet removes the folders under its log
  # folder that belong to pods it does not know.
  for cg in /sys/fs/cgroup/*/; do
    [ "$cg" = /sys/fs/cgroup/unified/ ] && continue
    mkdir -p "$cg$name"
  done
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$name/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$name/cpuset.mems"
  kubelet_extra="cgroupRoot: /$name
podLogsDir: $dir/pod-logs"
  runc_root="$dir/runc"
  # The API server's loopback address is the host's; from the namespace it is the first node's
  # bridge address.
  node_kubeconfig=$dir/kubeconfig
  sed "s#server: https://127.0.0.1:#server: https://$api_address:#" "$kubeconfig" >"$node_kubeconfig"
fi

# The bridge exists before any pod, so the node's address is there for the kubelet to serve on.
in_node ip link show "$bridge" >/dev/null 2>&1 || in_node ip link add "$bridge" type bridge
in_node ip addr replace "$gateway/24" dev "$bridge"
in_node ip link set "$bridge" up

mkdir -p "$dir/cni" "$dir/containerd" "$dir/kubelet" "$dir/run"
cat >"$dir/cni/10-trawl.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "trawl",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet.0/24", "gateway": "$gateway"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni/ipam"}},
    {"type": "firewall", "backend": "iptables"},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "trawl.local/pause:1"
  # This machine's capability bounding set lacks CAP_SYS_RESOURCE, so runc cannot lower a
  # sandbox's oom_score_adj ("can't get final child's PID from pipe"); never ask it to.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
$([ -z "$runc_root" ] || printf '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n        Root = "%s"\n' "$runc_root")
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
EOF
start containerd "${in_ns[@]}" containerd --config "$dir/containerd/config.toml"
wait_for 30 containerd ctr version

# The sandbox ("pause") image: the static binary build.sh made, as a one-layer Docker archive.
(
  cd "$dir/run" && mkdir -p pause && cp "$assets/pause" pause/pause
  tar -C pause -cf layer.tar pause
  diff=$(sha256sum layer.tar | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" >config.json
  printf '[{"Config":"config.json","RepoTags":["trawl.local/pause:1"],"Layers":["layer.tar"]}]' >manifest.json
  tar -cf pause.tar config.json manifest.json layer.tar
) || fail "cannot make the pause image"
ctr images import "$dir/run/pause.tar" >/dev/null || fail "cannot import the pause image"
docker=${DOCKER:-docker}
for image in "${images[@]}"; do
  log "loading $image"
  $docker save "$image" | ctr images import - >/dev/null || fail "cannot load $image from Docker"
done

# Pods resolve nothing outside the cluster: an empty resolv.conf keeps them off the host's DNS.
: >"$dir/resolv.conf"
cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup controllers are mounted as v1 here; kubelets since 1.35 refuse v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$sock
address: $node_ip
healthzBindAddress: 127.0.0.1
healthzPort: 0
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
resolvConf: $dir/resolv.conf
failSwapOn: false
# A test machine's disk is shared: never evict the test's pods for it.
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
podPidsLimit: -1
$kubelet_extra
EOF
label_arg=$(IFS=,; echo "type=real,${labels[*]}")
start kubelet "${in_ns[@]}" "$assets/kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$node_kubeconfig" \
  --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" --hostname-override "$name" \
  --node-ip "$node_ip" --node-labels "${label_arg%,}" --v 1
# kube-proxy's default: a pod's traffic through a Service keeps the pod's address (only traffic
# from outside the pods' network, 10.244.0.0/16 on every node, is masqueraded), as captures of
# Service traffic on real clusters see it.
start kube-proxy "${in_ns[@]}" "$assets/kube-proxy" --kubeconfig "$node_kubeconfig" --hostname-override "$name" \
  --proxy-mode iptables --cluster-cidr 10.244.0.0/16 \
  --nodeport-addresses "$subnet.0/24" --conntrack-max-per-core 0 \
  --healthz-bind-address "127.0.0.1:$(free_port)" --metrics-bind-address "127.0.0.1:$(free_port)"
kubectl() { "$assets/kubectl" --kubeconfig "$kubeconfig" "$@"; }
wait_for 120 "node $name to be Ready" kubectl wait --for=condition=Ready "node/$name" --timeout=1s

touch "$dir/ready"
log "node $name ready at $node_ip in ${SECONDS}s"
watch_until_owner_exits
