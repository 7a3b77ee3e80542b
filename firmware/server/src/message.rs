//! Message delivery to local accounts (RFC 6121 §8.5): full JIDs, bare JIDs by priority,
//! and offline storage when no resource can take a bare-JID message.

use crate::core::Core;
use crate::no_local_session::{Missing, NoLocalSession, no_local_session};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition};

/// How a message `type` is treated (RFC 6121 §5.2.2: an unknown type is `normal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

impl MessageType {
    pub fn of(message: &Element) -> MessageType {
        match message.attr("type") {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        }
    }
}

/// Indices of the resources a bare-JID chat/normal message goes to: every available
/// resource sharing the highest non-negative priority (RFC 6121 §8.5.2.1.1 allows
/// delivering to all of them rather than picking one).
pub fn highest_priority(priorities: &[i8]) -> Vec<usize> {
    let Some(best) = priorities.iter().copied().filter(|p| *p >= 0).max() else {
        return Vec::new();
    };
    priorities
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == best)
        .map(|(i, _)| i)
        .collect()
}

pub async fn deliver_to_account(core: &Core, message: Element, to: &Jid, user: &str) {
    let kind = MessageType::of(&message);
    if let Some(resource) = to.resource() {
        if let Some(target) = core.router.resource(user, resource) {
            core.send_to_session(&target.handle, message).await;
            return;
        }
        match no_local_session(&message, Missing::Resource) {
            NoLocalSession::AsBareJid => {}
            decision => return core.settle_without_session(message, user, decision).await,
        }
    }
    let available = core.router.available_resources(user);
    match kind {
        MessageType::Error => {}
        MessageType::Groupchat => {
            core.bounce(&message, StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
                .await
        }
        MessageType::Headline => {
            // Headlines are delivered to every eligible resource, never stored.
            let eligible: Vec<_> = available.iter().filter(|r| r.priority >= 0).collect();
            if eligible.is_empty() {
                let decision = no_local_session(&message, Missing::AvailableResource);
                return core.settle_without_session(message, user, decision).await;
            }
            for target in eligible {
                core.send_to_session(&target.handle, message.clone()).await;
            }
        }
        MessageType::Normal | MessageType::Chat => {
            let priorities: Vec<i8> = available.iter().map(|r| r.priority).collect();
            let chosen = highest_priority(&priorities);
            if chosen.is_empty() {
                let decision = no_local_session(&message, Missing::AvailableResource);
                return core.settle_without_session(message, user, decision).await;
            }
            for index in chosen {
                core.send_to_session(&available[index].handle, message.clone()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::ns;

    #[test]
    fn highest_non_negative_priority_wins_and_ties_all_get_it() {
        assert_eq!(highest_priority(&[1, 5, 5, -1]), vec![1, 2]);
        assert_eq!(highest_priority(&[0]), vec![0]);
        assert!(highest_priority(&[-1, -5]).is_empty());
        assert!(highest_priority(&[]).is_empty());
    }

    #[test]
    fn unknown_type_is_normal() {
        let m = |t: &str| Element::new("message", ns::CLIENT).with_attr("type", t);
        assert_eq!(MessageType::of(&m("bogus")), MessageType::Normal);
        assert_eq!(MessageType::of(&m("chat")), MessageType::Chat);
        assert_eq!(
            MessageType::of(&Element::new("message", ns::CLIENT)),
            MessageType::Normal
        );
    }
}
