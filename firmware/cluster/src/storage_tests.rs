//! openraft's own storage test suite against the sled log store and the state-machine
//! adapter (append, truncate, purge, vote, membership, apply, snapshot transfer).

use std::sync::{Arc, Mutex};

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

use crate::log_store::LogStore;
use crate::raft_db::RaftDb;
use crate::state::{ApplyError, ReplicatedState, StateFault};
use crate::state_machine::StateMachine;
use crate::{NodeId, TypeConfig};

/// Entries in memory, with the index recorded alongside as the trait asks.
#[derive(Default)]
struct MemoryState {
    applied: Mutex<(Option<u64>, Vec<Vec<u8>>)>,
}

impl ReplicatedState for MemoryState {
    fn apply(&self, index: u64, entry: &[u8]) -> Result<Vec<u8>, ApplyError> {
        let mut applied = self.applied.lock().unwrap();
        applied.0 = Some(index);
        applied.1.push(entry.to_vec());
        Ok(Vec::new())
    }

    fn last_applied(&self) -> Result<Option<u64>, StateFault> {
        Ok(self.applied.lock().unwrap().0)
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateFault> {
        serde_json::to_vec(&*self.applied.lock().unwrap()).map_err(|e| StateFault(e.to_string()))
    }

    fn install_snapshot(&self, data: &[u8]) -> Result<(), StateFault> {
        *self.applied.lock().unwrap() = serde_json::from_slice(data).map_err(|e| StateFault(e.to_string()))?;
        Ok(())
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(RaftDb::open(dir.path()).unwrap());
        let log = LogStore::new(Arc::clone(&db));
        let state_machine = StateMachine::open(Arc::new(MemoryState::default()), db).unwrap();
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(SledBuilder).unwrap();
}
