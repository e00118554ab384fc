-- HTTP/2 and gRPC exchanges (issue #32) are rows of http_events beside HTTP/1.x's: one per
-- stream, its request paired with its response, as one per request is for HTTP/1.x. `protocol`
-- says which (`http`, `http2`, `grpc`) and is what the filters' `protocol` looks at. Sizes and
-- message counts are each direction's DATA payload and gRPC messages; `reset` is RST_STREAM's
-- error code; `unresolved_fields` counts header fields that pointed at HPACK table entries the
-- capture did not see (it joined the connection after they were sent).
ALTER TABLE http_events
    ADD COLUMN protocol text COLLATE "C" NOT NULL DEFAULT 'http',
    ADD COLUMN stream_id bigint,
    ADD COLUMN content_type text,
    ADD COLUMN request_bytes bigint,
    ADD COLUMN response_bytes bigint,
    ADD COLUMN request_messages integer,
    ADD COLUMN response_messages integer,
    ADD COLUMN grpc_status integer,
    ADD COLUMN grpc_message text,
    ADD COLUMN reset text,
    ADD COLUMN unresolved_fields integer NOT NULL DEFAULT 0;
