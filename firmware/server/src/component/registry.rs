//! Connected Call Bridges and the handshakes refused lately.
//!
//! A connected bridge is a [`ComponentLink`]: the router's way to it (registered for its
//! address `<name>.<domain>`) and the handle to close it. The registry keeps one link per
//! name and registers it on the router under the same lock, so two connections of one
//! bridge authenticating at once cannot leave the router pointing at the one that lost.

use super::accept::AuthFailureReason;
use crate::router::{DeliveryError, Router, SessionHandle, SessionMeta, StanzaLink};
use ring::digest;
use sb_proto::{Element, StreamError, ns, retarget_namespace};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

/// Refused handshakes remembered for status; the oldest are forgotten first.
pub const MAX_AUTH_FAILURES_KEPT: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One authenticated component connection, as the rest of the server sees it.
pub struct ComponentLink {
    name: String,
    address: String,
    handle: SessionHandle,
    meta: SessionMeta,
    /// SHA-256 of the secret it proved, so a re-keyed bridge can be told apart without
    /// keeping the secret itself around for the connection's lifetime.
    secret_fingerprint: digest::Digest,
}

impl ComponentLink {
    pub fn new(name: String, address: String, handle: SessionHandle, meta: SessionMeta, secret: &str) -> Self {
        ComponentLink {
            name,
            address,
            handle,
            meta,
            secret_fingerprint: digest::digest(&digest::SHA256, secret.as_bytes()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn meta(&self) -> &SessionMeta {
        &self.meta
    }

    /// Whether `secret` is the one this connection authenticated with.
    pub fn authenticated_with(&self, secret: &str) -> bool {
        let candidate = digest::digest(&digest::SHA256, secret.as_bytes());
        sb_proto::sasl::constant_time_eq(candidate.as_ref(), self.secret_fingerprint.as_ref())
    }

    /// Ask the connection to end with `error`.
    pub fn close(&self, error: StreamError) {
        self.handle.close(error);
    }

    fn status(&self) -> ComponentStatus {
        ComponentStatus {
            name: self.name.clone(),
            address: self.address.clone(),
            peer: self.meta.peer,
            since_unix: self.meta.since_unix,
            tls: self.meta.tls,
        }
    }
}

impl StanzaLink for ComponentLink {
    /// Stanzas inside the server are `jabber:client`; on the component's stream they are
    /// `jabber:component:accept` (XEP-0114 §3), so the namespace changes here, at the edge.
    fn send(&self, mut stanza: Element) -> Result<(), DeliveryError> {
        retarget_namespace(&mut stanza, ns::CLIENT, ns::COMPONENT);
        self.handle.send(stanza)
    }

    fn describe(&self) -> String {
        format!("component {} from {}", self.name, self.meta.peer)
    }
}

/// A connected Call Bridge, for `xmpp status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentStatus {
    pub name: String,
    pub address: String,
    pub peer: SocketAddr,
    pub since_unix: u64,
    pub tls: bool,
}

/// A refused component handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    /// The bridge name the component asked for, or the address it used when that was not
    /// `<name>.<domain>`; `-` when it sent no usable header.
    pub name: String,
    pub peer: SocketAddr,
    pub at_unix: u64,
    pub reason: AuthFailureReason,
    /// Refusals folded into this one: same name, peer address and reason; `peer` and
    /// `at_unix` are the latest's.
    pub count: u32,
}

/// Failures are kept per (name, peer address, reason), so a flood of bad handshakes from
/// one source is one entry with a count and cannot push a real failure out.
type FailureKey = (String, IpAddr, AuthFailureReason);

#[derive(Default)]
pub struct ComponentRegistry {
    connected: Mutex<HashMap<String, Arc<ComponentLink>>>,
    failures: Mutex<HashMap<FailureKey, AuthFailure>>,
}

impl ComponentRegistry {
    /// Make `link` the bridge's connection and route its address to it. Returns the link it
    /// replaces, which the caller closes with `<conflict/>`.
    pub fn attach(&self, router: &Router, link: Arc<ComponentLink>) -> Option<Arc<ComponentLink>> {
        let mut connected = lock(&self.connected);
        let for_router: Arc<dyn StanzaLink> = link.clone();
        router.register_link(&link.address, for_router);
        let replaced = connected.insert(link.name.clone(), link);
        drop(connected);
        replaced
    }

    /// Forget `link` if it is still the bridge's connection (a replaced connection must not
    /// remove its successor). Returns whether it was.
    pub fn detach(&self, router: &Router, link: &Arc<ComponentLink>) -> bool {
        let mut connected = lock(&self.connected);
        let current = connected.get(&link.name).is_some_and(|c| Arc::ptr_eq(c, link));
        if current {
            connected.remove(&link.name);
            let for_router: Arc<dyn StanzaLink> = link.clone();
            router.unregister_link(&link.address, &for_router);
        }
        current
    }

    pub fn link(&self, name: &str) -> Option<Arc<ComponentLink>> {
        lock(&self.connected).get(&name.to_ascii_lowercase()).cloned()
    }

