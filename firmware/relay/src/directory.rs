//! The session and component directory: every node tells every other which sessions and
//! Call Bridge components it holds, and each installs the others' as remote entries in its
//! router, so a stanza goes straight to the node that holds its recipient.
//!
//! - A local bind, unbind or presence change is sent to every reachable peer at once (the
//!   router's observer is called in the order of the changes, and the relay keeps that order
//!   per peer).
//! - A peer that comes up gets a snapshot of this node's sessions and components; it
//!   replaces everything it had from this node. A peer whose message could not be sent is
//!   resynchronized the same way.
//! - A peer that goes down takes its sessions and components with it; this node tells its
//!   own contacts of those sessions that they went unavailable.
//! - A full JID bound on two nodes: the later bind wins (RFC 6120 §7.7.2.2), the older
//!   session is closed with `<conflict/>` on its node; both nodes decide alike from the bind
//!   times carried in the messages.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sb_cluster::{Cluster, RelayError, RelayHandler};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
use sb_server::core::Core;
use sb_server::delivery::may_bounce;
use sb_server::router::{
    DeliveryError, NodeId, NodeLink, Outbound, SessionHandle, SessionId, SessionMeta, SessionObserver, StanzaLink,
};
use tokio::task::JoinHandle;

use crate::protocol::{Message, SessionEntry, parse_stanza, stanza_text};

/// A stanza is routed again at most this often on its way between nodes.
pub const MAX_HOPS: u8 = 3;
/// A stanza that did not reach its node is routed again after this pause: by then a dead
/// node was declared down (its sessions left the router) and the stanza is stored offline,
/// goes to another resource, or reaches the node that came back.
const REROUTE_AFTER: Duration = Duration::from_millis(1500);
/// A stanza from another node waits at most this long for this node's replica to apply what
/// the sender had applied (then it is handled anyway: a lagging replica must not hold
/// traffic up for long).
const CAUSAL_WAIT: Duration = Duration::from_secs(2);
/// Peers whose directory may be stale are sent a snapshot this often.
const RESYNC_EVERY: Duration = Duration::from_millis(500);

tokio::task_local! {
    /// How often the stanza being routed by this task was already routed again.
    static HOPS: u8;
}

