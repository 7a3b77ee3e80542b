//! The signed upgrade image (`upgrade.sbu`, format in `sb_upgrade::bundle`): the boot slot's FAT
//! filesystem holding the UKI as `switchboard.efi`, its trailing zeros cut, signed with ed25519.
//! PID 1 writes the payload to the inactive slot's partition as it is.

use std::io::Cursor;
use std::path::Path;

use crate::kernel::path_str;
use crate::{ImageError, host, io_err};

/// The repository's development key (public on purpose; see image/keys/README.md).
pub const DEVELOPMENT_KEY: &[u8] = include_bytes!("../keys/upgrade-development.pk8");
/// Names a production signing key file (PKCS#8 DER ed25519); the flag `--upgrade-key` too.
pub const KEY_ENV: &str = "SB_UPGRADE_KEY";

pub struct SigningKey {
    pub pkcs8: Vec<u8>,
    /// Signed with the repository's development key: said loudly, recorded in the manifest.
    pub development: bool,
}

impl SigningKey {
    pub fn development() -> SigningKey {
        SigningKey {
            pkcs8: DEVELOPMENT_KEY.to_vec(),
            development: true,
        }
    }

    /// The key file named by `path`, else by $SB_UPGRADE_KEY, else the development key.
    pub fn choose(path: Option<&Path>) -> Result<SigningKey, ImageError> {
        let from_env = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty());
        let path = path.map(Path::to_path_buf).or(from_env.map(Into::into));
        let Some(path) = path else {
            return Ok(SigningKey::development());
        };
        let pkcs8 = std::fs::read(&path).map_err(|source| ImageError::Io {
            what: format!("reading the upgrade signing key {}", path.display()),
            source,
        })?;
        sb_upgrade::bundle::public_key(&pkcs8)
            .map_err(|e| ImageError::Other(format!("upgrade signing key {}: {e}", path.display())))?;
        Ok(SigningKey {
            pkcs8,
            development: false,
        })
    }

    pub fn public_key_hex(&self) -> Result<String, ImageError> {
        let public = sb_upgrade::bundle::public_key(&self.pkcs8).map_err(|e| ImageError::Other(e.to_string()))?;
        Ok(sb_upgrade::hex(&public))
    }

    pub fn label(&self) -> &'static str {
        if self.development { "development" } else { "production" }
    }
}

pub struct BundleInputs<'a> {
    pub board_name: &'a str,
    pub version: &'a str,
    pub uki: &'a Path,
    pub slot_mib: u64,
    pub work: &'a Path,
    /// SOURCE_DATE_EPOCH for mtools: the same inputs give the same image.
    pub epoch: u32,
}

/// Builds the slot filesystem around `inputs.uki` and writes the signed image to `out`.
pub fn build(inputs: &BundleInputs, key: &SigningKey, out: &Path) -> Result<sb_upgrade::bundle::Manifest, ImageError> {
    let fat = inputs.work.join("upgrade-slot.img");
    let file = std::fs::File::create(&fat).map_err(io_err("creating the slot filesystem"))?;
    file.set_len(inputs.slot_mib * 1024 * 1024)
        .map_err(io_err("sizing the slot filesystem"))?;
    drop(file);
    let image = path_str(&fat)?;
    let epoch = inputs.epoch.to_string();
    let env = [
        ("MTOOLS_SKIP_CHECK", "1"),
        ("TZ", "UTC"),
        ("SOURCE_DATE_EPOCH", epoch.as_str()),
    ];
    let serial = format!(
        "{:08x}",
        u32::from_str_radix(&crate::stable_uuid(inputs.board_name, inputs.version)[..8], 16).unwrap_or(0)
    );
    host::run(
        "mformat",
        &["-i", image, "-N", &serial, "-v", "SWITCHBOARD", "::"],
        None,
        &env,
    )?;
    host::run(
        "mcopy",
        &["-m", "-i", image, path_str(inputs.uki)?, "::/switchboard.efi"],
        None,
        &env,
    )?;
    let mut payload = std::fs::read(&fat).map_err(io_err("reading the slot filesystem"))?;
    std::fs::remove_file(&fat).map_err(io_err("removing the slot filesystem scratch file"))?;
    trim_trailing_zero_sectors(&mut payload);
    let uki = std::fs::read(inputs.uki).map_err(io_err("reading the UKI"))?;
    let manifest = sb_upgrade::bundle::manifest_for(inputs.board_name, inputs.version, &payload, &uki, key.label());
    let mut bytes = Vec::with_capacity(payload.len() + 8192);
    sb_upgrade::bundle::write(&manifest, &key.pkcs8, &mut Cursor::new(&payload), &mut bytes)
        .map_err(|e| ImageError::Other(format!("signing the upgrade image: {e}")))?;
    std::fs::write(out, bytes).map_err(io_err("writing the upgrade image"))?;
    if key.development {
        log::warn!(
            "upgrade image {} signed with the DEVELOPMENT key (image/keys): boxes built from this \
             tree accept upgrades anyone can sign; set {KEY_ENV} for a production key",
            out.display()
        );
    }
    Ok(manifest)
}

/// A FAT filesystem written by mformat/mcopy keeps everything it uses at its start; the rest
/// of the slot is free clusters that nothing reads, so the image carries only up to the last
/// sector with data.
pub fn trim_trailing_zero_sectors(bytes: &mut Vec<u8>) {
    let end = bytes.iter().rposition(|&b| b != 0).map(|i| i + 1).unwrap_or(0);
    bytes.truncate(end.div_ceil(512) * 512);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zero_sectors_are_cut_at_a_sector_boundary() {
        let mut bytes = vec![0u8; 4096];
        bytes[700] = 1;
        trim_trailing_zero_sectors(&mut bytes);
        assert_eq!(bytes.len(), 1024);
        let mut empty = vec![0u8; 4096];
        trim_trailing_zero_sectors(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn the_development_key_is_a_usable_ed25519_key() {
        let key = SigningKey::development();
        assert!(key.development);
        assert_eq!(key.public_key_hex().unwrap().len(), 64);
        assert_eq!(key.label(), "development");
    }
}
