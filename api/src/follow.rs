//! Following a session's new packets by id, for the live routes (the SSE stream, the live pcap).
//!
//! Packet ids come from a sequence, but parsers commit concurrently: a row with a lower id can
//! become visible just after a higher one. A follower therefore looks back over the ids it
//! delivered in the last few seconds and delivers late arrivals it has not delivered yet.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use sqlx::{Postgres, QueryBuilder};

/// How long a committed packet may stay invisible behind a higher id that is visible.
pub const LOOK_BACK: Duration = Duration::from_secs(3);

/// Which ids were delivered: everything up to `floor`, and the ids in `recent` above it.
pub struct Follower {
    floor: i64,
    recent: BTreeSet<i64>,
    /// (when, highest id delivered by then): the floor moves up to ids delivered `LOOK_BACK` ago.
    marks: VecDeque<(Instant, i64)>,
}

impl Follower {
    /// Follows packets with ids above `floor`.
    pub fn new(floor: i64) -> Self {
        Self {
            floor,
            recent: BTreeSet::new(),
            marks: VecDeque::new(),
        }
    }

    /// Appends ` AND ` the condition that selects packets not delivered yet.
    pub fn push_undelivered(&self, query: &mut QueryBuilder<Postgres>) {
        query.push(" AND id > ").push_bind(self.floor);
        if !self.recent.is_empty() {
            // As runs of consecutive ids (a batch's packets are one run): a list of every id
            // delivered in the look-back, tens of thousands at 10 000 packets/s, made PostgreSQL
            // compare each candidate row with each of them, and the live export fell behind.
            let (first, last) = self.delivered_runs();
            query
                .push(" AND NOT EXISTS (SELECT FROM unnest(")
                .push_bind(first)
                .push("::bigint[], ")
                .push_bind(last)
                .push("::bigint[]) AS delivered(first, last) WHERE id BETWEEN delivered.first AND delivered.last)");
        }
    }

    /// The ids delivered above the floor as runs of consecutive ids: first and last of each.
    fn delivered_runs(&self) -> (Vec<i64>, Vec<i64>) {
        let (mut first, mut last): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
        for &id in &self.recent {
            match last.last_mut() {
                Some(end) if *end + 1 == id => *end = id,
                _ => {
                    first.push(id);
                    last.push(id);
                }
            }
        }
        (first, last)
    }

    /// Records `ids` as delivered now, and forgets ids delivered long enough ago.
    pub fn delivered(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.recent.extend(ids);
        let now = Instant::now();
        if let Some(&highest) = self.recent.last() {
            self.marks.push_back((now, highest));
        }
        while let Some(&(at, highest)) = self.marks.front() {
            if now.duration_since(at) < LOOK_BACK {
                break;
            }
            self.marks.pop_front();
            self.floor = self.floor.max(highest);
            self.recent = self.recent.split_off(&(self.floor + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_ids_are_runs() {
        let mut follower = Follower::new(0);
        follower.delivered([3, 4, 5, 9, 1 << 20, (1 << 20) + 1, 7]);
        assert_eq!(
            follower.delivered_runs(),
            (vec![3, 7, 9, 1 << 20], vec![5, 7, 9, (1 << 20) + 1])
        );
    }
}
