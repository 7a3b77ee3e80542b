//! Applies commands: shared changes go through the [`ConfigWriter`], node-local ones to the
//! store's node record. The running daemon learns about both from the store's change feed
//! (whoever made the change); the admin layer only waits until the daemon has reacted, so a
//! command that follows (`xmpp status` after `xmpp listen`) sees the effect.

use crate::{Command, Reply};
use sb_store::{ConfigChange, ConfigWriter, LocalWriter, Store, WriteError, Written, XmppConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the running daemon (xmppd) offers the admin layer. Plain calls, no async: `execute`
/// runs on a blocking thread, and the daemon does the real work on its own tasks.
pub trait LiveNode: Send + Sync {
    fn status(&self) -> LiveStatus;
    /// Return once the daemon has reacted to every change-feed event up to `seq` (reloaded,
    /// closed sessions...), or after a bounded wait. The daemon reacts on its own to every
    /// event; this only orders the admin's next command after it.
    fn wait_reconciled(&self, seq: u64);
    /// The daemon's logger, for `syslog`, `syslog follow` and `log level`; `None` when it keeps
    /// no log buffer.
    fn log_handle(&self) -> Option<sb_logging::LogHandle> {
        None
    }
    /// The federation subsystem, for `federation status`, `dns check` and applying
    /// federation and DNS settings; `None` when the daemon runs without one.
    fn federation(&self) -> Option<Arc<dyn crate::federation::FederationLive>> {
        None
    }
    /// The cluster, for `xmpp cluster ...` and `xmpp reset`; `None` when the daemon has no
    /// cluster support (tests).
    fn cluster(&self) -> Option<Arc<dyn crate::xmpp::ClusterLive>> {
        None
    }
}

/// A snapshot of the daemon, for `xmpp status`. Build it with `..Default::default()` so fields
/// added later need no change at the call site; missing fields deserialize as their default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveStatus {
    /// The XMPP service accepts connections.
    pub running: bool,
    pub started_at_unix: u64,
    pub listeners: Vec<ListenerStatus>,
    pub sessions: Vec<SessionInfo>,
    /// Call Bridges connected and authenticated now.
    pub callbridges: Vec<CallBridgeConnection>,
    /// Refused component handshakes; `xmpp status` shows those of the last hour. The daemon
    /// keeps a bounded number (the newest).
    pub component_auth_failures: Vec<ComponentAuthFailure>,
    /// This node's cluster, when cluster mode runs.
    pub cluster: Option<crate::xmpp::ClusterView>,
    /// Why cluster mode is on but not running.
    pub cluster_error: Option<String>,
    /// The web admin's listeners (`webadmin status`).
    pub web: Vec<ListenerStatus>,
    /// The SSH server's listeners (`ssh status`).
    pub ssh: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallBridgeConnection {
    /// The bridge's name (`cb1`); its address is `<name>.<domain>`.
    pub name: String,
    /// The component's `ip:port`.
    pub peer: String,
    pub since_unix: u64,
    pub tls: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentAuthFailure {
    /// The name the component asked for: the label before `.<domain>` when its stream was
    /// addressed inside our domain, else the whole address it used.
    pub name: String,
    /// The component's `ip:port`.
    pub peer: String,
    pub at_unix: u64,
    pub reason: ComponentAuthFailureReason,
    /// Refusals from that name, address and reason folded into this entry (`at_unix` is
    /// the latest); 0 from an older daemon means one.
    #[serde(default)]
    pub count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentAuthFailureReason {
    /// No Call Bridge of that name is configured (`<host-unknown/>`).
    UnknownName,
    /// The `<handshake/>` digest did not match the configured secret (`<not-authorized/>`).
    WrongSecret,
    /// No usable handshake: a malformed stream header or `<handshake/>`, or something else first.
    BadHandshake,
}

impl std::fmt::Display for ComponentAuthFailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComponentAuthFailureReason::UnknownName => "unknown name",
            ComponentAuthFailureReason::WrongSecret => "wrong secret",
            ComponentAuthFailureReason::BadHandshake => "bad handshake",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// `ip:port` as bound (`10.0.2.15:5222 on a` for an interface entry), or as configured
    /// when it does not listen.
    pub address: String,
    /// Why binding failed; `None` when listening.
    pub error: Option<String>,
    /// Why it does not listen yet, with nothing wrong: its interface has no IPv4 address.
    #[serde(default)]
    pub waiting: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Full JID of the bound session.
    pub jid: String,
    /// The client's `ip:port`.
    pub peer: String,
    pub since_unix: u64,
    pub tls: bool,
}

/// Executes [`Command`]s against one node's data dir. Cheap to share behind an `Arc`.
pub struct Admin {
    store: Store,
    writer: Arc<dyn ConfigWriter>,
    dir: PathBuf,
    live: Option<Arc<dyn LiveNode>>,
    /// The machine's board and interfaces, for `xmpp listen <iface>`.
    appliance: crate::ApplianceHost,
}

impl Admin {
    /// `dir` is the data dir (store, `certs/`, admin socket); `live` is the running daemon, or
    /// `None` when `mmp` works on the store directly.
    pub fn new(store: Store, dir: PathBuf, live: Option<Arc<dyn LiveNode>>) -> Admin {
        Admin {
            writer: Arc::new(LocalWriter::new(store.clone())),
            store,
            dir,
            live,
            appliance: crate::ApplianceHost::system(),
        }
    }

    /// The same, writing shared changes through `writer` (a cluster's replicated log).
    pub fn with_writer(self, writer: Arc<dyn ConfigWriter>) -> Admin {
        Admin { writer, ..self }
    }

    /// The same, checking interface names against another board file (tests).
    pub fn with_appliance(self, appliance: crate::ApplianceHost) -> Admin {
        Admin { appliance, ..self }
    }

    /// Run a command. A streaming command ([`Command::is_streaming`]) gets a FAILURE here: it
    /// needs [`Admin::follow`].
    pub fn execute(&self, command: Command) -> Reply {
        // Debug of a Command redacts secrets, so the whole command can be logged.
        log::info!("admin command: {command:?}");
        let reply = command.apply(self);
        if !reply.ok {
            log::warn!("admin command refused: {}", reply.text);
        }
        reply
    }

    /// Start a streaming command (`syslog follow`): its lines, starting with some history, until
    /// the caller drops the [`sb_logging::Follower`]. `Err` is the reply to send instead.
    pub fn follow(&self, command: &Command) -> Result<sb_logging::Follower, Reply> {
        log::info!("admin command: {command:?}");
        match command {
            Command::Syslog(crate::SyslogCommand::Follow) => {
                crate::logs::log_handle(self).map(|log| log.follow(crate::logs::FOLLOW_HISTORY_LINES))
            }
            other => Err(Reply::failure(format!("{other:?} is not a streaming command"))),
        }
    }

    /// The name in the `<hostname>> ` prompt: the configured one, else the system's.
    pub fn hostname(&self) -> String {
        let configured = match self.store.xmpp_config() {
            Ok(config) => config.hostname,
            Err(err) => {
                log::warn!("cannot read the configured hostname: {err}");
                None
            }
        };
        configured
            .filter(|name| !name.is_empty())
            .unwrap_or_else(system_hostname)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn certs_dir(&self) -> PathBuf {
        crate::pki::certs_dir(&self.dir)
    }

    pub(crate) fn appliance(&self) -> &crate::ApplianceHost {
        &self.appliance
    }

    pub(crate) fn live(&self) -> Option<&dyn LiveNode> {
        self.live.as_deref()
    }

    /// The running daemon's state, for read-only front ends (web status page, metrics);
    /// `None` without a daemon.
    pub fn live_status(&self) -> Option<LiveStatus> {
        self.live().map(LiveNode::status)
    }

    /// Federation's links and listeners now; `None` without a daemon or federation.
    pub fn federation_status(&self) -> Option<crate::FederationLiveStatus> {
        self.live()
            .and_then(LiveNode::federation)
            .map(|federation| federation.status())
    }

    /// The daemon's log, for the web admin's live log.
    pub fn log_handle(&self) -> Option<sb_logging::LogHandle> {
        self.live().and_then(LiveNode::log_handle)
    }

    /// Write a shared change, then wait for the daemon to have reacted to it.
    pub fn write(&self, change: ConfigChange) -> Result<Written, WriteError> {
        let written = self.writer.write(change)?;
        self.wait_reconciled(written.seq);
        Ok(written)
    }

    /// Change the XMPP configuration: the shared half ([`sb_store::ServiceConfig`]) goes
    /// through the writer, this node's half ([`sb_store::NodeConfig`]) to the store's node
    /// record; each only when it changed. When nothing changed the node record is written
    /// again anyway: the daemon then reloads, which re-reads certificate files replaced in
    /// place (`xmpp certs` with the same names). Returns the effective configuration.
    ///
    /// The closure sees the configuration read just before: a read-modify-write, as a
    /// `SetService` carries the whole shared record.
    pub fn update_xmpp_config(&self, change: impl FnOnce(&mut XmppConfig)) -> Result<XmppConfig, WriteError> {
        let before = self.store.xmpp_config()?;
        let mut after = before.clone();
        change(&mut after);
        let service_changed = after.service() != before.service();
        if after.node() != before.node() || !service_changed {
            self.set_node_config(&after.node())?;
        }
        if service_changed {
            self.write(ConfigChange::SetService(after.service()))?;
        }
        Ok(after)
    }

    /// Replace this node's settings (they never replicate), then wait for the daemon.
    pub(crate) fn set_node_config(&self, node: &sb_store::NodeConfig) -> Result<(), WriteError> {
        let seq = self.store.set_node_config(node)?;
        self.wait_reconciled(seq);
        Ok(())
    }

    fn wait_reconciled(&self, seq: u64) {
        if let Some(live) = self.live() {
            live.wait_reconciled(seq);
        }
    }
}

/// A refused write as the operator sees it: `FAILURE: no quorum (node2, node3)` as is,
/// anything else after the command's name.
pub(crate) fn write_failure(command: &str, err: impl Into<WriteError>) -> Reply {
    match err.into() {
        err @ (WriteError::NoQuorum { .. } | WriteError::Unconfirmed { .. }) => Reply::failure(err),
        other => Reply::failure(format!("{command}: {other}")),
    }
}

pub(crate) fn system_hostname() -> String {
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(err) => {
            log::warn!("gethostname: {err}");
            "switchboard".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run;

    /// A cluster's writer that cannot reach a majority.
    struct NoQuorumWriter;

    impl ConfigWriter for NoQuorumWriter {
        fn write(&self, _change: ConfigChange) -> Result<Written, WriteError> {
            Err(WriteError::NoQuorum {
                unreachable: vec!["node2".to_owned(), "node3".to_owned()],
            })
        }
    }

    #[test]
    fn a_write_without_quorum_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let admin = crate::testing::admin(dir.path()).with_writer(Arc::new(NoQuorumWriter));
        let reply = run(&admin, "xmpp domain example.com");
        assert!(!reply.ok);
        assert_eq!(reply.text, "FAILURE: no quorum (node2, node3)");
        assert_eq!(admin.store().xmpp_config().unwrap().domain, "");
        // Starting or stopping the service is this node's own business: no quorum needed.
        assert!(run(&admin, "xmpp enable").ok);
        let reply = run(&admin, "federation disable");
        assert_eq!(reply.text, "FAILURE: no quorum (node2, node3)");
    }

    #[test]
    fn mmp_without_a_daemon_writes_to_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let admin = crate::testing::admin(dir.path());
        assert!(run(&admin, "xmpp domain example.com").ok);
        assert!(run(&admin, "xmpp enable").ok);
        assert!(run(&admin, "xmpp callbridge port 15223").ok);
        let config = admin.store().xmpp_config().unwrap();
        assert_eq!(config.domain, "example.com");
        assert!(config.enabled);
        assert_eq!(admin.store().service_config().unwrap().domain, "example.com");
        assert_eq!(admin.store().node_config().unwrap().component_port, 15223);
    }
}
