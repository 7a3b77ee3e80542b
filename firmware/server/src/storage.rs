//! The server's view of the store: the few calls it makes, in the shapes it needs.
//!
//! Reads go to the store (served from sled's cache, called directly). Writes (rosters,
//! offline messages) are [`ConfigChange`]s handed to a [`ConfigWriter`]: the local store on a
//! single node, the replicated log on a cluster member. A write is flushed (an fsync)
//! and may later wait for a quorum, so writes run on tokio's blocking pool and never stall a
//! runtime worker. Keeping every store call in this file also keeps the rest of the crate
//! independent of the store's exact types.

use sb_proto::sasl::UserCredentials;
use sb_proto::{Jid, StanzaError, StanzaErrorCondition};
use sb_store::{Applied, ConfigChange, ConfigWriter, LocalWriter, RosterItem, Store, Subscription, WriteError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("store: {0}")]
    Store(String),
    #[error("the offline queue of this account is full")]
    OfflineQueueFull,
    /// A per-account quota or the global store budget; the sender gets
    /// `<resource-constraint/>` with this text.
    #[error("{0}")]
    Quota(sb_store::Quota),
    /// The writer could not reach a quorum (a cluster cut off from its majority): the change
    /// was not made. Never returned by a single node's local writer.
    #[error("no quorum ({})", .unreachable.join(", "))]
    NoQuorum { unreachable: Vec<String> },
    #[error("a blocking store task failed: {0}")]
    Task(String),
    /// A roster item changed between reading it and writing it back (another node of the
    /// cluster changed it): read it again and redo the change.
    #[error("the roster item changed meanwhile")]
    RosterItemChanged,
}

impl StorageError {
    /// The stanza error a client hears for a roster change that failed: what it can act on
    /// (a quota, a cluster without quorum: both worth retrying later) with its reason; a fault
    /// of this node is logged and answered `<internal-server-error/>`.
    pub fn to_stanza_error(&self, what: &str) -> StanzaError {
        match self {
            StorageError::Quota(quota) => {
                log::debug!("{what}: {quota}");
                StanzaError::with_text(StanzaErrorCondition::ResourceConstraint, quota.to_string())
            }
            StorageError::NoQuorum { .. } => {
                log::warn!("{what}: {self}");
                StanzaError::with_text(
                    StanzaErrorCondition::ResourceConstraint,
                    format!("{self}: the change cannot be stored now; try again later"),
                )
            }
            _ => {
                log::error!("{what}: {self}");
                StanzaError::new(StanzaErrorCondition::InternalServerError)
            }
        }
    }
}

/// RFC 6121 subscription states of a roster item, with the pending flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState {
    None,
    To,
    From,
    Both,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::None => "none",
            SubscriptionState::To => "to",
            SubscriptionState::From => "from",
            SubscriptionState::Both => "both",
        }
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, SubscriptionState::From | SubscriptionState::Both)
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, SubscriptionState::To | SubscriptionState::Both)
    }

    pub fn with_to(self, on: bool) -> Self {
        SubscriptionState::from_flags(on, self.has_from())
    }

    pub fn with_from(self, on: bool) -> Self {
        SubscriptionState::from_flags(self.has_to(), on)
    }

    fn from_flags(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => SubscriptionState::None,
            (true, false) => SubscriptionState::To,
            (false, true) => SubscriptionState::From,
            (true, true) => SubscriptionState::Both,
        }
    }
}

/// One contact in an account's roster, including the hidden entries that only remember a
/// pending inbound request or a pre-approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Bare JID of the contact.
    pub jid: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: SubscriptionState,
    /// The user asked for the contact's presence and waits for an answer ("pending out").
    pub ask_out: bool,
    /// The contact asked for the user's presence and waits for an answer ("pending in").
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact (RFC 6121 §3.4).
    pub approved: bool,
    /// Shown in roster results; false for entries kept only for `pending_in` / `approved`.
    pub listed: bool,
}

