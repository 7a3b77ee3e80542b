//! Accounts, keyed by localpart (already normalized by the caller). Only SCRAM salt,
//! iteration count, StoredKey and ServerKey are stored.

use crate::error::{Result, StoreError};
use crate::quota::{OFFLINE_BYTES, offline_bytes_value};
use crate::{Store, decode, encode, user_prefix};
use sb_proto::sasl::UserCredentials;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

impl Store {
    // Mutators are crate-private: `Store::apply` (caller holds the write lock and flushes)
    // is the only way in.
    pub(crate) fn do_add_user(&self, name: &str, credentials: &UserCredentials) -> Result<()> {
        let raw = encode("users", credentials)?;
        if self.inner.users.contains_key(name.as_bytes())? {
            return Err(StoreError::UserExists(name.to_owned()));
        }
        // A new account must not inherit anything a deleted namesake left behind; delete_user
        // removes it all, but clear it here too so a store damaged by an old bug heals.
        self.remove_user_records(name, Some(raw))
    }

    pub(crate) fn do_set_user_credentials(&self, name: &str, credentials: &UserCredentials) -> Result<()> {
        let raw = encode("users", credentials)?;
        if !self.inner.users.contains_key(name.as_bytes())? {
            return Err(StoreError::UserNotFound(name.to_owned()));
        }
        self.inner.users.insert(name.as_bytes(), raw)?;
        Ok(())
    }

    /// Delete the account with its roster and offline messages, in one transaction.
    pub(crate) fn do_delete_user(&self, name: &str) -> Result<()> {
        if !self.inner.users.contains_key(name.as_bytes())? {
            return Err(StoreError::UserNotFound(name.to_owned()));
        }
        self.remove_user_records(name, None)
    }

    /// Remove everything stored under `name` and set its account record to `replacement`
    /// (None deletes it), atomically. Caller holds the write lock, so the prefix scans
    /// below see every key the transaction must remove.
    fn remove_user_records(&self, name: &str, replacement: Option<Vec<u8>>) -> Result<()> {
        let prefix = user_prefix(name);
        let roster_keys = keys_with_prefix(&self.inner.roster, &prefix)?;
        let offline_keys = keys_with_prefix(&self.inner.offline, &prefix)?;
        let total_bytes = self.offline_bytes_total()?.saturating_sub(self.offline_bytes(name)?);
        let inner = &self.inner;
        (
            &inner.users,
            &inner.roster,
            &inner.roster_versions,
            &inner.offline,
            &inner.offline_counts,
            &inner.offline_next,
            &inner.usage,
        )
            .transaction(
                |(users, roster, roster_versions, offline, offline_counts, offline_next, usage)| {
                    match &replacement {
                        Some(raw) => users.insert(name.as_bytes(), raw.as_slice())?,
                        None => users.remove(name.as_bytes())?,
                    };
                    for key in &roster_keys {
                        roster.remove(key.as_slice())?;
                    }
                    roster_versions.remove(name.as_bytes())?;
                    for key in &offline_keys {
                        offline.remove(key.as_slice())?;
                    }
                    offline_counts.remove(name.as_bytes())?;
                    offline_next.remove(name.as_bytes())?;
                    usage.insert(OFFLINE_BYTES, &offline_bytes_value(total_bytes))?;
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                },
            )?;
        Ok(())
    }

    pub fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>> {
        match self.inner.users.get(name.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode(|| format!("users/{name}"), &raw).map(Some),
        }
    }

    pub fn user_exists(&self, name: &str) -> Result<bool> {
        Ok(self.inner.users.contains_key(name.as_bytes())?)
    }

    /// Every account name, sorted (byte order, which sled keeps).
    pub fn list_users(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in self.inner.users.iter().keys() {
            let key = entry?;
            let name = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
                key: format!("users/{}", String::from_utf8_lossy(&key)),
                reason: "account name is not UTF-8".to_owned(),
            })?;
            names.push(name);
        }
        Ok(names)
    }
}

pub(crate) fn keys_with_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
    tree.scan_prefix(prefix)
        .keys()
        .map(|key| key.map(|k| k.to_vec()).map_err(StoreError::from))
        .collect()
}
