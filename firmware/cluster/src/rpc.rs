//! The messages on the cluster port: one request frame, one response frame.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::error::{MembershipError, ProposeError};
use crate::{NodeId, TypeConfig};

/// Who sends and for whom. `to` guards against a node answering for an identity it no longer
/// has (a reset node listening on its old address must not vote for its old self).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub from: NodeId,
    pub to: Option<NodeId>,
    pub request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write a follower passes to the leader.
    Forward(#[serde(with = "crate::b64")] Vec<u8>),
    /// Add the node `id`, reachable at `addr`, as a voter (replacing a stale entry).
    Join {
        id: NodeId,
        addr: String,
    },
    /// Take a member out: an address or a node id.
    Remove {
        member: String,
    },
    /// Health probe.
    Ping,
    /// Relay payloads, in the order the sender queued them (see `relay.rs`).
    Relay(Vec<crate::relay::RelayPayload>),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Result<Vec<u8>, ProposeError>),
    Membership(Result<(), MembershipError>),
    Pong {
        id: NodeId,
    },
    /// Only the leader takes writes and membership changes; `leader` is its address if known.
    NotLeader {
        leader: Option<String>,
    },
    /// The request was addressed to another identity than this node's.
    WrongNode {
        actual: NodeId,
    },
    /// Every payload of a relay batch was handed to the relay handler.
    Relayed,
    /// The relay batch was not taken (sender not a member, no handler).
    RelayRefused(String),
}
