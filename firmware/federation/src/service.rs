//! The running federation subsystem: settings snapshot, listeners, the link table, status.
//!
//! One outgoing link per remote domain carries every one of our domains to it (the first
//! stanza's sender domain is authenticated first, the others are piggybacked). A link's
//! bounded channel is also the queue while it comes up; a full queue is reported to the
//! router, which bounces with `resource-constraint`. Incoming streams are separate tasks.

use crate::dns::Resolver;
use crate::link::{self, LinkHandle};
use crate::policy::{Policy, normalize_domain};
use crate::stream::AuthMethod;
use crate::tls::{TlsSetup, TrustStore};
use sb_listener::tls::TlsIdentity;
use sb_listener::{Acceptor, ListenEntry, ListenSpec, ListenerSet, ListenerStatus, Service, TlsMode};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition};
use sb_server::budget::{Overdrawn, element_bytes};
use sb_server::core::{Core, unix_now};
use sb_server::{DeliveryError, StanzaLink};
use sb_store::{FederationConfig, Secret, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const DEFAULT_S2S_PORT: u16 = 5269;

/// Domains whose last outgoing failure `federation status` keeps.
const MAX_REPORTED_FAILURES: usize = 32;

/// Numbers that tests shorten; the defaults are the product's.
#[derive(Clone, Debug)]
pub struct FederationTuning {
    /// Where the listener binds, on each XMPP listen address.
    pub port: u16,
    /// The port tried on a domain without SRV records.
    pub fallback_port: u16,
    /// Links with no stanza either way for this long are closed (SPEC: 10 minutes).
    pub idle_timeout: Duration,
    /// How long dialback may take before queued stanzas bounce (SPEC: 30 s).
    pub dialback_timeout: Duration,
    pub connect_timeout: Duration,
    /// Stanzas a link queues (while it comes up, or while the socket is slow).
    pub queue_capacity: usize,
    /// Bytes of stanzas one link may hold (queued, or held while a domain pair is being
    /// authenticated), charged to the daemon's budget too: 4 MiB, sixteen stanzas of the
    /// largest size. Beyond it stanzas bounce with `resource-constraint`; a peer that does
    /// not read is dropped by the write timeout.
    pub queue_bytes: usize,
    /// The system's CA bundle; `None` to trust only the admin's bundle.
    pub system_roots: Option<std::path::PathBuf>,
    /// Inbound s2s connections one address may hold at once. A peer needs one per domain
    /// pair plus short-lived verify streams; a flood from one address stops here.
    pub max_connections_per_ip: u32,
}

impl Default for FederationTuning {
    fn default() -> Self {
        FederationTuning {
            port: DEFAULT_S2S_PORT,
            fallback_port: DEFAULT_S2S_PORT,
            idle_timeout: Duration::from_secs(600),
            dialback_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            queue_capacity: 256,
            queue_bytes: 4 * 1024 * 1024,
            system_roots: Some(crate::tls::SYSTEM_ROOTS.into()),
            max_connections_per_ip: 128,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("cannot read the settings: {0}")]
    Store(#[from] sb_store::StoreError),
}

/// The settings every new connection works with; replaced whole on reload.
pub struct Snapshot {
    pub enabled: bool,
    pub config: FederationConfig,
    pub policy: Policy,
    pub resolver: Option<Arc<Resolver>>,
    pub resolver_error: Option<String>,
    /// `None` only if rustls could not build a configuration at all.
    pub tls: Option<TlsSetup>,
    pub tls_error: Option<String>,
    pub max_stanza_bytes: usize,
}

impl Snapshot {
    pub fn secret(&self) -> Secret {
        self.config.dialback_secret.clone().unwrap_or_else(|| Secret::new(""))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// How far a link has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Resolving and connecting (outgoing), or waiting for the stream header (incoming).
    Connecting,
    /// TLS and dialback under way.
    Authenticating,
    /// Stanzas flow.
    Up,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Authenticating => "authenticating",
            LinkState::Up => "up",
        }
    }
}

/// What `federation status` shows about one connection.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    pub id: u64,
    pub direction: Direction,
    /// The remote domain (outgoing: the target; incoming: the authenticated sender, or the
    /// header's `from` until then).
    pub peer_domain: String,
    pub local_domains: Vec<String>,
    pub address: Option<SocketAddr>,
    pub state: LinkState,
    /// Protocol and cipher when TLS is up.
    pub tls: Option<String>,
    pub auth: Option<AuthMethod>,
    pub since_unix: u64,
    pub last_activity: Instant,
}

impl LinkInfo {
    pub fn new(id: u64, direction: Direction, peer_domain: &str) -> LinkInfo {
        LinkInfo {
            id,
            direction,
            peer_domain: peer_domain.to_owned(),
            local_domains: Vec::new(),
            address: None,
            state: LinkState::Connecting,
            tls: None,
            auth: None,
            since_unix: unix_now(),
            last_activity: Instant::now(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FederationStatus {
    pub enabled: bool,
    pub listeners: Vec<ListenerStatus>,
    /// Links with their idle time, outgoing first, then by peer domain.
    pub links: Vec<(LinkInfo, Duration)>,
    pub resolver: String,
    pub problems: Vec<String>,
}

struct State {
    snapshot: Arc<Snapshot>,
    links: HashMap<String, LinkHandle>,
    incoming: HashMap<u64, (Arc<Mutex<LinkInfo>>, Arc<tokio::sync::Notify>)>,
    listeners: ListenerSet,
    /// Why the last outgoing link to a domain failed (unix time, reason), for status; cleared
    /// when a link to it comes up. At most `MAX_REPORTED_FAILURES` domains, newest kept.
    failures: HashMap<String, (u64, String)>,
    /// Follows interface address changes (see [`Federation::interfaces_changed`]).
    interface_watcher: Option<JoinHandle<()>>,
}

pub struct Federation {
    pub(crate) core: Arc<Core>,
    store: Store,
    pub(crate) tuning: FederationTuning,
    state: Mutex<State>,
    lifecycle: tokio::sync::Mutex<()>,
    /// Bumped to close every connection (federation disabled, shutdown).
    stop: watch::Sender<u64>,
    next_id: AtomicU64,
    runtime: tokio::runtime::Handle,
    /// Where accepted servers go (weak, so a listener does not keep the federation alive).
    acceptor: Arc<dyn Acceptor>,
}

/// The router's way into the federation; weak so the router does not keep it alive.
struct RemoteLink(Weak<Federation>);

impl StanzaLink for RemoteLink {
    fn send(&self, stanza: Element) -> Result<(), DeliveryError> {
        match self.0.upgrade() {
            Some(federation) => federation.send_remote(stanza),
            None => Err(DeliveryError::Gone),
        }
    }

    fn describe(&self) -> String {
        "federation".to_owned()
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn disabled_snapshot() -> Snapshot {
    Snapshot {
        enabled: false,
        config: FederationConfig::default(),
        policy: Policy::default(),
        resolver: None,
        resolver_error: None,
        tls: None,
        tls_error: None,
        max_stanza_bytes: 256 * 1024,
    }
}

impl Federation {
    /// Start the federation subsystem for `core` (from `Server::core()`), reading its
    /// settings from `store`; it registers itself as the router's remote link when enabled.
    /// Must be called inside the tokio runtime.
    pub async fn start(core: Arc<Core>, store: Store, tuning: FederationTuning) -> Arc<Federation> {
        let federation = Arc::new_cyclic(|weak: &Weak<Federation>| Federation {
            core,
            store,
            tuning,
            state: Mutex::new(State {
                snapshot: Arc::new(disabled_snapshot()),
                links: HashMap::new(),
                incoming: HashMap::new(),
                listeners: ListenerSet::default(),
                failures: HashMap::new(),
                interface_watcher: None,
            }),
            lifecycle: tokio::sync::Mutex::new(()),
            stop: watch::channel(0).0,
            next_id: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
            acceptor: Arc::new(FederationAcceptor(weak.clone())),
        });
        if let Err(e) = federation.reload().await {
            log::error!("federation: {e}");
        }
        let mut changes = federation.core.interfaces.subscribe();
        let weak = Arc::downgrade(&federation);
        let watcher = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(federation) = weak.upgrade() else {
                    return;
                };
                federation.interfaces_changed().await;
            }
        });
        locked(&federation.state).interface_watcher = Some(watcher);
        federation
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&locked(&self.state).snapshot)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn stop_signal(&self) -> watch::Receiver<u64> {
        self.stop.subscribe()
    }

    /// Our domain and the components' (a stream to any of them is for us).
    pub fn local_domains(&self) -> Vec<String> {
        let mut domains = vec![normalize_domain(&self.core.domain())];
        domains.extend(self.core.router.link_domains().iter().map(|d| normalize_domain(d)));
        domains
    }

    fn build_snapshot(&self) -> Result<Snapshot, FederationError> {
        let config = self.store.federation_config()?;
        let dns = self.store.dns_config()?;
        let xmpp = self.store.xmpp_config()?;
        let (resolver, resolver_error) = match Resolver::new(&dns.nameservers) {
            Ok(r) => (Some(Arc::new(r)), None),
            Err(e) => {
                log::error!("federation: resolver: {e}");
                (None, Some(e.to_string()))
            }
        };
        let certs_dir = self.core.dir.join("certs");
        let bundle = config.trust_bundle.as_ref().map(|b| certs_dir.join(b));
        let trust = TrustStore::load(self.tuning.system_roots.as_deref(), bundle.as_deref());
        let identity = xmpp.tls.as_ref().map(|t| TlsIdentity::load(&certs_dir, t));
        let (identity, mut tls_error) = match identity {
            Some(Ok(identity)) => (Some(identity), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, Some("no TLS identity configured (xmpp certs)".to_owned())),
        };
        let tls = match TlsSetup::new(identity, trust) {
            Ok(tls) => Some(tls),
            Err(e) => {
                tls_error = Some(e.to_string());
                let trust = TrustStore::load(self.tuning.system_roots.as_deref(), bundle.as_deref());
                TlsSetup::new(None, trust).ok()
            }
        };
        if let Some(error) = &tls_error
            && config.enabled
        {
            log::warn!("federation: incoming STARTTLS unavailable: {error}");
        }
        let mut enabled = config.enabled && xmpp.enabled;
        if config.enabled && config.dialback_secret.is_none() {
            log::error!("federation: enabled but no dialback secret is set (federation dialback-secret generate)");
            enabled = false;
        }
        Ok(Snapshot {
            enabled,
            policy: Policy::from_config(&config),
            config,
            resolver,
            resolver_error,
            tls,
            tls_error,
            max_stanza_bytes: xmpp.max_stanza_bytes as usize,
        })
    }

    /// Re-read the settings: start or stop, rebind listeners, rebuild the resolver and TLS,
    /// close links the new policy forbids. Running links keep their TLS and mode.
    pub async fn reload(self: &Arc<Self>) -> Result<(), FederationError> {
        let _lifecycle = self.lifecycle.lock().await;
        let snapshot = Arc::new(self.build_snapshot()?);
        let was_enabled = locked(&self.state).snapshot.enabled;
        locked(&self.state).snapshot = Arc::clone(&snapshot);
        if !snapshot.enabled {
            self.core.router.set_remote_link(None);
            let listeners = std::mem::take(&mut locked(&self.state).listeners);
            if was_enabled || !listeners.is_empty() {
                log::info!("federation disabled: listeners closed, links closing");
            }
            listeners.close().await;
            self.stop.send_modify(|g| *g += 1);
            return Ok(());
        }
        if !was_enabled {
            log::info!(
                "federation enabled: security {}, privacy {}, client certificates {}",
                snapshot.config.security.as_str(),
                snapshot.config.privacy.as_str(),
                if snapshot.config.client_certs {
                    "required"
                } else {
                    "not required"
                }
            );
        }
        let link: Arc<dyn StanzaLink> = Arc::new(RemoteLink(Arc::downgrade(self)));
        self.core.router.set_remote_link(Some(link));
        self.rebind(true).await;
        // Links to domains the new policy forbids end now.
        let handles: Vec<(String, LinkHandle)> = locked(&self.state)
            .links
            .iter()
            .map(|(d, h)| (d.clone(), h.clone()))
            .collect();
        for (domain, handle) in handles {
            if !snapshot.policy.allows(&domain) {
                log::info!("federation: closing the link to {domain}: no longer allowed");
                handle.close.notify_one();
            }
        }
        let incoming: Vec<(String, Arc<tokio::sync::Notify>)> = locked(&self.state)
            .incoming
            .values()
            .map(|(info, close)| (locked(info).peer_domain.clone(), Arc::clone(close)))
            .collect();
        for (domain, close) in incoming {
            if !domain.is_empty() && !snapshot.policy.allows(&domain) {
                log::info!("federation: closing an incoming link from {domain}: no longer allowed");
                close.notify_one();
            }
        }
        Ok(())
    }

    /// An interface gained or lost an address: rebind the listeners of entries naming it.
    async fn interfaces_changed(self: &Arc<Self>) {
        let _lifecycle = self.lifecycle.lock().await;
        if self.core.is_shutting_down() || !self.snapshot().enabled {
            return;
        }
        self.rebind(false).await;
    }

    /// Listen where the XMPP listen entries say, at the s2s port. `retry`: also when nothing
    /// changed (a reload retries failed binds); else only when the entries resolve differently.
    async fn rebind(self: &Arc<Self>, retry: bool) {
        let listen = match self.store.xmpp_config() {
            Ok(config) => config.listen,
            Err(e) => {
                log::error!("federation: cannot read the listen addresses: {e}");
                return;
            }
        };
        let wanted = sb_listener::resolve(
            &server_specs(&ListenEntry::parse_all(&listen), self.tuning.port),
            &self.core.interfaces.current(),
        );
        if !retry && locked(&self.state).listeners.applied() == wanted.as_slice() {
            return;
        }
        let mut listeners = std::mem::take(&mut locked(&self.state).listeners);
        listeners.reconcile(wanted, &self.acceptor).await;
        locked(&self.state).listeners = listeners;
    }

    /// The addresses the s2s listener is bound to (tests bind port 0 and read it here).
    pub fn listening_on(&self) -> Vec<SocketAddr> {
        locked(&self.state).listeners.bound()
    }

    /// Stop listening and close every link (an orderly shutdown of the daemon also closes
    /// them through the core's stop signal).
    pub async fn shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        self.core.router.set_remote_link(None);
        let (listeners, watcher) = {
            let mut state = locked(&self.state);
            (std::mem::take(&mut state.listeners), state.interface_watcher.take())
        };
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        listeners.close().await;
        self.stop.send_modify(|g| *g += 1);
    }

    /// Hand a stanza from the router to the link for its domain, creating the link when
    /// there is none.
    pub(crate) fn send_remote(self: &Arc<Self>, stanza: Element) -> Result<(), DeliveryError> {
        let snapshot = self.snapshot();
        if !snapshot.enabled {
            return Err(DeliveryError::Gone);
        }
        let Some(domain) = stanza
            .attr("to")
            .and_then(|to| Jid::parse(to).ok())
            .map(|to| normalize_domain(to.domain()))
        else {
            return Err(DeliveryError::Gone);
        };
        let decision = snapshot.policy.decide(&domain);
        if !decision.allowed() {
            log::info!("federation: not sending to {domain}: {}", decision.describe());
            self.spawn_bounce(
                stanza,
                StanzaError::with_text(
                    StanzaErrorCondition::NotAllowed,
                    format!("federation with {domain} is not allowed by this server's policy"),
                ),
            );
            return Ok(());
        }
        let mut stanza = stanza;
        for _ in 0..2 {
            let handle = {
                let mut state = locked(&self.state);
                state
                    .links
                    .entry(domain.clone())
                    .or_insert_with(|| link::spawn(self, &domain))
                    .clone()
            };
            let bytes = element_bytes(&stanza);
            if let Err(over) = handle.budget.charge(bytes) {
                log::debug!("federation: not queueing for {domain}: {over}");
                // An established link over its own budget has a peer that does not read:
                // close it (its queue starts a new link or bounces), as a client's would be.
                if over == Overdrawn::Queue && locked(&handle.info).state == LinkState::Up {
                    log::warn!(
                        "federation: {} bytes wait for {domain}, which does not read; closing the link",
                        handle.budget.queued()
                    );
                    handle.close.notify_one();
                }
                return Err(DeliveryError::QueueFull);
            }
            let sent = handle.tx.try_send(stanza);
            if sent.is_err() {
                handle.budget.release(bytes);
            }
            match sent {
                Ok(()) => return Ok(()),
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => return Err(DeliveryError::QueueFull),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(back)) => {
                    // The link ended between the lookup and the send: start a new one.
                    self.forget_link(&domain, handle.id);
                    stanza = back;
                }
            }
        }
        Err(DeliveryError::Gone)
    }

    pub(crate) fn spawn_bounce(&self, stanza: Element, error: StanzaError) {
        let core = Arc::clone(&self.core);
        self.runtime.spawn(async move { core.bounce(&stanza, error).await });
    }

    /// An outgoing link to `domain` could not be established: keep the reason for status.
    pub(crate) fn record_failure(&self, domain: &str, reason: String) {
        let mut state = locked(&self.state);
        if state.failures.len() >= MAX_REPORTED_FAILURES && !state.failures.contains_key(domain) {
            let oldest = state
                .failures
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(d, _)| d.clone());
            if let Some(oldest) = oldest {
                state.failures.remove(&oldest);
            }
        }
        state.failures.insert(domain.to_owned(), (unix_now(), reason));
    }

    /// An outgoing link to `domain` came up: its last failure is history.
    pub(crate) fn clear_failure(&self, domain: &str) {
        locked(&self.state).failures.remove(domain);
    }

    /// Remove the link for `domain` if it is still link `id`.
    pub(crate) fn forget_link(&self, domain: &str, id: u64) {
        let mut state = locked(&self.state);
        if state.links.get(domain).is_some_and(|h| h.id == id) {
            state.links.remove(domain);
        }
    }

    pub(crate) fn register_incoming(&self, info: Arc<Mutex<LinkInfo>>, close: Arc<tokio::sync::Notify>) {
        let id = locked(&info).id;
        locked(&self.state).incoming.insert(id, (info, close));
    }

    pub(crate) fn unregister_incoming(&self, id: u64) {
        locked(&self.state).incoming.remove(&id);
    }

    pub fn status(&self) -> FederationStatus {
        let state = locked(&self.state);
        let now = Instant::now();
        let mut links: Vec<(LinkInfo, Duration)> = state
            .links
            .values()
            .map(|h| locked(&h.info).clone())
            .chain(state.incoming.values().map(|(i, _)| locked(i).clone()))
            .map(|info| {
                let idle = now.saturating_duration_since(info.last_activity);
                (info, idle)
            })
            .collect();
        links.sort_by(|(a, _), (b, _)| {
            (a.direction != Direction::Outgoing, &a.peer_domain, a.id).cmp(&(
                b.direction != Direction::Outgoing,
                &b.peer_domain,
                b.id,
            ))
        });
        let snapshot = &state.snapshot;
        let mut problems = Vec::new();
        if snapshot.config.enabled && snapshot.config.dialback_secret.is_none() {
            problems.push("no dialback secret set (federation dialback-secret generate)".to_owned());
        }
        if snapshot.enabled {
            if let Some(error) = &snapshot.tls_error {
                problems.push(format!("incoming STARTTLS unavailable: {error}"));
            }
            if let Some(error) = &snapshot.resolver_error {
                problems.push(format!("resolver: {error}"));
            }
            for listener in state.listeners.status() {
                if let Some(error) = &listener.error {
                    problems.push(format!("listener {}: {error}", listener.label()));
                }
            }
            let mut failures: Vec<_> = state.failures.iter().collect();
            failures.sort();
            let now_unix = unix_now();
            for (domain, (at, reason)) in failures {
                problems.push(format!(
                    "link to {} failed {} s ago: {}",
                    sb_proto::log_safe(domain),
                    now_unix.saturating_sub(*at),
                    sb_proto::log_safe(reason)
                ));
            }
        }
        FederationStatus {
            enabled: snapshot.enabled,
            listeners: state.listeners.status(),
            links,
            resolver: snapshot
                .resolver
                .as_ref()
                .map(|r| r.description.clone())
                .unwrap_or_else(|| "(unavailable)".to_owned()),
            problems,
        }
    }
}

const TOO_MANY_CONNECTIONS: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error>\
<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too many connections from this address</text>\
</stream:error></stream:stream>";

/// Hands accepted servers to their stream tasks, within the per-address limit.
struct FederationAcceptor(Weak<Federation>);

impl Acceptor for FederationAcceptor {
    fn admit(&self, service: Service, tcp: TcpStream, peer: SocketAddr, _tls: TlsMode) {
        let Some(federation) = self.0.upgrade() else {
            return;
        };
        if federation.core.is_shutting_down() {
            return;
        }
        let max = federation.tuning.max_connections_per_ip;
        // The server's limiter: s2s shares the global caps with clients and Call Bridges
        // but has its own per-address count (a busy peer needs one per domain).
        let Some(slot) = federation
            .core
            .connection_limiter
            .try_acquire_server(peer.ip(), max)
            .ok()
        else {
            log::warn!("{service}: refusing {peer}: too many connections");
            // Best effort without waiting: nothing slow on the accept path.
            let _ = tcp.try_write(TOO_MANY_CONNECTIONS);
            return;
        };
        tokio::spawn(async move {
            crate::inbound::serve(federation, tcp, peer).await;
            drop(slot);
        });
    }
}

/// Servers on every IP address of the XMPP listen entries (an entry's own port is the
/// client port; s2s always uses `port`).
fn server_specs(entries: &[ListenEntry], port: u16) -> Vec<ListenSpec> {
    entries
        .iter()
        .map(|entry| ListenSpec {
            service: Service::Server,
            entry: entry.clone(),
            label: entry.text.clone(),
            port,
            tls: TlsMode::Starttls,
        })
        .collect()
}

#[cfg(test)]
mod listen_tests {
    use super::*;
    use sb_listener::Wanted;
    use sb_store::InterfaceAddresses;

    #[test]
    fn servers_listen_on_every_address_of_each_entry_at_the_s2s_port() {
        let pair = |name: &str, addr: Option<&str>| (name.to_owned(), addr.map(|a| a.parse().unwrap()));
        let interfaces = InterfaceAddresses::from_pairs([
            pair("eth0", Some("192.0.2.7")),
            pair("eth0", Some("192.0.2.8")),
            pair("eth1", None),
        ]);
        let listen: Vec<String> = ["127.0.0.1:15222", "eth0:5222", "eth1", "eth9"]
            .map(str::to_owned)
            .to_vec();
        let targets: Vec<(String, String)> =
            sb_listener::resolve(&server_specs(&ListenEntry::parse_all(&listen), 5269), &interfaces)
                .into_iter()
                .map(|w: Wanted| {
                    let target = match w.target {
                        sb_listener::Target::Bind(addr) => addr.to_string(),
                        sb_listener::Target::Waiting(reason) => format!("waiting: {reason}"),
                        sb_listener::Target::Refused(error) => format!("refused: {error}"),
                    };
                    (w.label, target)
                })
                .collect();
        let expected = [
            ("127.0.0.1:15222", "127.0.0.1:5269"),
            ("eth0:5222", "192.0.2.7:5269"),
            ("eth0:5222", "192.0.2.8:5269"),
            ("eth1", "waiting: no IPv4 address on eth1 yet"),
            ("eth9", "refused: no interface 'eth9'"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        assert_eq!(targets, expected);
    }
}
