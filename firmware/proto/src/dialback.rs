//! Server Dialback keys (XEP-0185, as XEP-0220 recommends).
//!
//! `hex(HMAC-SHA256(key = hex(SHA256(secret)), Receiving ‖ ' ' ‖ Originating ‖ ' ' ‖ StreamID))`.
//! A key is verified by recomputing it, without state: any server holding the same secret
//! can verify it (the cluster will rely on that by giving every node the same secret; today
//! each node has its own). The StreamID is the id the receiving server sent.

use crate::component::lowercase_hex;
use ring::{digest, hmac};

/// The key the originating server sends in `<db:result/>`, and the one the authoritative
/// server recomputes for `<db:verify/>`.
pub fn dialback_key(secret: &str, receiving: &str, originating: &str, stream_id: &str) -> String {
    // XEP-0185 uses the hex string of the digest as the HMAC key, not the raw digest.
    let hmac_key_hex = lowercase_hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    let key = hmac::Key::new(hmac::HMAC_SHA256, hmac_key_hex.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(receiving.as_bytes());
    ctx.update(b" ");
    ctx.update(originating.as_bytes());
    ctx.update(b" ");
    ctx.update(stream_id.as_bytes());
    lowercase_hex(ctx.sign().as_ref())
}

/// Check a key received in `<db:verify/>` in constant time (case of the hex tolerated).
pub fn verify_dialback_key(secret: &str, receiving: &str, originating: &str, stream_id: &str, received: &str) -> bool {
    let expected = dialback_key(secret, receiving, originating, stream_id);
    let received = received.trim().to_ascii_lowercase();
    crate::sasl::constant_time_eq(expected.as_bytes(), received.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        assert_eq!(
            dialback_key("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F"),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
        assert_eq!(
            dialback_key("s3cr3tf0rd14lb4ck", "montague.example", "capulet.example", "D60000229F"),
            "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
        );
        assert_eq!(
            dialback_key("d14lb4ck43v3r", "capulet.example", "montague.example", "417GAF25"),
            "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"
        );
    }

    #[test]
    fn verification() {
        let key = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d";
        assert!(verify_dialback_key(
            "d14lb4ck43v3r",
            "capulet.example",
            "montague.example",
            "417GAF25",
            key
        ));
        assert!(verify_dialback_key(
            "d14lb4ck43v3r",
            "capulet.example",
            "montague.example",
            "417GAF25",
            &key.to_uppercase()
        ));
        // Swapping the direction, another stream or another secret must not verify.
        assert!(!verify_dialback_key(
            "d14lb4ck43v3r",
            "montague.example",
            "capulet.example",
            "417GAF25",
            key
        ));
        assert!(!verify_dialback_key(
            "d14lb4ck43v3r",
            "capulet.example",
            "montague.example",
            "417GAF26",
            key
        ));
        assert!(!verify_dialback_key(
            "d14lb4ck43v3s",
            "capulet.example",
            "montague.example",
            "417GAF25",
            key
        ));
        assert!(!verify_dialback_key(
            "d14lb4ck43v3r",
            "capulet.example",
            "montague.example",
            "417GAF25",
            ""
        ));
    }
}
