//! Presence (RFC 6121 §3, §4): subscriptions with their full state machine (pending in and
//! out, pre-approval), initial presence with probes, broadcasts, directed presence, and
//! unavailable presence when a session ends.
//!
//! The state transitions are pure functions over [`Contact`] (unit-tested below, after
//! RFC 6121 appendix A); the async functions around them read and write rosters and route.

use crate::core::Core;
use crate::no_local_session::{Missing, NoLocalSession, no_local_session};
use crate::offline;
use crate::roster;
use crate::router::SessionId;
use crate::storage::{Contact, StorageError};
use sb_proto::{Element, Jid, PresenceType, StanzaError, StanzaErrorCondition, SubscriptionType, ns};
use std::sync::Arc;

/// Directed presence targets remembered per session; beyond this the oldest is forgotten
/// (it then gets no unavailable presence when the session ends).
const MAX_DIRECTED: usize = 64;

/// Subscription requests a sending domain may burst before it is throttled.
const SUBSCRIBE_BURST: f64 = 200.0;
/// Requests per second a sending domain regains, up to [`SUBSCRIBE_BURST`].
const SUBSCRIBE_REFILL_PER_SECOND: f64 = 20.0;
/// Sending domains tracked at once; beyond this, domains whose bucket has refilled are
/// forgotten, and if none has, new domains are throttled until some do.
const SUBSCRIBE_DOMAINS: usize = 4096;

/// A token bucket per remote domain or Call Bridge for inbound subscription requests: a
/// flood of requests from one peer is answered with `<resource-constraint/>` instead of
/// costing a store write (and a roster lock) per request. Local accounts are not limited
/// here (they are authenticated, and their rosters' own quotas bound them).
#[derive(Default)]
pub struct SubscriptionLimiter {
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl SubscriptionLimiter {
    /// Take one request's token for `domain`; false when the domain must wait.
    pub fn allow(&self, domain: &str) -> bool {
        let now = std::time::Instant::now();
        // Whole-value updates only: a poisoned lock holds nothing half-written.
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let refilled = |(tokens, since): (f64, std::time::Instant)| {
            (tokens + now.duration_since(since).as_secs_f64() * SUBSCRIBE_REFILL_PER_SECOND).min(SUBSCRIBE_BURST)
        };
        if !buckets.contains_key(domain) && buckets.len() >= SUBSCRIBE_DOMAINS {
            buckets.retain(|_, bucket| refilled(*bucket) < SUBSCRIBE_BURST);
            if buckets.len() >= SUBSCRIBE_DOMAINS {
                return false;
            }
        }
        let bucket = buckets.entry(domain.to_owned()).or_insert((SUBSCRIBE_BURST, now));
        let tokens = refilled(*bucket);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
    }
}

/// What a session remembers about its own presence.
#[derive(Debug, Default)]
pub struct SessionPresence {
    pub available: bool,
    pub priority: i8,
    /// Entities that got directed available presence and must hear about unavailability.
    pub directed: Vec<Jid>,
    /// Offline messages written to the session and not yet acknowledged by the client.
    pub offline_delivery: Option<offline::PendingAck>,
}

/// What to do after applying a subscription stanza to a roster entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// The entry changed: persist and push it.
    pub changed: bool,
    /// Route the stanza on (outbound) or deliver it to the account's resources (inbound).
    pub forward: bool,
    /// Answer the sender with `<presence type='subscribed'/>` on the account's behalf.
    pub auto_subscribed: bool,
    /// Send the account's current presence to the contact (a new `from` subscription).
    pub send_presence: bool,
    /// Send unavailable presence from the account's resources to the contact (`from` lost).
    pub send_unavailable: bool,
}

/// RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2 and §3.4: the user sends `kind` to the contact.
pub fn apply_outbound(contact: &mut Contact, kind: SubscriptionType) -> Effect {
    let mut effect = Effect::default();
    match kind {
        SubscriptionType::Subscribe => {
            effect.forward = true;
            if !contact.subscription.has_to() && !contact.ask_out {
                contact.ask_out = true;
                effect.changed = true;
            }
            if !contact.listed {
                contact.listed = true;
                effect.changed = true;
            }
        }
        SubscriptionType::Unsubscribe => {
            effect.forward = true;
            if contact.subscription.has_to() || contact.ask_out {
                contact.subscription = contact.subscription.with_to(false);
                contact.ask_out = false;
                effect.changed = true;
            }
        }
        SubscriptionType::Subscribed => {
            if contact.pending_in {
                contact.subscription = contact.subscription.with_from(true);
                contact.pending_in = false;
                contact.approved = false;
                contact.listed = true;
                effect = Effect {
                    changed: true,
                    forward: true,
                    send_presence: true,
                    ..Effect::default()
                };
            } else if !contact.subscription.has_from() && !contact.approved {
                // Pre-approval: remember it, tell nobody yet.
                contact.approved = true;
                contact.listed = true;
                effect.changed = true;
            }
        }
        SubscriptionType::Unsubscribed => {
            if contact.subscription.has_from() {
                contact.subscription = contact.subscription.with_from(false);
                contact.pending_in = false;
                contact.approved = false;
                effect = Effect {
                    changed: true,
                    forward: true,
                    send_unavailable: true,
                    ..Effect::default()
                };
            } else if contact.pending_in {
                contact.pending_in = false;
                effect.changed = true;
                effect.forward = true;
            } else if contact.approved {
                contact.approved = false;
                effect.changed = true;
            }
        }
    }
    effect
}

/// RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3: the contact sent `kind` to the user.
pub fn apply_inbound(contact: &mut Contact, kind: SubscriptionType) -> Effect {
    let mut effect = Effect::default();
    match kind {
        SubscriptionType::Subscribe => {
            if contact.subscription.has_from() {
                effect.auto_subscribed = true;
            } else if contact.approved {
                contact.subscription = contact.subscription.with_from(true);
                contact.approved = false;
                contact.pending_in = false;
                contact.listed = true;
                effect = Effect {
                    changed: true,
                    auto_subscribed: true,
                    send_presence: true,
                    ..Effect::default()
                };
            } else {
                if !contact.pending_in {
                    contact.pending_in = true;
                    effect.changed = true;
                }
                effect.forward = true;
            }
        }
        SubscriptionType::Subscribed if contact.ask_out && !contact.subscription.has_to() => {
            contact.subscription = contact.subscription.with_to(true);
            contact.ask_out = false;
            contact.listed = true;
            effect.changed = true;
            effect.forward = true;
        }
        SubscriptionType::Unsubscribe => {
            if contact.subscription.has_from() {
                contact.subscription = contact.subscription.with_from(false);
                contact.pending_in = false;
                contact.approved = false;
                effect = Effect {
                    changed: true,
                    forward: true,
                    send_unavailable: true,
                    ..Effect::default()
                };
            } else if contact.pending_in {
                contact.pending_in = false;
                effect.changed = true;
                effect.forward = true;
            }
        }
        SubscriptionType::Unsubscribed if contact.subscription.has_to() || contact.ask_out => {
            contact.subscription = contact.subscription.with_to(false);
            contact.ask_out = false;
            effect.changed = true;
            effect.forward = true;
        }
        _ => {}
    }
    effect
}

/// `<priority/>` of an available presence (RFC 6121 §4.7.2.3): -128..127, default 0.
pub fn priority_of(presence: &Element) -> Result<i8, StanzaError> {
    match presence.get_child("priority", ns::CLIENT) {
        None => Ok(0),
        Some(p) => p
            .text()
            .trim()
            .parse::<i8>()
            .map_err(|_| StanzaError::with_text(StanzaErrorCondition::BadRequest, "priority must be -128..127")),
    }
}

fn bare_jid(core: &Core, user: &str) -> String {
    format!("{user}@{}", core.domain())
}

fn with_addresses(presence: &Element, from: &str, to: &str) -> Element {
    let mut p = presence.clone();
    p.set_attr("from", from);
    p.set_attr("to", to);
    p
}