fn hops_now() -> u8 {
    HOPS.try_with(|hops| *hops).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The router's name of a cluster node.
pub fn router_node(id: sb_cluster::NodeId) -> NodeId {
    NodeId::new(format!("{id:016x}"))
}

fn cluster_node(node: &NodeId) -> Option<sb_cluster::NodeId> {
    sb_cluster::NodeId::from_str_radix(node.as_str(), 16).ok()
}

/// A session of this node as the directory tells the others.
#[derive(Clone)]
struct LocalSession {
    user: String,
    resource: String,
    bound_at_ms: u64,
    presence: Option<String>,
    priority: i8,
    roster_interested: bool,
}

#[derive(Default)]
struct State {
    /// Peers up (as the relay reported them): directory updates go to these.
    up: HashSet<sb_cluster::NodeId>,
    local: HashMap<SessionId, LocalSession>,
    /// Domains of the components connected to this node.
    components: BTreeSet<String>,
    /// Components of other nodes: domain → the link registered for it.
    remote_components: HashMap<String, Arc<RemoteComponent>>,
    /// Peers whose view of this node may be stale.
    resync: HashSet<sb_cluster::NodeId>,
    /// Stanzas from a node waiting for this replica to catch up, in arrival order; a node
    /// has an entry while its waiter task runs.
    waiting: HashMap<sb_cluster::NodeId, VecDeque<Message>>,
}

/// Routing across the nodes of one cluster. Made with [`Directory::start`], ended with
/// [`Directory::stop`].
pub struct Directory {
    me: sb_cluster::NodeId,
    cluster: Cluster,
    core: Arc<Core>,
    link: Arc<RelayLink>,
    state: Mutex<State>,
    resync_task: Mutex<Option<JoinHandle<()>>>,
}

impl Directory {
    /// Follow `core`'s sessions and components and route across `cluster`.
    pub fn start(cluster: Cluster, core: Arc<Core>) -> Arc<Directory> {
        let directory = Arc::new_cyclic(|weak: &Weak<Directory>| Directory {
            me: cluster.node_id(),
            cluster: cluster.clone(),
            core: Arc::clone(&core),
            link: Arc::new(RelayLink {
                directory: weak.clone(),
            }),
            state: Mutex::new(State::default()),
            resync_task: Mutex::new(None),
        });
        core.router.set_clustered(true);
        core.router
            .set_observer(Some(Arc::clone(&directory) as Arc<dyn SessionObserver>));
        cluster.set_relay_handler(Some(Arc::clone(&directory) as Arc<dyn RelayHandler>));
        let task = tokio::spawn(resync(Arc::downgrade(&directory)));
        *lock(&directory.resync_task) = Some(task);
        directory
    }

    /// Stop following and routing; the other nodes' sessions and components leave this
    /// node's router (their contacts here hear them go).
    pub fn stop(&self) {
        self.cluster.set_relay_handler(None);
        self.core.router.set_observer(None);
        self.core.router.set_clustered(false);
        for member in self.cluster.members().into_iter().filter(|m| !m.me) {
            self.forget_node(member.id, &HashSet::new());
            self.forget_components(member.id, &BTreeSet::new());
        }
        if let Some(task) = lock(&self.resync_task).take() {
            task.abort();
        }
    }

    fn send(&self, to: sb_cluster::NodeId, msg: &Message) -> Result<(), RelayError> {
        self.cluster.relay(to, msg.encode())
    }

    /// Tell every peer that is up; a peer that cannot be told is resynchronized later. A
    /// peer coming up gets a snapshot under the same lock, so it misses nothing.
    fn broadcast(&self, state: &mut State, msg: &Message) {
        if state.up.is_empty() {
            return;
        }
        let bytes = msg.encode();
        let State { up, resync, .. } = state;
        for peer in up.iter() {
            if let Err(e) = self.cluster.relay(*peer, bytes.clone()) {
                log::debug!("relay: directory update to {peer:016x} not queued: {e}");
                resync.insert(*peer);
            }
        }
    }

    fn snapshot(&self, state: &State) -> Message {
        Message::Snapshot {
            sessions: state
                .local
                .iter()
                .map(|(id, s)| SessionEntry {
                    user: s.user.clone(),
                    resource: s.resource.clone(),
                    session: *id,
                    bound_at_ms: s.bound_at_ms,
                    presence: s.presence.clone(),
                    priority: s.priority,
                    roster_interested: s.roster_interested,
                })
                .collect(),
            components: state.components.iter().cloned().collect(),
        }
    }

    /// Send `to` everything this node has (under the state lock, so no update can overtake
    /// it in the peer's queue).
    fn send_snapshot(&self, to: sb_cluster::NodeId) {
        let mut state = lock(&self.state);
        state.up.insert(to);
        let snapshot = self.snapshot(&state);
        match self.send(to, &snapshot) {
            Ok(()) => {
                state.resync.remove(&to);
            }
            Err(e) => {
                log::debug!("relay: snapshot to {to:016x} not queued: {e}");
                state.resync.insert(to);
            }
        }
    }

    fn domain(&self) -> String {
        self.core.domain()
    }

    /// Install (or refresh) a session of node `from`.
    fn install(&self, from: sb_cluster::NodeId, entry: SessionEntry) {
        let node = router_node(from);
        let router = &self.core.router;
        let current = router.resource(&entry.user, &entry.resource);
        let already = current
            .as_ref()
            .is_some_and(|view| view.handle.is_session(Some(&node), entry.session));
        if !already {
            if let Some(view) = &current
                && view.handle.is_local()
            {
                let ours = lock(&self.state).local.get(&view.handle.id()).map(|s| s.bound_at_ms);
                // The later bind wins; on a tie the higher node id, the same on both nodes.
                if let Some(ours) = ours
                    && (ours, self.me) > (entry.bound_at_ms, from)
                {
                    log::debug!(
                        "relay: {}/{} bound here after node {from:016x}; keeping ours",
                        entry.user,
                        entry.resource
                    );
                    return;
                }
            }
            let handle =
                SessionHandle::remote(entry.session, node.clone(), Arc::clone(&self.link) as Arc<dyn NodeLink>);
            let meta = SessionMeta {
                peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                since_unix: entry.bound_at_ms / 1000,
                tls: true,
            };
            if let Some(replaced) = router.bind(&entry.user, &entry.resource, handle, meta)
                && replaced.handle.is_local()
            {
                log::info!(
                    "relay: {}/{} bound again on node {from:016x}; closing the session here with <conflict/>",
                    entry.user,
                    entry.resource
                );
                replaced.handle.close(StreamError::with_text(
                    StreamErrorCondition::Conflict,
                    "replaced by a new session on another node",
                ));
                self.announce_gone(entry.user.clone(), entry.resource.clone(), replaced.presence);
            }
        }
        self.set_presence(
            &node,
            &entry.user,
            &entry.resource,
            entry.session,
            entry.presence,
            entry.priority,
        );
        if entry.roster_interested {
            router.set_remote_roster_interested(&entry.user, &entry.resource, &node, entry.session);
        }
    }

    fn set_presence(
        &self,
        node: &NodeId,
        user: &str,
        resource: &str,
        session: SessionId,
        presence: Option<String>,
        priority: i8,
    ) {
        let presence = match presence.map(|text| parse_stanza(text.as_bytes())) {
            None => None,
            Some(Ok(element)) => Some((Arc::new(element), priority)),
            Some(Err(e)) => {
                log::warn!("relay: presence of {user}/{resource} from {node} unreadable: {e}");
                return;
            }
        };
        self.core
            .router
            .set_remote_presence(user, resource, node, session, presence);
    }

    /// Tell this node's side (contacts, the account's other resources) that `user/resource`
    /// went away, when it was available.
    fn announce_gone(&self, user: String, resource: String, presence: Option<Arc<Element>>) {
        if presence.is_none() {
            return;
        }
        let Ok(full) = Jid::parse(&format!("{user}@{}/{resource}", self.domain())) else {
            return;
        };
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            sb_server::presence::session_replaced(&core, &user, &full, presence).await;
        });
    }

    /// Forget every session and component of `from` (it went down, or sent a snapshot).
    fn forget_node(&self, from: sb_cluster::NodeId, keep: &HashSet<(String, String, SessionId)>) {
        let node = router_node(from);
        let router = &self.core.router;
        let mut gone = Vec::new();
        for (user, resource, id) in router.node_sessions(&node) {
            if keep.contains(&(user.clone(), resource.clone(), id)) {
                continue;
            }
            if let Some(unbound) = router.unbind_remote(&user, &resource, &node, id)
                && unbound.presence.is_some()
            {
                gone.push((user, resource));
            }
        }
        if gone.is_empty() {
            return;
        }
        // Contacts on other domains hear it from one node: the lowest-numbered one still up.
        let remote_domains = self
            .cluster
            .members()
            .iter()
            .filter(|m| m.reachable && m.id != from)
            .map(|m| m.id)
            .min()
            == Some(self.me);
        let domain = self.domain();
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            for (user, resource) in gone {
                if let Ok(full) = Jid::parse(&format!("{user}@{domain}/{resource}")) {
                    sb_server::presence::remote_session_gone(&core, &user, &full, remote_domains).await;
                }
            }
        });
    }

    fn forget_components(&self, from: sb_cluster::NodeId, keep: &BTreeSet<String>) {
        let gone: Vec<(String, Arc<RemoteComponent>)> = {
            let mut state = lock(&self.state);
            let domains: Vec<String> = state
                .remote_components
                .iter()
                .filter(|(domain, link)| link.node == from && !keep.contains(*domain))
                .map(|(domain, _)| domain.clone())
                .collect();
            domains
                .into_iter()
                .filter_map(|d| state.remote_components.remove(&d).map(|l| (d, l)))
                .collect()
        };
        for (domain, link) in gone {
            let link: Arc<dyn StanzaLink> = link;
            self.core.router.unregister_link(&domain, &link);
        }
    }

    fn component_up(&self, from: sb_cluster::NodeId, domain: String) {
        let link = Arc::new(RemoteComponent {
            domain: domain.clone(),
            node: from,
            directory: self.link.directory.clone(),
        });
        let old = lock(&self.state)
            .remote_components
            .insert(domain.clone(), Arc::clone(&link));
        if let Some(old) = old {
            let old: Arc<dyn StanzaLink> = old;
            self.core.router.unregister_link(&domain, &old);
        }
        if !self.core.router.register_remote_link(&domain, link) {
            log::debug!("relay: component {domain} of node {from:016x} is connected here too; ours serves it");
        }
    }

    fn handle(&self, from: sb_cluster::NodeId, msg: Message) {
        match msg {
            Message::Bound(entry) => self.install(from, entry),
            Message::Unbound {
                user,
                resource,
                session,
            } => {
                self.core
                    .router
                    .unbind_remote(&user, &resource, &router_node(from), session);
            }
            Message::Presence {
                user,
                resource,
                session,
                presence,
                priority,
            } => self.set_presence(&router_node(from), &user, &resource, session, presence, priority),
            Message::RosterInterested {
                user,
                resource,
                session,
            } => self
                .core
                .router
                .set_remote_roster_interested(&user, &resource, &router_node(from), session),
            Message::Snapshot { sessions, components } => {
                let keep = sessions
                    .iter()
                    .map(|s| (s.user.clone(), s.resource.clone(), s.session))
                    .collect();
                self.forget_node(from, &keep);
                for entry in sessions {
                    self.install(from, entry);
                }
                let components: BTreeSet<String> = components.into_iter().collect();
                self.forget_components(from, &components);
                for domain in components {
                    let known = lock(&self.state)
                        .remote_components
                        .get(&domain)
                        .is_some_and(|l| l.node == from);
                    if !known {
                        self.component_up(from, domain);
                    }
                }
            }
            Message::ComponentUp { domain } => self.component_up(from, domain),
            Message::ComponentDown { domain } => {
                let mut state = lock(&self.state);
                if state.remote_components.get(&domain).is_some_and(|l| l.node == from)
                    && let Some(link) = state.remote_components.remove(&domain)
                {
                    drop(state);
                    let link: Arc<dyn StanzaLink> = link;
                    self.core.router.unregister_link(&domain, &link);
                }
            }
            msg @ (Message::Deliver { .. } | Message::ToComponent { .. }) => self.in_causal_order(from, msg),
            Message::Close {
                session,
                condition,
                text,
            } => {
                let Some(local) = lock(&self.state).local.get(&session).cloned() else {
                    return;
                };
                if let Some(view) = self.core.router.resource(&local.user, &local.resource)
                    && view.handle.is_session(None, session)
                {
                    let condition =
                        StreamErrorCondition::from_name(&condition).unwrap_or(StreamErrorCondition::Conflict);
                    let error = match text {
                        Some(text) => StreamError::with_text(condition, text),
                        None => StreamError::new(condition),
                    };
                    view.handle.close(error);
                }
            }
        }
    }

    /// Handle a stanza from `from` once this replica applied what `from` had when it sent it,
    /// keeping `from`'s order.
    fn in_causal_order(&self, from: sb_cluster::NodeId, msg: Message) {
        let after = match &msg {
            Message::Deliver { after, .. } | Message::ToComponent { after, .. } => *after,
            _ => None,
        };
        let mut state = lock(&self.state);
        if let Some(queue) = state.waiting.get_mut(&from) {
            queue.push_back(msg);
            return;
        }
        let caught_up = after.is_none_or(|index| self.cluster.applied_index().is_some_and(|applied| applied >= index));
        if caught_up {
            drop(state);
            self.stanza_here(msg);
            return;
        }
        state.waiting.insert(from, VecDeque::from([msg]));
        drop(state);
        let Some(directory) = self.link.directory.upgrade() else {
            return;
        };
        tokio::spawn(async move { directory.drain_waiting(from).await });
    }

    /// Hand over `from`'s waiting stanzas as the replica catches up (or the wait runs out).
    async fn drain_waiting(&self, from: sb_cluster::NodeId) {
        loop {
            let front_after = {
                let mut state = lock(&self.state);
                let Some(queue) = state.waiting.get_mut(&from) else {
                    return;
                };
                match queue.front() {
                    None => {
                        state.waiting.remove(&from);
                        return;
                    }
                    Some(Message::Deliver { after, .. } | Message::ToComponent { after, .. }) => *after,
                    Some(_) => None,
                }
            };
            if let Some(index) = front_after
                && !self.cluster.wait_applied(index, CAUSAL_WAIT).await
            {
                // The replica is stuck (no quorum, cut off from the leader): everything
                // waiting goes now, rather than each stanza waiting in turn.
                log::info!("relay: replica still behind entry {index} of node {from:016x}; delivering anyway");
                let queued = lock(&self.state).waiting.remove(&from).unwrap_or_default();
                for msg in queued {
                    self.stanza_here(msg);
                }
                return;
            }
            let msg = lock(&self.state).waiting.get_mut(&from).and_then(VecDeque::pop_front);
            if let Some(msg) = msg {
                self.stanza_here(msg);
            }
        }
    }

    fn stanza_here(&self, msg: Message) {
        match msg {
            Message::Deliver {
                session, stanza, hops, ..
            } => self.deliver_here(session, stanza, hops),
            Message::ToComponent {
                domain, stanza, hops, ..
            } => self.to_component_here(&domain, stanza, hops),
            _ => {}
        }
    }

    /// A stanza another node routed to session `session` of this node.
    fn deliver_here(&self, session: SessionId, stanza: String, hops: u8) {
        let local = lock(&self.state).local.get(&session).cloned();
        let handle = local
            .and_then(|l| self.core.router.resource(&l.user, &l.resource))
            .map(|view| view.handle)
            .filter(|handle| handle.is_session(None, session));
        if let Some(handle) = handle {
            match handle.send_outbound(Outbound::Raw(stanza.as_bytes().into())) {
                Ok(()) => return,
                Err(DeliveryError::QueueFull) => {
                    self.bounce_text(&stanza, StanzaErrorCondition::ResourceConstraint);
                    return;
                }
                Err(DeliveryError::Gone) => {}
            }
        }
        // The session is gone here: the usual rules for a local account decide (another
        // resource, offline storage, a bounce).
        self.route_again(stanza, hops, Duration::ZERO);
    }

    fn to_component_here(&self, domain: &str, stanza: String, hops: u8) {
        if let Some(link) = self.core.router.link(domain)
            && link.node().is_none()
        {
            match parse_stanza(stanza.as_bytes()) {
                Ok(element) => {
                    let copy = may_bounce(&element).then(|| element.clone());
                    if let Err(e) = link.send(element)
                        && let Some(original) = copy
                    {
                        let condition = match e {
                            DeliveryError::QueueFull => StanzaErrorCondition::ResourceConstraint,
                            DeliveryError::Gone => StanzaErrorCondition::ServiceUnavailable,
                        };
                        self.bounce(original, condition);
                    }
                }
                Err(e) => log::warn!("relay: a stanza for {domain} from another node is unreadable: {e}"),
            }
            return;
        }
        self.route_again(stanza, hops, Duration::ZERO);
    }

    fn bounce(&self, stanza: Element, condition: StanzaErrorCondition) {
        let core = Arc::clone(&self.core);
        tokio::spawn(async move { core.bounce(&stanza, StanzaError::new(condition)).await });
    }

    fn bounce_text(&self, stanza: &str, condition: StanzaErrorCondition) {
        match parse_stanza(stanza.as_bytes()) {
            Ok(element) => self.bounce(element, condition),
            Err(e) => log::warn!("relay: cannot bounce an unreadable stanza: {e}"),
        }
    }

    /// Route `stanza` once more on this node, after `after`; past [`MAX_HOPS`] it is bounced.
    fn route_again(&self, stanza: String, hops: u8, after: Duration) {
        let element = match parse_stanza(stanza.as_bytes()) {
            Ok(element) => element,
            Err(e) => {
                log::warn!("relay: an unreadable stanza could not be routed again: {e}");
                return;
            }
        };
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            if hops >= MAX_HOPS {
                core.bounce(&element, StanzaError::new(StanzaErrorCondition::RecipientUnavailable))
                    .await;
                return;
            }
            HOPS.scope(hops + 1, core.route(element)).await;
        });
    }

    /// A stanza for session `session` of `node`: queue it, or route it again later when the
    /// node cannot be reached now.
    fn relay_stanza(&self, to: sb_cluster::NodeId, msg: Message) -> Result<(), DeliveryError> {
        match self.send(to, &msg) {
            Ok(()) => Ok(()),
            Err(RelayError::QueueFull(_)) => Err(DeliveryError::QueueFull),
            Err(RelayError::TooLarge { .. }) => Err(DeliveryError::Gone),
            Err(e) => {
                log::debug!("relay: stanza for node {to:016x} not queued ({e}); routing it again later");
                self.undelivered(msg);
                Ok(())
            }
        }
    }

    /// A stanza that did not reach its node: routed again once the directory settled.
    fn undelivered(&self, msg: Message) {
        match msg {
            Message::Deliver { stanza, hops, .. } | Message::ToComponent { stanza, hops, .. } => {
                self.route_again(stanza, hops, REROUTE_AFTER)
            }
            // Directory updates: the peer gets a snapshot when it answers again.
            _ => {}
        }
    }
}

