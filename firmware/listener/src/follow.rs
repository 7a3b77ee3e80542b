//! A front end that follows the configuration by itself (the web admin, SSH): its listeners are
//! re-applied on every change-feed event and every change of the interfaces' addresses, and a
//! [`FollowHandle`] tells the rest of the daemon where it listens and how far it has got.

use crate::{Acceptor, ListenSpec, ListenerSet, ListenerStatus, resolve};
use sb_store::{InterfaceAddresses, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// One following service as the daemon sees it: made before the admin layer (which reports it
/// in its `status` command), started with [`FollowHandle::start`].
#[derive(Clone, Default)]
pub struct FollowHandle {
    inner: Arc<HandleInner>,
}

#[derive(Default)]
struct HandleInner {
    listeners: Mutex<Vec<ListenerStatus>>,
    applied: Mutex<Option<watch::Receiver<u64>>>,
}

/// What a following service makes of the configuration as it now is.
pub trait Follow: Send + 'static {
    /// The listeners wanted now (empty: none), after preparing whatever the acceptor serves
    /// them with (a TLS configuration, a host key). `None` when the configuration cannot be
    /// read: the listeners stay as they are.
    fn wanted(&mut self) -> impl Future<Output = Option<Vec<ListenSpec>>> + Send;
    /// Takes the sockets of the service's listeners.
    fn acceptor(&self) -> Arc<dyn Acceptor>;
    /// The log line for a listener that is bound.
    fn bound_line(&self, bound: SocketAddr) -> String;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FollowHandle {
    pub fn new() -> FollowHandle {
        FollowHandle::default()
    }

    pub fn status(&self) -> Vec<ListenerStatus> {
        lock(&self.inner.listeners).clone()
    }

    /// Where it listens now.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.status().iter().filter_map(|l| l.bound).collect()
    }

    /// Return once the service has applied its configuration as of change-feed event `seq`
    /// (`0`: its first configuration), or after `limit`; true when it had. Immediately true
    /// when it was never started.
    pub async fn wait_for(&self, seq: u64, limit: Duration) -> bool {
        let receiver = lock(&self.inner.applied).clone();
        let Some(mut receiver) = receiver else {
            return true;
        };
        tokio::time::timeout(limit, receiver.wait_for(|applied| *applied > seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Follow the configuration: bind, serve, rebind as it changes. Runs until the returned
    /// task is aborted or the store closes.
    pub fn start(
        &self,
        store: &Store,
        mut interfaces: watch::Receiver<Arc<InterfaceAddresses>>,
        mut follower: impl Follow,
    ) -> tokio::task::JoinHandle<()> {
        let mut feed = store.subscribe();
        let (applied_tx, applied_rx) = watch::channel(0u64);
        *lock(&self.inner.applied) = Some(applied_rx);
        let inner = Arc::clone(&self.inner);
        let acceptor = follower.acceptor();
        tokio::spawn(async move {
            let mut set = ListenerSet::default();
            let mut seen = 0u64;
            loop {
                let addresses = interfaces.borrow().clone();
                if let Some(specs) = follower.wanted().await {
                    let wanted = resolve(&specs, &addresses);
                    if wanted != set.applied() {
                        set.reconcile(wanted, &acceptor).await;
                        for bound in set.status().iter().filter_map(|l| l.bound) {
                            log::info!("{}", follower.bound_line(bound));
                        }
                    }
                }
                *lock(&inner.listeners) = set.status();
                // One more than the last event applied: 0 means "not applied anything yet".
                applied_tx.send_replace(seen + 1);
                tokio::select! {
                    event = feed.recv() => match event {
                        Ok(published) => seen = published.seq,
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    },
                    changed = interfaces.changed() => if changed.is_err() {
                        // The interface watch is gone (shutdown): keep following the store.
                        interfaces = watch::channel(Arc::new(InterfaceAddresses::default())).1;
                    },
                }
                // A burst of events (a command writes several) is applied once.
                while let Ok(published) = feed.try_recv() {
                    seen = published.seq;
                }
            }
        })
    }
}
