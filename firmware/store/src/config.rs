//! The XMPP service configuration (`xmpp ...` commands), in two records:
//!
//! - [`ServiceConfig`]: what every node of a cluster must agree on (domain, TLS policy,
//!   limits). Changed only through [`crate::ConfigChange::SetService`].
//! - [`NodeConfig`]: what belongs to this machine (whether its XMPP service runs, listen
//!   addresses, ports, certificate file names, hostname, its cluster settings). `xmpp disable`
//!   stops the service on this node only, as on CMS, where forming a cluster disables each
//!   node in turn. Never replicated, so it is not a `ConfigChange`: it has its own setter,
//!   [`Store::set_node_config`], which still publishes a `NodeConfigChanged` event on the
//!   change feed so the running server reacts to it the same way.
//!
//! [`XmppConfig`] is the two composed: the effective configuration the server reads.

use crate::error::Result;
use crate::{Store, decode, encode};
use serde::{Deserialize, Serialize};

pub(crate) const SERVICE_KEY: &[u8] = b"service";
pub(crate) const NODE_KEY: &[u8] = b"node";
/// Schema 1's single record, split by the migration to schema 2.
pub(crate) const LEGACY_XMPP_KEY: &[u8] = b"xmpp";

/// TLS identity: file names in `DIR/certs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsIdentity {
    pub key: String,
    pub cert: String,
    /// Intermediates then root, root last.
    #[serde(default)]
    pub bundle: Option<String>,
}

/// Shared settings. `#[serde(default)]`: a field added later reads as its default from older
/// records, so new fields are not a schema migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    /// Empty means unconfigured.
    pub domain: String,
    pub starttls_required: bool,
    /// Stored messages per offline user before senders get an error.
    pub offline_limit: u32,
    pub max_stanza_bytes: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            domain: String::new(),
            starttls_required: true,
            offline_limit: 100,
            max_stanza_bytes: 256 * 1024,
        }
    }
}

/// This machine's settings: sockets and files that exist only here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// The XMPP service runs on this node (`xmpp enable` / `xmpp disable`).
    pub enabled: bool,
    /// [`crate::ListenTarget`]s in stored form: `127.0.0.1`, `127.0.0.1:15222`, `[::1]:5222`,
    /// `a`, `eth0:5222`; the port defaults per service.
    pub listen: Vec<String>,
    /// Certificate file names in this node's `certs/` folder.
    pub tls: Option<TlsIdentity>,
    /// The MMP prompt's name; `None` uses the system hostname.
    pub hostname: Option<String>,
    /// Port of the Call Bridge (XEP-0114 component) listener on every listen address;
    /// 0 turns it off.
    pub component_port: u16,
    /// Plain TCP instead of TLS on component listeners bound to loopback addresses (a Call
    /// Bridge on the same host, or tests). Listeners on other addresses always use TLS.
    pub component_plain: bool,
    /// `xmpp cluster ...`: this node's part in a cluster.
    pub cluster: ClusterNodeConfig,
    /// `webadmin ...`: this node's HTTPS web admin and API.
    pub web: WebAdminConfig,
    /// `ssh ...`: this node's SSH server (MMP prompt, one-shot commands, SFTP).
    pub ssh: SshConfig,
}

/// This node's SSH server (`ssh ...`): node-local, like the web admin. The host key is a file
/// in the data folder, not here: it must never travel with a copy of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshConfig {
    /// `ssh enable` / `ssh disable`.
    pub enabled: bool,
    /// A listen entry in stored form (`127.0.0.1`, `a`); its own port, if any, is ignored.
    pub listen: String,
    pub port: u16,
    /// `ssh authorized-key add`: public keys that log in as `admin`.
    pub authorized_keys: Vec<AuthorizedKey>,
}

/// One public key allowed to log in as `admin`, as in an OpenSSH `authorized_keys` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...
    pub key_type: String,
    /// The key blob, base64 as OpenSSH prints it.
    pub base64: String,
    #[serde(default)]
    pub comment: String,
}

/// The SSH port when the administrator names none.
pub const DEFAULT_SSH_PORT: u16 = 22;

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            enabled: false,
            listen: "127.0.0.1".to_owned(),
            port: DEFAULT_SSH_PORT,
            authorized_keys: Vec::new(),
        }
    }
}

/// This node's web admin (`webadmin ...`): node-local, like every listen setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebAdminConfig {
    /// `webadmin enable` / `webadmin disable`.
    pub enabled: bool,
    /// A listen entry in stored form (`127.0.0.1`, `a`); its own port, if any, is ignored.
    pub listen: String,
    pub port: u16,
    /// `webadmin certs`; `None` serves the XMPP identity (`xmpp certs`, else the self-signed one).
    pub tls: Option<TlsIdentity>,
}

