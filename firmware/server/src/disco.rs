//! Service Discovery (XEP-0030) for the server domain and for accounts.
//!
//! The feature lists are read from the iq handler table ([`crate::iq::IQ_HANDLERS`]), plus
//! `OTHER_SERVER_FEATURES` for features that answer no iq of their own, so adding a
//! XEP never means editing this file.

use crate::iq::{self, IqFuture, IqHandler, IqRequest, IqTarget, IqType};
use crate::router::Router;
use sb_proto::{Element, StanzaError, StanzaErrorCondition, ns};

pub const INFO_HANDLER: IqHandler = IqHandler {
    element: "query",
    namespace: ns::DISCO_INFO,
    server_features: &[ns::DISCO_INFO],
    account_features: &[ns::DISCO_INFO],
    handle,
};

pub const ITEMS_HANDLER: IqHandler = IqHandler {
    element: "query",
    namespace: ns::DISCO_ITEMS,
    server_features: &[ns::DISCO_ITEMS],
    account_features: &[ns::DISCO_ITEMS],
    handle,
};

/// Features of the server that come with no iq handler.
const OTHER_SERVER_FEATURES: &[&[&str]] = &[crate::offline::FEATURES];

fn handle(request: IqRequest<'_>) -> IqFuture<'_> {
    Box::pin(std::future::ready(answer(request)))
}

fn answer(request: IqRequest<'_>) -> Result<Element, StanzaError> {
    let iq = request.iq;
    let query_ns = match iq.elements().next() {
        Some(query) if request.kind == IqType::Get => query.ns.as_str(),
        _ => return Err(iq::service_unavailable()),
    };
    let payload = match request.target {
        IqTarget::Server => server_answer(iq, query_ns, &request.core.router)?,
        IqTarget::Account => account_answer(iq, query_ns)?,
    };
    Ok(iq::result(iq, Some(payload)))
}

fn sorted(features: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = features.collect();
    all.sort_unstable();
    all.dedup();
    all
}

pub fn server_features() -> Vec<&'static str> {
    sorted(
        iq::IQ_HANDLERS
            .iter()
            .flat_map(|h| h.server_features.iter().copied())
            .chain(OTHER_SERVER_FEATURES.iter().flat_map(|f| f.iter().copied())),
    )
}

/// Features of an account (answered by the server on the account's behalf).
pub fn account_features() -> Vec<&'static str> {
    sorted(iq::IQ_HANDLERS.iter().flat_map(|h| h.account_features.iter().copied()))
}

fn info(identity: Element, features: &[&str]) -> Element {
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(identity);
    for feature in features {
        query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *feature));
    }
    query
}

/// Nodes are not supported: a query for one is `item-not-found` (XEP-0030 §3.1).
fn reject_node(iq: &Element, query_ns: &str) -> Result<(), StanzaError> {
    match iq.get_child("query", query_ns).and_then(|q| q.attr("node")) {
        Some(_) => Err(StanzaError::new(StanzaErrorCondition::ItemNotFound)),
        None => Ok(()),
    }
}

pub fn server_answer(iq: &Element, query_ns: &str, router: &Router) -> Result<Element, StanzaError> {
    reject_node(iq, query_ns)?;
    if query_ns == ns::DISCO_INFO {
        let identity = Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "server")
            .with_attr("type", "im")
            .with_attr("name", crate::version::NAME);
        return Ok(info(identity, &server_features()));
    }
    let mut items = Element::new("query", ns::DISCO_ITEMS);
    // Components (issue 3) register links for their domains; they are the server's items.
    for domain in router.link_domains() {
        items.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", domain));
    }
    Ok(items)
}

pub fn account_answer(iq: &Element, query_ns: &str) -> Result<Element, StanzaError> {
    reject_node(iq, query_ns)?;
    if query_ns == ns::DISCO_INFO {
        let identity = Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "account")
            .with_attr("type", "registered");
        return Ok(info(identity, &account_features()));
    }
    Ok(Element::new("query", ns::DISCO_ITEMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists wave 1 announced, in the order it announced them: the handler table must
    /// not change what a client sees.
    #[test]
    fn feature_lists_are_unchanged() {
        assert_eq!(
            server_features(),
            vec![
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "jabber:iq:roster",
                "jabber:iq:version",
                "msgoffline",
                "urn:xmpp:ping",
            ]
        );
        assert_eq!(
            account_features(),
            vec![
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "urn:xmpp:ping",
            ]
        );
    }

    #[test]
    fn server_features_come_from_the_modules() {
        let f = server_features();
        for expected in [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::PING,
            ns::VERSION,
            ns::ROSTER,
            "msgoffline",
        ] {
            assert!(f.contains(&expected), "{expected} missing");
        }
    }

    #[test]
    fn server_info_has_identity_and_node_queries_are_refused() {
        let router = Router::new();
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("query", ns::DISCO_INFO));
        let answer = server_answer(&iq, ns::DISCO_INFO, &router).unwrap();
        let identity = answer.get_child("identity", ns::DISCO_INFO).unwrap();
        assert_eq!(identity.attr("category"), Some("server"));
        assert_eq!(identity.attr("type"), Some("im"));
        let with_node = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", "x"));
        assert_eq!(
            server_answer(&with_node, ns::DISCO_INFO, &router)
                .unwrap_err()
                .condition,
            StanzaErrorCondition::ItemNotFound
        );
    }
}
