//! A generic key/value space for features that come later (Call Bridges, federation,
//! cluster). Keys are namespaced by convention: `callbridge.cb1`, `federation.secret`.

use crate::error::{Result, StoreError};
use crate::{Store, decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

impl Store {
    pub fn get_setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.inner.settings.get(key.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode(|| format!("settings/{key}"), &raw).map(Some),
        }
    }

    pub(crate) fn do_put_setting<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let raw = encode(&format!("settings/{key}"), value)?;
        self.inner.settings.insert(key.as_bytes(), raw)?;
        Ok(())
    }

    /// Returns whether the key existed.
    pub(crate) fn do_del_setting(&self, key: &str) -> Result<bool> {
        Ok(self.inner.settings.remove(key.as_bytes())?.is_some())
    }

    /// Keys starting with `prefix`, sorted (e.g. every `callbridge.`).
    pub fn setting_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        for key in self.inner.settings.scan_prefix(prefix.as_bytes()).keys() {
            let key = key?;
            keys.push(String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
                key: format!("settings/{}", String::from_utf8_lossy(&key)),
                reason: "key is not UTF-8".to_owned(),
            })?);
        }
        Ok(keys)
    }
}
