//! The signed upgrade image (`*.sbu`). Layout, all integers little-endian:
//!
//! ```text
//! 0        8 bytes   magic "SBUPGRD1"
//! 8        u32       manifest length m (1..=4096)
//! 12       m bytes   manifest, TOML (format, board, version, payload kind/size/sha256, ...)
//! 12+m     64 bytes  ed25519 signature over bytes 0..12+m
//! 76+m     payload   exactly manifest.payload_size bytes, then end of file
//! ```
//!
//! The signature covers the header and the manifest; the manifest covers the payload by its
//! sha256. A reader checks, in this order and before it trusts anything: the magic, the
//! manifest's size, the signature, the manifest's fields and board, the file's exact length,
//! then the payload's digest (streamed: the payload is tens of MiB and PID 1 has little RAM).
//! The payload is the boot slot's FAT filesystem (holding `switchboard.efi`, the UKI) with its
//! trailing zeros cut, so PID 1 writes it to the slot's partition as it is.

use std::io::{Read, Seek, SeekFrom, Write};

use ring::digest;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"SBUPGRD1";
pub const FORMAT: u32 = 1;
pub const MAX_MANIFEST: usize = 4096;
pub const SIGNATURE_LEN: usize = 64;
const HEADER_LEN: usize = MAGIC.len() + 4;
/// A boot slot is 64 MiB on the boards we have; nothing bigger is an image of ours.
pub const MAX_PAYLOAD: u64 = 256 << 20;
/// The one payload kind so far: a FAT filesystem for a boot slot, `switchboard.efi` in its root.
pub const PAYLOAD_BOOT_SLOT_FAT: &str = "boot-slot-fat";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The board file's `board.name`; an image only installs on its own board.
    pub board: String,
    pub version: String,
    pub payload: String,
    pub payload_size: u64,
    pub payload_sha256: String,
    /// The UKI inside the payload, for the operator to compare with a build.
    pub uki_sha256: String,
    /// `development` or `production`: which key signed it, shown before installing.
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a Switchboard upgrade image (no SBUPGRD1 header)")]
    NotAnImage,
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("manifest of {0} bytes is outside 1..={MAX_MANIFEST}")]
    ManifestSize(usize),
    #[error(
        "the signature does not verify with this appliance's upgrade key (unsigned, signed with another key, or altered)"
    )]
    BadSignature,
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("made for board {found}, this is {expected}")]
    WrongBoard { found: String, expected: String },
    #[error("payload of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0} bytes after the payload: not the file that was signed")]
    TrailingBytes(u64),
    #[error("payload sha256 does not match the manifest: the file is corrupt")]
    Corrupt,
    #[error("signing key: {0}")]
    Key(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A checked image: every byte verified; `payload_offset` is where the payload starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    pub payload_offset: u64,
}

/// The public half of a PKCS#8 ed25519 key (as written by ring or `openssl genpkey`).
pub fn public_key(key_pkcs8: &[u8]) -> Result<[u8; 32], BundleError> {
    let pair = key_pair(key_pkcs8)?;
    let mut public = [0u8; 32];
    public.copy_from_slice(pair.public_key().as_ref());
    Ok(public)
}

fn key_pair(key_pkcs8: &[u8]) -> Result<Ed25519KeyPair, BundleError> {
    // maybe_unchecked: also takes PKCS#8 v1 (no public key inside), what openssl writes.
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(key_pkcs8).map_err(|e| BundleError::Key(e.to_string()))
}

/// sha256 of the first `size` bytes of `input`, streamed; `copy_to` gets the same bytes.
pub fn digest_stream(
    input: &mut impl Read,
    size: u64,
    mut copy_to: Option<&mut dyn Write>,
) -> Result<[u8; 32], BundleError> {
    let mut context = digest::Context::new(&digest::SHA256);
    let mut buffer = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        let want = left.min(buffer.len() as u64) as usize;
        let n = input.read(&mut buffer[..want])?;
        if n == 0 {
            return Err(BundleError::Truncated(format!("payload ends {left} bytes early")));
        }
        context.update(&buffer[..n]);
        if let Some(out) = copy_to.as_deref_mut() {
            out.write_all(&buffer[..n])?;
        }
        left -= n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    Ok(out)
}

