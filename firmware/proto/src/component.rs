//! XEP-0114 component handshake: `lowercase_hex(SHA1(StreamID ‖ secret))`, with XML's
//! predefined entities escaped in the secret before hashing (SPEC.md), which is what
//! the component hashes when it writes the secret into its configuration as XML text.

use crate::element::escape;
use ring::digest;

/// The digest a component with `secret` must send in `<handshake/>` on the stream whose
/// id we sent as `stream_id`.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(stream_id.as_bytes());
    ctx.update(escape(secret).as_bytes());
    lowercase_hex(ctx.finish().as_ref())
}

/// Check a received `<handshake/>` text in constant time. Surrounding whitespace and
/// upper-case hex are tolerated: neither changes what the component proved.
pub fn verify_handshake(stream_id: &str, secret: &str, received: &str) -> bool {
    let expected = handshake_digest(stream_id, secret);
    let received = received.trim().to_ascii_lowercase();
    crate::sasl::constant_time_eq(expected.as_bytes(), received.as_bytes())
}

pub(crate) fn lowercase_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vector() {
        assert_eq!(
            handshake_digest("3BF96D32", "kvgP1SRzWVabhiPVAb1"),
            "c44263edf0d2a08adf2e8fc441b0904420abbf8b"
        );
    }

    #[test]
    fn spec_vector_with_escaping() {
        // Hashed as "s3cr3t&amp;&lt;x".
        assert_eq!(
            handshake_digest("3BF96D32", "s3cr3t&<x"),
            "fca6defc797f96517f28ed12c31133e4bbb28a33"
        );
    }

    #[test]
    fn verification() {
        let good = "c44263edf0d2a08adf2e8fc441b0904420abbf8b";
        assert!(verify_handshake("3BF96D32", "kvgP1SRzWVabhiPVAb1", good));
        assert!(verify_handshake(
            "3BF96D32",
            "kvgP1SRzWVabhiPVAb1",
            &format!(" {}\n", good.to_uppercase())
        ));
        assert!(!verify_handshake("3BF96D33", "kvgP1SRzWVabhiPVAb1", good));
        assert!(!verify_handshake("3BF96D32", "kvgP1SRzWVabhiPVAb2", good));
        assert!(!verify_handshake("3BF96D32", "kvgP1SRzWVabhiPVAb1", &good[..39]));
        assert!(!verify_handshake("3BF96D32", "kvgP1SRzWVabhiPVAb1", ""));
    }

    #[test]
    fn hex_encoding() {
        assert_eq!(lowercase_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(lowercase_hex(&[]), "");
    }
}
