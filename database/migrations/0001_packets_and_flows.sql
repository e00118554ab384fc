-- Trawl's storage: one row per packet (partitioned by day), flows per session, and the
-- bookkeeping that makes every batch count exactly once.

-- Every stored batch, written in the same transaction as its rows: a redelivered batch finds its
-- id here and is acknowledged without being written twice.
CREATE TABLE batches (
    batch_id   text PRIMARY KEY,
    session    text NOT NULL,
    node       text NOT NULL,
    boot_id    text NOT NULL,
    batch_seq  bigint NOT NULL,
    packets    integer NOT NULL,
    final      boolean NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batches_session ON batches (session);

-- The newest cumulative counters of each sniffer process (boot id), as its batches carried them.
-- A lost batch's drops show up here through the next batch's counters.
CREATE TABLE sniffer_counters (
    boot_id       text PRIMARY KEY,
    session       text NOT NULL,
    node          text NOT NULL,
    batch_seq     bigint NOT NULL,
    captured      bigint NOT NULL,
    kernel_drops  bigint NOT NULL,
    drops         jsonb NOT NULL,
    final         boolean NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sniffer_counters_session ON sniffer_counters (session);

CREATE SEQUENCE packets_id_seq;

CREATE TABLE packets (
    id            bigint NOT NULL DEFAULT nextval('packets_id_seq'),
    session       text NOT NULL,
    ts            timestamptz NOT NULL,
    boot_id       text NOT NULL,
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
    layers        jsonb NOT NULL,
    -- The frame up to the end of its transport header, or all of it when the session stores payload.
    data          bytea NOT NULL,
    payload_kept  boolean NOT NULL
) PARTITION BY RANGE (ts);

CREATE INDEX packets_ts_brin ON packets USING brin (ts);
CREATE INDEX packets_session_ts_id ON packets (session, ts, id);
CREATE INDEX packets_session_id ON packets (session, id);
CREATE INDEX packets_src ON packets (src);
CREATE INDEX packets_dst ON packets (dst);
CREATE INDEX packets_src_port ON packets (src_port);
CREATE INDEX packets_dst_port ON packets (dst_port);
CREATE INDEX packets_l7 ON packets (l7);
CREATE INDEX packets_l7_name ON packets (l7_name);

-- Day partitions, created ahead by the parsers (and on demand for late timestamps).
CREATE FUNCTION trawl_ensure_packet_partition(day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := format('packets_%s', to_char(day, 'YYYYMMDD'));
BEGIN
    -- Serialise creators: two parsers may want the same day at once.
    PERFORM pg_advisory_xact_lock(hashtext('trawl_packet_partitions'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF packets FOR VALUES FROM (%L) TO (%L)', name, day, day + 1);
    END IF;
END;
$$;

-- Bidirectional 5-tuple flows. Endpoint a is the lower (address, port) of the two, so that both
-- directions update the same row; `initiator` says which side sent the first packet seen.
CREATE TABLE flows (
    session       text NOT NULL,
    flow_key      text NOT NULL,
    ip_protocol   smallint,
    transport     text,
    a_addr        inet,
    a_port        integer,
    b_addr        inet,
    b_port        integer,
    initiator     char(1) NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    packets_ab    bigint NOT NULL,
    bytes_ab      bigint NOT NULL,
    packets_ba    bigint NOT NULL,
    bytes_ba      bigint NOT NULL,
    tcp_flags     smallint NOT NULL,
    l7            text,
    l7_name       text,
    PRIMARY KEY (session, flow_key)
);
CREATE INDEX flows_session_last_seen ON flows (session, last_seen);
CREATE INDEX flows_session_bytes ON flows (session, (bytes_ab + bytes_ba));
