//! Rosters (RFC 6121 §2) with a per-user version counter (§2.6 roster versioning).

use crate::error::{Result, StoreError};
use crate::{Store, decode, decode_u64, encode, user_prefix, user_subkey};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    /// The value of the roster item's `subscription` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Subscription,
    /// We asked for the contact's presence and have no answer yet ("ask='subscribe'").
    pub ask_out: bool,
    /// The contact asked for ours and the user has not answered.
    pub pending_in: bool,
    /// Pre-approved: a future subscription request from the contact is accepted at once.
    pub approved: bool,
    /// false = only a pending-in record, not a visible roster item (RFC 6121 §3.1.3).
    pub listed: bool,
}

impl Default for RosterItem {
    fn default() -> Self {
        RosterItem {
            jid: String::new(),
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask_out: false,
            pending_in: false,
            approved: false,
            listed: true,
        }
    }
}

impl RosterItem {
    /// A visible item with no subscription.
    pub fn new(jid: impl Into<String>) -> RosterItem {
        RosterItem {
            jid: jid.into(),
            ..RosterItem::default()
        }
    }
}

impl Store {
    /// The user's roster, sorted by contact JID.
    pub fn roster(&self, user: &str) -> Result<Vec<RosterItem>> {
        let mut items = Vec::new();
        for entry in self.inner.roster.scan_prefix(user_prefix(user)) {
            let (key, raw) = entry?;
            items.push(decode(|| roster_key_name(user, &key), &raw)?);
        }
        Ok(items)
    }

    pub fn roster_item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>> {
        let key = user_subkey(user, contact.as_bytes());
        match self.inner.roster.get(&key)? {
            None => Ok(None),
            Some(raw) => decode(|| format!("roster/{user}/{contact}"), &raw).map(Some),
        }
    }

    /// Insert or replace the item for `item.jid`; returns the roster version after the
    /// change (unchanged when the item was already stored exactly so). The account must
    /// exist, so a deleted user's namesake never inherits a late write.
    pub(crate) fn do_put_roster_item(&self, user: &str, item: &RosterItem) -> Result<u64> {
        let key = user_subkey(user, item.jid.as_bytes());
        let raw = encode("roster", item)?;
        if !self.inner.users.contains_key(user.as_bytes())? {
            return Err(StoreError::UserNotFound(user.to_owned()));
        }
        let previous = self.inner.roster.get(&key)?;
        if previous.as_deref() == Some(raw.as_slice()) {
            return self.roster_version(user);
        }
        // An undecodable record is replaced like any other: it is not counted as pending.
        let previous: Option<RosterItem> =
            previous.map(|raw| decode(|| roster_key_name(user, &key), &raw).unwrap_or_default());
        self.check_roster_quota(user, raw.len(), previous.as_ref(), item)?;
        let version = (&self.inner.roster, &self.inner.roster_versions).transaction(|(roster, versions)| {
            roster.insert(key.as_slice(), raw.as_slice())?;
            bump_version(versions, user)
        })?;
        Ok(version)
    }

    /// Compare-and-set of one item (see [`crate::ConfigChange::SwapRosterItem`]). Changes are
    /// applied one at a time (the local writer's caller holds the user's roster lock, the
    /// replicated log applies in order), so the comparison and the write need no common
    /// transaction.
    pub(crate) fn do_swap_roster_item(
        &self,
        user: &str,
        contact: &str,
        before: Option<&RosterItem>,
        after: Option<&RosterItem>,
    ) -> Result<u64> {
        if let Some(item) = after
            && item.jid != contact
        {
            return Err(StoreError::Rejected(format!(
                "roster item for '{}' stored under '{contact}'",
                item.jid
            )));
        }
        if self.roster_item(user, contact)?.as_ref() != before {
            return Err(StoreError::RosterItemChanged {
                user: user.to_owned(),
                contact: contact.to_owned(),
            });
        }
        match after {
            Some(item) => self.do_put_roster_item(user, item),
            None => {
                self.do_remove_roster_item(user, contact)?;
                self.roster_version(user)
            }
        }
    }

    /// Remove the item; returns it if there was one (and only then bumps the version).
    pub(crate) fn do_remove_roster_item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>> {
        let key = user_subkey(user, contact.as_bytes());
        let Some(previous) = self.inner.roster.get(&key)? else {
            return Ok(None);
        };
        (&self.inner.roster, &self.inner.roster_versions).transaction(|(roster, versions)| {
            roster.remove(key.as_slice())?;
            bump_version(versions, user)
        })?;
        // Decoding after the removal: a corrupt record can still be deleted.
        decode(|| format!("roster/{user}/{contact}"), &previous).map(Some)
    }

    /// Incremented on every roster change; 0 for a user whose roster never changed.
    pub fn roster_version(&self, user: &str) -> Result<u64> {
        match self.inner.roster_versions.get(user.as_bytes())? {
            None => Ok(0),
            Some(raw) => decode_u64(|| format!("roster_versions/{user}"), &raw),
        }
    }
}

fn bump_version(versions: &TransactionalTree, user: &str) -> Result<u64, ConflictableTransactionError<StoreError>> {
    let current = match versions.get(user.as_bytes())? {
        None => 0,
        Some(raw) => {
            decode_u64(|| format!("roster_versions/{user}"), &raw).map_err(ConflictableTransactionError::Abort)?
        }
    };
    let next = current.saturating_add(1);
    versions.insert(user.as_bytes(), &next.to_be_bytes())?;
    Ok(next)
}

fn roster_key_name(user: &str, key: &[u8]) -> String {
    let contact = key.get(user_prefix(user).len()..).unwrap_or_default();
    format!("roster/{user}/{}", String::from_utf8_lossy(contact))
}
