//! Restart policy for supervised children: exponential backoff, and the "give up" rule
//! that makes init stop petting the watchdog.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// A child that stayed up this long counts as healthy: the delay starts over.
    pub healthy_after: Duration,
    /// More than `max_failures` failures within `window` → give up.
    pub max_failures: usize,
    pub window: Duration,
    current: Duration,
    /// Monotonic times (since boot) of recent failures, oldest first.
    failures: heapless::Deque<Duration, 16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    RestartAfter(Duration),
    GiveUp,
}

impl Backoff {
    pub fn new(
        initial: Duration,
        max: Duration,
        healthy_after: Duration,
        max_failures: usize,
        window: Duration,
    ) -> Self {
        Backoff {
            initial,
            max,
            healthy_after,
            max_failures: max_failures.min(15),
            window,
            current: initial,
            failures: heapless::Deque::new(),
        }
    }

    /// The child ended at `now` after running for `ran`.
    pub fn on_exit(&mut self, now: Duration, ran: Duration) -> Verdict {
        if ran >= self.healthy_after {
            self.current = self.initial;
        }
        while self
            .failures
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > self.window)
        {
            self.failures.pop_front();
        }
        if self.failures.is_full() {
            self.failures.pop_front();
        }
        let _ = self.failures.push_back(now);
        if self.failures.len() > self.max_failures {
            return Verdict::GiveUp;
        }
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        Verdict::RestartAfter(delay)
    }

    pub fn recent_failures(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn policy() -> Backoff {
        Backoff::new(s(1), s(8), s(60), 4, s(300))
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(s(1), s(8), s(60), 15, s(300));
        let delays: Vec<_> = (0..6).map(|i| b.on_exit(s(i * 10), s(1))).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8].map(|d| Verdict::RestartAfter(s(d))));
    }

    #[test]
    fn a_healthy_run_resets_the_delay() {
        let mut b = policy();
        assert_eq!(b.on_exit(s(10), s(1)), Verdict::RestartAfter(s(1)));
        assert_eq!(b.on_exit(s(20), s(1)), Verdict::RestartAfter(s(2)));
        assert_eq!(b.on_exit(s(200), s(100)), Verdict::RestartAfter(s(1)));
    }

    #[test]
    fn too_many_failures_in_the_window_give_up_but_old_ones_expire() {
        let mut b = policy();
        for i in 0..4 {
            assert!(matches!(b.on_exit(s(i), s(0)), Verdict::RestartAfter(_)));
        }
        assert_eq!(b.on_exit(s(5), s(0)), Verdict::GiveUp);
        let mut b = policy();
        for i in 0..4 {
            b.on_exit(s(i * 100), s(0));
        }
        // The first failures are older than the window by now.
        assert!(matches!(b.on_exit(s(450), s(0)), Verdict::RestartAfter(_)));
        assert_eq!(b.recent_failures(), 3);
    }
}
