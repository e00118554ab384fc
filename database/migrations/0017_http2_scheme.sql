-- HTTP/2's :scheme (issue #32 item 2): `http` for h2c and gRPC in cleartext, `https` when a
-- proxy forwards what a client asked over TLS. HTTP/1.x requests leave it empty.
ALTER TABLE http_events ADD COLUMN scheme text COLLATE "C";
