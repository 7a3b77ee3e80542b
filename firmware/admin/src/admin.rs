//! Applies commands to the store and tells the running daemon about it.

use crate::{Command, Reply};
use sb_store::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the running daemon (xmppd) offers the admin layer. Plain calls, no async: `execute`
/// runs on a blocking thread, and the daemon does the real work on its own tasks.
pub trait LiveNode: Send + Sync {
    fn status(&self) -> LiveStatus;
    /// The XMPP configuration in the store changed: re-read it, rebind listeners, reload the
    /// TLS identity, start or stop the service.
    fn config_changed(&self);
    /// An account was deleted or its password changed: end that user's sessions.
    fn user_changed(&self, user: &str);
}

/// A snapshot of the daemon, for `xmpp status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// The XMPP service accepts connections.
    pub running: bool,
    pub started_at_unix: u64,
    pub listeners: Vec<ListenerStatus>,
    pub sessions: Vec<SessionInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// `ip:port` as bound, or as configured when binding failed.
    pub address: String,
    /// Why binding failed; `None` when listening.
    pub error: Option<String>,
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
    dir: PathBuf,
    live: Option<Arc<dyn LiveNode>>,
}

impl Admin {
    /// `dir` is the data dir (store, `certs/`, admin socket); `live` is the running daemon, or
    /// `None` when `mmp` works on the store directly.
    pub fn new(store: Store, dir: PathBuf, live: Option<Arc<dyn LiveNode>>) -> Admin {
        Admin { store, dir, live }
    }

    pub fn execute(&self, command: Command) -> Reply {
        // Debug of a Command redacts secrets, so the whole command can be logged.
        log::info!("admin command: {command:?}");
        let reply = command.apply(self);
        if !reply.ok {
            log::warn!("admin command refused: {}", reply.text);
        }
        reply
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

    pub(crate) fn live(&self) -> Option<&dyn LiveNode> {
        self.live.as_deref()
    }

    pub(crate) fn notify_config_changed(&self) {
        if let Some(live) = self.live() {
            live.config_changed();
        }
    }

    pub(crate) fn notify_user_changed(&self, user: &str) {
        if let Some(live) = self.live() {
            live.user_changed(user);
        }
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
