//! Counters and latency samples of the message phases, and the figures derived from them.

use crate::cpu::CpuUse;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One message phase; written by every sender and receiver task.
#[derive(Default)]
pub struct PhaseStats {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Latency of each delivered message in microseconds (u32: up to 71 minutes).
    latencies_us: Mutex<Vec<u32>>,
}

impl PhaseStats {
    pub fn record_delivery(&self, latency_us: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let sample = u32::try_from(latency_us).unwrap_or(u32::MAX);
        if let Ok(mut samples) = self.latencies_us.lock() {
            samples.push(sample);
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn summary(&self, secs: f64) -> PhaseSummary {
        let mut samples = self.latencies_us.lock().map(|s| s.clone()).unwrap_or_default();
        samples.sort_unstable();
        let sent = self.sent();
        let delivered = self.delivered();
        PhaseSummary {
            secs,
            sent,
            delivered,
            lost: sent.saturating_sub(delivered),
            delivered_per_s: if secs > 0.0 { delivered as f64 / secs } else { 0.0 },
            p50_ms: percentile(&samples, 50.0).map(|us| us as f64 / 1000.0),
            p99_ms: percentile(&samples, 99.0).map(|us| us as f64 / 1000.0),
            cpu: CpuUse::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PhaseSummary {
    pub secs: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub delivered_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Filled in by the caller, which knows the server's pid.
    pub cpu: CpuUse,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u32], pct: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Outcome of logging in a batch of clients.
#[derive(Clone, Debug, Default)]
pub struct LoginReport {
    pub attempted: usize,
    pub succeeded: usize,
    pub secs: f64,
    /// Logins that could reuse a SaltedPassword from an earlier login.
    pub warm: usize,
    pub mechanism: Option<&'static str>,
    /// Error text → how often it happened.
    pub errors: Vec<(String, usize)>,
    pub cpu: CpuUse,
}

impl LoginReport {
    pub fn failed(&self) -> usize {
        self.attempted - self.succeeded
    }

    pub fn per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.succeeded as f64 / self.secs
        } else {
            0.0
        }
    }

    pub fn add_error(&mut self, text: String) {
        if let Some(entry) = self.errors.iter_mut().find(|(known, _)| *known == text) {
            entry.1 += 1;
        } else if self.errors.len() < 16 {
            // Bounded: only distinct texts are kept, and there are few kinds of failure.
            self.errors.push((text, 1));
        }
    }
}

/// Microseconds since a run-wide origin: the timestamp carried in each message body.
#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: Instant::now() }
    }

    pub fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_counts_losses_and_rates() {
        let stats = PhaseStats::default();
        stats.sent.store(10, Ordering::Relaxed);
        for latency in [1000, 2000, 3000, 4000] {
            stats.record_delivery(latency);
        }
        let summary = stats.summary(2.0);
        assert_eq!(summary.delivered, 4);
        assert_eq!(summary.lost, 6);
        assert_eq!(summary.delivered_per_s, 2.0);
        assert_eq!(summary.p50_ms, Some(2.0));
        assert_eq!(summary.p99_ms, Some(4.0));
    }

    #[test]
    fn login_report_groups_errors() {
        let mut report = LoginReport {
            attempted: 3,
            succeeded: 1,
            ..LoginReport::default()
        };
        report.add_error("timeout".into());
        report.add_error("timeout".into());
        assert_eq!(report.failed(), 2);
        assert_eq!(report.errors, vec![("timeout".to_owned(), 2)]);
    }
}
