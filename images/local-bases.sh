#!/usr/bin/env bash
# Makes local stand-ins for the builder bases images/Dockerfile names, for machines that can
# reach Debian's mirror but no container registry. Prints the build arguments that select them.
#
#   trawl.local/builder:bookworm   stands in for both docker.io/library/rust:1-bookworm and
#                                  docker.io/library/node:22-bookworm-slim
#
# What differs from the public bases: a `debootstrap --variant=minbase` Debian 12 root with
# gcc, libc6-dev, libpcap-dev, pkg-config, git and CA certificates (no curl, no other -dev
# packages); Rust is this machine's active toolchain copied in (rustc, cargo, std; no rustup,
# no docs) with CARGO_HOME=/usr/local/cargo as in the rust image; Node.js is this machine's
# `node` and `npm` (the public image has Node.js 22); the machine's own extra CA certificates
# (/usr/local/share/ca-certificates) are trusted too, so that cargo and npm reach their registries
# through a TLS-inspecting egress proxy as the host does. The runtime images are built FROM
# scratch either way; they take the CA bundle of whichever base built them.
#
# Usage: images/local-bases.sh    (does nothing when the image exists; --rebuild to redo it)
set -euo pipefail
image=trawl.local/builder:bookworm
log() { echo "local-bases: $*" >&2; }
docker=${DOCKER:-docker}

if [ "${1:-}" != --rebuild ] && $docker image inspect "$image" >/dev/null 2>&1; then
  echo "--build-arg RUST_IMAGE=$image --build-arg NODE_IMAGE=$image"
  exit 0
fi
command -v debootstrap >/dev/null || {
  log "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work=$(mktemp -d "${TMPDIR:-/tmp}/trawl-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
log "debootstrap bookworm (about a minute)"
debootstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev,libpcap-dev,pkg-config,git \
  bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; exit 1; }

toolchain=$(rustc --print sysroot)
log "copying Rust from $toolchain"
mkdir -p "$root/usr/local/rust" "$root/usr/local/cargo/bin"
tar -C "$toolchain" --exclude=share/doc --exclude=share/man -cf - . | tar -C "$root/usr/local/rust" -xf -

node=$(command -v node)
npm_dir=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
log "copying Node.js $(node --version) and npm from $npm_dir"
install -m 0755 "$node" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  log "trusting this machine's extra CA certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
log "importing $image"
tar -C "$root" -cf - . | $docker import \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["bash"]' - "$image" >/dev/null
echo "--build-arg RUST_IMAGE=$image --build-arg NODE_IMAGE=$image"