impl SessionObserver for Directory {
    fn bound(&self, user: &str, resource: &str, session: &SessionHandle) {
        if !session.is_local() {
            return;
        }
        let local = LocalSession {
            user: user.to_owned(),
            resource: resource.to_owned(),
            bound_at_ms: now_ms(),
            presence: None,
            priority: 0,
            roster_interested: false,
        };
        let msg = Message::Bound(SessionEntry {
            user: user.to_owned(),
            resource: resource.to_owned(),
            session: session.id(),
            bound_at_ms: local.bound_at_ms,
            presence: None,
            priority: 0,
            roster_interested: false,
        });
        let mut state = lock(&self.state);
        state.local.insert(session.id(), local);
        self.broadcast(&mut state, &msg);
    }

    fn unbound(&self, user: &str, resource: &str, session: &SessionHandle) {
        if !session.is_local() {
            return;
        }
        let mut state = lock(&self.state);
        state.local.remove(&session.id());
        let msg = Message::Unbound {
            user: user.to_owned(),
            resource: resource.to_owned(),
            session: session.id(),
        };
        self.broadcast(&mut state, &msg);
    }

    fn presence_changed(
        &self,
        user: &str,
        resource: &str,
        session: &SessionHandle,
        presence: Option<&Arc<Element>>,
        priority: i8,
    ) {
        if !session.is_local() {
            return;
        }
        let presence = presence.map(|p| stanza_text(p));
        let mut state = lock(&self.state);
        if let Some(local) = state.local.get_mut(&session.id()) {
            local.presence = presence.clone();
            local.priority = priority;
        }
        let msg = Message::Presence {
            user: user.to_owned(),
            resource: resource.to_owned(),
            session: session.id(),
            presence,
            priority,
        };
        self.broadcast(&mut state, &msg);
    }

