//! The store as a replica of the cluster's log: what an entry and a snapshot look like as bytes,
//! and applying them with the log index recorded beside the state.
//!
//! Consensus (sb-cluster) sees entries and snapshots as opaque bytes; their format is the
//! store's business, so it lives here. Everything is JSON: entries are small configuration
//! changes, and a readable log is worth more than a compact one.
//!
//! Shared trees only: this node's own record (`config/node`) and the schema marker never
//! travel, so a snapshot from another node never changes where this node listens.

use crate::change::{Applied, ConfigChange, ExportedTree, FeedEvent};
use crate::error::{Result, StoreError};
use crate::{Quota, Store, decode, decode_u64, encode};
use serde::{Deserialize, Serialize};

/// Where the index of the last applied entry is kept (the `meta` tree, never exported).
const APPLIED_KEY: &[u8] = b"replica_applied";

/// The tree whose node record stays on this node; its other records are shared.
const CONFIG_TREE: &str = "config";

/// Every tree of the schema but the schema marker is shared; `config` last, as it is partly.
fn shared_trees() -> impl Iterator<Item = &'static str> {
    crate::migrations::TREES
        .iter()
        .copied()
        .filter(|name| *name != crate::migrations::META_TREE && *name != CONFIG_TREE)
        .chain([CONFIG_TREE])
}

fn is_shared_tree(name: &str) -> bool {
    shared_trees().any(|shared| shared == name)
}

/// One entry of the replicated log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LogEntry {
    /// A configuration change, applied with [`Store::apply`]'s rules.
    Change(ConfigChange),
    /// The whole shared state, replacing what the replica has. The first entry of a cluster
    /// (`xmpp cluster initialize`): it carries the founding node's users, bridges and settings
    /// through the log to every node that joins later.
    Replace(SharedState),
}

/// The shared state as data: the trees, in key order.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SharedState {
    pub trees: Vec<ExportedTree>,
}

/// A snapshot: the shared state and the index of the last entry it contains.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    applied: Option<u64>,
    state: SharedState,
}

/// A deterministic refusal, as it travels back from the node that applied the entry to the
/// node that proposed it; it becomes the same [`StoreError`] there, so callers see no
/// difference between a local and a replicated write.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Refusal {
    UserExists(String),
    UserNotFound(String),
    CallBridgeExists(String),
    CallBridgeNotFound(String),
    OfflineQueueFull { user: String, limit: u32 },
    QuotaExceeded(Quota),
    Rejected(String),
    RosterItemChanged { user: String, contact: String },
}

impl Refusal {
    /// The refusal in `err`, or `None` when `err` is a fault of this replica (I/O, corrupt
    /// record): not an answer, since another replica would not fail the same way.
    fn of(err: &StoreError) -> Option<Refusal> {
        Some(match err {
            StoreError::UserExists(name) => Refusal::UserExists(name.clone()),
            StoreError::UserNotFound(name) => Refusal::UserNotFound(name.clone()),
            StoreError::CallBridgeExists(name) => Refusal::CallBridgeExists(name.clone()),
            StoreError::CallBridgeNotFound(name) => Refusal::CallBridgeNotFound(name.clone()),
            StoreError::OfflineQueueFull { user, limit } => Refusal::OfflineQueueFull {
                user: user.clone(),
                limit: *limit,
            },
            StoreError::QuotaExceeded(quota) => Refusal::QuotaExceeded(*quota),
            StoreError::Rejected(text) => Refusal::Rejected(text.clone()),
            StoreError::RosterItemChanged { user, contact } => Refusal::RosterItemChanged {
                user: user.clone(),
                contact: contact.clone(),
            },
            StoreError::Sled(_)
            | StoreError::Corrupt { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::Locked { .. }
            | StoreError::Io(_) => return None,
        })
    }

    pub fn into_error(self) -> StoreError {
        match self {
            Refusal::UserExists(name) => StoreError::UserExists(name),
            Refusal::UserNotFound(name) => StoreError::UserNotFound(name),
            Refusal::CallBridgeExists(name) => StoreError::CallBridgeExists(name),
            Refusal::CallBridgeNotFound(name) => StoreError::CallBridgeNotFound(name),
            Refusal::OfflineQueueFull { user, limit } => StoreError::OfflineQueueFull { user, limit },
            Refusal::QuotaExceeded(quota) => StoreError::QuotaExceeded(quota),
            Refusal::Rejected(text) => StoreError::Rejected(text),
            Refusal::RosterItemChanged { user, contact } => StoreError::RosterItemChanged { user, contact },
        }
    }
}

/// What applying an entry answered: the outcome, and the entry's log index, so the proposer
/// can wait for its own replica to reach it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub index: u64,
    pub outcome: std::result::Result<Applied, Refusal>,
}

impl LogEntry {
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode("log entry", self)
    }
}

impl Answer {
    pub fn decode(raw: &[u8]) -> Result<Answer> {
        decode(|| "log answer".to_owned(), raw)
    }
}

