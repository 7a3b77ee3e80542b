//! openraft's log storage (storage v2) on sled: entries, vote, committed and purge marks.
//!
//! Every write that openraft relies on for safety (entries, vote) is fsynced before it is
//! acknowledged: `append` calls its callback only after the flush returned.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft_db::{KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, RaftDb, index_key};
use crate::{NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<RaftDb>,
}

impl LogStore {
    pub fn new(db: Arc<RaftDb>) -> LogStore {
        LogStore { db }
    }

    /// fsync on the blocking pool, so a slow disk does not stall the runtime's workers.
    async fn flush(&self) -> Result<(), std::io::Error> {
        let db = self.db.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        match self.db.meta.get(key).map_err(|e| AnyError::new(&e))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| AnyError::new(&e)),
        }
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(value).map_err(|e| AnyError::new(&e))?;
        self.db.meta.insert(key, bytes).map_err(|e| AnyError::new(&e))?;
        Ok(())
    }

    /// Remove the entries whose index lies in `range`.
    fn remove_range(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), AnyError> {
        let start = match from {
            Bound::Included(i) => Bound::Included(index_key(i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match to {
            Bound::Included(i) => Bound::Included(index_key(i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut batch = sled::Batch::default();
        for item in self.db.log.range((start, end)) {
            let (key, _) = item.map_err(|e| AnyError::new(&e))?;
            batch.remove(key);
        }
        self.db.log.apply_batch(batch).map_err(|e| AnyError::new(&e))
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, AnyError> {
    serde_json::from_slice(bytes).map_err(|e| AnyError::new(&e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.db.log.range((start, end)) {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            entries.push(decode_entry(&bytes).map_err(StorageIOError::read_logs)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.read_meta(KEY_LAST_PURGED).map_err(StorageIOError::read_logs)?;
        let last = match self
            .db
            .log
            .last()
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?
        {
            Some((_, bytes)) => Some(decode_entry(&bytes).map_err(StorageIOError::read_logs)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.write_meta(KEY_VOTE, vote).map_err(StorageIOError::write_vote)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.read_meta(KEY_VOTE).map_err(StorageIOError::read_vote)?)
    }

    // The committed mark lets a restarted node re-apply its committed tail at once instead of
    // waiting for a leader. It is not flushed: a lost mark only delays that.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.write_meta(KEY_COMMITTED, &committed)
            .map_err(StorageIOError::write)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = self.read_meta(KEY_COMMITTED).map_err(StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.db
            .log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // Acknowledge only once the entries are on disk.
        let flushed = self.flush().await;
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.remove_range(Bound::Included(log_id.index), Bound::Unbounded)
            .map_err(StorageIOError::write_logs)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // The mark first: entries at or below it are never read again, so a crash between the
        // two steps leaves only garbage, never a hole.
        self.write_meta(KEY_LAST_PURGED, &log_id)
            .map_err(StorageIOError::write_logs)?;
        self.remove_range(Bound::Unbounded, Bound::Included(log_id.index))
            .map_err(StorageIOError::write_logs)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }
}
