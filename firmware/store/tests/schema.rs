//! Schema versioning: new stores get the current version, older ones are migrated, newer
//! ones are refused untouched. The raw layout used here (tree `meta`, key
//! `schema_version`, u32 big-endian) is the store's on-disk contract.

use sb_store::{SCHEMA_VERSION, Store, StoreError};
use std::path::Path;

/// sled's own file lock is released by the closed store's flusher thread a moment after the
/// handle is dropped (slower on a loaded machine): wait for it, bounded, as `Store::open` does.
fn raw_open(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir.join("store")) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                assert!(std::time::Instant::now() < deadline, "sled lock still held: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("sled open: {e}"),
        }
    }
}

fn raw_version(dir: &Path) -> Option<u32> {
    let db = raw_open(dir);
    let meta = db.open_tree("meta").unwrap();
    meta.get("schema_version")
        .unwrap()
        .map(|raw| u32::from_be_bytes(raw.as_ref().try_into().unwrap()))
}

fn write_raw_version(dir: &Path, version: u32) {
    let db = raw_open(dir);
    let meta = db.open_tree("meta").unwrap();
    meta.insert("schema_version", &version.to_be_bytes()).unwrap();
    db.flush().unwrap();
}

#[test]
fn new_store_records_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert_eq!(raw_version(dir.path()), Some(SCHEMA_VERSION));
}

#[test]
fn unversioned_store_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A store as an older build might have left it: data, no version key.
        let db = sled::open(dir.path().join("store")).unwrap();
        db.open_tree("settings")
            .unwrap()
            .insert("kept", "42".as_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    assert_eq!(raw_version(dir.path()), None);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.get_setting::<u32>("kept").unwrap(), Some(42));
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .apply(&sb_store::ConfigChange::PutSetting {
            key: "marker".into(),
            value: "before".into(),
        })
        .unwrap();
    drop(store);
    write_raw_version(dir.path(), SCHEMA_VERSION + 1);

    match Store::open(dir.path()) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let message = Store::open(dir.path()).unwrap_err().to_string();
    assert!(message.contains("newer"), "{message}");
    // The operator is told the way back (A/B upgrades: an older slot meets a migrated store).
    assert!(message.contains("`upgrade rollback`"), "{message}");
    assert_eq!(raw_version(dir.path()), Some(SCHEMA_VERSION + 1));
    // Nothing was rewritten: the newer build still finds its data.
    write_raw_version(dir.path(), SCHEMA_VERSION);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get_setting::<String>("marker").unwrap().as_deref(),
        Some("before")
    );
}

#[test]
fn corrupt_version_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = sled::open(dir.path().join("store")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", "x".as_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    match Store::open(dir.path()) {
        Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "meta/schema_version"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
