//! Info/query handling (RFC 6120 §8.2.3): validation, what the server answers for itself
//! and on behalf of accounts, and delivery of the rest.

use crate::core::Core;
use crate::no_local_session::{Missing, NoLocalSession, no_local_session};
use crate::roster::{self, Requester};
use crate::{disco, ping, version};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, ns};

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

fn answer(request: &Element, outcome: Result<Option<Element>, StanzaError>) -> Element {
    match outcome {
        Ok(payload) => result(request, payload),
        Err(error) => error.reply_to(request),
    }
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
        Err(error) => return crate::routing::may_bounce(iq).then(|| error.reply_to(iq)),
    };
    log::trace!("iq {kind:?} for the server from {from}");
    let outcome = if let Some(query_ns) = disco::query_kind(iq) {
        disco::server_answer(iq, query_ns, &core.router).map(Some)
    } else if ping::is_ping(iq) {
        Ok(None)
    } else if version::is_version_query(iq) {
        Ok(Some(version::answer()))
    } else if iq.has_child("query", ns::ROSTER) && iq.attr("to").is_none() {
        match requester {
            Some(requester) => {
                return Some(match roster::handle_iq(core, requester, iq).await {
                    Ok(reply) => reply,
                    Err(error) => error.reply_to(iq),
                });
            }
            None => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
        }
    } else {
        Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
    };
    Some(answer(iq, outcome))
}

/// An iq addressed to an account's bare JID, answered by the server on its behalf
/// (RFC 6120 §10.3.3). `requester` is set when the account itself asks.
pub async fn handle_for_account(core: &Core, requester: Option<Requester<'_>>, iq: &Element) -> Option<Element> {
    match validate(iq) {
        Ok(kind) if kind.is_request() => {}
        Ok(_) => return None,
        Err(error) => return crate::routing::may_bounce(iq).then(|| error.reply_to(iq)),
    }
    let outcome = if let Some(query_ns) = disco::query_kind(iq) {
        disco::account_answer(iq, query_ns).map(Some)
    } else if ping::is_ping(iq) {
        Ok(None)
    } else if iq.has_child("query", ns::ROSTER) {
        match requester {
            Some(requester) => {
                return Some(match roster::handle_iq(core, requester, iq).await {
                    Ok(reply) => reply,
                    Err(error) => error.reply_to(iq),
                });
            }
            // Someone else's roster is nobody's business.
            None => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
        }
    } else {
        Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
    };
    Some(answer(iq, outcome))
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
