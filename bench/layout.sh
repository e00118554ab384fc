#!/usr/bin/env bash
# Storage layout candidates (issue #18), measured before the layout is chosen: how fast PostgreSQL
# itself loads each candidate with `psql \copy ... (FORMAT binary)` on this machine, in one run.
#   - a narrow per-packet index row (session, time, segment and position, addresses, ports,
#     protocol, length), without secondary indexes, with a BRIN index on time, and with a btree
#     on (session, time) besides;
#   - segments: one row per batch of 1024 frames (the frames and their offsets as bytea), with
#     TOAST compression pglz and lz4, on random payload (incompressible) and on repetitive
#     headers-only frames.
# Rates are packets/s (a segment row counts its 1024 packets). Writes its section into
# docs/benchmarks.md.
#
# Usage: bash bench/layout.sh [packets, default 2000000]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
packets=${1:-2000000}
segments=$((packets / 1024))

bash hack/services.sh
db=trawl_bench_layout
export PGPASSWORD=trawl
psql_() { psql -qAtX -h 127.0.0.1 -U trawl "$@"; }
psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
data=$(mktemp -d)
chmod 755 "$data"
trap 'rm -rf "$data"; psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

narrow="session integer NOT NULL, ts timestamptz NOT NULL, segment bigint NOT NULL, position integer NOT NULL,
  src inet, dst inet, src_port integer, dst_port integer, protocol smallint, length integer NOT NULL"
segment="session integer NOT NULL, first_ts timestamptz NOT NULL, last_ts timestamptz NOT NULL, id bigint NOT NULL,
  packets integer NOT NULL, offsets bytea NOT NULL, frames bytea NOT NULL"

log "generating $packets index rows and $segments segments of each kind"
psql_ -d $db <<SQL
CREATE UNLOGGED TABLE narrow_source ($narrow);
INSERT INTO narrow_source
SELECT 1 + i % 4, now() - interval '1 hour' + i * interval '1 millisecond', i / 1024, i % 1024,
       ('10.' || (i / 65536 % 256) || '.' || (i / 256 % 256) || '.' || (i % 256))::inet, '10.96.0.10'::inet,
       1024 + i % 60000, (ARRAY[53, 80, 443, 5432])[1 + i % 4], (ARRAY[6, 17])[1 + i % 2], 60 + i % 1400
FROM generate_series(0, $packets - 1) AS i;
CREATE UNLOGGED TABLE random_source ($segment);
INSERT INTO random_source
SELECT 1, now(), now(), s, 1024, decode(repeat('00', 4096), 'hex'),
       (SELECT string_agg(decode(md5(s::text || '-' || k), 'hex'), ''::bytea) FROM generate_series(1, 1024 * 200 / 16) AS k)
FROM generate_series(1, $segments) AS s;
CREATE UNLOGGED TABLE headers_source ($segment);
INSERT INTO headers_source
SELECT 1, now(), now(), s, 1024, decode(repeat('00', 4096), 'hex'),
       (SELECT string_agg(decode('0242ac110002' || '0242ac110003' || '0800' || '4500003c' || lpad(to_hex(k % 65536), 4, '0')
          || '40004006' || '0000' || '0a000001' || '0a000002' || lpad(to_hex(1024 + k % 60000), 4, '0') || '01bb'
          || lpad(to_hex(k), 8, '0') || '00000000' || 'a0027210' || '00000000' || repeat('00', 20), 'hex'), ''::bytea)
        FROM generate_series(1, 1024) AS k)
FROM generate_series(1, $segments) AS s;
SQL
for source in narrow_source random_source headers_source; do
  psql_ -d $db -c "\\copy $source TO '$data/$source.bin' WITH (FORMAT binary)"
done

results=()
load() { # label table-definition source packets-per-row [PGOPTIONS for the load]
  local label=$1 definition=$2 source=$3 per_row=$4 options=${5:-} rows t0 t1 rate bytes
  psql_ -d $db -c "DROP TABLE IF EXISTS candidate" -c "$definition"
  psql_ -d $db -c "CHECKPOINT"
  t0=$(date +%s.%N)
  PGOPTIONS=$options psql_ -d $db -c "\\copy candidate FROM '$data/$source.bin' WITH (FORMAT binary)"
  t1=$(date +%s.%N)
  rows=$(psql_ -d $db -c "SELECT count(*) FROM candidate")
  bytes=$(psql_ -d $db -c "SELECT pg_total_relation_size('candidate')")
  rate=$(awk -v n="$rows" -v k="$per_row" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n * k / (b - a) }')
  log "$label: $rate packets/s, $bytes bytes"
  results+=("| $label | $rate | $(awk -v b="$bytes" -v n="$rows" -v k="$per_row" 'BEGIN { printf "%.1f", b / (n * k) }') |")
}
load "narrow index row, no secondary index" "CREATE TABLE candidate ($narrow)" narrow_source 1
load "narrow index row, BRIN (ts)" "CREATE TABLE candidate ($narrow); CREATE INDEX ON candidate USING brin (ts)" narrow_source 1
load "narrow index row, BRIN (ts) + btree (session, ts)" \
  "CREATE TABLE candidate ($narrow); CREATE INDEX ON candidate USING brin (ts); CREATE INDEX ON candidate (session, ts)" narrow_source 1
load "narrow index row, BRIN (ts), wal_compression=lz4" \
  "CREATE TABLE candidate ($narrow); CREATE INDEX ON candidate USING brin (ts)" narrow_source 1 "-c wal_compression=lz4"
load "segment of 1024 random frames (200 B), pglz" \
  "CREATE TABLE candidate ($segment); ALTER TABLE candidate ALTER frames SET COMPRESSION pglz" random_source 1024
load "segment of 1024 random frames (200 B), lz4" \
  "CREATE TABLE candidate ($segment); ALTER TABLE candidate ALTER frames SET COMPRESSION lz4" random_source 1024
load "segment of 1024 TCP header frames (74 B), pglz" \
  "CREATE TABLE candidate ($segment); ALTER TABLE candidate ALTER frames SET COMPRESSION pglz" headers_source 1024
load "segment of 1024 TCP header frames (74 B), lz4" \
  "CREATE TABLE candidate ($segment); ALTER TABLE candidate ALTER frames SET COMPRESSION lz4" headers_source 1024
load "segment of 1024 TCP header frames (74 B), lz4, wal_compression=lz4" \
  "CREATE TABLE candidate ($segment); ALTER TABLE candidate ALTER frames SET COMPRESSION lz4" headers_source 1024 \
  "-c wal_compression=lz4"

section=$(mktemp)
{
  echo "<!-- layout:begin (written by bench/layout.sh; do not edit by hand) -->"
  echo "## Storage layout candidates: what PostgreSQL loads, before the parser"
  echo
  echo "Command: \`bash bench/layout.sh $packets\` on $(nproc) cores, $(date -u +%F). Each candidate is loaded with"
  echo "\`psql \\copy ... (FORMAT binary)\` into an empty, logged table (PostgreSQL $(psql_ -d $db -c 'SHOW server_version' | cut -d' ' -f1),"
  echo "default settings), one after another in the same run. A segment row holds 1024 packets (their frames"
  echo "and a 4 KiB offsets array); its rate counts packets. Bytes are tables + indexes + TOAST per packet."
  echo
  echo "| candidate | packets/s | bytes per packet |"
  echo "|---|---|---|"
  printf '%s\n' "${results[@]}"
  echo "<!-- layout:end -->"
} >"$section"
python3 bench/report.py layout "$section"
rm -f "$section"
log "written to docs/benchmarks.md"
