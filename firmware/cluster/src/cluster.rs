//! The handle the daemon drives: open a node, form or join a cluster, propose entries, read
//! the status, shut down.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, Raft, RaftMetrics, ServerState};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{ClusterOptions, Timing};
use crate::error::{ClusterError, MembershipError, ProposeError};
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::raft_db::RaftDb;
use crate::relay::{self, Relay, RelayError, RelayHandler, RelayMember};
use crate::rpc::{Envelope, Request, Response};
use crate::state::ReplicatedState;
use crate::state_machine::StateMachine;
use crate::status::{ClusterStatus, Health, MemberStatus, NodeState, PeerFault};
use crate::tls::TlsConfigs;
use crate::transport::{self, Faults, Handler, Transport, TransportError};
use crate::{ApplyOutcome, Member, NodeId, Proposal, TypeConfig};

/// Pause between attempts while waiting for a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long `shutdown` waits for openraft's storage tasks, in `RETRY_PAUSE` steps (5 s).
const SHUTDOWN_POLLS: usize = 250;
/// A join or remove request may be passed on this many times to reach the leader.
const MAX_HOPS: usize = 4;

/// A running cluster node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    addr: String,
    raft: Raft<TypeConfig>,
    transport: Arc<Transport>,
    faults: Arc<Faults>,
    timing: Timing,
    last_state_change: Arc<Mutex<(NodeState, SystemTime)>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Held by openraft's storage tasks; gone once they all ended.
    db: std::sync::Weak<RaftDb>,
    /// Payloads beside the log (session directory, routed stanzas).
    relay: Arc<Relay>,
    /// Told when a leader's append-entries first reaches this node (see `allow_elections`).
    leader_heard: Arc<tokio::sync::Notify>,
}

fn node_state(state: ServerState) -> NodeState {
    match state {
        ServerState::Leader => NodeState::Leader,
        ServerState::Follower => NodeState::Follower,
        ServerState::Candidate => NodeState::Candidate,
        ServerState::Learner => NodeState::Learner,
        ServerState::Shutdown => NodeState::Shutdown,
    }
}

