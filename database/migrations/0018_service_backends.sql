-- Which Service a pod's address and port served, over time (issue #30). A session keeps an
-- exchange through a Service at the backend pod's end, where both directions carry the two pods'
-- addresses (the client's end sees the Service's address, translated by the client's node); the
-- API names the Service of such a flow from here. The operator records it from EndpointSlices.
--
-- One row per EndpointSlice, address and port for as long as the slice lists it ready.
CREATE TABLE service_backends (
    address    inet NOT NULL,
    port       integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    namespace  text COLLATE "C" NOT NULL,
    service    text COLLATE "C" NOT NULL,
    -- The EndpointSlice that listed it (a Service has one or more).
    slice      text COLLATE "C" NOT NULL,
    since      timestamptz NOT NULL,
    until      timestamptz,
    CHECK (until IS NULL OR until >= since)
);
-- Lookups are by address, port and time.
CREATE INDEX service_backends_address ON service_backends (address, port, since DESC);
-- At most one open row per slice, address and port.
CREATE UNIQUE INDEX service_backends_open ON service_backends (namespace, slice, address, port) WHERE until IS NULL;
