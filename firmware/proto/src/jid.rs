//! JIDs per RFC 7622.
//!
//! A `Jid` is always normalized: two JIDs naming the same entity compare equal.
//! - localpart: PRECIS UsernameCaseMapped (RFC 8265 §3.3), then the characters RFC 7622
//!   §3.3.1 forbids (`" & ' / : < > @`) are refused;
//! - domainpart: a [`Domain`] (see `domain.rs` for its rules);
//! - resourcepart: PRECIS OpaqueString (RFC 8265 §4.2), everything after the first `/`.
//!
//! Each part is 1..=1023 bytes once normalized (RFC 7622 §3.1).
//!
//! Pure-ASCII parts, by far the common case on a stanza path, skip the PRECIS machinery:
//! for them its result is known in advance (lowercasing, resp. identity) and a test checks
//! the shortcut against the real profile.

use std::fmt;

use precis_profiles::precis_core::profile::PrecisFastInvocation;
use precis_profiles::{OpaqueString, UsernameCaseMapped};

use crate::domain::Domain;
use crate::error::{StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};

/// Longest localpart, domainpart or resourcepart, in bytes (RFC 7622 §3.1).
pub const MAX_PART_BYTES: usize = 1023;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    node: Option<String>,
    domain: Domain,
    resource: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty JID")]
    Empty,
    #[error("{0}")]
    Malformed(&'static str),
}

impl JidError {
    /// The stanza error a bad address gets (RFC 6120 §8.3.3.8).
    pub fn to_stanza_error(&self) -> StanzaError {
        StanzaError::with_text(StanzaErrorCondition::JidMalformed, self.to_string())
    }

    /// The stream error for a bad address in a stream header or a `from` that the
    /// stream itself vouches for (RFC 6120 §4.9.3.9 / §4.9.3.11 use `invalid-from`,
    /// `improper-addressing` for missing ones; a malformed `from` is `invalid-from`).
    pub fn to_invalid_from(&self) -> StreamError {
        StreamError::with_text(StreamErrorCondition::InvalidFrom, self.to_string())
    }
}

impl From<JidError> for StanzaError {
    fn from(err: JidError) -> Self {
        err.to_stanza_error()
    }
}

impl Jid {
    /// Parse and normalize (PRECIS UsernameCaseMapped for the localpart, lowercase +
    /// IDNA-less ASCII/Unicode check for the domain, OpaqueString for the resource).
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        // RFC 7622 §3.2: the resource starts at the first '/', the localpart ends at the
        // first '@' before it.
        let (rest, resource) = match s.split_once('/') {
            Some((rest, resource)) => (rest, Some(resource)),
            None => (s, None),
        };
        let (node, domain) = match rest.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, rest),
        };
        Jid::from_parts(node, domain, resource)
    }

    /// A JID for a domain or account, validated.
    pub fn from_parts(node: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        Ok(Jid {
            node: node.map(normalize_localpart).transpose()?,
            domain: Domain::parse(domain)?,
            resource: resource.map(normalize_resource).transpose()?,
        })
    }

    /// The JID of a domain (a server or a component).
    pub fn domain_jid(domain: &str) -> Result<Jid, JidError> {
        Jid::from_parts(None, domain, None)
    }

    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }
    pub fn domain(&self) -> &str {
        self.domain.as_str()
    }
    /// The domainpart as a [`Domain`].
    pub fn domain_part(&self) -> &Domain {
        &self.domain
    }
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }
    /// A full JID: one with a resource.
    pub fn is_full(&self) -> bool {
        self.resource.is_some()
    }
    /// A domain JID: no localpart, no resource.
    pub fn is_domain(&self) -> bool {
        self.node.is_none() && self.resource.is_none()
    }
    pub fn to_bare(&self) -> Jid {
        Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }
    /// `to_bare` without the copy.
    pub fn into_bare(mut self) -> Jid {
        self.resource = None;
        self
    }
    /// Whether both JIDs name the same account or domain, resources aside.
    pub fn bare_eq(&self, other: &Jid) -> bool {
        self.node == other.node && self.domain == other.domain
    }
    /// A copy with another resource; the resource is validated.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            node: self.node.clone(),
            domain: self.domain.clone(),
            resource: Some(normalize_resource(resource)?),
        })
    }
}

/// Longest part accepted *before* normalization. The limit applies to the normalized form
/// (full-width letters shrink from 3 bytes to 1), but PRECIS work on absurdly long input is
/// refused up front.
const MAX_RAW_PART_BYTES: usize = 4 * MAX_PART_BYTES;

pub(crate) fn check_raw_length(part: &str, empty: &'static str, too_long: &'static str) -> Result<(), JidError> {
    if part.is_empty() {
        return Err(JidError::Malformed(empty));
    }
    if part.len() > MAX_RAW_PART_BYTES {
        return Err(JidError::Malformed(too_long));
    }
    Ok(())
}

