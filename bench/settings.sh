#!/usr/bin/env bash
# PostgreSQL settings for ingest: the parser benchmark's load (one trawl-parser draining a
# pre-filled queue, headers only) under each candidate setting, one after another in one run, with
# the WAL written and the checkpoints forced during each. Candidates: the defaults; max_wal_size
# 4 GB (fewer checkpoints, so fewer full-page images); wal_compression lz4 (smaller full-page
# images); both. Each is set with ALTER SYSTEM and reloaded, and reset afterwards. TOAST
# compression is per column (segments' records use lz4: the "layout" section). Writes
# docs/benchmarks.md.
#
# Usage: bash bench/settings.sh [batches, default 1500] [packets per batch, default 1000]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
batches=${1:-1500} per_batch=${2:-1000}
db=trawl_bench_settings
work=$(mktemp -d)
reset() {
  psql_ -d postgres -c "ALTER SYSTEM RESET max_wal_size" -c "ALTER SYSTEM RESET wal_compression" \
    -c "SELECT pg_reload_conf()" >/dev/null
}
cleanup() {
  reset || true
  rm -rf "$work"
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
}
trap cleanup EXIT
source bench/ingest.sh

rows=()
measure() { # label max_wal_size wal_compression
  reset
  psql_ -d postgres -c "ALTER SYSTEM SET max_wal_size = '$2'" -c "ALTER SYSTEM SET wal_compression = '$3'" \
    -c "SELECT pg_reload_conf()" -c "CHECKPOINT" >/dev/null
  local lsn0 lsn1 ckpt0 ckpt1 rate
  read -r lsn0 ckpt0 < <(psql_ -d postgres -F ' ' -c "SELECT pg_current_wal_lsn(), checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter")
  rate=$(ingest $db)
  read -r lsn1 ckpt1 < <(psql_ -d postgres -F ' ' -c "SELECT pg_current_wal_lsn(), checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter")
  local wal
  wal=$(psql_ -d postgres -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0')::numeric / $total, 1)")
  log "$1: $rate packets/s, $wal WAL bytes per packet, $((ckpt1 - ckpt0)) checkpoints"
  rows+=("| $1 | $rate | $wal | $((ckpt1 - ckpt0)) |")
}
measure "defaults (max_wal_size 1GB, wal_compression off)" 1GB off
measure "max_wal_size 4GB" 4GB off
measure "wal_compression lz4" 1GB lz4
measure "max_wal_size 4GB, wal_compression lz4" 4GB lz4

section=$(mktemp)
{
  cat <<EOT
<!-- settings:begin (written by bench/settings.sh; do not edit by hand) -->
## PostgreSQL settings for ingest

Command: \`bash bench/settings.sh $batches $per_batch\` on $(nproc) cores, $(date -u +%Y-%m-%d), PostgreSQL $(psql_ -d postgres -c "SHOW server_version" | cut -d' ' -f1).
One trawl-parser stores $total packets (headers only) under each setting in turn, in this run; WAL is what
\`pg_current_wal_lsn()\` moved per packet stored (the whole server), checkpoints those started meanwhile.

| setting | packets/s | WAL bytes per packet | checkpoints |
|---|---|---|---|
EOT
  printf '%s\n' "${rows[@]}"
  echo "<!-- settings:end -->"
} >"$section"
cat "$section"
python3 bench/report.py settings "$section"
log "written to docs/benchmarks.md"
