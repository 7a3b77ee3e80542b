//! SASL for XMPP (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), with
//! and without `tls-exporter` channel binding (the -PLUS variants, RFC 9266), both sides,
//! and PLAIN parsing (RFC 4616).
//!
//! Pure computation: the caller moves the base64 payloads between `<auth/>`, `<challenge/>`,
//! `<response/>` and `<success/>` elements and these state machines. Only salt, iteration
//! count, StoredKey and ServerKey are ever stored ([`UserCredentials`]); passwords are not.

mod channel_binding;
mod client;
mod error;
mod plain;
mod scram;
mod server;
#[cfg(test)]
mod vectors;

pub use channel_binding::{
    ClientChannelBinding, EXPORTER_LABEL, EXPORTER_LEN, NS_SASL_CHANNEL_BINDING, ServerChannelBinding, TLS_EXPORTER,
};
pub use client::{SaltedPassword, ScramClient};
pub use error::SaslError;
pub use plain::parse_plain;
pub use scram::{CredentialsError, DEFAULT_ITERATIONS, ScramCredentials, ScramHash, UserCredentials, prepare_password};
pub use server::ScramServer;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::OnceLock;

/// Compare two byte strings without a timing side channel on their contents.
///
/// ring's public constant-time comparison is `hmac::verify` (its old `constant_time`
/// module is deprecated), so compare MACs of both sides under a per-process random key:
/// the comparison is constant time and its inputs are unpredictable to an observer anyway.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            // Without an RNG the comparison stays constant time; only the blinding is lost.
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"switchboard constant-time comparison"))
    });
    let tag_b = hmac::sign(key, b);
    hmac::verify(key, a, tag_b.as_ref()).is_ok()
}

/// A fresh nonce for either side of SCRAM: 18 random bytes in base64 (24 printable
/// characters, never a comma, so it needs no escaping in a SCRAM attribute).
pub fn random_nonce() -> Result<String, SaslError> {
    let mut raw = [0u8; 18];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| SaslError::TemporaryAuthFailure)?;
    Ok(BASE64.encode(raw))
}

/// Decode the text of `<auth/>`, `<response/>`, `<challenge/>` or `<success/>`.
/// RFC 6120 §6.4.2: a single `=` is an empty payload. Whitespace is tolerated because some
/// clients wrap long base64 lines.
pub fn decode_payload(text: &str) -> Result<Vec<u8>, SaslError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() || compact == "=" {
        return Ok(Vec::new());
    }
    BASE64
        .decode(compact.as_bytes())
        .map_err(|_| SaslError::IncorrectEncoding("SASL payload is not valid base64"))
}

/// Encode a payload for the wire; an empty payload is `=` (RFC 6120 §6.4.2).
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        BASE64.encode(data)
    }
}

/// Whether an authorization identity names the authenticated user itself.
///
/// RFC 6120 §6.3.8 says a client acting for itself omits the authzid, but some clients send
/// their own bare JID anyway; that is harmless and accepted. Anything else would be acting on
/// behalf of another entity, which this server never allows.
pub fn authzid_is_self(authzid: &str, authcid: &str, domain: Option<&str>) -> bool {
    if authzid == authcid {
        return true;
    }
    match (domain, authzid.split_once('@')) {
        (Some(domain), Some((local, authz_domain))) => local == authcid && authz_domain.eq_ignore_ascii_case(domain),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn payload_round_trip_and_empty_marker() {
        assert_eq!(encode_payload(b""), "=");
        assert_eq!(decode_payload("=").unwrap(), b"");
        assert_eq!(decode_payload("").unwrap(), b"");
        assert_eq!(encode_payload(b"n,,n=user"), "biwsbj11c2Vy");
        assert_eq!(decode_payload("biws\r\nbj11c2Vy").unwrap(), b"n,,n=user");
        assert!(matches!(decode_payload("biws*"), Err(SaslError::IncorrectEncoding(_))));
    }

    #[test]
    fn random_nonces_are_distinct_and_comma_free() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(!a.contains(','));
    }

    #[test]
    fn authzid_rules() {
        assert!(authzid_is_self("juliet", "juliet", None));
        assert!(authzid_is_self("juliet@Example.com", "juliet", Some("example.com")));
        assert!(!authzid_is_self("juliet@example.com", "juliet", None));
        assert!(!authzid_is_self("romeo@example.com", "juliet", Some("example.com")));
        assert!(!authzid_is_self("juliet@evil.example", "juliet", Some("example.com")));
        assert!(!authzid_is_self("romeo", "juliet", Some("example.com")));
    }
}
