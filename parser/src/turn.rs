//! The order between groups stored at the same time.
//!
//! A parser stores two groups at once so that one group's bulk writes (its packets' rows and
//! segments) overlap the previous group's ordered writes and commit, using both PostgreSQL's and
//! the parser's core. What must stay in delivery order waits for the previous group:
//! - claiming batch ids: a batch published twice (a sniffer's retry) can sit in both groups, and the
//!   later group must then find the earlier one's row, not make the earlier one wait for it;
//! - everything after the packets: L7 events pair with requests the previous group committed, and
//!   flows and rollups are added to rows the previous group holds locks on until its commit.
//!
//! A waiting group holds its transaction's locks, and PostgreSQL cannot see these waits: when the
//! previous group fails an attempt (its retry may need a lock the waiting group holds, such as
//! creating a day partition), the waiting group rolls back and starts again once the previous one
//! is done.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The group's batch ids are inserted (in its open transaction).
    claimed: bool,
    /// The group is done: `Some(true)` stored (or all redeliveries), `Some(false)` given up.
    finished: Option<bool>,
    /// Attempts that failed (each rolled back) so far.
    failed_attempts: u32,
}

/// One group's place in the order: waits for the group before it, tells the one after it.
pub struct Turn {
    previous: Option<watch::Receiver<Progress>>,
    mine: watch::Sender<Progress>,
    /// The previous group's failed attempts when this group's current attempt began.
    previous_failures: AtomicU32,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The previous group gave up (the parser is stopping): this one must not commit after it.
    #[error("the previous group of batches was not stored")]
    PreviousNotStored,
    /// The previous group rolled back an attempt: this one rolls back too and waits for it.
    #[error("the previous group of batches is being retried")]
    PreviousRetrying,
}

impl Turn {
    /// A turn with nothing before it (tests and the first group after connecting).
    pub fn first() -> Self {
        Self {
            previous: None,
            mine: watch::channel(Progress::default()).0,
            previous_failures: AtomicU32::new(0),
        }
    }

    /// The turn after this one.
    pub fn next(&self) -> Self {
        Self {
            previous: Some(self.mine.subscribe()),
            mine: watch::channel(Progress::default()).0,
            previous_failures: AtomicU32::new(0),
        }
    }

    async fn previous(&self, reached: impl Fn(&Progress) -> bool) -> Progress {
        let Some(previous) = &self.previous else {
            return Progress {
                claimed: true,
                finished: Some(true),
                failed_attempts: 0,
            };
        };
        let mut previous = previous.clone();
        match previous.wait_for(|p| reached(p)).await {
            Ok(progress) => *progress,
            // Dropped without finishing: its task ended abnormally, treat it as not stored.
            Err(_) => Progress {
                claimed: true,
                finished: Some(false),
                failed_attempts: u32::MAX,
            },
        }
    }

    /// Starts an attempt: from now on a failure of the previous group interrupts this one's waits.
    pub fn begin_attempt(&self) {
        let seen = self.previous.as_ref().map_or(0, |p| p.borrow().failed_attempts);
        self.previous_failures.store(seen, Ordering::Relaxed);
    }

    fn interrupted(&self, p: &Progress) -> bool {
        p.failed_attempts > self.previous_failures.load(Ordering::Relaxed)
    }

    /// Waits until the previous group has claimed its batch ids.
    pub async fn previous_claimed(&self) -> Result<(), WaitError> {
        let progress = self
            .previous(|p| p.claimed || p.finished.is_some() || self.interrupted(p))
            .await;
        outcome(progress, |p| p.claimed || p.finished == Some(true))
    }

    /// Waits until the previous group is done.
    pub async fn previous_finished(&self) -> Result<(), WaitError> {
        let progress = self.previous(|p| p.finished.is_some() || self.interrupted(p)).await;
        outcome(progress, |p| p.finished == Some(true))
    }

    /// Waits, holding no transaction, until the previous group is done (after this group's attempt
    /// was interrupted by it).
    pub async fn previous_done(&self) {
        self.previous(|p| p.finished.is_some()).await;
    }

    /// This group's attempt failed and rolled back: the groups waiting for it let go of their locks.
    pub fn failed_attempt(&self) {
        self.mine.send_modify(|p| {
            p.failed_attempts += 1;
            p.claimed = false;
        });
    }

    pub fn claimed(&self) {
        self.mine.send_modify(|p| p.claimed = true);
    }

    pub fn finish(&self, stored: bool) {
        self.mine.send_modify(|p| p.finished = Some(stored));
    }
}

fn outcome(progress: Progress, ready: impl Fn(&Progress) -> bool) -> Result<(), WaitError> {
    if progress.finished == Some(false) {
        Err(WaitError::PreviousNotStored)
    } else if ready(&progress) {
        Ok(())
    } else {
        Err(WaitError::PreviousRetrying)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // A group that ends without saying so (an error path, a panic) holds up no one.
        self.mine.send_if_modified(|p| {
            let unfinished = p.finished.is_none();
            if unfinished {
                p.finished = Some(false);
            }
            unfinished
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_next_turn_waits_for_the_previous_one() {
        let first = Turn::first();
        let second = first.next();
        let waiting = tokio::spawn(async move { second.previous_finished().await.is_ok() });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        first.claimed();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "claiming is not finishing");
        first.finish(true);
        let stored = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(stored);
        let third = first.next();
        drop(first);
        assert!(
            third.previous_finished().await.is_ok(),
            "finished, then dropped: still stored"
        );
    }

    #[tokio::test]
    async fn a_turn_dropped_unfinished_counts_as_not_stored() {
        let first = Turn::first();
        let second = first.next();
        drop(first);
        assert!(matches!(
            second.previous_finished().await,
            Err(WaitError::PreviousNotStored)
        ));
        assert!(second.previous_claimed().await.is_err());
    }

    #[tokio::test]
    async fn a_failed_attempt_interrupts_the_waiting_group() {
        let first = Turn::first();
        let second = first.next();
        second.begin_attempt();
        first.claimed();
        second.previous_claimed().await.unwrap();
        first.failed_attempt();
        assert!(matches!(
            second.previous_finished().await,
            Err(WaitError::PreviousRetrying)
        ));
        // The next attempt waits for the previous group's outcome again.
        second.begin_attempt();
        first.claimed();
        first.finish(true);
        second.previous_finished().await.unwrap();
    }
}
