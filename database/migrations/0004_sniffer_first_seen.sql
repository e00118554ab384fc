-- When each sniffer process (boot id) was first heard of. A CaptureSession deleted and created
-- again under the same name reuses the session key; only sniffers first seen after the new
-- session's creation count for it (the earlier capture's rows stay until their retention passes).
ALTER TABLE sniffer_counters ADD COLUMN first_seen timestamptz NOT NULL DEFAULT now();