fn unavailable(from: &str, to: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", "unavailable")
}

/// Stanzas for the session itself, written straight to its stream (not through its queue,
/// which a long offline backlog could overflow).
#[derive(Default)]
pub struct ForSession {
    pub stanzas: Vec<Element>,
    pub raw: Vec<Vec<u8>>,
}

/// A bound session's presence stanza. `stanza` has `from` stamped with the full JID already.
pub async fn from_client(
    core: &Core,
    state: &mut SessionPresence,
    user: &str,
    full: &Jid,
    session: SessionId,
    mut stanza: Element,
    to: Option<Jid>,
) -> Result<ForSession, StanzaError> {
    match (PresenceType::of(&stanza), to) {
        (Some(PresenceType::Available), None) => {
            stanza.remove_attr("to");
            broadcast_available(core, state, user, full, session, stanza).await
        }
        (Some(PresenceType::Unavailable), None) => {
            stanza.remove_attr("to");
            broadcast_unavailable(core, state, user, full, session, stanza).await;
            Ok(ForSession::default())
        }
        (Some(PresenceType::Available), Some(to)) => {
            if state.available && !state.directed.contains(&to) {
                if state.directed.len() >= MAX_DIRECTED {
                    state.directed.remove(0);
                }
                state.directed.push(to.clone());
            }
            core.route(stanza).await;
            Ok(ForSession::default())
        }
        (Some(PresenceType::Unavailable), Some(to)) => {
            state.directed.retain(|j| j != &to);
            core.route(stanza).await;
            Ok(ForSession::default())
        }
        (Some(PresenceType::Subscription(kind)), Some(to)) => {
            subscription_from_user(core, user, stanza, &to.to_bare(), kind).await;
            Ok(ForSession::default())
        }
        (Some(PresenceType::Probe), Some(to)) => {
            stanza.set_attr("from", bare_jid(core, user));
            stanza.set_attr("to", to.to_bare().to_string());
            core.route(stanza).await;
            Ok(ForSession::default())
        }
        (Some(PresenceType::Error), Some(_)) => {
            core.route(stanza).await;
            Ok(ForSession::default())
        }
        _ => Err(StanzaError::with_text(
            StanzaErrorCondition::BadRequest,
            "unknown presence type or missing 'to'",
        )),
    }
}

async fn broadcast_available(
    core: &Core,
    state: &mut SessionPresence,
    user: &str,
    full: &Jid,
    session: SessionId,
    stanza: Element,
) -> Result<ForSession, StanzaError> {
    let priority = priority_of(&stanza)?;
    let resource = full.resource().unwrap_or_default();
    let shared = Arc::new(stanza);
    let initial = !core
        .router
        .set_presence(user, resource, session, Some((Arc::clone(&shared), priority)))
        .unwrap_or(true);
    state.available = true;
    state.priority = priority;
    let from = full.to_string();
    let bare = bare_jid(core, user);
    let roster = core.storage.roster(user).unwrap_or_else(|e| {
        log::error!("presence: roster of {user}: {e}");
        Vec::new()
    });
    for contact in roster.iter().filter(|c| c.subscription.has_from()) {
        core.route(with_addresses(&shared, &from, &contact.jid)).await;
    }
    let mut for_session = ForSession::default();
    for other in core.router.available_resources(user) {
        if other.handle.is_session(None, session) {
            continue;
        }
        core.send_to_session(&other.handle, with_addresses(&shared, &from, &bare))
            .await;
        if initial && let Some(theirs) = &other.presence {
            let their_full = format!("{bare}/{}", other.resource);
            for_session.stanzas.push(with_addresses(theirs, &their_full, &from));
        }
    }
    if !initial {
        return Ok(for_session);
    }
    for contact in roster.iter().filter(|c| c.subscription.has_to()) {
        let probe = Element::new("presence", ns::CLIENT)
            .with_attr("type", "probe")
            .with_attr("from", bare.clone())
            .with_attr("to", contact.jid.clone());
        core.route(probe).await;
    }
    // RFC 6121 §3.1.3: subscription requests that arrived while offline are shown again.
    for contact in roster.iter().filter(|c| c.pending_in) {
        for_session.stanzas.push(
            Element::new("presence", ns::CLIENT)
                .with_attr("type", SubscriptionType::Subscribe.as_str())
                .with_attr("from", contact.jid.clone())
                .with_attr("to", bare.clone()),
        );
    }
    // XEP-0160: stored messages go to the first resource that can receive bare-JID
    // messages, i.e. one with a non-negative priority (RFC 6121 §8.5.2.1.1).
    if priority >= 0
        && let Some((raw, pending)) = offline::deliver(core, user, &from)
    {
        for_session.raw = raw;
        state.offline_delivery = Some(pending);
    }
    Ok(for_session)
}

