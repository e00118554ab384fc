#!/usr/bin/env bash
# Installs what building and testing Trawl needs on a Debian/Ubuntu machine, skipping what is
# already there: system packages from apt, and rustfmt/clippy for the Rust toolchain.
# Usage: hack/deps.sh
set -euo pipefail
log() { echo "deps: $*" >&2; }

# command -> Debian package that provides it
declare -A packages=(
  [pg_ctlcluster]=postgresql
  [rabbitmqctl]=rabbitmq-server
  [pcap-config]=libpcap-dev
  [tshark]=tshark
  [tcpdump]=tcpdump
  [ip]=iproute2
  [openssl]=openssl
  [curl]=curl
  [python3]=python3
  [pkg-config]=pkg-config
  [lua5.4]=lua5.4
  [ss]=iproute2
  [tcpreplay]=tcpreplay
  [dig]=bind9-dnsutils
  # Traffic metrics: a real Prometheus evaluates the chart's rules; ethtool turns segmentation
  # offload off in test pods so that segments on the wire are segments.
  [prometheus]=prometheus
  [promtool]=prometheus
  [ethtool]=ethtool
  # The real node and the images: a container runtime, its network plugins, local base images.
  [dockerd]=docker.io
  [containerd]=containerd
  [debootstrap]=debootstrap
  [iptables]=iptables
  [conntrack]=conntrack
  # Real HTTP/2 and gRPC servers and clients for the dissector's agreement with tshark; the same
  # for Redis (PostgreSQL's psql and pgbench come with hack/services.sh's server).
  [nghttpd]=nghttp2-server
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  # The web UI's tests in a real browser (the real-node test's, through kubectl trawl open, and
  # the local run's); playwright-core drives Debian's, never one it downloads.
  [chromium]=chromium
)
missing=()
for command in "${!packages[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || missing+=(python3-grpcio)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done
command -v go >/dev/null || { log "Go is needed to build the test control plane: install it first"; exit 1; }
# Vite 7 needs Node.js 20.19 or later (Debian 12's own nodejs is 18).
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null ||
  { log "Node.js 20.19 or later is needed to build the web UI: install it first (https://nodejs.org)"; exit 1; }

# krew, to install kubectl-trawl from its manifest in the tests (built once from the Go module proxy).
krew_gopath=${TRAWL_CACHE:-$HOME/.cache/trawl}/go
if [ ! -x "$krew_gopath/bin/krew" ]; then
  log "building krew v0.4.3 into $krew_gopath/bin"
  GOPATH=$krew_gopath GOFLAGS=-mod=mod go install sigs.k8s.io/krew/cmd/krew@v0.4.3
fi
