-- /stats reads one dimension over a range of minutes (issue #18). With the minute before the
-- dimension in the key, each of its six statements walked every dimension's rows of the hour to
-- keep one dimension's; keyed by dimension first, and with the counts in the index, each reads
-- only its dimension's entries and never the table (an index-only scan once autovacuum has marked
-- the pages all-visible). Measured on bench/api.sh's busy hour: the six statements took 110 ms one
-- after another, 64 ms with this key. The price: an upsert that adds to a row can no longer be a
-- heap-only update and writes a new index entry (~1 500 per transaction on the parser benchmark).
ALTER TABLE traffic_minutes DROP CONSTRAINT traffic_minutes_pkey;
ALTER TABLE traffic_minutes ADD PRIMARY KEY (session, dimension, minute, key) INCLUDE (packets, bytes);
