//! The relay channel: opaque payloads from one node to another, beside Raft on the same
//! mutual-TLS port, for traffic that must not go through the log (the session directory and
//! the stanzas routed to the node that holds a session).
//!
//! Each peer has a bounded queue and one sender task: it batches what is queued into one
//! request frame and has at most one batch in flight, so payloads to one peer arrive in the
//! order they were queued. The receiving node hands each payload, in order, to the
//! [`RelayHandler`]. A payload that cannot be sent goes back to the handler
//! ([`RelayHandler::undeliverable`]) or is refused at once by [`crate::Cluster::relay`]:
//! nothing is dropped without the sender hearing of it.
//!
//! Peer liveness follows the probes that feed the status display and the relay traffic
//! itself: a voter that has neither answered a probe nor sent a batch for `unreachable_after`
//! is down, and up again as soon as either happens. Hearing a peer's batch counts because
//! the two directions of a pair are probed independently: a node that just restarted hears
//! its peers' snapshots before its own probes of them succeed, and must not refuse to answer
//! them meanwhile.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use openraft::RaftMetrics;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Timing;
use crate::rpc::{Request, Response};
use crate::status::Health;
use crate::transport::Transport;
use crate::{Member, NodeId};

/// Payloads queued per peer before [`crate::Cluster::relay`] answers `QueueFull`.
pub const RELAY_QUEUE_PER_PEER: usize = 8192;
/// Payloads in one batch at most.
const MAX_BATCH: usize = 512;

/// What the relay tells the layer above. Calls come from the cluster's tasks and must return
/// quickly (queue work elsewhere when it needs to wait).
pub trait RelayHandler: Send + Sync + 'static {
    /// A payload `from` sent with [`crate::Cluster::relay`]; payloads of one sender arrive in
    /// the order it queued them.
    fn received(&self, from: NodeId, payload: Vec<u8>);
    /// `node` answers (again): anything it was told before it went away may be lost, so the
    /// layer above resynchronizes.
    fn peer_up(&self, node: NodeId);
    /// `node` stopped answering (for `unreachable_after`) or left the membership.
    fn peer_down(&self, node: NodeId);
    /// A payload queued for `to` was not delivered.
    fn undeliverable(&self, to: NodeId, payload: Vec<u8>, reason: RelayError);
}

/// Why a payload did not reach its node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("node {0:016x} is not a member of the cluster")]
    UnknownPeer(NodeId),
    #[error("node {0:016x} is unreachable")]
    PeerDown(NodeId),
    #[error("the relay queue to node {0:016x} is full")]
    QueueFull(NodeId),
    #[error("payload of {size} bytes exceeds the {max}-byte relay limit")]
    TooLarge { size: usize, max: usize },
    #[error("relay to node {node:016x} failed: {reason}")]
    Failed { node: NodeId, reason: String },
}

/// One voter as the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMember {
    pub id: NodeId,
    /// `<address>:<port>` of its cluster listener.
    pub addr: String,
    /// Answered within `unreachable_after` (always true for this node).
    pub reachable: bool,
    pub me: bool,
}

/// One payload on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RelayPayload(#[serde(with = "crate::b64")] pub Vec<u8>);

struct Peer {
    addr: Arc<Mutex<String>>,
    queue: mpsc::Sender<Vec<u8>>,
    up: bool,
    /// When the peer's last relay batch arrived.
    heard: Option<Instant>,
    sender: JoinHandle<()>,
}

