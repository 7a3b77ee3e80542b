//! The file that holds the admin password hash: `/data/appliance/admin` on the appliance, the
//! data folder's `admin-password` on a host run. Written atomically and owner-only, read by
//! every front end that checks the password (console login, web admin, API).

use std::path::Path;

/// Replace the stored hash with one of `password`: a temporary file (mode 0600 from its first
/// byte), synced, renamed over the old one, and the folder synced so the rename survives a
/// power cut.
pub fn set(path: &Path, password: &str) -> Result<(), FileError> {
    let hash = crate::password::hash(password)?;
    crate::files::replace_keeping_group_read(path, hash.as_bytes())?;
    Ok(())
}

/// Whether `password` matches the stored hash; a missing or unreadable file matches nothing.
/// A hash from an earlier release is rewritten at today's count once it verified.
pub fn verify(path: &Path, password: &str) -> bool {
    let Ok(stored) = std::fs::read_to_string(path) else {
        return false;
    };
    let ok = crate::password::verify(&stored, password);
    if ok && crate::password::needs_upgrade(&stored) {
        // Best effort: the old hash still works when this fails.
        let _ = set(path, password);
    }
    ok
}

/// Whether a password was ever set.
pub fn exists(path: &Path) -> bool {
    path.is_file()
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Hash(#[from] crate::password::PasswordError),
    #[error("cannot write the admin password file: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_set_password_verifies_from_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-password");
        assert!(!exists(&path));
        assert!(!verify(&path, "anything"));
        set(&path, "correct horse").unwrap();
        assert!(verify(&path, "correct horse"));
        assert!(!verify(&path, "correct hors"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("correct"));
    }

    #[test]
    fn an_old_hash_is_upgraded_after_it_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin");
        std::fs::write(&path, crate::password::hash_with("correct horse", 1000).unwrap()).unwrap();
        assert!(verify(&path, "correct horse"));
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!crate::password::needs_upgrade(&stored), "{stored}");
    }

    /// PID 1 shares the hash with the xmppd group (0640); a new password keeps that.
    #[test]
    fn a_new_password_keeps_the_group_read_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin");
        set(&path, "first password").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        set(&path, "second password").unwrap();
        assert!(verify(&path, "second password"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
