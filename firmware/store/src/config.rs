//! This node's XMPP service configuration (`xmpp ...` commands).

use crate::error::Result;
use crate::{Store, decode, encode};
use serde::{Deserialize, Serialize};

const XMPP_KEY: &[u8] = b"xmpp";

/// TLS identity: file names in `DIR/certs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsIdentity {
    pub key: String,
    pub cert: String,
    /// Intermediates then root, root last.
    #[serde(default)]
    pub bundle: Option<String>,
}

/// `#[serde(default)]`: a field added later reads as its default from older records, so
/// new fields are not a schema migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct XmppConfig {
    /// Empty means unconfigured.
    pub domain: String,
    /// [`crate::ListenTarget`]s in stored form: `127.0.0.1`, `127.0.0.1:15222`, `[::1]:5222`,
    /// `a`, `eth0:5222`; the port defaults per service.
    pub listen: Vec<String>,
    pub enabled: bool,
    pub tls: Option<TlsIdentity>,
    pub starttls_required: bool,
    /// Stored messages per offline user before senders get an error.
    pub offline_limit: u32,
    pub max_stanza_bytes: u32,
    /// The MMP prompt's name; `None` uses the system hostname.
    pub hostname: Option<String>,
    /// Port of the Call Bridge (XEP-0114 component) listener on every listen address;
    /// 0 turns it off.
    pub component_port: u16,
    /// Plain TCP instead of TLS on component listeners bound to loopback addresses (a Call
    /// Bridge on the same host, or tests). Listeners on other addresses always use TLS.
    pub component_plain: bool,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            domain: String::new(),
            listen: Vec::new(),
            enabled: false,
            tls: None,
            starttls_required: true,
            offline_limit: 100,
            max_stanza_bytes: 256 * 1024,
            hostname: None,
            component_port: 5223,
            component_plain: false,
        }
    }
}

impl XmppConfig {
    pub fn is_configured(&self) -> bool {
        !self.domain.is_empty()
    }
}

impl Store {
    /// The stored configuration, or the defaults when none was ever written.
    pub fn xmpp_config(&self) -> Result<XmppConfig> {
        match self.inner.config.get(XMPP_KEY)? {
            None => Ok(XmppConfig::default()),
            Some(raw) => decode(|| "config/xmpp".to_owned(), &raw),
        }
    }

    pub fn set_xmpp_config(&self, config: &XmppConfig) -> Result<()> {
        let raw = encode("config/xmpp", config)?;
        self.inner.config.insert(XMPP_KEY, raw)?;
        self.flush()
    }

    /// Read, change and write back atomically with respect to other writers in this
    /// process; returns the configuration as stored.
    pub fn update_xmpp_config(&self, change: impl FnOnce(&mut XmppConfig)) -> Result<XmppConfig> {
        let guard = self.lock();
        let mut config = self.xmpp_config()?;
        change(&mut config);
        let raw = encode("config/xmpp", &config)?;
        self.inner.config.insert(XMPP_KEY, raw)?;
        drop(guard);
        self.flush()?;
        Ok(config)
    }
}
