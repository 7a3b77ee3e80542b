//! What xmppd does before and around serving, for a supervisor that must tell a fault that
//! will pass from one that will not (issue 13, "a corrupt store reboots the box for ever"):
//!
//! - the exit code: [`EXIT_STORE_DAMAGED`] and [`EXIT_CONFIG_INVALID`] (and [`EXIT_USAGE`]) say
//!   "starting again changes nothing"; any other failure may be transient. init holds xmppd on
//!   those codes instead of restarting it into a watchdog reset. The reason is the last line
//!   xmppd writes to stderr (`xmppd: <reason>`).
//! - the data folder is owner-only: umask 077 for everything xmppd creates, and files left
//!   wider by earlier releases (or by a root `mmp` while xmppd was stopped) fixed at start.
//! - a last-good copy of the store ([`LAST_GOOD`], every tree, written atomically after each
//!   start that served), and the maintenance modes the recovery menu runs:
//!   `xmppd -d DIR --check-store` and `xmppd -d DIR --restore-last-good`.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sb_store::{ExportedTree, Store, StoreError};

use crate::StartError;

/// sysexits' EX_USAGE: the command line is wrong; the same command line will fail again.
pub const EXIT_USAGE: u8 = 64;
/// sysexits' EX_DATAERR: the store cannot be used (unreadable, corrupt record, newer schema).
/// init (firmware/init, `start_failure.rs`) matches this number.
pub const EXIT_STORE_DAMAGED: u8 = 65;
/// sysexits' EX_CONFIG: the stored configuration cannot be served (an invalid domain).
pub const EXIT_CONFIG_INVALID: u8 = 78;
/// Any other failure (a lock still held, a runtime that did not start, I/O): try again.
pub const EXIT_TRANSIENT: u8 = 1;

/// The copy of every store tree taken after the last start that served.
pub const LAST_GOOD: &str = "last-good.snapshot";
/// The copy before that (see [`save_last_good`]).
pub const PREVIOUS_GOOD: &str = "last-good.previous.snapshot";
const MAGIC: &[u8] = b"switchboard-store-snapshot 1\n";

/// The exit code for a start failure.
pub fn exit_code(error: &StartError) -> u8 {
    match error {
        StartError::Usage(_) => EXIT_USAGE,
        StartError::Store(e) | StartError::Server(sb_server::ServerError::Config(e)) if e.is_damage() => {
            EXIT_STORE_DAMAGED
        }
        StartError::Server(sb_server::ServerError::Domain(_)) => EXIT_CONFIG_INVALID,
        _ => EXIT_TRANSIENT,
    }
}

/// umask 077 for the life of the process, then the data folder and everything in it owner-only
/// (directories 0700, files 0600). Problems are logged: a mode that cannot be fixed is not a
/// reason to refuse service.
pub fn secure_data_dir(dir: &Path) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    if let Err(e) = std::fs::create_dir_all(dir) {
        log::warn!("creating {}: {e}", dir.display());
        return;
    }
    restrict_tree(dir, 0);
}

/// Symbolic links are left alone (their target may be anywhere); the depth is bounded.
fn restrict_tree(path: &Path, depth: usize) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let wanted = if meta.is_dir() {
        0o700
    } else if meta.is_file() || meta.file_type().is_socket() {
        0o600
    } else {
        return;
    };
    if meta.permissions().mode() & 0o7777 != wanted
        && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
    {
        log::warn!("making {} owner-only: {e}", path.display());
    }
    if meta.is_dir() && depth < 16 {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            restrict_tree(&entry.path(), depth + 1);
        }
    }
}

/// [`Store::open`], with a panic inside sled (it has a few on damaged files) reported as the
/// damage it is rather than as a crash init would retry.
pub fn open_store(dir: &Path) -> Result<Store, StoreError> {
    match std::panic::catch_unwind(|| Store::open(dir)) {
        Ok(opened) => opened,
        Err(panic) => Err(StoreError::Corrupt {
            key: "(sled files)".to_owned(),
            reason: format!(
                "sled panicked opening it: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into())
            ),
        }),
    }
}

