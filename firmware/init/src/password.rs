//! The admin password, stored as a PBKDF2-HMAC-SHA256 hash (never the password itself).

use std::num::NonZeroU32;

use ring::rand::SecureRandom;

const ITERATIONS: u32 = 100_000;
const PREFIX: &str = "pbkdf2-sha256";

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

/// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`
pub fn hash(password: &str) -> Result<String, String> {
    hash_with(password, ITERATIONS)
}

fn hash_with(password: &str, iterations: u32) -> Result<String, String> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "no randomness available".to_string())?;
    let rounds = NonZeroU32::new(iterations).ok_or("zero iterations")?;
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(format!("{PREFIX}${iterations}${}${}", hex(&salt), hex(&out)))
}

pub fn verify(stored: &str, password: &str) -> bool {
    let parts: Vec<&str> = stored.trim().split('$').collect();
    let [prefix, iterations, salt, expected] = parts.as_slice() else {
        return false;
    };
    if *prefix != PREFIX {
        return false;
    }
    let (Some(rounds), Some(salt), Some(expected)) = (
        iterations.parse::<u32>().ok().and_then(NonZeroU32::new),
        unhex(salt),
        unhex(expected),
    ) else {
        return false;
    };
    // Constant-time comparison inside ring.
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password.as_bytes(),
        &expected,
    )
    .is_ok()
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
    }
}
