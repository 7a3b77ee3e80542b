//! Federation settings (`federation ...` commands) and the resolver's nameservers (`dns ...`).
//!
//! Both live in the settings space, one record each. They are shared configuration: nothing
//! replicates them yet (single node), but a cluster must, because every node must agree on
//! the dialback secret, or a key one node issued would not verify on another.
//!
//! DNS is treated as shared too: the nameservers decide how peer domains resolve for
//! federation, and nodes of one cluster sit in one site and must reach the same peers the same
//! way; a node-local resolver would make a link work or fail depending on which node dials.
//! (If a deployment ever needs per-node resolvers, DnsConfig moves next to NodeConfig.)

use crate::error::Result;
use crate::{Secret, Store, decode, encode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const FEDERATION_KEY: &str = "federation";
const DNS_KEY: &str = "dns";

/// How TLS is used on server-to-server streams; Server Dialback runs in every mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityMode {
    /// STARTTLS (or direct TLS) on every link; plaintext peers are refused.
    #[default]
    TlsRequired,
    /// TLS when the peer offers it, plain TCP otherwise.
    TlsOptional,
    /// Never negotiate TLS.
    NoTls,
}

impl SecurityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::TlsRequired => "tls-required",
            SecurityMode::TlsOptional => "tls-optional",
            SecurityMode::NoTls => "no-tls",
        }
    }

    pub fn from_name(name: &str) -> Option<SecurityMode> {
        match name {
            "tls-required" => Some(SecurityMode::TlsRequired),
            "tls-optional" => Some(SecurityMode::TlsOptional),
            "no-tls" => Some(SecurityMode::NoTls),
            _ => None,
        }
    }
}

/// Which remote domains may federate (exact domain matches; routed domains always may).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivacyMode {
    /// Every domain.
    Off,
    /// Only the domains on the allow list. The default, as on Expressway: enabling federation
    /// opens it to nobody until the administrator lists the partners.
    #[default]
    Allow,
    /// Every domain except those on the deny list.
    Deny,
}

impl PrivacyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyMode::Off => "off",
            PrivacyMode::Allow => "allow",
            PrivacyMode::Deny => "deny",
        }
    }

    pub fn from_name(name: &str) -> Option<PrivacyMode> {
        match name {
            "off" => Some(PrivacyMode::Off),
            "allow" => Some(PrivacyMode::Allow),
            "deny" => Some(PrivacyMode::Deny),
            _ => None,
        }
    }
}

/// `#[serde(default)]`: a field added later reads as its default from older records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationConfig {
    pub enabled: bool,
    /// Must be the same on every node of a cluster (XEP-0185 keys; set it with
    /// `federation dialback-secret` on each node until configuration replicates); `None`
    /// until set or generated.
    pub dialback_secret: Option<Secret>,
    pub security: SecurityMode,
    /// Verify the peer's certificate chain (system roots plus `trust_bundle`). The peer
    /// domain must be in the certificate's names whatever this says.
    pub client_certs: bool,
    pub privacy: PrivacyMode,
    /// Lower-case domains, sorted, no duplicates.
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Lower-case domain to `host[:port]` targets, tried in random order (equal priority).
    pub routes: BTreeMap<String, Vec<String>>,
    /// A PEM file in the certificate folder whose certificates are trusted for peers, in
    /// addition to the system roots.
    pub trust_bundle: Option<String>,
    /// Verify the certificate chain of servers we connect to (system roots plus
    /// `trust_bundle`); on by default. Off is an explicit opt-out that status shows as a
    /// warning. Whatever this says, the certificate must name the peer's domain.
    pub verify_outgoing: bool,
    /// Lower-case domains, sorted, whose certificate chain is not verified on outgoing links
    /// (a partner with a private CA not yet in the bundle); shown as a warning too.
    pub unverified: Vec<String>,
    /// Connect to (and verify dialback keys with) servers that DNS puts at loopback, private,
    /// link-local, unique-local, unspecified or multicast addresses. Off by default, so a
    /// peer's DNS cannot aim this server at the inside of its network; static routes may name
    /// such addresses whatever this says. Test setups on 127.x turn it on.
    pub allow_internal: bool,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            enabled: false,
            dialback_secret: None,
            security: SecurityMode::TlsRequired,
            client_certs: false,
            privacy: PrivacyMode::Allow,
            allow: Vec::new(),
            deny: Vec::new(),
            routes: BTreeMap::new(),
            trust_bundle: None,
            verify_outgoing: true,
            unverified: Vec::new(),
            allow_internal: false,
        }
    }
}

