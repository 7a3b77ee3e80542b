//! Roster management (RFC 6121 §2): get (with versioning), set, remove, and pushes to every
//! interested resource.

use crate::core::Core;
use crate::iq::{IqFuture, IqHandler, IqRequest, IqTarget};
use crate::storage::{Contact, StorageError, SubscriptionState};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, SubscriptionType, ns};
use std::collections::HashMap;
use std::sync::Arc;

pub const FEATURES: &[&str] = &[ns::ROSTER];

/// Only the account itself reads or changes its roster, asking with no `to` or its own
/// bare JID; an account's roster support is not announced on its behalf.
pub const HANDLER: IqHandler = IqHandler {
    element: "query",
    namespace: ns::ROSTER,
    server_features: FEATURES,
    account_features: &[],
    handle: handle_request,
};

fn handle_request(request: IqRequest<'_>) -> IqFuture<'_> {
    Box::pin(async move {
        // Someone else's roster is nobody's business; an own roster addressed to the
        // server's domain is not one either.
        let for_the_server_by_name = request.target == IqTarget::Server && request.iq.attr("to").is_some();
        match request.requester {
            Some(requester) if !for_the_server_by_name => handle_iq(request.core, requester, request.iq).await,
            _ => Err(crate::iq::service_unavailable()),
        }
    })
}

/// The session asking, so a roster get can mark it as interested in pushes.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub user: &'a str,
    pub resource: &'a str,
    pub session: crate::router::SessionId,
}

fn internal(e: StorageError) -> StanzaError {
    e.to_stanza_error("roster")
}

/// One lock per account's roster, created on demand and forgotten when nobody holds or
/// waits for it, so the map holds only accounts whose roster is being changed right now.
#[derive(Default)]
pub struct RosterLocks {
    accounts: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one account's roster lock; dropping it releases the lock.
pub struct RosterGuard<'a> {
    locks: &'a RosterLocks,
    user: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl RosterLocks {
    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // The map is only ever changed by whole inserts and removes: nothing half-done to
        // fear from a poisoned lock.
        self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub async fn lock(&self, user: &str) -> RosterGuard<'_> {
        let lock = Arc::clone(self.accounts().entry(user.to_owned()).or_default());
        let guard = lock.lock_owned().await;
        RosterGuard {
            locks: self,
            user: user.to_owned(),
            guard: Some(guard),
        }
    }

    /// Accounts with a lock held or awaited (for tests).
    pub fn len(&self) -> usize {
        self.accounts().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for RosterGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut accounts = self.locks.accounts();
        // Only the map's own reference left: no holder, no waiter (a waiter clones the Arc
        // under this same map lock before it waits).
        if accounts
            .get(&self.user)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            accounts.remove(&self.user);
        }
    }
}

/// `<item/>` for a contact. `remove` writes `subscription='remove'` for a removal push.
pub fn item_element(contact: &Contact, remove: bool) -> Element {
    let mut item = Element::new("item", ns::ROSTER).with_attr("jid", contact.jid.clone());
    if remove {
        item.set_attr("subscription", "remove");
        return item;
    }
    if let Some(name) = &contact.name {
        item.set_attr("name", name.clone());
    }
    item.set_attr("subscription", contact.subscription.as_str());
    if contact.ask_out {
        item.set_attr("ask", "subscribe");
    }
    if contact.approved {
        item.set_attr("approved", "true");
    }
    for group in &contact.groups {
        item.push_child(Element::new("group", ns::ROSTER).with_text(group.clone()));
    }
    item
}

/// Answer a roster iq from the account's own session.
pub async fn handle_iq(core: &Core, requester: Requester<'_>, iq: &Element) -> Result<Element, StanzaError> {
    let Some(query) = iq.get_child("query", ns::ROSTER) else {
        return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
    };
    match iq.attr("type") {
        Some("get") => get(core, requester, iq, query),
        Some("set") => set(core, requester, iq, query).await,
        _ => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
    }
}

fn result_for(iq: &Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", iq.attr("id"))
}

fn get(core: &Core, requester: Requester<'_>, iq: &Element, query: &Element) -> Result<Element, StanzaError> {
    core.router
        .set_roster_interested(requester.user, requester.resource, requester.session);
    let version = core.storage.roster_version(requester.user).map_err(internal)?;
    // RFC 6121 §2.6.3: an unchanged roster is answered with an empty result; the pushes
    // that follow keep the client current.
    if query.attr("ver") == Some(version.as_str()) {
        return Ok(result_for(iq));
    }
    let mut answer = Element::new("query", ns::ROSTER).with_attr("ver", version);
    for contact in core.storage.roster(requester.user).map_err(internal)? {
        if contact.listed {
            answer.push_child(item_element(&contact, false));
        }
    }
    Ok(result_for(iq).with_child(answer))
}

