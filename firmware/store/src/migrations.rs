//! Schema versions and the steps between them.
//!
//! The version lives in the `meta` tree. Each step runs, then records its target version and
//! flushes, so a power cut during an upgrade resumes at the step that was interrupted. A step
//! must therefore be idempotent. Values are serde_json with `#[serde(default)]`, so adding a
//! field is not a migration; renaming, re-keying or splitting a tree is.

use crate::error::{Result, StoreError};
use sled::Db;

/// The schema this build writes. Bump it together with a new entry in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u32 = 1;

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
    "settings",
];

struct Migration {
    /// The version the store has after this step.
    to: u32,
    description: &'static str,
    apply: fn(&Db) -> Result<()>,
}

/// In order; `MIGRATIONS[i].to == i + 1`.
const MIGRATIONS: &[Migration] = &[Migration {
    to: 1,
    description: "initialise an empty store",
    apply: initialise,
}];

fn initialise(db: &Db) -> Result<()> {
    for name in TREES {
        db.open_tree(name)?;
    }
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
}