impl Contact {
    pub fn new(jid: &str) -> Self {
        Contact {
            jid: jid.to_owned(),
            name: None,
            groups: Vec::new(),
            subscription: SubscriptionState::None,
            ask_out: false,
            pending_in: false,
            approved: false,
            listed: false,
        }
    }

    /// Whether the entry still means anything; a meaningless one is deleted.
    pub fn is_worth_keeping(&self) -> bool {
        self.listed || self.pending_in || self.approved || self.ask_out || self.subscription != SubscriptionState::None
    }
}

fn from_store(item: RosterItem) -> Contact {
    Contact {
        jid: item.jid,
        name: item.name,
        groups: item.groups,
        subscription: match item.subscription {
            Subscription::None => SubscriptionState::None,
            Subscription::To => SubscriptionState::To,
            Subscription::From => SubscriptionState::From,
            Subscription::Both => SubscriptionState::Both,
        },
        ask_out: item.ask_out,
        pending_in: item.pending_in,
        approved: item.approved,
        listed: item.listed,
    }
}

fn to_store(contact: &Contact) -> RosterItem {
    RosterItem {
        jid: contact.jid.clone(),
        name: contact.name.clone(),
        groups: contact.groups.clone(),
        subscription: match contact.subscription {
            SubscriptionState::None => Subscription::None,
            SubscriptionState::To => Subscription::To,
            SubscriptionState::From => Subscription::From,
            SubscriptionState::Both => Subscription::Both,
        },
        ask_out: contact.ask_out,
        pending_in: contact.pending_in,
        approved: contact.approved,
        listed: contact.listed,
    }
}

fn store_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Store(e.to_string())
}

#[derive(Clone)]
pub struct Storage {
    store: Store,
    writer: Arc<dyn ConfigWriter>,
}

impl Storage {
    /// Writes go straight to `store` ([`LocalWriter`]).
    pub fn new(store: Store) -> Self {
        let writer = Arc::new(LocalWriter::new(store.clone()));
        Storage::with_writer(store, writer)
    }

