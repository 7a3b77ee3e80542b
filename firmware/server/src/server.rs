//! The running XMPP service: listeners from the stored configuration, reload, status,
//! and an orderly shutdown.

use crate::core::{Core, Settings};
use crate::router::SessionStatus;
use crate::storage::Storage;
use crate::tls;
use crate::tuning::ServerTuning;
use sb_proto::{Jid, StreamError, StreamErrorCondition};
use sb_store::Store;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const DEFAULT_C2S_PORT: u16 = 5222;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the XMPP configuration: {0}")]
    Config(String),
    #[error("invalid domain '{0}'")]
    Domain(String),
}

/// Turn a configured listen address into a socket address: `127.0.0.1`, `127.0.0.1:15222`,
/// `[::1]:5222`, `[::1]` or `::1`; the port defaults to 5222.
pub fn parse_listen_address(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let host = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, default_port)),
        Err(_) => Err(format!(
            "'{text}' is not an IP address (interface names are resolved by the appliance)"
        )),
    }
}

/// One configured listen address and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerState {
    /// As configured.
    pub address: String,
    /// Where it listens, once bound.
    pub bound: Option<SocketAddr>,
    /// Why it does not listen.
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ServerStatus {
    pub running: bool,
    pub enabled: bool,
    pub started_at_unix: u64,
    pub domain: String,
    pub tls: bool,
    /// Problems with the TLS identity (files unreadable, key mismatch).
    pub tls_error: Option<String>,
    pub listeners: Vec<ListenerState>,
    pub sessions: Vec<SessionStatus>,
    /// Connections open, including ones not yet authenticated.
    pub connections: usize,
}

struct Listener {
    state: ListenerState,
    addr: Option<SocketAddr>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Default)]
struct ServiceState {
    enabled: bool,
    started: bool,
    tls_error: Option<String>,
    listeners: Vec<Listener>,
}

pub struct Server {
    core: Arc<Core>,
    state: Mutex<ServiceState>,
    /// Serializes start/reload/shutdown so two reloads cannot interleave their rebinding.
    lifecycle: tokio::sync::Mutex<()>,
}

/// What the stored configuration says, already turned into what the server uses.
struct Loaded {
    settings: Settings,
    listen: Vec<String>,
    enabled: bool,
    tls_error: Option<String>,
}

fn load(store: &Store, dir: &std::path::Path) -> Result<Loaded, ServerError> {
    let config = store.xmpp_config().map_err(|e| ServerError::Config(e.to_string()))?;
    let domain = Jid::from_parts(None, &config.domain, None)
        .map_err(|_| ServerError::Domain(config.domain.clone()))?
        .domain()
        .to_owned();
    let (tls, tls_error) = match &config.tls {
        Some(identity) => match tls::load_server_config(
            &dir.join("certs"),
            &identity.key,
            &identity.cert,
            identity.bundle.as_deref(),
        ) {
            Ok(config) => (Some(config), None),
            Err(e) => {
                log::error!("TLS identity unusable, STARTTLS is not offered: {e}");
                (None, Some(e.to_string()))
            }
        },
        None => (None, None),
    };
    Ok(Loaded {
        settings: Settings {
            domain,
            tls,
            starttls_required: config.starttls_required,
            max_stanza_bytes: config.max_stanza_bytes as usize,
            offline_limit: config.offline_limit as usize,
        },
        listen: config.listen.clone(),
        enabled: config.enabled,
        tls_error,
    })
}

impl Server {
    pub fn new(store: Store, dir: impl Into<PathBuf>, tuning: ServerTuning) -> Arc<Server> {
        let dir = dir.into();
        // Real settings come with start(); until then nothing listens.
        let settings = Settings {
            domain: "localhost".to_owned(),
            tls: None,
            starttls_required: true,
            max_stanza_bytes: 256 * 1024,
            offline_limit: 0,
        };
        Arc::new(Server {
            core: Arc::new(Core::new(Storage::new(store), dir, tuning, settings)),
            state: Mutex::new(ServiceState::default()),
            lifecycle: tokio::sync::Mutex::new(()),
        })
    }

    /// The shared core: the router (`core().router`) for components and federation to
    /// register links, and `core().route(stanza)` to hand stanzas in.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ServiceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read the configuration and start listening where it says. Bind failures are kept
    /// for `status()`, not returned: the other listeners still serve.
    pub async fn start(self: &Arc<Self>) -> Result<(), ServerError> {
        let _lifecycle = self.lifecycle.lock().await;
        let loaded = load(self.core.storage.store(), &self.core.dir)?;
        self.apply(loaded).await;
        self.state().started = true;
        Ok(())
    }

