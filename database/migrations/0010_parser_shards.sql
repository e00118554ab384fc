-- Which parser consumes which shard of a session's queues (issue #19). A flow's packets go to
-- one shard (the sniffers hash them there), and a shard is consumed by one parser at a time so
-- that the parser sees every segment of the flow's TCP streams. The parsers of a session agree
-- here: each registers as a member, takes the shards `shard % members = its rank` gives it, and
-- holds each by a lease it renews every second; a lease not renewed for 10 s is free to take.
-- Keyed by the session's queue name, which carries the session's uid.
CREATE TABLE parser_members (
    queue    text COLLATE "C" NOT NULL,
    holder   text COLLATE "C" NOT NULL,
    seen_at  timestamptz NOT NULL,
    PRIMARY KEY (queue, holder)
);

CREATE TABLE parser_shards (
    queue       text COLLATE "C" NOT NULL,
    shard       integer NOT NULL,
    holder      text COLLATE "C" NOT NULL,
    renewed_at  timestamptz NOT NULL,
    PRIMARY KEY (queue, shard)
);
