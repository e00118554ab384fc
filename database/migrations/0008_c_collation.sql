-- Key text columns compare bytewise (issue #18): session names, batch ids, flow keys and rollup
-- keys are identifiers, not words, so a locale's collation (strcoll on every btree comparison at
-- ingest) buys nothing and costs ingest time. Equality and the ASCII order the API shows are
-- unchanged.
ALTER TABLE batches ALTER COLUMN batch_id TYPE text COLLATE "C", ALTER COLUMN session TYPE text COLLATE "C";
ALTER TABLE packets ALTER COLUMN session TYPE text COLLATE "C";
ALTER TABLE segments ALTER COLUMN session TYPE text COLLATE "C";
ALTER TABLE dns_events ALTER COLUMN session TYPE text COLLATE "C";
ALTER TABLE http_events ALTER COLUMN session TYPE text COLLATE "C";
ALTER TABLE tls_events ALTER COLUMN session TYPE text COLLATE "C";
ALTER TABLE flows ALTER COLUMN session TYPE text COLLATE "C", ALTER COLUMN flow_key TYPE text COLLATE "C";
ALTER TABLE traffic_minutes ALTER COLUMN session TYPE text COLLATE "C", ALTER COLUMN dimension TYPE text COLLATE "C",
    ALTER COLUMN key TYPE text COLLATE "C";
