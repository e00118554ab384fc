#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm) and what a real node needs (kubelet, kube-proxy,
# a static `pause` for the sandbox image) from the Go module proxy at the versions
# pinned in versions.env, into a cache outside the clone laid out as
# KUBEBUILDER_ASSETS expects:
#   ${TRAWL_CACHE:-$HOME/.cache/trawl}/kubebuilder-envtest/k8s/<version>-linux-amd64/
# Usage: hack/control-plane/build.sh      (prints the assets directory on stdout)
# It does nothing for a component whose binary is already there.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${TRAWL_CACHE:-$HOME/.cache/trawl}
assets="$cache/kubebuilder-envtest/k8s/${KUBERNETES_VERSION#v}-linux-amd64"
work="$cache/control-plane-src"
mkdir -p "$assets" "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
log() { echo "control-plane: $*" >&2; }

# A stamp per component records the version it was built from, so a bump in versions.env rebuilds it.
fresh() { [ -x "$assets/$1" ] && [ "$(cat "$assets/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$assets/.$1.version"; }

build_kubernetes() {
  local v=$KUBERNETES_VERSION bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy) b need=0
  for b in "${bins[@]}"; do fresh "$b" "$v" || need=1; done
  [ $need = 1 ] || return 0
  log "building Kubernetes $v (first build takes 10-20 minutes on 2 cores)"
  local dir="$work/kubernetes-$v" staging minor=${v#v1.}
  minor=${minor%%.*}
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # local folders; outside its tree each needs a replace to its published v0.<minor>.<patch>.
  staging=$(awk '/^require|^\t/ && $2=="v0.0.0" {print $1}' "$gomod" | sed 's/^require//' | tr -d '\t ' | sort -u)
  {
    echo "module trawl.dev/control-plane"
    echo
    echo "go $(awk '$1=="go"{print $2; exit}' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    for m in $staging; do echo "replace $m => $m v0.${v#v1.}"; done
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true)
  local pkg="k8s.io/component-base/version"
  local ld="-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  # kubectl reads its version from the same package through client-go's copy.
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for b in "${bins[@]}"; do
    fresh "$b" "$v" && continue
    log "  go build $b"
    (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$assets/$b" "k8s.io/kubernetes/cmd/$b")
    stamp "$b" "$v"
  done
}

build_etcd() {
  local v=$ETCD_VERSION
  fresh etcd "$v" && return 0
  log "building etcd $v"
  # go install of etcd's server fails on its upstream replace directives; a wrapper module does not.
  local dir="$work/etcd-$v"
  mkdir -p "$dir"
  cat > "$dir/go.mod" <<GOMOD
module trawl.dev/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $v
GOMOD
  cat > "$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && go mod tidy >/dev/null && go build -trimpath -ldflags "-s -w" -o "$assets/etcd" .)
  stamp etcd "$v"
}

build_go_install() { # name module version
  fresh "$1" "$3" && return 0
  log "building $1 $3"
  GOBIN="$assets" go install -trimpath -ldflags "-s -w" "$2@$3"
  stamp "$1" "$3"
}

# The sandbox image's only process: sleeps until it is told to stop, as the pause container does.
build_pause() {
  local v=1
  fresh pause "$v" && return 0
  log "building pause"
  local dir="$work/pause"
  mkdir -p "$dir"
  printf 'module trawl.dev/pause\n\ngo 1.22\n' > "$dir/go.mod"
  cat > "$dir/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
GO
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$assets/pause" .)
  stamp pause "$v"
}

build_etcd
build_pause
build_go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
build_go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
build_kubernetes
echo "$assets"
