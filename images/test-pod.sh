#!/usr/bin/env bash
# Makes the image the real-node tests run their own pods from (servers, clients, the reference
# tcpdump inside a pod), for machines that can reach Debian's mirror but no container registry:
#
#   trawl.local/test-pod:bookworm   a `debootstrap --variant=minbase` Debian 12 root with bash,
#                                   python3 (http.server), curl, iproute2, tcpdump and procps
#
# Usage: images/test-pod.sh    (does nothing when the image exists; --rebuild to redo it).
# Prints the image's name.
set -euo pipefail
image=trawl.local/test-pod:bookworm
log() { echo "test-pod: $*" >&2; }
docker=${DOCKER:-docker}

if [ "${1:-}" != --rebuild ] && $docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi
command -v debootstrap >/dev/null || {
  log "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work=$(mktemp -d "${TMPDIR:-/tmp}/trawl-test-pod.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
log "debootstrap bookworm (about a minute)"
debootstrap --variant=minbase --include=python3,curl,iproute2,tcpdump,procps \
  bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man \
  "$root"/usr/share/locale
log "importing $image"
tar -C "$root" -cf - . | $docker import --change 'CMD ["sleep", "infinity"]' - "$image" >/dev/null
echo "$image"
