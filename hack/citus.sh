#!/usr/bin/env bash
# Citus (distributed PostgreSQL) on this machine, for running the storage tests on a cluster
# (issue #35): a coordinator and two workers on 127.0.0.1, each with its own data folder.
#
# Citus is not in Debian's packages: its source release in ../shared/vendor is built once into
# the cache (about a minute on 2 cores) and installed into Debian's PostgreSQL; a machine where
# Citus is installed from its publisher's packages (citus.so in `pg_config --pkglibdir`) uses that.
#
#   hack/citus.sh up      build/install if needed, start the three servers (idempotent)
#   hack/citus.sh down    stop them
#   hack/citus.sh env     the variables the tests read (TRAWL_TEST_DATABASE_URL, TRAWL_TEST_CITUS_WORKERS)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${TRAWL_CACHE:-$HOME/.cache/trawl}/citus
version=13.2.2
tarball=$root/../shared/vendor/citus-$version.tar.gz
# The servers' data: throwaway, and readable by the postgres user (the cache under /root is not).
cluster=${TMPDIR:-/tmp}/trawl-citus
coordinator=21532
workers=(21533 21534)
log() { echo "citus: $*" >&2; }

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_config=$pg_bin/pg_config
[ -x "$pg_config" ] || pg_config=$(command -v pg_config || true)

install_citus() {
  local libdir
  if [ -n "$pg_config" ] && [ -x "$pg_config" ]; then
    libdir=$("$pg_config" --pkglibdir)
    [ -e "$libdir/citus.so" ] && return 0
  fi
  local missing=()
  dpkg -s postgresql-server-dev-15 >/dev/null 2>&1 || missing+=(postgresql-server-dev-15)
  for package in libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # The server headers may come with a newer minor release of the server itself: a server
    # still running the old binary then cannot load the new release's plpgsql.so. Restart it.
    pg_lsclusters --no-header | awk '$4 == "online" {print $1, $2}' | while read -r v c; do
      log "restarting PostgreSQL $v/$c on the binaries apt just installed"
      pg_ctlcluster "$v" "$c" restart
    done
  fi
  pg_config=$(command -v pg_config)
  local source=$cache/citus-$version
  if [ ! -e "$source/.built" ]; then
    [ -e "$tarball" ] || { log "no $tarball (see ../shared/vendor/README.md)"; exit 1; }
    log "building Citus $version from $tarball (once; cached in $cache)"
    rm -rf "$source"
    mkdir -p "$cache"
    tar xzf "$tarball" -C "$cache"
    # Debian's PostgreSQL 15 server headers declare have_createdb_privilege() since a 15.x minor
    # release; Citus's compatibility header still defines its own for versions before 16.
    if grep -q "have_createdb_privilege" "$("$pg_config" --includedir-server)/commands/dbcommands.h"; then
      python3 - "$source/src/include/pg_version_compat.h" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r"\nstatic inline bool\s*\nhave_createdb_privilege\(void\)\s*\n\{.*?\n\}\n", "\n", text, count=1, flags=re.S)
open(path, "w").write(text)
EOF
    fi
    (cd "$source" && ./configure --quiet >/dev/null && make -s -j"$(nproc)" >/dev/null)
    touch "$source/.built"
  fi
  (cd "$source" && make -s install >/dev/null)
  log "Citus $version installed into $("$pg_config" --pkglibdir)"
}

server() { # port
  local port=$1 data=$cluster/$1
  if ! runuser -u postgres -- "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    if [ ! -e "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      chown -R postgres:postgres "$cluster"
      runuser -u postgres -- "$pg_bin/initdb" -D "$data" -U trawl --auth=trust >/dev/null
    fi
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w -s \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $data -c shared_preload_libraries=citus -c fsync=off -c max_connections=300" start
  fi
}

case ${1:-up} in
  up)
    install_citus
    mkdir -p "$cluster"
    for port in "$coordinator" "${workers[@]}"; do server "$port"; done
    log "coordinator 127.0.0.1:$coordinator, workers ${workers[*]}"
    ;;
  down)
    for port in "$coordinator" "${workers[@]}"; do
      [ -d "$cluster/$port" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$cluster/$port" -m fast -w -s stop || true
    done
    ;;
  env)
    echo "TRAWL_TEST_DATABASE_URL=postgres://trawl@127.0.0.1:$coordinator/postgres"
    echo "TRAWL_TEST_CITUS_WORKERS=127.0.0.1:${workers[0]},127.0.0.1:${workers[1]}"
    ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
