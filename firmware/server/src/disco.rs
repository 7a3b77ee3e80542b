//! Service Discovery (XEP-0030) for the server domain and for accounts.
//!
//! The server's feature list is the union of what each feature module declares in its
//! `FEATURES`, so adding a module is adding it to [`MODULE_FEATURES`].

use crate::router::Router;
use sb_proto::{Element, StanzaError, StanzaErrorCondition, ns};

pub const FEATURES: &[&str] = &[ns::DISCO_INFO, ns::DISCO_ITEMS];

/// Every module that answers something on behalf of the server.
const MODULE_FEATURES: &[&[&str]] = &[
    FEATURES,
    crate::ping::FEATURES,
    crate::version::FEATURES,
    crate::roster::FEATURES,
    crate::offline::FEATURES,
];

/// Features of an account (answered by the server on the account's behalf).
const ACCOUNT_FEATURES: &[&str] = &[ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING];

pub fn server_features() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = MODULE_FEATURES.iter().flat_map(|f| f.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn info(identity: Element, features: &[&str]) -> Element {
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(identity);
    for feature in features {
        query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *feature));
    }
    query
}

/// Whether `iq` is a disco query this module answers, and which.
pub fn query_kind(iq: &Element) -> Option<&'static str> {
    if iq.attr("type") != Some("get") {
        return None;
    }
    if iq.has_child("query", ns::DISCO_INFO) {
        Some(ns::DISCO_INFO)
    } else if iq.has_child("query", ns::DISCO_ITEMS) {
        Some(ns::DISCO_ITEMS)
    } else {
        None
    }
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
        return Ok(info(identity, ACCOUNT_FEATURES));
    }
    Ok(Element::new("query", ns::DISCO_ITEMS))
}

#[cfg(test)]
mod tests {
    use super::*;

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
