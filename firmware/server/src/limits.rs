//! Connection and login limits, kept in one place for every service.
//!
//! Connections are counted three ways: all of them against `max_total` (the descriptors the
//! process may spend on peers), unauthenticated ones against `max_pre_auth_total` (a fraction
//! of the descriptor limit, so a flood of idle sockets cannot take the descriptors logged-in
//! users, the admin socket and certificate reloads need), and unauthenticated ones per
//! address group (an IPv4 address, an IPv6 /64) against a low per-address cap. A connection
//! that authenticates leaves the pre-auth counts: many users behind one NAT are bounded only
//! by `max_total`.
//!
//! The tables only hold address groups that currently count for something, so an attacker
//! cycling through addresses costs one small entry each while it is active and nothing
//! afterwards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the counters inconsistent in a way
    // that matters more than refusing service would, so keep going with the data as it is.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Descriptors kept back from peers for the store, the admin socket, log files and
/// certificate reloads.
const RESERVED_DESCRIPTORS: u32 = 64;

/// The soft RLIMIT_NOFILE of this process, from /proc (the server crate has no libc);
/// 1024, the usual default, when it cannot be read.
pub fn descriptor_limit() -> u32 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| parse_descriptor_limit(&text))
        .unwrap_or(1024)
}

fn parse_descriptor_limit(limits: &str) -> Option<u32> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    // "unlimited" is not a real descriptor budget; u32::MAX stands for it.
    Some(
        soft.parse::<u64>()
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    )
}

/// The caps a `ConnectionLimiter` enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Connections of every kind and state.
    pub max_total: u32,
    /// Connections that have not authenticated yet, from everywhere.
    pub max_pre_auth_total: u32,
    /// Unauthenticated client or Call Bridge connections from one address group.
    pub max_pre_auth_per_address: u32,
}

impl ConnectionCaps {
    /// Caps for a process allowed `descriptors` open files: all but a reserve for peers, half
    /// of that for connections that have not logged in yet.
    pub fn for_descriptor_limit(descriptors: u32, max_pre_auth_per_address: u32) -> Self {
        let max_total = descriptors
            .saturating_sub(RESERVED_DESCRIPTORS)
            .max(RESERVED_DESCRIPTORS);
        ConnectionCaps {
            max_total,
            max_pre_auth_total: max_total / 2,
            max_pre_auth_per_address,
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many unauthenticated connections from this address")]
    PerAddress,
    #[error("too many unauthenticated connections")]
    PreAuthTotal,
    #[error("too many connections")]
    Total,
}

/// Which per-address table a connection counts in: a federating server and the clients behind
/// the same address do not share one cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    ClientOrComponent,
    Server,
}

/// The address a per-address cap applies to: IPv4 addresses one by one, IPv6 by /64, since
/// one host is routinely given a whole /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressGroup(IpAddr);

impl AddressGroup {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressGroup(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressGroup(IpAddr::V6(prefix.into()))
                }
            },
            v4 => AddressGroup(v4),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: u32,
    pre_auth_total: u32,
    pre_auth: HashMap<(Class, AddressGroup), u32>,
}

pub struct ConnectionLimiter {
    caps: ConnectionCaps,
    counts: Mutex<Counts>,
}

/// Holds one connection's place in the counts; released on drop.
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    key: (Class, AddressGroup),
    pre_auth: bool,
}

impl Default for ConnectionLimiter {
    /// No global caps; a per-address cap of 1024 (tests that build a `Core` by hand).
    fn default() -> Self {
        ConnectionLimiter::new(ConnectionCaps {
            max_total: u32::MAX,
            max_pre_auth_total: u32::MAX,
            max_pre_auth_per_address: 1024,
        })
    }
}

impl ConnectionLimiter {
    pub fn new(caps: ConnectionCaps) -> Self {
        ConnectionLimiter {
            caps,
            counts: Mutex::new(Counts::default()),
        }
    }

    pub fn caps(&self) -> ConnectionCaps {
        self.caps
    }

