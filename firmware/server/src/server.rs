//! The running XMPP service: listeners from the stored configuration (clients on 5222, Call
//! Bridges on 5223 at every listen address), reload, status, and an orderly shutdown.
//!
//! A listen entry that names an interface stands for its IPv4 addresses at the time: the
//! listeners are re-resolved when the interfaces' addresses change ([`Server::refresh_interfaces`],
//! polled), and only the ones whose address came or went are bound or closed.

use crate::component::{self, AuthFailure, ComponentStatus};
use crate::core::{Core, Settings, unix_now};
use crate::router::SessionStatus;
use crate::storage::Storage;
use crate::tls;
use crate::tuning::ServerTuning;
use sb_proto::{Jid, StreamError, StreamErrorCondition};
use sb_store::{InterfaceAddresses, ListenTarget, Store, Unresolved};
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

/// One configured listen address and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerState {
    pub service: Service,
    /// As configured (clients), or the configured address with the component port.
    pub address: String,
    /// The interface whose address this is, for an entry that names one.
    pub interface: Option<String>,
    /// Plain TCP where TLS would be the rule (a loopback component listener configured so).
    pub plain: bool,
    /// Where it listens, once bound.
    pub bound: Option<SocketAddr>,
    /// Why it does not listen.
    pub error: Option<String>,
    /// Why it does not listen yet, with nothing wrong: its interface has no IPv4 address
    /// (DHCP pending); it binds as soon as one appears.
    pub waiting: Option<String>,
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

impl Listener {
    /// Stop accepting and wait until the socket is closed (an aborted task drops its listener
    /// only when the runtime gets to it).
    async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// A listener with no socket: waiting for an address, or refused.
    fn idle(want: WantedListener, error: Option<String>, waiting: Option<String>) -> Listener {
        Listener {
            state: ListenerState {
                service: want.service,
                address: want.address,
                interface: want.interface,
                plain: want.plain,
                bound: None,
                error,
                waiting,
            },
            addr: None,
            plain: Arc::new(AtomicBool::new(want.plain)),
            task: None,
        }
    }
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
    /// The listen settings last applied: re-resolved when interface addresses change.
    plan: ListenPlan,
    /// What they resolved to, so an address change elsewhere rebinds nothing.
    applied: Vec<WantedListener>,
    /// Re-reads the interfaces' addresses (see [`Server::refresh_interfaces`]).
    interface_poller: Option<JoinHandle<()>>,
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
    plan: ListenPlan,
    enabled: bool,
    tls_error: Option<String>,
}