impl Cluster {
    /// Start this node: its consensus database in `options.dir/raft` (created with a new
    /// stable identity on first use), the cluster listener, and openraft.
    pub async fn open(options: ClusterOptions, state: Arc<dyn ReplicatedState>) -> Result<Cluster, ClusterError> {
        let timing = options.timing.clone();
        let config = timing.raft_config().map_err(ClusterError::Config)?;
        let dir = options.dir.clone();
        let db = tokio::task::spawn_blocking(move || RaftDb::open(&dir))
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))??;
        let db = Arc::new(db);
        let id = db.node_id()?;
        let tls = TlsConfigs::new(&options.tls)?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| ClusterError::Listen {
                addr: options.listen.to_string(),
                reason: e.to_string(),
            })?;
        let addr = options.advertise.clone().unwrap_or_else(|| options.listen.to_string());
        let faults = Arc::new(Faults::default());
        let transport = Arc::new(Transport::new(
            id,
            options.listen.ip(),
            TlsConnector::from(Arc::clone(&tls.client)),
            timing.clone(),
            Arc::clone(&faults),
        ));
        let network = NetworkFactory {
            transport: Arc::clone(&transport),
            me: id,
            backoff: timing.heartbeat * 4,
        };
        let log_store = LogStore::new(Arc::clone(&db));
        let state_machine = StateMachine::open(state, Arc::clone(&db)).map_err(ClusterError::Corrupt)?;
        let raft = Raft::new(id, Arc::new(config), network, log_store, state_machine)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let initial = node_state(raft.metrics().borrow().state);
        let timing_quiet = timing.startup_quiet;
        let relay = Arc::new(Relay::new(id, Arc::clone(&transport), raft.metrics(), timing.clone()));
        let inner = Arc::new(Inner {
            id,
            addr,
            raft,
            transport,
            faults: Arc::clone(&faults),
            timing: timing.clone(),
            last_state_change: Arc::new(Mutex::new((initial, SystemTime::now()))),
            tasks: Mutex::new(Vec::new()),
            db: Arc::downgrade(&db),
            relay: Arc::clone(&relay),
            leader_heard: Arc::new(tokio::sync::Notify::new()),
        });
        let tasks = vec![
            tokio::spawn(transport::serve(
                id,
                listener,
                TlsAcceptor::from(tls.server),
                Arc::downgrade(&inner),
                faults,
                timing,
            )),
            tokio::spawn(watch_state(inner.raft.metrics(), Arc::clone(&inner.last_state_change))),
            tokio::spawn(probe_members(Arc::downgrade(&inner))),
            tokio::spawn(relay::monitor(Arc::downgrade(&relay))),
            tokio::spawn(allow_elections(
                inner.raft.clone(),
                timing_quiet,
                Arc::clone(&inner.leader_heard),
            )),
        ];
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        log::info!("cluster: node {id:016x} listening on {}", options.listen);
        Ok(Cluster { inner })
    }

    /// This node's stable identity.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the other nodes reach this one at.
    pub fn address(&self) -> &str {
        &self.inner.addr
    }

    /// Make a one-node cluster of this node (`xmpp cluster initialize`).
    pub async fn initialize(&self) -> Result<(), MembershipError> {
        let members = BTreeMap::from([(
            self.inner.id,
            Member {
                addr: self.inner.addr.clone(),
            },
        )]);
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Err(MembershipError::AlreadyMember),
            Err(e) => Err(MembershipError::Refused(e.to_string())),
        }
    }

    /// Join the cluster that the node at `addr` belongs to (`xmpp cluster join`): the leader
    /// adds this node as a learner, waits for it to catch up, then makes it a voter. Returns
    /// once that membership is committed.
    ///
    /// Re-joining (CSCvi67717): a node's cluster address is what identifies it to an
    /// administrator, so any other member recorded at this node's address is a stale entry
    /// (the node was reset and came back with a fresh identity) and is removed in the same
    /// membership change; it is never listed beside the new one. A node that kept its
    /// identity but moved address has its address updated. Joining again as an existing
    /// voter changes nothing.
    pub async fn join(&self, addr: &str) -> Result<(), MembershipError> {
        let inner = &self.inner;
        let metrics = inner.metrics();
        let membership = metrics.membership_config.membership();
        if membership.voter_ids().any(|id| id == inner.id) && membership.voter_ids().count() > 1 {
            // Already a voter of a formed cluster: joining again changes nothing.
            return Ok(());
        }
        if membership.nodes().next().is_some() && !membership.voter_ids().any(|id| id == inner.id) {
            // A learner being added: the leader is already working on it.
            log::info!("cluster: join requested while already a learner");
        } else if membership.voter_ids().count() == 1 {
            return Err(MembershipError::AlreadyMember);
        }
        let request = || Request::Join {
            id: inner.id,
            addr: inner.addr.clone(),
        };
        inner
            .request_leader(addr.to_owned(), request, inner.timing.join_timeout)
            .await
    }

    /// Take a member out, by address or node id (decimal or 16-digit hex), from any node.
    pub async fn remove(&self, member: &str) -> Result<(), MembershipError> {
        let inner = &self.inner;
        if inner.is_leader() {
            return inner.remove_member(member).await;
        }
        let Some(leader) = inner.leader_addr() else {
            return Err(MembershipError::NoQuorum {
                unreachable: inner.unreachable_members(),
            });
        };
        let request = || Request::Remove {
            member: member.to_owned(),
        };
        inner
            .request_leader(leader, request, inner.timing.request_timeout)
            .await
    }

    /// Replicate `entry` and return the state's answer once it is applied on the leader.
    /// A follower passes the entry to the leader.
    pub async fn propose(&self, entry: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        // base64 in JSON grows it by a third; half a frame leaves room for the envelope and
        // for a few entries replicated together.
        let max = self.inner.timing.max_frame / 2 * 3 / 4;
        if entry.len() > max {
            return Err(ProposeError::TooLarge { size: entry.len(), max });
        }
        self.inner.propose(entry, true).await
    }

    pub fn status(&self) -> ClusterStatus {
        self.inner.status()
    }

    /// Whether this node is a voter of a cluster (one it initialized or joined): its shared
    /// writes then go through the log. Cheaper than [`Cluster::status`].
    pub fn is_member(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.inner.id)
    }

    /// Cut this node off from the members at `addrs` (an empty list heals): it neither calls
    /// them nor answers them. Simulates a network partition, for tests.
    #[doc(hidden)]
    pub fn set_blocked_peers(&self, addrs: &[String]) {
        self.inner.transport.set_blocked(addrs.iter().cloned().collect());
    }

    /// Queue `payload` for node `to` over the relay channel, without waiting (see
    /// [`RelayHandler`]).
    pub fn relay(&self, to: NodeId, payload: Vec<u8>) -> Result<(), RelayError> {
        self.inner.relay.send(to, payload)
    }

    /// Who hears relayed payloads and peer up/down (`None`: nobody; batches are refused).
    pub fn set_relay_handler(&self, handler: Option<Arc<dyn RelayHandler>>) {
        self.inner.relay.set_handler(handler);
    }

    /// Index of the last log entry applied on this node (`None` before the first).
    pub fn applied_index(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().last_applied.map(|id| id.index)
    }

    /// Wait, at most `limit`, until entry `index` is applied on this node; whether it is.
    pub async fn wait_applied(&self, index: u64, limit: Duration) -> bool {
        self.inner
            .raft
            .wait(Some(limit))
            .applied_index_at_least(Some(index), "relay")
            .await
            .is_ok()
    }

    /// The voters, with whether each answers now.
    pub fn members(&self) -> Vec<RelayMember> {
        self.inner.relay.members()
    }

    /// Peers refused at the TLS level (untrusted certificate, either direction).
    pub fn peer_faults(&self) -> Vec<PeerFault> {
        self.inner.faults.snapshot()
    }

    /// Stop consensus and close the cluster port. The data stays on disk for the next
    /// `open`.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        self.inner.relay.stop();
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        // openraft's state-machine and replication tasks end just after its core: wait for
        // them (bounded), so the databases and the replicated state are released when this
        // returns and the node can be opened again at once.
        for _ in 0..SHUTDOWN_POLLS {
            if self.inner.db.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Ok(())
    }
}

