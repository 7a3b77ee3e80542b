//! What `xmpp cluster status` and `xmpp status` show.

use std::time::SystemTime;

use crate::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Leader,
    Follower,
    Candidate,
    /// Not (yet) a voter: a pristine node, or one being added.
    Learner,
    Shutdown,
}

impl NodeState {
    /// The word the status line prints.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Leader => "LEADER",
            NodeState::Follower => "FOLLOWER",
            NodeState::Candidate => "CANDIDATE",
            NodeState::Learner => "LEARNER",
            NodeState::Shutdown => "SHUTDOWN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// This node.
    Me,
    /// Answered within the unreachable threshold.
    Reachable,
    /// Has not answered since `since` (`None`: never answered).
    Unreachable { since: Option<SystemTime>, reason: String },
    /// Not probed yet.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub id: NodeId,
    /// `<address>:<port>` of its cluster listener.
    pub addr: String,
    pub voter: bool,
    pub leader: bool,
    pub me: bool,
    pub last_contact: Option<SystemTime>,
    pub health: Health,
}

#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub state: NodeState,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// A leader backed by a majority is known and answers: writes can succeed.
    pub quorum: bool,
    pub members: Vec<MemberStatus>,
    pub last_state_change: SystemTime,
    /// Index of the last entry in this node's log, and of the last one applied.
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Entries up to here were compacted into the snapshot.
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
}

/// A peer refused at the TLS level (either direction), kept for the status display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFault {
    /// The peer's socket address (inbound) or cluster address (outbound).
    pub peer: String,
    pub reason: String,
    pub at: SystemTime,
}
