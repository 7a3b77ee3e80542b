//! Typed configuration and account store on sled: schema version, migrations, flush on commit.
//!
//! sled is beta software, so it stays behind this one typed API: callers never see a tree,
//! a key layout or a byte. Shared state changes only through [`Store::apply`] of a
//! [`ConfigChange`] (usually via a [`ConfigWriter`]); this node's own settings through
//! [`Store::set_node_config`]. Both flush (fsync) before they return `Ok`, so an acknowledged
//! change survives kill -9 and power loss, and both publish on the change feed
//! ([`Store::subscribe`]). Changes that touch several trees commit in one sled transaction.
//!
//! Concurrency: reads go straight to sled. Writes take one in-process write lock, held
//! through the flush and the publication so the feed's order is the apply order (the order a
//! replicated log will impose anyway).

mod callbridge;
mod change;
mod config;
mod error;
mod federation;
mod listen;
mod migrations;
mod offline;
mod quota;
mod replica;
mod roster;
mod secret;
mod settings;
mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
mod users;
mod writer;

pub use callbridge::CallBridge;
pub use change::{Applied, ConfigChange, ExportedTree, FeedEvent, PrivacyList, Published};
pub use config::{
    AuthorizedKey, ClusterNodeConfig, DEFAULT_CLUSTER_PORT, DEFAULT_SSH_PORT, DEFAULT_WEB_PORT, NodeConfig,
    ServiceConfig, SshConfig, TlsIdentity, WebAdminConfig, XmppConfig,
};
pub use error::{Result, StoreError};
pub use federation::{DnsConfig, FederationConfig, PrivacyMode, SecurityMode};
pub use listen::{
    BoardInterface, InterfaceAddresses, ListenHost, ListenParseError, ListenTarget, MAX_INTERFACE_NAME, Unresolved,
};
pub use migrations::SCHEMA_VERSION;
pub use quota::{
    MAX_OFFLINE_BYTES_PER_ACCOUNT, MAX_PENDING_SUBSCRIPTIONS, MAX_ROSTER_ITEM_BYTES, MAX_ROSTER_ITEMS, Quota,
    STORE_BUDGET_BYTES,
};
pub use replica::{Answer, LogEntry, Refusal, SharedState};
pub use roster::{RosterItem, Subscription};
pub use sb_proto::sasl::UserCredentials;
pub use secret::Secret;
pub use writer::{ConfigWriter, LocalWriter, WriteError, Written};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::{Db, Tree};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// sled's default cache is 1 GiB; the appliance has far less RAM to spare and the working set
/// (config, accounts, rosters) is small.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: Tree,
    users: Tree,
    roster: Tree,
    roster_versions: Tree,
    offline: Tree,
    offline_counts: Tree,
    /// Per user, the sequence number of the next offline message key.
    offline_next: Tree,
    settings: Tree,
    /// Store-wide counters the quotas read (see `quota.rs`).
    usage: Tree,
    write_lock: Mutex<()>,
    feed: tokio::sync::broadcast::Sender<Published>,
    feed_seq: std::sync::atomic::AtomicU64,
    /// Held (flock) for the life of the store, so a second process gets a clear
    /// [`StoreError::Locked`] instead of sled's generic I/O error.
    _lock_file: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating if needed) the store in `dir/store`, upgrading its schema if it is
    /// older than this build's and refusing it if it is newer.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let lock_path = dir.join("store.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { path: lock_path }),
            Err(TryLockError::Error(err)) => return Err(StoreError::Io(err)),
        }

        let db = open_sled(&dir.join("store"))?;
        migrations::upgrade(&db)?;
        let inner = Inner {
            config: db.open_tree("config")?,
            users: db.open_tree("users")?,
            roster: db.open_tree("roster")?,
            roster_versions: db.open_tree("roster_versions")?,
            offline: db.open_tree("offline")?,
            offline_counts: db.open_tree("offline_counts")?,
            offline_next: db.open_tree("offline_next")?,
            settings: db.open_tree("settings")?,
            usage: db.open_tree("usage")?,
            db,
            write_lock: Mutex::new(()),
            feed: tokio::sync::broadcast::channel(change::FEED_CAPACITY).0,
            feed_seq: std::sync::atomic::AtomicU64::new(0),
            _lock_file: lock_file,
        };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// The schema version on disk (equal to [`SCHEMA_VERSION`] once open).
    pub fn schema_version(&self) -> Result<u32> {
        migrations::stored_version(&self.inner.db)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, only ordering, so a panic elsewhere cannot leave
        // anything half-updated behind it: ignore poisoning.
        self.inner
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Make everything written so far durable before the caller is told `Ok`.
    fn flush(&self) -> Result<()> {
        self.inner.db.flush()?;
        Ok(())
    }
}

/// Keys that start with a user are length-prefixed, so no name can be a prefix of another's
/// key range (`al` vs `alice`) whatever characters names contain.
fn user_prefix(user: &str) -> Vec<u8> {
    let len = u32::try_from(user.len()).unwrap_or(u32::MAX);
    let mut key = Vec::with_capacity(4 + user.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(user.as_bytes());
    key
}

fn user_subkey(user: &str, rest: &[u8]) -> Vec<u8> {
    let mut key = user_prefix(user);
    key.extend_from_slice(rest);
    key
}

fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|err| StoreError::Corrupt {
        key: what.to_owned(),
        reason: format!("cannot encode: {err}"),
    })
}

fn decode<T: DeserializeOwned>(what: impl FnOnce() -> String, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|err| StoreError::Corrupt {
        key: what(),
        // Not err.to_string(): serde_json quotes the offending value, which may be a secret.
        reason: format!(
            "{:?} error at line {} column {}",
            err.classify(),
            err.line(),
            err.column()
        ),
    })
}

fn decode_u64(what: impl FnOnce() -> String, raw: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| StoreError::Corrupt {
        key: what(),
        reason: format!("expected 8 bytes, found {}", raw.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// How long [`open_sled`] waits for this process's previous handle to let go.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Open sled, waiting (bounded) for its file lock. The caller holds `store.lock`, so no other
/// process uses this store: sled's own lock can then only still be held by this process's
/// previous handle, whose background flusher thread releases it shortly after the handle is
/// dropped (a close-then-reopen, as `mmp` and the tests do). sled reports that case only as
/// an I/O error with this text, hence the string match.
fn open_sled(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open() {
            Err(sled::Error::Io(err))
                if err.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_prefixes_do_not_nest() {
        let al = user_prefix("al");
        let alice = user_prefix("alice");
        assert!(!alice.starts_with(&al));
        assert!(user_subkey("al", b"x").starts_with(&al));
    }

    #[test]
    fn store_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Store>();
    }

    #[test]
    fn second_open_in_use_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::Locked { path }) => assert_eq!(path, dir.path().join("store.lock")),
            other => panic!("expected Locked, got {other:?}"),
        }
    }
}