/// Writes [`LAST_GOOD`] from the running store; called once the service started, so the copy
/// is of a store that opened and served. A failure is logged and the previous copy stays.
pub fn save_last_good(store: &Store, dir: &Path) {
    // One generation back as well: a store that sled opened but silently lost records from
    // would otherwise replace the only good copy at its first start.
    let current = dir.join(LAST_GOOD);
    if current.exists()
        && let Err(e) = std::fs::rename(&current, dir.join(PREVIOUS_GOOD))
    {
        log::warn!("keeping the previous last-good copy: {e}");
    }
    let written = store
        .export()
        .map_err(|e| e.to_string())
        .and_then(|trees| write_atomic(&current, &encode(&trees)).map_err(|e| e.to_string()));
    match written {
        Ok(()) => log::info!("last-good copy of the store written to {LAST_GOOD}"),
        Err(e) => log::warn!("writing the last-good copy of the store: {e}"),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    sb_appliance::files::write_atomic(path, bytes, 0o600)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `magic, then per tree: name, entry count, then per entry: key, value`; lengths are u32/u64
/// big-endian. Framed, so a truncated file is refused rather than half-read.
fn encode(trees: &[ExportedTree]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let bytes = |b: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(b);
    };
    out.extend_from_slice(&(trees.len() as u64).to_be_bytes());
    for (name, entries) in trees {
        bytes(name.as_bytes(), &mut out);
        out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        for (key, value) in entries {
            bytes(key, &mut out);
            bytes(value, &mut out);
        }
    }
    out
}

fn decode(mut input: &[u8]) -> Option<Vec<ExportedTree>> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = input.split_at_checked(n)?;
        *input = rest;
        Some(head)
    }
    fn count(input: &mut &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(take(input, 8)?.try_into().ok()?))
    }
    fn bytes(input: &mut &[u8]) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(take(input, 4)?.try_into().ok()?);
        Some(take(input, usize::try_from(len).ok()?)?.to_vec())
    }
    if take(&mut input, MAGIC.len())? != MAGIC {
        return None;
    }
    let mut trees = Vec::new();
    for _ in 0..count(&mut input)? {
        let name = String::from_utf8(bytes(&mut input)?).ok()?;
        let mut entries = Vec::new();
        for _ in 0..count(&mut input)? {
            entries.push((bytes(&mut input)?, bytes(&mut input)?));
        }
        trees.push((name, entries));
    }
    input.is_empty().then_some(trees)
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no last-good copy in {0}")]
    Missing(PathBuf),
    #[error("the last-good copy {0} is damaged too")]
    Unreadable(PathBuf),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Puts the last-good copy in place of `DIR/store`: imported into a fresh store beside it,
