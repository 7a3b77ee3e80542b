use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value that no longer decodes. The value itself is never quoted: it may be a
    /// secret.
    #[error("store: record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "store: schema version {found} was written by a newer Switchboard (this one supports up to {supported}); \
         refusing to open it rather than risk damaging it. The data is intact: boot the newer firmware again \
         (`upgrade rollback` returns to the other slot)"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("store: {path} is in use by another process (is xmppd running?)")]
    Locked { path: PathBuf },
    #[error("user '{0}' already exists")]
    UserExists(String),
    #[error("no such user '{0}'")]
    UserNotFound(String),
    #[error("callbridge '{0}' already exists")]
    CallBridgeExists(String),
    #[error("no such callbridge '{0}'")]
    CallBridgeNotFound(String),
    /// A compare-and-set of a roster item found it changed meanwhile (by another node of the
    /// cluster): read it again and redo the change.
    #[error("roster item '{contact}' of '{user}' changed meanwhile")]
    RosterItemChanged { user: String, contact: String },
    #[error("offline message queue of '{user}' is full ({limit} messages)")]
    OfflineQueueFull { user: String, limit: u32 },
    /// A per-account quota or the global store budget (see `quota.rs`).
    #[error("{0}")]
    QuotaExceeded(crate::Quota),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// A change that does not fit the stored state (already on a list, no such route); the
    /// text is for the operator.
    #[error("{0}")]
    Rejected(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The stored data itself is unusable (unreadable by sled, a record that no longer decodes,
    /// a schema from a newer build): opening again will fail the same way until someone
    /// repairs or restores it. Locks and I/O errors may pass and are not damage.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Sled(err) => !matches!(err, sled::Error::Io(_)),
            StoreError::Corrupt { .. } | StoreError::SchemaTooNew { .. } => true,
            _ => false,
        }
    }
}

/// Unwrap sled's transaction error: our own aborts come back as themselves.
impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(err: sled::transaction::TransactionError<StoreError>) -> Self {
        match err {
            sled::transaction::TransactionError::Abort(inner) => inner,
            sled::transaction::TransactionError::Storage(inner) => StoreError::Sled(inner),
        }
    }
}