async fn broadcast_unavailable(
    core: &Core,
    state: &mut SessionPresence,
    user: &str,
    full: &Jid,
    session: SessionId,
    stanza: Element,
) {
    let resource = full.resource().unwrap_or_default();
    let was_available = core.router.set_presence(user, resource, session, None).unwrap_or(false);
    state.available = false;
    let directed = std::mem::take(&mut state.directed);
    if was_available || !directed.is_empty() {
        announce_unavailable(core, user, full, Some(&stanza), was_available, &directed, Some(session)).await;
    }
}

/// Tell contacts, the account's other resources and directed-presence targets that `full`
/// is gone. `template` keeps the client's `<status/>` when it sent one.
async fn announce_unavailable(
    core: &Core,
    user: &str,
    full: &Jid,
    template: Option<&Element>,
    to_contacts: bool,
    directed: &[Jid],
    skip_session: Option<SessionId>,
) {
    let from = full.to_string();
    let bare = bare_jid(core, user);
    let make = |to: &str| match template {
        Some(t) => with_addresses(t, &from, to),
        None => unavailable(&from, to),
    };
    let mut sent_to: Vec<String> = Vec::new();
    if to_contacts {
        let roster = core.storage.roster(user).unwrap_or_default();
        for contact in roster.iter().filter(|c| c.subscription.has_from()) {
            core.route(make(&contact.jid)).await;
            sent_to.push(contact.jid.clone());
        }
        for other in core.router.available_resources(user) {
            if !skip_session.is_some_and(|id| other.handle.is_session(None, id)) {
                core.send_to_session(&other.handle, make(&bare)).await;
            }
        }
    }
    for target in directed {
        let target_text = target.to_string();
        if !sent_to.contains(&target.to_bare().to_string()) || target.resource().is_some() {
            core.route(make(&target_text)).await;
        }
    }
}

/// A session ended (logout, error, kicked): forget its binding and announce it. Nothing
/// happens when a newer session already took the resource over (and announced the old one).
pub async fn session_ended(core: &Core, user: &str, full: &Jid, session: SessionId, directed: Vec<Jid>) {
    let resource = full.resource().unwrap_or_default();
    let Some(unbound) = core.router.unbind(user, resource, session) else {
        return;
    };
    // At shutdown every local session is closing at once: telling each other is wasted
    // work that would slow the shutdown of a full server (not so in a cluster, whose other
    // nodes hold contacts).
    if core.is_shutting_down()
        && core.router.link_domains().is_empty()
        && core.router.remote_link().is_none()
        && !core.router.is_clustered()
    {
        return;
    }
    let was_available = unbound.presence.is_some();
    if was_available || !directed.is_empty() {
        announce_unavailable(core, user, full, None, was_available, &directed, None).await;
    }
}

/// A newer session took over `full`; announce the old one's departure before the new one
/// can send presence, so contacts never see them in the wrong order.
pub async fn session_replaced(core: &Core, user: &str, full: &Jid, old_presence: Option<Arc<Element>>) {
    if old_presence.is_some() {
        announce_unavailable(core, user, full, None, true, &[], None).await;
    }
}

