//! Info/query handling (RFC 6120 §8.2.3): validation, what the server answers for itself
//! and on behalf of accounts, and delivery of the rest.

use crate::core::Core;
use crate::no_local_session::{Missing, NoLocalSession, no_local_session};
use crate::roster::{self, Requester};
use crate::{disco, ping, version};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, ns};
use std::future::Future;
use std::pin::Pin;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

/// Check the rules every iq must follow: an id, a known type, and exactly one payload for
/// a request.
pub fn validate(iq: &Element) -> Result<IqType, StanzaError> {
    let kind = match iq.attr("type") {
        Some("get") => IqType::Get,
        Some("set") => IqType::Set,
        Some("result") => IqType::Result,
        Some("error") => IqType::Error,
        _ => {
            return Err(StanzaError::with_text(
                StanzaErrorCondition::BadRequest,
                "iq type must be get, set, result or error",
            ));
        }
    };
    if iq.attr("id").is_none() {
        return Err(StanzaError::with_text(
            StanzaErrorCondition::BadRequest,
            "iq without id",
        ));
    }
    if kind.is_request() && iq.elements().count() != 1 {
        return Err(StanzaError::with_text(
            StanzaErrorCondition::BadRequest,
            "an iq request carries exactly one payload",
        ));
    }
    Ok(kind)
}

/// A result for `request`, from whoever it was addressed to, back to its sender.
pub fn result(request: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_opt_attr("id", request.attr("id"))
        .with_opt_attr("from", request.attr("to"))
        .with_opt_attr("to", request.attr("from"));
    if let Some(payload) = payload {
        reply.push_child(payload);
    }
    reply
}

/// Who an iq the server answers itself is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqTarget {
    /// The server's domain (or no `to` at all).
    Server,
    /// An account's bare JID, answered on the account's behalf (RFC 6120 §10.3.3).
    Account,
}

/// A validated request, as a handler sees it.
#[derive(Clone, Copy)]
pub struct IqRequest<'a> {
    pub core: &'a Core,
    pub iq: &'a Element,
    /// `Get` or `Set`.
    pub kind: IqType,
    pub target: IqTarget,
    /// Set when the account itself asks, from one of its sessions.
    pub requester: Option<Requester<'a>>,
}

/// A handler's reply: the whole result iq, or the error to answer with.
pub type IqFuture<'a> = Pin<Box<dyn Future<Output = Result<Element, StanzaError>> + Send + 'a>>;

/// One XEP's iq support (Prosody style): the payload it answers, what disco announces
/// for it, and the handler. A handler refuses what it does not do (another type, another
/// target) with `service-unavailable`, as for a payload nobody handles.
pub struct IqHandler {
    /// The payload element's name and namespace.
    pub element: &'static str,
    pub namespace: &'static str,
    /// Features disco#info lists for the server's domain and for an account.
    pub server_features: &'static [&'static str],
    pub account_features: &'static [&'static str],
    pub handle: for<'a> fn(IqRequest<'a>) -> IqFuture<'a>,
}

/// Every iq the server answers itself, read by the dispatcher below and by disco. A new
/// XEP is its own file with a `HANDLER`, plus one line here.
pub const IQ_HANDLERS: &[IqHandler] = &[
    disco::INFO_HANDLER,
    disco::ITEMS_HANDLER,
    ping::HANDLER,
    version::HANDLER,
    roster::HANDLER,
];

/// The refusal for a payload or a request a handler does not answer.
pub fn service_unavailable() -> StanzaError {
    StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
}

/// The reply to a validated request, from the handler its payload names.
async fn dispatch(request: IqRequest<'_>) -> Element {
    // Validation left exactly one payload in a request.
    let handler = request
        .iq
        .elements()
        .next()
        .and_then(|payload| IQ_HANDLERS.iter().find(|h| payload.is(h.element, h.namespace)));
    let outcome = match handler {
        Some(handler) => (handler.handle)(request).await,
        None => Err(service_unavailable()),
    };
    outcome.unwrap_or_else(|error| error.reply_to(request.iq))
}

/// An iq addressed to the server itself (no `to`, or the bare domain). `requester` is set
/// when it comes from a local session of the account `from` names, which may then use its
/// roster. Returns the reply, `None` for results and errors.
pub async fn handle_for_server(
    core: &Core,
    from: &Jid,
    requester: Option<Requester<'_>>,
    iq: &Element,
) -> Option<Element> {
    let kind = match validate(iq) {
        Ok(kind) if kind.is_request() => kind,
        Ok(_) => return None,
        Err(error) => return crate::delivery::may_bounce(iq).then(|| error.reply_to(iq)),
    };
    log::trace!("iq {kind:?} for the server from {from}");
    let request = IqRequest {
        core,
        iq,
        kind,
        target: IqTarget::Server,
        requester,
    };
    Some(dispatch(request).await)
}

/// An iq addressed to an account's bare JID, answered by the server on its behalf
/// (RFC 6120 §10.3.3). `requester` is set when the account itself asks.
pub async fn handle_for_account(core: &Core, requester: Option<Requester<'_>>, iq: &Element) -> Option<Element> {
    let kind = match validate(iq) {
        Ok(kind) if kind.is_request() => kind,
        Ok(_) => return None,
        Err(error) => return crate::delivery::may_bounce(iq).then(|| error.reply_to(iq)),
    };
    let request = IqRequest {
        core,
        iq,
        kind,
        target: IqTarget::Account,
        requester,
    };
    Some(dispatch(request).await)
}