/// Validate the single `<item/>` of a roster set (RFC 6121 §2.3.3).
fn parse_set_item(query: &Element, own: &Jid) -> Result<(Jid, Option<String>, Vec<String>, bool), StanzaError> {
    let mut items = query.elements().filter(|e| e.is("item", ns::ROSTER));
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(StanzaError::with_text(
            StanzaErrorCondition::BadRequest,
            "a roster set carries exactly one item",
        ));
    };
    let jid = item
        .attr("jid")
        .ok_or_else(|| StanzaError::with_text(StanzaErrorCondition::BadRequest, "item without jid"))
        .and_then(|j| Jid::parse(j).map_err(|_| StanzaError::new(StanzaErrorCondition::JidMalformed)))?
        .to_bare();
    if &jid == own {
        return Err(StanzaError::with_text(
            StanzaErrorCondition::NotAllowed,
            "the account itself cannot be a contact",
        ));
    }
    let remove = item.attr("subscription") == Some("remove");
    let name = item.attr("name").filter(|n| !n.is_empty()).map(str::to_owned);
    let mut groups: Vec<String> = Vec::new();
    for group in item.elements().filter(|e| e.is("group", ns::ROSTER)) {
        let text = group.text();
        if text.is_empty() {
            return Err(StanzaError::with_text(
                StanzaErrorCondition::NotAcceptable,
                "empty group name",
            ));
        }
        if groups.contains(&text) {
            return Err(StanzaError::with_text(
                StanzaErrorCondition::BadRequest,
                "duplicate group",
            ));
        }
        groups.push(text);
    }
    Ok((jid, name, groups, remove))
}

async fn set(core: &Core, requester: Requester<'_>, iq: &Element, query: &Element) -> Result<Element, StanzaError> {
    let domain = core.domain();
    let own = Jid::from_parts(Some(requester.user), &domain, None)
        .map_err(|_| StanzaError::new(StanzaErrorCondition::InternalServerError))?;
    let (contact_jid, name, groups, remove) = parse_set_item(query, &own)?;
    let mut not_found = false;
    let written = swap_contact(core, requester.user, &contact_jid, |existing| {
        if remove {
            let visible = existing.is_some_and(|c| c.listed || c.subscription != SubscriptionState::None);
            not_found = !visible;
            return visible.then_some(None);
        }
        let mut contact = existing
            .cloned()
            .unwrap_or_else(|| Contact::new(&contact_jid.to_string()));
        contact.name = name.clone();
        contact.groups = groups.clone();
        contact.listed = true;
        Some(Some(contact))
    })
    .await
    .map_err(internal)?;
    let Some(Swapped { before, after, version }) = written.filter(|_| !not_found) else {
        return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
    };
    if remove {
        let Some(existing) = before else {
            return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
        };
        // RFC 6121 §2.5.2: cancel both directions on the contact's side.
        let cancel_theirs = existing.subscription.has_from() || existing.pending_in;
        let cancel_ours = existing.subscription.has_to() || existing.ask_out;
        for (kind, wanted) in [
            (SubscriptionType::Unsubscribe, cancel_ours),
            (SubscriptionType::Unsubscribed, cancel_theirs),
        ] {
            if wanted {
                let presence = Element::new("presence", ns::CLIENT)
                    .with_attr("from", own.to_string())
                    .with_attr("to", existing.jid.clone())
                    .with_attr("type", kind.as_str());
                core.route(presence).await;
            }
        }
        if cancel_theirs {
            crate::presence::send_unavailable_from_all(core, requester.user, &contact_jid).await;
        }
        push(core, requester.user, &existing, true, &version).await;
        return Ok(result_for(iq));
    }
    if let Some(contact) = after {
        push(core, requester.user, &contact, false, &version).await;
    }
    Ok(result_for(iq))
}

/// Attempts at a compare-and-set of one roster item: each failed one means another node of
/// the cluster changed the item in between, so more than a few in a row is pathological.
const SWAP_ATTEMPTS: usize = 8;

/// A roster item written: as it was read, as it was written (`None`: removed), and the
/// roster version after.
pub struct Swapped {
    pub before: Option<Contact>,
    pub after: Option<Contact>,
    pub version: String,
}

/// Change one contact under the account's roster lock: `decide` gets the item as stored and
/// returns `None` to leave it, `Some(None)` to remove it or `Some(Some(item))` to write it.
/// The write is a compare-and-set against what `decide` saw; when another node changed the
/// item meanwhile, `decide` runs again on the item as it is now. `Ok(None)`: nothing written.
pub async fn swap_contact(
    core: &Core,
    user: &str,
    contact_jid: &Jid,
    mut decide: impl FnMut(Option<&Contact>) -> Option<Option<Contact>>,
) -> Result<Option<Swapped>, StorageError> {
    let _guard = core.roster_locks.lock(user).await;
    let jid = contact_jid.to_string();
    for _ in 0..SWAP_ATTEMPTS {
        let before = core.storage.contact(user, contact_jid)?;
        let Some(after) = decide(before.as_ref()) else {
            return Ok(None);
        };
        match core
            .storage
            .swap_contact(user, &jid, before.as_ref(), after.as_ref())
            .await
        {
            Ok(version) => return Ok(Some(Swapped { before, after, version })),
            Err(StorageError::RosterItemChanged) => {
                log::debug!("roster: {user}'s item for {jid} changed meanwhile; redoing the change");
            }
            Err(e) => return Err(e),
        }
    }
    Err(StorageError::RosterItemChanged)
}

