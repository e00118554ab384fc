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
    /// `a` or `b`: which endpoint sent the flow's SYN, or else the earliest packet of this group.
    pub initiator: char,
    /// The initiator is the SYN's sender (a SYN without ACK was among the packets).
    pub initiator_by_syn: bool,
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
        let flags = dissection.tcp_flags.unwrap_or(0);
        let opens = flags & 0x12 == 0x02;
        if opens || (!flow.initiator_by_syn && ts_ns < flow.first_ns) {
            flow.initiator = if forward { 'a' } else { 'b' };
        }
        flow.initiator_by_syn |= opens;
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

impl FlowTable {
    /// Adds this group's sums to the session's flow rows (one statement, in key order).
    pub async fn upsert(&self, tx: &mut sqlx::PgConnection, session: &str) -> Result<(), sqlx::Error> {
        let flows = self;
        if flows.flows.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::new();
        let (mut protocols, mut transports, mut a_addrs, mut a_ports, mut b_addrs, mut b_ports) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut initiators, mut firsts, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
        let (mut packets_ab, mut bytes_ab, mut packets_ba, mut bytes_ba) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut flags, mut l7s, mut names, mut by_syn) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // In key order, so that parsers upserting the same flows at once lock them in the same order
        // (one waits for the other instead of both deadlocking).
        let mut sorted: Vec<(String, &FlowKey, &FlowDelta)> =
            flows.flows.iter().map(|(key, flow)| (key.text(), key, flow)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (text, key, flow) in sorted {
            keys.push(text);
            protocols.push(key.ip_protocol.map(i16::from));
            transports.push(flow.transport.clone());
            a_addrs.push(key.a.0.map(|a| a.to_string()));
            a_ports.push(key.a.1.map(i32::from));
            b_addrs.push(key.b.0.map(|a| a.to_string()));
            b_ports.push(key.b.1.map(i32::from));
            initiators.push(flow.initiator.to_string());
            firsts.push((flow.first_ns / 1_000) as i64);
            lasts.push((flow.last_ns / 1_000) as i64);
            packets_ab.push(flow.packets_ab);
            bytes_ab.push(flow.bytes_ab);
            packets_ba.push(flow.packets_ba);
            bytes_ba.push(flow.bytes_ba);
            flags.push(i16::from(flow.tcp_flags));
            l7s.push(flow.l7.clone());
            names.push(flow.l7_name.clone());
            by_syn.push(flow.initiator_by_syn);
        }
        sqlx::query(
        "INSERT INTO flows (session, flow_key, ip_protocol, transport, a_addr, a_port, b_addr, b_port, initiator, \
           first_seen, last_seen, packets_ab, bytes_ab, packets_ba, bytes_ba, tcp_flags, l7, l7_name, initiator_by_syn) \
         SELECT $1, k, p, t, aa::inet, ap, ba::inet, bp, i, to_timestamp(f / 1e6), to_timestamp(l / 1e6), pab, bab, pba, bba, fl, l7, n, s \
         FROM unnest($2::text[], $3::smallint[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::integer[], \
           $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], \
           $16::smallint[], $17::text[], $18::text[], $19::bool[]) \
           AS u(k, p, t, aa, ap, ba, bp, i, f, l, pab, bab, pba, bba, fl, l7, n, s) \
         ON CONFLICT (session, flow_key) DO UPDATE SET \
           first_seen = least(flows.first_seen, EXCLUDED.first_seen), \
           last_seen = greatest(flows.last_seen, EXCLUDED.last_seen), \
           packets_ab = flows.packets_ab + EXCLUDED.packets_ab, bytes_ab = flows.bytes_ab + EXCLUDED.bytes_ab, \
           packets_ba = flows.packets_ba + EXCLUDED.packets_ba, bytes_ba = flows.bytes_ba + EXCLUDED.bytes_ba, \
           tcp_flags = flows.tcp_flags | EXCLUDED.tcp_flags, \
           initiator = CASE WHEN flows.initiator_by_syn AND NOT EXCLUDED.initiator_by_syn THEN flows.initiator \
             WHEN EXCLUDED.initiator_by_syn AND NOT flows.initiator_by_syn THEN EXCLUDED.initiator \
             WHEN EXCLUDED.first_seen < flows.first_seen THEN EXCLUDED.initiator ELSE flows.initiator END, \
           initiator_by_syn = flows.initiator_by_syn OR EXCLUDED.initiator_by_syn, \
           l7 = CASE WHEN flows.l7 IS NULL THEN EXCLUDED.l7 ELSE flows.l7 END, \
           l7_name = coalesce(flows.l7_name, EXCLUDED.l7_name)",
    )
    .bind(session)
    .bind(keys)
    .bind(protocols)
    .bind(transports)
    .bind(a_addrs)
    .bind(a_ports)
    .bind(b_addrs)
    .bind(b_ports)
    .bind(initiators)
    .bind(firsts)
    .bind(lasts)
    .bind(packets_ab)
    .bind(bytes_ab)
    .bind(packets_ba)
    .bind(bytes_ba)
    .bind(flags)
    .bind(l7s)
    .bind(names)
    .bind(by_syn)
    .execute(tx)
    .await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use testkit::frames;

    use super::*;

    fn segment(to_server: bool, flags: u8) -> Dissection {
        let (client, server) = ((frames::SOURCE, 40001), (frames::DESTINATION, 80));
        let (from, to) = if to_server { (client, server) } else { (server, client) };
        dissect::summarize(&frames::tcp_ports([2; 6], [4; 6], from, to, flags, &[]))
    }

    fn initiator(table: &FlowTable) -> (char, bool) {
        let flow = table.flows.values().next().unwrap();
        (flow.initiator, flow.initiator_by_syn)
    }

    #[test]
    fn the_syn_names_the_initiator_whatever_came_first() {
        // The server's address sorts first, so the client is `b`.
        let mut table = FlowTable::default();
        table.add(&segment(false, 0x12), 10, 60);
        assert_eq!(initiator(&table), ('a', false), "the SYN-ACK alone");
        table.add(&segment(true, 0x02), 20, 60);
        assert_eq!(
            initiator(&table),
            ('b', true),
            "its SYN, stamped later, still names the client"
        );
        table.add(&segment(false, 0x10), 5, 60);
        assert_eq!(
            initiator(&table),
            ('b', true),
            "an earlier stamp does not overrule the SYN"
        );
    }

    #[test]
    fn without_a_syn_the_earliest_packet_names_it() {
        let mut table = FlowTable::default();
        table.add(&segment(true, 0x10), 20, 60);
        table.add(&segment(false, 0x10), 10, 60);
        assert_eq!(initiator(&table), ('a', false), "the earlier packet, added second");
    }
}
