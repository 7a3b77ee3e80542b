//! The one door shared-state writes go through: admin commands and the server's roster and
//! offline storage hand a [`ConfigChange`] to a [`ConfigWriter`]. On a single node
//! [`LocalWriter`] applies it to the local store; a cluster's writer will propose it to the
//! replicated log instead, which may answer [`WriteError::NoQuorum`].

use crate::Store;
use crate::change::{Applied, ConfigChange};
use crate::error::StoreError;

/// A change that was applied, and where it is on the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub applied: Applied,
    /// The feed sequence number of the change: wait for a subscriber to reach it to know it
    /// has reacted (`xmpp status` right after `xmpp listen`).
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The cluster could not commit the change: fewer than a majority of nodes answered.
    /// Never produced by [`LocalWriter`].
    #[error("no quorum ({})", unreachable.join(", "))]
    NoQuorum { unreachable: Vec<String> },
    /// The change reached the leader's log but a majority did not confirm it in time: it
    /// takes effect if the cluster recovers first. Never produced by [`LocalWriter`].
    #[error("no quorum ({}): not confirmed; it takes effect if the cluster recovers", unreachable.join(", "))]
    Unconfirmed { unreachable: Vec<String> },
    /// The store refused or failed the change (an unknown user, a full queue, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer refused the change before applying it (e.g. a node that may not write).
    #[error("{0}")]
    Rejected(String),
}

impl WriteError {
    /// The store's refusal, if that is what this is.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            WriteError::Store(err) => Some(err),
            WriteError::NoQuorum { .. } | WriteError::Unconfirmed { .. } | WriteError::Rejected(_) => None,
        }
    }
}

/// Blocking: may fsync (and later wait for a quorum). Async callers use a blocking thread.
pub trait ConfigWriter: Send + Sync {
    fn write(&self, change: ConfigChange) -> Result<Written, WriteError>;
}

/// Single node: apply to the local store.
#[derive(Clone, Debug)]
pub struct LocalWriter {
    store: Store,
}

impl LocalWriter {
    pub fn new(store: Store) -> LocalWriter {
        LocalWriter { store }
    }
}

impl ConfigWriter for LocalWriter {
    fn write(&self, change: ConfigChange) -> Result<Written, WriteError> {
        let (applied, seq) = self.store.apply_with_seq(&change)?;
        Ok(Written { applied, seq })
    }
}
