-- How long each session keeps its data (from the CaptureSession's `retention`), written by its parsers.
CREATE TABLE session_retention (
    session    text PRIMARY KEY,
    retention  interval NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Drops the day partitions of `packets` that every session's retention has passed: whole
-- partitions go at once instead of row by row. Returns the names dropped.
CREATE FUNCTION trawl_drop_expired_packet_partitions() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    longest interval;
    partition record;
BEGIN
    SELECT max(retention) INTO longest FROM session_retention;
    IF longest IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('trawl_packet_partitions'));
    FOR partition IN
        SELECT c.relname AS name
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'packets'::regclass
          AND c.relname ~ '^packets_[0-9]{8}$'
          AND to_date(substr(c.relname, 9), 'YYYYMMDD') + 1 <= (now() - longest)::date
    LOOP
        EXECUTE format('DROP TABLE %I', partition.name);
        RETURN NEXT partition.name;
    END LOOP;
END;
$$;