/// then the damaged store is moved to `DIR/store.damaged-<unix time>` (kept, for export) and
/// the fresh one renamed in. Refuses while anything holds the store's lock.
pub fn restore_last_good(dir: &Path) -> Result<PathBuf, RestoreError> {
    let snapshot = dir.join(LAST_GOOD);
    let raw = match std::fs::read(&snapshot) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RestoreError::Missing(snapshot)),
        Err(e) => return Err(e.into()),
    };
    let trees = decode(&raw).ok_or_else(|| RestoreError::Unreadable(snapshot.clone()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("store.lock"))?;
    lock.try_lock().map_err(|_| StoreError::Locked {
        path: dir.join("store.lock"),
    })?;
    let staging = dir.join("restore.tmp");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    {
        let fresh = Store::open(&staging)?;
        fresh.import(&trees)?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = dir.join(format!("store.damaged-{now}"));
    if dir.join("store").exists() {
        std::fs::rename(dir.join("store"), &aside)?;
    }
    std::fs::rename(staging.join("store"), dir.join("store"))?;
    let _ = std::fs::remove_dir_all(&staging);
    sync_dir(dir)?;
    Ok(aside)
}

/// Reads every record, as serving would: Ok when the store opens and all of it decodes.
pub fn check_store(dir: &Path) -> Result<usize, StoreError> {
    let store = open_store(dir)?;
    let records = store.export()?.iter().map(|(_, entries)| entries.len()).sum();
    store.xmpp_config()?;
    store.node_config()?;
    Ok(records)
}

/// `xmppd -d DIR --check-store` and `xmppd -d DIR --restore-last-good`, for the recovery menu:
/// `Some(exit code)` when the arguments ask for one, `None` for a normal start.
pub fn maintenance(args: &[String]) -> Option<ExitCode> {
    let check = args.iter().any(|a| a == "--check-store");
    let restore = args.iter().any(|a| a == "--restore-last-good");
    if !check && !restore {
        return None;
    }
    let Some(dir) = args
        .iter()
        .position(|a| a == "-d" || a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
    else {
        eprintln!("xmppd: --check-store and --restore-last-good need -d DIR");
        return Some(ExitCode::from(EXIT_USAGE));
    };
    secure_data_dir(&dir);
    if restore {
        return Some(match restore_last_good(&dir) {
            Ok(aside) => {
                println!(
                    "restored the last-good copy of the store; the damaged one is kept as {}",
                    aside.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xmppd: restore failed: {e}");
                ExitCode::from(EXIT_TRANSIENT)
            }
        });
    }
    Some(match check_store(&dir) {
        Ok(records) => {
            println!("the store opens and all {records} records read back");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xmppd: {e}");
            ExitCode::from(if e.is_damage() {
                EXIT_STORE_DAMAGED
            } else {
                EXIT_TRANSIENT
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_and_bad_configuration_are_told_apart_from_what_may_pass() {
        let corrupt = || StoreError::Corrupt {
            key: "config/service".into(),
            reason: "EOF".into(),
        };
        assert_eq!(exit_code(&StartError::Store(corrupt())), EXIT_STORE_DAMAGED);
        assert_eq!(
            exit_code(&StartError::Store(StoreError::SchemaTooNew { found: 9, supported: 2 })),
            EXIT_STORE_DAMAGED
        );
        assert_eq!(
            exit_code(&StartError::Server(sb_server::ServerError::Config(corrupt()))),
            EXIT_STORE_DAMAGED
        );
        assert_eq!(
            exit_code(&StartError::Server(sb_server::ServerError::Domain("a..b".into()))),
            EXIT_CONFIG_INVALID
        );
        assert_eq!(exit_code(&StartError::Usage("x".into())), EXIT_USAGE);
        // A second xmppd still holding the lock, or an I/O hiccup: try again.
        let locked = StoreError::Locked {
            path: "store.lock".into(),
        };
        assert_eq!(exit_code(&StartError::Store(locked)), EXIT_TRANSIENT);
        let io = StoreError::Io(std::io::Error::other("EIO"));
        assert_eq!(exit_code(&StartError::Store(io)), EXIT_TRANSIENT);
        assert_eq!(
            exit_code(&StartError::Runtime(std::io::Error::other("no threads"))),
            EXIT_TRANSIENT
        );
    }

    #[test]
    fn snapshots_round_trip_and_truncation_is_refused() {
        let trees: Vec<ExportedTree> = vec![
            ("meta".into(), vec![(b"schema_version".to_vec(), vec![0, 0, 0, 2])]),
            (
                "users".into(),
                vec![(b"alice".to_vec(), b"{}".to_vec()), (vec![], vec![])],
            ),
            ("offline".into(), vec![]),
        ];
        let encoded = encode(&trees);
        assert_eq!(decode(&encoded), Some(trees));
        for cut in [0, MAGIC.len(), encoded.len() - 1] {
            assert_eq!(decode(&encoded[..cut]), None, "cut at {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }
}
