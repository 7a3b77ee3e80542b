//! The running XMPP service: listeners from the stored configuration (clients on 5222, Call
//! Bridges on 5223 at every listen address), reload, status, and an orderly shutdown.

use crate::component::{self, AuthFailure, ComponentStatus};
use crate::core::{Core, Settings, unix_now};
use crate::router::SessionStatus;
use crate::storage::Storage;
use crate::tls;
use crate::tuning::ServerTuning;
use sb_proto::{Jid, StreamError, StreamErrorCondition};
use sb_store::Store;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const DEFAULT_C2S_PORT: u16 = 5222;

/// Refused component handshakes this recent are reported by `status()`.
const AUTH_FAILURE_REPORT_SECONDS: u64 = 3600;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Clients (RFC 6120 c2s, STARTTLS).
    Client,
    /// Call Bridges (XEP-0114 components, TLS on the socket).
    Component,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Client => "c2s",
            Service::Component => "component",
        })
    }
}

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
    pub service: Service,
    /// As configured (clients), or the configured address with the component port.
    pub address: String,
    /// Plain TCP where TLS would be the rule (a loopback component listener configured so).
    pub plain: bool,
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
    /// Call Bridges connected and authenticated now.
    pub components: Vec<ComponentStatus>,
    /// Component handshakes refused in the last hour, oldest first.
    pub component_auth_failures: Vec<AuthFailure>,
}

