//! The contract between consensus and the state it replicates.

/// Why an entry was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A deterministic refusal ("user exists"): every replica refuses the same entry the same
    /// way, so it is an answer for the proposer and consensus carries on.
    #[error("{0}")]
    Rejected(String),
    /// The replica could not apply or record the entry (storage broken). Consensus stops on
    /// this node: carrying on would let its state diverge from the others'.
    #[error("state machine fault: {0}")]
    Fault(String),
}

/// The replicated state cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state machine fault: {0}")]
pub struct StateFault(pub String);

/// The state the cluster replicates, opaque to consensus: entries and snapshots are bytes.
///
/// Crash safety rests on one rule: `apply` stores `index` atomically with the entry's effect
/// (same sled batch or transaction), and `last_applied` returns it. Consensus records its own
/// bookkeeping (the last applied log id and the membership) after `apply` returns; if the node
/// dies in between, the entry is offered again after the restart and skipped because its index
/// is not above `last_applied()`. So no entry is applied twice, and none is lost.
pub trait ReplicatedState: Send + Sync + 'static {
    /// Apply entry number `index` (strictly increasing across calls) and answer the proposer.
    fn apply(&self, index: u64, entry: &[u8]) -> Result<Vec<u8>, ApplyError>;

    /// The index stored by the last successful `apply` (or carried by the installed snapshot).
    fn last_applied(&self) -> Result<Option<u64>, StateFault>;

    /// The whole state, including its `last_applied` index, as bytes.
    fn snapshot(&self) -> Result<Vec<u8>, StateFault>;

    /// Replace the whole state with one produced by `snapshot` (possibly on another node).
    fn install_snapshot(&self, data: &[u8]) -> Result<(), StateFault>;
}
