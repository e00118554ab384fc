//! Per-batch aggregation of packets into bidirectional 5-tuple flows; the store adds each batch's
//! sums to the flow rows, so a flow spanning many batches (and parsers) adds up.

use foldhash::HashMap;
use std::net::IpAddr;

use dissect::Dissection;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ip_protocol: Option<u8>,
    pub a: (Option<IpAddr>, Option<u16>),
    pub b: (Option<IpAddr>, Option<u16>),
}

impl FlowKey {
    /// The key as stored: `proto|a_addr|a_port|b_addr|b_port`.
    pub fn text(&self) -> String {
        let part = |(addr, port): &(Option<IpAddr>, Option<u16>)| {
            format!(
                "{}|{}",
                addr.map(|a| a.to_string()).unwrap_or_default(),
                port.map(|p| p.to_string()).unwrap_or_default()
            )
        };
        format!(
            "{}|{}|{}",
            self.ip_protocol.map(|p| p.to_string()).unwrap_or_default(),
            part(&self.a),
            part(&self.b)
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowDelta {
    pub transport: Option<String>,
    /// `a` or `b`: which endpoint sent the first packet of this batch.
    pub initiator: char,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets_ab: i64,
    pub bytes_ab: i64,
    pub packets_ba: i64,
    pub bytes_ba: i64,
    pub tcp_flags: u8,
    pub l7: Option<String>,
    pub l7_name: Option<String>,
}

#[derive(Default)]
pub struct FlowTable {
    pub flows: HashMap<FlowKey, FlowDelta>,
}

impl FlowTable {
    /// The packet's flow and whether it goes from `a` to `b`; none for packets without an IP layer
    /// (ARP, malformed).
    fn key(dissection: &Dissection) -> Option<(FlowKey, bool)> {
        let (Some(src), Some(dst)) = (dissection.src, dissection.dst) else {
            return None;
        };
        if dissection.transport.as_deref() == Some("arp") {
            return None;
        }
        let from = (Some(src), dissection.src_port);
        let to = (Some(dst), dissection.dst_port);
        let forward = from <= to;
        let (a, b) = if forward { (from, to) } else { (to, from) };
        Some((
            FlowKey {
                ip_protocol: dissection.ip_protocol,
                a,
                b,
            },
            forward,
        ))
    }

    /// Adds one packet; packets without an IP layer (ARP, malformed) belong to no flow.
    pub fn add(&mut self, dissection: &Dissection, ts_ns: u64, original_len: u32) {
        let Some((key, forward)) = Self::key(dissection) else {
            return;
        };
        let flow = self.flows.entry(key).or_insert_with(|| FlowDelta {
            transport: dissection.transport.clone(),
            initiator: if forward { 'a' } else { 'b' },
            first_ns: ts_ns,
            last_ns: ts_ns,
            ..FlowDelta::default()
        });
        flow.first_ns = flow.first_ns.min(ts_ns);
        flow.last_ns = flow.last_ns.max(ts_ns);
        if forward {
            flow.packets_ab += 1;
            flow.bytes_ab += i64::from(original_len);
        } else {
            flow.packets_ba += 1;
            flow.bytes_ba += i64::from(original_len);
        }
        flow.tcp_flags |= dissection.tcp_flags.unwrap_or(0);
        if let Some(l7) = &dissection.l7 {
            flow.name(l7);
        }
    }

    /// Names the packet's flow (already added) by a message reassembled from its TCP stream.
    pub fn name(&mut self, dissection: &Dissection, l7: &dissect::L7) {
        if let Some((key, _)) = Self::key(dissection)
            && let Some(flow) = self.flows.get_mut(&key)
        {
            flow.name(l7);
        }
    }
}

impl FlowDelta {
    fn name(&mut self, l7: &dissect::L7) {
        // A dissected protocol beats a port guess; the first main name seen is kept.
        if self.l7.is_none() || !l7.is_guess() {
            self.l7 = Some(l7.name().to_owned());
        }
        if self.l7_name.is_none() {
            self.l7_name = l7.main_name().map(str::to_owned);
        }
    }
}
