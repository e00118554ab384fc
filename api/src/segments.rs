//! Packets' bytes, read back from the segments the parsers store (one per batch, in the wire
//! format's record layout). A packet id names its segment and its position in it.

use std::ops::Range;

use sqlx::PgPool;

/// Bits of a packet id that give its position in its segment (as the parser writes them).
const POSITION_BITS: u32 = 20;

/// The segment and position a packet id points at.
pub fn locate(packet_id: i64) -> (i64, usize) {
    (
        packet_id >> POSITION_BITS,
        (packet_id & ((1 << POSITION_BITS) - 1)) as usize,
    )
}

type Time = chrono::DateTime<chrono::Utc>;

/// One stored segment, decoded far enough to hand out any packet's bytes.
pub struct Segment {
    pub session: String,
    pub first_ts: Time,
    pub last_ts: Time,
    records: Vec<u8>,
    frames: Vec<Range<usize>>,
}

impl Segment {
    pub async fn fetch(pool: &PgPool, id: i64) -> Result<Option<Self>, sqlx::Error> {
        Ok(Self::fetch_many(pool, &[id]).await?.pop().map(|(_, segment)| segment))
    }

    /// The segments of `ids` that are stored, in one query.
    pub async fn fetch_many(pool: &PgPool, ids: &[i64]) -> Result<Vec<(i64, Self)>, sqlx::Error> {
        let rows: Vec<(i64, String, Time, Time, Vec<u8>)> =
            sqlx::query_as("SELECT id, session, first_ts, last_ts, records FROM segments WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, session, first_ts, last_ts, records)| (id, Self::decode(session, first_ts, last_ts, records)))
            .collect())
    }

    fn decode(session: String, first_ts: Time, last_ts: Time, records: Vec<u8>) -> Self {
        let frames = frames(&records);
        Self {
            session,
            first_ts,
            last_ts,
            records,
            frames,
        }
    }

    /// The kept bytes of the packet at `position`.
    pub fn frame(&self, position: usize) -> Option<&[u8]> {
        self.frames.get(position).map(|range| &self.records[range.clone()])
    }
}

/// Where each packet's kept bytes are in a segment's records, by position. Records that do not
/// decode end the list: their packets read as not kept.
pub fn frames(records: &[u8]) -> Vec<Range<usize>> {
    let start = records.as_ptr() as usize;
    wire::segment::records(records)
        .map_while(Result::ok)
        .map(|record| {
            let at = record.data.as_ptr() as usize - start;
            at..at + record.data.len()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_segment_and_position() {
        assert_eq!(locate((7 << 20) | 5), (7, 5));
        assert_eq!(locate(1 << 20), (1, 0));
        assert_eq!(locate((3 << 20) | ((1 << 20) - 1)), (3, (1 << 20) - 1));
    }
}
