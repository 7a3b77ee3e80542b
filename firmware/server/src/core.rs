//! State shared by every connection: store, settings snapshot, router, limits.

use crate::component::ComponentRegistry;
use crate::interfaces::InterfaceWatch;
use crate::limits::{AuthFailureLimiter, ConnectionLimiter};
use crate::router::Router;
use crate::storage::Storage;
use crate::tuning::ServerTuning;
use rustls::ServerConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{Notify, watch};

/// The configuration a connection works with, swapped whole on reload: a connection takes
/// one snapshot when it starts and keeps it, so a reload never changes a running stream.
#[derive(Clone)]
pub struct Settings {
    pub domain: String,
    pub tls: Option<Arc<ServerConfig>>,
    pub starttls_required: bool,
    pub max_stanza_bytes: usize,
    pub offline_limit: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("domain", &self.domain)
            .field("tls", &self.tls.is_some())
            .field("starttls_required", &self.starttls_required)
            .field("max_stanza_bytes", &self.max_stanza_bytes)
            .field("offline_limit", &self.offline_limit)
            .finish()
    }
}

/// Counts live connection tasks so shutdown can wait for them.
#[derive(Default)]
pub struct ConnectionTracker {
    active: AtomicUsize,
    idle: Notify,
}

pub struct TrackedConnection {
    tracker: Arc<ConnectionTracker>,
}

impl ConnectionTracker {
    pub fn track(self: &Arc<Self>) -> TrackedConnection {
        self.active.fetch_add(1, Ordering::SeqCst);
        TrackedConnection {
            tracker: Arc::clone(self),
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Wait until no connection task is left.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackedConnection {
    fn drop(&mut self) {
        if self.tracker.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

pub struct Core {
    pub storage: Storage,
    pub dir: PathBuf,
    pub tuning: ServerTuning,
    pub router: Router,
    /// Connected Call Bridges (their links are also on `router`) and refused handshakes.
    pub components: ComponentRegistry,
    settings: RwLock<Arc<Settings>>,
    pub connection_limiter: Arc<ConnectionLimiter>,
    /// Bytes queued for every stream of the daemon (see [`crate::budget`]).
    pub queued_bytes: Arc<crate::budget::MemoryBudget>,
    pub auth_failures: AuthFailureLimiter,
    /// Serializes read-modify-write cycles on each account's roster (one lock per account,
    /// so a subscription flood aimed at one account does not stall every other).
    pub roster_locks: crate::roster::RosterLocks,
    /// Inbound subscription requests per sending domain (issue 13).
    pub subscription_limiter: crate::presence::SubscriptionLimiter,
    /// Keys the made-up SCRAM parameters for unknown users; fresh per process.
    pub unknown_user_secret: [u8; 32],
    /// Bumped to make every connection close with `<system-shutdown/>` (shutdown, disable).
    stop: watch::Sender<u64>,
    shutting_down: AtomicBool,
    pub connections: Arc<ConnectionTracker>,
    next_id: AtomicU64,
    pub started_at_unix: u64,
    /// Interface addresses, for listen entries that name an interface (c2s, components, s2s).
    pub interfaces: InterfaceWatch,
}

impl Core {
    pub fn new(storage: Storage, dir: PathBuf, tuning: ServerTuning, settings: Settings) -> Self {
        let mut secret = [0u8; 32];
        // Without an RNG the secret is all zeros: unknown users then get stable fake
        // parameters, which only weakens the account-enumeration protection, not logins.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        Core {
            storage,
            dir,
            interfaces: InterfaceWatch::new(tuning.board_interfaces.clone()),
            connection_limiter: Arc::new(ConnectionLimiter::new(tuning.connection_caps())),
            queued_bytes: Arc::new(tuning.memory_budget()),
            tuning,
            router: Router::new(),
            components: ComponentRegistry::default(),
            settings: RwLock::new(Arc::new(settings)),
            auth_failures: AuthFailureLimiter::default(),
            roster_locks: crate::roster::RosterLocks::default(),
            subscription_limiter: crate::presence::SubscriptionLimiter::default(),
            unknown_user_secret: secret,
            stop: watch::channel(0).0,
            shutting_down: AtomicBool::new(false),
            connections: Arc::new(ConnectionTracker::default()),
            next_id: AtomicU64::new(1),
            started_at_unix: unix_now(),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    pub fn domain(&self) -> String {
        self.settings().domain.clone()
    }

    /// A process-unique token for ids the server makes up (stream ids, push ids, resources).
    pub fn unique_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut random = [0u8; 6];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
        let mut out = String::with_capacity(24);
        for b in random {
            out.push_str(&format!("{b:02x}"));
        }
        out.push_str(&format!("{n:x}"));
        out
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop_all_connections();
    }

    /// Close every connection, authenticated or not, with `<system-shutdown/>`.
    pub fn stop_all_connections(&self) {
        self.stop.send_modify(|generation| *generation += 1);
    }

    pub fn stop_signal(&self) -> watch::Receiver<u64> {
        self.stop.subscribe()
    }

    /// A byte budget of `limit` for one stream's queue, charged to the daemon's too.
    pub fn queue_budget(&self, limit: usize) -> crate::budget::QueueBudget {
        crate::budget::QueueBudget::new(limit, Arc::clone(&self.queued_bytes))
    }

    /// Route again what was still queued for a stream that ended: stanzas for a client go to
    /// its other resources or offline storage, or bounce, as any stanza for an unbound
    /// resource does; nothing queued is dropped silently.
    pub async fn reroute_queued(
        &self,
        rx: &mut tokio::sync::mpsc::Receiver<crate::router::Outbound>,
        budget: &crate::budget::QueueBudget,
    ) {
        rx.close();
        let mut rerouted = 0usize;
        while let Ok(item) = rx.try_recv() {
            budget.release(crate::budget::outbound_bytes(&item));
            match item {
                crate::router::Outbound::Stanza(stanza) => {
                    rerouted += 1;
                    self.route(*stanza).await;
                }
                // Pre-serialized bytes come only from another node's broadcast; that node
                // sees the session gone and settles them itself.
                crate::router::Outbound::Raw(_) => {}
            }
        }
        if rerouted > 0 {
            log::info!("{rerouted} stanza(s) queued for an ended stream were routed again");
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A core over a fresh store in `dir`, for tests: domain `example.com`, no TLS, room for
/// ten offline messages per account.
#[cfg(test)]
pub(crate) fn test_core(dir: &std::path::Path) -> Core {
    let store = sb_store::Store::open(dir).expect("a test store opens");
    let settings = Settings {
        domain: "example.com".into(),
        tls: None,
        starttls_required: true,
        max_stanza_bytes: 65_536,
        offline_limit: 10,
    };
    Core::new(Storage::new(store), dir.to_owned(), ServerTuning::default(), settings)
}