/// The resolver the federation uses: the system's configuration when `nameservers` is
/// empty, otherwise exactly these (`ip` or `ip:port`, e.g. `127.0.0.53:5353`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
}

impl Store {
    /// The stored federation settings, or the defaults (disabled) when none were written.
    pub fn federation_config(&self) -> Result<FederationConfig> {
        match self.inner.settings.get(FEDERATION_KEY.as_bytes())? {
            None => Ok(FederationConfig::default()),
            Some(raw) => decode(|| format!("settings/{FEDERATION_KEY}"), &raw),
        }
    }

    /// Read, change and write back; the caller (`Store::apply`) holds the write lock and
    /// flushes. The closure must be a pure function of its input.
    pub(crate) fn edit_federation_config<T>(
        &self,
        change: impl FnOnce(&mut FederationConfig) -> Result<T>,
    ) -> Result<T> {
        let mut config = self.federation_config()?;
        let outcome = change(&mut config)?;
        let raw = encode(&format!("settings/{FEDERATION_KEY}"), &config)?;
        self.inner.settings.insert(FEDERATION_KEY.as_bytes(), raw)?;
        Ok(outcome)
    }

    pub fn dns_config(&self) -> Result<DnsConfig> {
        match self.inner.settings.get(DNS_KEY.as_bytes())? {
            None => Ok(DnsConfig::default()),
            Some(raw) => decode(|| format!("settings/{DNS_KEY}"), &raw),
        }
    }

    pub(crate) fn write_dns_config(&self, config: &DnsConfig) -> Result<()> {
        let raw = encode(&format!("settings/{DNS_KEY}"), config)?;
        self.inner.settings.insert(DNS_KEY.as_bytes(), raw)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_store_has_federation_disabled_with_an_empty_allow_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = store.federation_config().unwrap();
        assert!(!config.enabled);
        assert_eq!(config.privacy, PrivacyMode::Allow);
        assert!(config.allow.is_empty());
        assert_eq!(config.security, SecurityMode::TlsRequired);
        assert!(config.dialback_secret.is_none());
        assert!(store.dns_config().unwrap().nameservers.is_empty());
    }

    #[test]
    fn settings_survive_reopening_and_never_print_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            use crate::ConfigChange as C;
            for change in [
                C::EnableFederation {
                    dialback_secret_if_unset: None,
                },
                C::SetDialbackSecret(Secret::new("s3cr3tf0rd14lb4ck")),
                C::SetFederationSecurity(SecurityMode::TlsOptional),
                C::EditRoute {
                    domain: "b.example".into(),
                    target: "127.0.0.2:5269".into(),
                    add: true,
                },
                C::SetDns(DnsConfig {
                    nameservers: vec!["127.0.0.53:5353".into()],
                }),
            ] {
                store.apply(&change).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let config = store.federation_config().unwrap();
        assert!(config.enabled);
        assert_eq!(
            config.dialback_secret.as_ref().map(Secret::expose),
            Some("s3cr3tf0rd14lb4ck")
        );
        assert_eq!(config.security, SecurityMode::TlsOptional);
        assert_eq!(config.routes["b.example"], vec!["127.0.0.2:5269".to_owned()]);
        assert!(!format!("{config:?}").contains("s3cr3t"));
        assert_eq!(
            store.dns_config().unwrap().nameservers,
            vec!["127.0.0.53:5353".to_owned()]
        );
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in [
            SecurityMode::TlsRequired,
            SecurityMode::TlsOptional,
            SecurityMode::NoTls,
        ] {
            assert_eq!(SecurityMode::from_name(mode.as_str()), Some(mode));
        }
        for mode in [PrivacyMode::Off, PrivacyMode::Allow, PrivacyMode::Deny] {
            assert_eq!(PrivacyMode::from_name(mode.as_str()), Some(mode));
        }
        assert_eq!(SecurityMode::from_name("tls"), None);
        // The stored form is the command's word, so a record reads as the admin typed it.
        assert_eq!(serde_json::to_string(&SecurityMode::NoTls).unwrap(), "\"no-tls\"");
    }
}
