#!/usr/bin/env bash
# Builds Trawl's four images from images/Dockerfile and prints each one's size.
#
# Usage: images/build.sh [--prebuilt] [--local-bases] [--tag TAG] [--registry REGISTRY]
#   --prebuilt      compile on this machine (cargo build --release, npm run build) and build only
#                   the runtime stages from those files; without it, everything is compiled
#                   inside the builder stages, as a user without Rust would
#   --local-bases   builder bases made by images/local-bases.sh instead of the public ones (for
#                   machines that reach no container registry)
# Images: $REGISTRY/trawl-{operator,sniffer,parser,api}:$TAG (default ghcr.io/trawl-dev, dev).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prebuilt=0 local_bases=0 tag=${TAG:-dev} registry=${REGISTRY:-ghcr.io/trawl-dev}
while [ $# -gt 0 ]; do
  case $1 in
    --prebuilt) prebuilt=1; shift ;;
    --local-bases) local_bases=1; shift ;;
    --tag) tag=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    *) echo "usage: $0 [--prebuilt] [--local-bases] [--tag TAG] [--registry REGISTRY]" >&2; exit 2 ;;
  esac
done
log() { echo "images: $*" >&2; }

# BuildKit is needed (cache mounts, stages chosen by argument); hack/docker.sh names a CLI that
# has it, and starts an engine if none answers.
export DOCKER_BUILDKIT=1
docker=${DOCKER:-$(bash "$root/hack/docker.sh")}
export DOCKER=$docker

args=()
if [ $local_bases = 1 ]; then
  read -r -a args < <(bash "$root/images/local-bases.sh")
fi
context=$root
if [ $prebuilt = 1 ]; then
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  log "cargo build --release"
  (cd "$root" && cargo build --release --locked -p operator -p sniffer -p parser -p api)
  log "npm run build (web UI)"
  (cd "$root/frontend" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build >/dev/null)
  context=$(mktemp -d "${TMPDIR:-/tmp}/trawl-images.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  mkdir -p "$context/bin"
  for b in operator sniffer parser api; do cp "$target_dir/release/trawl-$b" "$context/bin/"; done
  cp -r "$root/frontend/dist" "$context/ui"
  args+=(--build-arg BINARIES=prebuilt)
fi

for component in operator sniffer parser api; do
  image=$registry/trawl-$component:$tag
  log "building $image"
  $docker build -q "${args[@]}" -f "$root/images/Dockerfile" --target "$component" -t "$image" "$context" >/dev/null
done
# Each build sends its binaries as context (hundreds of MB) and replaces the previous images:
# without pruning, BuildKit's cache and the untagged images grew the Docker data root by gigabytes a day.
$docker image prune -f >/dev/null
$docker builder prune -f --keep-storage 2GB >/dev/null 2>&1 || true
for component in operator sniffer parser api; do
  image=$registry/trawl-$component:$tag
  size=$($docker image inspect --format '{{.Size}}' "$image")
  printf '%s\t%s MB\n' "$image" "$(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1000000}')"
done
