//! The host key: ed25519, made on first start and kept in the data folder (owner-only), so
//! clients' `known_hosts` entries stay valid across restarts and upgrades. Its public half is
//! written beside it for `ssh status` (sb-admin computes the fingerprint from it).

use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};
use sb_admin::ssh::{HOST_KEY_FILE, HOST_PUBLIC_KEY_FILE};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read the SSH host key {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("the SSH host key {file} is not an OpenSSH private key: {reason}")]
    Parse { file: PathBuf, reason: String },
    #[error("cannot write the SSH host key {file}: {source}")]
    Write { file: PathBuf, source: std::io::Error },
    #[error("cannot make an SSH host key: {0}")]
    Generate(String),
}

/// The host key of the node whose data folder is `data_dir`: read, or made and saved when
/// there is none. A key file that exists but does not parse is an error, never replaced: a
/// silently new host key is what a man in the middle looks like to every client.
pub fn load_or_create(data_dir: &Path) -> Result<PrivateKey, HostKeyError> {
    let file = data_dir.join(HOST_KEY_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| HostKeyError::Parse {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            // The public half is derived data: rewrite it if it went missing.
            if !data_dir.join(HOST_PUBLIC_KEY_FILE).exists() {
                write_public(data_dir, &key)?;
            }
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(data_dir, &file),
        Err(source) => Err(HostKeyError::Read { file, source }),
    }
}

fn create(data_dir: &Path, file: &Path) -> Result<PrivateKey, HostKeyError> {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| HostKeyError::Generate("no randomness from the operating system".to_owned()))?;
    let keypair = Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::new(KeypairData::Ed25519(keypair), "switchboard")
        .map_err(|e| HostKeyError::Generate(e.to_string()))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| HostKeyError::Generate(e.to_string()))?;
    write_owner_only(file, text.as_bytes(), 0o600)?;
    write_public(data_dir, &key)?;
    log::info!(
        "made the SSH host key {} ({})",
        file.display(),
        key.public_key().fingerprint(HashAlg::Sha256)
    );
    Ok(key)
}

fn write_public(data_dir: &Path, key: &PrivateKey) -> Result<(), HostKeyError> {
    let file = data_dir.join(HOST_PUBLIC_KEY_FILE);
    let line = key
        .public_key()
        .to_openssh()
        .map_err(|e| HostKeyError::Generate(e.to_string()))?;
    write_owner_only(&file, format!("{line}\n").as_bytes(), 0o644)
}

/// The private key is never readable by others, not even for a moment.
fn write_owner_only(file: &Path, contents: &[u8], mode: u32) -> Result<(), HostKeyError> {
    use std::os::unix::fs::PermissionsExt;
    sb_appliance::files::write_atomic(file, contents, mode)
        // xmppd's umask (077) would narrow the public half, which should stay readable.
        .and_then(|()| std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)))
        .map_err(|source| HostKeyError::Write {
            file: file.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_host_key_is_made_once_kept_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let file = dir.path().join(HOST_KEY_FILE);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        // The public file gives the fingerprint ssh status shows, equal to OpenSSH's.
        let public = std::fs::read_to_string(dir.path().join(HOST_PUBLIC_KEY_FILE)).unwrap();
        let blob = public.split_whitespace().nth(1).unwrap();
        assert_eq!(
            sb_admin::ssh::fingerprint(blob).unwrap(),
            first.public_key().fingerprint(HashAlg::Sha256).to_string()
        );
        std::fs::remove_file(dir.path().join(HOST_PUBLIC_KEY_FILE)).unwrap();
        load_or_create(dir.path()).unwrap();
        assert!(dir.path().join(HOST_PUBLIC_KEY_FILE).exists());
    }

    #[test]
    fn a_damaged_host_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HOST_KEY_FILE), "garbage").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, HostKeyError::Parse { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(HOST_KEY_FILE)).unwrap(),
            "garbage"
        );
    }
}
