-- Packets that came through a tunnel (issue #32: VXLAN, Geneve, GRE, IP in IP) are indexed by what
-- they carried, as a pod saw it; the outermost tunnel's kind, id (VNI or GRE key) and outer
-- addresses are kept beside it. `protocol vxlan` and `host <node address>` find them.
ALTER TABLE packets
    ADD COLUMN tunnel text COLLATE "C",
    ADD COLUMN tunnel_id bigint,
    ADD COLUMN outer_src inet,
    ADD COLUMN outer_dst inet;
