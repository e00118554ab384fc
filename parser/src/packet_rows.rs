//! A batch's packets as stored: the narrow index rows (binary COPY into `packets`) and the segment
//! that keeps their bytes. Rows are encoded once the batch's segment id is known (and the batch
//! known not to be a redelivery), since a packet's id is `segment << POSITION_BITS | position`.

use dissect::Dissection;
use wire::segment::SegmentBuilder;

use crate::copy::CopyWriter;
use crate::events::{Events, Pending};
use crate::flows::FlowTable;
use crate::rollups::Rollups;
use crate::streams::{Streams, Taken};

/// Bits of a packet id that give its position in its segment.
pub const POSITION_BITS: u32 = 20;

pub const COPY: &str = "COPY packets (id, session, ts, seq, node, interface, original_len, captured_len, src, dst, \
    src_port, dst_port, ip_protocol, transport, l7, l7_guessed, l7_name, tcp_flags, vlan, fragment, malformed, \
    payload_kept, tunnel, tunnel_id, outer_src, outer_dst) FROM STDIN (FORMAT binary)";
pub const FIELDS: i16 = 26;

/// The packets of one batch, dissected, waiting for their segment id.
pub struct PacketRows<'b, 'a> {
    batch: &'b wire::Batch<'a>,
    store_payload: bool,
    packets: Vec<(wire::PacketRecord<'a>, Dissection)>,
    segment: SegmentBuilder,
}

/// What the segment row holds besides its id.
pub struct Kept {
    pub records: Vec<u8>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub payload_kept: bool,
}

impl<'b, 'a> PacketRows<'b, 'a> {
    pub fn new(batch: &'b wire::Batch<'a>, store_payload: bool) -> Self {
        let frames: usize = batch.packets().map(|p| p.data.len()).sum();
        Self {
            batch,
            store_payload,
            packets: Vec::with_capacity(batch.packet_count as usize),
            segment: SegmentBuilder::with_capacity(frames + batch.packet_count as usize * wire::PACKET_HEADER_LEN),
        }
    }

    pub fn push(&mut self, packet: &wire::PacketRecord<'a>, dissection: Dissection) {
        let keep = if self.store_payload {
            packet.data.len()
        } else {
            dissection.headers_len
        };
        self.segment.push(packet, keep);
        self.packets.push((*packet, dissection));
    }

    /// The batch's packets with their dissections, in capture order.
    pub fn packets(&self) -> impl Iterator<Item = (&wire::PacketRecord<'a>, &Dissection)> {
        self.packets.iter().map(|(packet, d)| (packet, d))
    }

    /// The capture time of the batch's first packet.
    pub fn first_ns(&self) -> Option<u64> {
        self.packets.first().map(|(packet, _)| packet.ts_ns)
    }

    /// Adds this batch's packets to `flows` and the per-minute `rollups`.
    pub fn add_flows(&self, flows: &mut FlowTable, rollups: &mut Rollups) {
        for (packet, d) in &self.packets {
            flows.add(d, packet.ts_ns, packet.original_len);
            rollups.add(d, packet.ts_ns, packet.original_len);
        }
    }

    /// Adds this batch's L7 events to `events`: a packet's own, or, for the payload of a followed
    /// TCP stream, the messages it completed (which also name the packet's flow).
    pub fn add_events(&self, events: &mut Events, pending: &Pending, streams: &mut Streams, flows: &mut FlowTable) {
        let mut ended = Vec::new();
        for (packet, d) in &self.packets {
            match streams.add(d, packet.data, packet.original_len, packet.ts_ns, &mut ended) {
                Taken::No => events.add(d, packet.ts_ns, pending),
                Taken::Yes(sent, messages) => {
                    for message in messages {
                        events.add_message(sent, &message.l7, message.ts_ns, pending);
                        flows.name(d, &message.l7);
                    }
                }
            }
            for (sent, message) in ended.drain(..) {
                events.add_message(sent, &message.l7, message.ts_ns, pending);
            }
        }
    }

    /// Appends the rows of segment `segment` to `copy`; returns the segment's bytes.
    pub fn write(&mut self, copy: &mut CopyWriter, segment: i64) -> Kept {
        let (mut first_ns, mut last_ns) = (u64::MAX, 0);
        for (position, (packet, d)) in self.packets.iter().enumerate() {
            first_ns = first_ns.min(packet.ts_ns);
            last_ns = last_ns.max(packet.ts_ns);
            let interface = self
                .batch
                .interfaces
                .get(usize::from(packet.interface))
                .copied()
                .unwrap_or("");
            copy.row();
            copy.int8(segment << POSITION_BITS | position as i64);
            copy.text(self.batch.session);
            copy.timestamptz_from_unix_nanos(packet.ts_ns);
            copy.int8(packet.seq as i64);
            copy.text(self.batch.node);
            copy.text(interface);
            copy.int4(Some(packet.original_len as i32));
            copy.int4(Some(packet.data.len() as i32));
            copy.inet(d.src);
            copy.inet(d.dst);
            copy.int4(d.src_port.map(i32::from));
            copy.int4(d.dst_port.map(i32::from));
            copy.int2(d.ip_protocol.map(i16::from));
            copy.opt_text(d.transport.as_deref());
            copy.opt_text(d.l7.as_ref().map(|l7| l7.name()));
            copy.bool(d.l7.as_ref().is_some_and(|l7| l7.is_guess()));
            copy.opt_text(d.l7.as_ref().and_then(|l7| l7.main_name()));
            copy.int2(d.tcp_flags.map(i16::from));
            copy.int4(d.vlan.map(i32::from));
            copy.bool(d.fragment);
            copy.opt_text(d.malformed.map(|m| m.as_str()));
            copy.bool(self.store_payload);
            copy.opt_text(d.tunnel.map(|t| t.kind));
            match d.tunnel.and_then(|t| t.id) {
                Some(id) => copy.int8(i64::from(id)),
                None => copy.null(),
            }
            copy.inet(d.tunnel.map(|t| t.outer_src));
            copy.inet(d.tunnel.map(|t| t.outer_dst));
        }
        Kept {
            records: std::mem::take(&mut self.segment).finish(),
            first_ns,
            last_ns,
            payload_kept: self.store_payload,
        }
    }
}
