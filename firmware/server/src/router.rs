//! The registry of bound sessions and of links to other domains.
//!
//! The router knows *where* a stanza can go: to a bound resource of a local account (a
//! [`SessionHandle`]: the session's bounded queue on this node, or a [`NodeLink`] to the
//! node it is bound on), or over a [`StanzaLink`] registered for a domain (Call Bridge
//! components, issue 3) or the fallback link for every other domain (federation, issue 4).
//! *What* to do with a stanza (RFC 6121 delivery rules, presence processing) lives in
//! [`crate::delivery`] and the feature modules, which use the router's lookups. A
//! [`SessionObserver`] hears every change of the session table.
//!
//! Stanzas inside the server always carry the `jabber:client` namespace; a link to a stream
//! with another default namespace (`jabber:component:accept`, `jabber:server`) translates at
//! its edge with [`sb_proto::retarget_namespace`].

use sb_proto::domain::comparison_key;
use sb_proto::{Element, StreamError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, mpsc};

pub type SessionId = u64;

/// What a session's writer receives from other tasks.
#[derive(Debug)]
pub enum Outbound {
    /// A stanza for this client; boxed so the queue's slots stay small.
    Stanza(Box<Element>),
    /// Bytes already serialized for a `jabber:client` stream, forwarded as they are.
    /// A boxed slice keeps the queue's slots at two words.
    Raw(Box<[u8]>),
}

/// Why a stanza could not be handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver's queue is full: it is not reading fast enough.
    #[error("recipient queue full")]
    QueueFull,
    /// The receiver went away.
    #[error("recipient gone")]
    Gone,
}

/// Out-of-band requests to a session task: close with a stream error. Also holds the byte
/// budget of the session's queue, which every sender charges (see [`crate::budget`]).
#[derive(Default)]
pub struct SessionControl {
    close: Mutex<Option<StreamError>>,
    notify: Notify,
    budget: crate::budget::QueueBudget,
}

impl SessionControl {
    /// A control block whose queue may hold `budget`'s bytes.
    pub fn with_budget(budget: crate::budget::QueueBudget) -> Self {
        SessionControl {
            budget,
            ..SessionControl::default()
        }
    }

    pub fn budget(&self) -> &crate::budget::QueueBudget {
        &self.budget
    }

    pub fn request_close(&self, error: StreamError) {
        let mut slot = self.close.lock().unwrap_or_else(|p| p.into_inner());
        // The first reason wins: a conflict must not be turned into a shutdown notice.
        if slot.is_none() {
            *slot = Some(error);
        }
        drop(slot);
        // notify_one stores a permit when the task is not waiting right now, so the request
        // cannot be lost between two iterations of its loop.
        self.notify.notify_one();
    }