pub(crate) struct Relay {
    me: NodeId,
    transport: Arc<Transport>,
    metrics: watch::Receiver<RaftMetrics<NodeId, Member>>,
    timing: Timing,
    handler: RwLock<Option<Arc<dyn RelayHandler>>>,
    peers: Mutex<HashMap<NodeId, Peer>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    pub fn new(
        me: NodeId,
        transport: Arc<Transport>,
        metrics: watch::Receiver<RaftMetrics<NodeId, Member>>,
        timing: Timing,
    ) -> Relay {
        Relay {
            me,
            transport,
            metrics,
            timing,
            handler: RwLock::new(None),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Largest payload accepted: a batch of one must fit a frame after base64 and JSON.
    fn max_payload(&self) -> usize {
        self.timing.max_frame / 2
    }

    /// A new handler hears `peer_up` at once for every peer already up (it missed those).
    pub fn set_handler(&self, handler: Option<Arc<dyn RelayHandler>>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = handler.clone();
        let Some(handler) = handler else {
            return;
        };
        let up: Vec<NodeId> = lock(&self.peers)
            .iter()
            .filter(|(_, peer)| peer.up)
            .map(|(id, _)| *id)
            .collect();
        for id in up {
            handler.peer_up(id);
        }
    }

    fn handler(&self) -> Option<Arc<dyn RelayHandler>> {
        self.handler.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queue `payload` for `to` without waiting. A member not (yet) seen up is tried all the
    /// same: the sender's attempt decides, and a failed one comes back through
    /// [`RelayHandler::undeliverable`].
    pub fn send(self: &Arc<Self>, to: NodeId, payload: Vec<u8>) -> Result<(), RelayError> {
        let max = self.max_payload();
        if payload.len() > max {
            return Err(RelayError::TooLarge {
                size: payload.len(),
                max,
            });
        }
        let mut peers = lock(&self.peers);
        let peer = self.peer_of(&mut peers, to).ok_or(RelayError::UnknownPeer(to))?;
        peer.queue.try_send(payload).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RelayError::QueueFull(to),
            mpsc::error::TrySendError::Closed(_) => RelayError::PeerDown(to),
        })
    }

    /// The peer entry of member `id`, its sender started now if it joined since the last
    /// refresh (the monitor reports it up: never from here, where callers hold their locks).
    fn peer_of<'a>(self: &Arc<Self>, peers: &'a mut HashMap<NodeId, Peer>, id: NodeId) -> Option<&'a mut Peer> {
        match peers.entry(id) {
            Entry::Occupied(peer) => Some(peer.into_mut()),
            Entry::Vacant(slot) => {
                let addr = self.members().into_iter().find(|m| m.id == id && !m.me)?.addr;
                Some(slot.insert(self.start_peer(id, addr)))
            }
        }
    }

    /// Voters with their reachability.
    pub fn members(&self) -> Vec<RelayMember> {
        let metrics = self.metrics.borrow().clone();
        let membership = metrics.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|m| (id, m.addr.clone())))
            .map(|(id, addr)| {
                let me = id == self.me;
                let reachable = me || self.transport.health(&addr).1 == Health::Reachable;
                RelayMember {
                    id,
                    addr,
                    reachable,
                    me,
                }
            })
            .collect()
    }

    /// Payloads that arrived from `from`, handed over in order.
    pub fn receive(self: &Arc<Self>, from: NodeId, batch: Vec<RelayPayload>) -> Response {
        let is_member = self
            .metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&from)
            .is_some();
        if !is_member {
            return Response::RelayRefused(format!("node {from:016x} is not a member"));
        }
        let Some(handler) = self.handler() else {
            return Response::RelayRefused("no relay handler on this node".to_owned());
        };
        self.heard_from(from, &handler);
        for RelayPayload(payload) in batch {
            handler.received(from, payload);
        }
        Response::Relayed
    }

    /// A batch from `from` arrived: it is up, whatever our probes of it said so far. (Called
    /// from the cluster port's handler, where no lock of the layer above is held.)
    fn heard_from(self: &Arc<Self>, from: NodeId, handler: &Arc<dyn RelayHandler>) {
        let mut peers = lock(&self.peers);
        let Some(peer) = self.peer_of(&mut peers, from) else {
            return;
        };
        peer.heard = Some(Instant::now());
        if peer.up {
            return;
        }
        peer.up = true;
        drop(peers);
        log::info!("cluster relay: node {from:016x} up (heard from it)");
        handler.peer_up(from);
    }

    /// Follow membership and health: start a sender for every voter, report up and down
    /// transitions, stop the senders of removed members.
    fn refresh(self: &Arc<Self>) {
        let members: HashMap<NodeId, (String, bool)> = self
            .members()
            .into_iter()
            .filter(|m| !m.me)
            .map(|m| (m.id, (m.addr, m.reachable)))
            .collect();
        let fresh = self.timing.unreachable_after;
        let mut events = Vec::new();
        let mut peers = lock(&self.peers);
        peers.retain(|id, peer| {
            if members.contains_key(id) {
                return true;
            }
            peer.sender.abort();
            if peer.up {
                events.push((*id, false));
            }
            false
        });
        for (id, (addr, reachable)) in members {
            let peer = peers.entry(id).or_insert_with(|| self.start_peer(id, addr.clone()));
            *lock(&peer.addr) = addr;
            let reachable = reachable || peer.heard.is_some_and(|at| at.elapsed() <= fresh);
            if peer.up != reachable {
                peer.up = reachable;
                events.push((id, reachable));
            }
        }
        drop(peers);
        if events.is_empty() {
            return;
        }
        let Some(handler) = self.handler() else {
            return;
        };
        for (id, up) in events {
            log::info!("cluster relay: node {id:016x} {}", if up { "up" } else { "down" });
            if up {
                handler.peer_up(id);
            } else {
                handler.peer_down(id);
            }
        }
    }

    fn start_peer(self: &Arc<Self>, id: NodeId, addr: String) -> Peer {
        let (queue, rx) = mpsc::channel(RELAY_QUEUE_PER_PEER);
        let addr = Arc::new(Mutex::new(addr));
        let sender = tokio::spawn(send_batches(Arc::downgrade(self), id, Arc::clone(&addr), rx));
        Peer {
            addr,
            queue,
            up: false,
            heard: None,
            sender,
        }
    }

    /// Stop every sender (the node shuts down); what is still queued is lost with the node.
    pub fn stop(&self) {
        for (_, peer) in lock(&self.peers).drain() {
            peer.sender.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Watch membership and health every probe interval until the relay is gone.
pub(crate) async fn monitor(relay: Weak<Relay>) {
    loop {
        let Some(strong) = relay.upgrade() else {
            return;
        };
        strong.refresh();
        let pause = strong.timing.probe_interval;
        drop(strong);
        tokio::time::sleep(pause).await;
    }
}

/// One peer's sender: batch what is queued, one batch in flight.
async fn send_batches(relay: Weak<Relay>, to: NodeId, addr: Arc<Mutex<String>>, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(first) = queue.recv().await {
        let Some(strong) = relay.upgrade() else {
            return;
        };
        let budget = strong.timing.max_frame / 3;
        let mut size = first.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && size < budget {
            match queue.try_recv() {
                Ok(payload) => {
                    size += payload.len();
                    batch.push(payload);
                }
                Err(_) => break,
            }
        }
        let addr = lock(&addr).clone();
        let request = Request::Relay(batch.iter().cloned().map(RelayPayload).collect());
        let ttl = strong.timing.unreachable_after;
        let transport = Arc::clone(&strong.transport);
        drop(strong);
        let failure = match transport.call(&addr, Some(to), request, ttl).await {
            Ok(Response::Relayed) => continue,
            Ok(Response::RelayRefused(reason)) => reason,
            Ok(other) => format!("unexpected answer {other:?}"),
            Err(e) => e.to_string(),
        };
        log::debug!(
            "cluster relay: {} payloads to {to:016x} not delivered: {failure}",
            batch.len()
        );
        let Some(handler) = relay.upgrade().and_then(|r| r.handler()) else {
            return;
        };
        for payload in batch {
            let reason = RelayError::Failed {
                node: to,
                reason: failure.clone(),
            };
            handler.undeliverable(to, payload, reason);
        }
    }
}