pub(crate) fn check_length(part: &str, empty: &'static str, too_long: &'static str) -> Result<(), JidError> {
    if part.is_empty() {
        return Err(JidError::Malformed(empty));
    }
    if part.len() > MAX_PART_BYTES {
        return Err(JidError::Malformed(too_long));
    }
    Ok(())
}

/// PRECIS enforcement that is also idempotent. The profiles check code points before
/// normalizing, so NFC can produce a character the class refuses (`=` + U+0338 composes
/// to `≠`); RFC 8264 §7 requires the result to be stable, so such input is refused rather
/// than turned into an address that would not parse again.
pub(crate) fn enforce_stable<P: PrecisFastInvocation>(raw: &str) -> Option<String> {
    let once = P::enforce(raw).ok()?.into_owned();
    let twice = P::enforce(once.as_str()).ok()?;
    (twice == once).then_some(once)
}

fn normalize_localpart(raw: &str) -> Result<String, JidError> {
    const EMPTY: &str = "empty localpart";
    const TOO_LONG: &str = "localpart longer than 1023 bytes";
    check_raw_length(raw, EMPTY, TOO_LONG)?;
    let normalized = if raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        raw.to_ascii_lowercase()
    } else {
        enforce_stable::<UsernameCaseMapped>(raw).ok_or(JidError::Malformed(
            "localpart not allowed by PRECIS UsernameCaseMapped",
        ))?
    };
    check_length(&normalized, EMPTY, TOO_LONG)?;
    if normalized.contains(['"', '&', '\'', '/', ':', '<', '>', '@']) {
        return Err(JidError::Malformed("forbidden character in localpart"));
    }
    Ok(normalized)
}

