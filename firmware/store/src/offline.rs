//! Messages stored for users with no available resource, delivered in arrival order.

use crate::error::{Result, StoreError};
use crate::{Store, user_prefix, user_subkey};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

impl Store {
    /// Queue a serialized stanza; [`StoreError::OfflineQueueFull`] once `limit` are queued.
    pub fn push_offline(&self, user: &str, stanza: &[u8], limit: u32) -> Result<()> {
        let guard = self.lock();
        if !self.inner.users.contains_key(user.as_bytes())? {
            return Err(StoreError::UserNotFound(user.to_owned()));
        }
        let count = self.offline_count(user)?;
        if count >= limit {
            return Err(StoreError::OfflineQueueFull {
                user: user.to_owned(),
                limit,
            });
        }
        // sled ids are unique and increase across restarts, so key order is arrival order.
        let key = user_subkey(user, &self.inner.db.generate_id()?.to_be_bytes());
        let next = count.saturating_add(1).to_be_bytes();
        (&self.inner.offline, &self.inner.offline_counts).transaction(|(offline, counts)| {
            offline.insert(key.as_slice(), stanza)?;
            counts.insert(user.as_bytes(), &next)?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        drop(guard);
        self.flush()
    }

    /// Remove and return every queued stanza, oldest first. The removal is one transaction
    /// and is durable before this returns, so a message is handed out at most once.
    pub fn take_offline(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        let guard = self.lock();
        let mut keys = Vec::new();
        let mut stanzas = Vec::new();
        for entry in self.inner.offline.scan_prefix(user_prefix(user)) {
            let (key, stanza) = entry?;
            keys.push(key);
            stanzas.push(stanza.to_vec());
        }
        if keys.is_empty() {
            drop(guard);
            // Cheap when nothing is dirty; guarantees an earlier take is durable.
            self.flush()?;
            return Ok(stanzas);
        }
        (&self.inner.offline, &self.inner.offline_counts).transaction(|(offline, counts)| {
            for key in &keys {
                offline.remove(key)?;
            }
            counts.remove(user.as_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        drop(guard);
        self.flush()?;
        Ok(stanzas)
    }

    pub fn offline_count(&self, user: &str) -> Result<u32> {
        match self.inner.offline_counts.get(user.as_bytes())? {
            None => Ok(0),
            Some(raw) => {
                let bytes: [u8; 4] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: format!("offline_counts/{user}"),
                    reason: format!("expected 4 bytes, found {}", raw.len()),
                })?;
                Ok(u32::from_be_bytes(bytes))
            }
        }
    }
}