    pub fn take_close(&self) -> Option<StreamError> {
        self.close.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// A node of the cluster, by the name the cluster knows it under. The single-node appliance
/// never makes one: every session it sees is local.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(name: impl Into<String>) -> Self {
        NodeId(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The way to another node for stanzas to the sessions bound there. Like a session queue,
/// it must not block: it owns its own bounded queue and reports a full one.
pub trait NodeLink: Send + Sync {
    /// Hand `item` to session `session` on `node`. The session is named, not looked up by
    /// the stanza's `to`: the router here already chose it (a bare-JID message goes to the
    /// resources this node picked by priority).
    fn deliver(&self, node: &NodeId, session: SessionId, item: Outbound) -> Result<(), DeliveryError>;
    /// Ask session `session` on `node` to close its stream with `error`.
    fn close_session(&self, node: &NodeId, session: SessionId, error: StreamError);
    /// A short description for logs and status.
    fn describe(&self) -> String;
}

/// The sending side of one session, wherever it runs: cheap to clone, safe to hold after
/// the session ended. Every way of reaching a session (stanzas, raw bytes, close requests)
/// goes through it, so no caller needs to know which node the session lives on.
#[derive(Clone)]
pub enum SessionHandle {
    /// A session of this node: its bounded outbound queue and its control block.
    Local {
        id: SessionId,
        queue: mpsc::Sender<Outbound>,
        control: Arc<SessionControl>,
    },
    /// A session bound on another node of the cluster, reached over `link`. `id` is the
    /// session's id on that node.
    Remote {
        id: SessionId,
        node: NodeId,
        link: Arc<dyn NodeLink>,
    },
}

impl SessionHandle {
    /// A handle for a session of this node.
    pub fn new(id: SessionId, queue: mpsc::Sender<Outbound>, control: Arc<SessionControl>) -> Self {
        SessionHandle::Local { id, queue, control }
    }

    /// A handle for session `id` on another node.
    pub fn remote(id: SessionId, node: NodeId, link: Arc<dyn NodeLink>) -> Self {
        SessionHandle::Remote { id, node, link }
    }

    /// The session's id on the node it lives on (ids of two nodes may collide; see
    /// [`SessionHandle::node`]).
    pub fn id(&self) -> SessionId {
        match self {
            SessionHandle::Local { id, .. } | SessionHandle::Remote { id, .. } => *id,
        }
    }

    /// The node the session lives on; `None` for this node.
    pub fn node(&self) -> Option<&NodeId> {
        match self {
            SessionHandle::Local { .. } => None,
            SessionHandle::Remote { node, .. } => Some(node),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, SessionHandle::Local { .. })
    }

    /// Whether this is session `id` of `node` (`None`: this node).
    pub fn is_session(&self, node: Option<&NodeId>, id: SessionId) -> bool {
        self.id() == id && self.node() == node
    }

    /// Queue a stanza without waiting: a sender is never blocked by a slow receiver
    /// (two sessions waiting on each other's full queues would deadlock).
    pub fn send(&self, stanza: Element) -> Result<(), DeliveryError> {
        self.send_outbound(Outbound::Stanza(Box::new(stanza)))
    }

    pub fn send_outbound(&self, item: Outbound) -> Result<(), DeliveryError> {
        match self {
            SessionHandle::Local { queue, control, .. } => {
                let bytes = crate::budget::outbound_bytes(&item);
                if let Err(over) = control.budget.charge(bytes) {
                    crate::counters::record(crate::counters::Event::QueueDrop);
                    crate::budget::close_slow_reader(control, over);
                    return Err(DeliveryError::QueueFull);
                }
                queue.try_send(item).map_err(|e| {
                    control.budget.release(bytes);
                    match e {
                        mpsc::error::TrySendError::Full(_) => {
                            crate::counters::record(crate::counters::Event::QueueDrop);
                            crate::budget::close_slow_reader(control, crate::budget::Overdrawn::Queue);
                            DeliveryError::QueueFull
                        }
                        mpsc::error::TrySendError::Closed(_) => DeliveryError::Gone,
                    }
                })
            }
            SessionHandle::Remote { id, node, link } => link.deliver(node, *id, item),
        }
    }

    pub fn close(&self, error: StreamError) {
        match self {
            SessionHandle::Local { control, .. } => control.request_close(error),
            SessionHandle::Remote { id, node, link } => link.close_session(node, *id, error),
        }
    }
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionHandle::Local { id, .. } => write!(f, "local session {id}"),
            SessionHandle::Remote { id, node, link } => {
                write!(f, "session {id} on {node} over {}", link.describe())
            }
        }
    }
}

/// Told by the router about every change of the session table, so another node (or a
/// test) can follow it. Calls are made while the router's table is locked, in the order
/// the changes happen: an observer must return quickly and must not call the router.
/// Remote sessions are reported too; an observer that replicates local changes only
/// checks [`SessionHandle::is_local`].
pub trait SessionObserver: Send + Sync {
    /// `user/resource` is now bound to `session`.
    fn bound(&self, _user: &str, _resource: &str, _session: &SessionHandle) {}
    /// `session` no longer holds `user/resource` (it ended, or a newer session replaced it).
    fn unbound(&self, _user: &str, _resource: &str, _session: &SessionHandle) {}
    /// The session's broadcast presence changed; `None` is unavailable.
    fn presence_changed(
        &self,
        _user: &str,
        _resource: &str,
        _session: &SessionHandle,
        _presence: Option<&Arc<Element>>,
        _priority: i8,
    ) {
    }
    /// The session asked for the roster and now gets roster pushes.
    fn roster_interested(&self, _user: &str, _resource: &str, _session: &SessionHandle) {}
    /// Stanzas for `domain` now go over `link` (a component connected, here or, for a link
    /// with a [`StanzaLink::node`], on another node).
    fn link_registered(&self, _domain: &str, _link: &Arc<dyn StanzaLink>) {}
    /// `link` no longer serves `domain`.
    fn link_unregistered(&self, _domain: &str, _link: &Arc<dyn StanzaLink>) {}
}

/// A session of another node that left this node's table with its node (see
/// [`Router::unbind_node`]).
pub struct RemoteUnbound {
    pub user: String,
    pub resource: String,
    pub id: SessionId,
    pub presence: Option<Arc<Element>>,
}

/// Facts about a session for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMeta {
    pub peer: SocketAddr,
    pub since_unix: u64,
    pub tls: bool,
}

