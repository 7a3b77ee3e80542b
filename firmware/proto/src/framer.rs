//! Incremental XMPP stream framer over quick-xml.
//!
//! CONTRACT (implementation pending, owned by the proto helper):
//! bytes in (any split), events out: the stream header, one complete top-level element
//! at a time, and the stream end. Restricted XML (RFC 6120 §11) and size/depth limits
//! are enforced here, returning `StreamError`s with the right condition.

use crate::element::Element;
use crate::error::StreamError;

#[derive(Clone, Debug)]
pub struct FramerConfig {
    /// Largest top-level element accepted, in bytes as received (default 256 KiB).
    pub max_stanza_bytes: usize,
    /// Deepest nesting accepted inside a top-level element.
    pub max_depth: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        FramerConfig {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
        }
    }
}

/// The attributes of an opening `<stream:stream>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// The default namespace declared on the header (`jabber:client`, ...).
    pub default_ns: String,
    /// Namespaces declared with a prefix on the header, e.g. `("db", "jabber:server:dialback")`.
    pub prefixes: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Header(StreamHeader),
    /// A complete top-level element (stanza or nonza), namespaces resolved.
    Element(Element),
    /// `</stream:stream>` received.
    End,
}

pub struct StreamFramer {
    config: FramerConfig,
}

impl StreamFramer {
    pub fn new(config: FramerConfig) -> Self {
        StreamFramer { config }
    }

    pub fn config(&self) -> &FramerConfig {
        &self.config
    }

    /// Append received bytes.
    pub fn feed(&mut self, _data: &[u8]) {
        todo!("proto helper")
    }

    /// Next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        todo!("proto helper")
    }

    /// Forget everything buffered and expect a fresh stream header (after STARTTLS and
    /// after SASL success, RFC 6120 §5.4.3.3 / §6.4.6).
    pub fn reset(&mut self) {
        todo!("proto helper")
    }
}
