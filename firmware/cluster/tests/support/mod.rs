//! A test cluster on 127.0.<net>.x (one port for all): real TCP, mutual TLS with certificates from a test CA,
//! sled in temporary folders. Every wait is bounded polling; no assertion depends on timing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sb_cluster::{
    ApplyError, Cluster, ClusterOptions, ClusterStatus, DEFAULT_CLUSTER_PORT, NodeId, NodeState, ReplicatedState,
    StateFault, Timing, TlsIdentity,
};

/// Longest any single wait may take before the test fails.
pub const WAIT_LIMIT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(20);

/// A test certificate authority issuing node certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A node certificate naming the XMPP domain (not the node), trusting `trust_pem`.
    pub fn identity(&self, trust_pem: &str) -> TlsIdentity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["xmpp.example.com".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "xmpp.example.com");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TlsIdentity::from_pem(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            trust_pem.as_bytes(),
        )
        .unwrap()
    }
}

/// A replicated state on sled that records every entry in order.
pub struct TestState {
    db: sled::Db,
    pub snapshots_installed: AtomicUsize,
}

const LAST: &[u8] = b"last";

fn entry_key(index: u64) -> Vec<u8> {
    let mut key = b"e".to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn fault(e: impl std::fmt::Display) -> StateFault {
    StateFault(e.to_string())
}

impl TestState {
    pub fn open(dir: &Path) -> Arc<TestState> {
        let path = dir.join("state");
        for _ in 0..200 {
            match sled::Config::new().path(&path).cache_capacity(1 << 20).open() {
                Ok(db) => {
                    return Arc::new(TestState {
                        db,
                        snapshots_installed: AtomicUsize::new(0),
                    });
                }
                // Still locked by the node just shut down (its state machine task ends last);
                // sled reports the lock as an I/O error of kind Other.
                Err(sled::Error::Io(_)) => std::thread::sleep(Duration::from_millis(25)),
                Err(e) => panic!("cannot open the test state: {e}"),
            }
        }
        panic!("the test state stayed locked");
    }

    /// Every applied entry, in log order.
    pub fn entries(&self) -> Vec<Vec<u8>> {
        self.db.scan_prefix(b"e").map(|item| item.unwrap().1.to_vec()).collect()
    }
}

impl ReplicatedState for TestState {
    fn apply(&self, index: u64, entry: &[u8]) -> Result<Vec<u8>, ApplyError> {
        if let Some(name) = entry.strip_prefix(b"reject:") {
            return Err(ApplyError::Rejected(format!(
                "{} exists",
                String::from_utf8_lossy(name)
            )));
        }
        let mut batch = sled::Batch::default();
        batch.insert(entry_key(index), entry);
        batch.insert(LAST, &index.to_be_bytes());
        self.db
            .apply_batch(batch)
            .map_err(|e| ApplyError::Fault(e.to_string()))?;
        let mut answer = b"ok:".to_vec();
        answer.extend_from_slice(entry);
        Ok(answer)
    }

    fn last_applied(&self) -> Result<Option<u64>, StateFault> {
        Ok(self
            .db
            .get(LAST)
            .map_err(fault)?
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap())))
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateFault> {
        let mut entries = Vec::new();
        for item in self.db.scan_prefix(b"e") {
            let (key, value) = item.map_err(fault)?;
            let index = u64::from_be_bytes(key[1..].try_into().unwrap());
            entries.push((index, value.to_vec()));
        }
        serde_json::to_vec(&(self.last_applied()?, entries)).map_err(fault)
    }

    fn install_snapshot(&self, data: &[u8]) -> Result<(), StateFault> {
        let (last, entries): (Option<u64>, Vec<(u64, Vec<u8>)>) = serde_json::from_slice(data).map_err(fault)?;
        let mut batch = sled::Batch::default();
        for item in self.db.iter() {
            batch.remove(item.map_err(fault)?.0);
        }
        for (index, entry) in entries {
            batch.insert(entry_key(index), entry);
        }
        if let Some(last) = last {
            batch.insert(LAST, &last.to_be_bytes());
        }
        self.db.apply_batch(batch).map_err(fault)?;
        self.snapshots_installed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub struct Node {
    pub cluster: Cluster,
    pub state: Arc<TestState>,
}

/// Nodes 127.0.<net>.1, .2, ..., each with its own folder.
pub struct Harness {
    pub base: tempfile::TempDir,
    pub ca: Ca,
    pub net: u8,
    /// One port for every node (each has its own address): free when the harness was made,
    /// so two test runs at once do not collide on the default port.
    pub port: u16,
    pub timing: Timing,
    pub nodes: Vec<Option<Node>>,
    /// Leader seen in each term, across every status poll of the test.
    pub leaders: BTreeMap<u64, NodeId>,
}

impl Harness {
    pub fn new(net: u8, count: usize) -> Harness {
        Harness::with_timing(net, count, Timing::default())
    }

    pub fn with_timing(net: u8, count: usize, timing: Timing) -> Harness {
        let first = IpAddr::V4(Ipv4Addr::new(127, 0, net, 1));
        let port = std::net::TcpListener::bind((first, 0))
            .and_then(|probe| probe.local_addr())
            .map(|addr| addr.port())
            .unwrap_or(DEFAULT_CLUSTER_PORT);
        Harness {
            base: tempfile::tempdir().unwrap(),
            ca: Ca::new("Switchboard Test CA"),
            net,
            port,
            timing,
            nodes: (0..count).map(|_| None).collect(),
            leaders: BTreeMap::new(),
        }
    }

    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self.net, i as u8 + 1))
    }

    pub fn addr(&self, i: usize) -> String {
        SocketAddr::new(self.ip(i), self.port).to_string()
    }

    pub fn dir(&self, i: usize) -> PathBuf {
        self.base.path().join(format!("node{i}"))
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn cluster(&self, i: usize) -> &Cluster {
        &self.node(i).cluster
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// Start node `i` from its folder (created on first start) with an identity from `ca`.
    pub async fn start_with(&mut self, i: usize, identity: TlsIdentity) {
        let dir = self.dir(i);
        std::fs::create_dir_all(&dir).unwrap();
        let state = TestState::open(&dir);
        let options = ClusterOptions {
            dir,
            listen: SocketAddr::new(self.ip(i), self.port),
            advertise: None,
            tls: identity,
            timing: self.timing.clone(),
        };
        let cluster = Cluster::open(options, state.clone() as Arc<dyn ReplicatedState>)
            .await
            .unwrap();
        self.nodes[i] = Some(Node { cluster, state });
    }

    pub async fn start(&mut self, i: usize) {
        let identity = self.ca.identity(&self.ca.pem);
        self.start_with(i, identity).await;
    }

    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        node.cluster.shutdown().await.unwrap();
    }

    /// Stop node `i` and forget everything it had (`xmpp reset`).
    pub async fn reset(&mut self, i: usize) {
        self.stop(i).await;
        std::fs::remove_dir_all(self.dir(i)).unwrap();
    }

    fn statuses(&self) -> Vec<(usize, ClusterStatus)> {
        self.running()
            .into_iter()
            .map(|i| (i, self.cluster(i).status()))
            .collect()
    }

    /// Record the leader of each term seen and check the status invariants.
    pub fn observe(&mut self) {
        for (i, status) in self.statuses() {
            let leader_lines = status.members.iter().filter(|m| m.leader).count();
            assert!(leader_lines <= 1, "node {i} shows {leader_lines} leaders");
            assert!(
                status.members.iter().filter(|m| m.me).count() <= 1,
                "node {i} shows itself twice"
            );
            if status.state == NodeState::Leader {
                let previous = self.leaders.insert(status.term, status.node_id);
                if let Some(previous) = previous {
                    assert_eq!(previous, status.node_id, "two leaders in term {}", status.term);
                }
            }
        }
    }

    /// Poll (observing every round) until `check` holds.
    pub async fn wait_until(&mut self, what: &str, mut check: impl FnMut(&Harness) -> bool) {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            self.observe();
            if check(self) {
                return;
            }
            if Instant::now() > deadline {
                panic!("gave up waiting: {what}; statuses: {:#?}", self.statuses());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The running node that leads, with every running node agreeing on it.
    pub fn agreed_leader(&self) -> Option<usize> {
        let statuses = self.statuses();
        let leader = statuses.iter().find(|(_, status)| status.state == NodeState::Leader)?;
        let leader_id = leader.1.node_id;
        statuses
            .iter()
            .all(|(_, status)| status.leader == Some(leader_id))
            .then_some(leader.0)
    }

    pub async fn wait_leader(&mut self) -> usize {
        self.wait_until("a leader all running nodes agree on", |h| h.agreed_leader().is_some())
            .await;
        self.agreed_leader().unwrap()
    }

    /// Initialize node 0 and join every other running node through it.
    pub async fn form(&mut self) {
        let count = self.nodes.len();
        for i in 0..count {
            self.start(i).await;
        }
        self.cluster(0).initialize().await.unwrap();
        self.wait_until("node 0 leads", |h| h.cluster(0).status().state == NodeState::Leader)
            .await;
        let first = self.addr(0);
        for i in 1..count {
            self.cluster(i).join(&first).await.unwrap();
        }
        self.wait_members(count).await;
    }

    /// Wait until every running node lists exactly `count` voters, all on distinct addresses.
    pub async fn wait_members(&mut self, count: usize) {
        self.wait_until(&format!("{count} voters everywhere"), |h| {
            h.running().into_iter().all(|i| {
                let status = h.cluster(i).status();
                let mut addrs: Vec<_> = status.members.iter().map(|m| m.addr.clone()).collect();
                addrs.sort();
                addrs.dedup();
                status.members.len() == count && addrs.len() == count && status.members.iter().all(|m| m.voter)
            })
        })
        .await;
    }

    /// Propose until it succeeds (a leader change may make one attempt fail).
    pub async fn propose_ok(&mut self, on: usize, entry: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            self.observe();
            match self.cluster(on).propose(entry.to_vec()).await {
                Ok(answer) => return answer,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("propose on node {on} failed, retrying: {e}");
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => panic!("propose on node {on} kept failing: {e}"),
            }
        }
    }

    /// Wait until every running node applied exactly `expected`, in that order.
    pub async fn wait_entries(&mut self, expected: &[Vec<u8>]) {
        self.wait_until("every node applied the same entries", |h| {
            h.running().into_iter().all(|i| h.node(i).state.entries() == expected)
        })
        .await;
    }

    pub async fn shutdown_all(&mut self) {
        for i in self.running() {
            self.stop(i).await;
        }
    }
}

impl Harness {
    /// Wait until every running node applied the same entries, including all of `expected`
    /// (a proposal retried after a leader change may be applied twice).
    pub async fn wait_converged(&mut self, expected: &[Vec<u8>]) -> Vec<Vec<u8>> {
        self.wait_until("every node applied the same entries", |h| {
            let running = h.running();
            let first = h.node(running[0]).state.entries();
            expected.iter().all(|e| first.contains(e)) && running.iter().all(|i| h.node(*i).state.entries() == first)
        })
        .await;
        self.node(self.running()[0]).state.entries()
    }
}
