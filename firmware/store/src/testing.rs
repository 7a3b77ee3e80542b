//! The wave-1 call shapes of the store's writes, expressed as [`ConfigChange`]s, so the
//! tests written against them keep checking the same behaviour through `Store::apply`.

use crate::{Applied, ConfigChange, FederationConfig, Result, RosterItem, Store, UserCredentials, XmppConfig};

pub trait Changes {
    fn add_user(&self, name: &str, credentials: &UserCredentials) -> Result<()>;
    fn set_user_credentials(&self, name: &str, credentials: &UserCredentials) -> Result<()>;
    fn delete_user(&self, name: &str) -> Result<()>;
    fn put_roster_item(&self, user: &str, item: &RosterItem) -> Result<u64>;
    fn remove_roster_item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>>;
    fn push_offline(&self, user: &str, stanza: &[u8], limit: u32) -> Result<()>;
    fn take_offline(&self, user: &str) -> Result<Vec<Vec<u8>>>;
    fn put_setting<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()>;
    fn del_setting(&self, key: &str) -> Result<bool>;
    fn set_xmpp_config(&self, config: &XmppConfig) -> Result<()>;
    fn update_xmpp_config(&self, change: impl FnOnce(&mut XmppConfig)) -> Result<XmppConfig>;
    fn update_federation_config(&self, change: impl FnOnce(&mut FederationConfig)) -> Result<FederationConfig>;
}

impl Changes for Store {
    fn add_user(&self, name: &str, credentials: &UserCredentials) -> Result<()> {
        self.apply(&ConfigChange::AddUser {
            name: name.into(),
            credentials: credentials.clone(),
        })
        .map(drop)
    }

    fn set_user_credentials(&self, name: &str, credentials: &UserCredentials) -> Result<()> {
        self.apply(&ConfigChange::SetCredentials {
            name: name.into(),
            credentials: credentials.clone(),
        })
        .map(drop)
    }

    fn delete_user(&self, name: &str) -> Result<()> {
        self.apply(&ConfigChange::DeleteUser { name: name.into() }).map(drop)
    }

    fn put_roster_item(&self, user: &str, item: &RosterItem) -> Result<u64> {
        match self.apply(&ConfigChange::PutRosterItem {
            user: user.into(),
            item: item.clone(),
        })? {
            Applied::RosterVersion(version) => Ok(version),
            other => Err(unexpected(other)),
        }
    }

    fn remove_roster_item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>> {
        match self.apply(&ConfigChange::RemoveRosterItem {
            user: user.into(),
            contact: contact.into(),
        })? {
            Applied::RosterItemRemoved { item, .. } => Ok(item),
            other => Err(unexpected(other)),
        }
    }

    fn push_offline(&self, user: &str, stanza: &[u8], limit: u32) -> Result<()> {
        self.apply(&ConfigChange::PushOffline {
            user: user.into(),
            stanza: stanza.to_vec(),
            limit,
        })
        .map(drop)
    }

    fn take_offline(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        match self.apply(&ConfigChange::TakeOffline { user: user.into() })? {
            Applied::OfflineTaken(messages) => Ok(messages),
            other => Err(unexpected(other)),
        }
    }

    fn put_setting<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.apply(&ConfigChange::PutSetting {
            key: key.into(),
            value: serde_json::to_value(value).map_err(|e| crate::StoreError::Corrupt {
                key: key.into(),
                reason: e.to_string(),
            })?,
        })
        .map(drop)
    }

    fn del_setting(&self, key: &str) -> Result<bool> {
        match self.apply(&ConfigChange::DeleteSetting { key: key.into() })? {
            Applied::SettingDeleted { existed } => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    fn set_xmpp_config(&self, config: &XmppConfig) -> Result<()> {
        self.apply(&ConfigChange::SetService(config.service()))?;
        self.set_node_config(&config.node()).map(drop)
    }

    fn update_xmpp_config(&self, change: impl FnOnce(&mut XmppConfig)) -> Result<XmppConfig> {
        let mut config = self.xmpp_config()?;
        change(&mut config);
        self.set_xmpp_config(&config)?;
        Ok(config)
    }

    fn update_federation_config(&self, change: impl FnOnce(&mut FederationConfig)) -> Result<FederationConfig> {
        let mut config = self.federation_config()?;
        change(&mut config);
        self.apply(&ConfigChange::SetFederation(config.clone()))?;
        Ok(config)
    }
}

fn unexpected(applied: Applied) -> crate::StoreError {
    crate::StoreError::Rejected(format!("unexpected answer {applied:?}"))
}
