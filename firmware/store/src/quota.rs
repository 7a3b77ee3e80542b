//! Per-account quotas and the global store budget, enforced inside [`crate::Store::apply`].
//!
//! Why inside apply and not in the callers: every writer (a client's roster set, an inbound
//! subscription, an offline message, an admin import) goes through apply, and apply decides
//! from the store's contents alone: the figures are constants of the build, the counts are
//! read from the stored records (a scan of the account's own key range, at most a quota's
//! worth of keys) and the global figure from a stored counter. The same change applied to
//! the same store is refused on every node of a cluster alike, and no caller can forget a
//! check.
//!
//! The global budget is a configured figure, not a fraction of the data partition: a
//! partition's free space differs between nodes, and apply must not depend on the node.

use crate::error::{Result, StoreError};
use crate::{Store, decode_u64, user_prefix};
use serde::{Deserialize, Serialize};

/// Roster items (listed or not) per account.
pub const MAX_ROSTER_ITEMS: usize = 1000;
/// Inbound subscription requests waiting for an answer, per account.
pub const MAX_PENDING_SUBSCRIPTIONS: usize = 100;
/// One roster item, encoded: a JID, a name and some groups fit many times over; a
/// 256 KiB name per item would make a thousand-item roster 256 MiB.
pub const MAX_ROSTER_ITEM_BYTES: usize = 4 * 1024;
/// Queued offline message bytes per account (on top of the count limit, `offline_limit`).
pub const MAX_OFFLINE_BYTES_PER_ACCOUNT: u64 = 1024 * 1024;
/// Queued offline message bytes for all accounts together. 256 MiB: a fraction of the
/// appliance's data partition that leaves room for everything else stored there.
pub const STORE_BUDGET_BYTES: u64 = 256 * 1024 * 1024;

/// Which quota a change would exceed; the text is for the operator or the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quota {
    RosterItems,
    PendingSubscriptions,
    RosterItemSize,
    OfflineBytes,
    StoreBudget,
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quota::RosterItems => "the roster is full",
            Quota::PendingSubscriptions => "too many subscription requests are waiting for an answer",
            Quota::RosterItemSize => "the roster item is too large",
            Quota::OfflineBytes => "the offline message store of this account is full",
            Quota::StoreBudget => "the server's message store is full",
        })
    }
}

/// Key of the total queued offline bytes in the `usage` tree.
const OFFLINE_BYTES_KEY: &[u8] = b"offline_bytes";

impl Store {
    /// Total queued offline bytes of every account. A store written before the counter
    /// existed has none: the figure is then computed from the queues (deterministic too).
    pub fn offline_bytes_total(&self) -> Result<u64> {
        match self.inner.usage.get(OFFLINE_BYTES_KEY)? {
            Some(raw) => decode_u64(|| "usage/offline_bytes".to_owned(), &raw),
            None => {
                let mut total = 0u64;
                for value in self.inner.offline.iter().values() {
                    total = total.saturating_add(value?.len() as u64);
                }
                Ok(total)
            }
        }
    }

    /// Queued offline bytes of `user`.
    pub fn offline_bytes(&self, user: &str) -> Result<u64> {
        let mut total = 0u64;
        for value in self.inner.offline.scan_prefix(user_prefix(user)).values() {
            total = total.saturating_add(value?.len() as u64);
        }
        Ok(total)
    }

    /// Refuse a message of `len` bytes that would take `user` or the store over its budget.
    /// Returns the new global total, for the caller's transaction to store.
    pub(crate) fn check_offline_quota(&self, user: &str, len: usize) -> Result<u64> {
        let len = len as u64;
        if self.offline_bytes(user)?.saturating_add(len) > MAX_OFFLINE_BYTES_PER_ACCOUNT {
            return Err(StoreError::QuotaExceeded(Quota::OfflineBytes));
        }
        let total = self.offline_bytes_total()?.saturating_add(len);
        if total > STORE_BUDGET_BYTES {
            return Err(StoreError::QuotaExceeded(Quota::StoreBudget));
        }
        Ok(total)
    }

    /// Refuse a roster write that would add an item past [`MAX_ROSTER_ITEMS`] or a pending
    /// request past [`MAX_PENDING_SUBSCRIPTIONS`]. Rewriting an existing item within its
    /// quotas, or removing anything, is always allowed, so an account at quota can still
    /// answer its requests and clean up.
    pub(crate) fn check_roster_quota(
        &self,
        user: &str,
        encoded_len: usize,
        previous: Option<&crate::RosterItem>,
        item: &crate::RosterItem,
    ) -> Result<()> {
        if encoded_len > MAX_ROSTER_ITEM_BYTES {
            return Err(StoreError::QuotaExceeded(Quota::RosterItemSize));
        }
        let new_item = previous.is_none();
        let new_pending = item.pending_in && !previous.is_some_and(|p| p.pending_in);
        if !new_item && !new_pending {
            return Ok(());
        }
        let mut items = 0usize;
        let mut pending = 0usize;
        for entry in self.inner.roster.scan_prefix(user_prefix(user)) {
            let (key, raw) = entry?;
            items += 1;
            if new_pending {
                let stored: crate::RosterItem =
                    crate::decode(|| format!("roster/{user}/{}", String::from_utf8_lossy(&key)), &raw)?;
                pending += usize::from(stored.pending_in);
            }
        }
        if new_item && items >= MAX_ROSTER_ITEMS {
            return Err(StoreError::QuotaExceeded(Quota::RosterItems));
        }
        if new_pending && pending >= MAX_PENDING_SUBSCRIPTIONS {
            return Err(StoreError::QuotaExceeded(Quota::PendingSubscriptions));
        }
        Ok(())
    }
}

/// The stored form of the global counter.
pub(crate) fn offline_bytes_value(total: u64) -> [u8; 8] {
    total.to_be_bytes()
}

pub(crate) const OFFLINE_BYTES: &[u8] = OFFLINE_BYTES_KEY;
