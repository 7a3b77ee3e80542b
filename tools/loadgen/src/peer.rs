//! Cross-server pairs (`--peer-host ...`): client 2k logs into the server under test and
//! client 2k+1 into a peer server of another domain, so every message crosses the
//! server-to-server link: ours → peer on our outgoing link, peer → ours on the peer's.
//! Measured per direction: the throughput phase runs one direction after the other (each
//! one's maximum, not a share of the peer's CPU that the other direction also loads); the
//! rate phase runs both at once, half the rate each way.

use crate::conn::{LoginTarget, Session};
use crate::load::{self, MessageClients, MessagePhase, MessageShared, Pattern, Sender, Windows};
use crate::stats::{Clock, PhaseSummary};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::Semaphore;

/// Where the odd-numbered clients log in.
pub struct PeerAccounts {
    pub target: LoginTarget,
    pub users: Pattern,
    pub passwords: Pattern,
}

/// Client indices on the peer server: the odd ones.
pub fn is_peer_index(index: usize) -> bool {
    index % 2 == 1
}

/// One phase's figures per direction.
#[derive(Clone, Debug)]
pub struct PeerSummaries {
    /// Sent by our users, delivered to the peer's.
    pub to_peer: PhaseSummary,
    /// Sent by the peer's users, delivered to ours.
    pub from_peer: PhaseSummary,
}

#[derive(Clone, Debug, Default)]
pub struct PeerReport {
    pub pairs: usize,
    pub throughput: Option<PeerSummaries>,
    pub rate: Option<PeerSummaries>,
    /// Error stanzas received (e.g. the s2s link refused or failed).
    pub errors: u64,
}

pub struct CrossPairs {
    clients: MessageClients,
    to_peer: Arc<MessageShared>,
    from_peer: Arc<MessageShared>,
}

impl CrossPairs {
    pub fn start(sessions: Vec<(usize, Session)>, clock: Clock) -> CrossPairs {
        // One window per direction: all of a direction's messages share one s2s link, and a
        // link's queue is bounded (xmppd's holds 256 stanzas).
        let to_peer = MessageShared::new(Windows::Shared(Semaphore::new(0)), clock);
        let from_peer = MessageShared::new(Windows::Shared(Semaphore::new(0)), clock);
        // A peer user's reader records what ours sent it, and the other way round.
        let clients = MessageClients::start_by(sessions, |index| {
            if is_peer_index(index) {
                Arc::clone(&to_peer)
            } else {
                Arc::clone(&from_peer)
            }
        });
        CrossPairs {
            clients,
            to_peer,
            from_peer,
        }
    }

    pub fn pairs(&self) -> usize {
        self.clients.pair_senders().len() / 2
    }

    /// (our users, the peer's users), each sending to its partner on the other server.
    fn senders(&self) -> (Vec<Sender>, Vec<Sender>) {
        self.clients
            .pair_senders()
            .into_iter()
            .partition(|(index, _, _)| !is_peer_index(*index))
    }

    /// As fast as the servers deliver, at most `window` messages in flight, for `secs` per
    /// direction: our users first, then the peer's.
    pub async fn throughput(&self, secs: f64, window: usize) -> PeerSummaries {
        let (ours, theirs) = self.senders();
        self.to_peer.windows.open(0, window);
        let to_secs = load::send_with_window(ours, &self.to_peer, secs).await;
        self.to_peer.drain(MessagePhase::Throughput).await;
        self.from_peer.windows.open(0, window);
        let from_secs = load::send_with_window(theirs, &self.from_peer, secs).await;
        self.from_peer.drain(MessagePhase::Throughput).await;
        PeerSummaries {
            to_peer: self.to_peer.stats(MessagePhase::Throughput).summary(to_secs),
            from_peer: self.from_peer.stats(MessagePhase::Throughput).summary(from_secs),
        }
    }

    /// `rate` messages/s in all, half each way, for `secs`.
    pub async fn fixed_rate(&self, rate: f64, secs: f64) -> PeerSummaries {
        let (ours, theirs) = self.senders();
        let (to_secs, from_secs) = tokio::join!(
            load::send_at_rate(ours, &self.to_peer, rate / 2.0, secs),
            load::send_at_rate(theirs, &self.from_peer, rate / 2.0, secs)
        );
        tokio::join!(
            self.to_peer.drain(MessagePhase::Rate),
            self.from_peer.drain(MessagePhase::Rate)
        );
        PeerSummaries {
            to_peer: self.to_peer.stats(MessagePhase::Rate).summary(to_secs),
            from_peer: self.from_peer.stats(MessagePhase::Rate).summary(from_secs),
        }
    }

    pub fn errors(&self) -> u64 {
        self.to_peer.errors.load(Ordering::Relaxed) + self.from_peer.errors.load(Ordering::Relaxed)
    }

    pub async fn close(self) {
        self.clients.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_clients_are_on_the_peer() {
        assert!(!is_peer_index(0));
        assert!(is_peer_index(1));
        assert!(!is_peer_index(42));
        assert!(is_peer_index(43));
    }
}
