-- ClientHellos read from QUIC Initial packets (issue #32) are TLS events with transport `quic`.
ALTER TABLE tls_events ADD COLUMN transport text COLLATE "C" NOT NULL DEFAULT 'tcp';
