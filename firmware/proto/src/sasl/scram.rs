//! SCRAM primitives shared by both sides: hash choice, key derivation, stored credentials,
//! and the attribute syntax of RFC 5802 §5.1/§7.

use super::SaslError;
use precis_profiles::OpaqueString;
use precis_profiles::precis_core::profile::PrecisFastInvocation;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU32;

/// Iteration count for new credentials.
///
/// 4096 is the minimum RFC 7677 §4 recommends and what Prosody and ejabberd use, so every
/// client already handles it. The server never runs PBKDF2 during a login (it keeps
/// StoredKey/ServerKey), so the count costs only clients (which cache the salted password per
/// salt and count) and password changes. It is stored per user, so raising it later needs no
/// migration: new passwords get the new count, old ones keep working.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length for new credentials: 128 bits, as RFC 8018 §4.1 suggests at least 64.
pub const SALT_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The channel-binding variant's mechanism name (RFC 5802 §4).
    pub fn plus_mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1-PLUS",
            ScramHash::Sha256 => "SCRAM-SHA-256-PLUS",
        }
    }

    pub fn from_mechanism(name: &str) -> Option<ScramHash> {
        match name {
            "SCRAM-SHA-1" => Some(ScramHash::Sha1),
            "SCRAM-SHA-256" => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    /// Length of the hash output, and so of StoredKey, ServerKey and the proof.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &digest::SHA256,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => hmac::HMAC_SHA256,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data)
            .as_ref()
            .to_vec()
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data).as_ref().to_vec()
    }

    /// SaltedPassword := Hi(Normalize(password), salt, i); the password is already prepared.
    pub(crate) fn salted_password(self, prepared_password: &str, salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        pbkdf2::derive(
            self.pbkdf2_algorithm(),
            iterations,
            salt,
            prepared_password.as_bytes(),
            &mut out,
        );
        out
    }

    pub(crate) fn client_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Client Key")
    }

    pub(crate) fn server_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Server Key")
    }
}

/// Why credentials could not be made from a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("the password is empty")]
    EmptyPassword,
    /// The offending character is deliberately not named: error texts reach logs.
    #[error("the password contains characters RFC 8265 (OpaqueString) does not allow")]
    InvalidPassword,
    #[error("the iteration count must be at least 1")]
    ZeroIterations,
    #[error("the system random number generator failed")]
    RandomUnavailable,
}

/// Prepare a password with the PRECIS OpaqueString profile (RFC 8265, which replaces
/// SASLprep for SCRAM per RFC 7677), so that the same password typed on differently
/// normalizing keyboards yields the same keys.
pub fn prepare_password(password: &str) -> Result<String, CredentialsError> {
    if password.is_empty() {
        return Err(CredentialsError::EmptyPassword);
    }
    OpaqueString::enforce(password)
        .map(|prepared| prepared.into_owned())
        .map_err(|_| CredentialsError::InvalidPassword)
}

/// What the server stores for one hash: never the password, never the salted password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // StoredKey and ServerKey allow offline guessing and server impersonation: keep
        // them out of any debug output that might be logged.
        f.debug_struct("ScramCredentials")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derive the stored keys from a password (OpaqueString-prepared here).
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredentials, CredentialsError> {
        let prepared = prepare_password(password)?;
        Self::derive_prepared(hash, &prepared, salt, iterations)
    }

    fn derive_prepared(
        hash: ScramHash,
        prepared_password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredentials, CredentialsError> {
        let rounds = NonZeroU32::new(iterations).ok_or(CredentialsError::ZeroIterations)?;
        let salted = hash.salted_password(prepared_password, salt, rounds);
        Ok(Self::from_salted_password(hash, &salted, salt, iterations))
    }

    pub(crate) fn from_salted_password(
        hash: ScramHash,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredentials {
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&hash.client_key(salted_password)),
            server_key: hash.server_key(salted_password),
        }
    }

    /// Stand-in credentials for a user that does not exist, so the server can run the whole
    /// exchange and fail only at the end, exactly like a wrong password.
    ///
    /// They are derived from a server secret and the username, so repeated attempts for one
    /// name see the same salt (a changing salt would reveal that the account is fake), and no
    /// password can match them except by breaking HMAC.
    pub fn fake_for_unknown_user(hash: ScramHash, server_secret: &[u8], username: &str) -> ScramCredentials {
        let key = hmac::Key::new(hmac::HMAC_SHA256, server_secret);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"switchboard scram unknown user\0");
        ctx.update(hash.mechanism().as_bytes());
        ctx.update(b"\0");
        ctx.update(username.as_bytes());
        let material = ctx.sign();
        let material = material.as_ref();
        ScramCredentials {
            salt: material[..SALT_LEN].to_vec(),
            iterations: DEFAULT_ITERATIONS,
            stored_key: hash.hmac(material, b"stored key"),
            server_key: hash.hmac(material, b"server key"),
        }
    }

    /// Whether these credentials fit `hash` (a SHA-1 record handed to a SHA-256 exchange
    /// is a caller bug, caught here rather than as a mysterious proof failure).
    pub(crate) fn is_usable_with(&self, hash: ScramHash) -> bool {
        self.iterations > 0
            && !self.salt.is_empty()
            && self.stored_key.len() == hash.output_len()
            && self.server_key.len() == hash.output_len()
    }
}