/// A session of another cluster node is gone without this node having seen it end (that node
/// died, or this node missed its end): tell this node's side only. Every surviving node does
/// the same for its own sessions, so each contact hears it once: the contacts' and the
/// user's own available resources on this node, and the contacts on other domains when
/// `remote_domains` (one node is chosen for those).
pub async fn remote_session_gone(core: &Core, user: &str, full: &Jid, remote_domains: bool) {
    let from = full.to_string();
    let domain = core.domain();
    let roster = core.storage.roster(user).unwrap_or_default();
    for contact in roster.iter().filter(|c| c.subscription.has_from()) {
        let Ok(jid) = Jid::parse(&contact.jid) else {
            continue;
        };
        match jid.node() {
            Some(name) if jid.domain() == domain => {
                for resource in core.router.available_resources(name) {
                    if resource.handle.is_local() {
                        core.send_to_session(&resource.handle, unavailable(&from, &contact.jid))
                            .await;
                    }
                }
            }
            _ if remote_domains => core.route(unavailable(&from, &contact.jid)).await,
            _ => {}
        }
    }
    let bare = bare_jid(core, user);
    for other in core.router.available_resources(user) {
        if other.handle.is_local() {
            core.send_to_session(&other.handle, unavailable(&from, &bare)).await;
        }
    }
}

/// Unavailable presence from every available resource of `user` to `contact` (after the
/// contact lost its subscription to the user).
pub async fn send_unavailable_from_all(core: &Core, user: &str, contact: &Jid) {
    let bare = bare_jid(core, user);
    let to = contact.to_string();
    for resource in core.router.available_resources(user) {
        core.route(unavailable(&format!("{bare}/{}", resource.resource), &to))
            .await;
    }
}

/// Current presence of every available resource of `user` to `to`.
async fn send_current_presence(core: &Core, user: &str, to: &str) {
    let bare = bare_jid(core, user);
    for resource in core.router.available_resources(user) {
        if let Some(presence) = &resource.presence {
            core.route(with_addresses(presence, &format!("{bare}/{}", resource.resource), to))
                .await;
        }
    }
}

/// Outbound subscription processing: the user sent `kind` to `contact`.
async fn subscription_from_user(core: &Core, user: &str, mut stanza: Element, contact: &Jid, kind: SubscriptionType) {
    let mut effect = Effect::default();
    let result = roster::update_contact(core, user, contact, |c| {
        effect = apply_outbound(c, kind);
        effect.changed
    })
    .await;
    if let Err(e) = result {
        return refuse_subscription(core, &stanza, user, e).await;
    }
    if effect.forward {
        // RFC 6121 §3.1.2: subscription stanzas carry bare JIDs both ways.
        stanza.set_attr("from", bare_jid(core, user));
        stanza.set_attr("to", contact.to_string());
        core.route(stanza).await;
    }
    if effect.send_presence {
        send_current_presence(core, user, &contact.to_string()).await;
    }
    if effect.send_unavailable {
        send_unavailable_from_all(core, user, contact).await;
    }
}

/// Presence for a local account from anyone (RFC 6121 §4.3, §4.5, §8.5).
pub async fn inbound(core: &Core, stanza: Element, to: &Jid, user: &str) {
    match PresenceType::of(&stanza) {
        Some(PresenceType::Available | PresenceType::Unavailable | PresenceType::Error) => {
            let targets = match to.resource() {
                Some(resource) => core.router.resource(user, resource).into_iter().collect(),
                None => core.router.available_resources(user),
            };
            if targets.is_empty() {
                let missing = match to.resource() {
                    Some(_) => Missing::Resource,
                    None => Missing::AvailableResource,
                };
                let decision = no_local_session(&stanza, missing);
                return core.settle_without_session(stanza, user, decision).await;
            }
            for target in targets {
                core.send_to_session(&target.handle, stanza.clone()).await;
            }
        }
        Some(PresenceType::Probe) => answer_probe(core, &stanza, user).await,
        Some(PresenceType::Subscription(kind)) => subscription_to_user(core, stanza, user, kind).await,
        None => {}
    }
}

