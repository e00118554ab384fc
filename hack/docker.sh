#!/usr/bin/env bash
# Starts a Docker engine for building Trawl's images when none answers, keeping its data (images,
# build cache) in the cache outside the clone so that later runs reuse the layers. Installs
# Debian's docker.io when dockerd is missing. Prints the docker command to use: one whose
# BuildKit works (a CLI without the buildx plugin refuses DOCKER_BUILDKIT=1; the engine's own
# CLI has BuildKit built in).
# Usage: hack/docker.sh
set -euo pipefail
cache=${TRAWL_CACHE:-$HOME/.cache/trawl}
log() { echo "docker: $*" >&2; }
if ! command -v dockerd >/dev/null; then
  log "installing docker.io"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
docker=docker
if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then docker=/usr/bin/docker; fi
if ! $docker info >/dev/null 2>&1; then
  mkdir -p "$cache/docker"
  log "starting dockerd (data in $cache/docker)"
  nohup dockerd --data-root "$cache/docker" >"$cache/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do $docker info >/dev/null 2>&1 && break; sleep 0.5; done
  $docker info >/dev/null 2>&1 || { tail -20 "$cache/dockerd.log" >&2; exit 1; }
fi
echo "$docker"
