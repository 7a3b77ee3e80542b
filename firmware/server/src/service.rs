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
use crate::tuning::ServerTuning;
use sb_listener::tls::TlsIdentity;
use sb_listener::{Acceptor, ListenEntry, ListenSpec, ListenerSet, ListenerStatus, Service, TlsMode, Wanted};
use sb_proto::{Jid, StreamError, StreamErrorCondition};
use sb_store::{ConfigWriter, LocalWriter, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub const DEFAULT_C2S_PORT: u16 = 5222;

/// Refused component handshakes this recent are reported by `status()`.
const AUTH_FAILURE_REPORT_SECONDS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read the XMPP configuration: {0}")]
    Config(#[from] sb_store::StoreError),
    #[error("invalid domain '{0}'")]
    Domain(String),
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
    /// Clients and Call Bridges, in listen-entry order.
    pub listeners: Vec<ListenerStatus>,
    pub sessions: Vec<SessionStatus>,
    /// Connections open, including ones not yet authenticated.
    pub connections: usize,
    /// Call Bridges connected and authenticated now.
    pub components: Vec<ComponentStatus>,
    /// Component handshakes refused in the last hour, oldest first.
    pub component_auth_failures: Vec<AuthFailure>,
}

#[derive(Default)]
struct ServiceState {
    enabled: bool,
    started: bool,
    tls_error: Option<String>,
    listeners: ListenerSet,
    /// The listen settings last applied: re-resolved when interface addresses change.
    plan: ListenPlan,
    /// Re-reads the interfaces' addresses (see [`Server::refresh_interfaces`]).
    interface_poller: Option<JoinHandle<()>>,
}

pub struct Server {
    core: Arc<Core>,
    state: Mutex<ServiceState>,
    /// Serializes start/reload/shutdown so two reloads cannot interleave their rebinding.
    lifecycle: tokio::sync::Mutex<()>,
    /// Where accepted clients and Call Bridges go.
    acceptor: Arc<dyn Acceptor>,
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
    entries: Vec<ListenEntry>,
    component_port: u16,
    component_plain: bool,
}

impl ListenPlan {
    /// Clients on each listen entry; Call Bridges on the same IP addresses at the component
    /// port (unless it is 0), plain TCP only where asked for and on loopback.
    fn specs(&self) -> Vec<ListenSpec> {
        let mut specs = Vec::new();
        for entry in &self.entries {
            specs.push(ListenSpec {
                service: Service::Client,
                entry: entry.clone(),
                label: entry.text.clone(),
                port: entry.port().unwrap_or(DEFAULT_C2S_PORT),
                tls: TlsMode::Starttls,
            });
            if self.component_port == 0 {
                continue;
            }
            let tls = if self.component_plain {
                TlsMode::Plain
            } else {
                TlsMode::Direct
            };
            specs.push(ListenSpec::at_port(
                Service::Component,
                entry.clone(),
                self.component_port,
                tls,
            ));
        }
        specs
    }

    fn wanted(&self, interfaces: &sb_store::InterfaceAddresses) -> Vec<Wanted> {
        sb_listener::resolve(&self.specs(), interfaces)
    }
}

fn load(store: &Store, dir: &std::path::Path) -> Result<Loaded, ServerError> {
    let config = store.xmpp_config()?;
    // No domain (a reset node, or one joining a cluster before the cluster's state arrived):
    // nothing to serve, so the service stops rather than keep the old domain running.
    let configured = config.is_configured();
    let domain = if configured {
        Jid::from_parts(None, &config.domain, None)
            .map_err(|_| ServerError::Domain(config.domain.clone()))?
            .domain()
            .to_owned()
    } else {
        "localhost".to_owned()
    };
    let (tls, tls_error) = match &config.tls {
        Some(identity) => match TlsIdentity::load(&dir.join("certs"), identity).and_then(|id| id.server_config()) {
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
            entries: ListenEntry::parse_all(&config.listen),
            component_port: config.component_port,
            component_plain: config.component_plain,
        },
        enabled: config.enabled && configured,
        tls_error,
    })
}

