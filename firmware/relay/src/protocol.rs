//! What nodes tell each other over the relay channel, in one place: JSON with a version, so
//! a node refuses what a newer one sends instead of misreading it.
//!
//! Stanzas travel as the bytes a `jabber:client` stream carries (no `xmlns` on the top
//! element), so the node holding the session writes them out without parsing them; they are
//! parsed only when they must be routed again.

use sb_proto::{Element, FramerConfig, StreamEvent, StreamFramer, ns};
use sb_server::router::SessionId;
use serde::{Deserialize, Serialize};

/// The protocol version this node speaks. Raised when a message changes meaning; a node
/// drops (and logs) messages of another version.
pub const VERSION: u16 = 1;

/// Largest stanza accepted from another node (the c2s limit is lower; this only bounds the
/// parser on the relay path).
const MAX_STANZA_BYTES: usize = 4 * 1024 * 1024;

/// One relay payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    pub msg: Message,
}

/// A session of the sending node, as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// Normalized localpart.
    pub user: String,
    pub resource: String,
    /// The session's id on the sending node.
    pub session: SessionId,
    /// When the sender bound it, in Unix milliseconds: of two sessions on one full JID the
    /// later bind wins (RFC 6120 §7.7.2.2); ties go to the higher node id.
    pub bound_at_ms: u64,
    /// Broadcast presence as `jabber:client` bytes; `None` while unavailable.
    pub presence: Option<String>,
    pub priority: i8,
    /// The session asked for the roster: roster pushes made on any node go to it.
    #[serde(default)]
    pub roster_interested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A session of the sender bound `user/resource`.
    Bound(SessionEntry),
    /// The sender's session `session` no longer holds `user/resource`.
    Unbound {
        user: String,
        resource: String,
        session: SessionId,
    },
    /// The broadcast presence of the sender's session changed (`None`: unavailable).
    Presence {
        user: String,
        resource: String,
        session: SessionId,
        presence: Option<String>,
        priority: i8,
    },
    /// The sender's session asked for the roster (RFC 6121 §2.1.6 interested resource).
    RosterInterested {
        user: String,
        resource: String,
        session: SessionId,
    },
    /// Everything the sender has: the receiver replaces all it knew from it.
    Snapshot {
        sessions: Vec<SessionEntry>,
        components: Vec<String>,
    },
    /// A component for `domain` connected to the sender.
    ComponentUp { domain: String },
    /// The sender's component for `domain` went away.
    ComponentDown { domain: String },
    /// Deliver `stanza` to the receiver's session `session`; `hops` counts how often it was
    /// routed again on the way (bounded, so two nodes with stale directories cannot bounce a
    /// stanza between them forever).
    Deliver {
        session: SessionId,
        stanza: String,
        hops: u8,
        /// The sender's applied log index when it sent the stanza: the receiver handles it
        /// once it applied that far too, so what the sender wrote before (a roster change
        /// behind a subscription request) is what the receiver reads after.
        #[serde(default)]
        after: Option<u64>,
    },
    /// Hand `stanza` to the receiver's component for `domain`.
    ToComponent {
        domain: String,
        stanza: String,
        hops: u8,
        #[serde(default)]
        after: Option<u64>,
    },
    /// Close the receiver's session `session` with the stream error `condition`.
    Close {
        session: SessionId,
        condition: String,
        text: Option<String>,
    },
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let envelope = EnvelopeRef { v: VERSION, msg: self };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, ProtocolError> {
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| ProtocolError::Unreadable(e.to_string()))?;
        if envelope.v != VERSION {
            return Err(ProtocolError::Version(envelope.v));
        }
        Ok(envelope.msg)
    }
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    v: u16,
    msg: &'a Message,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unreadable relay message: {0}")]
    Unreadable(String),
    #[error("relay message of protocol version {0} (this node speaks {VERSION})")]
    Version(u16),
    #[error("unreadable stanza: {0}")]
    Stanza(String),
}

/// A stanza as a `jabber:client` stream carries it.
pub fn stanza_text(stanza: &Element) -> String {
    String::from_utf8_lossy(&stanza.to_bytes(ns::CLIENT)).into_owned()
}

/// Parse what [`stanza_text`] made (or raw `jabber:client` bytes) back into an element.
pub fn parse_stanza(text: &[u8]) -> Result<Element, ProtocolError> {
    let mut framer = StreamFramer::new(FramerConfig::with_max_stanza_bytes(MAX_STANZA_BYTES));
    framer.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    framer.feed(text);
    loop {
        match framer.next_event() {
            Ok(Some(StreamEvent::Element(element))) => return Ok(element),
            Ok(Some(StreamEvent::Header(_))) => continue,
            Ok(Some(StreamEvent::End)) | Ok(None) => {
                return Err(ProtocolError::Stanza("incomplete stanza".to_owned()));
            }
            Err(e) => return Err(ProtocolError::Stanza(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_other_versions_are_refused() {
        let msg = Message::Deliver {
            session: 7,
            stanza: "<message to='a@b'/>".into(),
            hops: 1,
            after: Some(12),
        };
        assert_eq!(Message::decode(&msg.encode()), Ok(msg));
        let future = br#"{"v":2,"msg":{"ComponentUp":{"domain":"cb.example.com"}}}"#;
        assert_eq!(Message::decode(future), Err(ProtocolError::Version(2)));
        assert!(matches!(
            Message::decode(b"nonsense"),
            Err(ProtocolError::Unreadable(_))
        ));
    }

    #[test]
    fn stanzas_survive_the_trip_in_the_client_namespace() {
        let stanza = Element::new("message", ns::CLIENT)
            .with_attr("to", "juliet@example.com/balcony")
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text("a < b & c"))
            .with_child(Element::new("x", "urn:example").with_attr("k", "'\""));
        let text = stanza_text(&stanza);
        assert!(!text.contains("jabber:client"), "{text}");
        assert_eq!(parse_stanza(text.as_bytes()).unwrap(), stanza);
        assert!(parse_stanza(b"<message").is_err());
        assert!(parse_stanza(b"</stream:stream>").is_err());
    }
}