    /// Take a slot for a new client or Call Bridge connection from `ip`.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        self.acquire(Class::ClientOrComponent, ip, self.caps.max_pre_auth_per_address)
    }

    /// Take a slot for an incoming server-to-server connection from `ip`; federation has its
    /// own per-address cap (a peer needs a connection per domain it serves) but shares the
    /// global ones.
    pub fn try_acquire_server(self: &Arc<Self>, ip: IpAddr, max_per_address: u32) -> Result<ConnectionSlot, Refusal> {
        self.acquire(Class::Server, ip, max_per_address)
    }

    fn acquire(self: &Arc<Self>, class: Class, ip: IpAddr, max_per_address: u32) -> Result<ConnectionSlot, Refusal> {
        let key = (class, AddressGroup::of(ip));
        let mut counts = lock(&self.counts);
        if counts.total >= self.caps.max_total {
            return Err(Refusal::Total);
        }
        if counts.pre_auth_total >= self.caps.max_pre_auth_total {
            return Err(Refusal::PreAuthTotal);
        }
        let per_address = counts.pre_auth.entry(key).or_insert(0);
        if *per_address >= max_per_address {
            if *per_address == 0 {
                counts.pre_auth.remove(&key);
            }
            return Err(Refusal::PerAddress);
        }
        *per_address += 1;
        counts.pre_auth_total += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            limiter: Arc::clone(self),
            key,
            pre_auth: true,
        })
    }

    /// Unauthenticated connections from `ip`'s group (clients and Call Bridges).
    pub fn pre_auth_count(&self, ip: IpAddr) -> u32 {
        let key = (Class::ClientOrComponent, AddressGroup::of(ip));
        lock(&self.counts).pre_auth.get(&key).copied().unwrap_or(0)
    }

    /// Connections of every kind and state.
    pub fn total(&self) -> u32 {
        lock(&self.counts).total
    }

    fn release_pre_auth(counts: &mut Counts, key: (Class, AddressGroup)) {
        counts.pre_auth_total = counts.pre_auth_total.saturating_sub(1);
        if let Some(count) = counts.pre_auth.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.pre_auth.remove(&key);
            }
        }
    }
}

impl ConnectionSlot {
    /// The peer logged in: from now on it counts only against the global total, so its
    /// address can open new unauthenticated connections again.
    pub fn authenticated(&mut self) {
        if !self.pre_auth {
            return;
        }
        self.pre_auth = false;
        ConnectionLimiter::release_pre_auth(&mut lock(&self.limiter.counts), self.key);
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.limiter.counts);
        counts.total = counts.total.saturating_sub(1);
        if self.pre_auth {
            ConnectionLimiter::release_pre_auth(&mut counts, self.key);
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

    fn limiter(total: u32, pre_auth: u32, per_address: u32) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter::new(ConnectionCaps {
            max_total: total,
            max_pre_auth_total: pre_auth,
            max_pre_auth_per_address: per_address,
        }))
    }

    #[test]
    fn connection_slots_are_counted_and_released() {
        let limiter = limiter(100, 100, 2);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let a = limiter.try_acquire(ip).unwrap();
        let _b = limiter.try_acquire(ip).unwrap();
        assert_eq!(limiter.try_acquire(ip).err(), Some(Refusal::PerAddress));
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        assert!(limiter.try_acquire(other).is_ok());
        drop(a);
        assert_eq!(limiter.pre_auth_count(ip), 1);
        assert!(limiter.try_acquire(ip).is_ok());
    }

    #[test]
    fn logged_in_connections_leave_the_per_address_count() {
        let limiter = limiter(10, 5, 2);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..8 {
            let mut slot = limiter.try_acquire(ip).unwrap();
            slot.authenticated();
            held.push(slot);
        }
        assert_eq!(limiter.pre_auth_count(ip), 0);
        assert_eq!(limiter.total(), 8);
        let _pending = limiter.try_acquire(ip).unwrap();
        let _pending2 = limiter.try_acquire(ip).unwrap();
        assert_eq!(limiter.try_acquire(ip).err(), Some(Refusal::Total));
        held.pop();
        assert_eq!(limiter.try_acquire(ip).err(), Some(Refusal::PerAddress));
        drop(held);
        assert_eq!(limiter.total(), 2);
    }

    #[test]
    fn the_global_pre_auth_cap_spans_addresses() {
        let limiter = limiter(100, 3, 2);
        let slots: Vec<_> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|ip| limiter.try_acquire(ip.parse().unwrap()).unwrap())
            .collect();
        assert_eq!(
            limiter.try_acquire("10.0.0.4".parse().unwrap()).err(),
            Some(Refusal::PreAuthTotal)
        );
        drop(slots);
        assert!(limiter.try_acquire("10.0.0.4".parse().unwrap()).is_ok());
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_64() {
        let limiter = limiter(100, 100, 2);
        let _a = limiter.try_acquire("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = limiter.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert!(limiter.try_acquire("2001:db8:1:2::77".parse().unwrap()).is_err());
        assert!(limiter.try_acquire("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn servers_have_their_own_per_address_count() {
        let limiter = limiter(100, 100, 1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _client = limiter.try_acquire(ip).unwrap();
        let _s1 = limiter.try_acquire_server(ip, 2).unwrap();
        let _s2 = limiter.try_acquire_server(ip, 2).unwrap();
        assert!(limiter.try_acquire_server(ip, 2).is_err());
    }

    #[test]
    fn descriptor_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
Max open files            512                  4096                 files\n";
        assert_eq!(parse_descriptor_limit(text), Some(512));
        let caps = ConnectionCaps::for_descriptor_limit(512, 32);
        assert_eq!(caps.max_total, 448);
        assert_eq!(caps.max_pre_auth_total, 224);
        assert!(descriptor_limit() > 0);
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