/// RFC 6121 §4.3.2: the current presence of each available resource; `unavailable` when
/// there is none; `unsubscribed` to a prober without a subscription, so its server can put
/// right a roster that says otherwise.
async fn answer_probe(core: &Core, probe: &Element, user: &str) {
    let Some(from) = probe.attr("from").and_then(|f| Jid::parse(f).ok()) else {
        return;
    };
    let own = from.node() == Some(user) && from.domain() == core.domain();
    let allowed = own
        || match core.storage.contact(user, &from.to_bare()) {
            Ok(contact) => contact.is_some_and(|c| c.subscription.has_from()),
            Err(e) => {
                // Unknown is not "no": answering `unsubscribed` could cancel a real subscription.
                log::error!("presence: roster lookup for {user}'s probe: {e}");
                return;
            }
        };
    let bare = bare_jid(core, user);
    if !allowed {
        let reply = Element::new("presence", ns::CLIENT)
            .with_attr("from", bare)
            .with_attr("to", from.to_bare().to_string())
            .with_attr("type", SubscriptionType::Unsubscribed.as_str());
        return core.route(reply).await;
    }
    if !core.router.available_resources(user).is_empty() {
        return send_current_presence(core, user, &from.to_string()).await;
    }
    match no_local_session(probe, Missing::AvailableResource) {
        NoLocalSession::AnswerProbe => core.route(unavailable(&bare, &from.to_string())).await,
        decision => core.settle_without_session(probe.clone(), user, decision).await,
    }
}

/// Inbound subscription processing: `kind` from a contact to the local `user`.
async fn subscription_to_user(core: &Core, mut stanza: Element, user: &str, kind: SubscriptionType) {
    let Some(contact) = stanza
        .attr("from")
        .and_then(|f| Jid::parse(f).ok())
        .map(|j| j.to_bare())
    else {
        return;
    };
    if kind == SubscriptionType::Subscribe
        && contact.domain() != core.domain()
        && !core.subscription_limiter.allow(contact.domain())
    {
        log::debug!("presence: subscription requests from {} throttled", contact.domain());
        let error = StanzaError::with_text(
            StanzaErrorCondition::ResourceConstraint,
            "too many subscription requests from your domain; try again later",
        );
        return core.bounce(&stanza, error).await;
    }
    let mut effect = Effect::default();
    let result = roster::update_contact(core, user, &contact, |c| {
        effect = apply_inbound(c, kind);
        effect.changed
    })
    .await;
    if let Err(e) = result {
        return refuse_subscription(core, &stanza, user, e).await;
    }
    let bare = bare_jid(core, user);
    if effect.forward {
        stanza.set_attr("from", contact.to_string());
        stanza.set_attr("to", bare.clone());
        for target in core.router.available_resources(user) {
            core.send_to_session(&target.handle, stanza.clone()).await;
        }
    }
    if effect.auto_subscribed {
        let reply = Element::new("presence", ns::CLIENT)
            .with_attr("from", bare.clone())
            .with_attr("to", contact.to_string())
            .with_attr("type", SubscriptionType::Subscribed.as_str());
        core.route(reply).await;
    }
    if effect.send_presence {
        send_current_presence(core, user, &contact.to_string()).await;
    }
    if effect.send_unavailable {
        send_unavailable_from_all(core, user, &contact).await;
    }
}

/// A subscription stanza whose roster change failed: the sender hears why (a quota is
/// `<resource-constraint/>`), never silence.
async fn refuse_subscription(core: &Core, stanza: &Element, user: &str, error: StorageError) {
    let error = error.to_stanza_error(&format!("presence: roster of {user}"));
    core.bounce(stanza, error).await;
}

