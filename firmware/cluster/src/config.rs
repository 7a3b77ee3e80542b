//! What a node needs to start, and the timing it runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::tls::TlsIdentity;

/// The cluster port when the administrator names none.
pub const DEFAULT_CLUSTER_PORT: u16 = 5270;

/// Everything [`crate::Cluster::open`] needs.
pub struct ClusterOptions {
    /// The node's data folder; consensus keeps its own sled database in `dir/raft`.
    pub dir: PathBuf,
    /// Where the cluster listener binds.
    pub listen: SocketAddr,
    /// `<address>:<port>` the other nodes reach this one at; `listen` when `None`.
    pub advertise: Option<String>,
    /// This node's certificate and key, and the bundle a peer's chain must lead to.
    pub tls: TlsIdentity,
    pub timing: Timing,
}

/// Timeouts and thresholds. The defaults suit loopback and a LAN: a dead leader is noticed
/// after 150–300 ms without heartbeats and replaced within one election round.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Leader heartbeat period (also openraft's append-entries timeout). Default 50 ms.
    pub heartbeat: Duration,
    /// Election timeout range: a follower without heartbeats for a random time in this range
    /// stands for election. Default 150–300 ms.
    pub election_min: Duration,
    pub election_max: Duration,
    /// TCP connect to a peer. Default 500 ms.
    pub connect_timeout: Duration,
    /// TLS handshake with a peer, both directions. Default 1 s.
    pub handshake_timeout: Duration,
    /// One forwarded write, join or remove request to another node. Default 5 s.
    pub request_timeout: Duration,
    /// How long `propose` waits for a leader and a commit before answering no quorum.
    /// Default 2 s.
    pub propose_timeout: Duration,
    /// How long `join` waits for the new node to catch up and become a voter. Default 20 s.
    pub join_timeout: Duration,
    /// Every member is probed this often, for health and last contact. Default 200 ms.
    pub probe_interval: Duration,
    /// A member neither probed nor heard from successfully for this long is unreachable.
    /// Default 1 s.
    pub unreachable_after: Duration,
    /// A node that starts calls no election until it has heard from a leader or this long has
    /// passed. Raft without pre-vote lets a restarted member depose a healthy leader: the
    /// leader's replication to it is still backing off, so the newcomer's election timer
    /// fires first and its higher term makes the leader step down. Default 1 s.
    pub startup_quiet: Duration,
    /// Build a snapshot after this many applied entries since the last one. Default 5000.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so briefly absent nodes catch up from the
    /// log rather than by snapshot. Default 1000.
    pub logs_kept_after_snapshot: u64,
    /// Largest frame accepted on the cluster port. Default 16 MiB.
    pub max_frame: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            propose_timeout: Duration::from_secs(2),
            join_timeout: Duration::from_secs(20),
            probe_interval: Duration::from_millis(200),
            unreachable_after: Duration::from_secs(1),
            startup_quiet: Duration::from_secs(1),
            snapshot_every: 5000,
            logs_kept_after_snapshot: 1000,
            max_frame: 16 * 1024 * 1024,
        }
    }
}

impl Timing {
    /// openraft's configuration for these timings.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, String> {
        let millis = |d: Duration| d.as_millis().max(1) as u64;
        let config = openraft::Config {
            cluster_name: "switchboard".to_owned(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_min),
            election_timeout_max: millis(self.election_max),
            install_snapshot_timeout: millis(self.request_timeout),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // A JSON-encoded chunk grows up to four times; keep it well inside one frame.
            snapshot_max_chunk_size: (self.max_frame / 8).max(1024) as u64,
            // Turned on by the cluster once the start is quiet (see `startup_quiet`);
            // `initialize` elects regardless.
            enable_elect: false,
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}