impl Store {
    /// Apply log entry `index` and answer the proposer (an encoded [`Answer`]). Entries at or
    /// below the recorded index are skipped (a replay after a crash between this and
    /// consensus' own bookkeeping). A deterministic refusal is an answer, and its index is
    /// still recorded; `Err` is a fault of this replica.
    ///
    /// The index is written after the entry's effect and before the flush, under the write
    /// lock: sled recovers a prefix of its writes, so an index is never recovered without the
    /// effect before it.
    pub fn apply_entry(&self, index: u64, raw: &[u8]) -> Result<Vec<u8>> {
        let guard = self.lock();
        if self.applied_index()?.is_some_and(|applied| index <= applied) {
            drop(guard);
            return encode(
                "log answer",
                &Answer {
                    index,
                    outcome: Err(Refusal::Rejected("entry already applied".to_owned())),
                },
            );
        }
        let entry: std::result::Result<LogEntry, _> = decode(|| format!("log entry {index}"), raw);
        let (outcome, event) = match entry {
            // Every replica decodes the same bytes the same way: a refusal, not a fault.
            Err(err) => (Err(Refusal::Rejected(err.to_string())), None),
            Ok(LogEntry::Change(change)) => match self.apply_locked(&change) {
                Ok(applied) => (Ok(applied), Some(Self::feed_event(&change))),
                Err(err) => match Refusal::of(&err) {
                    Some(refusal) => (Err(refusal), None),
                    None => return Err(err),
                },
            },
            Ok(LogEntry::Replace(state)) => {
                self.replace_shared(&state)?;
                (Ok(Applied::Done), Some(FeedEvent::Replaced))
            }
        };
        self.meta()?.insert(APPLIED_KEY, &index.to_be_bytes())?;
        self.flush()?;
        if let Some(event) = event {
            self.publish(event);
        }
        drop(guard);
        encode("log answer", &Answer { index, outcome })
    }

    /// The index of the last applied log entry; `None` before the first.
    pub fn applied_index(&self) -> Result<Option<u64>> {
        match self.meta()?.get(APPLIED_KEY)? {
            None => Ok(None),
            Some(raw) => decode_u64(|| "meta/replica_applied".to_owned(), &raw).map(Some),
        }
    }

    /// The shared state and its index, for a node that must catch up from scratch.
    pub fn replica_snapshot(&self) -> Result<Vec<u8>> {
        let _guard = self.lock();
        let snapshot = Snapshot {
            applied: self.applied_index()?,
            state: self.shared_state_locked()?,
        };
        encode("snapshot", &snapshot)
    }

    /// Replace the shared state with a snapshot made by [`Store::replica_snapshot`], possibly
    /// on another node; published as [`FeedEvent::Replaced`].
    pub fn install_replica_snapshot(&self, raw: &[u8]) -> Result<()> {
        let snapshot: Snapshot = decode(|| "snapshot".to_owned(), raw)?;
        let guard = self.lock();
        self.replace_shared(&snapshot.state)?;
        match snapshot.applied {
            Some(index) => self.meta()?.insert(APPLIED_KEY, &index.to_be_bytes())?,
            None => self.meta()?.remove(APPLIED_KEY)?,
        };
        self.flush()?;
        self.publish(FeedEvent::Replaced);
        drop(guard);
        Ok(())
    }

    /// The shared state as data (what `xmpp cluster initialize` puts in the first entry).
    pub fn shared_state(&self) -> Result<SharedState> {
        let _guard = self.lock();
        self.shared_state_locked()
    }

    /// Forget the shared state and the log position: users, rosters, offline messages, Call
    /// Bridges, the domain, federation. This node's own record stays. Used before joining a
    /// cluster (the cluster's state arrives through the log) and by `xmpp reset`.
    pub fn clear_shared(&self) -> Result<()> {
        let guard = self.lock();
        self.replace_shared(&SharedState::default())?;
        self.meta()?.remove(APPLIED_KEY)?;
        self.flush()?;
        self.publish(FeedEvent::Replaced);
        drop(guard);
        Ok(())
    }

    /// Put back a state taken with [`Store::shared_state`] (a join that failed after
    /// [`Store::clear_shared`]).
    pub fn restore_shared(&self, state: &SharedState) -> Result<()> {
        let guard = self.lock();
        self.replace_shared(state)?;
        self.flush()?;
        self.publish(FeedEvent::Replaced);
        drop(guard);
        Ok(())
    }

    fn shared_state_locked(&self) -> Result<SharedState> {
        let mut trees = Vec::new();
        for name in shared_trees() {
            let tree = self.inner.db.open_tree(name)?;
            let mut entries = Vec::new();
            for entry in tree.iter() {
                let (key, value) = entry?;
                if name == CONFIG_TREE && key.as_ref() == crate::config::NODE_KEY {
                    continue;
                }
                entries.push((key.to_vec(), value.to_vec()));
            }
            trees.push((name.to_owned(), entries));
        }
        Ok(SharedState { trees })
    }

    /// Caller holds the write lock. Clears every shared tree (keeping this node's record)
    /// and writes `state`'s entries. Not atomic across trees; the caller flushes after, and a
    /// crash part-way leaves the index unwritten, so the same entry or snapshot comes again.
    fn replace_shared(&self, state: &SharedState) -> Result<()> {
        for name in shared_trees() {
            let tree = self.inner.db.open_tree(name)?;
            for key in tree.iter().keys() {
                let key = key?;
                if name == CONFIG_TREE && key.as_ref() == crate::config::NODE_KEY {
                    continue;
                }
                tree.remove(key)?;
            }
        }
        for (name, entries) in &state.trees {
            if !is_shared_tree(name) {
                return Err(StoreError::Rejected(format!("snapshot names an unknown tree '{name}'")));
            }
            let tree = self.inner.db.open_tree(name)?;
            for (key, value) in entries {
                if name == CONFIG_TREE && key.as_slice() == crate::config::NODE_KEY {
                    continue;
                }
                tree.insert(key.as_slice(), value.as_slice())?;
            }
        }
        Ok(())
    }

    fn meta(&self) -> Result<sled::Tree> {
        Ok(self.inner.db.open_tree(crate::migrations::META_TREE)?)
    }
}
