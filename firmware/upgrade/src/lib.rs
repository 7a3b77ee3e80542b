//! A/B upgrades of the appliance, the parts without a kernel interface of their own:
//! - [`bundle`]: the signed upgrade image (`*.sbu`): header, manifest, ed25519 signature,
//!   payload (the boot slot's FAT filesystem holding the UKI), parsed with limits;
//! - [`efi`]: UEFI load options and `BootOrder`/`BootNext`/`BootCurrent` as efivarfs files;
//! - [`gpt`]: the partition table, to find a slot's first sector, size and unique GUID;
//! - [`state`]: what PID 1 records about the slots on /data (versions, last outcome).
//!
//! Used by the image tool (writes and signs), PID 1 (verifies, writes the slot, switches the
//! boot) and the admin commands (verify before asking PID 1, show the state).

pub mod bundle;
pub mod efi;
pub mod gpt;
pub mod state;

/// Where the image tool puts the verifying key in the initramfs (hex, 32 bytes): inside the
/// signed UKI, so the key that checks the next image came with a checked image.
pub const PUBLIC_KEY_FILE: &str = "/etc/switchboard/upgrade-key.pub";

/// Reads a key file written by the image tool: 64 hex digits.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_files_round_trip_and_junk_is_refused() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_public_key(&format!("{}\n", hex(&key))), Some(key));
        assert_eq!(parse_public_key("abcd"), None);
        assert_eq!(parse_public_key(&"zz".repeat(32)), None);
    }
}
