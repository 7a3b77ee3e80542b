//! Cluster consensus for Switchboard (issue 11, first landing): openraft 0.9 with its log,
//! vote and state-machine bookkeeping in sled, and the node-to-node transport over mutual
//! TLS.
//!
//! The replicated state itself is opaque here: entries are bytes, applied through the
//! [`ReplicatedState`] trait that the configuration store implements later. The daemon drives
//! everything through one [`Cluster`] handle.
//!
//! Defaults (see [`Timing`]): heartbeat 50 ms, election timeout 150–300 ms, so on loopback a
//! dead leader is replaced well inside one second (about 0.5 s: openraft's followers also
//! refuse to vote while the old leader's lease, the maximum election timeout, runs).
//!
//! Shape:
//! - `DIR/raft` is this crate's sled database: the log (fsynced before openraft hears it is
//!   written), the vote (fsynced), the purge and commit marks, openraft's applied
//!   bookkeeping, the current snapshot and the node's stable identity.
//! - Node-to-node links are TLS 1.3 with client certificates; a peer is admitted when its
//!   chain leads to the trust bundle (names are not checked). Frames are a 4-byte length and
//!   JSON, with opaque bytes in base64.
//! - A re-join is matched by cluster address: a node reset (new identity) that joins from the
//!   address of a member replaces that member (CSCvi67717).

mod b64;
mod cluster;
mod config;
mod error;
mod frame;
mod log_store;
mod network;
mod raft_db;
mod relay;
mod rpc;
mod state;
mod state_machine;
mod status;
#[cfg(test)]
mod storage_tests;
mod tls;
mod transport;

use std::fmt;
// `declare_raft_types!` names `Cursor` unqualified for its default snapshot data type.
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use cluster::Cluster;
pub use config::{ClusterOptions, DEFAULT_CLUSTER_PORT, Timing};
pub use error::{ClusterError, MembershipError, ProposeError};
pub use relay::{RELAY_QUEUE_PER_PEER, RelayError, RelayHandler, RelayMember};
pub use state::{ApplyError, ReplicatedState, StateFault};
pub use status::{ClusterStatus, Health, MemberStatus, NodeState, PeerFault};
pub use tls::{TlsError, TlsIdentity};

/// A node's stable identity: random, generated once and kept in `DIR/raft`.
pub type NodeId = u64;

/// What the membership records about a node: where its cluster port answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Member {
    /// `<address>:<port>` of the node's cluster listener.
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// One proposed entry: opaque bytes for the [`ReplicatedState`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proposal(#[serde(with = "b64")] pub Vec<u8>);

/// What applying an entry gave, returned to whoever proposed it. A rejection is a
/// deterministic application answer (every replica rejects the same entry the same way), not
/// a fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied(#[serde(with = "b64")] Vec<u8>),
    Rejected(String),
}

openraft::declare_raft_types!(
    /// openraft's type configuration for Switchboard.
    pub TypeConfig:
        D = Proposal,
        R = ApplyOutcome,
        NodeId = NodeId,
        Node = Member,
);
