-- Which side opened a TCP flow is what its SYN says, whatever the capture's timestamps: packets
-- captured on different interfaces are stamped by different rings, and a SYN-ACK can be stored
-- (or stamped) before its SYN. A flow whose initiator its SYN named keeps it.
ALTER TABLE flows ADD COLUMN initiator_by_syn boolean NOT NULL DEFAULT false;