    fn roster_interested(&self, user: &str, resource: &str, session: &SessionHandle) {
        if !session.is_local() {
            return;
        }
        let mut state = lock(&self.state);
        if let Some(local) = state.local.get_mut(&session.id()) {
            local.roster_interested = true;
        }
        let msg = Message::RosterInterested {
            user: user.to_owned(),
            resource: resource.to_owned(),
            session: session.id(),
        };
        self.broadcast(&mut state, &msg);
    }

    fn link_registered(&self, domain: &str, link: &Arc<dyn StanzaLink>) {
        if link.node().is_some() {
            return;
        }
        let mut state = lock(&self.state);
        state.components.insert(domain.to_owned());
        self.broadcast(
            &mut state,
            &Message::ComponentUp {
                domain: domain.to_owned(),
            },
        );
    }

    fn link_unregistered(&self, domain: &str, link: &Arc<dyn StanzaLink>) {
        if link.node().is_some() {
            return;
        }
        let mut state = lock(&self.state);
        state.components.remove(domain);
        self.broadcast(
            &mut state,
            &Message::ComponentDown {
                domain: domain.to_owned(),
            },
        );
    }
}

impl RelayHandler for Directory {
    fn received(&self, from: sb_cluster::NodeId, payload: Vec<u8>) {
        match Message::decode(&payload) {
            Ok(msg) => self.handle(from, msg),
            Err(e) => log::warn!("relay: from node {from:016x}: {e}"),
        }
    }

