//! Typed XMPP errors (RFC 6120 §4.9 stream errors, §8.3 stanza errors).

use crate::element::Element;
use crate::ns;

macro_rules! conditions {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The element name of the condition, as on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

conditions!(
    /// RFC 6120 §4.9.3 stream error conditions.
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
);

conditions!(
    /// RFC 6120 §8.3.3 stanza error conditions.
    StanzaErrorCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
);

/// A stream-level error: fatal to the stream, sent as `<stream:error/>` before closing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream error <{condition}/>{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError { condition, text: None }
    }

    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    pub fn to_element(&self) -> Element {
        let mut e =
            Element::new("error", ns::STREAM).with_child(Element::new(self.condition.as_str(), ns::STREAMS_ERROR));
        if let Some(t) = &self.text {
            e.push_child(
                Element::new("text", ns::STREAMS_ERROR)
                    .with_attr("xml:lang", "en")
                    .with_text(t.clone()),
            );
        }
        e
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl StanzaErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            StanzaErrorType::Auth => "auth",
            StanzaErrorType::Cancel => "cancel",
            StanzaErrorType::Continue => "continue",
            StanzaErrorType::Modify => "modify",
            StanzaErrorType::Wait => "wait",
        }
    }
}

/// A stanza-level error: the stream survives; the offending stanza is answered with
/// `type='error'`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stanza error <{condition}/> ({})", kind.as_str())]
pub struct StanzaError {
    pub kind: StanzaErrorType,
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
}

impl StanzaError {
    /// An error with the type RFC 6120 §8.3.3 suggests for the condition.
    pub fn new(condition: StanzaErrorCondition) -> Self {
        use StanzaErrorCondition::*;
        let kind = match condition {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => StanzaErrorType::Modify,
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => StanzaErrorType::Auth,
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                StanzaErrorType::Wait
            }
            _ => StanzaErrorType::Cancel,
        };
        StanzaError {
            kind,
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: StanzaErrorCondition, text: impl Into<String>) -> Self {
        StanzaError {
            text: Some(text.into()),
            ..StanzaError::new(condition)
        }
    }

    /// The `<error/>` child, in the namespace of the stream the stanza travels on.
    pub fn to_element(&self, stanza_ns: &str) -> Element {
        let mut e = Element::new("error", stanza_ns)
            .with_attr("type", self.kind.as_str())
            .with_child(Element::new(self.condition.as_str(), ns::STANZAS_ERROR));
        if let Some(t) = &self.text {
            e.push_child(
                Element::new("text", ns::STANZAS_ERROR)
                    .with_attr("xml:lang", "en")
                    .with_text(t.clone()),
            );
        }
        e
    }

    /// Turn `stanza` into its error reply: addresses swapped, `type='error'`, the
    /// original payload kept (RFC 6120 §8.3.1 allows it and it helps the sender match
    /// the reply), and the error element appended.
    pub fn reply_to(&self, stanza: &Element) -> Element {
        let mut reply = Element::new(stanza.name.clone(), stanza.ns.clone());
        if let Some(id) = stanza.attr("id") {
            reply.set_attr("id", id);
        }
        if let Some(from) = stanza.attr("to") {
            reply.set_attr("from", from);
        }
        if let Some(to) = stanza.attr("from") {
            reply.set_attr("to", to);
        }
        reply.set_attr("type", "error");
        reply.children = stanza
            .children
            .iter()
            .filter(|n| !matches!(n, crate::Node::Element(e) if e.name == "error"))
            .cloned()
            .collect();
        reply.push_child(self.to_element(&stanza.ns));
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_names_round_trip() {
        for c in [
            StreamErrorCondition::PolicyViolation,
            StreamErrorCondition::RestrictedXml,
            StreamErrorCondition::HostUnknown,
        ] {
            assert_eq!(StreamErrorCondition::from_name(c.as_str()), Some(c));
        }
        assert_eq!(
            StanzaErrorCondition::from_name("jid-malformed"),
            Some(StanzaErrorCondition::JidMalformed)
        );
        assert_eq!(StanzaErrorCondition::from_name("nonsense"), None);
    }

    #[test]
    fn error_reply_swaps_addresses() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("from", "a@x/r")
            .with_attr("to", "x")
            .with_attr("id", "7")
            .with_attr("type", "get")
            .with_child(Element::new("query", "urn:unknown"));
        let reply = StanzaError::new(StanzaErrorCondition::ServiceUnavailable).reply_to(&iq);
        assert_eq!(reply.attr("to"), Some("a@x/r"));
        assert_eq!(reply.attr("from"), Some("x"));
        assert_eq!(reply.attr("type"), Some("error"));
        let err = reply.get_child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("cancel"));
        assert!(err.has_child("service-unavailable", ns::STANZAS_ERROR));
    }
}
