//! Per-address limits: simultaneous connections and failed logins.
//!
//! Both tables are keyed by IP address and only hold addresses that currently count for
//! something, so an attacker cycling through addresses costs one small entry each while it
//! is active and nothing afterwards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the counters inconsistent in a way
    // that matters more than refusing service would, so keep going with the data as it is.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
pub struct ConnectionLimiter {
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// Holds one connection slot for an address; the slot is released on drop.
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// Take a slot for `ip`, or `None` when it already has `max` connections.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ConnectionSlot> {
        let mut table = lock(&self.per_ip);
        let count = table.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            limiter: Arc::clone(self),
            ip,
        })
    }

    pub fn count(&self, ip: IpAddr) -> u32 {
        lock(&self.per_ip).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut table = lock(&self.limiter.per_ip);
        if let Some(count) = table.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// Failed logins per address in a fixed window that starts at the first failure.
#[derive(Default)]
pub struct AuthFailureLimiter {
    per_ip: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthFailureLimiter {
    /// Whether `ip` may try to log in now.
    pub fn allowed(&self, ip: IpAddr, max: u32, window: Duration, now: Instant) -> bool {
        let mut table = lock(&self.per_ip);
        match table.get(&ip) {
            Some((start, _)) if now.duration_since(*start) >= window => {
                table.remove(&ip);
                true
            }
            Some((_, failures)) => *failures < max,
            None => true,
        }
    }

    pub fn record_failure(&self, ip: IpAddr, window: Duration, now: Instant) {
        let mut table = lock(&self.per_ip);
        // Expired windows are swept here, on the failure path only, so the success path
        // never pays for it and the table cannot grow without failures.
        if table.len() > 1024 {
            table.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = table.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_counted_and_released() {
        let limiter = Arc::new(ConnectionLimiter::default());
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let a = limiter.try_acquire(ip, 2).unwrap();
        let _b = limiter.try_acquire(ip, 2).unwrap();
        assert!(limiter.try_acquire(ip, 2).is_none());
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        assert!(limiter.try_acquire(other, 2).is_some());
        drop(a);
        assert_eq!(limiter.count(ip), 1);
        assert!(limiter.try_acquire(ip, 2).is_some());
    }

    #[test]
    fn auth_failures_block_until_the_window_ends() {
        let limiter = AuthFailureLimiter::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let window = Duration::from_secs(60);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allowed(ip, 3, window, t0));
            limiter.record_failure(ip, window, t0);
        }
        assert!(!limiter.allowed(ip, 3, window, t0));
        assert!(limiter.allowed("127.0.0.10".parse().unwrap(), 3, window, t0));
        assert!(limiter.allowed(ip, 3, window, t0 + window));
    }
}