/// The web admin port when the administrator names none.
pub const DEFAULT_WEB_PORT: u16 = 8443;

impl Default for WebAdminConfig {
    fn default() -> Self {
        WebAdminConfig {
            enabled: false,
            listen: "127.0.0.1".to_owned(),
            port: DEFAULT_WEB_PORT,
            tls: None,
        }
    }
}

/// This node's cluster settings. What the cluster shares lives in the replicated state; these
/// say whether and how this node takes part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterNodeConfig {
    /// `xmpp cluster enable`: run the cluster port and consensus on this node.
    pub enabled: bool,
    /// `xmpp cluster trust <bundle>`: a file in `certs/`; peers' chains must lead to it.
    pub trust: Option<String>,
    /// The node-to-node port on this node's listen addresses.
    pub port: u16,
}

/// The cluster port when the administrator names none (SPEC: 5270).
pub const DEFAULT_CLUSTER_PORT: u16 = 5270;

impl Default for ClusterNodeConfig {
    fn default() -> Self {
        ClusterNodeConfig {
            enabled: false,
            trust: None,
            port: DEFAULT_CLUSTER_PORT,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            enabled: false,
            listen: Vec::new(),
            tls: None,
            hostname: None,
            component_port: 5223,
            component_plain: false,
            cluster: ClusterNodeConfig::default(),
            web: WebAdminConfig::default(),
            ssh: SshConfig::default(),
        }
    }
}

/// The effective configuration: [`ServiceConfig`] and [`NodeConfig`] side by side, in the
/// flat shape the server and the admin layer read.
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
    pub cluster: ClusterNodeConfig,
    pub web: WebAdminConfig,
    pub ssh: SshConfig,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig::compose(ServiceConfig::default(), NodeConfig::default())
    }
}

impl XmppConfig {
    pub fn is_configured(&self) -> bool {
        !self.domain.is_empty()
    }

    pub fn compose(service: ServiceConfig, node: NodeConfig) -> XmppConfig {
        XmppConfig {
            domain: service.domain,
            listen: node.listen,
            enabled: node.enabled,
            tls: node.tls,
            starttls_required: service.starttls_required,
            offline_limit: service.offline_limit,
            max_stanza_bytes: service.max_stanza_bytes,
            hostname: node.hostname,
            component_port: node.component_port,
            component_plain: node.component_plain,
            cluster: node.cluster,
            web: node.web,
            ssh: node.ssh,
        }
    }

    /// The shared half.
    pub fn service(&self) -> ServiceConfig {
        ServiceConfig {
            domain: self.domain.clone(),
            starttls_required: self.starttls_required,
            offline_limit: self.offline_limit,
            max_stanza_bytes: self.max_stanza_bytes,
        }
    }

    /// This node's half.
    pub fn node(&self) -> NodeConfig {
        NodeConfig {
            enabled: self.enabled,
            listen: self.listen.clone(),
            tls: self.tls.clone(),
            hostname: self.hostname.clone(),
            component_port: self.component_port,
            component_plain: self.component_plain,
            cluster: self.cluster.clone(),
            web: self.web.clone(),
            ssh: self.ssh.clone(),
        }
    }
}

impl Store {
    /// The effective configuration (shared and node-local composed), defaults for what was
    /// never written.
    pub fn xmpp_config(&self) -> Result<XmppConfig> {
        Ok(XmppConfig::compose(self.service_config()?, self.node_config()?))
    }

    pub fn service_config(&self) -> Result<ServiceConfig> {
        match self.inner.config.get(SERVICE_KEY)? {
            None => Ok(ServiceConfig::default()),
            Some(raw) => decode(|| "config/service".to_owned(), &raw),
        }
    }

    pub fn node_config(&self) -> Result<NodeConfig> {
        match self.inner.config.get(NODE_KEY)? {
            None => Ok(NodeConfig::default()),
            Some(raw) => decode(|| "config/node".to_owned(), &raw),
        }
    }

    /// Replace this node's settings (flushed), then publish
    /// [`crate::FeedEvent::NodeConfigChanged`]; returns the event's sequence number.
    pub fn set_node_config(&self, config: &NodeConfig) -> Result<u64> {
        let raw = encode("config/node", config)?;
        let guard = self.lock();
        self.inner.config.insert(NODE_KEY, raw)?;
        self.flush()?;
        let seq = self.publish(crate::FeedEvent::NodeConfigChanged);
        drop(guard);
        Ok(seq)
    }

    pub(crate) fn write_service_config(&self, config: &crate::ServiceConfig) -> Result<()> {
        let raw = encode("config/service", config)?;
        self.inner.config.insert(SERVICE_KEY, raw)?;
        Ok(())
    }
}
