-- CaptureSessions as the operator last saw them, so that the API and the UI read only PostgreSQL
-- (and work the same without a cluster). Packet counts are not copied here: they are computed
-- from `sniffer_counters` and `batches`, which the parsers write with the data itself.
CREATE TABLE sessions (
    namespace   text NOT NULL,
    name        text NOT NULL,
    uid         text NOT NULL,
    phase       text,
    ready       boolean NOT NULL DEFAULT false,
    -- The Ready condition's message: what the session is waiting for, or what went wrong.
    message     text,
    spec        jsonb NOT NULL,
    status      jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when the CaptureSession is deleted; its data stays until its retention passes.
    deleted_at  timestamptz,
    PRIMARY KEY (namespace, name)
);
