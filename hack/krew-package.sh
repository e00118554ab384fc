#!/usr/bin/env bash
# Packages kubectl-trawl for krew: the binary in a tar.gz (sorted, owned by root,
# fixed times, so the same binary gives the same archive), and kubectl-trawl/krew/trawl.yaml with
# that archive's sha256, both in OUT.
# Usage: hack/krew-package.sh [kubectl-trawl binary, default: a release build] [OUT, default: dist]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=${1:-}
out=${2:-$root/dist}
if [ -z "$binary" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TRAWL_CACHE:-$HOME/.cache/trawl}/target}
  cargo build --release --locked -q -p kubectl-trawl
  binary=$CARGO_TARGET_DIR/release/kubectl-trawl
fi
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/kubectl-trawl"
archive=$out/kubectl-trawl_linux_amd64.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - kubectl-trawl \
  | gzip -n >"$archive"
sha=$(sha256sum "$archive" | cut -d' ' -f1)
sed "s/^      sha256: .*/      sha256: $sha/" "$root/kubectl-trawl/krew/trawl.yaml" >"$out/trawl.yaml"
echo "$out/trawl.yaml $archive"
