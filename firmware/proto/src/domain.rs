//! The domainpart of an address (RFC 7622 §3.2), the one set of rules every domain in the
//! product is normalized by: a JID's domain, the server's own domain, federation peers
//! and routes, DNS checks.
//!
//! A [`Domain`] is an IP literal (`127.0.0.1`, `[::1]`, printed canonically) or a host
//! name, lowercased, one trailing dot removed, every label non-empty. ASCII labels are
//! letters, digits, `-` and `_`, may not start or end with `-` and are at most 63 bytes;
//! labels with other characters get the mapping PRECIS IdentifierClass gives (width and
//! case mapping, NFC) and are refused if it does not allow them. No IDNA conversion
//! happens: `bücher.example` and `xn--bcher-kva.example` stay two different domains. The
//! whole is 1..=1023 bytes once normalized.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use precis_profiles::UsernameCaseMapped;

use crate::jid::{JidError, check_length, check_raw_length, enforce_stable};

/// A valid, normalized domain: two `Domain`s naming the same host compare equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validate and normalize a domainpart.
    pub fn parse(raw: &str) -> Result<Domain, JidError> {
        normalize(raw).map(Domain)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The form a name that may not be a valid domain is compared in (a peer's stream header,
/// a configured list entry): surrounding spaces and trailing dots removed, ASCII lowercased.
/// It never fails, so a comparison never has to decide what an invalid name means; for a
/// valid ASCII host name it is the same as [`Domain::parse`].
pub fn comparison_key(raw: &str) -> String {
    raw.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Domain {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl From<Domain> for String {
    fn from(domain: Domain) -> String {
        domain.0
    }
}

impl FromStr for Domain {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

fn normalize(raw: &str) -> Result<String, JidError> {
    const EMPTY: &str = "empty domainpart";
    const TOO_LONG: &str = "domainpart longer than 1023 bytes";
    check_raw_length(raw, EMPTY, TOO_LONG)?;
    if let Some(inner) = raw.strip_prefix('[') {
        let address = inner
            .strip_suffix(']')
            .and_then(|a| a.parse::<Ipv6Addr>().ok())
            .ok_or(JidError::Malformed("malformed IPv6 literal"))?;
        return Ok(format!("[{address}]"));
    }
    if let Ok(address) = raw.parse::<Ipv4Addr>() {
        return Ok(address.to_string());
    }
    // RFC 7622 §3.2: one trailing dot is removed before any other check.
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let mut normalized = String::with_capacity(name.len());
    for (i, label) in name.split('.').enumerate() {
        if i > 0 {
            normalized.push('.');
        }
        normalize_label(label, &mut normalized)?;
    }
    check_length(&normalized, EMPTY, TOO_LONG)?;
    Ok(normalized)
}

fn normalize_label(label: &str, out: &mut String) -> Result<(), JidError> {
    if label.is_empty() {
        return Err(JidError::Malformed("empty label in domainpart"));
    }
    // IdentifierClass refuses spaces, symbols and controls, and its mapping (width, case,
    // NFC) is the one IDNA2008 mapping (RFC 5895) applies to a U-label. The checks below
    // run on the mapped label: full-width letters map to ASCII and must then obey the
    // ASCII rules, or normalizing twice would not give the same result.
    let mapped = if label.is_ascii() {
        label.to_ascii_lowercase()
    } else {
        enforce_stable::<UsernameCaseMapped>(label).ok_or(JidError::Malformed(
            "domain label not allowed as an internationalized label",
        ))?
    };
    if mapped.is_empty() {
        return Err(JidError::Malformed("empty label in domainpart"));
    }
    if mapped.contains(|c: char| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        return Err(JidError::Malformed("forbidden character in domainpart"));
    }
    if mapped.starts_with('-') || mapped.ends_with('-') {
        return Err(JidError::Malformed("domain label starts or ends with '-'"));
    }
    // The DNS limit; for a U-label it applies to its A-label, which is not computed here.
    if mapped.is_ascii() && mapped.len() > 63 {
        return Err(JidError::Malformed("domain label longer than 63 bytes"));
    }
    out.push_str(&mapped);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Result<String, JidError> {
        Domain::parse(raw).map(Domain::into_string)
    }

    #[test]
    fn lowercase_and_one_trailing_dot() {
        assert_eq!(parsed("Example.COM").unwrap(), "example.com");
        assert_eq!(parsed("example.com.").unwrap(), "example.com");
        assert!(parsed("example.com..").is_err());
        assert_eq!(parsed("conf_1.example").unwrap(), "conf_1.example");
        assert_eq!(parsed("\u{c9}cole.example").unwrap(), "\u{e9}cole.example");
        assert_eq!(parsed("localhost").unwrap(), "localhost");
    }

    #[test]
    fn ip_literals_are_canonical() {
        assert_eq!(parsed("127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(parsed("[2001:DB8:0:0:0:0:0:1]").unwrap(), "[2001:db8::1]");
        assert!(parsed("[127.0.0.1]").is_err());
        assert!(parsed("[::1").is_err());
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            ".",
            "exa mple.com",
            "example..com",
            ".example.com",
            "-example.com",
            "example-.com",
            "exam!ple.com",
            "a/b",
            "a@b",
            " example.com",
        ] {
            assert!(parsed(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn length_limits() {
        let label = "b".repeat(63);
        assert!(parsed(&format!("{label}.example")).is_ok());
        assert_eq!(
            parsed(&format!("{}.example", "b".repeat(64))),
            Err(JidError::Malformed("domain label longer than 63 bytes"))
        );
        let domain_1023 = format!("{label}.").repeat(16)[..1023].trim_end_matches('.').to_owned();
        assert!(parsed(&domain_1023).is_ok());
        assert_eq!(
            parsed(&format!("{label}.").repeat(17)),
            Err(JidError::Malformed("domainpart longer than 1023 bytes"))
        );
    }

    #[test]
    fn comparison_key_agrees_with_parse_on_valid_ascii_names() {
        for name in ["Example.COM", "example.com.", "a-b.c_d.example", "127.0.0.1"] {
            assert_eq!(comparison_key(name), parsed(name).unwrap(), "{name}");
        }
        assert_eq!(comparison_key(" Example.COM.. "), "example.com");
        assert_eq!(comparison_key("not a domain"), "not a domain");
    }

    #[test]
    fn a_domain_is_what_a_jid_holds() {
        let jid = crate::Jid::parse("romeo@Example.NET./orchard").unwrap();
        assert_eq!(jid.domain_part(), &Domain::parse("example.net").unwrap());
        assert_eq!("EXAMPLE.net".parse::<Domain>().unwrap().to_string(), "example.net");
    }
}
