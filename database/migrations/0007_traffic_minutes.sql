-- Per-minute rollups written at ingest (issue #18), so that /stats over a busy hour sums a few
-- thousand rows instead of every packet. One row per session, minute, dimension and key, with the
-- packets and bytes the parser stored for it:
--   total     key ''                                   all packets
--   protocol  key coalesce(l7, transport, 'other')     the protocol mix
--   talker    key the source address                   top talkers
--   dns, http, tls  key the DNS name, HTTP host, TLS server name of packets of that protocol
-- The API uses them when a request filters by session and time only, and reads the raw packets of
-- the partial minutes at either end of the range.

CREATE TABLE traffic_minutes (
    session    text NOT NULL,
    minute     timestamptz NOT NULL,
    dimension  text NOT NULL,
    key        text NOT NULL,
    packets    bigint NOT NULL,
    bytes      bigint NOT NULL,
    PRIMARY KEY (session, minute, dimension, key)
) PARTITION BY RANGE (minute);

-- Which tables have day partitions, for the parsers (which create them ahead) and retention (which
-- drops them): one list instead of one in each function.
CREATE TABLE partitioned_tables (name text PRIMARY KEY);
INSERT INTO partitioned_tables
VALUES ('packets'), ('segments'), ('dns_events'), ('http_events'), ('tls_events'), ('traffic_minutes');

CREATE OR REPLACE FUNCTION trawl_drop_expired_partitions() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    longest interval;
    partition record;
BEGIN
    SELECT max(retention) INTO longest FROM session_retention;
    IF longest IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('trawl_partitions'));
    FOR partition IN
        SELECT c.relname AS name
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname IN (SELECT name FROM partitioned_tables)
          AND c.relname ~ '_[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (now() - longest)::date
    LOOP
        EXECUTE format('DROP TABLE %I', partition.name);
        RETURN NEXT partition.name;
    END LOOP;
END;
$$;

-- Every partitioned table's partition for `day`.
CREATE FUNCTION trawl_ensure_partitions(day date) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM trawl_ensure_partition(name, day) FROM partitioned_tables;
END;
$$;