/// A user's stored credentials for both offered mechanisms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCredentials {
    pub sha1: ScramCredentials,
    pub sha256: ScramCredentials,
}

impl UserCredentials {
    /// Fresh credentials with a random salt per hash and [`DEFAULT_ITERATIONS`].
    pub fn new(password: &str) -> Result<UserCredentials, CredentialsError> {
        let prepared = prepare_password(password)?;
        let rng = SystemRandom::new();
        let mut salt1 = [0u8; SALT_LEN];
        let mut salt256 = [0u8; SALT_LEN];
        rng.fill(&mut salt1).map_err(|_| CredentialsError::RandomUnavailable)?;
        rng.fill(&mut salt256)
            .map_err(|_| CredentialsError::RandomUnavailable)?;
        Ok(UserCredentials {
            sha1: ScramCredentials::derive_prepared(ScramHash::Sha1, &prepared, &salt1, DEFAULT_ITERATIONS)?,
            sha256: ScramCredentials::derive_prepared(ScramHash::Sha256, &prepared, &salt256, DEFAULT_ITERATIONS)?,
        })
    }

    pub fn for_hash(&self, hash: ScramHash) -> &ScramCredentials {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }

    /// Check a password received in the clear (SASL PLAIN over TLS) against the SHA-256
    /// record, recomputing StoredKey from its salt and iteration count.
    pub fn verify_plain(&self, password: &str) -> bool {
        let Ok(prepared) = prepare_password(password) else {
            return false;
        };
        let Ok(candidate) =
            ScramCredentials::derive_prepared(ScramHash::Sha256, &prepared, &self.sha256.salt, self.sha256.iterations)
        else {
            return false;
        };
        super::constant_time_eq(&candidate.stored_key, &self.sha256.stored_key)
    }
}

// ---- attribute syntax (RFC 5802 §7) ----

/// `saslname` decoding: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
pub(crate) fn decode_saslname(value: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::MalformedRequest("bad '=' escape in a SCRAM name")),
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn encode_saslname(value: &str) -> String {
    value.replace('=', "=3D").replace(',', "=2C")
}

/// A nonce is printable ASCII other than ',' (RFC 5802 §7 `printable`).
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Split `x=value` into its one-letter name and value.
pub(crate) fn attribute(part: &str) -> Result<(u8, &str), SaslError> {
    let bytes = part.as_bytes();
    if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_alphabetic() {
        return Err(SaslError::MalformedRequest(
            "SCRAM attribute is not of the form 'x=value'",
        ));
    }
    Ok((bytes[0], &part[2..]))
}

/// The value of the attribute `name`, which must be the next one.
pub(crate) fn expect_attribute<'a>(
    part: Option<&'a str>,
    name: u8,
    missing: &'static str,
) -> Result<&'a str, SaslError> {
    let part = part.ok_or(SaslError::MalformedRequest(missing))?;
    let (found, value) = attribute(part)?;
    if found == b'm' {
        // RFC 5802 §5.1: a mandatory extension this version does not know must fail.
        return Err(SaslError::MalformedRequest(
            "unsupported mandatory SCRAM extension (m=)",
        ));
    }
    if found != name {
        return Err(SaslError::MalformedRequest(missing));
    }
    Ok(value)
}

