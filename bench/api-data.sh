# Sourced by the API benchmarks (api.sh, abuse.sh): the services, wrk and a release trawl-api
# ($bin), a database of $rows generated packet rows in the shape the parser writes (kept between
# runs; regenerated when the count differs or the rows are older than a few minutes), the endpoint
# history that names their ends, and wrk_percentiles. Needs: $rows, $seconds. Defines $db, $port,
# $url, $work (a scratch folder, removed by the EXIT trap's cleanup) and psql_.
bash hack/deps.sh
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
bash hack/services.sh
cargo build --release -q -p api --bin trawl-api
bin=$CARGO_TARGET_DIR/release
db=trawl_bench_api port=19393
export PGPASSWORD=trawl
url="postgres://trawl:trawl@127.0.0.1:5432/$db"
psql_() { psql -qAt -h 127.0.0.1 -U trawl -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
cleanup() {
  kill "${api:-}" "${kube_api:-}" 2>/dev/null || true
  kill "${control_plane:-}" 2>/dev/null || true
  wait "${control_plane:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The rows are kept between runs (generating them takes minutes); a different count regenerates.
# The rows end at the time they were generated and the requests ask for the last hours: rows older
# than a few minutes are regenerated too.
have=$(psql_ -d $db -c "SELECT count(*) FROM packets WHERE EXISTS (SELECT FROM traffic_minutes)
  HAVING max(ts) > now() - interval '5 minutes'" 2>/dev/null || echo 0)
if [ "$have" != "$rows" ]; then
  log "generating $rows packet rows"
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  # Let the API create the schema (its migrations), then stop it.
  "$bin/trawl-api" --database-url "$url" --listen 127.0.0.1:$port >"$work/migrate.log" 2>&1 &
  api=$!
  until curl -fsS http://127.0.0.1:$port/readyz >/dev/null 2>&1 && psql_ -d $db -c "SELECT 1 FROM sessions LIMIT 0" >/dev/null 2>&1; do sleep 0.2; done
  kill $api; wait $api || true; api=
  psql_ -d $db <<SQL
SELECT trawl_ensure_partitions(current_date - 1);
SELECT trawl_ensure_partitions(current_date);
INSERT INTO sessions (namespace, name, uid, phase, ready, spec, status, created_at)
VALUES ('bench', 'api', 'bench', 'Capturing', true, '{}', '{}', now() - interval '1 day');
INSERT INTO batches (batch_id, session, node, boot_id, batch_seq, packets, final)
VALUES ('bench-0', 'bench/api', 'node-a', 'bench', 0, $rows, false);
SET maintenance_work_mem = '512MB';
-- Index rows only: these routes never read the segments (ids as the parser makes them, 1024 per segment).
INSERT INTO packets (id, session, ts, seq, node, interface, original_len, captured_len, src, dst, src_port,
                     dst_port, ip_protocol, transport, l7, l7_guessed, l7_name, tcp_flags, fragment, payload_kept)
SELECT (n / 1024 + 1) * 1048576 + n % 1024, 'bench/api',
       now() - interval '1 day' + (n * (86400.0 / $rows)) * interval '1 second',
       n, 'node-' || (n % 2), 'eth0',
       60 + (n * 7919) % 1400, 60 + (n * 7919) % 1400 ,
       ('10.0.' || ((n * 31) % 8) || '.' || ((n * 17) % 250))::inet,
       ('10.1.' || ((n * 13) % 8) || '.' || ((n * 29) % 250))::inet,
       30000 + (n % 20000),
       (ARRAY[53, 80, 443, 443, 8080, 5432, 443, 53])[1 + n % 8],
       CASE WHEN n % 8 IN (0, 7) THEN 17 ELSE 6 END,
       CASE WHEN n % 8 IN (0, 7) THEN 'udp' ELSE 'tcp' END,
       (ARRAY['dns', 'http', 'tls', 'tls', NULL, NULL, 'tls', 'dns'])[1 + n % 8],
       false,
       CASE n % 8 WHEN 0 THEN 'svc' || (n % 300) || '.example.org' WHEN 7 THEN 'db' || (n % 50) || '.example.org'
                  WHEN 1 THEN 'web' || (n % 40) || '.example.org' WHEN 2 THEN 'api' || (n % 90) || '.example.org'
                  WHEN 3 THEN 'cdn' || (n % 20) || '.example.org' WHEN 6 THEN 'auth.example.org' END,
       CASE WHEN n % 8 IN (0, 7) THEN NULL ELSE 24 END,
       false, false
FROM generate_series(1::bigint, $rows::bigint) AS n;
-- The per-minute rollups the parsers would have written for these rows.
INSERT INTO traffic_minutes (session, minute, dimension, key, packets, bytes)
SELECT session, date_trunc('minute', ts), d.dimension, d.key, count(*), sum(original_len)
FROM packets,
     LATERAL (VALUES ('total', ''), ('protocol', coalesce(l7, transport, 'other')), ('talker', host(src)),
                     (l7, CASE WHEN l7 IN ('dns', 'http', 'tls') THEN l7_name END)) AS d(dimension, key)
WHERE d.key IS NOT NULL AND d.dimension IS NOT NULL
GROUP BY 1, 2, 3, 4;
-- Vacuumed, not only analyzed: as autovacuum would have by then (all-visible pages), and so that
-- autovacuum does not start on the fresh rows during the measurement.
VACUUM (ANALYZE) packets;
VACUUM (ANALYZE) traffic_minutes;
SQL
fi

# The endpoint history the operator would have recorded (issue #20): every source address a pod
# of one of 200 workloads in 20 namespaces, reused by another workload's pod at midday, and every
# destination a Service's ClusterIP, so that each end of each packet is named by a lookup that hits.
psql_ -d $db <<'SQL'
TRUNCATE endpoint_history;
INSERT INTO endpoint_history (address, kind, namespace, name, workload_kind, workload, node, since, until)
SELECT ('10.0.' || a || '.' || b)::inet, 'pod', 'ns-' || ((a * 250 + b + half) % 20),
       'w' || ((a * 250 + b + half) % 200) || '-' || md5((a * 250 + b + half)::text),
       'Deployment', 'w' || ((a * 250 + b + half) % 200), 'node-' || (b % 2),
       CASE half WHEN 0 THEN now() - interval '2 days' ELSE now() - interval '12 hours' END,
       CASE half WHEN 0 THEN now() - interval '12 hours' END
FROM generate_series(0, 7) a, generate_series(0, 249) b, generate_series(0, 1) half;
INSERT INTO endpoint_history (address, kind, namespace, name, since)
SELECT ('10.1.' || a || '.' || b)::inet, 'service', 'ns-' || ((a * 250 + b) % 20), 'svc-' || (a * 250 + b),
       now() - interval '2 days'
FROM generate_series(0, 7) a, generate_series(0, 249) b;
VACUUM (ANALYZE) endpoint_history;
SQL


# p50 and p99 in milliseconds from wrk's latency distribution.
# Extra arguments go to wrk (a header, say).
wrk_percentiles() {
  wrk -t2 -c"$2" -d${seconds}s --timeout 60s --latency "${@:3}" "$1" >"$work/wrk.txt"
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50.000%" || $1 == "50%" { p50 = ms($2) } $1 == "99.000%" || $1 == "99%" { p99 = ms($2) }
    /Requests\/sec/ { rps = $2 }
    END { printf "%.1f %.1f %.0f\n", p50, p99, rps }' "$work/wrk.txt"
}