/// An iq for a local account from anyone, routed here.
pub async fn deliver_to_account(core: &Core, iq: Element, to: &Jid, user: &str) {
    let missing = match to.resource() {
        Some(resource) => match core.router.resource(user, resource) {
            Some(target) => return core.send_to_session(&target.handle, iq).await,
            None => Missing::Resource,
        },
        // An iq for the bare JID is never a session's to answer.
        None => Missing::AvailableResource,
    };
    match no_local_session(&iq, missing) {
        NoLocalSession::AnswerForAccount => {
            if let Some(reply) = handle_for_account(core, None, &iq).await {
                core.route(reply).await;
            }
        }
        decision => core.settle_without_session(iq, user, decision).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(kind: Option<&str>, id: Option<&str>, payloads: usize) -> Element {
        let mut iq = Element::new("iq", ns::CLIENT)
            .with_opt_attr("type", kind)
            .with_opt_attr("id", id);
        for _ in 0..payloads {
            iq.push_child(Element::new("ping", ns::PING));
        }
        iq
    }

    #[test]
    fn validation() {
        assert_eq!(validate(&iq(Some("get"), Some("1"), 1)), Ok(IqType::Get));
        assert_eq!(validate(&iq(Some("result"), Some("1"), 0)), Ok(IqType::Result));
        let cond = |e: Element| validate(&e).unwrap_err().condition;
        assert_eq!(cond(iq(Some("get"), None, 1)), StanzaErrorCondition::BadRequest);
        assert_eq!(cond(iq(Some("fetch"), Some("1"), 1)), StanzaErrorCondition::BadRequest);
        assert_eq!(cond(iq(None, Some("1"), 1)), StanzaErrorCondition::BadRequest);
        assert_eq!(cond(iq(Some("set"), Some("1"), 0)), StanzaErrorCondition::BadRequest);
        assert_eq!(cond(iq(Some("set"), Some("1"), 2)), StanzaErrorCondition::BadRequest);
    }

    #[test]
    fn every_handler_answers_its_own_payload() {
        for (i, a) in IQ_HANDLERS.iter().enumerate() {
            for b in &IQ_HANDLERS[i + 1..] {
                assert!(
                    (a.element, a.namespace) != (b.element, b.namespace),
                    "two handlers for <{}/> in {}",
                    a.element,
                    a.namespace
                );
            }
        }
    }

    fn request(kind: &str, payload: Element) -> Element {
        Element::new("iq", ns::CLIENT)
            .with_attr("type", kind)
            .with_attr("id", "q1")
            .with_attr("from", "romeo@example.net/orchard")
            .with_attr("to", "example.com")
            .with_child(payload)
    }

    fn condition(reply: &Element) -> Option<String> {
        let error = reply.get_child("error", ns::CLIENT)?;
        error.elements().next().map(|c| c.name.clone())
    }

    #[tokio::test]
    async fn the_dispatcher_answers_from_the_table_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let core = crate::core::test_core(dir.path());
        let from: Jid = "romeo@example.net/orchard".parse().unwrap();
        let for_server = |iq: Element| {
            let (core, from) = (&core, &from);
            async move { handle_for_server(core, from, None, &iq).await.unwrap() }
        };
        let ping = for_server(request("get", Element::new("ping", ns::PING))).await;
        assert_eq!(
            ping.to_xml(),
            result(&request("get", Element::new("ping", ns::PING)), None).to_xml()
        );
        let version = for_server(request("get", Element::new("query", ns::VERSION))).await;
        assert!(
            version.to_xml().contains("<name>Switchboard</name>"),
            "{}",
            version.to_xml()
        );
        for refused in [
            request("set", Element::new("ping", ns::PING)),
            request("get", Element::new("unknown", "urn:example:unknown")),
            request("set", Element::new("query", ns::DISCO_INFO)),
            // A roster is only its own account's, from one of its sessions.
            request("get", Element::new("query", ns::ROSTER)),
        ] {
            let reply = for_server(refused.clone()).await;
            assert_eq!(
                condition(&reply).as_deref(),
                Some("service-unavailable"),
                "{}",
                refused.to_xml()
            );
        }
        let account_version = handle_for_account(&core, None, &request("get", Element::new("query", ns::VERSION)))
            .await
            .unwrap();
        assert_eq!(condition(&account_version).as_deref(), Some("service-unavailable"));
        let account_info = handle_for_account(&core, None, &request("get", Element::new("query", ns::DISCO_INFO)))
            .await
            .unwrap();
        let identity = account_info
            .get_child("query", ns::DISCO_INFO)
            .and_then(|q| q.get_child("identity", ns::DISCO_INFO))
            .unwrap();
        assert_eq!(identity.attr("category"), Some("account"));
        let result_iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", "r");
        assert!(handle_for_server(&core, &from, None, &result_iq).await.is_none());
    }

    #[test]
    fn result_swaps_addresses() {
        let request = iq(Some("get"), Some("7"), 1)
            .with_attr("from", "a@x/r")
            .with_attr("to", "x");
        let r = result(&request, None);
        assert_eq!(r.attr("to"), Some("a@x/r"));
        assert_eq!(r.attr("from"), Some("x"));
        assert_eq!(r.attr("id"), Some("7"));
        assert_eq!(r.attr("type"), Some("result"));
    }
}
