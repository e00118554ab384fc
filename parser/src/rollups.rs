//! Per-minute packets and bytes by dimension (`traffic_minutes`), summed over a transaction's
//! packets and added to the stored rows, so `/stats` over long ranges reads minutes, not packets.
//! The keys are the ones the API's raw statistics group by, so both ways give the same numbers.

use std::net::IpAddr;

use foldhash::HashMap;

use dissect::Dissection;

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// Minute (Unix microseconds), dimension, key.
type Cell = (i64, &'static str, String);
/// Packets, bytes.
type Counts = (i64, i64);

#[derive(Default)]
pub struct Rollups {
    /// (minute as Unix microseconds, dimension, key) -> (packets, bytes)
    cells: HashMap<Cell, Counts>,
    /// The `talker` dimension by address, made text once per transaction rather than per packet.
    talkers: HashMap<(i64, IpAddr), (i64, i64)>,
}

impl Rollups {
    pub fn add(&mut self, d: &Dissection, ts_ns: u64, original_len: u32) {
        let minute = ((ts_ns / NANOS_PER_MINUTE) * (NANOS_PER_MINUTE / 1_000)) as i64;
        let mut count = |dimension: &'static str, key: String| {
            let cell = self.cells.entry((minute, dimension, key)).or_default();
            cell.0 += 1;
            cell.1 += i64::from(original_len);
        };
        count("total", String::new());
        let protocol = match (&d.l7, &d.transport) {
            (Some(l7), _) => l7.name().to_owned(),
            (None, Some(transport)) => transport.clone(),
            (None, None) => "other".to_owned(),
        };
        count("protocol", protocol);
        if let Some(src) = d.src {
            let cell = self.talkers.entry((minute, src)).or_default();
            cell.0 += 1;
            cell.1 += i64::from(original_len);
        }
        if let Some(l7) = &d.l7
            && let Some(name) = l7.main_name()
        {
            let dimension = match l7.name() {
                "dns" => "dns",
                "http" => "http",
                "tls" => "tls",
                _ => return,
            };
            count(dimension, name.to_owned());
        }
    }

    pub async fn upsert(&self, tx: &mut sqlx::PgConnection, session: &str) -> Result<(), sqlx::Error> {
        if self.cells.is_empty() && self.talkers.is_empty() {
            return Ok(());
        }
        let talkers: Vec<_> = self
            .talkers
            .iter()
            .map(|((minute, src), counts)| ((*minute, "talker", src.to_string()), counts))
            .collect();
        // In key order, so that parsers of one session lock shared rows in the same order.
        let mut cells: Vec<(&Cell, &Counts)> = self.cells.iter().collect();
        cells.extend(talkers.iter().map(|(key, counts)| (key, *counts)));
        cells.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sqlx::query(
            "INSERT INTO traffic_minutes (session, minute, dimension, key, packets, bytes) \
             SELECT $1, 'epoch'::timestamptz + interval '1 microsecond' * m, d, k, p, b \
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS u(m, d, k, p, b) \
             ON CONFLICT (session, minute, dimension, key) DO UPDATE \
             SET packets = traffic_minutes.packets + EXCLUDED.packets, bytes = traffic_minutes.bytes + EXCLUDED.bytes",
        )
        .bind(session)
        .bind(cells.iter().map(|((minute, _, _), _)| *minute).collect::<Vec<_>>())
        .bind(
            cells
                .iter()
                .map(|((_, dimension, _), _)| *dimension)
                .collect::<Vec<_>>(),
        )
        .bind(cells.iter().map(|((_, _, key), _)| key.as_str()).collect::<Vec<_>>())
        .bind(cells.iter().map(|(_, (packets, _))| *packets).collect::<Vec<_>>())
        .bind(cells.iter().map(|(_, (_, bytes))| *bytes).collect::<Vec<_>>())
        .execute(tx)
        .await?;
        Ok(())
    }
}
