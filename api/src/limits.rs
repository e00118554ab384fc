//! How many long requests (pcap exports, live streams) run at once, in total and per caller.
//!
//! Each holds a pooled database connection for a while (an export for its whole statement, a
//! stream for each poll), so without a bound 16 unread exports take the whole pool and every other
//! route answers 503. A request past a bound is refused at once with 429, naming the bound, rather
//! than queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ApiError;

/// One kind of long request and its bounds.
#[derive(Debug)]
pub struct Gate {
    what: &'static str,
    total: usize,
    per_caller: usize,
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    total: usize,
    by_caller: HashMap<Arc<str>, usize>,
}

/// A place taken in a [`Gate`]; given back when dropped (the request ended, however).
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Gate>,
    caller: Arc<str>,
}

impl Gate {
    pub fn new(what: &'static str, total: usize, per_caller: usize) -> Arc<Self> {
        Arc::new(Self {
            what,
            total,
            per_caller,
            running: Mutex::new(Running::default()),
        })
    }

    /// A place for `caller`, or a 429 saying which bound is reached.
    pub fn enter(self: &Arc<Self>, caller: &Arc<str>) -> Result<Pass, ApiError> {
        let mut running = self.running.lock().expect("not poisoned");
        let mine = running.by_caller.get(caller).copied().unwrap_or(0);
        if mine >= self.per_caller {
            return Err(ApiError::TooMany(format!(
                "{caller} already has {mine} {} running (at most {} per caller); finish or close one",
                self.what, self.per_caller
            )));
        }
        if running.total >= self.total {
            return Err(ApiError::TooMany(format!(
                "{} {} are running (at most {} at once); try again shortly",
                running.total, self.what, self.total
            )));
        }
        running.total += 1;
        *running.by_caller.entry(caller.clone()).or_default() += 1;
        Ok(Pass {
            gate: self.clone(),
            caller: caller.clone(),
        })
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut running = self.gate.running.lock().expect("not poisoned");
        running.total -= 1;
        if let Some(mine) = running.by_caller.get_mut(&self.caller) {
            *mine -= 1;
            if *mine == 0 {
                running.by_caller.remove(&self.caller);
            }
        }
    }
}

/// The gates of the API's long requests.
#[derive(Debug, Clone)]
pub struct Limits {
    pub exports: Arc<Gate>,
    pub streams: Arc<Gate>,
    /// `/stats` runs six statements at once: one request at a time, the others wait their turn.
    pub stats: Arc<tokio::sync::Semaphore>,
}

impl Default for Limits {
    /// Exports hold a connection each for as long as they run: four of the pool's sixteen at most.
    /// Streams hold one only while polling (every 500 ms), so many more may run.
    fn default() -> Self {
        Self {
            exports: Gate::new("pcap exports", 4, 2),
            streams: Gate::new("live streams", 64, 8),
            stats: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_caller_and_in_total_and_given_back() {
        let gate = Gate::new("exports", 3, 2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let first = gate.enter(&a).unwrap();
        let _second = gate.enter(&a).unwrap();
        let refused = gate.enter(&a).unwrap_err().to_string();
        assert!(refused.contains("at most 2 per caller"), "{refused}");
        let _third = gate.enter(&b).unwrap();
        let refused = gate.enter(&b).unwrap_err().to_string();
        assert!(refused.contains("at most 3 at once"), "{refused}");
        drop(first);
        gate.enter(&b).expect("a place given back is free again");
    }
}
