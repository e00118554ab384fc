-- What each cluster address was, over time (issue #20): the operator records it from the
-- cluster's Pods, Services and Nodes, the API reads it to name both ends of packets and flows by
-- what the address was at that packet's time (an address reused by another pod is attributed by
-- time, not by today's owner).
--
-- One row per address and identity for as long as it held: `until` is NULL while it still does.
CREATE TABLE endpoint_history (
    address        inet NOT NULL,
    -- `pod`, `service` (a ClusterIP) or `node` (a node's address, which host-network pods share).
    kind           text COLLATE "C" NOT NULL,
    namespace      text COLLATE "C",
    -- The pod's, Service's or node's name.
    name           text COLLATE "C" NOT NULL,
    -- The pod's owning workload through its ReplicaSet or Job: Deployment, StatefulSet,
    -- DaemonSet, Job, CronJob (or the bare owner's kind when it has none above it).
    workload_kind  text COLLATE "C",
    workload       text COLLATE "C",
    node           text COLLATE "C",
    since          timestamptz NOT NULL,
    until          timestamptz,
    CHECK (until IS NULL OR until >= since)
);
-- Lookups are by address and time: the newest row that began before the time.
CREATE INDEX endpoint_history_address ON endpoint_history (address, since DESC);
-- Filters by name look up a workload's (or pod's, or Service's) addresses.
CREATE INDEX endpoint_history_workload ON endpoint_history (workload, namespace);
CREATE INDEX endpoint_history_name ON endpoint_history (name, namespace);
-- At most one open row per address and object. A pod's or Service's address has one holder at a
-- time (the recorder ends the previous one's row); nodes may share one (kwok's fake nodes do).
CREATE UNIQUE INDEX endpoint_history_open ON endpoint_history (address, kind, namespace, name) WHERE until IS NULL;

-- Who held `address` at `at`: the one lookup every reader shares (a pod before a node, for the
-- rare address that is both).
CREATE FUNCTION trawl_endpoint_at(address inet, at timestamptz) RETURNS SETOF endpoint_history
LANGUAGE sql STABLE AS $$
    SELECT * FROM endpoint_history e
    WHERE e.address = $1 AND e.since <= $2 AND (e.until IS NULL OR e.until > $2)
    ORDER BY e.kind = 'node', e.since DESC
    LIMIT 1
$$;
