//! Call Bridges: the external components (XEP-0114) allowed to connect, each with its shared
//! secret. Kept in the settings space under `callbridge.<name>`; a name is a DNS label (the
//! component's address is `<name>.<domain>`), already normalized by the caller, so it holds no
//! `.` and the prefix scan finds exactly the bridges.

use crate::error::{Result, StoreError};
use crate::{Secret, Store, decode, encode};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "callbridge.";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallBridge {
    pub name: String,
    pub secret: Secret,
    pub created_unix: u64,
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl Store {
    /// Authorise a new bridge. [`StoreError::CallBridgeExists`] when the name is taken.
    pub(crate) fn do_add_callbridge(&self, bridge: &CallBridge) -> Result<()> {
        let key = key(&bridge.name);
        let raw = encode(&format!("settings/{key}"), bridge)?;
        if self.inner.settings.contains_key(key.as_bytes())? {
            return Err(StoreError::CallBridgeExists(bridge.name.clone()));
        }
        self.inner.settings.insert(key.as_bytes(), raw)?;
        Ok(())
    }

    /// Replace an existing bridge's record (a new secret). [`StoreError::CallBridgeNotFound`]
    /// when there is no such bridge.
    pub(crate) fn do_replace_callbridge(&self, bridge: &CallBridge) -> Result<()> {
        let key = key(&bridge.name);
        let raw = encode(&format!("settings/{key}"), bridge)?;
        if !self.inner.settings.contains_key(key.as_bytes())? {
            return Err(StoreError::CallBridgeNotFound(bridge.name.clone()));
        }
        self.inner.settings.insert(key.as_bytes(), raw)?;
        Ok(())
    }

    /// [`StoreError::CallBridgeNotFound`] when there is no such bridge.
    pub(crate) fn do_delete_callbridge(&self, name: &str) -> Result<()> {
        let removed = self.inner.settings.remove(key(name).as_bytes())?;
        if removed.is_none() {
            return Err(StoreError::CallBridgeNotFound(name.to_owned()));
        }
        Ok(())
    }

    pub fn callbridge(&self, name: &str) -> Result<Option<CallBridge>> {
        let key = key(name);
        match self.inner.settings.get(key.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode(|| format!("settings/{key}"), &raw).map(Some),
        }
    }

    /// The secret a component claiming to be `name` must prove it knows; `None` for a name
    /// that is not authorised. The component listener calls this on every handshake, so a
    /// change is in effect for the next connection without a restart.
    pub fn callbridge_secret(&self, name: &str) -> Result<Option<Secret>> {
        Ok(self.callbridge(name)?.map(|bridge| bridge.secret))
    }

    /// Every bridge, sorted by name.
    pub fn list_callbridges(&self) -> Result<Vec<CallBridge>> {
        let mut bridges = Vec::new();
        for entry in self.inner.settings.scan_prefix(PREFIX.as_bytes()) {
            let (key, raw) = entry?;
            let what = || format!("settings/{}", String::from_utf8_lossy(&key));
            bridges.push(decode::<CallBridge>(what, &raw)?);
        }
        Ok(bridges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(name: &str, secret: &str) -> CallBridge {
        CallBridge {
            name: name.to_owned(),
            secret: Secret::new(secret),
            created_unix: 1_739_000_000,
        }
    }

    #[test]
    fn bridges_are_added_listed_and_deleted_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.list_callbridges().unwrap(), vec![]);
        assert_eq!(store.callbridge_secret("cb1").unwrap(), None);
        use crate::ConfigChange as C;
        store.apply(&C::AddCallBridge(bridge("cb2", "two"))).unwrap();
        store.apply(&C::AddCallBridge(bridge("cb1", "one"))).unwrap();
        assert!(matches!(
            store.apply(&C::AddCallBridge(bridge("cb1", "other"))),
            Err(StoreError::CallBridgeExists(name)) if name == "cb1"
        ));
        // Other settings with a similar key are not bridges.
        store
            .apply(&C::PutSetting {
                key: "callbridges".into(),
                value: 1.into(),
            })
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.list_callbridges().unwrap(),
            vec![bridge("cb1", "one"), bridge("cb2", "two")]
        );
        assert_eq!(store.callbridge_secret("cb1").unwrap(), Some(Secret::new("one")));
        assert_eq!(store.callbridge("cb2").unwrap(), Some(bridge("cb2", "two")));
        store.apply(&C::DeleteCallBridge { name: "cb1".into() }).unwrap();
        assert!(matches!(
            store.apply(&C::DeleteCallBridge { name: "cb1".into() }),
            Err(StoreError::CallBridgeNotFound(name)) if name == "cb1"
        ));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.list_callbridges().unwrap(), vec![bridge("cb2", "two")]);
        assert_eq!(store.callbridge_secret("cb1").unwrap(), None);
        assert_eq!(store.get_setting::<u32>("callbridges").unwrap(), Some(1));
    }

    #[test]
    fn a_bridge_never_prints_its_secret() {
        let text = format!("{:?}", bridge("cb1", "kvgP1SRzWVabhiPVAb1"));
        assert!(!text.contains("kvgP1SRzWVabhiPVAb1"), "{text}");
        assert!(text.contains("cb1"));
    }
}