/// An error answering a presence stanza the client sent.
pub fn error_reply(stanza: &Element, error: StanzaError) -> Element {
    error.reply_to(stanza)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SubscriptionState::{self, *};
    use sb_proto::SubscriptionType::{Subscribe, Subscribed, Unsubscribe, Unsubscribed};

    fn contact(subscription: SubscriptionState) -> Contact {
        Contact {
            subscription,
            listed: true,
            ..Contact::new("romeo@example.net")
        }
    }

    #[test]
    fn full_handshake_user_side_and_contact_side() {
        // Juliet's roster entry for Romeo, and Romeo's for Juliet.
        let mut juliet_side = Contact::new("romeo@example.net");
        let mut romeo_side = Contact::new("juliet@example.com");

        let e = apply_outbound(&mut juliet_side, Subscribe);
        assert!(e.forward && e.changed);
        assert!(juliet_side.ask_out && juliet_side.listed);

        let e = apply_inbound(&mut romeo_side, Subscribe);
        assert!(e.forward && e.changed && !e.auto_subscribed);
        assert!(romeo_side.pending_in && !romeo_side.listed);

        let e = apply_outbound(&mut romeo_side, Subscribed);
        assert!(e.forward && e.send_presence);
        assert_eq!(romeo_side.subscription, From);
        assert!(!romeo_side.pending_in && romeo_side.listed);

        let e = apply_inbound(&mut juliet_side, Subscribed);
        assert!(e.forward && e.changed);
        assert_eq!(juliet_side.subscription, To);
        assert!(!juliet_side.ask_out);

        // A repeated subscribe is answered by the server on the contact's behalf.
        let e = apply_inbound(&mut romeo_side, Subscribe);
        assert!(e.auto_subscribed && !e.forward && !e.changed);
    }

    #[test]
    fn unsolicited_subscribed_is_ignored() {
        let mut c = Contact::new("romeo@example.net");
        assert_eq!(apply_inbound(&mut c, Subscribed), Effect::default());
        assert_eq!(c.subscription, None);
    }

    #[test]
    fn pre_approval_then_automatic_acceptance() {
        let mut c = Contact::new("romeo@example.net");
        let e = apply_outbound(&mut c, Subscribed);
        assert!(e.changed && !e.forward);
        assert!(c.approved);
        let e = apply_inbound(&mut c, Subscribe);
        assert!(e.auto_subscribed && e.send_presence && e.changed);
        assert_eq!(c.subscription, From);
        assert!(!c.approved && !c.pending_in);
    }

    #[test]
    fn cancellations() {
        let mut c = contact(Both);
        let e = apply_outbound(&mut c, Unsubscribe);
        assert!(e.forward && e.changed);
        assert_eq!(c.subscription, From);
        let e = apply_outbound(&mut c, Unsubscribed);
        assert!(e.forward && e.send_unavailable);
        assert_eq!(c.subscription, None);

        let mut c = contact(Both);
        let e = apply_inbound(&mut c, Unsubscribe);
        assert!(e.forward && e.send_unavailable);
        assert_eq!(c.subscription, To);
        let e = apply_inbound(&mut c, Unsubscribed);
        assert!(e.forward);
        assert_eq!(c.subscription, None);
        assert_eq!(apply_inbound(&mut c, Unsubscribed), Effect::default());
    }

    #[test]
    fn denying_a_pending_request() {
        let mut c = Contact::new("romeo@example.net");
        apply_inbound(&mut c, Subscribe);
        let e = apply_outbound(&mut c, Unsubscribed);
        assert!(e.forward && e.changed && !e.send_unavailable);
        assert!(!c.pending_in);
        assert!(!c.is_worth_keeping());
    }

    #[test]
    fn priorities() {
        let p = |text: &str| {
            Element::new("presence", ns::CLIENT).with_child(Element::new("priority", ns::CLIENT).with_text(text))
        };
        assert_eq!(priority_of(&Element::new("presence", ns::CLIENT)).unwrap(), 0);
        assert_eq!(priority_of(&p("-5")).unwrap(), -5);
        assert_eq!(priority_of(&p(" 127 ")).unwrap(), 127);
        assert!(priority_of(&p("128")).is_err());
        assert!(priority_of(&p("high")).is_err());
    }
}
