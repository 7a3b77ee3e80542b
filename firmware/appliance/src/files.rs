//! Replacing a file so that a crash or power cut leaves the old contents or the new ones,
//! never a mix, and never readable by others for a moment: the settings, the admin password
//! hash, keys, certificates and the store's last-good copy are all written this way.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to a hidden temporary file beside `path` created with `mode` less the
/// umask (never wider first), syncs it, renames it over `path` and syncs the folder, so the rename itself survives
/// a power cut. Missing folders are made.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, contents, mode, |_| Ok(()))
}

/// [`write_atomic`] owner-only, keeping the group of the file it replaces and its group read
/// bit: on the appliance PID 1 lets the xmppd group read the admin password hash (the web
/// admin and SSH check it), and a new password must not undo that.
pub fn replace_keeping_group_read(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let previous = std::fs::metadata(path).ok().filter(|m| m.mode() & 0o040 != 0);
    write_atomic_with(path, contents, 0o600, |file| {
        if let Some(previous) = &previous {
            std::os::unix::fs::fchown(file, None, Some(previous.gid()))?;
            file.set_permissions(Permissions::from_mode(0o640))?;
        }
        Ok(())
    })
}

fn write_atomic_with(
    path: &Path,
    contents: &[u8],
    mode: u32,
    before_writing: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    // A temporary left by a crash may have another mode: start from nothing.
    let _ = std::fs::remove_file(&temporary);
    // The process's umask still applies: xmppd's 077 keeps even a certificate owner-only.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    before_writing(&file)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_write_replaces_the_file_whole_with_the_mode_asked_and_no_temporary_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/settings");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("settings")]);
    }

    #[test]
    fn a_stale_temporary_with_a_wide_mode_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let stale = dir.path().join(".key.tmp");
        std::fs::write(&stale, b"old").unwrap();
        std::fs::set_permissions(&stale, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"secret", 0o600).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_replaced_file_keeps_group_read_only_when_it_had_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin");
        replace_keeping_group_read(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        replace_keeping_group_read(&path, b"second").unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
    }
}
