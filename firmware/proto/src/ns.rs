//! Namespace names used across the protocol.

pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const CLIENT: &str = "jabber:client";
pub const SERVER: &str = "jabber:server";
pub const COMPONENT: &str = "jabber:component:accept";
pub const DIALBACK: &str = "jabber:server:dialback";
pub const STREAMS_ERROR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZAS_ERROR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const ROSTER: &str = "jabber:iq:roster";
pub const VERSION: &str = "jabber:iq:version";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const PING: &str = "urn:xmpp:ping";
pub const DELAY: &str = "urn:xmpp:delay";
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Whether `namespace` is one of the namespaces stanzas travel in on some stream.
pub fn is_stanza_namespace(namespace: &str) -> bool {
    matches!(namespace, CLIENT | SERVER | COMPONENT)
}

/// Prefixes the serializer uses for namespaces that are declared once on the stream
/// header (`<stream:features/>`, `<db:result/>`) instead of on every element.
pub fn stream_prefix(ns: &str) -> Option<&'static str> {
    match ns {
        STREAM => Some("stream"),
        DIALBACK => Some("db"),
        _ => None,
    }
}
