//! Where a stanza goes (RFC 6120 §10): to this server, to a local account, over a link to
//! a component, or out through federation; and errors back to the sender when it cannot.
//!
//! Everything that arrives here has a trustworthy `from`: c2s sessions stamp it, and
//! component and s2s links must check it before handing a stanza over.

use crate::core::Core;
use crate::no_local_session::{Missing, NoLocalSession, no_local_session};
use crate::router::DeliveryError;
use crate::{iq, message, offline, presence};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition};
use std::future::Future;
use std::pin::Pin;

/// The kind of top-level stanza, with its `type` already interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    pub fn of(stanza: &Element) -> Option<StanzaKind> {
        match stanza.name.as_str() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// Whether an error reply may be sent for this stanza: never for errors (no loops) and
/// never for iq results.
pub fn may_bounce(stanza: &Element) -> bool {
    match stanza.attr("type") {
        Some("error") => false,
        Some("result") => stanza.name != "iq",
        _ => true,
    }
}

impl Core {
    /// Deliver `stanza` according to its `to` (which must be set).
    pub fn route(&self, stanza: Element) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            crate::counters::record(crate::counters::Event::StanzaRouted);
            let to = match stanza.attr("to").map(Jid::parse) {
                Some(Ok(to)) => to,
                Some(Err(_)) => {
                    self.bounce(&stanza, StanzaError::new(StanzaErrorCondition::JidMalformed))
                        .await;
                    return;
                }
                None => {
                    log::debug!("dropping a routed <{}/> without 'to'", stanza.name);
                    return;
                }
            };
            let domain = self.domain();
            if to.domain() == domain {
                match to.node() {
                    Some(user) => {
                        let user = user.to_owned();
                        self.deliver_local(stanza, &to, &user).await
                    }
                    None => self.deliver_to_server(stanza).await,
                }
                return;
            }
            let link = self
                .router
                .link(to.domain())
                .map(|l| (l, StanzaErrorCondition::ServiceUnavailable));
            if link.is_none() && self.is_configured_callbridge(to.domain(), &domain) {
                // A Call Bridge of ours that is not connected now: never a federation matter.
                self.bounce(
                    &stanza,
                    StanzaError::with_text(
                        StanzaErrorCondition::ServiceUnavailable,
                        "this Call Bridge is not connected",
                    ),
                )
                .await;
                return;
            }
            let link = link.or_else(|| {
                self.router
                    .remote_link()
                    .map(|l| (l, StanzaErrorCondition::RemoteServerNotFound))
            });
            match link {
                Some((link, condition)) => {
                    let bounce_copy = may_bounce(&stanza).then(|| stanza.clone());
                    if let Err(e) = link.send(stanza) {
                        log::debug!("{} refused a stanza: {e}", link.describe());
                        if let Some(original) = bounce_copy {
                            let condition = match e {
                                DeliveryError::QueueFull => StanzaErrorCondition::ResourceConstraint,
                                DeliveryError::Gone => condition,
                            };
                            self.bounce(&original, StanzaError::new(condition)).await;
                        }
                    }
                }
                None => {
                    self.bounce(
                        &stanza,
                        StanzaError::with_text(
                            StanzaErrorCondition::RemoteServerNotFound,
                            "this server does not federate with other domains",
                        ),
                    )
                    .await
                }
            }
        })
    }

    /// Whether `address` is `<name>.<domain>` for a configured Call Bridge `name`.
    fn is_configured_callbridge(&self, address: &str, domain: &str) -> bool {
        address
            .strip_suffix(domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|name| !name.is_empty() && !name.contains('.') && self.storage.callbridge_exists(name))
    }

    /// Answer `stanza` with `error`, routed back to its sender, unless it must not be answered.
    pub async fn bounce(&self, stanza: &Element, error: StanzaError) {
        if !may_bounce(stanza) || stanza.attr("from").is_none() {
            return;
        }
        let reply = error.reply_to(stanza);
        self.route(reply).await;
    }

    /// A stanza for a local account, by kind (RFC 6121 §8.5).
    async fn deliver_local(&self, stanza: Element, to: &Jid, user: &str) {
        if !self.router.has_sessions(user) && !self.storage.user_exists(user) {
            let decision = no_local_session(&stanza, Missing::Account);
            self.settle_without_session(stanza, user, decision).await;
            return;
        }
        match StanzaKind::of(&stanza) {
            Some(StanzaKind::Message) => message::deliver_to_account(self, stanza, to, user).await,
            Some(StanzaKind::Presence) => presence::inbound(self, stanza, to, user).await,
            Some(StanzaKind::Iq) => iq::deliver_to_account(self, stanza, to, user).await,
            None => {}
        }
    }

    /// Carry out a [`no_local_session`] decision for `stanza` to the local `user`, for the
    /// outcomes that need nothing but the stanza. The others (answering on the account's
    /// behalf, going on to the bare JID) need their caller's context, which handles them
    /// before calling this.
    pub async fn settle_without_session(&self, stanza: Element, user: &str, decision: NoLocalSession) {
        match decision {
            NoLocalSession::StoreOffline => offline::store(self, user, stanza).await,
            NoLocalSession::Bounce(condition) => self.bounce(&stanza, StanzaError::new(condition)).await,
            NoLocalSession::Drop => {}
            NoLocalSession::AsBareJid | NoLocalSession::AnswerProbe | NoLocalSession::AnswerForAccount => {
                log::warn!(
                    "a <{}/> for {user} was dropped: {decision:?} was not handled",
                    stanza.name
                );
            }
        }
    }

    /// A stanza addressed to the server's own domain by someone other than a local client
    /// session (those are answered directly on their stream).
    async fn deliver_to_server(&self, stanza: Element) {
        if stanza.name != "iq" {
            return;
        }
        let Some(from) = stanza.attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return;
        };
        if let Some(reply) = iq::handle_for_server(self, &from, None, &stanza).await {
            self.route(reply).await;
        }
    }

    /// Hand a stanza to one session, bouncing it to the sender when the session cannot take it.
    pub async fn send_to_session(&self, handle: &crate::router::SessionHandle, stanza: Element) {
        let bounce_copy = may_bounce(&stanza).then(|| stanza.clone());
        if let Err(e) = handle.send(stanza) {
            log::debug!("{handle:?} did not take a stanza: {e}");
            if let Some(original) = bounce_copy {
                let condition = match e {
                    DeliveryError::QueueFull => StanzaErrorCondition::ResourceConstraint,
                    DeliveryError::Gone => StanzaErrorCondition::RecipientUnavailable,
                };
                self.bounce(&original, StanzaError::new(condition)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_core;
    use crate::router::test_doubles::RecordingLink;
    use crate::router::{NodeId, Outbound, SessionControl, SessionHandle, SessionMeta};
    use sb_proto::ns;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    fn meta() -> SessionMeta {
        SessionMeta {
            peer: "127.0.0.1:1".parse().unwrap(),
            since_unix: 0,
            tls: true,
        }
    }

    fn chat(from: &str, to: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("type", "chat")
            .with_attr("from", from)
            .with_attr("to", to)
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"))
    }

    fn delivered(link: &RecordingLink) -> Vec<(NodeId, u64, String)> {
        link.delivered.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Juliet has one session, on node b, not yet available.
    fn juliet_on_node_b(core: &Core) -> (Arc<RecordingLink>, NodeId) {
        let link = Arc::new(RecordingLink::default());
        let node = NodeId::new("b");
        let handle = SessionHandle::remote(41, node.clone(), link.clone());
        core.router.bind("juliet", "balcony", handle, meta());
        (link, node)
    }

    #[tokio::test]
    async fn stanzas_reach_a_remote_session_over_its_node_link() {
        let dir = tempfile::tempdir().unwrap();
        let core = test_core(dir.path());
        let (link, node) = juliet_on_node_b(&core);
        core.route(chat("romeo@example.net/orchard", "juliet@example.com/balcony"))
            .await;
        let got = delivered(&link);
        assert_eq!(got.len(), 1);
        assert_eq!((&got[0].0, got[0].1), (&node, 41));
        assert!(got[0].2.contains("<body>hi</body>"), "{}", got[0].2);
        // Available on its node with a non-negative priority: bare-JID chat goes there too.
        let presence = Arc::new(Element::new("presence", ns::CLIENT));
        core.router
            .set_remote_presence("juliet", "balcony", &node, 41, Some((presence, 0)));
        core.route(chat("romeo@example.net/orchard", "juliet@example.com"))
            .await;
        assert_eq!(delivered(&link).len(), 2);
    }

    #[tokio::test]
    async fn a_chat_nobody_can_take_is_stored_offline() {
        let dir = tempfile::tempdir().unwrap();
        let core = test_core(dir.path());
        let credentials = sb_store::UserCredentials::new("pencil").unwrap();
        core.storage
            .store()
            .apply(&sb_store::ConfigChange::AddUser {
                name: "juliet".into(),
                credentials,
            })
            .unwrap();
        let (link, _) = juliet_on_node_b(&core);
        core.route(chat("romeo@example.net/orchard", "juliet@example.com"))
            .await;
        assert!(delivered(&link).is_empty());
        let stored = core.storage.take_offline("juliet").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert!(String::from_utf8_lossy(&stored[0]).contains("<body>hi</body>"));
    }

    #[tokio::test]
    async fn no_such_account_bounces_a_message_and_ignores_presence() {
        let dir = tempfile::tempdir().unwrap();
        let core = test_core(dir.path());
        let (tx, mut rx) = mpsc::channel(8);
        let romeo = SessionHandle::new(core.router.next_session_id(), tx, Arc::new(SessionControl::default()));
        core.router.bind("romeo", "orchard", romeo, meta());
        let presence = Element::new("presence", ns::CLIENT)
            .with_attr("from", "romeo@example.com/orchard")
            .with_attr("to", "nobody@example.com");
        core.route(presence).await;
        assert!(rx.try_recv().is_err(), "presence to nobody is ignored");
        core.route(chat("romeo@example.com/orchard", "nobody@example.com"))
            .await;
        let Ok(Outbound::Stanza(error)) = rx.try_recv() else {
            panic!("no bounce");
        };
        assert_eq!(error.attr("type"), Some("error"));
        assert!(error.to_xml().contains("service-unavailable"), "{}", error.to_xml());
    }

    #[test]
    fn errors_and_iq_results_are_never_answered() {
        let m = |t: Option<&str>| Element::new("message", ns::CLIENT).with_opt_attr("type", t);
        assert!(may_bounce(&m(None)));
        assert!(may_bounce(&m(Some("chat"))));
        assert!(!may_bounce(&m(Some("error"))));
        let iq = |t: &str| Element::new("iq", ns::CLIENT).with_attr("type", t);
        assert!(may_bounce(&iq("get")));
        assert!(!may_bounce(&iq("result")));
        assert!(!may_bounce(&iq("error")));
    }
}
