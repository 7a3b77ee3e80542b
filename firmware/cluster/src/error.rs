//! Errors of the cluster handle.

use serde::{Deserialize, Serialize};

use crate::tls::TlsError;

/// Opening or running the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("cluster storage is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cluster TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("bad cluster timing: {0}")]
    Config(String),
    #[error("consensus: {0}")]
    Raft(String),
}

fn unreachable_list(unreachable: &[String]) -> String {
    if unreachable.is_empty() {
        "no leader reachable".to_owned()
    } else {
        format!("unreachable: {}", unreachable.join(", "))
    }
}

/// A proposed entry was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    /// No leader with a majority behind it answered in time; the entry may still be applied
    /// later if it reached a leader's log before the quorum was lost.
    #[error("no quorum ({})", unreachable_list(.unreachable))]
    NoQuorum { unreachable: Vec<String> },
    /// The entry is in the leader's log but a majority did not confirm it in time: it takes
    /// effect if a majority comes back before another leader overwrites it.
    #[error("no quorum ({}): not confirmed; it takes effect if the cluster recovers", unreachable_list(.unreachable))]
    Unconfirmed { unreachable: Vec<String> },
    /// The replicated state refused the entry (deterministic, on every node alike).
    #[error("{0}")]
    Rejected(String),
    /// The entry could not travel in one frame; it is refused before reaching the log.
    #[error("entry of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("cluster stopped: {0}")]
    Stopped(String),
}

/// Initialize, join or remove failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MembershipError {
    #[error("no quorum ({})", unreachable_list(.unreachable))]
    NoQuorum { unreachable: Vec<String> },
    #[error("{addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} is not trusted: {reason}")]
    Untrusted { addr: String, reason: String },
    #[error("this node is already part of a cluster")]
    AlreadyMember,
    #[error("no member {0}")]
    UnknownMember(String),
    #[error("{0}")]
    Refused(String),
    #[error("cluster stopped: {0}")]
    Stopped(String),
}
