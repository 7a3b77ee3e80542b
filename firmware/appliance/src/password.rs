//! The console admin password, stored as a PBKDF2-HMAC-SHA256 hash (never the password itself):
//! `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
//!
//! One implementation for every place that touches it: init's console login (verify, and
//! set on first boot or in recovery), sb-admin's `admin passwd` and the web admin's login.
//! Part of the appliance contract crate because init is a small static binary that must not
//! pull in sb-admin (store, TLS, tokio); ring is the only crypto dependency.

pub mod file;

use std::num::NonZeroU32;

use ring::rand::SecureRandom;

/// OWASP's Password Storage Cheat Sheet count for PBKDF2-HMAC-SHA256 (600,000). Hashes made
/// with fewer (the 100,000 of earlier releases) still verify, and [`needs_upgrade`] says to
/// rewrite them after the next successful login.
pub const ITERATIONS: u32 = 600_000;

const PREFIX: &str = "pbkdf2-sha256";
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("no randomness available for the salt")]
    NoRandomness,
    #[error("zero PBKDF2 iterations")]
    ZeroIterations,
}

/// A new salted hash of `password` at [`ITERATIONS`].
pub fn hash(password: &str) -> Result<String, PasswordError> {
    hash_with(password, ITERATIONS)
}

/// A new salted hash at a given count: tests use small counts to stay fast.
pub fn hash_with(password: &str, iterations: u32) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::NoRandomness)?;
    let rounds = NonZeroU32::new(iterations).ok_or(PasswordError::ZeroIterations)?;
    let mut out = [0u8; HASH_BYTES];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(format!("{PREFIX}${iterations}${}${}", hex(&salt), hex(&out)))
}

struct Stored {
    rounds: NonZeroU32,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

fn parse(stored: &str) -> Option<Stored> {
    let parts: Vec<&str> = stored.trim().split('$').collect();
    let [prefix, iterations, salt, expected] = parts.as_slice() else {
        return None;
    };
    if *prefix != PREFIX {
        return None;
    }
    Some(Stored {
        rounds: iterations.parse::<u32>().ok().and_then(NonZeroU32::new)?,
        salt: unhex(salt)?,
        expected: unhex(expected)?,
    })
}

/// Whether `password` matches the stored hash (any iteration count). A malformed stored value
/// never matches.
pub fn verify(stored: &str, password: &str) -> bool {
    let Some(stored) = parse(stored) else {
        return false;
    };
    // Constant-time comparison inside ring.
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        stored.rounds,
        &stored.salt,
        password.as_bytes(),
        &stored.expected,
    )
    .is_ok()
}

/// A stored hash made with fewer than [`ITERATIONS`]: rehash the password that just verified.
pub fn needs_upgrade(stored: &str) -> bool {
    parse(stored).is_some_and(|s| s.rounds.get() < ITERATIONS)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password_and_is_salted() {
        let a = hash_with("s3cret pass", 1000).unwrap();
        assert!(verify(&a, "s3cret pass"));
        assert!(!verify(&a, "s3cret pas"));
        assert!(!a.contains("s3cret"));
        let b = hash_with("s3cret pass", 1000).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_default_count_is_owasps_and_old_counts_still_verify_but_want_an_upgrade() {
        let current = hash("correct horse").unwrap();
        assert!(current.starts_with("pbkdf2-sha256$600000$"), "{current}");
        assert!(verify(&current, "correct horse"));
        assert!(!needs_upgrade(&current));
        // A hash as earlier releases wrote it.
        let old = hash_with("correct horse", 100_000).unwrap();
        assert!(verify(&old, "correct horse"));
        assert!(needs_upgrade(&old));
        assert!(!needs_upgrade("garbage"));
    }

    #[test]
    fn malformed_stored_values_never_verify() {
        for stored in [
            "",
            "x$1$00$00",
            "pbkdf2-sha256$0$00$00",
            "pbkdf2-sha256$10$zz$00",
            "pbkdf2-sha256$10$00",
        ] {
            assert!(!verify(stored, ""), "{stored}");
        }
        assert_eq!(hash_with("x", 0), Err(PasswordError::ZeroIterations));
    }
}
