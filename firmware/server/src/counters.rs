//! Process-wide event counters for the metrics endpoint: client logins and failures, stanzas
//! routed, stanzas dropped at a full session queue. Relaxed atomics: a metric may lag a
//! moment, never slows the path it counts.

use std::sync::atomic::{AtomicU64, Ordering};

static LOGINS: AtomicU64 = AtomicU64::new(0);
static LOGIN_FAILURES: AtomicU64 = AtomicU64::new(0);
static STANZAS_ROUTED: AtomicU64 = AtomicU64::new(0);
static QUEUE_DROPS: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// A client authenticated (SASL success).
    Login,
    /// A client gave wrong credentials.
    LoginFailure,
    /// A stanza went through the router.
    StanzaRouted,
    /// A stanza was refused because the receiving session's queue or budget was full.
    QueueDrop,
}

pub fn record(event: Event) {
    let counter = match event {
        Event::Login => &LOGINS,
        Event::LoginFailure => &LOGIN_FAILURES,
        Event::StanzaRouted => &STANZAS_ROUTED,
        Event::QueueDrop => &QUEUE_DROPS,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The counters since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub logins: u64,
    pub login_failures: u64,
    pub stanzas_routed: u64,
    pub queue_drops: u64,
}

pub fn snapshot() -> Counters {
    Counters {
        logins: LOGINS.load(Ordering::Relaxed),
        login_failures: LOGIN_FAILURES.load(Ordering::Relaxed),
        stanzas_routed: STANZAS_ROUTED.load(Ordering::Relaxed),
        queue_drops: QUEUE_DROPS.load(Ordering::Relaxed),
    }
}
