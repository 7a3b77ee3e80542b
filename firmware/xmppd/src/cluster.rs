//! This node's cluster: the store as the replicated state, the writer that sends shared
//! changes through the log once the node is a member, and the admin layer's `xmpp cluster`
//! operations.
//!
//! One [`ClusterNode`] lives for the daemon's lifetime; the consensus handle inside it comes and
//! goes with `xmpp cluster enable|disable` (followed from the change feed by the reconciler).
//!
//! Writes and formation are ordered by one gate: a write holds it shared for the time it takes;
//! `initialize`, `join` and `reset` hold it exclusively, so no local write slips in between the
//! state they read and the state the log then carries (a write made during a join would
//! otherwise land in a store about to be replaced).

use sb_admin::{ClusterLive, ClusterView, PeerHealth, PeerView};
use sb_cluster::{
    ApplyError, Cluster, ClusterOptions, Health, NodeState, ProposeError, ReplicatedState, StateFault, Timing,
};
use sb_store::{
    Answer, BoardInterface, ConfigChange, ConfigWriter, ListenTarget, LocalWriter, LogEntry, NodeConfig, Store,
    WriteError, Written,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How long a write waits for this node's replica to apply its own entry (a follower applies
/// after the leader answered).
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(10);
/// Pause between looks at a joining replica while it catches up with the log.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);
/// Bound on one admin call into the cluster beyond its own timeouts.
const ADMIN_CALL_LIMIT: Duration = Duration::from_secs(60);

/// The store, as consensus sees it.
pub struct StoreReplica(pub Store);

fn fault(err: sb_store::StoreError) -> StateFault {
    StateFault(err.to_string())
}

impl ReplicatedState for StoreReplica {
    fn apply(&self, index: u64, entry: &[u8]) -> Result<Vec<u8>, ApplyError> {
        self.0
            .apply_entry(index, entry)
            .map_err(|err| ApplyError::Fault(err.to_string()))
    }

    fn last_applied(&self) -> Result<Option<u64>, StateFault> {
        self.0.applied_index().map_err(fault)
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateFault> {
        self.0.replica_snapshot().map_err(fault)
    }

    fn install_snapshot(&self, data: &[u8]) -> Result<(), StateFault> {
        self.0.install_replica_snapshot(data).map_err(fault)
    }
}

/// What a running cluster was opened with; a change means closing and opening again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settings {
    listen: SocketAddr,
    key: String,
    cert: String,
    bundle: Option<String>,
    trust: String,
}

/// The server core to route for (once attached) and the directory running over the cluster.
#[derive(Default)]
struct Routing {
    core: Option<Arc<sb_server::core::Core>>,
    directory: Option<Arc<sb_relay::Directory>>,
}

struct Running {
    cluster: Cluster,
    settings: Settings,
}

pub struct ClusterNode {
    store: Store,
    dir: PathBuf,
    runtime: tokio::runtime::Handle,
    board: Vec<BoardInterface>,
    timing: Timing,
    running: RwLock<Option<Running>>,
    start_error: Mutex<Option<String>>,
    gate: RwLock<()>,
    /// Serialises reconcile/open/close against each other.
    lifecycle: tokio::sync::Mutex<()>,
    /// Routing across the nodes (sb-relay): the server's core, once it exists, and the
    /// directory running over the open cluster.
    routing: Mutex<Routing>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ClusterNode {
    pub fn new(store: Store, dir: &Path, board: Vec<BoardInterface>, timing: Timing) -> Arc<ClusterNode> {
        Arc::new(ClusterNode {
            store,
            dir: dir.to_path_buf(),
            runtime: tokio::runtime::Handle::current(),
            board,
            timing,
            running: RwLock::new(None),
            start_error: Mutex::new(None),
            gate: RwLock::new(()),
            lifecycle: tokio::sync::Mutex::new(()),
            routing: Mutex::new(Routing::default()),
        })
    }

    /// Route the server's stanzas across the cluster whenever it is open.
    pub fn attach_server(&self, core: Arc<sb_server::core::Core>) {
        self.routing.lock().unwrap_or_else(|p| p.into_inner()).core = Some(core);
        if let Some(cluster) = self.cluster() {
            self.start_routing(cluster);
        }
    }

    fn start_routing(&self, cluster: Cluster) {
        self.stop_routing();
        let mut routing = self.routing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(core) = routing.core.clone() {
            routing.directory = Some(sb_relay::Directory::start(cluster, core));
        }
    }

    fn stop_routing(&self) {
        let directory = self.routing.lock().unwrap_or_else(|p| p.into_inner()).directory.take();
        if let Some(directory) = directory {
            directory.stop();
        }
    }

    fn cluster(&self) -> Option<Cluster> {
        read(&self.running).as_ref().map(|running| running.cluster.clone())
    }

    fn set_start_error(&self, error: Option<String>) {
        *self.start_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// Open, close or reopen the cluster to match this node's settings. Called at start and
    /// after every change of the node's record.
    pub async fn reconcile(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        let node = match self.store.node_config() {
            Ok(node) => node,
            Err(err) => {
                log::error!("cluster: cannot read this node's settings: {err}");
                return;
            }
        };
        let wanted = if node.cluster.enabled {
            match self.settings(&node) {
                Ok(settings) => Some(settings),
                Err(reason) => {
                    log::error!("cluster: cannot start: {reason}");
                    self.set_start_error(Some(reason));
                    self.close().await;
                    return;
                }
            }
        } else {
            None
        };
        let current = read(&self.running).as_ref().map(|running| running.settings.clone());
        if current == wanted {
            return;
        }
        self.close().await;
        let Some(settings) = wanted else {
            self.set_start_error(None);
            return;
        };
        match self.open(&settings).await {
            Ok(cluster) => {
                log::info!("cluster: node {:016x} on {}", cluster.node_id(), settings.listen);
                self.set_start_error(None);
                *write(&self.running) = Some(Running {
                    cluster: cluster.clone(),
                    settings,
                });
                self.start_routing(cluster);
            }
            Err(reason) => {
                log::error!("cluster: cannot start: {reason}");
                self.set_start_error(Some(reason));
            }
        }
    }

    /// Where the cluster port listens: the first of the node's listen addresses (SPEC: the
    /// cluster port is on the node's `xmpp listen` addresses), on the cluster port.
    fn settings(&self, node: &NodeConfig) -> Result<Settings, String> {
        let tls = node
            .tls
            .as_ref()
            .ok_or("no certificate configured (xmpp certs <key> <crt> [<bundle>])")?;
        let trust = node
            .cluster
            .trust
            .clone()
            .ok_or("no trust bundle configured (xmpp cluster trust <bundle>)")?;
        let first = node
            .listen
            .first()
            .ok_or("no listen address configured (xmpp listen <iface or address>)")?;
        let target = ListenTarget::parse(first).map_err(|e| e.to_string())?;
        let interfaces = sb_listener::InterfaceWatch::new(self.board.clone()).current();
        let ip = target
            .ips(&interfaces)
            .map_err(|e| format!("no address for the cluster port: {e}"))?
            .into_iter()
            .next()
            .ok_or("no address for the cluster port")?;
        Ok(Settings {
            listen: SocketAddr::new(ip, node.cluster.port),
            key: tls.key.clone(),
            cert: tls.cert.clone(),
            bundle: tls.bundle.clone(),
            trust,
        })
    }

    async fn open(&self, settings: &Settings) -> Result<Cluster, String> {
        let certs = self.dir.join("certs");
        let configured = sb_store::TlsIdentity {
            key: settings.key.clone(),
            cert: settings.cert.clone(),
            bundle: settings.bundle.clone(),
        };
        let identity = sb_listener::tls::TlsIdentity::load(&certs, &configured).map_err(|e| e.to_string())?;
        let trust = sb_listener::tls::read_certs(&certs.join(&settings.trust))
            .map_err(|e| format!("trust bundle {}: {e}", settings.trust))?;
        let options = ClusterOptions {
            dir: self.dir.clone(),
            listen: settings.listen,
            advertise: None,
            tls: sb_cluster::TlsIdentity {
                chain: identity.chain,
                key: identity.key,
                trust,
            },
            timing: self.timing.clone(),
        };
        Cluster::open(options, Arc::new(StoreReplica(self.store.clone())))
            .await
            .map_err(|e| e.to_string())
    }

    async fn close(&self) {
        self.stop_routing();
        let running = write(&self.running).take();
        if let Some(running) = running
            && let Err(err) = running.cluster.shutdown().await
        {
            log::warn!("cluster: shutdown: {err}");
        }
    }

    /// Stop consensus (daemon shutdown); the membership stays on disk.
    pub async fn shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        self.close().await;
    }

    /// The running cluster's view for `xmpp status` and `xmpp cluster status`.
    pub fn view(&self) -> Option<ClusterView> {
        let cluster = self.cluster()?;
        let status = cluster.status();
        let member = status.members.iter().any(|m| m.me && m.voter);
        let state = if member {
            status.state.as_str()
        } else {
            NodeState::Learner.as_str()
        };
        let mut members = status.members;
        // Listed by address, as CMS does, so every node prints the same order.
        members.sort_by(|a, b| a.addr.cmp(&b.addr));
        Some(ClusterView {
            state: state.to_owned(),
            node_id: format!("{:016x}", status.node_id),
            address: cluster.address().to_owned(),
            term: status.term,
            last_state_change_unix: unix(status.last_state_change),
            quorum: status.quorum,
            members: members
                .iter()
                .map(|m| PeerView {
                    address: m.addr.clone(),
                    node_id: format!("{:016x}", m.id),
                    leader: m.leader,
                    me: m.me,
                    voter: m.voter,
                    last_contact_unix: m.last_contact.map(unix),
                    health: match &m.health {
                        Health::Me => PeerHealth::Me,
                        Health::Reachable => PeerHealth::Reachable,
                        Health::Unreachable { since, reason } => PeerHealth::Unreachable {
                            since_unix: since.map(unix),
                            reason: reason.clone(),
                        },
                        Health::Unknown => PeerHealth::Unknown,
                    },
                })
                .collect(),
            refused: cluster
                .peer_faults()
                .into_iter()
                .map(|f| format!("{}: {}", f.peer, f.reason))
                .collect(),
        })
    }

    pub fn start_error(&self) -> Option<String> {
        self.start_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run `future` on the daemon's runtime from the admin's blocking thread, bounded.
    fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> Result<T, String> {
        self.runtime
            .block_on(async { tokio::time::timeout(ADMIN_CALL_LIMIT, future).await })
            .map_err(|_| format!("no answer within {} s", ADMIN_CALL_LIMIT.as_secs()))
    }

    /// Propose `entry` and wait for this node to apply it; the outcome as a local write's.
    fn propose(&self, cluster: &Cluster, entry: &LogEntry) -> Result<Written, WriteError> {
        let bytes = entry.encode()?;
        let answer = self.runtime.block_on(cluster.propose(bytes)).map_err(|err| match err {
            ProposeError::NoQuorum { unreachable } => WriteError::NoQuorum { unreachable },
            ProposeError::Unconfirmed { unreachable } => WriteError::Unconfirmed { unreachable },
            other => WriteError::Rejected(other.to_string()),
        })?;
        let answer = Answer::decode(&answer)?;
        // Read-your-writes: the caller reads this node's replica next.
        if !self
            .runtime
            .block_on(cluster.wait_applied(answer.index, LOCAL_APPLY_WAIT))
        {
            log::warn!(
                "cluster: entry {} committed but not applied here within {} s",
                answer.index,
                LOCAL_APPLY_WAIT.as_secs()
            );
        }
        let applied = answer
            .outcome
            .map_err(|refusal| WriteError::Store(refusal.into_error()))?;
        Ok(Written {
            applied,
            seq: self.store.last_seq(),
        })
    }

    fn describe_join_changes(
        &self,
        before: &sb_store::SharedState,
        old: &(String, sb_store::FederationConfig),
    ) -> Vec<String> {
        let mut notes = Vec::new();
        let domain = self.store.service_config().map(|s| s.domain).unwrap_or_default();
        if !old.0.is_empty() && old.0 != domain {
            notes.push(format!("domain '{}' replaced by the cluster's '{domain}'", old.0));
        }
        if self.store.federation_config().ok().as_ref() != Some(&old.1) && *before != Default::default() {
            notes.push("federation settings replaced by the cluster's".to_owned());
        }
        notes
    }
}

/// Shared writes: through the log once this node is a member, to the local store before.
impl ConfigWriter for ClusterNode {
    fn write(&self, change: ConfigChange) -> Result<Written, WriteError> {
        let _gate = read(&self.gate);
        match self.cluster().filter(Cluster::is_member) {
            Some(cluster) => self.propose(&cluster, &LogEntry::Change(change)),
            None => LocalWriter::new(self.store.clone()).write(change),
        }
    }
}

impl ClusterLive for ClusterNode {
    fn view(&self) -> Option<ClusterView> {
        ClusterNode::view(self)
    }

    fn start_error(&self) -> Option<String> {
        ClusterNode::start_error(self)
    }

    /// A one-node cluster whose first entry is this node's whole shared state, so nodes that
    /// join later receive its users, bridges and settings through the log.
    fn initialize(&self) -> Result<(), String> {
        let _gate = write(&self.gate);
        let cluster = self.cluster().ok_or("cluster mode is off on this node")?;
        self.block_on(cluster.initialize())?.map_err(|e| e.to_string())?;
        let state = self.store.shared_state().map_err(|e| e.to_string())?;
        match self.propose(&cluster, &LogEntry::Replace(state)) {
            Ok(_) => Ok(()),
            Err(err) => Err(format!("the cluster was formed but its first entry failed: {err}")),
        }
    }

    fn join(&self, addr: &str, force: bool) -> Result<Vec<String>, String> {
        let _gate = write(&self.gate);
        let cluster = self.cluster().ok_or("cluster mode is off on this node")?;
        if cluster.is_member() && cluster.status().members.len() > 1 {
            return Ok(vec!["already a member of this cluster".to_owned()]);
        }
        let store_error = |e: sb_store::StoreError| e.to_string();
        let users = self.store.list_users().map_err(store_error)?;
        let bridges: Vec<String> = self
            .store
            .list_callbridges()
            .map_err(store_error)?
            .into_iter()
            .map(|b| b.name)
            .collect();
        let mut notes = Vec::new();
        if !users.is_empty() || !bridges.is_empty() {
            let held = [("users", &users), ("Call Bridges", &bridges)]
                .iter()
                .filter(|(_, names)| !names.is_empty())
                .map(|(what, names)| format!("{what} ({})", names.join(", ")))
                .collect::<Vec<_>>()
                .join(" and ");
            if !force {
                return Err(format!(
                    "this node holds its own {held}, which the cluster's would replace: \
                     xmpp reset first, or xmpp cluster join {addr} force to discard them"
                ));
            }
            notes.push(format!("discarded this node's {held}"));
        }
        let before = self.store.shared_state().map_err(store_error)?;
        let old = (
            self.store.service_config().map_err(store_error)?.domain,
            self.store.federation_config().map_err(store_error)?,
        );
        self.store.clear_shared().map_err(store_error)?;
        let joined = self
            .block_on(cluster.join(addr))
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(reason) = joined {
            if let Err(err) = self.store.restore_shared(&before) {
                log::error!("cluster: join failed and this node's state could not be put back: {err}");
            }
            return Err(reason);
        }
        // Caught up: the log this node holds is applied.
        let deadline = Instant::now() + LOCAL_APPLY_WAIT;
        while Instant::now() < deadline {
            let status = cluster.status();
            if status.last_log_index.is_some() && status.last_applied_index >= status.last_log_index {
                break;
            }
            std::thread::sleep(CATCH_UP_POLL);
        }
        notes.extend(self.describe_join_changes(&before, &old));
        Ok(notes)
    }

    fn remove(&self, member: &str) -> Result<(), String> {
        let cluster = self.cluster().ok_or("cluster mode is off on this node")?;
        if member == cluster.address() || member.eq_ignore_ascii_case(&format!("{:016x}", cluster.node_id())) {
            return Err("this node cannot remove itself: xmpp reset leaves the cluster".to_owned());
        }
        self.block_on(cluster.remove(member))?.map_err(|e| e.to_string())
    }

    fn leave(&self) -> Result<Vec<String>, String> {
        let _gate = write(&self.gate);
        let mut notes = Vec::new();
        self.stop_routing();
        let running = write(&self.running).take();
        if let Some(running) = running {
            let cluster = running.cluster;
            let status = cluster.status();
            if cluster.is_member() && status.members.len() > 1 {
                match self.block_on(cluster.remove(cluster.address())) {
                    Ok(Ok(())) => notes.push(format!(
                        "left the cluster ({} members remain)",
                        status.members.len() - 1
                    )),
                    Ok(Err(err)) => notes.push(format!(
                        "could not leave the cluster cleanly ({err}): on a member, xmpp cluster remove {}",
                        cluster.address()
                    )),
                    Err(err) => notes.push(format!("could not leave the cluster cleanly: {err}")),
                }
            }
            if let Err(err) = self.block_on(cluster.shutdown()) {
                log::warn!("cluster: shutdown: {err}");
            }
        }
        let raft = self.dir.join("raft");
        if raft.exists() {
            std::fs::remove_dir_all(&raft).map_err(|e| format!("cannot remove {}: {e}", raft.display()))?;
            notes.push("forgot this node's cluster identity".to_owned());
        }
        Ok(notes)
    }
}
