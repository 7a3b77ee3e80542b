//! What happens to a stanza for a local account when no session here can take it
//! (RFC 6121 §8.5). Every branch that finds no session asks [`no_local_session`], so the
//! cluster has one place to change: a session on another node is then found before this
//! decision is needed, and the decision itself stays the RFC's.

use crate::delivery::StanzaKind;
use crate::message::MessageType;
use sb_proto::{Element, PresenceType, StanzaErrorCondition};

/// What was looked for and not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The account does not exist (and has no session).
    Account,
    /// The full JID's resource is not bound.
    Resource,
    /// The bare JID has no resource that may receive the stanza: none is available, or,
    /// for messages, none has a non-negative priority.
    AvailableResource,
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoLocalSession {
    /// Store the message for the account's next session (XEP-0160).
    StoreOffline,
    /// Answer the sender with this error (never done for errors and iq results: see
    /// [`crate::delivery::may_bounce`]).
    Bounce(StanzaErrorCondition),
    /// Ignore the stanza silently.
    Drop,
    /// Handle the stanza as if it were addressed to the bare JID (RFC 6121 §8.5.3.2.1).
    AsBareJid,
    /// Answer the probe on the account's behalf with unavailable presence (RFC 6121 §4.3.2).
    AnswerProbe,
    /// The server answers the iq on the account's behalf (RFC 6120 §10.3.3).
    AnswerForAccount,
}

/// The RFC 6121 §8.5 rule for `stanza`, addressed to a local account, when `missing`.
pub fn no_local_session(stanza: &Element, missing: Missing) -> NoLocalSession {
    use NoLocalSession::*;
    let service_unavailable = Bounce(StanzaErrorCondition::ServiceUnavailable);
    match (StanzaKind::of(stanza), missing) {
        (None, _) => Drop,
        // §8.5.1: no such account. Presence (subscriptions included) is ignored.
        (Some(StanzaKind::Message | StanzaKind::Iq), Missing::Account) => service_unavailable,
        (Some(StanzaKind::Presence), Missing::Account) => Drop,
        // §8.5.3.2.1: a groupchat message to a resource that is gone is refused, the rest
        // goes to the bare JID.
        (Some(StanzaKind::Message), Missing::Resource) => match MessageType::of(stanza) {
            MessageType::Groupchat => service_unavailable,
            _ => AsBareJid,
        },
        // §8.5.2.2: no resource for a bare-JID message.
        (Some(StanzaKind::Message), Missing::AvailableResource) => match MessageType::of(stanza) {
            MessageType::Normal | MessageType::Chat => StoreOffline,
            MessageType::Groupchat => service_unavailable,
            MessageType::Headline | MessageType::Error => Drop,
        },
        // §8.5.3.2.1: presence for a resource that is gone is ignored; a probe is always
        // answered by the server, so one with no available resource gets `unavailable`.
        (Some(StanzaKind::Presence), Missing::Resource | Missing::AvailableResource) => {
            match PresenceType::of(stanza) {
                Some(PresenceType::Probe) => AnswerProbe,
                // Subscription requests are not lost: the roster keeps them pending and
                // shows them again at the next initial presence (RFC 6121 §3.1.3).
                _ => Drop,
            }
        }
        // §8.5.3.2.1 (RFC 6120 §10.5.3.2): an iq for a resource that is gone.
        (Some(StanzaKind::Iq), Missing::Resource) => service_unavailable,
        (Some(StanzaKind::Iq), Missing::AvailableResource) => AnswerForAccount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NoLocalSession::*;
    use sb_proto::ns;

    fn message(kind: Option<&str>) -> Element {
        Element::new("message", ns::CLIENT).with_opt_attr("type", kind)
    }

    fn presence(kind: Option<&str>) -> Element {
        Element::new("presence", ns::CLIENT).with_opt_attr("type", kind)
    }

    const SERVICE_UNAVAILABLE: NoLocalSession = Bounce(StanzaErrorCondition::ServiceUnavailable);

    #[test]
    fn no_such_account() {
        assert_eq!(
            no_local_session(&message(Some("chat")), Missing::Account),
            SERVICE_UNAVAILABLE
        );
        let iq = Element::new("iq", ns::CLIENT).with_attr("type", "get");
        assert_eq!(no_local_session(&iq, Missing::Account), SERVICE_UNAVAILABLE);
        for kind in [None, Some("subscribe"), Some("probe")] {
            assert_eq!(no_local_session(&presence(kind), Missing::Account), Drop);
        }
        assert_eq!(
            no_local_session(&Element::new("other", ns::CLIENT), Missing::Account),
            Drop
        );
    }

    #[test]
    fn messages() {
        let resource_gone = |kind| no_local_session(&message(kind), Missing::Resource);
        assert_eq!(resource_gone(Some("groupchat")), SERVICE_UNAVAILABLE);
        for kind in [None, Some("chat"), Some("headline"), Some("error"), Some("bogus")] {
            assert_eq!(resource_gone(kind), AsBareJid, "{kind:?}");
        }
        let nobody_available = |kind| no_local_session(&message(kind), Missing::AvailableResource);
        assert_eq!(nobody_available(None), StoreOffline);
        assert_eq!(nobody_available(Some("chat")), StoreOffline);
        assert_eq!(nobody_available(Some("bogus")), StoreOffline);
        assert_eq!(nobody_available(Some("groupchat")), SERVICE_UNAVAILABLE);
        assert_eq!(nobody_available(Some("headline")), Drop);
        assert_eq!(nobody_available(Some("error")), Drop);
    }

    #[test]
    fn presence_and_probes() {
        for missing in [Missing::Resource, Missing::AvailableResource] {
            assert_eq!(no_local_session(&presence(None), missing), Drop);
            assert_eq!(no_local_session(&presence(Some("unavailable")), missing), Drop);
            assert_eq!(no_local_session(&presence(Some("error")), missing), Drop);
            assert_eq!(no_local_session(&presence(Some("subscribe")), missing), Drop);
            assert_eq!(no_local_session(&presence(Some("probe")), missing), AnswerProbe);
        }
    }

    #[test]
    fn iqs() {
        let iq = Element::new("iq", ns::CLIENT).with_attr("type", "get");
        assert_eq!(no_local_session(&iq, Missing::Resource), SERVICE_UNAVAILABLE);
        assert_eq!(no_local_session(&iq, Missing::AvailableResource), AnswerForAccount);
    }
}