    fn peer_up(&self, node: sb_cluster::NodeId) {
        self.send_snapshot(node);
    }

    fn peer_down(&self, node: sb_cluster::NodeId) {
        {
            let mut state = lock(&self.state);
            state.up.remove(&node);
            state.resync.remove(&node);
        }
        log::info!("relay: node {node:016x} is down; its sessions and components leave routing");
        self.forget_node(node, &HashSet::new());
        self.forget_components(node, &BTreeSet::new());
    }

    fn undeliverable(&self, to: sb_cluster::NodeId, payload: Vec<u8>, reason: RelayError) {
        match Message::decode(&payload) {
            Ok(msg @ (Message::Deliver { .. } | Message::ToComponent { .. })) => {
                log::debug!("relay: a stanza for node {to:016x} came back ({reason})");
                self.undelivered(msg);
            }
            Ok(_) => {
                lock(&self.state).resync.insert(to);
            }
            Err(e) => log::warn!("relay: an undeliverable payload is unreadable: {e}"),
        }
    }
}

/// Send snapshots to the peers whose view of this node may be stale.
async fn resync(directory: Weak<Directory>) {
    loop {
        tokio::time::sleep(RESYNC_EVERY).await;
        let Some(directory) = directory.upgrade() else {
            return;
        };
        let stale: Vec<sb_cluster::NodeId> = lock(&directory.state).resync.iter().copied().collect();
        for member in directory.cluster.members() {
            if member.reachable && stale.contains(&member.id) {
                directory.send_snapshot(member.id);
            }
        }
    }
}