    /// Connected bridges, sorted by name.
    pub fn connected(&self) -> Vec<ComponentStatus> {
        let mut out: Vec<ComponentStatus> = lock(&self.connected).values().map(|l| l.status()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Ask every connected bridge to close (the domain changed).
    pub fn close_all(&self, error: &StreamError) {
        let links: Vec<Arc<ComponentLink>> = lock(&self.connected).values().cloned().collect();
        for link in links {
            link.close(error.clone());
        }
    }

    pub fn record_failure(&self, failure: AuthFailure) {
        let mut failures = lock(&self.failures);
        let key = (failure.name.clone(), failure.peer.ip(), failure.reason);
        if let Some(seen) = failures.get_mut(&key) {
            seen.count = seen.count.saturating_add(failure.count.max(1));
            seen.peer = failure.peer;
            seen.at_unix = seen.at_unix.max(failure.at_unix);
            return;
        }
        if failures.len() >= MAX_AUTH_FAILURES_KEPT {
            // The source not heard from for longest goes.
            let stalest = failures
                .iter()
                .min_by_key(|(_, f)| f.at_unix)
                .map(|(key, _)| key.clone());
            if let Some(stalest) = stalest {
                failures.remove(&stalest);
            }
        }
        let count = failure.count.max(1);
        failures.insert(key, AuthFailure { count, ..failure });
    }

    /// Refused handshakes (one entry per source and reason) last seen at or after
    /// `since_unix`, oldest first.
    pub fn failures_since(&self, since_unix: u64) -> Vec<AuthFailure> {
        let mut out: Vec<AuthFailure> = lock(&self.failures)
            .values()
            .filter(|f| f.at_unix >= since_unix)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.at_unix.cmp(&b.at_unix).then_with(|| a.name.cmp(&b.name)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Outbound, SessionControl};
    use tokio::sync::mpsc;

    fn link(router: &Router, name: &str, port: u16) -> (Arc<ComponentLink>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(4);
        let handle = SessionHandle::new(router.next_session_id(), tx, Arc::new(SessionControl::default()));
        let meta = SessionMeta {
            peer: SocketAddr::from(([127, 0, 0, 1], port)),
            since_unix: 1,
            tls: true,
        };
        (
            Arc::new(ComponentLink::new(
                name.into(),
                format!("{name}.example.com"),
                handle,
                meta,
                "secret",
            )),
            rx,
        )
    }

    #[test]
    fn a_newer_connection_replaces_the_older_which_cannot_detach_it() {
        let router = Router::new();
        let registry = ComponentRegistry::default();
        let (first, _rx1) = link(&router, "cb1", 1);
        let (second, mut rx2) = link(&router, "cb1", 2);
        assert!(registry.attach(&router, first.clone()).is_none());
        let replaced = registry.attach(&router, second.clone()).unwrap();
        assert!(Arc::ptr_eq(&replaced, &first));
        assert!(!registry.detach(&router, &first));
        assert_eq!(router.link_domains(), vec!["cb1.example.com".to_owned()]);
        router
            .link("cb1.example.com")
            .unwrap()
            .send(Element::new("message", ns::CLIENT).with_child(Element::new("body", ns::CLIENT)))
            .unwrap();
        let Ok(Outbound::Stanza(received)) = rx2.try_recv() else {
            panic!("the newer link did not get the stanza")
        };
        assert_eq!(received.ns, ns::COMPONENT);
        assert!(received.has_child("body", ns::COMPONENT));
        assert_eq!(registry.connected()[0].peer.port(), 2);
        assert!(registry.detach(&router, &second));
        assert!(router.link_domains().is_empty());
        assert!(registry.connected().is_empty());
    }

    #[test]
    fn remembers_who_authenticated_with_which_secret() {
        let router = Router::new();
        let (link, _rx) = link(&router, "cb1", 1);
        assert!(link.authenticated_with("secret"));
        assert!(!link.authenticated_with("secreT"));
        assert!(!link.describe().contains("secret"));
    }

    fn failure(name: &str, last_octet: u8, at_unix: u64) -> AuthFailure {
        AuthFailure {
            name: name.into(),
            peer: SocketAddr::from(([127, 0, 0, last_octet], 1000 + u16::from(last_octet))),
            at_unix,
            reason: AuthFailureReason::WrongSecret,
            count: 1,
        }
    }

    #[test]
    fn failures_are_bounded_and_filtered_by_age() {
        let registry = ComponentRegistry::default();
        for i in 0..(MAX_AUTH_FAILURES_KEPT as u64 + 10) {
            registry.record_failure(failure(&format!("cb{i}"), 1, i));
        }
        let all = registry.failures_since(0);
        assert_eq!(all.len(), MAX_AUTH_FAILURES_KEPT);
        assert_eq!(all[0].at_unix, 10);
        assert_eq!(registry.failures_since(260).len(), 6);
    }

    #[test]
    fn a_flood_from_one_source_does_not_hide_a_real_failure() {
        let registry = ComponentRegistry::default();
        registry.record_failure(failure("cb1", 9, 100));
        for i in 0..10_000u64 {
            registry.record_failure(failure("cb1", 66, 101 + i));
        }
        let all = registry.failures_since(0);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].peer.ip(), all[0].count), ("127.0.0.9".parse().unwrap(), 1));
        assert_eq!(all[1].count, 10_000);
        assert_eq!(all[1].at_unix, 10_100);
    }
}