/// The part of the configuration that decides the listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ListenPlan {
    /// Stored listen entries ([`ListenTarget`] text).
    listen: Vec<String>,
    component_port: u16,
    component_plain: bool,
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
        plan: ListenPlan {
            listen: config.listen.clone(),
            component_port: config.component_port,
            component_plain: config.component_plain,
        },
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
        let period = self.core.tuning.interface_poll_interval;
        let mut state = self.state();
        state.started = true;
        if state.interface_poller.is_none() && !period.is_zero() {
            state.interface_poller = Some(tokio::spawn(poll_interfaces(Arc::downgrade(self), period)));
        }
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
        // A reload may be the change to an interface name: resolve it against the list now.
        self.core.interfaces.refresh();
        let wanted = wanted_listeners(&loaded.plan, &self.core.interfaces.current());
        self.core.set_settings(loaded.settings);
        let was_enabled = {
            let mut state = self.state();
            state.tls_error = loaded.tls_error;
            std::mem::replace(&mut state.enabled, loaded.enabled)
        };
        if !loaded.enabled {
            let stopped = {
                let mut state = self.state();
                state.applied.clear();
                std::mem::take(&mut state.listeners)
            };
            if was_enabled || !stopped.is_empty() {
                log::info!("XMPP service disabled: listeners closed, sessions ended");
                self.core.stop_all_connections();
            }
            return;
        }
        self.state().plan = loaded.plan.clone();
        self.reconcile(&loaded.plan, wanted).await;
    }

    /// The interfaces' addresses are read again; when one a listen entry names gained or lost
    /// an address, its listeners are bound or closed. Listeners whose address stays keep
    /// their socket, and established sessions are never touched.
    pub async fn refresh_interfaces(self: &Arc<Self>) {
        if !self.core.interfaces.refresh() {
            return;
        }
        let _lifecycle = self.lifecycle.lock().await;
        if self.core.is_shutting_down() {
            return;
        }
        let (enabled, plan, applied) = {
            let state = self.state();
            (state.enabled, state.plan.clone(), state.applied.clone())
        };
        let wanted = wanted_listeners(&plan, &self.core.interfaces.current());
        if !enabled || wanted == applied {
            return;
        }
        log::info!("interface addresses changed: updating the listeners");
        self.reconcile(&plan, wanted).await;
    }

    /// Make the listeners what `wanted` says: keep those already bound where wanted, bind the
    /// new ones, close the rest.
    async fn reconcile(&self, plan: &ListenPlan, wanted: Vec<WantedListener>) {
        let mut keep: Vec<Listener> = Vec::new();
        let (mut current, unwanted): (Vec<Listener>, Vec<Listener>) =
            std::mem::take(&mut self.state().listeners).into_iter().partition(|l| {
                l.task.is_some()
                    && l.addr.is_some_and(|addr| {
                        wanted
                            .iter()
                            .any(|w| w.service == l.state.service && w.target == Target::Bind(addr))
                    })
            });
        // Closed before anything binds: moving from 0.0.0.0:5222 to 10.0.2.15:5222 needs the
        // wildcard socket gone first. Their established sessions go on.
        for listener in unwanted {
            listener.close().await;
        }
        for want in wanted.iter().cloned() {
            let service = want.service;
            let addr = match want.target.clone() {
                Target::Bind(addr) => addr,
                Target::Waiting(reason) => {
                    log::info!("{service}: {} waits: {reason}", want.address);
                    keep.push(Listener::idle(want, None, Some(reason)));
                    continue;
                }
                Target::Refused(error) => {
                    log::error!("{service}: cannot listen on {}: {error}", want.address);
                    keep.push(Listener::idle(want, Some(error), None));
                    continue;
                }
            };
            let existing = current
                .iter()
                .position(|l| l.task.is_some() && l.state.service == service && l.addr == Some(addr));
            if let Some(pos) = existing {
                let mut listener = current.swap_remove(pos);
                listener.state.address = want.address;
                listener.state.interface = want.interface;
                listener.state.plain = want.plain;
                listener.plain.store(want.plain, Ordering::Relaxed);
                keep.push(listener);
                continue;
            }
            if service == Service::Component && plan.component_plain && !want.plain {
                log::warn!("component: TLS stays on for {addr}: plain TCP is only allowed on loopback addresses");
            }
            keep.push(self.bind(want, addr).await);
        }
        drop(current);
        let mut state = self.state();
        state.listeners = keep;
        state.applied = wanted;
    }

    async fn bind(&self, want: WantedListener, addr: SocketAddr) -> Listener {
        let WantedListener {
            service,
            address,
            interface,
            plain,
            ..
        } = want;
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
                        interface,
                        plain,
                        bound: Some(bound),
                        error: None,
                        waiting: None,
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
                        interface,
                        plain,
                        bound: None,
                        error: Some(e.to_string()),
                        waiting: None,
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
        let (listeners, poller) = {
            let mut state = self.state();
            (std::mem::take(&mut state.listeners), state.interface_poller.take())
        };
        if let Some(poller) = poller {
            poller.abort();
        }
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

/// Re-read the interfaces' addresses every `period` while the server lives.
async fn poll_interfaces(server: std::sync::Weak<Server>, period: std::time::Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        server.refresh_interfaces().await;
    }
}

/// One listener the configuration asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WantedListener {
    service: Service,
    /// For status: the entry as configured (clients), with the component port (components).
    address: String,
    interface: Option<String>,
    target: Target,
    plain: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Bind(SocketAddr),
    /// The entry's interface has no IPv4 address yet.
    Waiting(String),
    /// The entry cannot listen (unparsable, no such interface).
    Refused(String),
}

