-- Batches a parser could not store for a reason retrying cannot fix (issue #29): text PostgreSQL
-- refuses, a batch that failed or ran past its time budget on every attempt. Each is set aside
-- (dead-lettered on the broker, where its bytes stay for inspection) and its packets count as
-- dropped with the reason, so that captured = stored + dropped still holds and the rest of the
-- session is stored. Its `batches` row (with no packets) makes a redelivery a no-op.
CREATE TABLE set_aside_batches (
    batch_id      text COLLATE "C" PRIMARY KEY,
    session       text COLLATE "C" NOT NULL,
    boot_id       text COLLATE "C" NOT NULL,
    packets       integer NOT NULL,
    reason        text NOT NULL,
    error         text NOT NULL,
    set_aside_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX set_aside_batches_session ON set_aside_batches (session);

-- When a session's storage last moved (issue #29 item 2): the newest batch stored, read by the
-- operator to tell a pipeline that drains slowly from one that stopped.
CREATE INDEX batches_session_stored_at ON batches (session, stored_at);