impl Drop for Inner {
    /// A handle dropped without `shutdown` still frees the cluster port.
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    fn metrics(&self) -> RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    fn member_addr(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|member| member.addr.clone())
    }

    fn leader_addr(&self) -> Option<String> {
        let leader = self.raft.metrics().borrow().current_leader?;
        self.member_addr(leader)
    }

    /// Voters other than this node that do not answer now.
    fn unreachable_members(&self) -> Vec<String> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        membership
            .voter_ids()
            .filter(|id| *id != self.id)
            .filter_map(|id| membership.get_node(&id))
            .filter(|member| !matches!(self.transport.health(&member.addr).1, Health::Reachable))
            .map(|member| member.addr.clone())
            .collect()
    }

    /// Whether a majority acknowledged this leader within `fresh` ms; a leader cut off from
    /// its followers must not take writes it cannot commit.
    fn leader_has_quorum_within(&self, metrics: &RaftMetrics<NodeId, Member>, fresh: u64) -> bool {
        if metrics.membership_config.membership().voter_ids().count() <= 1 {
            return true;
        }
        metrics.millis_since_quorum_ack.is_some_and(|millis| millis <= fresh)
    }

    fn leader_has_quorum(&self, metrics: &RaftMetrics<NodeId, Member>) -> bool {
        self.leader_has_quorum_within(metrics, self.timing.unreachable_after.as_millis() as u64)
    }

    fn write_quorum_freshness(&self) -> u64 {
        (self.timing.heartbeat * 4).as_millis() as u64
    }

    async fn propose(&self, entry: Vec<u8>, may_forward: bool) -> Result<Vec<u8>, ProposeError> {
        let deadline = Instant::now() + self.timing.propose_timeout;
        while Instant::now() < deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let metrics = self.metrics();
            match metrics.current_leader {
                Some(leader) if leader == self.id => {
                    // A tighter bound than the status uses: a majority lost a moment ago is
                    // noticed before the entry goes into the log (where it would stay, and
                    // commit later, after the caller was told it failed). Late heartbeats only
                    // delay a write here; the loop waits for them.
                    if !self.leader_has_quorum_within(&metrics, self.write_quorum_freshness()) {
                        tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                        continue;
                    }
                    let write = self.raft.client_write(Proposal(entry.clone()));
                    match tokio::time::timeout(remaining, write).await {
                        Ok(Ok(written)) => {
                            return match written.data {
                                ApplyOutcome::Applied(answer) => Ok(answer),
                                ApplyOutcome::Rejected(reason) => Err(ProposeError::Rejected(reason)),
                            };
                        }
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                            tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                        }
                        Ok(Err(e)) => return Err(ProposeError::Stopped(e.to_string())),
                        // In this leader's log but not committed in time: it may still be,
                        // if a majority comes back before another leader replaces the entry.
                        Err(_) => {
                            return Err(ProposeError::Unconfirmed {
                                unreachable: self.unreachable_members(),
                            });
                        }
                    }
                }
                Some(_) if !may_forward => {
                    return Err(ProposeError::NoQuorum {
                        unreachable: self.unreachable_members(),
                    });
                }
                Some(leader) => {
                    let Some(addr) = self.member_addr(leader) else {
                        tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                        continue;
                    };
                    let forwarded = self
                        .transport
                        .call(&addr, Some(leader), Request::Forward(entry.clone()), remaining)
                        .await;
                    match forwarded {
                        Ok(Response::Forward(answer)) => return answer,
                        Ok(_) | Err(_) => tokio::time::sleep(RETRY_PAUSE.min(remaining)).await,
                    }
                }
                None => tokio::time::sleep(RETRY_PAUSE.min(remaining)).await,
            }
        }
        Err(ProposeError::NoQuorum {
            unreachable: self.unreachable_members(),
        })
    }

    /// Send a membership request to `addr`, following the way to the leader.
    async fn request_leader(
        &self,
        mut addr: String,
        request: impl Fn() -> Request,
        ttl: Duration,
    ) -> Result<(), MembershipError> {
        let deadline = Instant::now() + ttl;
        let mut hops = 0;
        while hops < MAX_HOPS {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.transport.call(&addr, None, request(), remaining).await {
                Ok(Response::Membership(result)) => return result,
                Ok(Response::NotLeader { leader: Some(leader) }) => {
                    addr = leader;
                    hops += 1;
                }
                // An election in progress (the leader just left, `xmpp reset` on it): ask
                // again until one is known or the time is up.
                Ok(Response::NotLeader { leader: None }) if remaining > RETRY_PAUSE * 10 => {
                    tokio::time::sleep(RETRY_PAUSE * 5).await;
                }
                Ok(Response::NotLeader { leader: None }) => {
                    return Err(MembershipError::NoQuorum {
                        unreachable: vec![format!("no leader known to {addr}")],
                    });
                }
                Ok(other) => {
                    return Err(MembershipError::Refused(format!(
                        "unexpected answer from {addr}: {other:?}"
                    )));
                }
                Err(TransportError::Untrusted(reason)) => {
                    return Err(MembershipError::Untrusted { addr, reason });
                }
                Err(e) => {
                    return Err(MembershipError::Unreachable {
                        addr,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Err(MembershipError::Refused(
            "the leader keeps moving; try again".to_owned(),
        ))
    }

    fn not_leader(&self) -> Response {
        Response::NotLeader {
            leader: self.leader_addr(),
        }
    }

    fn membership_failure(&self, err: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> MembershipError {
        match err {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                MembershipError::Refused("this node stopped being the leader; try again".to_owned())
            }
            RaftError::APIError(e) => MembershipError::Refused(e.to_string()),
            RaftError::Fatal(e) => MembershipError::Stopped(e.to_string()),
        }
    }

    async fn change(&self, change: ChangeMembers<NodeId, Member>, deadline: Instant) -> Result<(), MembershipError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.membership_failure(e)),
            Err(_) => Err(MembershipError::NoQuorum {
                unreachable: self.unreachable_members(),
            }),
        }
    }

    /// On the leader: make `id` at `addr` a voter, dropping any other node recorded at the
    /// same address (that node was reset and comes back with a new identity: CSCvi67717).
    async fn add_member(&self, id: NodeId, addr: String) -> Result<(), MembershipError> {
        let deadline = Instant::now() + self.timing.join_timeout;
        let metrics = self.metrics();
        if !self.leader_has_quorum(&metrics) {
            return Err(MembershipError::NoQuorum {
                unreachable: self.unreachable_members(),
            });
        }
        let membership = metrics.membership_config.membership().clone();
        let stale: BTreeSet<NodeId> = membership
            .nodes()
            .filter(|(other, member)| **other != id && member.addr == addr)
            .map(|(other, _)| *other)
            .collect();
        let known = membership.get_node(&id).cloned();
        let is_voter = membership.voter_ids().any(|voter| voter == id);
        if is_voter && stale.is_empty() && known.as_ref().is_some_and(|m| m.addr == addr) {
            return Ok(());
        }
        let member = Member { addr: addr.clone() };
        match known {
            Some(old) if old.addr != addr => {
                log::info!("cluster: node {id:016x} moved from {} to {addr}", old.addr);
                self.change(ChangeMembers::SetNodes(BTreeMap::from([(id, member)])), deadline)
                    .await?;
            }
            Some(_) => {}
            None => {
                log::info!("cluster: adding node {id:016x} at {addr} as a learner");
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.raft.add_learner(id, member, true)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(self.membership_failure(e)),
                    Err(_) => {
                        return Err(MembershipError::Unreachable {
                            addr,
                            reason: "did not catch up in time".to_owned(),
                        });
                    }
                }
            }
        }
        let mut voters: BTreeSet<NodeId> = self
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .filter(|voter| !stale.contains(voter))
            .collect();
        voters.insert(id);
        if !stale.is_empty() {
            log::info!("cluster: node {id:016x} at {addr} replaces {stale:016x?}");
        }
        self.change(ChangeMembers::ReplaceAllVoters(voters), deadline).await?;
        // Stale learners are not voters, so the voter change leaves them: remove them too.
        let leftover: BTreeSet<NodeId> = self
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(node, _)| *node)
            .filter(|node| stale.contains(node))
            .collect();
        if !leftover.is_empty() {
            self.change(ChangeMembers::RemoveNodes(leftover), deadline).await?;
        }
        Ok(())
    }

    /// On the leader: take out the member named by address or id.
    async fn remove_member(&self, name: &str) -> Result<(), MembershipError> {
        let deadline = Instant::now() + self.timing.request_timeout;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let parsed = name
            .parse::<NodeId>()
            .ok()
            .or_else(|| NodeId::from_str_radix(name, 16).ok());
        let Some(id) = membership
            .nodes()
            .find(|(id, member)| member.addr == name || Some(**id) == parsed)
            .map(|(id, _)| *id)
        else {
            return Err(MembershipError::UnknownMember(name.to_owned()));
        };
        if membership.voter_ids().any(|voter| voter == id) {
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id])), deadline)
                .await?;
        }
        let still_there = self.metrics().membership_config.membership().get_node(&id).is_some();
        if still_there {
            self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id])), deadline)
                .await?;
        }
        log::info!("cluster: node {id:016x} ({name}) removed");
        Ok(())
    }

    fn status(&self) -> ClusterStatus {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, member)| {
                let me = *id == self.id;
                let (last_contact, health) = if me {
                    (Some(SystemTime::now()), Health::Me)
                } else {
                    self.transport.health(&member.addr)
                };
                MemberStatus {
                    id: *id,
                    addr: member.addr.clone(),
                    voter: voters.contains(id),
                    leader: metrics.current_leader == Some(*id),
                    me,
                    last_contact,
                    health,
                }
            })
            .collect();
        let last_state_change = self.last_state_change.lock().unwrap_or_else(|e| e.into_inner()).1;
        let quorum = match metrics.current_leader {
            Some(leader) if leader == self.id => self.leader_has_quorum(&metrics),
            Some(leader) => membership
                .get_node(&leader)
                .is_some_and(|m| self.transport.health(&m.addr).1 == Health::Reachable),
            None => false,
        };
        ClusterStatus {
            node_id: self.id,
            quorum,
            state: node_state(metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            members,
            last_state_change,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|id| id.index),
            snapshot_index: metrics.snapshot.map(|id| id.index),
            purged_index: metrics.purged.map(|id| id.index),
        }
    }
}