/// One bound resource as other tasks see it.
#[derive(Clone)]
pub struct ResourceView {
    pub resource: String,
    pub handle: SessionHandle,
    /// Last available presence the resource broadcast; `None` until initial presence and
    /// after it went unavailable.
    pub presence: Option<Arc<Element>>,
    pub priority: i8,
}

struct ResourceEntry {
    resource: String,
    handle: SessionHandle,
    presence: Option<Arc<Element>>,
    priority: i8,
    roster_interested: bool,
    meta: SessionMeta,
}

impl ResourceEntry {
    fn view(&self) -> ResourceView {
        ResourceView {
            resource: self.resource.clone(),
            handle: self.handle.clone(),
            presence: self.presence.clone(),
            priority: self.priority,
        }
    }
}

/// A session that lost its resource to a newer one.
pub struct Replaced {
    pub handle: SessionHandle,
    pub presence: Option<Arc<Element>>,
}

/// What a session leaves behind when it unbinds.
pub struct Unbound {
    pub presence: Option<Arc<Element>>,
}

/// A way out of this server for stanzas to another domain: a component connection or the
/// federation subsystem. `send` must not block; the link owns its own bounded queue.
pub trait StanzaLink: Send + Sync {
    /// Hand over a stanza (in the internal `jabber:client` namespace). An error makes the
    /// router bounce the stanza to its sender.
    fn send(&self, stanza: Element) -> Result<(), DeliveryError>;
    /// A short description for logs and status (`component cb1 from 127.0.0.1:40000`).
    fn describe(&self) -> String;
    /// The node the link leads to, for a component connected to another node of the
    /// cluster; `None` for a link of this node.
    fn node(&self) -> Option<NodeId> {
        None
    }
}

/// Status line for one bound session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    pub jid: String,
    pub meta: SessionMeta,
}

#[derive(Default)]
pub struct Router {
    /// Keyed by normalized localpart; few resources per account, so a Vec beats a map.
    users: Mutex<HashMap<String, Vec<ResourceEntry>>>,
    links: RwLock<HashMap<String, Arc<dyn StanzaLink>>>,
    remote: RwLock<Option<Arc<dyn StanzaLink>>>,
    next_session_id: AtomicU64,
    observer: RwLock<Option<Arc<dyn SessionObserver>>>,
    clustered: std::sync::atomic::AtomicBool,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    pub fn next_session_id(&self) -> SessionId {
        self.next_session_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Tell `observer` about every later bind, unbind and presence change (`None`: nobody).
    pub fn set_observer(&self, observer: Option<Arc<dyn SessionObserver>>) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = observer;
    }