/// How this node reaches sessions of other nodes (see [`SessionHandle::Remote`]).
struct RelayLink {
    directory: Weak<Directory>,
}

impl NodeLink for RelayLink {
    fn deliver(&self, node: &NodeId, session: SessionId, item: Outbound) -> Result<(), DeliveryError> {
        let (Some(directory), Some(to)) = (self.directory.upgrade(), cluster_node(node)) else {
            return Err(DeliveryError::Gone);
        };
        let hops = hops_now();
        if hops >= MAX_HOPS {
            return Err(DeliveryError::Gone);
        }
        let stanza = match item {
            Outbound::Stanza(element) => stanza_text(&element),
            Outbound::Raw(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        };
        let after = directory.cluster.applied_index();
        directory.relay_stanza(
            to,
            Message::Deliver {
                session,
                stanza,
                hops,
                after,
            },
        )
    }

    fn close_session(&self, node: &NodeId, session: SessionId, error: StreamError) {
        let (Some(directory), Some(to)) = (self.directory.upgrade(), cluster_node(node)) else {
            return;
        };
        let msg = Message::Close {
            session,
            condition: error.condition.as_str().to_owned(),
            text: error.text,
        };
        if let Err(e) = directory.send(to, &msg) {
            log::info!("relay: cannot ask node {node} to close session {session}: {e}");
        }
    }

    fn describe(&self) -> String {
        "cluster relay".to_owned()
    }
}

/// A component connected to another node.
struct RemoteComponent {
    domain: String,
    node: sb_cluster::NodeId,
    directory: Weak<Directory>,
}

impl StanzaLink for RemoteComponent {
    fn send(&self, stanza: Element) -> Result<(), DeliveryError> {
        let Some(directory) = self.directory.upgrade() else {
            return Err(DeliveryError::Gone);
        };
        let hops = hops_now();
        if hops >= MAX_HOPS {
            return Err(DeliveryError::Gone);
        }
        let msg = Message::ToComponent {
            domain: self.domain.clone(),
            stanza: stanza_text(&stanza),
            hops,
            after: directory.cluster.applied_index(),
        };
        directory.relay_stanza(self.node, msg)
    }

    fn describe(&self) -> String {
        format!("component {} on node {:016x}", self.domain, self.node)
    }

    fn node(&self) -> Option<NodeId> {
        Some(router_node(self.node))
    }
}