struct Listener {
    state: ListenerState,
    addr: Option<SocketAddr>,
    /// Read by the accept loop for every connection, so switching a component listener
    /// between TLS and plain TCP keeps the socket instead of rebinding its address.
    plain: Arc<AtomicBool>,
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
    component_port: u16,
    component_plain: bool,
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
        component_port: config.component_port,
        component_plain: config.component_plain,
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
            let gone = StreamError::with_text(
                StreamErrorCondition::HostGone,
                "this server no longer serves that domain",
            );
            self.core.router.close_all(&gone);
            self.core.components.close_all(&gone);
        }
        self.apply(loaded).await;
        Ok(())
    }

    async fn apply(self: &Arc<Self>, loaded: Loaded) {
        let wanted = wanted_listeners(&loaded);
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
        let mut keep: Vec<Listener> = Vec::new();
        let mut current = std::mem::take(&mut self.state().listeners);
        for wanted in wanted {
            let existing = current.iter().position(|l| {
                l.task.is_some() && l.state.service == wanted.service && wanted.addr.as_ref().ok() == l.addr.as_ref()
            });
            if let Some(pos) = existing {
                let mut listener = current.swap_remove(pos);
                listener.state.address = wanted.address;
                listener.state.plain = wanted.plain;
                listener.plain.store(wanted.plain, Ordering::Relaxed);
                keep.push(listener);
                continue;
            }
            let service = wanted.service;
            keep.push(match wanted.addr {
                Ok(addr) => self.bind(service, wanted.address, addr, wanted.plain).await,
                Err(error) => {
                    log::error!("{service}: cannot listen on {}: {error}", wanted.address);
                    Listener {
                        state: ListenerState {
                            service,
                            address: wanted.address,
                            plain: wanted.plain,
                            bound: None,
                            error: Some(error),
                        },
                        addr: None,
                        plain: Arc::new(AtomicBool::new(wanted.plain)),
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

    async fn bind(&self, service: Service, address: String, addr: SocketAddr, plain: bool) -> Listener {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                let how = match (service, plain) {
                    (Service::Client, _) => "",
                    (Service::Component, false) => " (TLS)",
                    (Service::Component, true) => " (plain TCP, loopback only)",
                };
                log::info!("{service}: listening on {bound}{how}");
                let core = Arc::clone(&self.core);
                let plain_flag = Arc::new(AtomicBool::new(plain));
                Listener {
                    state: ListenerState {
                        service,
                        address,
                        plain,
                        bound: Some(bound),
                        error: None,
                    },
                    addr: Some(addr),
                    task: Some(tokio::spawn(accept_loop(
                        core,
                        listener,
                        service,
                        Arc::clone(&plain_flag),
                    ))),
                    plain: plain_flag,
                }
            }
            Err(e) => {
                log::error!("{service}: cannot listen on {addr}: {e}");
                Listener {
                    state: ListenerState {
                        service,
                        address,
                        plain,
                        bound: None,
                        error: Some(e.to_string()),
                    },
                    addr: Some(addr),
                    plain: Arc::new(AtomicBool::new(plain)),
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
            running: state.enabled
                && listeners
                    .iter()
                    .any(|l| l.service == Service::Client && l.bound.is_some()),
            enabled: state.enabled,
            started_at_unix: self.core.started_at_unix,
            domain: settings.domain.clone(),
            tls: settings.tls.is_some(),
            tls_error: state.tls_error.clone(),
            listeners,
            sessions: self.core.router.sessions(&settings.domain),
            connections: self.core.connections.active(),
            components: self.core.components.connected(),
            component_auth_failures: self
                .core
                .components
                .failures_since(unix_now().saturating_sub(AUTH_FAILURE_REPORT_SECONDS)),
        }
    }

    /// Call Bridge `name` was added, deleted or re-keyed in the store: a connection of a
    /// bridge that no longer exists, or that proved a secret which is no longer its own,
    /// ends. Returns whether a connection was closed.
    pub fn callbridge_changed(&self, name: &str) -> bool {
        let Some(link) = self.core.components.link(name) else {
            return false;
        };
        let error = match self.core.storage.callbridge_secret(link.name()) {
            Ok(None) => StreamError::with_text(
                StreamErrorCondition::HostGone,
                "this Call Bridge was removed by the administrator",
            ),
            Ok(Some(secret)) if !link.authenticated_with(secret.expose()) => StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "the secret of this Call Bridge was changed",
            ),
            Ok(Some(_)) => return false,
            Err(e) => {
                log::error!("cannot check Call Bridge {name} after a change: {e}");
                return false;
            }
        };
        log::info!(
            "component: closing Call Bridge {} from {}: {}",
            link.name(),
            link.meta().peer,
            error.text.as_deref().unwrap_or_default()
        );
        link.close(error);
        true
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

async fn accept_loop(core: Arc<Core>, listener: TcpListener, service: Service, plain: Arc<AtomicBool>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => admit(&core, tcp, peer, service, plain.load(Ordering::Relaxed)),
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning, the
                // condition usually clears when connections close.
                log::warn!("{service}: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn admit(core: &Arc<Core>, tcp: TcpStream, peer: SocketAddr, service: Service, plain: bool) {
    if core.is_shutting_down() {
        return;
    }
    let Some(slot) = core
        .connection_limiter
        .try_acquire(peer.ip(), core.tuning.max_connections_per_ip)
    else {
        log::warn!("{service}: refusing {peer}: too many connections from {}", peer.ip());
        if service == Service::Client {
            // Best effort without waiting: nothing slow on the accept path. A component
            // socket expects TLS first, so plain XML would only be noise there.
            let _ = tcp.try_write(TOO_MANY_CONNECTIONS);
        }
        return;
    };
    let tracked = core.connections.track();
    match service {
        Service::Client => {
            tokio::spawn(crate::c2s::serve(Arc::clone(core), tcp, peer, slot, tracked));
        }
        Service::Component => {
            tokio::spawn(component::serve(Arc::clone(core), tcp, peer, !plain, slot, tracked));
        }
    }
}

/// One listener the configuration asks for.
struct WantedListener {
    service: Service,
    address: String,
    addr: Result<SocketAddr, String>,
    plain: bool,
}

/// Clients on each listen address; Call Bridges on the same IP addresses at the component
/// port (unless it is 0). Plain TCP for components only where asked for and on loopback.
fn wanted_listeners(loaded: &Loaded) -> Vec<WantedListener> {
    let mut wanted = Vec::new();
    for address in &loaded.listen {
        let parsed = parse_listen_address(address, DEFAULT_C2S_PORT);
        wanted.push(WantedListener {
            service: Service::Client,
            address: address.clone(),
            addr: parsed.clone(),
            plain: false,
        });
        if loaded.component_port == 0 {
            continue;
        }
        let component_addr = parsed.map(|a| SocketAddr::new(a.ip(), loaded.component_port));
        let plain = loaded.component_plain && component_addr.as_ref().is_ok_and(|a| a.ip().is_loopback());
        if loaded.component_plain && !plain {
            log::warn!("component: TLS stays on for {address}: plain TCP is only allowed on loopback addresses");
        }
        wanted.push(WantedListener {
            service: Service::Component,
            address: component_addr
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| address.clone()),
            addr: component_addr,
            plain,
        });
    }
    wanted
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

    fn loaded(listen: &[&str], component_port: u16, component_plain: bool) -> Loaded {
        Loaded {
            settings: Settings {
                domain: "example.com".into(),
                tls: None,
                starttls_required: true,
                max_stanza_bytes: 1024,
                offline_limit: 1,
            },
            listen: listen.iter().map(|a| a.to_string()).collect(),
            component_port,
            component_plain,
            enabled: true,
            tls_error: None,
        }
    }

    fn summary(wanted: &[WantedListener]) -> Vec<(Service, String, bool)> {
        wanted
            .iter()
            .map(|w| {
                (
                    w.service,
                    w.addr.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                    w.plain,
                )
            })
            .collect()
    }

    #[test]
    fn components_listen_beside_every_client_address_with_tls_off_only_on_loopback() {
        let wanted = wanted_listeners(&loaded(&["127.0.0.2:15222", "192.0.2.7"], 5223, true));
        assert_eq!(
            summary(&wanted),
            vec![
                (Service::Client, "127.0.0.2:15222".to_owned(), false),
                (Service::Component, "127.0.0.2:5223".to_owned(), true),
                (Service::Client, "192.0.2.7:5222".to_owned(), false),
                (Service::Component, "192.0.2.7:5223".to_owned(), false),
            ]
        );
        let tls_everywhere = wanted_listeners(&loaded(&["127.0.0.2"], 5223, false));
        assert!(tls_everywhere.iter().all(|w| !w.plain));
        let no_components = wanted_listeners(&loaded(&["127.0.0.2"], 0, false));
        assert_eq!(
            summary(&no_components),
            vec![(Service::Client, "127.0.0.2:5222".to_owned(), false)]
        );
        let unparsable = wanted_listeners(&loaded(&["eth0"], 5223, false));
        assert!(unparsable.iter().all(|w| w.addr.is_err()));
        assert_eq!(unparsable.len(), 2);
    }
}