impl Handler for Inner {
    async fn handle(self: Arc<Self>, envelope: Envelope) -> Option<Response> {
        if let Some(from) = self.member_addr(envelope.from)
            && self.transport.is_blocked(&from)
        {
            return None;
        }
        Some(self.answer(envelope).await)
    }
}

impl Inner {
    async fn answer(self: Arc<Self>, envelope: Envelope) -> Response {
        if let Some(to) = envelope.to
            && to != self.id
        {
            return Response::WrongNode { actual: self.id };
        }
        match envelope.request {
            Request::AppendEntries(rpc) => {
                // A permit is kept until `allow_elections` takes it; later calls are no-ops.
                self.leader_heard.notify_one();
                Response::AppendEntries(self.raft.append_entries(rpc).await)
            }
            Request::Vote(rpc) => Response::Vote(self.raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => Response::InstallSnapshot(self.raft.install_snapshot(rpc).await),
            Request::Forward(entry) => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                match self.propose(entry, false).await {
                    // Leadership moved while the entry waited: the sender retries there.
                    Err(ProposeError::NoQuorum { .. }) if !self.is_leader() => self.not_leader(),
                    answer => Response::Forward(answer),
                }
            }
            Request::Join { id, addr } => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                Response::Membership(self.add_member(id, addr).await)
            }
            Request::Remove { member } => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                Response::Membership(self.remove_member(&member).await)
            }
            Request::Ping => Response::Pong { id: self.id },
            Request::Relay(batch) => self.relay.receive(envelope.from, batch),
        }
    }
}