/// Optional extensions after the required attributes: syntax-checked, otherwise ignored.
pub(crate) fn check_extensions<'a>(parts: impl Iterator<Item = &'a str>) -> Result<(), SaslError> {
    for part in parts {
        let (name, _) = attribute(part)?;
        if name == b'm' {
            return Err(SaslError::MalformedRequest(
                "unsupported mandatory SCRAM extension (m=)",
            ));
        }
    }
    Ok(())
}

pub(crate) fn xor_in_place(target: &mut [u8], other: &[u8]) {
    for (t, o) in target.iter_mut().zip(other) {
        *t ^= o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_keys_for_pencil() {
        // RFC 5802 §5: salt QSXCR+Q6sek8bf92, i=4096.
        let salt = [0x41, 0x25, 0xc2, 0x47, 0xe4, 0x3a, 0xb1, 0xe9, 0x3c, 0x6d, 0xff, 0x76];
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096).unwrap();
        assert_eq!(creds.stored_key.len(), 20);
        assert_eq!(creds.server_key.len(), 20);
        assert!(creds.is_usable_with(ScramHash::Sha1));
        assert!(!creds.is_usable_with(ScramHash::Sha256));
    }

    #[test]
    fn user_credentials_verify_plain() {
        let creds = UserCredentials::new("correct horse").unwrap();
        assert_eq!(creds.sha1.salt.len(), SALT_LEN);
        assert_eq!(creds.sha256.salt.len(), SALT_LEN);
        assert_ne!(creds.sha1.salt, creds.sha256.salt);
        assert_eq!(creds.sha256.iterations, DEFAULT_ITERATIONS);
        assert!(creds.verify_plain("correct horse"));
        assert!(!creds.verify_plain("correct horse "));
        assert!(!creds.verify_plain(""));
        // Two users with the same password get different salts, hence different keys.
        let other = UserCredentials::new("correct horse").unwrap();
        assert_ne!(creds.sha256.stored_key, other.sha256.stored_key);
    }

    #[test]
    fn password_preparation() {
        assert_eq!(prepare_password(""), Err(CredentialsError::EmptyPassword));
        // Non-ASCII spaces map to ASCII space; compatibility forms are not folded.
        assert_eq!(prepare_password("a\u{00A0}b").unwrap(), "a b");
        // NFC: 'e' + combining acute equals precomposed 'é'.
        assert_eq!(prepare_password("caf\u{0065}\u{0301}").unwrap(), "caf\u{00E9}");
        assert_eq!(prepare_password("bell\u{0007}"), Err(CredentialsError::InvalidPassword));
        let creds = UserCredentials::new("caf\u{00E9}").unwrap();
        assert!(creds.verify_plain("caf\u{0065}\u{0301}"));
    }

    #[test]
    fn debug_output_hides_keys() {
        let creds = UserCredentials::new("pencil").unwrap();
        let text = format!("{creds:?}");
        assert!(!text.contains("stored_key"), "{text}");
        assert!(text.contains("iterations"));
    }

    #[test]
    fn fake_credentials_are_deterministic_per_user() {
        let a = ScramCredentials::fake_for_unknown_user(ScramHash::Sha256, b"secret", "ghost");
        let b = ScramCredentials::fake_for_unknown_user(ScramHash::Sha256, b"secret", "ghost");
        let c = ScramCredentials::fake_for_unknown_user(ScramHash::Sha256, b"secret", "phantom");
        let d = ScramCredentials::fake_for_unknown_user(ScramHash::Sha256, b"other secret", "ghost");
        assert_eq!(a, b);
        assert_ne!(a.salt, c.salt);
        assert_ne!(a.salt, d.salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert!(a.is_usable_with(ScramHash::Sha256));
        assert!(ScramCredentials::fake_for_unknown_user(ScramHash::Sha1, b"s", "x").is_usable_with(ScramHash::Sha1));
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert!(decode_saslname("a=2").is_err());
        assert!(decode_saslname("a=41").is_err());
        assert!(decode_saslname("=").is_err());
    }

    #[test]
    fn nonce_syntax() {
        assert!(is_valid_nonce("fyko+d2lbbFgONRv9qkxdawL"));
        assert!(!is_valid_nonce(""));
        assert!(!is_valid_nonce("a,b"));
        assert!(!is_valid_nonce("a b"));
        assert!(!is_valid_nonce("caf\u{e9}"));
    }
}