    pub fn with_writer(store: Store, writer: Arc<dyn ConfigWriter>) -> Self {
        Storage { store, writer }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Hand `change` to the writer on the blocking pool.
    async fn write(&self, change: ConfigChange) -> Result<Applied, StorageError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || writer.write(change))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
            .map(|written| written.applied)
            .map_err(|e| match e {
                WriteError::Store(sb_store::StoreError::OfflineQueueFull { .. }) => StorageError::OfflineQueueFull,
                WriteError::Store(sb_store::StoreError::QuotaExceeded(quota)) => StorageError::Quota(quota),
                WriteError::Store(sb_store::StoreError::RosterItemChanged { .. }) => StorageError::RosterItemChanged,
                WriteError::NoQuorum { unreachable } | WriteError::Unconfirmed { unreachable } => {
                    StorageError::NoQuorum { unreachable }
                }
                other => StorageError::Store(other.to_string()),
            })
    }

    pub fn credentials(&self, user: &str) -> Result<Option<UserCredentials>, String> {
        self.store.user_credentials(user).map_err(|e| e.to_string())
    }

    /// Whether the account exists; a store failure counts as "no" (the stanza is then
    /// answered as for an unknown user, and the failure is logged).
    pub fn user_exists(&self, user: &str) -> bool {
        self.store.user_exists(user).unwrap_or_else(|e| {
            log::error!("store: user lookup failed: {e}");
            false
        })
    }

    /// The secret of Call Bridge `name`; `None` when no such bridge is configured. Read at
    /// every handshake, so a change in the store applies to the next connection.
    pub fn callbridge_secret(&self, name: &str) -> Result<Option<sb_store::Secret>, StorageError> {
        self.store.callbridge_secret(name).map_err(store_err)
    }

    /// Whether a Call Bridge `name` is configured; a store failure counts as "no".
    pub fn callbridge_exists(&self, name: &str) -> bool {
        self.store
            .callbridge_secret(name)
            .map(|s| s.is_some())
            .unwrap_or_else(|e| {
                log::error!("store: Call Bridge lookup failed: {e}");
                false
            })
    }

    pub fn roster(&self, user: &str) -> Result<Vec<Contact>, StorageError> {
        Ok(self
            .store
            .roster(user)
            .map_err(store_err)?
            .into_iter()
            .map(from_store)
            .collect())
    }

    pub fn contact(&self, user: &str, contact: &Jid) -> Result<Option<Contact>, StorageError> {
        Ok(self
            .store
            .roster_item(user, &contact.to_string())
            .map_err(store_err)?
            .map(from_store))
    }

    pub fn roster_version(&self, user: &str) -> Result<String, StorageError> {
        Ok(self.store.roster_version(user).map_err(store_err)?.to_string())
    }

    /// Write `after` in place of `before`, the contact as it was read (deleting it when it no
    /// longer means anything, or when `after` is `None`); returns the new roster version.
    /// [`StorageError::RosterItemChanged`] when the stored item is no longer `before`.
    pub async fn swap_contact(
        &self,
        user: &str,
        jid: &str,
        before: Option<&Contact>,
        after: Option<&Contact>,
    ) -> Result<String, StorageError> {
        let change = ConfigChange::SwapRosterItem {
            user: user.to_owned(),
            contact: jid.to_owned(),
            before: before.map(to_store),
            after: after.filter(|c| c.is_worth_keeping()).map(to_store),
        };
        roster_version(self.write(change).await?)
    }

    /// Queue a serialized message for an account with no available resource.
    pub async fn push_offline(&self, user: &str, stanza: Vec<u8>, limit: usize) -> Result<(), StorageError> {
        let change = ConfigChange::PushOffline {
            user: user.to_owned(),
            stanza,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        self.write(change).await.map(drop)
    }

    /// The stored messages of the account with their sequence numbers, oldest first, left
    /// in the store until [`Storage::acknowledge_offline`].
    pub fn offline_queue(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        // Nearly every login finds nothing stored: the count is a cached read.
        if self.store.offline_count(user).map_err(store_err)? == 0 {
            return Ok(Vec::new());
        }
        self.store.offline_queue(user).map_err(store_err)
    }

    /// Delete the account's stored messages up to sequence number `through`: the client
    /// has them.
    pub async fn acknowledge_offline(&self, user: &str, through: u64) -> Result<(), StorageError> {
        let change = ConfigChange::AckOffline {
            user: user.to_owned(),
            through,
        };
        self.write(change).await.map(drop)
    }

    /// Take every stored message of the account, oldest first; they are gone from the store.
    pub async fn take_offline(&self, user: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        // Nearly every login finds nothing stored: the count is a cached read, so answer it
        // here instead of paying a trip to the blocking pool on every initial presence.
        if self.store.offline_count(user).map_err(store_err)? == 0 {
            return Ok(Vec::new());
        }
        match self.write(ConfigChange::TakeOffline { user: user.to_owned() }).await? {
            Applied::OfflineTaken(messages) => Ok(messages),
            other => Err(StorageError::Store(format!("unexpected answer to a take: {other:?}"))),
        }
    }
}

fn roster_version(applied: Applied) -> Result<String, StorageError> {
    match applied {
        Applied::RosterVersion(version) | Applied::RosterItemRemoved { version, .. } => Ok(version.to_string()),
        other => Err(StorageError::Store(format!(
            "unexpected answer to a roster change: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_flags_compose() {
        use SubscriptionState::*;
        assert_eq!(None.with_to(true), To);
        assert_eq!(To.with_from(true), Both);
        assert_eq!(Both.with_to(false), From);
        assert_eq!(From.with_from(false), None);
        assert!(Both.has_from() && Both.has_to());
    }

    #[test]
    fn empty_entries_are_not_kept() {
        let mut c = Contact::new("romeo@example.net");
        assert!(!c.is_worth_keeping());
        c.pending_in = true;
        assert!(c.is_worth_keeping());
    }
}
