//! The consensus database (`DIR/raft`): log entries, vote, purge mark, applied bookkeeping,
//! the current snapshot and this node's stable identity.

use std::path::Path;
use std::time::Duration;

use crate::NodeId;
use crate::error::ClusterError;

/// sled's default cache is 1 GiB; the consensus working set is the log tail.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// A database being closed by a node that just shut down stays locked for a moment.
const OPEN_ATTEMPTS: u32 = 100;
const OPEN_RETRY: Duration = Duration::from_millis(50);

pub(crate) const KEY_NODE_ID: &[u8] = b"node_id";
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_APPLIED: &[u8] = b"applied";
pub(crate) const KEY_SNAPSHOT: &[u8] = b"snapshot";

pub(crate) struct RaftDb {
    pub db: sled::Db,
    /// Entries keyed by big-endian index, so sled's order is the log's order.
    pub log: sled::Tree,
    pub meta: sled::Tree,
}

impl RaftDb {
    pub fn open(dir: &Path) -> Result<RaftDb, ClusterError> {
        let path = dir.join("raft");
        let mut attempt = 0;
        let db = loop {
            attempt += 1;
            match sled::Config::new().path(&path).cache_capacity(CACHE_BYTES).open() {
                // The lock of a database a node just closed (sled reports it as an I/O error
                // of kind Other, not WouldBlock); a real I/O fault still surfaces after the
                // last attempt.
                Err(sled::Error::Io(_)) if attempt < OPEN_ATTEMPTS => std::thread::sleep(OPEN_RETRY),
                other => break other?,
            }
        };
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        Ok(RaftDb { db, log, meta })
    }

    /// This node's identity, created (and flushed) on first use.
    pub fn node_id(&self) -> Result<NodeId, ClusterError> {
        if let Some(bytes) = self.meta.get(KEY_NODE_ID)? {
            let raw: [u8; 8] = bytes
                .as_ref()
                .try_into()
                .map_err(|_| ClusterError::Corrupt("node id is not 8 bytes".to_owned()))?;
            return Ok(u64::from_be_bytes(raw));
        }
        let id = random_node_id()?;
        self.meta.insert(KEY_NODE_ID, &id.to_be_bytes())?;
        self.db.flush()?;
        Ok(id)
    }
}

fn random_node_id() -> Result<NodeId, ClusterError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    // Zero is left out so it can never be mistaken for "no node".
    for _ in 0..8 {
        let mut raw = [0u8; 8];
        rng.fill(&mut raw)
            .map_err(|_| ClusterError::Corrupt("no randomness for the node id".to_owned()))?;
        let id = u64::from_be_bytes(raw);
        if id != 0 {
            return Ok(id);
        }
    }
    Err(ClusterError::Corrupt("no randomness for the node id".to_owned()))
}

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = RaftDb::open(dir.path()).unwrap().node_id().unwrap();
        let again = RaftDb::open(dir.path()).unwrap().node_id().unwrap();
        assert_eq!(first, again);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(first, RaftDb::open(other.path()).unwrap().node_id().unwrap());
    }
}
