-- L7 events (issue #18), the searchable index beside flows: one row per DNS transaction, per HTTP
-- request with its response, and per TLS ClientHello, as Zeek's dns.log, http.log and ssl.log.
-- The parser pairs a response with its request in the same transaction when both are in the
-- batches it stores together, and otherwise updates the request's row by id (kept for 30 s). A
-- response whose request this parser never saw (it started later, or another parser stored the
-- request) gets a row of its own with the request's fields empty.

CREATE SEQUENCE events_id_seq;

CREATE TABLE dns_events (
    id            bigint NOT NULL DEFAULT nextval('events_id_seq'),
    session       text NOT NULL,
    ts            timestamptz NOT NULL,
    transport     text NOT NULL,
    client        inet NOT NULL,
    client_port   integer NOT NULL,
    server        inet NOT NULL,
    server_port   integer NOT NULL,
    transaction   integer NOT NULL,
    query         text,
    query_type    text,
    -- NULL until the response is seen.
    rcode         text,
    answers       text[],
    rtt_ms        double precision
) PARTITION BY RANGE (ts);

CREATE TABLE http_events (
    id            bigint NOT NULL DEFAULT nextval('events_id_seq'),
    session       text NOT NULL,
    ts            timestamptz NOT NULL,
    -- SSDP and other HTTP over UDP is recognised too.
    transport     text NOT NULL,
    client        inet NOT NULL,
    client_port   integer NOT NULL,
    server        inet NOT NULL,
    server_port   integer NOT NULL,
    method        text,
    host          text,
    path          text,
    user_agent    text,
    -- NULL until the response is seen.
    status        integer,
    latency_ms    double precision
) PARTITION BY RANGE (ts);

CREATE TABLE tls_events (
    id            bigint NOT NULL DEFAULT nextval('events_id_seq'),
    session       text NOT NULL,
    ts            timestamptz NOT NULL,
    client        inet NOT NULL,
    client_port   integer NOT NULL,
    server        inet NOT NULL,
    server_port   integer NOT NULL,
    sni           text,
    alpn          text[] NOT NULL,
    version       text,
    ja4           text
) PARTITION BY RANGE (ts);

-- Pages newest first per session, and time ranges.
CREATE INDEX dns_events_session_id ON dns_events (session, id);
CREATE INDEX dns_events_ts_brin ON dns_events USING brin (ts);
CREATE INDEX http_events_session_id ON http_events (session, id);
CREATE INDEX http_events_ts_brin ON http_events USING brin (ts);
CREATE INDEX tls_events_session_id ON tls_events (session, id);
CREATE INDEX tls_events_ts_brin ON tls_events USING brin (ts);

-- Retention drops the events' day partitions with the packets'.
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
        WHERE p.relname IN ('packets', 'segments', 'dns_events', 'http_events', 'tls_events')
          AND c.relname ~ '_[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (now() - longest)::date
    LOOP
        EXECUTE format('DROP TABLE %I', partition.name);
        RETURN NEXT partition.name;
    END LOOP;
END;
$$;
