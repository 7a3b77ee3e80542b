//! The appliance's own settings on /data/appliance as PID 1 keeps them (boot markers, the
//! settings folder's modes); the file formats are sb-appliance's. Small text files, each
//! replaced atomically.

use std::path::Path;

use sb_appliance::network::NetworkConfig;
pub use sb_appliance::paths::{ADMIN, HOSTNAME, NETWORK};

/// Written once the admin password has been set: without it a missing [`ADMIN`] file means a
/// first boot, with it a damaged or interrupted reset that only the recovery menu may repair.
pub const ADMIN_WAS_SET: &str = "/data/appliance/admin-was-set";
/// Present while the system runs; an orderly shutdown removes it. Found at boot → unclean end.
pub const RUNNING: &str = "/data/appliance/running";
/// Written just before init stops petting the watchdog, with the reason.
pub const WATCHDOG_EXPECTED: &str = "/data/appliance/watchdog-expected";
/// The reset cause found at boot, for `health`.
pub const LAST_RESET: &str = "/run/switchboard/last-reset";

/// The stored network settings; none when the file is missing, and a broken file is logged
/// and ignored (the board's defaults apply) rather than leaving the box unreachable.
pub fn load_network() -> NetworkConfig {
    match std::fs::read_to_string(NETWORK) {
        Ok(text) => NetworkConfig::parse(&text).unwrap_or_else(|e| {
            log::error!("{e}; ignoring the stored network settings");
            NetworkConfig::default()
        }),
        Err(_) => NetworkConfig::default(),
    }
}

/// Replaces `path` with `contents` so that a power cut leaves either the old or the new file.
/// Owner-only (0600) from its creation: the admin password hash is one of these files.
pub fn write_atomic(path: &str, contents: &[u8]) -> std::io::Result<()> {
    sb_appliance::files::write_atomic(Path::new(path), contents, 0o600)
}

/// /data/appliance owner-only: releases before issue 13 wrote its files 0644, the admin
/// password hash among them. Then the hash alone is shared with xmppd ([`share_admin_hash`]).
pub fn restrict_settings() {
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = Path::new(ADMIN).parent() else { return };
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
        }
    }
    share_admin_hash();
}

/// The xmppd group may read the admin password hash (root:xmppd 0640, the folder root:xmppd
/// 0710, so nothing else in it is listed or read): the web admin and API in xmppd check the
/// same password as the console. Writing it stays PID 1's and the console's.
pub fn share_admin_hash() {
    use std::os::unix::fs::PermissionsExt;
    let gid = Some(crate::privileges::XMPPD_GID);
    let Some(dir) = Path::new(ADMIN).parent() else { return };
    let shared = std::os::unix::fs::chown(dir, Some(0), gid)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)));
    if let Err(e) = shared {
        log::warn!("sharing {} with xmppd: {e}", dir.display());
    }
    if Path::new(ADMIN).is_file() {
        let shared = std::os::unix::fs::chown(ADMIN, Some(0), gid)
            .and_then(|()| std::fs::set_permissions(ADMIN, std::fs::Permissions::from_mode(0o640)));
        if let Err(e) = shared {
            log::warn!("sharing the admin password hash with xmppd: {e}");
        }
    }
}

pub fn remove_durably(path: &str) {
    if std::fs::remove_file(path).is_ok()
        && let Some(dir) = Path::new(path).parent()
    {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f");
        let path = path.to_str().unwrap();
        write_atomic(path, b"one").unwrap();
        write_atomic(path, b"two").unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
        remove_durably(path);
        assert!(!Path::new(path).exists());
    }
}