/// Clients on each listen entry; Call Bridges on the same IP addresses at the component port
/// (unless it is 0). An interface entry stands for each of its IPv4 addresses. Plain TCP for
/// components only where asked for and on loopback.
fn wanted_listeners(plan: &ListenPlan, interfaces: &InterfaceAddresses) -> Vec<WantedListener> {
    let mut wanted = Vec::new();
    for entry in &plan.listen {
        let target = ListenTarget::parse(entry);
        let interface = target.as_ref().ok().and_then(|t| t.interface()).map(str::to_owned);
        let ips: Result<Vec<IpAddr>, Target> = match &target {
            Err(e) => Err(Target::Refused(e.to_string())),
            Ok(target) => target.ips(interfaces).map_err(|unresolved| match unresolved {
                Unresolved::NoAddress(_) => Target::Waiting(unresolved.to_string()),
                Unresolved::NoInterface(_) => Target::Refused(unresolved.to_string()),
            }),
        };
        let mut push = |service: Service, address: String, port: u16, plain_asked: bool| match &ips {
            Ok(ips) => wanted.extend(ips.iter().map(|ip| WantedListener {
                service,
                address: address.clone(),
                interface: interface.clone(),
                target: Target::Bind(SocketAddr::new(*ip, port)),
                plain: plain_asked && ip.is_loopback(),
            })),
            Err(target) => wanted.push(WantedListener {
                service,
                address,
                interface: interface.clone(),
                target: target.clone(),
                plain: false,
            }),
        };
        let client_port = target.as_ref().ok().and_then(|t| t.port).unwrap_or(DEFAULT_C2S_PORT);
        push(Service::Client, entry.clone(), client_port, false);
        if plan.component_port == 0 {
            continue;
        }
        let component_address = match &target {
            Ok(target) => ListenTarget {
                host: target.host.clone(),
                port: Some(plan.component_port),
            }
            .to_string(),
            Err(_) => entry.clone(),
        };
        push(
            Service::Component,
            component_address,
            plan.component_port,
            plan.component_plain,
        );
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(listen: &[&str], component_port: u16, component_plain: bool) -> ListenPlan {
        ListenPlan {
            listen: listen.iter().map(|a| a.to_string()).collect(),
            component_port,
            component_plain,
        }
    }

    /// eth0 has two addresses, eth1 none; the board calls eth0 `a`.
    fn interfaces() -> InterfaceAddresses {
        let pair = |name: &str, addr: Option<&str>| (name.to_owned(), addr.map(|a| a.parse().unwrap()));
        InterfaceAddresses::from_pairs([
            pair("lo", Some("127.0.0.1")),
            pair("eth0", Some("192.0.2.7")),
            pair("eth0", Some("192.0.2.8")),
            pair("eth1", None),
        ])
        .with_board_names(&[sb_store::BoardInterface {
            name: "a".to_owned(),
            kernel: "eth0".to_owned(),
        }])
    }

    fn summary(wanted: &[WantedListener]) -> Vec<(Service, String, bool)> {
        wanted
            .iter()
            .map(|w| {
                let target = match &w.target {
                    Target::Bind(addr) => addr.to_string(),
                    Target::Waiting(reason) => format!("waiting: {reason}"),
                    Target::Refused(error) => format!("refused: {error}"),
                };
                (w.service, target, w.plain)
            })
            .collect()
    }

    #[test]
    fn components_listen_beside_every_client_address_with_tls_off_only_on_loopback() {
        let none = InterfaceAddresses::default();
        let wanted = wanted_listeners(&plan(&["127.0.0.2:15222", "192.0.2.7", "[::1]"], 5223, true), &none);
        assert_eq!(
            summary(&wanted),
            vec![
                (Service::Client, "127.0.0.2:15222".to_owned(), false),
                (Service::Component, "127.0.0.2:5223".to_owned(), true),
                (Service::Client, "192.0.2.7:5222".to_owned(), false),
                (Service::Component, "192.0.2.7:5223".to_owned(), false),
                (Service::Client, "[::1]:5222".to_owned(), false),
                (Service::Component, "[::1]:5223".to_owned(), true),
            ]
        );
        assert_eq!(wanted[1].address, "127.0.0.2:5223");
        assert_eq!(wanted[5].address, "[::1]:5223");
        let tls_everywhere = wanted_listeners(&plan(&["127.0.0.2"], 5223, false), &none);
        assert!(tls_everywhere.iter().all(|w| !w.plain));
        let no_components = wanted_listeners(&plan(&["127.0.0.2"], 0, false), &none);
        assert_eq!(
            summary(&no_components),
            vec![(Service::Client, "127.0.0.2:5222".to_owned(), false)]
        );
    }

    #[test]
    fn interface_entries_listen_on_each_current_address_or_wait_for_one() {
        let wanted = wanted_listeners(&plan(&["a:15222", "eth1", "lo"], 5223, true), &interfaces());
        assert_eq!(
            summary(&wanted),
            vec![
                (Service::Client, "192.0.2.7:15222".to_owned(), false),
                (Service::Client, "192.0.2.8:15222".to_owned(), false),
                (Service::Component, "192.0.2.7:5223".to_owned(), false),
                (Service::Component, "192.0.2.8:5223".to_owned(), false),
                (
                    Service::Client,
                    "waiting: no IPv4 address on eth1 yet".to_owned(),
                    false
                ),
                (
                    Service::Component,
                    "waiting: no IPv4 address on eth1 yet".to_owned(),
                    false
                ),
                (Service::Client, "127.0.0.1:5222".to_owned(), false),
                (Service::Component, "127.0.0.1:5223".to_owned(), true),
            ]
        );
        let labels: Vec<(&str, Option<&str>)> = wanted
            .iter()
            .map(|w| (w.address.as_str(), w.interface.as_deref()))
            .collect();
        assert_eq!(
            labels,
            [
                ("a:15222", Some("a")),
                ("a:15222", Some("a")),
                ("a:5223", Some("a")),
                ("a:5223", Some("a")),
                ("eth1", Some("eth1")),
                ("eth1:5223", Some("eth1")),
                ("lo", Some("lo")),
                ("lo:5223", Some("lo")),
            ]
        );
    }

    #[test]
    fn unusable_entries_are_refused_with_the_reason() {
        let wanted = wanted_listeners(&plan(&["eth9", "300.1.1.1"], 5223, false), &interfaces());
        let reasons: Vec<String> = summary(&wanted).into_iter().map(|(_, target, _)| target).collect();
        assert_eq!(reasons.len(), 4);
        assert_eq!(reasons[0], "refused: no interface 'eth9'");
        assert_eq!(reasons[1], reasons[0]);
        assert!(
            reasons[2].starts_with("refused: invalid address '300.1.1.1'"),
            "{reasons:?}"
        );
        assert_eq!(wanted[3].address, "300.1.1.1");
    }

    #[test]
    fn an_address_change_elsewhere_leaves_the_wanted_listeners_alone() {
        let listen = plan(&["127.0.0.1", "a"], 5223, false);
        let before = wanted_listeners(&listen, &interfaces());
        let pair = |name: &str, addr: &str| (name.to_owned(), Some(addr.parse().unwrap()));
        let elsewhere = InterfaceAddresses::from_pairs([
            pair("lo", "127.0.0.1"),
            pair("eth0", "192.0.2.7"),
            pair("eth0", "192.0.2.8"),
            pair("eth1", "198.51.100.1"),
        ])
        .with_board_names(&[sb_store::BoardInterface {
            name: "a".to_owned(),
            kernel: "eth0".to_owned(),
        }]);
        assert_eq!(wanted_listeners(&listen, &elsewhere), before);
        let moved = InterfaceAddresses::from_pairs([pair("lo", "127.0.0.1"), pair("eth0", "192.0.2.50")])
            .with_board_names(&[sb_store::BoardInterface {
                name: "a".to_owned(),
                kernel: "eth0".to_owned(),
            }]);
        assert_ne!(wanted_listeners(&listen, &moved), before);
    }
}