/// Reads the manifest's payload size from `input` (copying it to `copy_to`); `Corrupt` unless
/// the bytes have the manifest's digest.
fn stream_payload(
    input: &mut impl Read,
    manifest: &Manifest,
    copy_to: Option<&mut dyn Write>,
) -> Result<(), BundleError> {
    let digest = digest_stream(input, manifest.payload_size, copy_to)?;
    if crate::hex(&digest) != manifest.payload_sha256 {
        return Err(BundleError::Corrupt);
    }
    Ok(())
}

/// Writes a signed image: `manifest` must already carry the payload's size and digest.
pub fn write(
    manifest: &Manifest,
    key_pkcs8: &[u8],
    payload: &mut impl Read,
    out: &mut impl Write,
) -> Result<(), BundleError> {
    let pair = key_pair(key_pkcs8)?;
    let text = toml::to_string(manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    if text.is_empty() || text.len() > MAX_MANIFEST {
        return Err(BundleError::ManifestSize(text.len()));
    }
    let mut signed = Vec::with_capacity(HEADER_LEN + text.len());
    signed.extend_from_slice(MAGIC);
    signed.extend_from_slice(&(text.len() as u32).to_le_bytes());
    signed.extend_from_slice(text.as_bytes());
    let signature = pair.sign(&signed);
    out.write_all(&signed)?;
    out.write_all(signature.as_ref())?;
    stream_payload(payload, manifest, Some(out))
}

/// Checks a whole image of `file_len` bytes against `public_key` and `board`.
pub fn verify(
    file: &mut (impl Read + Seek),
    file_len: u64,
    public_key: &[u8; 32],
    board: &str,
    payload_limit: u64,
) -> Result<Verified, BundleError> {
    let verified = verify_header(file, file_len, public_key, board, payload_limit)?;
    file.seek(SeekFrom::Start(verified.payload_offset))?;
    stream_payload(file, &verified.manifest, None)?;
    Ok(verified)
}

/// Everything but the payload's digest (which [`copy_payload`] checks while it writes).
pub fn verify_header(
    file: &mut (impl Read + Seek),
    file_len: u64,
    public_key: &[u8; 32],
    board: &str,
    payload_limit: u64,
) -> Result<Verified, BundleError> {
    file.seek(SeekFrom::Start(0))?;
    let mut header = [0u8; HEADER_LEN];
    let got = read_up_to(file, &mut header)?;
    if got < MAGIC.len() || &header[..MAGIC.len()] != MAGIC {
        return Err(BundleError::NotAnImage);
    }
    if got < HEADER_LEN {
        return Err(BundleError::Truncated("header".into()));
    }
    let manifest_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if manifest_len == 0 || manifest_len > MAX_MANIFEST {
        return Err(BundleError::ManifestSize(manifest_len));
    }
    let mut signed = Vec::with_capacity(HEADER_LEN + manifest_len);
    signed.extend_from_slice(&header);
    signed.resize(HEADER_LEN + manifest_len, 0);
    if read_up_to(file, &mut signed[HEADER_LEN..])? < manifest_len {
        return Err(BundleError::Truncated("manifest".into()));
    }
    let mut signature_bytes = [0u8; SIGNATURE_LEN];
    if read_up_to(file, &mut signature_bytes)? < SIGNATURE_LEN {
        return Err(BundleError::Truncated("signature".into()));
    }
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&signed, &signature_bytes)
        .map_err(|_| BundleError::BadSignature)?;
    // Signed, so written by our image tool: a parse failure here is a format mismatch.
    let text = std::str::from_utf8(&signed[HEADER_LEN..]).map_err(|_| BundleError::Manifest("not UTF-8".into()))?;
    let manifest: Manifest = toml::from_str(text).map_err(|e| BundleError::Manifest(e.message().to_string()))?;
    if manifest.format != FORMAT {
        return Err(BundleError::Manifest(format!(
            "format {} (this appliance reads format {FORMAT})",
            manifest.format
        )));
    }
    if manifest.payload != PAYLOAD_BOOT_SLOT_FAT {
        return Err(BundleError::Manifest(format!(
            "unknown payload kind {:?}",
            manifest.payload
        )));
    }
    if manifest.board != board {
        return Err(BundleError::WrongBoard {
            found: manifest.board,
            expected: board.to_string(),
        });
    }
    let limit = payload_limit.min(MAX_PAYLOAD);
    if manifest.payload_size > limit {
        return Err(BundleError::TooLarge {
            size: manifest.payload_size,
            limit,
        });
    }
    let payload_offset = (HEADER_LEN + manifest_len + SIGNATURE_LEN) as u64;
    let expected_len = payload_offset + manifest.payload_size;
    if file_len < expected_len {
        return Err(BundleError::Truncated(format!(
            "{file_len} bytes, the manifest says {expected_len}"
        )));
    }
    if file_len > expected_len {
        return Err(BundleError::TrailingBytes(file_len - expected_len));
    }
    Ok(Verified {
        manifest,
        payload_offset,
    })
}

