//! The builtin autoscaler's arithmetic: desired = clamp(ceil(backlog / targetBacklog), min, max),
//! up at once, down only when every recommendation of the stabilization window allows it (as the
//! HorizontalPodAutoscaler's scale-down stabilization does).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn recommend(backlog: u64, target_backlog: i64, min: i32, max: i32) -> i32 {
    let target = target_backlog.max(1) as u64;
    let wanted = backlog.div_ceil(target).min(i32::MAX as u64) as i32;
    wanted.clamp(min, max.max(min))
}

/// Every session's window, by session uid, kept across reconciles (read by observe, written
/// by apply, forgotten when the session goes).
#[derive(Default)]
pub struct Windows(Mutex<HashMap<String, Window>>);

impl Windows {
    pub fn get(&self, uid: &str) -> Window {
        self.0
            .lock()
            .expect("not poisoned")
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    pub fn put(&self, uid: String, window: Window) {
        self.0.lock().expect("not poisoned").insert(uid, window);
    }

    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("not poisoned").remove(uid);
    }
}

/// Recent recommendations of one session.
#[derive(Clone, Debug, Default)]
pub struct Window {
    recommendations: VecDeque<(Instant, i32)>,
    observing_since: Option<Instant>,
}

impl Window {
    /// Records `recommendation` and returns the replica count to apply given `current` replicas.
    pub fn decide(&mut self, now: Instant, recommendation: i32, current: i32, stabilization: Duration) -> i32 {
        self.recommendations.push_back((now, recommendation));
        let since = *self.observing_since.get_or_insert(now);
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > stabilization)
        {
            self.recommendations.pop_front();
        }
        if recommendation >= current {
            return recommendation;
        }
        // Scale down only to the highest recommendation seen within the window, and only once the
        // window has been observed for its whole length (after a restart we know too little).
        if now.duration_since(since) < stabilization {
            return current;
        }
        let highest = self
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommendation);
        highest.min(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommendation_is_the_backlog_over_the_target_clamped() {
        assert_eq!(recommend(0, 100, 1, 10), 1);
        assert_eq!(recommend(1, 100, 1, 10), 1);
        assert_eq!(recommend(101, 100, 1, 10), 2);
        assert_eq!(recommend(450, 100, 1, 10), 5);
        assert_eq!(recommend(1_000_000, 100, 1, 10), 10);
        assert_eq!(recommend(0, 100, 0, 10), 0);
    }

    #[test]
    fn up_at_once_down_only_after_the_window() {
        let window_length = Duration::from_secs(60);
        let start = Instant::now();
        let mut window = Window::default();
        assert_eq!(window.decide(start, 5, 1, window_length), 5, "scale up at once");
        let at = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(
            window.decide(at(10), 1, 5, window_length),
            5,
            "no scale down inside the window"
        );
        assert_eq!(window.decide(at(59), 1, 5, window_length), 5);
        assert_eq!(
            window.decide(at(61), 1, 5, window_length),
            1,
            "every recommendation in the window allows 1"
        );
    }

    #[test]
    fn a_burst_inside_the_window_holds_the_replicas() {
        let window_length = Duration::from_secs(60);
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut window = Window::default();
        window.decide(start, 1, 3, window_length);
        window.decide(at(30), 3, 3, window_length);
        assert_eq!(
            window.decide(at(70), 1, 3, window_length),
            3,
            "the recommendation of 3 at 30 s is still in the window"
        );
        assert_eq!(window.decide(at(95), 1, 3, window_length), 1);
    }
}
