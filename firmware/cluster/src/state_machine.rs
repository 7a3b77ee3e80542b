//! openraft's state machine (storage v2) over a [`ReplicatedState`].
//!
//! The replicated data lives in the `ReplicatedState`; this adapter keeps openraft's own
//! bookkeeping (last applied log id, last membership, current snapshot) in the raft database.
//! The two are not written atomically, so the adapter leans on the trait's rule: the state
//! stores each entry's index with the entry, and entries at or below its `last_applied()`
//! are skipped when openraft offers them again after a crash.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::raft_db::{KEY_APPLIED, KEY_SNAPSHOT, RaftDb};
use crate::state::{ApplyError, ReplicatedState};
use crate::{ApplyOutcome, Member, NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// openraft's view of what has been applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct StateMachine {
    state: Arc<dyn ReplicatedState>,
    db: Arc<RaftDb>,
    /// Held across apply and across snapshot building, so a snapshot's data and its log id
    /// always describe the same point.
    applied: Arc<Mutex<Applied>>,
}

fn io(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

impl StateMachine {
    pub fn open(state: Arc<dyn ReplicatedState>, db: Arc<RaftDb>) -> Result<StateMachine, String> {
        let applied = match db.meta.get(KEY_APPLIED).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
            None => Applied::default(),
        };
        Ok(StateMachine {
            state,
            db,
            applied: Arc::new(Mutex::new(applied)),
        })
    }

    fn save_applied(&self, applied: &Applied) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(applied).map_err(io)?;
        self.db.meta.insert(KEY_APPLIED, bytes).map_err(io)?;
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, AnyError> {
        match self.db.meta.get(KEY_SNAPSHOT).map_err(io)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io),
        }
    }

    async fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(snapshot).map_err(io)?;
        self.db.meta.insert(KEY_SNAPSHOT, bytes).map_err(io)?;
        let db = self.db.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(io)?
            .map_err(io)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let applied = self.applied.lock().await;
        let state = Arc::clone(&self.state);
        let data = tokio::task::spawn_blocking(move || state.snapshot())
            .await
            .map_err(|e| StorageIOError::read_state_machine(io(e)))?
            .map_err(|e| StorageIOError::read_state_machine(io(e)))?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let snapshot_id = match applied.last {
            Some(last) => format!("{}-{}-{millis}", last.leader_id, last.index),
            None => format!("none-{millis}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        drop(applied);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        let applied = self.applied.lock().await;
        Ok((applied.last, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<ApplyOutcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut applied = self.applied.lock().await;
        let mut working = applied.clone();
        let state = Arc::clone(&self.state);
        let result = tokio::task::spawn_blocking(move || {
            let already = state.last_applied().map_err(|e| e.to_string())?;
            let mut outcomes = Vec::with_capacity(entries.len());
            for entry in entries {
                working.last = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => ApplyOutcome::Applied(Vec::new()),
                    EntryPayload::Normal(proposal) => {
                        if already.is_some_and(|done| entry.log_id.index <= done) {
                            // Applied before a crash; nobody waits for this answer any more.
                            ApplyOutcome::Applied(Vec::new())
                        } else {
                            match state.apply(entry.log_id.index, &proposal.0) {
                                Ok(answer) => ApplyOutcome::Applied(answer),
                                Err(ApplyError::Rejected(reason)) => ApplyOutcome::Rejected(reason),
                                Err(ApplyError::Fault(fault)) => return Err(fault),
                            }
                        }
                    }
                    EntryPayload::Membership(membership) => {
                        working.membership = StoredMembership::new(Some(entry.log_id), membership);
                        ApplyOutcome::Applied(Vec::new())
                    }
                };
                outcomes.push(outcome);
            }
            Ok((working, outcomes))
        })
        .await
        .map_err(|e| StorageIOError::write_state_machine(io(e)))?;
        let (working, outcomes) = result.map_err(|e| StorageIOError::write_state_machine(io(e)))?;
        self.save_applied(&working)
            .map_err(StorageIOError::write_state_machine)?;
        *applied = working;
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let mut applied = self.applied.lock().await;
        let data = snapshot.into_inner();
        let state = Arc::clone(&self.state);
        let stored = tokio::task::spawn_blocking(move || state.install_snapshot(&data).map(|()| data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io(e)))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io(e)))?;
        let installed = Applied {
            last: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.save_applied(&installed)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        *applied = installed;
        drop(applied);
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: stored,
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored = self
            .load_snapshot()
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