impl Server {
    /// A server whose own writes (rosters, offline messages) apply to the local store.
    pub fn new(store: Store, dir: impl Into<PathBuf>, tuning: ServerTuning) -> Arc<Server> {
        let writer: Arc<dyn ConfigWriter> = Arc::new(LocalWriter::new(store.clone()));
        Server::with_writer(store, writer, dir, tuning)
    }

    /// A server whose own writes go through `writer`: the composition root hands every
    /// writer of shared state (admin commands and this server) the same one, so a cluster
    /// replaces it in one place.
    pub fn with_writer(
        store: Store,
        writer: Arc<dyn ConfigWriter>,
        dir: impl Into<PathBuf>,
        tuning: ServerTuning,
    ) -> Arc<Server> {
        let dir = dir.into();
        // Real settings come with start(); until then nothing listens.
        let settings = Settings {
            domain: "localhost".to_owned(),
            tls: None,
            starttls_required: true,
            max_stanza_bytes: 256 * 1024,
            offline_limit: 0,
        };
        let core = Arc::new(Core::new(Storage::with_writer(store, writer), dir, tuning, settings));
        Arc::new(Server {
            acceptor: Arc::new(ServerAcceptor(Arc::clone(&core))),
            core,
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
        let wanted = loaded.plan.wanted(&self.core.interfaces.current());
        self.core.set_settings(loaded.settings);
        let was_enabled = {
            let mut state = self.state();
            state.tls_error = loaded.tls_error;
            std::mem::replace(&mut state.enabled, loaded.enabled)
        };
        if !loaded.enabled {
            let stopped = std::mem::take(&mut self.state().listeners);
            if was_enabled || !stopped.is_empty() {
                // Closed before the admin's reply: a client connecting after `xmpp disable`
                // answered must be refused.
                stopped.close().await;
                log::info!("XMPP service disabled: listeners closed, sessions ended");
                self.core.stop_all_connections();
            }
            return;
        }
        self.state().plan = loaded.plan;
        self.reconcile(wanted).await;
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
        let (enabled, wanted, unchanged) = {
            let state = self.state();
            let wanted = state.plan.wanted(&self.core.interfaces.current());
            let unchanged = state.listeners.applied() == wanted.as_slice();
            (state.enabled, wanted, unchanged)
        };
        if !enabled || unchanged {
            return;
        }
        log::info!("interface addresses changed: updating the listeners");
        self.reconcile(wanted).await;
    }

    /// Make the listeners what `wanted` says (see [`ListenerSet::reconcile`]). The set is
    /// out of the state while sockets close and bind; `lifecycle` keeps others out meanwhile.
    async fn reconcile(&self, wanted: Vec<Wanted>) {
        let mut listeners = std::mem::take(&mut self.state().listeners);
        listeners.reconcile(wanted, &self.acceptor).await;
        self.state().listeners = listeners;
    }

    pub fn status(&self) -> ServerStatus {
        let settings = self.core.settings();
        let state = self.state();
        let listeners = state.listeners.status();
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

    /// End this node's sessions of accounts the store no longer has (see
    /// `Reaction::EndSessionsWithoutAccount`). A store that cannot answer ends nothing.
    pub fn kick_users_without_account(&self) -> usize {
        let store = self.core.storage.store();
        self.core
            .router
            .local_users()
            .into_iter()
            .filter(|user| matches!(store.user_exists(user), Ok(false)))
            .map(|user| self.kick_user(&user))
            .sum()
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
        listeners.close().await;
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

/// What a client refused at the door reads before the socket closes: `policy-violation` for
/// its own address's excess, `resource-constraint` when the server as a whole is full.
fn too_many_connections(refusal: crate::limits::Refusal) -> String {
    let condition = match refusal {
        crate::limits::Refusal::PerAddress => "policy-violation",
        crate::limits::Refusal::PreAuthTotal | crate::limits::Refusal::Total => "resource-constraint",
    };
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error>\
<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>{refusal}</text>\
</stream:error></stream:stream>"
    )
}

/// Hands accepted clients and Call Bridges to their connection tasks.
struct ServerAcceptor(Arc<Core>);

impl Acceptor for ServerAcceptor {
    fn admit(&self, service: Service, tcp: TcpStream, peer: SocketAddr, tls: TlsMode) {
        admit(&self.0, tcp, peer, service, tls == TlsMode::Plain);
    }
}

fn admit(core: &Arc<Core>, tcp: TcpStream, peer: SocketAddr, service: Service, plain: bool) {
    if core.is_shutting_down() {
        return;
    }
    let slot = match core.connection_limiter.try_acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            log::warn!("{service}: refusing {peer}: {refusal}");
            if service == Service::Client {
                // Best effort without waiting: nothing slow on the accept path. A component
                // socket expects TLS first, so plain XML would only be noise there.
                let _ = tcp.try_write(too_many_connections(refusal).as_bytes());
            }
            return;
        }
    };
    let tracked = core.connections.track();
    match service {
        Service::Client => {
            tokio::spawn(crate::c2s::serve(Arc::clone(core), tcp, peer, slot, tracked));
        }
        Service::Component => {
            tokio::spawn(component::serve(Arc::clone(core), tcp, peer, !plain, slot, tracked));
        }
        Service::Server | Service::Web | Service::Ssh => {
            log::error!("{service}: {peer} accepted by the XMPP server, which serves clients and Call Bridges only")
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

#[cfg(test)]
mod tests {
    use super::*;
    use sb_store::InterfaceAddresses;

    fn plan(listen: &[&str], component_port: u16, component_plain: bool) -> ListenPlan {
        ListenPlan {
            entries: listen.iter().map(|a| ListenEntry::parse(a)).collect(),
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

    fn summary(wanted: &[Wanted]) -> Vec<(Service, String, bool)> {
        wanted
            .iter()
            .map(|w| {
                let target = match &w.target {
                    sb_listener::Target::Bind(addr) => addr.to_string(),
                    sb_listener::Target::Waiting(reason) => format!("waiting: {reason}"),
                    sb_listener::Target::Refused(error) => format!("refused: {error}"),
                };
                (w.service, target, w.tls == TlsMode::Plain)
            })
            .collect()
    }

    #[test]
    fn components_listen_beside_every_client_address_with_tls_off_only_on_loopback() {
        let none = InterfaceAddresses::default();
        let wanted = plan(&["127.0.0.2:15222", "192.0.2.7", "[::1]"], 5223, true).wanted(&none);
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
        assert_eq!(wanted[1].label, "127.0.0.2:5223");
        assert_eq!(wanted[5].label, "[::1]:5223");
        let tls_everywhere = plan(&["127.0.0.2"], 5223, false).wanted(&none);
        assert!(tls_everywhere.iter().all(|w| w.tls != TlsMode::Plain));
        let no_components = plan(&["127.0.0.2"], 0, false).wanted(&none);
        assert_eq!(
            summary(&no_components),
            vec![(Service::Client, "127.0.0.2:5222".to_owned(), false)]
        );
    }

    #[test]
    fn interface_entries_listen_on_each_current_address_or_wait_for_one() {
        let wanted = plan(&["a:15222", "eth1", "lo"], 5223, true).wanted(&interfaces());
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
            .map(|w| (w.label.as_str(), w.interface.as_deref()))
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
        let wanted = plan(&["eth9", "300.1.1.1"], 5223, false).wanted(&interfaces());
        let reasons: Vec<String> = summary(&wanted).into_iter().map(|(_, target, _)| target).collect();
        assert_eq!(reasons.len(), 4);
        assert_eq!(reasons[0], "refused: no interface 'eth9'");
        assert_eq!(reasons[1], reasons[0]);
        assert!(
            reasons[2].starts_with("refused: invalid address '300.1.1.1'"),
            "{reasons:?}"
        );
        assert_eq!(wanted[3].label, "300.1.1.1");
    }

    #[test]
    fn an_address_change_elsewhere_leaves_the_wanted_listeners_alone() {
        let listen = plan(&["127.0.0.1", "a"], 5223, false);
        let before = listen.wanted(&interfaces());
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
        assert_eq!(listen.wanted(&elsewhere), before);
        let moved = InterfaceAddresses::from_pairs([pair("lo", "127.0.0.1"), pair("eth0", "192.0.2.50")])
            .with_board_names(&[sb_store::BoardInterface {
                name: "a".to_owned(),
                kernel: "eth0".to_owned(),
            }]);
        assert_ne!(listen.wanted(&moved), before);
    }
}
