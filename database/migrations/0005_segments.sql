-- Storage built for ingest (issue #18). A packet's bytes are no longer a column of its row: each
-- batch's frames are kept whole in one `segments` row (the batch's packet records, lz4-compressed
-- by TOAST), and `packets` becomes a narrow index over them with two indexes instead of nine. The
-- layer tree is no longer stored: the API dissects the kept bytes on read with the parser's
-- dissector. Nothing was deployed with the earlier layout, so it is dropped, not migrated: every
-- captured row and its bookkeeping go with it (the sessions mirror stays).

DROP FUNCTION trawl_drop_expired_packet_partitions();
DROP FUNCTION trawl_ensure_packet_partition(date);
DROP TABLE packets;
DROP SEQUENCE packets_id_seq;
TRUNCATE batches, sniffer_counters, flows, session_retention;

-- One id per stored batch. A packet's id is its segment's id * 2^20 + its position in the
-- segment (a batch holds at most 2^20 packets), so ids follow the order batches were stored in,
-- a packet's bytes are found from its id alone, and the ids stay below 2^53 (exact in JavaScript)
-- for 2^33 batches.
CREATE SEQUENCE segments_id_seq;
ALTER TABLE batches ADD COLUMN segment bigint NOT NULL DEFAULT nextval('segments_id_seq');

CREATE TABLE segments (
    id            bigint NOT NULL,
    session       text NOT NULL,
    node          text NOT NULL,
    -- Packet records name their interface by index into this list.
    interfaces    text[] NOT NULL,
    first_ts      timestamptz NOT NULL,
    last_ts       timestamptz NOT NULL,
    packets       integer NOT NULL,
    payload_kept  boolean NOT NULL,
    -- The batch's packet records in the wire format's layout (wire/FORMAT.md), each cut to the
    -- headers when the session does not keep payload. lz4 because pglz caps a load of
    -- headers-only segments at a fifth of lz4's rate (docs/benchmarks.md, "layout").
    records       bytea COMPRESSION lz4 NOT NULL
) PARTITION BY RANGE (last_ts);
-- Partitioned by the last packet's time, so a segment stays as long as the newest packet row that
-- points into it.
CREATE INDEX segments_id ON segments (id);

CREATE TABLE packets (
    id            bigint NOT NULL,
    session       text NOT NULL,
    ts            timestamptz NOT NULL,
    seq           bigint NOT NULL,
    node          text NOT NULL,
    interface     text NOT NULL,
    original_len  integer NOT NULL,
    captured_len  integer NOT NULL,
    src           inet,
    dst           inet,
    src_port      integer,
    dst_port      integer,
    ip_protocol   smallint,
    transport     text,
    l7            text,
    l7_guessed    boolean NOT NULL,
    l7_name       text,
    tcp_flags     smallint,
    vlan          integer,
    fragment      boolean NOT NULL,
    malformed     text,
    payload_kept  boolean NOT NULL
) PARTITION BY RANGE (ts);
-- Time ranges (stats, exports) through BRIN; pages of a session newest first through the one
-- btree, whose inserts land at its right edge because ids grow. Filters on addresses, ports and
-- protocols are checked on the rows these two reach.
CREATE INDEX packets_ts_brin ON packets USING brin (ts);
CREATE INDEX packets_session_id ON packets (session, id);

-- Day partitions of `parent` (`packets`, `segments`), created ahead by the parsers.
CREATE FUNCTION trawl_ensure_partition(parent text, day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := format('%s_%s', parent, to_char(day, 'YYYYMMDD'));
BEGIN
    -- Serialise creators: two parsers may want the same day at once.
    PERFORM pg_advisory_xact_lock(hashtext('trawl_partitions'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', name, parent, day, day + 1);
    END IF;
END;
$$;

-- Drops the day partitions of every partitioned table that every session's retention has passed:
-- whole partitions go at once instead of row by row. Returns the names dropped.
CREATE FUNCTION trawl_drop_expired_partitions() RETURNS SETOF text LANGUAGE plpgsql AS $$
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
        WHERE p.relname IN ('packets', 'segments')
          AND c.relname ~ '_[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (now() - longest)::date
    LOOP
        EXECUTE format('DROP TABLE %I', partition.name);
        RETURN NEXT partition.name;
    END LOOP;
END;
$$;
