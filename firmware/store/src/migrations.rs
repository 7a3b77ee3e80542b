//! Schema versions and the steps between them.
//!
//! The version lives in the `meta` tree. Each step runs, then records its target version and
//! flushes, so a power cut during an upgrade resumes at the step that was interrupted. A step
//! must therefore be idempotent. Values are serde_json with `#[serde(default)]`, so adding a
//! field is not a migration; renaming, re-keying or splitting a tree is.

use crate::error::{Result, StoreError};
use sled::Db;

/// The schema this build writes. Bump it together with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u32 = 3;

pub(crate) const META_TREE: &str = "meta";
pub(crate) const SCHEMA_KEY: &[u8] = b"schema_version";

/// Every tree the current schema uses.
pub(crate) const TREES: &[&str] = &[
    META_TREE,
    "config",
    "users",
    "roster",
    "roster_versions",
    "offline",
    "offline_counts",
    "offline_next",
    "settings",
    "usage",
];

struct Migration {
    /// The version the store has after this step.
    to: u32,
    description: &'static str,
    apply: fn(&Db) -> Result<()>,
}

/// In order; `MIGRATIONS[i].to == i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        description: "initialise an empty store",
        apply: initialise,
    },
    Migration {
        to: 2,
        description: "split the xmpp configuration into shared and node-local records; count offline keys per user",
        apply: split_config_and_count_offline,
    },
    Migration {
        to: 3,
        description: "xmpp enable/disable becomes this node's setting, not a shared one",
        apply: move_enabled_to_node,
    },
];

fn initialise(db: &Db) -> Result<()> {
    for name in TREES {
        db.open_tree(name)?;
    }
    Ok(())
}

/// Schema 2: `config/xmpp` becomes `config/service` (shared) and `config/node` (this
/// machine's); each user with offline messages gets an `offline_next` counter past its
/// highest key (schema 1 keyed them by sled's `generate_id`, which is not deterministic).
/// Idempotent: a rerun finds no `xmpp` record and recomputes the same counters.
fn split_config_and_count_offline(db: &Db) -> Result<()> {
    initialise(db)?;
    let config = db.open_tree("config")?;
    if let Some(raw) = config.get(crate::config::LEGACY_XMPP_KEY)? {
        let legacy: crate::XmppConfig = crate::decode(|| "config/xmpp".to_owned(), &raw)?;
        let service = crate::encode("config/service", &legacy.service())?;
        let node = crate::encode("config/node", &legacy.node())?;
        config.transaction(|tree| {
            tree.insert(crate::config::SERVICE_KEY, service.as_slice())?;
            tree.insert(crate::config::NODE_KEY, node.as_slice())?;
            tree.remove(crate::config::LEGACY_XMPP_KEY)?;
            Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
        })?;
    }
    let offline = db.open_tree("offline")?;
    let offline_next = db.open_tree("offline_next")?;
    let mut next: std::collections::BTreeMap<Vec<u8>, u64> = std::collections::BTreeMap::new();
    for key in offline.iter().keys() {
        let key = key?;
        // user_prefix is a u32 length then the name, then the 8-byte id.
        let Some(len) = key.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
            continue;
        };
        let end = 4 + u32::from_be_bytes(len) as usize;
        let (Some(user), Some(id)) = (
            key.get(4..end),
            key.get(end..).and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            continue;
        };
        let after = u64::from_be_bytes(id).saturating_add(1);
        let entry = next.entry(user.to_vec()).or_default();
        *entry = (*entry).max(after);
    }
    for (user, after) in next {
        offline_next.insert(user, &after.to_be_bytes())?;
    }
    Ok(())
}

/// Schema 3: `enabled` moves from `config/service` to `config/node` (`xmpp disable` stops one
/// node, not the cluster). Idempotent: a rerun finds no `enabled` left in the service record.
fn move_enabled_to_node(db: &Db) -> Result<()> {
    use crate::config::{NODE_KEY, SERVICE_KEY};
    let config = db.open_tree("config")?;
    let Some(raw) = config.get(SERVICE_KEY)? else {
        return Ok(());
    };
    let mut service: serde_json::Value = crate::decode(|| "config/service".to_owned(), &raw)?;
    let Some(enabled) = service.as_object_mut().and_then(|fields| fields.remove("enabled")) else {
        return Ok(());
    };
    let mut node: serde_json::Value = match config.get(NODE_KEY)? {
        Some(raw) => crate::decode(|| "config/node".to_owned(), &raw)?,
        None => serde_json::json!({}),
    };
    if let Some(fields) = node.as_object_mut() {
        fields.insert("enabled".to_owned(), enabled);
    }
    let service = crate::encode("config/service", &service)?;
    let node = crate::encode("config/node", &node)?;
    config.transaction(|tree| {
        tree.insert(NODE_KEY, node.as_slice())?;
        tree.insert(SERVICE_KEY, service.as_slice())?;
        Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
    })?;
    Ok(())
}

/// The stored schema version; a store without one (new, or from before versioning) is 0.
pub(crate) fn stored_version(db: &Db) -> Result<u32> {
    let meta = db.open_tree(META_TREE)?;
    match meta.get(SCHEMA_KEY)? {
        None => Ok(0),
        Some(raw) => {
            let bytes: [u8; 4] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                key: "meta/schema_version".to_owned(),
                reason: format!("expected 4 bytes, found {}", raw.len()),
            })?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Bring the store to [`SCHEMA_VERSION`], or refuse a store from a newer build.
pub(crate) fn upgrade(db: &Db) -> Result<()> {
    let found = stored_version(db)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let meta = db.open_tree(META_TREE)?;
    for step in MIGRATIONS.iter().filter(|m| m.to > found) {
        log::info!("store: migrating schema to version {}: {}", step.to, step.description);
        (step.apply)(db)?;
        meta.insert(SCHEMA_KEY, &step.to.to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_contiguous_and_end_at_the_current_version() {
        for (index, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.to as usize, index + 1, "{}", step.description);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.to), Some(SCHEMA_VERSION));
    }

    #[test]
    fn schema_3_moves_enabled_from_the_shared_record_to_this_nodes() {
        use crate::config::{NODE_KEY, SERVICE_KEY};
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let config = db.open_tree("config").unwrap();
        config
            .insert(SERVICE_KEY, br#"{"domain":"example.com","enabled":true}"#.as_slice())
            .unwrap();
        config
            .insert(NODE_KEY, br#"{"listen":["127.0.0.1"]}"#.as_slice())
            .unwrap();
        move_enabled_to_node(&db).unwrap();
        // Run twice: a power cut may replay a step.
        move_enabled_to_node(&db).unwrap();
        let node: crate::NodeConfig = crate::decode(String::new, &config.get(NODE_KEY).unwrap().unwrap()).unwrap();
        assert!(node.enabled);
        assert_eq!(node.listen, vec!["127.0.0.1".to_owned()]);
        let service: serde_json::Value =
            crate::decode(String::new, &config.get(SERVICE_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(service, serde_json::json!({"domain": "example.com"}));
    }
}