/// Let this node call elections once a leader's append-entries reached it, or after `quiet`
/// without one (a whole cluster starting, or the leader being the node that is down). The
/// leader known from the vote on disk does not count: it may be the one that is gone. (A
/// sole voter needs no election at a restart: openraft resumes a leader from its vote.)
async fn allow_elections(raft: Raft<TypeConfig>, quiet: Duration, heard: Arc<tokio::sync::Notify>) {
    if tokio::time::timeout(quiet, heard.notified()).await.is_err() {
        log::info!(
            "cluster: no leader heard within {} ms of the start; elections allowed",
            quiet.as_millis()
        );
    }
    raft.runtime_config().elect(true);
}

/// Record when this node's role changes, for the status display.
async fn watch_state(
    mut metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, Member>>,
    last_change: Arc<Mutex<(NodeState, SystemTime)>>,
) {
    while metrics.changed().await.is_ok() {
        let state = node_state(metrics.borrow().state);
        let mut last = last_change.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 != state {
            log::info!("cluster: now {}", state.as_str());
            *last = (state, SystemTime::now());
        }
    }
}

/// Probe every other member, so each node knows every peer's health (followers do not
/// otherwise talk to each other). At most one probe per peer is in flight.
async fn probe_members(inner: std::sync::Weak<Inner>) {
    let mut in_flight: HashMap<NodeId, JoinHandle<()>> = HashMap::new();
    loop {
        let Some(strong) = inner.upgrade() else {
            break;
        };
        let interval = strong.timing.probe_interval;
        let ttl = strong.timing.unreachable_after;
        let peers: Vec<(NodeId, String)> = strong
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != strong.id)
            .map(|(id, member)| (*id, member.addr.clone()))
            .collect();
        let transport = Arc::clone(&strong.transport);
        drop(strong);
        in_flight.retain(|id, probe| !probe.is_finished() && peers.iter().any(|(peer, _)| peer == id));
        for (id, addr) in peers {
            if in_flight.contains_key(&id) {
                continue;
            }
            let transport = Arc::clone(&transport);
            let probe = tokio::spawn(async move {
                let _ = transport.call(&addr, Some(id), Request::Ping, ttl).await;
            });
            in_flight.insert(id, probe);
        }
        tokio::time::sleep(interval).await;
    }
    for probe in in_flight.into_values() {
        probe.abort();
    }
}