fn normalize_resource(raw: &str) -> Result<String, JidError> {
    const EMPTY: &str = "empty resourcepart";
    const TOO_LONG: &str = "resourcepart longer than 1023 bytes";
    check_raw_length(raw, EMPTY, TOO_LONG)?;
    let normalized = if raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        raw.to_owned()
    } else {
        enforce_stable::<OpaqueString>(raw)
            .ok_or(JidError::Malformed("resourcepart not allowed by PRECIS OpaqueString"))?
    };
    check_length(&normalized, EMPTY, TOO_LONG)?;
    Ok(normalized)
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}@")?;
        }
        f.write_str(self.domain.as_str())?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match Jid::parse(s) {
            Ok(j) => j.to_string(),
            Err(e) => panic!("{s:?} rejected: {e}"),
        }
    }

    fn rejected(s: &str) -> bool {
        Jid::parse(s).is_err()
    }

    #[test]
    fn normalizes() {
        assert_eq!(ok("Juliet@Example.COM/Balcony"), "juliet@example.com/Balcony");
        assert_eq!(ok("example.com."), "example.com");
        assert_eq!(
            ok("romeo@example.net./orchard/tree@x"),
            "romeo@example.net/orchard/tree@x"
        );
        assert_eq!(ok("JULIET@EXAMPLE.COM"), "juliet@example.com");
        // Width mapping and case folding outside ASCII.
        assert_eq!(ok("\u{ff2a}uliet@example.com"), "juliet@example.com");
        assert_eq!(ok("\u{c9}lodie@\u{c9}cole.example"), "\u{e9}lodie@\u{e9}cole.example");
        // NFC: e + combining acute becomes é.
        assert_eq!(ok("e\u{301}@example.com"), "\u{e9}@example.com");
        // Resources keep case and inner spaces; non-ASCII spaces become U+0020.
        assert_eq!(ok("a@b/Tea Room \u{2615}"), "a@b/Tea Room \u{2615}");
        assert_eq!(ok("a@b/x\u{3000}y"), "a@b/x y");
    }

    #[test]
    fn parts_are_split_as_rfc_7622_says() {
        let j = Jid::parse("user@host/res@ource/x").unwrap();
        assert_eq!(j.node(), Some("user"));
        assert_eq!(j.domain(), "host");
        assert_eq!(j.resource(), Some("res@ource/x"));
        let j = Jid::parse("host/user@x").unwrap();
        assert_eq!((j.node(), j.domain(), j.resource()), (None, "host", Some("user@x")));
        assert!(Jid::parse("example.com").unwrap().is_domain());
        assert!(Jid::parse("a@example.com/r").unwrap().is_full());
    }

    #[test]
    fn ip_literals() {
        assert_eq!(ok("a@127.0.0.1/r"), "a@127.0.0.1/r");
        assert_eq!(ok("a@[::1]"), "a@[::1]");
        assert_eq!(ok("[2001:DB8:0:0:0:0:0:1]"), "[2001:db8::1]");
        assert!(rejected("[::1"));
        assert!(rejected("[not-an-ip]"));
        assert!(rejected("a@[127.0.0.1]"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "@example.com",
            "a@",
            "a@/r",
            "a@example.com/",
            "/r",
            "a@b@c",
            "exa mple.com",
            "example..com",
            ".example.com",
            "example.com..",
            "-example.com",
            "example-.com",
            "exam!ple.com",
            "exam\\ple.com",
            "a\"b@example.com",
            "a&b@example.com",
            "a'b@example.com",
            "a:b@example.com",
            "a<b@example.com",
            "a>b@example.com",
            "a b@example.com",
            "a\u{0}b@example.com",
            "a@example.com/\u{7}",
            "\u{2615}@example.com",
            "a@exa\u{2615}mple.com",
            "a@\u{ff0e}.com",
            // Full-width letters map to ASCII and then obey the ASCII label rules.
            &format!("\u{ff2a}{}.example", "c".repeat(63)),
            "\u{ff0d}a.example",
            // Not stable under PRECIS: NFC composes these into the refused U+2260.
            "=\u{338}",
            "=\u{338}@example.com",
        ] {
            assert!(rejected(bad), "{bad:?} accepted as {:?}", Jid::parse(bad));
        }
        assert_eq!(Jid::parse(""), Err(JidError::Empty));
    }

    #[test]
    fn length_limits() {
        let max = "a".repeat(1023);
        let long = "a".repeat(1024);
        assert!(Jid::parse(&format!("{max}@example.com/{max}")).is_ok());
        assert!(rejected(&format!("{long}@example.com")));
        assert!(rejected(&format!("a@example.com/{long}")));
        let label = "b".repeat(63);
        let domain_1023 = format!("{label}.").repeat(16)[..1023].trim_end_matches('.').to_owned();
        assert!(Jid::parse(&domain_1023).is_ok(), "{}", domain_1023.len());
        let domain_long = format!("{label}.").repeat(17);
        assert!(rejected(&domain_long));
        assert!(rejected(&format!("{}.com", "c".repeat(64))));
        // A non-ASCII localpart that is 1023 bytes raw but longer after normalization...
        // and one that shrinks: full-width letters (3 bytes) map to ASCII (1 byte).
        let wide = "\u{ff41}".repeat(400);
        assert_eq!(
            Jid::parse(&format!("{wide}@x")).unwrap().node().map(str::len),
            Some(400)
        );
    }

    #[test]
    fn constructors_validate() {
        let bare = Jid::from_parts(Some("Romeo"), "Example.NET", None).unwrap();
        assert_eq!(bare.to_string(), "romeo@example.net");
        let full = bare.with_resource("orchard").unwrap();
        assert_eq!(full.to_string(), "romeo@example.net/orchard");
        assert!(bare.with_resource("").is_err());
        assert!(Jid::from_parts(Some("a/b"), "x", None).is_err());
        assert!(Jid::from_parts(None, "x/y", None).is_err());
        assert_eq!(full.to_bare(), bare);
        assert!(full.bare_eq(&bare));
        assert_eq!(full.clone().into_bare(), bare);
        assert_eq!(Jid::domain_jid("Example.NET").unwrap().to_string(), "example.net");
        assert_eq!("a@b/c".parse::<Jid>().unwrap().resource(), Some("c"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "juliet@example.com/Balcony",
            "example.com",
            "a@[::1]/x/y",
            "\u{e9}@\u{e9}.example/\u{2615}",
        ] {
            let j = Jid::parse(s).unwrap();
            assert_eq!(Jid::parse(&j.to_string()).unwrap(), j);
        }
    }

    #[test]
    fn errors_map_to_xmpp_conditions() {
        let err = Jid::parse("a@b@c").unwrap_err();
        assert_eq!(err.to_stanza_error().condition, StanzaErrorCondition::JidMalformed);
        assert_eq!(
            StanzaError::from(err.clone()).condition,
            StanzaErrorCondition::JidMalformed
        );
        assert_eq!(err.to_invalid_from().condition, StreamErrorCondition::InvalidFrom);
    }

    /// The ASCII shortcuts must agree with the PRECIS profiles they stand in for.
    #[test]
    fn ascii_shortcuts_match_precis() {
        for b in 0x20u8..=0x7e {
            let s = format!("x{}Y", b as char);
            let localpart = UsernameCaseMapped::enforce(s.as_str()).map(|c| c.into_owned());
            if b != b' ' {
                assert_eq!(
                    localpart.as_deref().ok(),
                    Some(s.to_ascii_lowercase().as_str()),
                    "{s:?}"
                );
            }
            let resource = OpaqueString::enforce(s.as_str()).map(|c| c.into_owned());
            assert_eq!(resource.as_deref().ok(), Some(s.as_str()), "{s:?}");
        }
        assert!(UsernameCaseMapped::enforce("a b").is_err());
        assert_eq!(
            OpaqueString::enforce(" lead and trail ").ok().as_deref(),
            Some(" lead and trail ")
        );
    }
}