/// Send a roster push for `contact` to every interested resource of `user`
/// (RFC 6121 §2.1.6).
pub async fn push(core: &Core, user: &str, contact: &Contact, remove: bool, version: &str) {
    if !remove && !contact.listed {
        return;
    }
    let domain = core.domain();
    for (resource, handle) in core.router.roster_interested(user) {
        let push = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{}", core.unique_id()))
            .with_attr("to", format!("{user}@{domain}/{resource}"))
            .with_child(
                Element::new("query", ns::ROSTER)
                    .with_attr("ver", version)
                    .with_child(item_element(contact, remove)),
            );
        // A push that does not fit is lost for that session only; its next roster get
        // (with the version it has) resynchronizes it.
        if let Err(e) = handle.send(push) {
            log::debug!("roster push to {user}/{resource} dropped: {e}");
        }
    }
}

/// Change one contact under the roster lock, persist it and push it when visible.
/// `change` returns false when nothing changed (then nothing is written or pushed).
/// `change` may run more than once (see [`swap_contact`]): it must only change the contact.
pub async fn update_contact(
    core: &Core,
    user: &str,
    contact_jid: &Jid,
    mut change: impl FnMut(&mut Contact) -> bool,
) -> Result<Contact, StorageError> {
    let mut unchanged = None;
    let written = swap_contact(core, user, contact_jid, |before| {
        let mut contact = before
            .cloned()
            .unwrap_or_else(|| Contact::new(&contact_jid.to_string()));
        if change(&mut contact) {
            Some(Some(contact))
        } else {
            unchanged = Some(contact);
            None
        }
    })
    .await?;
    let Some(Swapped { before, after, version }) = written else {
        return Ok(unchanged.unwrap_or_else(|| Contact::new(&contact_jid.to_string())));
    };
    let contact = after.unwrap_or_else(|| Contact::new(&contact_jid.to_string()));
    let was_listed = before.as_ref().is_some_and(|c| c.listed);
    if contact.listed && contact.is_worth_keeping() {
        push(core, user, &contact, false, &version).await;
    } else if was_listed {
        push(core, user, &contact, true, &version).await;
    }
    Ok(contact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_serialization() {
        let mut c = Contact::new("romeo@example.net");
        c.name = Some("Romeo".into());
        c.groups = vec!["Friends".into()];
        c.subscription = SubscriptionState::From;
        c.ask_out = true;
        let xml = item_element(&c, false).to_xml();
        assert_eq!(
            xml,
            "<item xmlns='jabber:iq:roster' jid='romeo@example.net' name='Romeo' subscription='from' \
             ask='subscribe'><group>Friends</group></item>"
        );
        assert_eq!(
            item_element(&c, true).to_xml(),
            "<item xmlns='jabber:iq:roster' jid='romeo@example.net' subscription='remove'/>"
        );
    }

    #[test]
    fn set_item_validation() {
        let own: Jid = "juliet@example.com".parse().unwrap();
        let q = |items: Vec<Element>| {
            let mut q = Element::new("query", ns::ROSTER);
            for i in items {
                q.push_child(i);
            }
            q
        };
        let item = |jid: &str| Element::new("item", ns::ROSTER).with_attr("jid", jid);
        let cond = |r: Result<_, StanzaError>| r.err().map(|e| e.condition);
        assert_eq!(
            cond(parse_set_item(&q(vec![]), &own)),
            Some(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            cond(parse_set_item(&q(vec![item("a@b"), item("c@d")]), &own)),
            Some(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            cond(parse_set_item(&q(vec![item("juliet@example.com")]), &own)),
            Some(StanzaErrorCondition::NotAllowed)
        );
        let dup = item("romeo@example.net")
            .with_child(Element::new("group", ns::ROSTER).with_text("A"))
            .with_child(Element::new("group", ns::ROSTER).with_text("A"));
        assert_eq!(
            cond(parse_set_item(&q(vec![dup]), &own)),
            Some(StanzaErrorCondition::BadRequest)
        );
        let ok = item("romeo@example.net/orchard").with_attr("name", "R");
        let (jid, name, groups, remove) = parse_set_item(&q(vec![ok]), &own).unwrap();
        assert_eq!(jid.to_string(), "romeo@example.net");
        assert_eq!(name.as_deref(), Some("R"));
        assert!(groups.is_empty() && !remove);
    }
}