/// Copies the payload of a verified image to `out`, hashing as it goes; `Corrupt` if the
/// bytes differ from the manifest's digest (the file changed since it was checked): the
/// caller must then not use what it wrote.
pub fn copy_payload(
    file: &mut (impl Read + Seek),
    verified: &Verified,
    out: &mut dyn Write,
) -> Result<(), BundleError> {
    file.seek(SeekFrom::Start(verified.payload_offset))?;
    stream_payload(file, &verified.manifest, Some(out))
}

fn read_up_to(input: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A manifest for `payload` (bytes already in memory: tests and the image tool's small inputs).
pub fn manifest_for(board: &str, version: &str, payload: &[u8], uki: &[u8], key: &str) -> Manifest {
    Manifest {
        format: FORMAT,
        board: board.into(),
        version: version.into(),
        payload: PAYLOAD_BOOT_SLOT_FAT.into(),
        payload_size: payload.len() as u64,
        payload_sha256: crate::hex(digest::digest(&digest::SHA256, payload).as_ref()),
        uki_sha256: crate::hex(digest::digest(&digest::SHA256, uki).as_ref()),
        key: key.into(),
    }
}

/// A fresh PKCS#8 v2 ed25519 key (tests; `sb-image --new-key`).
pub fn generate_key() -> Result<Vec<u8>, BundleError> {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|e| BundleError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const BOARD: &str = "qemu-q35";

    fn image(key: &[u8], board: &str, payload: &[u8]) -> Vec<u8> {
        let manifest = manifest_for(board, "1.2.3", payload, b"uki", "development");
        let mut out = Vec::new();
        write(&manifest, key, &mut Cursor::new(payload), &mut out).unwrap();
        out
    }

    fn check(bytes: &[u8], public: &[u8; 32]) -> Result<Verified, BundleError> {
        verify(&mut Cursor::new(bytes), bytes.len() as u64, public, BOARD, MAX_PAYLOAD)
    }

    fn payload() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_signed_image_verifies_and_its_payload_copies_out() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = image(&key, BOARD, &payload());
        let verified = check(&bytes, &public).unwrap();
        assert_eq!(verified.manifest.version, "1.2.3");
        assert_eq!(verified.manifest.payload_size, 100_000);
        let mut out = Vec::new();
        copy_payload(&mut Cursor::new(&bytes), &verified, &mut out).unwrap();
        assert_eq!(out, payload());
    }

    #[test]
    fn unsigned_files_and_other_keys_are_refused() {
        let key = generate_key().unwrap();
        let other = public_key(&generate_key().unwrap()).unwrap();
        let bytes = image(&key, BOARD, &payload());
        assert!(matches!(check(&bytes, &other), Err(BundleError::BadSignature)));
        // A bare UKI (a PE file) is no upgrade image at all.
        let public = public_key(&key).unwrap();
        assert!(matches!(
            check(b"MZ\x90\0 a bare efi file", &public),
            Err(BundleError::NotAnImage)
        ));
        // Our header with the signature zeroed: unsigned.
        let mut zeroed = bytes.clone();
        let m = u32::from_le_bytes(zeroed[8..12].try_into().unwrap()) as usize;
        zeroed[12 + m..12 + m + 64].fill(0);
        assert!(matches!(check(&zeroed, &public), Err(BundleError::BadSignature)));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = image(&key, BOARD, &payload());
        let m = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        // In the manifest, in the signature, early and late in the payload.
        for at in [20, 12 + m + 3, 12 + m + 64 + 10, bytes.len() - 1] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x10;
            let result = check(&corrupt, &public);
            assert!(
                matches!(result, Err(BundleError::BadSignature | BundleError::Corrupt)),
                "bit flip at {at}: {result:?}"
            );
        }
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(check(&corrupt, &public), Err(BundleError::Corrupt)));
    }

    #[test]
    fn another_boards_image_is_refused_with_both_names() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = image(&key, "appliance-x86", &payload());
        let err = check(&bytes, &public).unwrap_err();
        assert!(matches!(err, BundleError::WrongBoard { .. }));
        assert_eq!(err.to_string(), "made for board appliance-x86, this is qemu-q35");
    }

    #[test]
    fn truncated_images_are_refused_at_every_length() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = image(&key, BOARD, &payload());
        for len in [0, 5, 8, 11, 40, 200, bytes.len() - 100_000, bytes.len() - 1] {
            let result = check(&bytes[..len], &public);
            assert!(
                matches!(result, Err(BundleError::NotAnImage | BundleError::Truncated(_))),
                "length {len}: {result:?}"
            );
        }
        // A length that lies about the file (claims the whole, reads less) is caught too.
        let short = &bytes[..bytes.len() - 10];
        let result = verify(&mut Cursor::new(short), bytes.len() as u64, &public, BOARD, MAX_PAYLOAD);
        assert!(matches!(result, Err(BundleError::Truncated(_))), "{result:?}");
    }

    #[test]
    fn oversize_images_and_manifests_are_refused() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = image(&key, BOARD, &payload());
        // More than the slot holds.
        let result = verify(&mut Cursor::new(&bytes), bytes.len() as u64, &public, BOARD, 50_000);
        assert!(
            matches!(result, Err(BundleError::TooLarge { size: 100_000, .. })),
            "{result:?}"
        );
        // Bytes appended after the signed payload.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"extra");
        assert!(matches!(check(&longer, &public), Err(BundleError::TrailingBytes(5))));
        // A header announcing a huge manifest is refused before anything is read or allocated.
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert!(matches!(check(&huge, &public), Err(BundleError::ManifestSize(_))));
        // A signed manifest may not claim a payload over the hard limit either.
        let mut manifest = manifest_for(BOARD, "9", b"", b"", "development");
        manifest.payload_size = MAX_PAYLOAD + 1;
        let mut out = Vec::new();
        assert!(write(&manifest, &key, &mut Cursor::new(Vec::new()), &mut out).is_err());
        let result = check(&out, &public);
        assert!(matches!(result, Err(BundleError::TooLarge { .. })), "{result:?}");
    }

    #[test]
    fn openssl_style_v1_keys_sign_too() {
        // PKCS#8 v1 ed25519 (RFC 8410 example key), as `openssl genpkey -algorithm ed25519` writes.
        let v1 = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, 0xd4, 0xee,
            0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1, 0xf7, 0x69, 0xf8, 0xad, 0x3a, 0xfe, 0x7c, 0x28,
            0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97, 0xa8, 0x8f, 0x44, 0x75, 0x58, 0x42,
        ];
        let public = public_key(&v1).unwrap();
        let bytes = image(&v1, BOARD, b"payload");
        assert!(check(&bytes, &public).is_ok());
    }
}
