//! Messages stored for users with no available resource, delivered in arrival order.
//!
//! Keys are `user prefix + u64 sequence` from a per-user counter kept in `offline_next`, not
//! sled's `generate_id`: the key must be a function of the store's contents, so the same
//! changes applied on another node give the same keys.

use crate::error::{Result, StoreError};
use crate::quota::{OFFLINE_BYTES, offline_bytes_value};
use crate::{Store, decode_u64, user_prefix, user_subkey};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

impl Store {
    /// Queue a serialized stanza; [`StoreError::OfflineQueueFull`] once `limit` are queued.
    pub(crate) fn do_push_offline(&self, user: &str, stanza: &[u8], limit: u32) -> Result<()> {
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
        let total_bytes = self.check_offline_quota(user, stanza.len())?;
        let sequence = match self.inner.offline_next.get(user.as_bytes())? {
            None => 0,
            Some(raw) => decode_u64(|| format!("offline_next/{user}"), &raw)?,
        };
        let key = user_subkey(user, &sequence.to_be_bytes());
        let next_count = count.saturating_add(1).to_be_bytes();
        let next_sequence = sequence.saturating_add(1).to_be_bytes();
        (
            &self.inner.offline,
            &self.inner.offline_counts,
            &self.inner.offline_next,
            &self.inner.usage,
        )
            .transaction(|(offline, counts, next, usage)| {
                offline.insert(key.as_slice(), stanza)?;
                usage.insert(OFFLINE_BYTES, &offline_bytes_value(total_bytes))?;
                counts.insert(user.as_bytes(), &next_count)?;
                next.insert(user.as_bytes(), &next_sequence)?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })?;
        Ok(())
    }

    /// Remove and return every queued stanza, oldest first, in one transaction: a message is
    /// handed out at most once. The counter is kept, so keys are never reused.
    pub(crate) fn do_take_offline(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut stanzas = Vec::new();
        for entry in self.inner.offline.scan_prefix(user_prefix(user)) {
            let (key, stanza) = entry?;
            keys.push(key);
            stanzas.push(stanza.to_vec());
        }
        if keys.is_empty() {
            return Ok(stanzas);
        }
        let taken: u64 = stanzas.iter().map(|s| s.len() as u64).sum();
        let total_bytes = self.offline_bytes_total()?.saturating_sub(taken);
        (&self.inner.offline, &self.inner.offline_counts, &self.inner.usage).transaction(
            |(offline, counts, usage)| {
                for key in &keys {
                    offline.remove(key)?;
                }
                counts.remove(user.as_bytes())?;
                usage.insert(OFFLINE_BYTES, &offline_bytes_value(total_bytes))?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            },
        )?;
        Ok(stanzas)
    }

    /// Remove the messages of `user` with a sequence number up to `through` (acknowledged
    /// by the client they were delivered to). Messages queued since stay.
    pub(crate) fn do_ack_offline(&self, user: &str, through: u64) -> Result<()> {
        let mut keys = Vec::new();
        let mut removed_bytes = 0u64;
        for (sequence, key, len) in self.offline_entries(user)? {
            if sequence <= through {
                keys.push(key);
                removed_bytes = removed_bytes.saturating_add(len);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let remaining = self
            .offline_count(user)?
            .saturating_sub(u32::try_from(keys.len()).unwrap_or(u32::MAX));
        let total_bytes = self.offline_bytes_total()?.saturating_sub(removed_bytes);
        (&self.inner.offline, &self.inner.offline_counts, &self.inner.usage).transaction(
            |(offline, counts, usage)| {
                for key in &keys {
                    offline.remove(key.as_slice())?;
                }
                if remaining == 0 {
                    counts.remove(user.as_bytes())?;
                } else {
                    counts.insert(user.as_bytes(), &remaining.to_be_bytes())?;
                }
                usage.insert(OFFLINE_BYTES, &offline_bytes_value(total_bytes))?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            },
        )?;
        Ok(())
    }

    /// (sequence number, key, length) of each queued message of `user`, oldest first.
    fn offline_entries(&self, user: &str) -> Result<Vec<(u64, Vec<u8>, u64)>> {
        let prefix_len = user_prefix(user).len();
        let mut entries = Vec::new();
        for entry in self.inner.offline.scan_prefix(user_prefix(user)) {
            let (key, stanza) = entry?;
            let sequence = decode_u64(
                || format!("offline/{user} key"),
                key.get(prefix_len..).unwrap_or_default(),
            )?;
            entries.push((sequence, key.to_vec(), stanza.len() as u64));
        }
        Ok(entries)
    }

    /// The queued stanzas with their sequence numbers, oldest first, without removing them:
    /// delivery reads them, and [`crate::ConfigChange::AckOffline`] removes them once the
    /// client has them.
    pub fn offline_queue(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>> {
        let prefix_len = user_prefix(user).len();
        let mut queue = Vec::new();
        for entry in self.inner.offline.scan_prefix(user_prefix(user)) {
            let (key, stanza) = entry?;
            let sequence = decode_u64(
                || format!("offline/{user} key"),
                key.get(prefix_len..).unwrap_or_default(),
            )?;
            queue.push((sequence, stanza.to_vec()));
        }
        Ok(queue)
    }

    /// The queued stanzas, oldest first, without removing them.
    pub fn offline_messages(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        self.inner
            .offline
            .scan_prefix(user_prefix(user))
            .values()
            .map(|value| value.map(|v| v.to_vec()).map_err(StoreError::from))
            .collect()
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
