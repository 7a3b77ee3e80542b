//! The `type` of a presence stanza (RFC 6121 §4.7.1), typed once where a stanza is read so
//! the rest of the code never compares strings.

use crate::Element;

/// A presence stanza's `type`; no attribute means available.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PresenceType {
    Available,
    Unavailable,
    Subscription(SubscriptionType),
    Probe,
    Error,
}

/// The four presence types that manage a subscription (RFC 6121 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionType {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl PresenceType {
    /// The type of `presence`; `None` for a value RFC 6121 does not define.
    pub fn of(presence: &Element) -> Option<PresenceType> {
        match presence.attr("type") {
            None => Some(PresenceType::Available),
            Some(value) => PresenceType::parse(value),
        }
    }

    /// The type an attribute value names; `None` for an unknown one. `available` is not
    /// a value on the wire (available presence has no `type`), but is accepted as one.
    pub fn parse(value: &str) -> Option<PresenceType> {
        Some(match value {
            "available" => PresenceType::Available,
            "unavailable" => PresenceType::Unavailable,
            "probe" => PresenceType::Probe,
            "error" => PresenceType::Error,
            other => PresenceType::Subscription(SubscriptionType::parse(other)?),
        })
    }

    /// The `type` attribute value; `None` for available presence, which has none.
    pub fn attr_value(self) -> Option<&'static str> {
        match self {
            PresenceType::Available => None,
            PresenceType::Unavailable => Some("unavailable"),
            PresenceType::Subscription(kind) => Some(kind.as_str()),
            PresenceType::Probe => Some("probe"),
            PresenceType::Error => Some("error"),
        }
    }
}

impl SubscriptionType {
    pub fn parse(value: &str) -> Option<SubscriptionType> {
        match value {
            "subscribe" => Some(SubscriptionType::Subscribe),
            "subscribed" => Some(SubscriptionType::Subscribed),
            "unsubscribe" => Some(SubscriptionType::Unsubscribe),
            "unsubscribed" => Some(SubscriptionType::Unsubscribed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Subscribe => "subscribe",
            SubscriptionType::Subscribed => "subscribed",
            SubscriptionType::Unsubscribe => "unsubscribe",
            SubscriptionType::Unsubscribed => "unsubscribed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns;

    #[test]
    fn every_type_round_trips_and_unknown_ones_are_refused() {
        let presence = |t: Option<&str>| Element::new("presence", ns::CLIENT).with_opt_attr("type", t);
        assert_eq!(PresenceType::of(&presence(None)), Some(PresenceType::Available));
        for value in [
            "unavailable",
            "subscribe",
            "subscribed",
            "unsubscribe",
            "unsubscribed",
            "probe",
            "error",
        ] {
            let kind = PresenceType::of(&presence(Some(value))).unwrap();
            assert_eq!(kind.attr_value(), Some(value));
        }
        assert_eq!(PresenceType::of(&presence(Some("invisible"))), None);
        assert_eq!(PresenceType::of(&presence(Some("Subscribe"))), None);
        assert_eq!(PresenceType::parse("available"), Some(PresenceType::Available));
        assert_eq!(PresenceType::Available.attr_value(), None);
    }
}