    /// Re-read the configuration: a new domain ends existing sessions (`<host-gone/>`), a
    /// new TLS identity applies to new connections only, listeners follow the listen list,
    /// and disabling stops the service.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ServerError> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.core.is_shutting_down() {
            return Ok(());
        }
        let loaded = load(self.core.storage.store(), &self.core.dir)?;
        let old_domain = self.core.domain();
        if self.state().started && loaded.settings.domain != old_domain {
            log::info!("domain changed from {old_domain} to {}", loaded.settings.domain);
            self.core.router.close_all(&StreamError::with_text(
                StreamErrorCondition::HostGone,
                "this server no longer serves that domain",
            ));
        }
        self.apply(loaded).await;
        Ok(())
    }

    async fn apply(self: &Arc<Self>, loaded: Loaded) {
        self.core.set_settings(loaded.settings);
        let was_enabled = {
            let mut state = self.state();
            state.tls_error = loaded.tls_error;
            std::mem::replace(&mut state.enabled, loaded.enabled)
        };
        if !loaded.enabled {
            let stopped = std::mem::take(&mut self.state().listeners);
            if was_enabled || !stopped.is_empty() {
                log::info!("XMPP service disabled: listeners closed, sessions ended");
                self.core.stop_all_connections();
            }
            return;
        }
        let wanted: Vec<(String, Result<SocketAddr, String>)> = loaded
            .listen
            .iter()
            .map(|a| (a.clone(), parse_listen_address(a, DEFAULT_C2S_PORT)))
            .collect();
        let mut keep: Vec<Listener> = Vec::new();
        let mut current = std::mem::take(&mut self.state().listeners);
        for (address, parsed) in wanted {
            let existing = current
                .iter()
                .position(|l| l.task.is_some() && parsed.as_ref().ok() == l.addr.as_ref());
            if let Some(pos) = existing {
                let mut listener = current.swap_remove(pos);
                listener.state.address = address;
                keep.push(listener);
                continue;
            }
            keep.push(match parsed {
                Ok(addr) => self.bind(address, addr).await,
                Err(error) => {
                    log::error!("c2s: cannot listen on {address}: {error}");
                    Listener {
                        state: ListenerState {
                            address,
                            bound: None,
                            error: Some(error),
                        },
                        addr: None,
                        task: None,
                    }
                }
            });
        }
        // Listeners no longer wanted close here (dropping aborts their accept loops);
        // their established sessions go on.
        drop(current);
        self.state().listeners = keep;
    }

    async fn bind(&self, address: String, addr: SocketAddr) -> Listener {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                log::info!("c2s: listening on {bound}");
                let core = Arc::clone(&self.core);
                Listener {
                    state: ListenerState {
                        address,
                        bound: Some(bound),
                        error: None,
                    },
                    addr: Some(addr),
                    task: Some(tokio::spawn(accept_loop(core, listener))),
                }
            }
            Err(e) => {
                log::error!("c2s: cannot listen on {addr}: {e}");
                Listener {
                    state: ListenerState {
                        address,
                        bound: None,
                        error: Some(e.to_string()),
                    },
                    addr: Some(addr),
                    task: None,
                }
            }
        }
    }

    pub fn status(&self) -> ServerStatus {
        let settings = self.core.settings();
        let state = self.state();
        let listeners: Vec<ListenerState> = state.listeners.iter().map(|l| l.state.clone()).collect();
        ServerStatus {
            running: state.enabled && listeners.iter().any(|l| l.bound.is_some()),
            enabled: state.enabled,
            started_at_unix: self.core.started_at_unix,
            domain: settings.domain.clone(),
            tls: settings.tls.is_some(),
            tls_error: state.tls_error.clone(),
            listeners,
            sessions: self.core.router.sessions(&settings.domain),
            connections: self.core.connections.active(),
        }
    }

    /// End every session of `user` (after the account was deleted or its password changed).
    /// Returns how many sessions were asked to close.
    pub fn kick_user(&self, user: &str) -> usize {
        let domain = self.core.domain();
        let user = Jid::from_parts(Some(user), &domain, None)
            .ok()
            .and_then(|j| j.node().map(str::to_owned))
            .unwrap_or_else(|| user.to_owned());
        self.core.router.close_user(
            &user,
            &StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "account changed by the administrator",
            ),
        )
    }

    /// Stop accepting, close every stream with `<system-shutdown/>` and wait (bounded by
    /// `ServerTuning::shutdown_timeout`) for the connections to finish their goodbyes.
    pub async fn shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        let listeners = std::mem::take(&mut self.state().listeners);
        drop(listeners);
        self.core.begin_shutdown();
        let open = self.core.connections.active();
        log::info!("shutting down: closing {open} connection(s)");
        let waited = tokio::time::timeout(self.core.tuning.shutdown_timeout, self.core.connections.wait_idle()).await;
        if waited.is_err() {
            log::warn!(
                "shutdown: {} connection(s) did not close in time",
                self.core.connections.active()
            );
        }
        let mut state = self.state();
        state.enabled = false;
    }
}

/// What a client refused at the door reads before the socket closes.
const TOO_MANY_CONNECTIONS: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error>\
<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too many connections from this address</text>\
</stream:error></stream:stream>";

async fn accept_loop(core: Arc<Core>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => admit(&core, tcp, peer),
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning, the
                // condition usually clears when connections close.
                log::warn!("c2s: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn admit(core: &Arc<Core>, tcp: TcpStream, peer: SocketAddr) {
    if core.is_shutting_down() {
        return;
    }
    let Some(slot) = core
        .connection_limiter
        .try_acquire(peer.ip(), core.tuning.max_connections_per_ip)
    else {
        log::warn!("c2s: refusing {peer}: too many connections from {}", peer.ip());
        // Best effort without waiting: nothing slow on the accept path.
        let _ = tcp.try_write(TOO_MANY_CONNECTIONS);
        return;
    };
    let tracked = core.connections.track();
    tokio::spawn(crate::c2s::serve(Arc::clone(core), tcp, peer, slot, tracked));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let p = |s| parse_listen_address(s, 5222);
        assert_eq!(p("127.0.0.1").unwrap(), "127.0.0.1:5222".parse().unwrap());
        assert_eq!(p("127.0.0.2:15222").unwrap(), "127.0.0.2:15222".parse().unwrap());
        assert_eq!(p("[::1]:5223").unwrap(), "[::1]:5223".parse().unwrap());
        assert_eq!(p("[::1]").unwrap(), "[::1]:5222".parse().unwrap());
        assert_eq!(p("::1").unwrap(), "[::1]:5222".parse().unwrap());
        assert!(p("eth0").is_err());
    }
}