    fn observer(&self) -> Option<Arc<dyn SessionObserver>> {
        self.observer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Bind `user/resource` to a session. An existing session on that resource is replaced
    /// (RFC 6120 §7.7.2.2: the newer session wins) and returned so the caller can close it.
    pub fn bind(&self, user: &str, resource: &str, handle: SessionHandle, meta: SessionMeta) -> Option<Replaced> {
        let observer = self.observer();
        let mut users = locked(&self.users);
        let entries = users.entry(user.to_owned()).or_default();
        let entry = ResourceEntry {
            resource: resource.to_owned(),
            handle,
            presence: None,
            priority: 0,
            roster_interested: false,
            meta,
        };
        match entries.iter_mut().find(|e| e.resource == resource) {
            Some(slot) => {
                let old = std::mem::replace(slot, entry);
                if let Some(observer) = &observer {
                    observer.unbound(user, resource, &old.handle);
                    observer.bound(user, resource, &slot.handle);
                }
                Some(Replaced {
                    handle: old.handle,
                    presence: old.presence,
                })
            }
            None => {
                if let Some(observer) = &observer {
                    observer.bound(user, resource, &entry.handle);
                }
                entries.push(entry);
                None
            }
        }
    }

    /// Whether `user` has a session bound to `resource`.
    pub fn is_bound(&self, user: &str, resource: &str) -> bool {
        locked(&self.users)
            .get(user)
            .is_some_and(|entries| entries.iter().any(|e| e.resource == resource))
    }

    /// Remove the binding if it still belongs to local session `id` (a replaced session
    /// must not remove its successor).
    pub fn unbind(&self, user: &str, resource: &str, id: SessionId) -> Option<Unbound> {
        self.unbind_session(user, resource, None, id)
    }

    /// Remove the binding if it still belongs to session `id` of `node`: that node
    /// reported the session ended.
    pub fn unbind_remote(&self, user: &str, resource: &str, node: &NodeId, id: SessionId) -> Option<Unbound> {
        self.unbind_session(user, resource, Some(node), id)
    }

    fn unbind_session(&self, user: &str, resource: &str, node: Option<&NodeId>, id: SessionId) -> Option<Unbound> {
        let observer = self.observer();
        let mut users = locked(&self.users);
        let entries = users.get_mut(user)?;
        let pos = entries
            .iter()
            .position(|e| e.resource == resource && e.handle.is_session(node, id))?;
        let entry = entries.swap_remove(pos);
        if entries.is_empty() {
            users.remove(user);
        }
        if let Some(observer) = &observer {
            observer.unbound(user, resource, &entry.handle);
        }
        Some(Unbound {
            presence: entry.presence,
        })
    }

    /// Remove every session of `node` (it went down or was replaced by a snapshot).
    pub fn unbind_node(&self, node: &NodeId) -> Vec<RemoteUnbound> {
        let observer = self.observer();
        let mut users = locked(&self.users);
        let mut gone = Vec::new();
        users.retain(|user, entries| {
            entries.retain(|e| {
                if e.handle.node() != Some(node) {
                    return true;
                }
                gone.push((user.clone(), e.resource.clone(), e.handle.clone(), e.presence.clone()));
                false
            });
            !entries.is_empty()
        });
        gone.into_iter()
            .map(|(user, resource, handle, presence)| {
                if let Some(observer) = &observer {
                    observer.unbound(&user, &resource, &handle);
                }
                RemoteUnbound {
                    user,
                    resource,
                    id: handle.id(),
                    presence,
                }
            })
            .collect()
    }

    /// `(user, resource, session id)` of every session bound on `node`.
    pub fn node_sessions(&self, node: &NodeId) -> Vec<(String, String, SessionId)> {
        locked(&self.users)
            .iter()
            .flat_map(|(user, entries)| {
                entries
                    .iter()
                    .filter(|e| e.handle.node() == Some(node))
                    .map(move |e| (user.clone(), e.resource.clone(), e.handle.id()))
            })
            .collect()
    }

    /// Record the local session's current presence (`None` = unavailable). Returns whether
    /// it was available before, or `None` when the session is no longer bound.
    pub fn set_presence(
        &self,
        user: &str,
        resource: &str,
        id: SessionId,
        presence: Option<(Arc<Element>, i8)>,
    ) -> Option<bool> {
        self.set_session_presence(user, resource, None, id, presence)
    }

    /// Record the presence of session `id` of `node`, as that node reported it.
    pub fn set_remote_presence(
        &self,
        user: &str,
        resource: &str,
        node: &NodeId,
        id: SessionId,
        presence: Option<(Arc<Element>, i8)>,
    ) -> Option<bool> {
        self.set_session_presence(user, resource, Some(node), id, presence)
    }

    fn set_session_presence(
        &self,
        user: &str,
        resource: &str,
        node: Option<&NodeId>,
        id: SessionId,
        presence: Option<(Arc<Element>, i8)>,
    ) -> Option<bool> {
        let observer = self.observer();
        let mut users = locked(&self.users);
        let entry = users
            .get_mut(user)?
            .iter_mut()
            .find(|e| e.resource == resource && e.handle.is_session(node, id))?;
        let was_available = entry.presence.is_some();
        match presence {
            Some((stanza, priority)) => {
                entry.presence = Some(stanza);
                entry.priority = priority;
            }
            None => {
                entry.presence = None;
                entry.priority = 0;
            }
        }
        if let Some(observer) = &observer {
            observer.presence_changed(user, resource, &entry.handle, entry.presence.as_ref(), entry.priority);
        }
        Some(was_available)
    }

    /// Mark the session as one that asked for the roster and so gets roster pushes
    /// (RFC 6121 §2.1.6 "interested resource").
    pub fn set_roster_interested(&self, user: &str, resource: &str, id: SessionId) {
        self.set_session_roster_interested(user, resource, None, id)
    }

    /// Session `id` of `node` asked for the roster there, so roster pushes made here go to
    /// it too.
    pub fn set_remote_roster_interested(&self, user: &str, resource: &str, node: &NodeId, id: SessionId) {
        self.set_session_roster_interested(user, resource, Some(node), id)
    }

    fn set_session_roster_interested(&self, user: &str, resource: &str, node: Option<&NodeId>, id: SessionId) {
        let observer = self.observer();
        let mut users = locked(&self.users);
        if let Some(entry) = users.get_mut(user).and_then(|entries| {
            entries
                .iter_mut()
                .find(|e| e.resource == resource && e.handle.is_session(node, id))
        }) && !entry.roster_interested
        {
            entry.roster_interested = true;
            if let Some(observer) = &observer {
                observer.roster_interested(user, resource, &entry.handle);
            }
        }
    }

    /// This node is part of a cluster: sessions here have contacts on other nodes, which
    /// must hear them go even when this node shuts down.
    pub fn set_clustered(&self, clustered: bool) {
        self.clustered.store(clustered, Ordering::Relaxed);
    }

    pub fn is_clustered(&self) -> bool {
        self.clustered.load(Ordering::Relaxed)
    }

    pub fn resource(&self, user: &str, resource: &str) -> Option<ResourceView> {
        locked(&self.users)
            .get(user)
            .and_then(|entries| entries.iter().find(|e| e.resource == resource))
            .map(ResourceEntry::view)
    }

    /// Every bound resource of `user`, available or not.
    pub fn resources(&self, user: &str) -> Vec<ResourceView> {
        locked(&self.users)
            .get(user)
            .map(|entries| entries.iter().map(ResourceEntry::view).collect())
            .unwrap_or_default()
    }

    /// Resources that sent available presence.
    pub fn available_resources(&self, user: &str) -> Vec<ResourceView> {
        locked(&self.users)
            .get(user)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.presence.is_some())
                    .map(ResourceEntry::view)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resources that get roster pushes, with their resource names.
    pub fn roster_interested(&self, user: &str) -> Vec<(String, SessionHandle)> {
        locked(&self.users)
            .get(user)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.roster_interested)
                    .map(|e| (e.resource.clone(), e.handle.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has_sessions(&self, user: &str) -> bool {
        locked(&self.users).contains_key(user)
    }

    /// Ask every session of `user` to close; returns how many were asked.
    pub fn close_user(&self, user: &str, error: &StreamError) -> usize {
        let handles: Vec<SessionHandle> = locked(&self.users)
            .get(user)
            .map(|entries| entries.iter().map(|e| e.handle.clone()).collect())
            .unwrap_or_default();
        for handle in &handles {
            handle.close(error.clone());
        }
        handles.len()
    }

    /// Users with at least one session on this node.
    pub fn local_users(&self) -> Vec<String> {
        locked(&self.users)
            .iter()
            .filter(|(_, entries)| entries.iter().any(|e| e.handle.is_local()))
            .map(|(user, _)| user.clone())
            .collect()
    }

    /// Ask every session of this node to close (sessions on other nodes stay: this node
    /// going down is not theirs).
    pub fn close_all(&self, error: &StreamError) {
        let handles: Vec<SessionHandle> = locked(&self.users)
            .values()
            .flat_map(|entries| entries.iter().filter(|e| e.handle.is_local()).map(|e| e.handle.clone()))
            .collect();
        for handle in handles {
            handle.close(error.clone());
        }
    }

    pub fn session_count(&self) -> usize {
        locked(&self.users).values().map(Vec::len).sum()
    }

    pub fn sessions(&self, domain: &str) -> Vec<SessionStatus> {
        let users = locked(&self.users);
        let mut out: Vec<SessionStatus> = users
            .iter()
            .flat_map(|(user, entries)| {
                entries.iter().map(move |e| SessionStatus {
                    jid: format!("{user}@{domain}/{}", e.resource),
                    meta: e.meta.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        out
    }

    /// Route stanzas for `domain` (a component's address) over `link`. Returns the link it
    /// replaces, so the caller can close that connection with `<conflict/>`.
    pub fn register_link(&self, domain: &str, link: Arc<dyn StanzaLink>) -> Option<Arc<dyn StanzaLink>> {
        let observer = self.observer();
        let mut links = self.links.write().unwrap_or_else(|p| p.into_inner());
        if let Some(observer) = &observer {
            observer.link_registered(domain, &link);
        }
        links.insert(comparison_key(domain), link)
    }

    /// Route `domain` over `link`, a component connected to another node, unless a component
    /// of this node serves it (a local connection wins). Returns whether it was registered.
    pub fn register_remote_link(&self, domain: &str, link: Arc<dyn StanzaLink>) -> bool {
        let observer = self.observer();
        let mut links = self.links.write().unwrap_or_else(|p| p.into_inner());
        let key = comparison_key(domain);
        if links.get(&key).is_some_and(|current| current.node().is_none()) {
            return false;
        }
        if let Some(observer) = &observer {
            observer.link_registered(domain, &link);
        }
        links.insert(key, link);
        true
    }

    /// Remove the link for `domain` if it is still `link` (a replaced connection must not
    /// remove its successor).
    pub fn unregister_link(&self, domain: &str, link: &Arc<dyn StanzaLink>) -> bool {
        let mut links = self.links.write().unwrap_or_else(|p| p.into_inner());
        let key = comparison_key(domain);
        if links.get(&key).is_some_and(|current| Arc::ptr_eq(current, link)) {
            links.remove(&key);
            if let Some(observer) = self.observer() {
                observer.link_unregistered(domain, link);
            }
            true
        } else {
            false
        }
    }

    pub fn link(&self, domain: &str) -> Option<Arc<dyn StanzaLink>> {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&comparison_key(domain))
            .cloned()
    }

    /// Domains served by registered links, sorted (for disco#items and status).
    pub fn link_domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = self
            .links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        domains.sort();
        domains
    }

    /// The link for every domain that is neither ours nor a registered link's (federation).
    pub fn set_remote_link(&self, link: Option<Arc<dyn StanzaLink>>) {
        *self.remote.write().unwrap_or_else(|p| p.into_inner()) = link;
    }

    pub fn remote_link(&self) -> Option<Arc<dyn StanzaLink>> {
        self.remote.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Stand-ins for the cluster, for tests of the server crate.
#[cfg(test)]
pub(crate) mod test_doubles {
    use super::*;

    /// A node link that records what it was asked to carry.
    #[derive(Default)]
    pub struct RecordingLink {
        pub delivered: Mutex<Vec<(NodeId, SessionId, String)>>,
        pub closed: Mutex<Vec<(NodeId, SessionId)>>,
        pub refuse: bool,
    }

    impl NodeLink for RecordingLink {
        fn deliver(&self, node: &NodeId, session: SessionId, item: Outbound) -> Result<(), DeliveryError> {
            if self.refuse {
                return Err(DeliveryError::Gone);
            }
            let text = match item {
                Outbound::Stanza(e) => e.to_xml(),
                Outbound::Raw(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            };
            locked(&self.delivered).push((node.clone(), session, text));
            Ok(())
        }
        fn close_session(&self, node: &NodeId, session: SessionId, _error: StreamError) {
            locked(&self.closed).push((node.clone(), session));
        }
        fn describe(&self) -> String {
            "test link".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_doubles::RecordingLink;
    use super::*;
    use sb_proto::ns;

    fn handle(router: &Router) -> (SessionHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        (
            SessionHandle::new(router.next_session_id(), tx, Arc::new(SessionControl::default())),
            rx,
        )
    }

    fn meta() -> SessionMeta {
        SessionMeta {
            peer: "127.0.0.1:1".parse().unwrap(),
            since_unix: 0,
            tls: true,
        }
    }

    #[test]
    fn newer_binding_replaces_older_and_older_cannot_unbind_it() {
        let router = Router::new();
        let (a, _ra) = handle(&router);
        let (b, _rb) = handle(&router);
        assert!(router.bind("juliet", "balcony", a.clone(), meta()).is_none());
        let replaced = router.bind("juliet", "balcony", b.clone(), meta()).unwrap();
        assert_eq!(replaced.handle.id(), a.id());
        assert!(router.unbind("juliet", "balcony", a.id()).is_none());
        assert_eq!(router.resource("juliet", "balcony").unwrap().handle.id(), b.id());
        assert!(router.unbind("juliet", "balcony", b.id()).is_some());
        assert!(!router.has_sessions("juliet"));
    }

    #[test]
    fn presence_tracks_availability() {
        let router = Router::new();
        let (a, _ra) = handle(&router);
        router.bind("romeo", "orchard", a.clone(), meta());
        assert!(router.available_resources("romeo").is_empty());
        let p = Arc::new(Element::new("presence", ns::CLIENT));
        assert_eq!(
            router.set_presence("romeo", "orchard", a.id(), Some((p, 5))),
            Some(false)
        );
        assert_eq!(router.available_resources("romeo")[0].priority, 5);
        assert_eq!(router.set_presence("romeo", "orchard", a.id(), None), Some(true));
        assert!(router.available_resources("romeo").is_empty());
        assert_eq!(router.set_presence("romeo", "orchard", a.id() + 100, None), None);
    }

    #[test]
    fn full_queue_is_reported_not_awaited() {
        let router = Router::new();
        let (tx, _rx) = mpsc::channel(1);
        let h = SessionHandle::new(1, tx, Arc::new(SessionControl::default()));
        assert_eq!(h.send(Element::new("message", ns::CLIENT)), Ok(()));
        assert_eq!(
            h.send(Element::new("message", ns::CLIENT)),
            Err(DeliveryError::QueueFull)
        );
        drop(router);
    }

    #[test]
    fn remote_sessions_are_reached_over_their_node_link() {
        let router = Router::new();
        let link = Arc::new(RecordingLink::default());
        let node = NodeId::new("node-b");
        let remote = SessionHandle::remote(7, node.clone(), link.clone());
        router.bind("juliet", "balcony", remote, meta());
        let target = router.resource("juliet", "balcony").unwrap().handle;
        assert!(!target.is_local());
        assert_eq!(target.node(), Some(&node));
        target.send(Element::new("message", ns::CLIENT)).unwrap();
        target
            .send_outbound(Outbound::Raw(b"<message/>".to_vec().into_boxed_slice()))
            .unwrap();
        assert_eq!(
            *locked(&link.delivered),
            vec![
                (node.clone(), 7, "<message xmlns='jabber:client'/>".to_owned()),
                (node.clone(), 7, "<message/>".to_owned())
            ]
        );
        // A remote session is closed through its node, and only when it is asked for by
        // name: this node shutting down leaves it alone.
        router.close_all(&StreamError::new(sb_proto::StreamErrorCondition::SystemShutdown));
        assert!(locked(&link.closed).is_empty());
        router.close_user("juliet", &StreamError::new(sb_proto::StreamErrorCondition::Conflict));
        assert_eq!(*locked(&link.closed), vec![(node.clone(), 7)]);
        let refusing = SessionHandle::remote(
            8,
            node.clone(),
            Arc::new(RecordingLink {
                refuse: true,
                ..RecordingLink::default()
            }),
        );
        assert_eq!(
            refusing.send(Element::new("message", ns::CLIENT)),
            Err(DeliveryError::Gone)
        );
    }

    #[test]
    fn local_operations_never_touch_a_remote_session_with_the_same_id() {
        let router = Router::new();
        let node = NodeId::new("node-b");
        let link: Arc<dyn NodeLink> = Arc::new(RecordingLink::default());
        router.bind(
            "juliet",
            "balcony",
            SessionHandle::remote(1, node.clone(), link),
            meta(),
        );
        assert!(router.unbind("juliet", "balcony", 1).is_none());
        assert_eq!(router.set_presence("juliet", "balcony", 1, None), None);
        assert!(
            router
                .unbind_remote("juliet", "balcony", &NodeId::new("node-c"), 1)
                .is_none()
        );
        assert!(router.unbind_remote("juliet", "balcony", &node, 1).is_some());
        assert!(!router.has_sessions("juliet"));
    }

    #[test]
    fn a_node_going_away_takes_only_its_own_sessions() {
        let router = Router::new();
        let link: Arc<dyn NodeLink> = Arc::new(RecordingLink::default());
        let (b, c) = (NodeId::new("b"), NodeId::new("c"));
        router.bind(
            "juliet",
            "balcony",
            SessionHandle::remote(1, b.clone(), Arc::clone(&link)),
            meta(),
        );
        router.bind(
            "juliet",
            "tomb",
            SessionHandle::remote(2, c.clone(), Arc::clone(&link)),
            meta(),
        );
        router.bind(
            "nurse",
            "kitchen",
            SessionHandle::remote(1, b.clone(), Arc::clone(&link)),
            meta(),
        );
        let (local, _rx) = handle(&router);
        router.bind("romeo", "orchard", local, meta());
        let presence = Arc::new(Element::new("presence", ns::CLIENT));
        router.set_remote_presence("juliet", "balcony", &b, 1, Some((presence, 0)));
        let mut sessions = router.node_sessions(&b);
        sessions.sort();
        assert_eq!(
            sessions,
            vec![
                ("juliet".into(), "balcony".into(), 1),
                ("nurse".into(), "kitchen".into(), 1)
            ]
        );
        let mut gone = router.unbind_node(&b);
        gone.sort_by(|x, y| x.user.cmp(&y.user));
        assert_eq!(gone.len(), 2);
        assert!(gone[0].presence.is_some() && gone[1].presence.is_none());
        assert!(!router.has_sessions("nurse"));
        assert_eq!(router.resources("juliet").len(), 1);
        assert!(router.has_sessions("romeo"));
    }

    struct TestComponent(Option<NodeId>);

    impl StanzaLink for TestComponent {
        fn send(&self, _stanza: Element) -> Result<(), DeliveryError> {
            Ok(())
        }
        fn describe(&self) -> String {
            "test component".into()
        }
        fn node(&self) -> Option<NodeId> {
            self.0.clone()
        }
    }

    #[test]
    fn a_local_component_wins_over_one_of_another_node() {
        let router = Router::new();
        let remote: Arc<dyn StanzaLink> = Arc::new(TestComponent(Some(NodeId::new("b"))));
        let local: Arc<dyn StanzaLink> = Arc::new(TestComponent(None));
        assert!(router.register_remote_link("cb1.example.com", Arc::clone(&remote)));
        assert!(router.link("cb1.example.com").unwrap().node().is_some());
        // A local connection replaces the remote link...
        router.register_link("cb1.example.com", Arc::clone(&local));
        assert!(router.link("cb1.example.com").unwrap().node().is_none());
        // ...and is not replaced by one.
        assert!(!router.register_remote_link("cb1.example.com", Arc::clone(&remote)));
        assert!(router.link("cb1.example.com").unwrap().node().is_none());
    }

    #[derive(Default)]
    struct RecordingObserver {
        events: Mutex<Vec<String>>,
    }

    impl SessionObserver for RecordingObserver {
        fn bound(&self, user: &str, resource: &str, session: &SessionHandle) {
            locked(&self.events).push(format!("bound {user}/{resource} {}", session.id()));
        }
        fn unbound(&self, user: &str, resource: &str, session: &SessionHandle) {
            locked(&self.events).push(format!("unbound {user}/{resource} {}", session.id()));
        }
        fn presence_changed(
            &self,
            user: &str,
            resource: &str,
            session: &SessionHandle,
            presence: Option<&Arc<Element>>,
            priority: i8,
        ) {
            let shown = presence.map(|p| p.to_xml()).unwrap_or_else(|| "unavailable".into());
            locked(&self.events).push(format!(
                "presence {user}/{resource} {} {shown} {priority}",
                session.id()
            ));
        }
    }

    #[test]
    fn observer_hears_binds_unbinds_and_presence_in_order() {
        let router = Router::new();
        let observer = Arc::new(RecordingObserver::default());
        router.set_observer(Some(observer.clone()));
        let (a, _ra) = handle(&router);
        let (b, _rb) = handle(&router);
        router.bind("romeo", "orchard", a.clone(), meta());
        let p = Arc::new(Element::new("presence", ns::CLIENT));
        router.set_presence("romeo", "orchard", a.id(), Some((p, 3)));
        router.set_presence("romeo", "orchard", a.id(), None);
        router.bind("romeo", "orchard", b.clone(), meta());
        // Stale requests from the replaced session change nothing and report nothing.
        router.set_presence("romeo", "orchard", a.id(), None);
        router.unbind("romeo", "orchard", a.id());
        router.unbind("romeo", "orchard", b.id());
        let (a, b) = (a.id(), b.id());
        assert_eq!(
            *locked(&observer.events),
            vec![
                format!("bound romeo/orchard {a}"),
                format!("presence romeo/orchard {a} <presence xmlns='jabber:client'/> 3"),
                format!("presence romeo/orchard {a} unavailable 0"),
                format!("unbound romeo/orchard {a}"),
                format!("bound romeo/orchard {b}"),
                format!("unbound romeo/orchard {b}"),
            ]
        );
        router.set_observer(None);
        router.bind(
            "romeo",
            "orchard",
            SessionHandle::new(99, mpsc::channel(1).0, Arc::default()),
            meta(),
        );
        assert_eq!(locked(&observer.events).len(), 6);
    }
}
