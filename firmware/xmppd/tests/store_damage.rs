//! Issue 13: a damaged store is a deterministic start failure with its own exit code, the
//! daemon keeps a last-good copy that `--restore-last-good` puts back, and the data folder is
//! owner-only.

mod common;

use common::{DOMAIN, Daemon, FORK_LOCK, PATIENCE};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// sysexits' EX_DATAERR, what init holds xmppd on (xmppd/src/startup.rs).
const EXIT_STORE_DAMAGED: i32 = 65;

fn xmppd(dir: &Path, args: &[&str]) -> Output {
    let _no_fork = FORK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .arg("-d")
        .arg(dir)
        .args(args)
        .output()
        .expect("run xmppd")
}

/// (path, mode) of everything under `dir` whose mode is not owner-only.
fn wider_than_owner(dir: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        if (meta.is_dir() || meta.is_file() || meta.file_type().is_socket()) && mode != wanted {
            found.push((path.display().to_string(), mode));
        }
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_reported_as_such_and_the_last_good_copy_restores_it() {
    let mut daemon = Daemon::start(&["alice"], &[], |_| {});
    let dir = daemon.dir.path().to_path_buf();
    let last_good = dir.join("last-good.snapshot");
    let deadline = Instant::now() + PATIENCE;
    while !last_good.exists() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        last_good.exists(),
        "no last-good copy after the start:\n{}",
        daemon.log()
    );
    // The harness made the data dir and the log file with the usual umask (0755/0644): the
    // daemon tightened them, and everything it made itself (store, certificate key, admin
    // socket, the copy) is owner-only.
    let wide = wider_than_owner(&dir);
    assert!(wide.is_empty(), "not owner-only: {wide:?}");
    let status = tokio::task::block_in_place(|| daemon.terminate());
    assert!(status.success(), "{status}");

    // Garbage over every file sled keeps.
    for entry in std::fs::read_dir(dir.join("store")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let len = std::fs::metadata(&path).unwrap().len().max(64) as usize;
            std::fs::write(&path, vec![0xA5u8; len]).unwrap();
        }
    }
    let failed = xmppd(&dir, &[]);
    assert_eq!(
        failed.status.code(),
        Some(EXIT_STORE_DAMAGED),
        "{failed:?}\n{}",
        daemon.log()
    );
    let reason = String::from_utf8_lossy(&failed.stderr);
    let last_line = reason.lines().last().unwrap_or_default();
    assert!(last_line.starts_with("xmppd: store"), "{reason}");
    let check = xmppd(&dir, &["--check-store"]);
    assert_eq!(check.status.code(), Some(EXIT_STORE_DAMAGED), "{check:?}");

    let restored = xmppd(&dir, &["--restore-last-good"]);
    assert!(restored.status.success(), "{restored:?}");
    let check = xmppd(&dir, &["--check-store"]);
    assert!(check.status.success(), "{check:?}");
    let damaged_kept = std::fs::read_dir(&dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("store.damaged-"));
    assert!(damaged_kept, "the damaged store was not kept aside");
    {
        let _no_fork = FORK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let store = sb_store::Store::open(&dir).unwrap();
        assert_eq!(store.xmpp_config().unwrap().domain, DOMAIN);
        assert!(store.list_users().unwrap().contains(&"alice".to_owned()));
    }
    let wide = wider_than_owner(&dir);
    assert!(wide.is_empty(), "not owner-only after the restore: {wide:?}");
}

#[test]
fn a_bad_command_line_is_a_deterministic_failure_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = xmppd(dir.path(), &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}
