//! Live reconfiguration: follow the store's change feed and make the running server and
//! federation match it. One path for every change, whoever made it (an admin command, the
//! server's own writes, later the cluster's leader): the admin layer no longer tells the
//! daemon what changed, it only waits for [`Reconciled`] to pass its change's sequence number.

use sb_admin::reconcile::{Reaction, full_resync, reactions};
use sb_server::Server;
use sb_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// A reload that takes longer is logged and given up on; the next change tries again.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How far the daemon has reacted: the feed sequence number of the last event handled.
#[derive(Clone, Debug)]
pub struct Reconciled(watch::Receiver<u64>);

impl Reconciled {
    /// Wait (at most `limit`) until every event up to `seq` has been reacted to; false on
    /// timeout or when the reconciler stopped.
    pub async fn wait_for(&self, seq: u64, limit: Duration) -> bool {
        let mut receiver = self.0.clone();
        matches!(
            tokio::time::timeout(limit, receiver.wait_for(|done| *done >= seq)).await,
            Ok(Ok(_))
        )
    }

    pub fn current(&self) -> u64 {
        *self.0.borrow()
    }
}

/// Start following `store`'s feed on the current runtime. `federation` is `None` for a
/// server run without one (tests).
pub fn spawn(
    store: &Store,
    server: Arc<Server>,
    federation: Option<Arc<sb_federation::Federation>>,
    cluster: Option<Arc<crate::cluster::ClusterNode>>,
) -> (Reconciled, tokio::task::JoinHandle<()>) {
    let mut feed = store.subscribe();
    // Everything before the subscription is already in what the server loaded at start.
    let (done, reconciled) = watch::channel(store.last_seq());
    let store = store.clone();
    let task = tokio::spawn(async move {
        loop {
            let (todo, seq) = match feed.recv().await {
                Ok(published) => (reactions(&published.event), published.seq),
                Err(RecvError::Lagged(missed)) => {
                    log::warn!("configuration feed: fell {missed} changes behind; reloading everything");
                    (full_resync(), store.last_seq())
                }
                Err(RecvError::Closed) => return,
            };
            for reaction in dedup(todo) {
                react(&server, federation.as_ref(), cluster.as_ref(), reaction).await;
            }
            done.send_replace(seq);
        }
    });
    (Reconciled(reconciled), task)
}

fn dedup(mut reactions: Vec<Reaction>) -> Vec<Reaction> {
    let mut seen = Vec::with_capacity(reactions.len());
    reactions.retain(|r| {
        let fresh = !seen.contains(r);
        if fresh {
            seen.push(r.clone());
        }
        fresh
    });
    reactions
}

async fn react(
    server: &Arc<Server>,
    federation: Option<&Arc<sb_federation::Federation>>,
    cluster: Option<&Arc<crate::cluster::ClusterNode>>,
    reaction: Reaction,
) {
    match reaction {
        Reaction::ReloadCluster => {
            if let Some(cluster) = cluster {
                cluster.reconcile().await;
            }
        }
        Reaction::ReloadServer => match tokio::time::timeout(RELOAD_TIMEOUT, server.reload()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("reload: {e}"),
            Err(_) => log::error!("reload did not finish within {} s", RELOAD_TIMEOUT.as_secs()),
        },
        Reaction::ReloadFederation => {
            let Some(federation) = federation else { return };
            match tokio::time::timeout(RELOAD_TIMEOUT, federation.reload()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::error!("federation reload: {e}"),
                Err(_) => log::error!("federation reload did not finish within {} s", RELOAD_TIMEOUT.as_secs()),
            }
        }
        Reaction::EndSessionsOf(user) => {
            let closed = server.kick_user(&user);
            if closed > 0 {
                log::info!("account {user} changed: closing {closed} session(s)");
            }
        }
        Reaction::EndSessionsWithoutAccount => {
            let closed = server.kick_users_without_account();
            if closed > 0 {
                log::info!("closed {closed} session(s) of accounts that no longer exist");
            }
        }
        // Secrets are read from the store at each handshake, so an added bridge needs
        // nothing; a deleted or re-keyed one loses its connection.
        Reaction::CallBridgeChanged(name) => {
            server.callbridge_changed(&name);
        }
    }
}
