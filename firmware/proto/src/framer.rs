//! Incremental XMPP stream framer over quick-xml.
//!
//! Bytes in (any split), events out: the stream header, one complete top-level element at
//! a time, and the stream end. Restricted XML (RFC 6120 §11) and size/depth limits are
//! enforced here and reported as `StreamError`s with the RFC's condition.
//!
//! How it stays linear and split-independent: the received bytes sit in one buffer. A small
//! resumable scanner finds where the next complete XML *unit* ends (a tag up to its
//! unquoted `>`, a CDATA section, a declaration, or a text run up to the next `<`),
//! remembering how far it looked so a unit arriving in tiny chunks is scanned once. Only a
//! complete unit is handed to quick-xml (which is neither incremental nor cancel-safe),
//! then its bytes are released. Unit boundaries do not depend on how the input was split,
//! so neither do the events or the errors.
//!
//! Error conditions chosen (RFC 6120 §4.9.3, §11):
//! - comments, DOCTYPE/DTD markup, processing instructions, and references to any entity
//!   other than the five predefined ones → `restricted-xml` (§11.1 lists entity references
//!   among the restricted features, so an undeclared entity is reported as restricted
//!   rather than merely not well-formed);
//! - anything that is not well-formed XML (syntax, mismatched end tags, invalid UTF-8,
//!   characters outside XML's `Char` production, including via `&#0;`-style references,
//!   non-whitespace text between stanzas) → `not-well-formed`;
//! - an unbound or illegally declared prefix → `bad-namespace-prefix`;
//! - a header that is not `stream` in `http://etherx.jabber.org/streams` → `invalid-namespace`;
//! - an XML declaration naming another encoding than UTF-8 → `unsupported-encoding`;
//! - a limit of [`FramerConfig`] exceeded → `policy-violation`: the stanza size, depth,
//!   attribute and node counts, a namespace URI's length, and the memory a stanza needs.
//!   These are the server's local policy on sizes, which is what RFC 6120 §4.9.3.12 names
//!   (its example is "a stanza exceeds a configured size limit"); `resource-constraint`
//!   (§4.9.3.15) would say the *server* is short of resources and invite a retry, and the
//!   XML is well-formed, so `not-well-formed` would be wrong.
//!
//! Leniency, on purpose: whitespace and a UTF-8 byte order mark may precede the XML
//! declaration (some clients send a keepalive before their first header); a header
//! without `version` is reported, not refused (the session decides, RFC 6120 §4.7.5).
//!
//! Namespaces: the header's declarations are inherited by every top-level element.
//! `Element::ns` is the resolved URI and `name` the local name; `xmlns` declarations are
//! not kept in `attrs`, except the `xmlns:p` a prefixed attribute (`p:a`) needs so the
//! element can be re-serialized well-formed (see `bind_attribute_prefixes`). `xml:lang`
//! and other `xml:` attributes stay as they are.
//!
//! Memory: what a stanza costs is bounded by what it sent, not only its wire size. A namespace
//! URI is stored once per declaration and shared by every element in its scope
//! ([`Namespace`]); a URI is at most [`FramerConfig::max_namespace_bytes`] long; and the heap
//! a stanza's tree occupies (names, attributes, text, namespaces, the declarations kept for
//! prefixed attributes, each node and the spare capacity of its vectors) is counted as it
//! grows and may not exceed [`FramerConfig::stanza_memory_allowance`] plus
//! [`FramerConfig::memory_per_stanza_byte`] times the stanza's bytes received so far.
//! Unused vector capacity is returned when an element closes, so a released stanza holds
//! little slack while it waits in queues.
//!
//! After an error the framer is poisoned: it drops its buffer and returns the same error
//! again until [`StreamFramer::reset`].

use std::borrow::Cow;

use bytes::{Buf, BytesMut};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::element::{Element, Namespace, Node, escape_attr_into};
use crate::error::{StreamError, StreamErrorCondition};
use crate::ns;

/// The XML declaration written before an outgoing stream header.
pub const XML_DECLARATION: &[u8] = b"<?xml version='1.0'?>";

/// The closing tag of a stream, as both sides write it.
pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// Buffer capacity kept across an idle period; anything larger is returned to the allocator
/// once the buffer drains, so one big stanza does not pin memory for the session's life.
const RETAINED_CAPACITY: usize = 4096;

/// Namespace bindings kept allocated across stanzas (the header's and a few nested ones).
const RETAINED_BINDINGS: usize = 16;

/// Heap bytes of one `Node` slot in a children vector, and of one attribute pair.
const NODE_BYTES: usize = std::mem::size_of::<Node>();
const ATTRIBUTE_BYTES: usize = std::mem::size_of::<(String, String)>();
const BINDING_BYTES: usize = std::mem::size_of::<Binding>();

#[derive(Clone, Debug)]
pub struct FramerConfig {
    /// Largest top-level element accepted, in bytes as received (default 256 KiB). Counted
    /// from the `<` of its start tag; enforced while it is still arriving, so a peer
    /// streaming an endless stanza is cut off as soon as it exceeds the limit.
    pub max_stanza_bytes: usize,
    /// Deepest nesting accepted, the top-level element being depth 1 (default 32).
    pub max_depth: usize,
    /// Largest stream prologue: every byte from the start of the stream (byte order mark,
    /// XML declaration, whitespace) up to the `>` ending `<stream:stream ...>` (default 8 KiB;
    /// real headers are a few hundred bytes).
    pub max_header_bytes: usize,
    /// Most attributes on one element, namespace declarations included (default 64; stanzas
    /// carry a handful, the header fewer than ten).
    pub max_attributes: usize,
    /// Most nodes (elements and text runs) in one top-level element (default 8192). A
    /// 4-byte `<a/>` costs about a hundred bytes as a tree node, so this bounds the memory a
    /// dense stanza costs independently of its wire size.
    pub max_nodes: usize,
    /// Longest namespace URI accepted in an `xmlns` declaration, in bytes as decoded
    /// (default 1 KiB). Real URIs are under 100 bytes (`http://jabber.org/protocol/pubsub#event`
    /// is 39); 1 KiB leaves room for any vendor's while keeping one URI far below a stanza.
    pub max_namespace_bytes: usize,
    /// Heap any stanza may use for its tree whatever its size (default 64 KiB): small
    /// stanzas are never refused for being dense.
    pub stanza_memory_allowance: usize,
    /// Heap a stanza may use per byte received, on top of the allowance (default 16). The
    /// tree costs about 1 byte per byte of text and a fixed ~90 bytes per element or text
    /// node, so real stanzas stay well below 16 once past the allowance; a stanza that
    /// copies what it sent (prefixed attributes referring to a long URI declared once) is
    /// stopped. With the defaults one stanza's tree stays under 4.1 MiB.
    pub memory_per_stanza_byte: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        FramerConfig {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_header_bytes: 8 * 1024,
            max_attributes: 64,
            max_nodes: 8192,
            max_namespace_bytes: 1024,
            stanza_memory_allowance: 64 * 1024,
            memory_per_stanza_byte: 16,
        }
    }
}

impl FramerConfig {
    /// The defaults with another stanza size limit.
    pub fn with_max_stanza_bytes(max_stanza_bytes: usize) -> Self {
        FramerConfig {
            max_stanza_bytes,
            ..FramerConfig::default()
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
    /// The default namespace declared on the header (`jabber:client`, ...); empty when none.
    pub default_ns: String,
    /// Namespaces declared with a prefix on the header, e.g. `("db", "jabber:server:dialback")`.
    /// The stream namespace itself is implied and not listed, whatever prefix carried it.
    pub prefixes: Vec<(String, String)>,
}

impl StreamHeader {
    /// A header for an outgoing stream in `default_ns`, version 1.0, no addresses.
    pub fn new(default_ns: impl Into<String>) -> Self {
        StreamHeader {
            default_ns: default_ns.into(),
            version: Some("1.0".to_owned()),
            ..StreamHeader::default()
        }
    }

    /// Builder: declare a prefixed namespace, e.g. `with_prefix("db", ns::DIALBACK)`.
    pub fn with_prefix(mut self, prefix: impl Into<String>, uri: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let uri = uri.into();
        match self.prefixes.iter_mut().find(|(p, _)| *p == prefix) {
            Some(slot) => slot.1 = uri,
            None => self.prefixes.push((prefix, uri)),
        }
        self
    }

    /// The namespace bound to `prefix` on this header.
    pub fn prefix_ns(&self, prefix: &str) -> Option<&str> {
        self.prefixes.iter().find(|(p, _)| p == prefix).map(|(_, u)| u.as_str())
    }

    /// Whether the peer declared the dialback namespace (XEP-0220 §2.4: it signals support).
    pub fn declares_dialback(&self) -> bool {
        self.prefixes.iter().any(|(_, u)| u == ns::DIALBACK)
    }

    /// Whether the header announces XMPP 1.0 or a later 1.x (RFC 6120 §4.7.5); a missing
    /// version means a pre-RFC peer.
    pub fn is_version_1(&self) -> bool {
        self.version
            .as_deref()
            .and_then(|v| v.split_once('.').map(|(major, _)| major).or(Some(v)))
            .is_some_and(|major| major.trim_start_matches('0') == "1")
    }

    /// `invalid-namespace` unless the default namespace is `expected` (RFC 6120 §4.9.3.10).
    pub fn check_default_ns(&self, expected: &str) -> Result<(), StreamError> {
        if self.default_ns == expected {
            Ok(())
        } else {
            Err(StreamError::with_text(
                StreamErrorCondition::InvalidNamespace,
                format!("default namespace must be {expected}"),
            ))
        }
    }

    /// The XML declaration and the opening tag, ready to send:
    /// `<?xml version='1.0'?><stream:stream xmlns='…' xmlns:stream='…' [xmlns:p='…'] to='…'
    /// from='…' id='…' version='…' xml:lang='…'>`; absent fields are left out, values escaped.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(XML_DECLARATION);
        out.extend_from_slice(b"<stream:stream xmlns='");
        escape_attr_into(&mut out, &self.default_ns);
        out.extend_from_slice(b"' xmlns:stream='");
        out.extend_from_slice(ns::STREAM.as_bytes());
        out.push(b'\'');
        for (prefix, uri) in &self.prefixes {
            // The stream prefix is always written above; a second declaration would be a
            // duplicate attribute.
            if prefix == "stream" || !is_ncname(prefix) {
                continue;
            }
            out.extend_from_slice(b" xmlns:");
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr_into(&mut out, uri);
            out.push(b'\'');
        }
        for (key, value) in [
            ("to", &self.to),
            ("from", &self.from),
            ("id", &self.id),
            ("version", &self.version),
            ("xml:lang", &self.lang),
        ] {
            if let Some(value) = value {
                out.push(b' ');
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"='");
                escape_attr_into(&mut out, value);
                out.push(b'\'');
            }
        }
        out.push(b'>');
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Header(StreamHeader),
    /// A complete top-level element (stanza or nonza), namespaces resolved.
    Element(Element),
    /// `</stream:stream>` received.
    End,
}

#[derive(Clone, Debug)]
enum Phase {
    /// Before the stream header; `seen_markup` once a declaration was read, since the
    /// declaration is only allowed first.
    AwaitHeader {
        seen_markup: bool,
    },
    Open,
    /// The peer closed its stream; later bytes are ignored.
    Closed,
    Failed(StreamError),
}

/// A namespace binding in scope; `prefix == None` is the default namespace.
#[derive(Clone, Debug)]
struct Binding {
    prefix: Option<String>,
    uri: Namespace,
}

struct OpenElement {
    element: Element,
    /// The name as written, for the end-tag match (XML matches names literally).
    qname: String,
    /// Length of `bindings` before this element's declarations.
    bindings_mark: usize,
}

/// Where the scanner stopped inside the current, still incomplete unit.
#[derive(Clone, Copy, Debug, Default)]
struct ScanState {
    pos: usize,
    /// Inside an attribute value delimited by this quote.
    quote: Option<u8>,
    /// Right after an attribute value's closing quote.
    after_value: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UnitKind {
    Text,
    Tag,
    CData,
    ProcessingInstruction,
}

pub struct StreamFramer {
    config: FramerConfig,
    /// Received bytes not yet turned into events; always starts at a unit boundary.
    buf: BytesMut,
    /// Stream offset of `buf[0]`: bytes released since the last reset.
    base: u64,
    scan: ScanState,
    phase: Phase,
    /// The header's declarations, then each open element's, innermost last.
    bindings: Vec<Binding>,
    open: Vec<OpenElement>,
    /// The header's name as written, which the closing tag must repeat.
    header_qname: String,
    /// Stream offset of the unit being processed.
    unit_start: u64,
    /// Stream offset of the `<` starting the current top-level element.
    stanza_start: u64,
    stanza_nodes: usize,
    /// Heap bytes the current top-level element's tree (and the bindings it declared) holds.
    stanza_memory: usize,
    /// Stream offset just past the unit being processed.
    unit_end: u64,
    /// The fixed namespaces `resolve` may answer without a declaration.
    xml_ns: Namespace,
    no_ns: Namespace,
    /// A self-closing header (`<stream:stream/>`) is a header immediately followed by the end.
    end_pending: bool,
}

impl StreamFramer {
    pub fn new(config: FramerConfig) -> Self {
        StreamFramer {
            config,
            buf: BytesMut::new(),
            base: 0,
            scan: ScanState::default(),
            phase: Phase::AwaitHeader { seen_markup: false },
            bindings: Vec::new(),
            open: Vec::new(),
            header_qname: String::new(),
            unit_start: 0,
            stanza_start: 0,
            stanza_nodes: 0,
            stanza_memory: 0,
            unit_end: 0,
            xml_ns: Namespace::from(ns::XML),
            no_ns: Namespace::default(),
            end_pending: false,
        }
    }

    pub fn config(&self) -> &FramerConfig {
        &self.config
    }

    /// Append received bytes. Call [`next_event`](Self::next_event) until it returns
    /// `Ok(None)` after every feed: the limits are checked there.
    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.phase, Phase::Closed | Phase::Failed(_)) {
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet consumed by an event.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the header has been received and the stream has not ended or failed.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        if let Phase::Failed(err) = &self.phase {
            return Err(err.clone());
        }
        let result = self.advance();
        if let Err(err) = &result {
            self.phase = Phase::Failed(err.clone());
            self.buf = BytesMut::new();
            self.open.clear();
            self.bindings.clear();
        }
        result
    }

    /// Forget everything buffered and expect a fresh stream header (after STARTTLS and
    /// after SASL success, RFC 6120 §5.4.3.3 / §6.4.6). Discarding buffered bytes is what
    /// STARTTLS needs: plaintext sent after `<starttls/>` must never be read as if it had
    /// come over TLS.
    pub fn reset(&mut self) {
        *self = StreamFramer::new(self.config.clone());
    }

    /// Expect a fresh stream header but keep bytes already received after the last event.
    /// For the restart after SASL success, where a client may have sent its new header in
    /// the same segment as (or right behind) what the server just processed.
    pub fn restart(&mut self) {
        let pending = std::mem::take(&mut self.buf);
        let failed_or_closed = matches!(self.phase, Phase::Failed(_) | Phase::Closed);
        self.reset();
        if !failed_or_closed {
            self.buf = pending;
        }
    }

    fn advance(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        loop {
            if self.end_pending {
                self.end_pending = false;
                self.phase = Phase::Closed;
                return Ok(Some(StreamEvent::End));
            }
            if matches!(self.phase, Phase::Closed) {
                self.buf = BytesMut::new();
                return Ok(None);
            }
            if self.at_top_level() && !self.skip_top_level_whitespace()? {
                self.release_memory();
                return Ok(None);
            }
            let budget = self.unit_budget();
            let Some((kind, len)) = self.find_unit(budget)? else {
                if self.buf.len() > budget {
                    return Err(self.limit_error());
                }
                return Ok(None);
            };
            // The unit is processed in place: the buffer is lent out for the call instead
            // of splitting it, which would allocate a shared handle per unit.
            let buf = std::mem::take(&mut self.buf);
            self.unit_start = self.base;
            self.unit_end = self.base + len as u64;
            let result = self.process_unit(kind, &buf[..len]);
            self.buf = buf;
            self.buf.advance(len);
            self.base += len as u64;
            self.scan = ScanState::default();
            if matches!(self.phase, Phase::Closed) {
                self.buf = BytesMut::new();
            }
            if let Some(event) = result? {
                self.release_memory();
                return Ok(Some(event));
            }
        }
    }

    fn at_top_level(&self) -> bool {
        match self.phase {
            Phase::AwaitHeader { .. } => true,
            Phase::Open => self.open.is_empty(),
            Phase::Closed | Phase::Failed(_) => false,
        }
    }

    /// Drop whitespace between top-level units (keepalives included, so they never pile
    /// up in the buffer). Returns false when the buffer holds nothing else yet.
    fn skip_top_level_whitespace(&mut self) -> Result<bool, StreamError> {
        if self.base == 0 && matches!(self.phase, Phase::AwaitHeader { seen_markup: false }) {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) && !self.buf.is_empty() {
                return Ok(false);
            }
            if self.buf.starts_with(BOM) {
                self.buf.advance(BOM.len());
                self.base += BOM.len() as u64;
            }
        }
        let whitespace = self.buf.iter().take_while(|b| is_xml_whitespace(**b)).count();
        if whitespace > 0 {
            self.buf.advance(whitespace);
            self.base += whitespace as u64;
            if matches!(self.phase, Phase::AwaitHeader { .. }) && self.base > self.config.max_header_bytes as u64 {
                return Err(self.header_too_large());
            }
        }
        match self.buf.first() {
            None => Ok(false),
            Some(b'<') => Ok(true),
            Some(_) => Err(not_well_formed(match self.phase {
                Phase::AwaitHeader { .. } => "text before the stream header",
                _ => "text outside of a stanza",
            })),
        }
    }

    /// Find the end of the unit starting at `buf[0]`, resuming where the last call stopped.
    /// Only the first `budget` bytes are looked at.
    fn find_unit(&mut self, budget: usize) -> Result<Option<(UnitKind, usize)>, StreamError> {
        let buf = &self.buf[..self.buf.len().min(budget)];
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first != b'<' {
            return Ok(match buf[self.scan.pos..].iter().position(|b| *b == b'<') {
                Some(i) => Some((UnitKind::Text, self.scan.pos + i)),
                None => {
                    self.scan.pos = buf.len();
                    None
                }
            });
        }
        let Some(&second) = buf.get(1) else {
            return Ok(None);
        };
        match second {
            b'?' => {
                // `<?x?>` is the shortest complete one: the closing `?` sits at index 3 or later.
                let from = self.scan.pos.max(4);
                for i in from..buf.len() {
                    if buf[i] == b'>' && buf[i - 1] == b'?' {
                        return Ok(Some((UnitKind::ProcessingInstruction, i + 1)));
                    }
                }
                self.scan.pos = buf.len().max(from);
                Ok(None)
            }
            b'!' => {
                const CDATA_OPEN: &[u8] = b"<![CDATA[";
                const COMMENT_OPEN: &[u8] = b"<!--";
                if buf.starts_with(COMMENT_OPEN) {
                    return Err(restricted("comments are not allowed"));
                }
                if buf.starts_with(CDATA_OPEN) {
                    // `<![CDATA[]]>`: the earliest possible `>` is at index 11.
                    let from = self.scan.pos.max(CDATA_OPEN.len() + 2);
                    for i in from..buf.len() {
                        if buf[i] == b'>' && &buf[i - 2..i] == b"]]" {
                            return Ok(Some((UnitKind::CData, i + 1)));
                        }
                    }
                    self.scan.pos = buf.len().max(from);
                    return Ok(None);
                }
                if CDATA_OPEN.starts_with(buf) || COMMENT_OPEN.starts_with(buf) {
                    return Ok(None);
                }
                if buf.get(2).is_some_and(|b| b.is_ascii_uppercase()) {
                    Err(restricted("DTD declarations are not allowed"))
                } else {
                    Err(not_well_formed("malformed markup after '<!'"))
                }
            }
            _ => {
                let mut quote = self.scan.quote;
                let mut after_value = self.scan.after_value;
                let from = self.scan.pos.max(1);
                for (i, &b) in buf.iter().enumerate().skip(from) {
                    match quote {
                        Some(q) if b == q => {
                            quote = None;
                            after_value = true;
                        }
                        Some(_) if b == b'<' => return Err(not_well_formed("'<' in an attribute value")),
                        Some(_) => {}
                        // XML wants whitespace between attributes (`a='1'b='2'` is not
                        // well-formed) and quick-xml would let it pass.
                        None if after_value && !matches!(b, b'>' | b'/') && !is_xml_whitespace(b) => {
                            return Err(not_well_formed("attributes must be separated by whitespace"));
                        }
                        None => {
                            after_value = false;
                            match b {
                                b'\'' | b'"' => quote = Some(b),
                                b'>' => return Ok(Some((UnitKind::Tag, i + 1))),
                                b'<' => return Err(not_well_formed("'<' inside a tag")),
                                _ => {}
                            }
                        }
                    }
                }
                self.scan = ScanState {
                    pos: buf.len(),
                    quote,
                    after_value,
                };
                Ok(None)
            }
        }
    }

    /// How many bytes from `buf[0]` the current unit may span before a limit is exceeded:
    /// the header counts from the start of the stream, a unit inside a stanza from the
    /// stanza's `<`, a top-level unit from its own first byte. Scanning never looks past it,
    /// so an oversized unit is reported the same way however its bytes arrived.
    fn unit_budget(&self) -> usize {
        let (limit, used) = match self.phase {
            Phase::AwaitHeader { .. } => (self.config.max_header_bytes, self.base),
            Phase::Open if self.open.is_empty() => (self.config.max_stanza_bytes, 0),
            Phase::Open => (self.config.max_stanza_bytes, self.base - self.stanza_start),
            Phase::Closed | Phase::Failed(_) => return usize::MAX,
        };
        usize::try_from(used).map_or(0, |used| limit.saturating_sub(used))
    }

    fn limit_error(&self) -> StreamError {
        match self.phase {
            Phase::AwaitHeader { .. } => self.header_too_large(),
            _ => policy_violation(format!("stanza exceeds {} bytes", self.config.max_stanza_bytes)),
        }
    }

    fn header_too_large(&self) -> StreamError {
        policy_violation(format!("stream header exceeds {} bytes", self.config.max_header_bytes))
    }

    fn release_memory(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > RETAINED_CAPACITY {
            self.buf = BytesMut::new();
        }
    }

    fn process_unit(&mut self, kind: UnitKind, unit: &[u8]) -> Result<Option<StreamEvent>, StreamError> {
        let text = std::str::from_utf8(unit).map_err(|_| not_well_formed("invalid UTF-8"))?;
        match kind {
            UnitKind::Text => {
                // Top-level text never gets here: it is whitespace, skipped, or an error.
                let value = unescape(text, false)?;
                self.append_text(value)?;
                Ok(None)
            }
            UnitKind::CData => {
                if self.at_top_level() {
                    return Err(not_well_formed("CDATA outside of a stanza"));
                }
                let content = &text[b"<![CDATA[".len()..text.len() - b"]]>".len()];
                if let Some(c) = content.chars().find(|c| !is_xml_char(*c)) {
                    return Err(not_well_formed(format!(
                        "character U+{:04X} is not allowed in XML",
                        c as u32
                    )));
                }
                let content = normalize_line_ends(content);
                self.append_text(content)?;
                Ok(None)
            }
            UnitKind::ProcessingInstruction => {
                self.process_declaration(text)?;
                Ok(None)
            }
            UnitKind::Tag => self.process_tag(text),
        }
    }

    /// The only processing instruction allowed: an XML declaration before the header.
    fn process_declaration(&mut self, text: &str) -> Result<(), StreamError> {
        let is_declaration =
            text.starts_with("<?xml") && text[5..].starts_with(|c: char| c == '?' || c.is_whitespace());
        let allowed = matches!(self.phase, Phase::AwaitHeader { seen_markup: false });
        if !is_declaration {
            return Err(restricted("processing instructions are not allowed"));
        }
        if !allowed {
            return Err(restricted(
                "an XML declaration is only allowed before the stream header",
            ));
        }
        let mut reader = Reader::from_str(text);
        let declaration = match reader.read_event() {
            Ok(Event::Decl(d)) => d,
            _ => return Err(not_well_formed("malformed XML declaration")),
        };
        let version = declaration
            .version()
            .map_err(|_| not_well_formed("malformed XML declaration"))?;
        if version.as_ref() != "1.0" {
            return Err(not_well_formed("only XML 1.0 is supported"));
        }
        if let Some(encoding) = declaration.encoding() {
            let encoding = encoding.map_err(|_| not_well_formed("malformed XML declaration"))?;
            if !encoding.eq_ignore_ascii_case("utf-8") {
                return Err(StreamError::with_text(
                    StreamErrorCondition::UnsupportedEncoding,
                    "only UTF-8 is supported",
                ));
            }
        }
        self.phase = Phase::AwaitHeader { seen_markup: true };
        Ok(())
    }

    fn process_tag(&mut self, text: &str) -> Result<Option<StreamEvent>, StreamError> {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        // This framer keeps the element stack across units; quick-xml only ever sees one tag.
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.expand_empty_elements = false;
        config.trim_markup_names_in_closing_tags = true;
        let event = reader
            .read_event()
            .map_err(|e| not_well_formed(format!("malformed tag: {e}")))?;
        match event {
            Event::Start(start) => self.start_tag(&start, false),
            Event::Empty(start) => self.start_tag(&start, true),
            Event::End(end) => {
                let name = end.name();
                let qname: &str = name.as_ref();
                self.end_tag(qname)
            }
            _ => Err(not_well_formed("malformed tag")),
        }
    }

    fn start_tag(&mut self, start: &BytesStart, self_closing: bool) -> Result<Option<StreamEvent>, StreamError> {
        let name = start.name();
        let qname: &str = name.as_ref();
        check_qname(qname)?;
        let qname = qname.to_owned();
        let bindings_mark = self.bindings.len();
        let bindings_capacity = self.bindings.capacity();
        // Heap this tag adds; charged to the stanza once the tag is known to be in one.
        let mut cost = 0usize;
        let mut attrs = Vec::new();
        let mut count = 0usize;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| not_well_formed(format!("malformed attribute: {e}")))?;
            count += 1;
            if count > self.config.max_attributes {
                return Err(policy_violation(format!(
                    "more than {} attributes on one element",
                    self.config.max_attributes
                )));
            }
            let key: &str = attr.key.as_ref();
            check_qname(key)?;
            let value = unescape(&attr.value, true)?.into_owned();
            if key == "xmlns" {
                let (uri, uri_cost) = self.declare_namespace(None, value)?;
                cost += uri_cost;
                self.bindings.push(Binding { prefix: None, uri });
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                check_prefix_declaration(prefix, &value)?;
                let (uri, uri_cost) = self.declare_namespace(Some(prefix), value)?;
                cost += uri_cost + prefix.len();
                self.bindings.push(Binding {
                    prefix: Some(prefix.to_owned()),
                    uri,
                });
            } else {
                attrs.push((key.to_owned(), value));
            }
        }
        let (prefix, local) = split_qname(&qname);
        let element_ns = self.resolve(prefix)?.clone();
        self.bind_attribute_prefixes(&mut attrs)?;
        attrs.shrink_to_fit();
        let element = Element {
            name: local.to_owned(),
            ns: element_ns,
            attrs,
            children: Vec::new(),
        };

        if let Phase::AwaitHeader { .. } = self.phase {
            return self.header(element, qname, self_closing).map(Some);
        }

        let depth = self.open.len() + 1;
        if depth > self.config.max_depth {
            return Err(policy_violation(format!(
                "elements nested deeper than {}",
                self.config.max_depth
            )));
        }
        if depth == 1 {
            self.stanza_start = self.unit_start;
            self.stanza_nodes = 0;
            self.stanza_memory = 0;
            // A nested element's slot is charged when its parent's children grow; the
            // top-level one is released on its own.
            cost += NODE_BYTES;
        }
        cost += element.name.capacity()
            + element.attrs.capacity() * ATTRIBUTE_BYTES
            + element
                .attrs
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity())
                .sum::<usize>()
            + self.bindings.capacity().saturating_sub(bindings_capacity) * BINDING_BYTES;
        if !self_closing {
            cost += qname.capacity();
        }
        self.count_node()?;
        self.charge(cost)?;
        if self_closing {
            self.bindings.truncate(bindings_mark);
            return self.finish_element(element);
        }
        self.open.push(OpenElement {
            element,
            qname,
            bindings_mark,
        });
        Ok(None)
    }

    /// The namespace an `xmlns` declaration binds, and the heap it adds. Redeclaring the URI
    /// already bound to the prefix (`<a xmlns='u'><b xmlns='u'/>`) shares it and costs nothing.
    fn declare_namespace(&self, prefix: Option<&str>, uri: String) -> Result<(Namespace, usize), StreamError> {
        if uri.len() > self.config.max_namespace_bytes {
            return Err(policy_violation(format!(
                "namespace URI longer than {} bytes",
                self.config.max_namespace_bytes
            )));
        }
        if let Ok(current) = self.resolve(prefix)
            && *current == uri
        {
            return Ok((current.clone(), 0));
        }
        let uri = Namespace::from(uri);
        let cost = uri.heap_bytes();
        Ok((uri, cost))
    }

    /// Count `bytes` more heap against the current stanza's budget.
    fn charge(&mut self, bytes: usize) -> Result<(), StreamError> {
        self.stanza_memory = self.stanza_memory.saturating_add(bytes);
        let received = usize::try_from(self.unit_end - self.stanza_start).unwrap_or(usize::MAX);
        let allowed = self
            .config
            .memory_per_stanza_byte
            .saturating_mul(received)
            .saturating_add(self.config.stanza_memory_allowance);
        if self.stanza_memory > allowed {
            return Err(policy_violation(format!(
                "a stanza of {received} bytes needs more than {allowed} bytes of memory"
            )));
        }
        Ok(())
    }

    /// Return memory to the budget: the stanza no longer holds it.
    fn credit(&mut self, bytes: usize) {
        self.stanza_memory = self.stanza_memory.saturating_sub(bytes);
    }

    fn header(&mut self, element: Element, qname: String, self_closing: bool) -> Result<StreamEvent, StreamError> {
        if element.name != "stream" || element.ns != ns::STREAM {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidNamespace,
                "the stream must open with <stream> in http://etherx.jabber.org/streams",
            ));
        }
        let header = StreamHeader {
            to: element.attr("to").map(str::to_owned),
            from: element.attr("from").map(str::to_owned),
            id: element.attr("id").map(str::to_owned),
            version: element.attr("version").map(str::to_owned),
            lang: element.attr("xml:lang").map(str::to_owned),
            default_ns: self.resolve(None)?.to_string(),
            prefixes: self
                .bindings
                .iter()
                .filter(|b| b.uri != ns::STREAM)
                .filter_map(|b| Some((b.prefix.clone()?, b.uri.to_string())))
                .collect(),
        };
        self.header_qname = qname;
        self.phase = Phase::Open;
        self.end_pending = self_closing;
        Ok(StreamEvent::Header(header))
    }

    fn end_tag(&mut self, qname: &str) -> Result<Option<StreamEvent>, StreamError> {
        match self.phase {
            Phase::AwaitHeader { .. } => Err(not_well_formed("end tag before the stream header")),
            Phase::Open => match self.open.pop() {
                None if qname == self.header_qname => {
                    self.phase = Phase::Closed;
                    Ok(Some(StreamEvent::End))
                }
                None => Err(not_well_formed("end tag does not match the stream header")),
                Some(open) if open.qname == qname => {
                    self.bindings.truncate(open.bindings_mark);
                    let mut element = open.element;
                    let capacity = element.children.capacity();
                    element.children.shrink_to_fit();
                    let returned = capacity - element.children.capacity();
                    self.credit(returned * NODE_BYTES + open.qname.capacity());
                    self.finish_element(element)
                }
                Some(_) => Err(not_well_formed("mismatched end tag")),
            },
            Phase::Closed | Phase::Failed(_) => Ok(None),
        }
    }

    /// Attach a closed element to its parent, or release it when it is top-level.
    fn finish_element(&mut self, element: Element) -> Result<Option<StreamEvent>, StreamError> {
        match self.open.last_mut() {
            Some(parent) => {
                let children = &mut parent.element.children;
                let capacity = children.capacity();
                children.push(Node::Element(element));
                let grown = children.capacity() - capacity;
                self.charge(grown * NODE_BYTES)?;
                Ok(None)
            }
            None => {
                // Bindings a deep stanza declared need not stay allocated for the stream's life.
                if self.bindings.capacity() > RETAINED_BINDINGS {
                    self.bindings.shrink_to(RETAINED_BINDINGS);
                }
                Ok(Some(StreamEvent::Element(element)))
            }
        }
    }

    fn append_text(&mut self, text: Cow<'_, str>) -> Result<(), StreamError> {
        if text.is_empty() {
            return Ok(());
        }
        let merge = matches!(
            self.open.last().and_then(|o| o.element.children.last()),
            Some(Node::Text(_))
        );
        if !merge {
            self.count_node()?;
        }
        let Some(parent) = self.open.last_mut() else {
            return Err(not_well_formed("text outside of a stanza"));
        };
        let children = &mut parent.element.children;
        let cost = match children.last_mut() {
            Some(Node::Text(existing)) => {
                let capacity = existing.capacity();
                existing.push_str(&text);
                existing.capacity() - capacity
            }
            _ => {
                let text = text.into_owned();
                let text_bytes = text.capacity();
                let capacity = children.capacity();
                children.push(Node::Text(text));
                text_bytes + (children.capacity() - capacity) * NODE_BYTES
            }
        };
        self.charge(cost)
    }

    fn count_node(&mut self) -> Result<(), StreamError> {
        self.stanza_nodes += 1;
        if self.stanza_nodes > self.config.max_nodes {
            return Err(policy_violation(format!(
                "more than {} nodes in one stanza",
                self.config.max_nodes
            )));
        }
        Ok(())
    }

    /// Check the prefixes of namespaced attributes, and keep their declarations.
    ///
    /// `Element` keeps such attributes under their qualified name (`x:kind`), so their
    /// binding must travel with the element: without it, re-serializing the element
    /// (forwarding a stanza) would put an unbound prefix on the wire and the recipient's
    /// stream would die of it. So for each prefix other than `xml` used by an attribute, an
    /// `xmlns:prefix` declaration is kept in `attrs`, ahead of the attributes; these are the
    /// only declarations `attrs` ever holds.
    fn bind_attribute_prefixes(&self, attrs: &mut Vec<(String, String)>) -> Result<(), StreamError> {
        let mut declarations: Vec<(String, String)> = Vec::new();
        let mut expanded: Vec<(&str, &str)> = Vec::new();
        for (key, _) in attrs.iter() {
            let (Some(prefix), local) = split_qname(key) else {
                continue;
            };
            let uri = self.resolve(Some(prefix))?.as_str();
            // Namespaces in XML §6.3: `p:a` and `q:a` with p and q bound to one URI are the
            // same attribute twice.
            if expanded.contains(&(uri, local)) {
                return Err(not_well_formed("the same namespaced attribute appears twice"));
            }
            expanded.push((uri, local));
            let declaration = format!("xmlns:{prefix}");
            if prefix != "xml" && !declarations.iter().any(|(k, _)| *k == declaration) {
                declarations.push((declaration, uri.to_owned()));
            }
        }
        if !declarations.is_empty() {
            attrs.splice(0..0, declarations);
        }
        Ok(())
    }

    /// The namespace bound to `prefix` (`None`: the default namespace, empty when unset).
    fn resolve(&self, prefix: Option<&str>) -> Result<&Namespace, StreamError> {
        if prefix == Some("xml") {
            return Ok(&self.xml_ns);
        }
        match self.bindings.iter().rev().find(|b| b.prefix.as_deref() == prefix) {
            Some(binding) => Ok(&binding.uri),
            None if prefix.is_none() => Ok(&self.no_ns),
            None => Err(StreamError::with_text(
                StreamErrorCondition::BadNamespacePrefix,
                format!("prefix '{}' is not bound", prefix.unwrap_or_default()),
            )),
        }
    }
}

fn not_well_formed(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamErrorCondition::NotWellFormed, text)
}

fn restricted(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamErrorCondition::RestrictedXml, text)
}

fn policy_violation(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamErrorCondition::PolicyViolation, text)
}

fn bad_prefix(text: impl Into<String>) -> StreamError {
    StreamError::with_text(StreamErrorCondition::BadNamespacePrefix, text)
}

fn is_xml_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// XML 1.0 `Char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// XML 1.0 (5th edition) `NameStartChar`, without ':' (namespaces reserve it).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// A name as Namespaces in XML allows it: `local` or `prefix:local`.
fn check_qname(qname: &str) -> Result<(), StreamError> {
    let valid = match qname.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(qname),
    };
    if valid {
        Ok(())
    } else {
        Err(not_well_formed("invalid element or attribute name"))
    }
}

fn split_qname(qname: &str) -> (Option<&str>, &str) {
    match qname.split_once(':') {
        Some((prefix, local)) => (Some(prefix), local),
        None => (None, qname),
    }
}

/// Namespaces in XML 1.0 §3: `xml` keeps its fixed URI, `xmlns` is never declared, a prefix
/// cannot be undeclared, and neither reserved URI may be bound to another prefix.
fn check_prefix_declaration(prefix: &str, uri: &str) -> Result<(), StreamError> {
    const XMLNS_URI: &str = "http://www.w3.org/2000/xmlns/";
    if prefix == "xmlns" || uri == XMLNS_URI {
        return Err(bad_prefix("the xmlns prefix cannot be declared"));
    }
    if (prefix == "xml") != (uri == ns::XML) {
        return Err(bad_prefix("the xml prefix is bound to its own namespace only"));
    }
    if uri.is_empty() {
        return Err(bad_prefix("a prefix cannot be undeclared"));
    }
    Ok(())
}

/// XML end-of-line handling (§2.11): `\r\n` and lone `\r` read as `\n`.
fn normalize_line_ends(s: &str) -> Cow<'_, str> {
    if !s.contains('\r') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Resolve character and predefined entity references, check every character is XML, and
/// apply end-of-line (text) or attribute-value normalization.
fn unescape(raw: &str, in_attribute: bool) -> Result<Cow<'_, str>, StreamError> {
    let needs_work =
        |c: char| c == '&' || c == '\r' || c == '<' || !is_xml_char(c) || (in_attribute && (c == '\t' || c == '\n'));
    if !raw.chars().any(needs_work) {
        if !in_attribute && raw.contains("]]>") {
            return Err(not_well_formed("']]>' in text"));
        }
        return Ok(Cow::Borrowed(raw));
    }
    if !in_attribute && raw.contains("]]>") {
        return Err(not_well_formed("']]>' in text"));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '&' => {
                let Some(end) = rest.find(';') else {
                    return Err(not_well_formed("unterminated entity reference"));
                };
                let name = &rest[..end];
                rest = &rest[end + 1..];
                out.push(resolve_reference(name)?);
            }
            '<' => return Err(not_well_formed("'<' in an attribute value")),
            '\r' => {
                rest = rest.strip_prefix('\n').unwrap_or(rest);
                out.push(if in_attribute { ' ' } else { '\n' });
            }
            '\t' | '\n' if in_attribute => out.push(' '),
            c if is_xml_char(c) => out.push(c),
            c => {
                return Err(not_well_formed(format!(
                    "character U+{:04X} is not allowed in XML",
                    c as u32
                )));
            }
        }
    }
    Ok(Cow::Owned(out))
}

fn resolve_reference(name: &str) -> Result<char, StreamError> {
    let code = if let Some(hex) = name.strip_prefix("#x") {
        parse_char_code(hex, 16)?
    } else if let Some(decimal) = name.strip_prefix('#') {
        parse_char_code(decimal, 10)?
    } else {
        return match name {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            name if is_ncname(name) => Err(restricted(format!("entity '{name}' is not allowed"))),
            _ => Err(not_well_formed("malformed entity reference")),
        };
    };
    match char::from_u32(code) {
        Some(c) if is_xml_char(c) => Ok(c),
        _ => Err(not_well_formed(format!(
            "character reference to U+{code:04X}, not allowed in XML"
        ))),
    }
}

fn parse_char_code(digits: &str, radix: u32) -> Result<u32, StreamError> {
    // `from_str_radix` accepts a leading '+', which XML does not; the length bound keeps
    // the value far from overflow while allowing leading zeros.
    if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(not_well_formed("malformed character reference"));
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| not_well_formed("malformed character reference"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

    fn framer() -> StreamFramer {
        StreamFramer::new(FramerConfig::default())
    }

    /// Feed everything at once and collect events up to the first error.
    fn run(input: &[u8], config: FramerConfig) -> (Vec<StreamEvent>, Option<StreamError>) {
        let mut framer = StreamFramer::new(config);
        framer.feed(input);
        let mut events = Vec::new();
        loop {
            match framer.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => return (events, None),
                Err(e) => return (events, Some(e)),
            }
        }
    }

    fn error_of(input: &str) -> StreamError {
        match run(input.as_bytes(), FramerConfig::default()) {
            (_, Some(e)) => e,
            (events, None) => panic!("expected an error for {input:?}, got {events:?}"),
        }
    }

    fn stanza(input: &str) -> Element {
        let (events, err) = run(format!("{HEADER}{input}").as_bytes(), FramerConfig::default());
        assert_eq!(err, None);
        match events.as_slice() {
            [StreamEvent::Header(_), StreamEvent::Element(e)] => e.clone(),
            other => panic!("unexpected events {other:?}"),
        }
    }

    #[test]
    fn header_is_parsed() {
        let (events, err) = run(HEADER.as_bytes(), FramerConfig::default());
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![StreamEvent::Header(StreamHeader {
                to: Some("example.com".into()),
                from: None,
                id: None,
                version: Some("1.0".into()),
                lang: Some("en".into()),
                default_ns: ns::CLIENT.into(),
                prefixes: vec![],
            })]
        );
    }

    #[test]
    fn stanza_inherits_default_namespace_and_resolves_children() {
        let e = stanza("<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query></iq>");
        assert!(e.is("iq", ns::CLIENT));
        assert_eq!(e.attrs, vec![("type".into(), "get".into()), ("id".into(), "1".into())]);
        let query = e.get_child("query", ns::ROSTER).unwrap();
        assert!(query.has_child("item", ns::ROSTER));
        assert_eq!(query.attrs, vec![]);
    }

    #[test]
    fn stream_prefix_is_inherited() {
        let e = stanza("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>");
        assert!(e.is("features", ns::STREAM));
        assert!(e.has_child("starttls", ns::TLS));
    }

    #[test]
    fn prefixed_children_and_xml_lang() {
        let e = stanza(
            "<message xml:lang='fr'><x:a xmlns:x='urn:x' x:attr='1'><x:b/><c/></x:a><body>salut</body></message>",
        );
        assert_eq!(e.attr("xml:lang"), Some("fr"));
        let a = e.get_child("a", "urn:x").unwrap();
        assert_eq!(a.attr("x:attr"), Some("1"));
        // The declaration a prefixed attribute needs stays with it; nothing else does.
        assert_eq!(
            a.attrs,
            vec![
                ("xmlns:x".to_owned(), "urn:x".to_owned()),
                ("x:attr".to_owned(), "1".to_owned())
            ]
        );
        assert!(a.has_child("b", "urn:x"));
        // Unprefixed children keep the inherited default namespace.
        assert!(a.has_child("c", ns::CLIENT));
        assert_eq!(e.get_child("body", ns::CLIENT).unwrap().text(), "salut");
    }

    #[test]
    fn entities_cdata_and_character_references() {
        let e = stanza(
            "<message to='a&amp;b&apos;&#x40;'><body>1 &lt; 2 &gt; 0 &quot;&#233;&#x1F600;<![CDATA[<raw> & ]]>end</body></message>",
        );
        assert_eq!(e.attr("to"), Some("a&b'@"));
        assert_eq!(
            e.get_child("body", ns::CLIENT).unwrap().text(),
            "1 < 2 > 0 \"é😀<raw> & end"
        );
        // Text, CDATA and text merge into one node.
        assert_eq!(e.get_child("body", ns::CLIENT).unwrap().children.len(), 1);
    }

    #[test]
    fn attribute_and_line_end_normalization() {
        let e = stanza("<message a='x\ty\r\nz' b='&#9;'><body>l1\r\nl2\rl3</body></message>");
        assert_eq!(e.attr("a"), Some("x y z"));
        assert_eq!(e.attr("b"), Some("\t"));
        assert_eq!(e.get_child("body", ns::CLIENT).unwrap().text(), "l1\nl2\nl3");
    }

    #[test]
    fn dialback_prefix_on_server_stream() {
        let input = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
            xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0'>\
            <db:result from='a.example' to='b.example'>abc</db:result>";
        let (events, err) = run(input.as_bytes(), FramerConfig::default());
        assert_eq!(err, None);
        let StreamEvent::Header(h) = &events[0] else { panic!() };
        assert_eq!(h.default_ns, ns::SERVER);
        assert_eq!(h.prefixes, vec![("db".to_owned(), ns::DIALBACK.to_owned())]);
        assert!(h.declares_dialback());
        let StreamEvent::Element(e) = &events[1] else { panic!() };
        assert!(e.is("result", ns::DIALBACK));
        assert_eq!(e.text(), "abc");
    }

    #[test]
    fn stream_end_and_keepalives() {
        let input = format!("{HEADER} \n <presence/>\n\n  </stream:stream>");
        let (events, err) = run(input.as_bytes(), FramerConfig::default());
        assert_eq!(err, None);
        assert_eq!(events.len(), 3);
        assert!(matches!(events[1], StreamEvent::Element(ref e) if e.is("presence", ns::CLIENT)));
        assert_eq!(events[2], StreamEvent::End);
    }

    #[test]
    fn self_closing_header_is_header_then_end() {
        let (events, err) = run(
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
            FramerConfig::default(),
        );
        assert_eq!(err, None);
        assert!(matches!(events[0], StreamEvent::Header(_)));
        assert_eq!(events[1], StreamEvent::End);
    }

    #[test]
    fn whitespace_keepalives_are_released_immediately() {
        let mut f = framer();
        f.feed(HEADER.as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        for _ in 0..1000 {
            f.feed(b" \n");
            assert_eq!(f.next_event(), Ok(None));
            assert_eq!(f.buffered_len(), 0);
        }
    }

    #[test]
    fn restricted_xml_is_rejected() {
        for (input, condition) in [
            ("<!-- hi -->", StreamErrorCondition::RestrictedXml),
            ("<!DOCTYPE x>", StreamErrorCondition::RestrictedXml),
            ("<?pi data?>", StreamErrorCondition::RestrictedXml),
            ("<?xml version='1.0'?>", StreamErrorCondition::RestrictedXml),
            (
                "<message><body>&custom;</body></message>",
                StreamErrorCondition::RestrictedXml,
            ),
            ("<message a='&ent;'/>", StreamErrorCondition::RestrictedXml),
            (
                "<message><body><!--x--></body></message>",
                StreamErrorCondition::RestrictedXml,
            ),
        ] {
            let err = error_of(&format!("{HEADER}{input}"));
            assert_eq!(err.condition, condition, "{input}: {err}");
        }
        // Before the header, too.
        assert_eq!(
            error_of("<!DOCTYPE stream><stream:stream>").condition,
            StreamErrorCondition::RestrictedXml
        );
    }

    #[test]
    fn not_well_formed_inputs() {
        for input in [
            "<message></presence>",
            "<message><body></message></body>",
            "hello",
            "<message><body>a ]]> b</body></message>",
            "<message a='1' a='2'/>",
            "<message a=1/>",
            "<message a/>",
            "<message><body>&#0;</body></message>",
            "<message><body>&#xD800;</body></message>",
            "<message><body>&#x110000;</body></message>",
            "<message><body>&#99999999999999999999;</body></message>",
            "<message><body>&amp</body></message>",
            "<message><body>& amp;</body></message>",
            "<message><body>\u{1}</body></message>",
            "<message a='<'/>",
            "<1message/>",
            "< message/>",
            "</stream:stream2>",
            "</>",
            "<![CDATA[x]]>",
            "<a:b:c/>",
            "<!x>",
            "<message a='1'b='2'/>",
            "<message a='1''/>",
            "<message xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/>",
        ] {
            let err = error_of(&format!("{HEADER}{input}"));
            assert_eq!(err.condition, StreamErrorCondition::NotWellFormed, "{input}: {err}");
        }
        let mut bad_utf8 = HEADER.as_bytes().to_vec();
        bad_utf8.extend_from_slice(b"<message><body>\xff\xfe</body></message>");
        let (_, err) = run(&bad_utf8, FramerConfig::default());
        assert_eq!(err.unwrap().condition, StreamErrorCondition::NotWellFormed);
    }

    #[test]
    fn namespace_errors() {
        for input in [
            "<foo:message/>",
            "<message foo:a='1'/>",
            "<message xmlns:xmlns='urn:x'/>",
            "<message xmlns:xml='urn:x'/>",
            "<message xmlns:p=''/>",
        ] {
            let err = error_of(&format!("{HEADER}{input}"));
            assert_eq!(
                err.condition,
                StreamErrorCondition::BadNamespacePrefix,
                "{input}: {err}"
            );
        }
        assert_eq!(
            error_of("<stream:stream xmlns='jabber:client'>").condition,
            StreamErrorCondition::BadNamespacePrefix
        );
        assert_eq!(
            error_of("<stream:stream xmlns:stream='urn:wrong'>").condition,
            StreamErrorCondition::InvalidNamespace
        );
        assert_eq!(
            error_of("<message xmlns='jabber:client'/>").condition,
            StreamErrorCondition::InvalidNamespace
        );
    }

    #[test]
    fn prefix_scope_ends_with_its_element() {
        let err = error_of(&format!("{HEADER}<message><x:a xmlns:x='urn:x'/><x:b/></message>"));
        assert_eq!(err.condition, StreamErrorCondition::BadNamespacePrefix);
    }

    #[test]
    fn missing_version_is_reported_not_rejected() {
        let (events, err) = run(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            FramerConfig::default(),
        );
        assert_eq!(err, None);
        let StreamEvent::Header(h) = &events[0] else { panic!() };
        assert_eq!(h.version, None);
        assert!(!h.is_version_1());
    }

    #[test]
    fn declaration_with_other_encoding_is_refused() {
        assert_eq!(
            error_of("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>").condition,
            StreamErrorCondition::UnsupportedEncoding
        );
        let (events, err) = run(
            format!("\u{feff}<?xml version='1.0' encoding='utf-8'?>\n{}", &HEADER[21..]).as_bytes(),
            FramerConfig::default(),
        );
        assert_eq!(err, None);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn oversized_stanza_is_cut_off_while_arriving() {
        let config = FramerConfig::with_max_stanza_bytes(1024);
        let mut f = StreamFramer::new(config);
        f.feed(HEADER.as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        f.feed(b"<message><body>");
        let mut fed = 15;
        let err = loop {
            f.feed(b"xxxxxxxxxxxxxxxx");
            fed += 16;
            match f.next_event() {
                Ok(None) => assert!(fed <= 1024, "not cut off at {fed} bytes"),
                Ok(Some(e)) => panic!("unexpected {e:?}"),
                Err(e) => break e,
            }
        };
        assert!(fed > 1024 && fed <= 1024 + 16);
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        // Poisoned: the same error again, nothing buffered.
        f.feed(b"more");
        assert_eq!(f.next_event(), Err(err));
        assert_eq!(f.buffered_len(), 0);
    }

    #[test]
    fn oversized_start_tag_is_cut_off_too() {
        let mut f = StreamFramer::new(FramerConfig::with_max_stanza_bytes(100));
        f.feed(HEADER.as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        f.feed(b"<message to='");
        f.feed(&[b'a'; 100]);
        assert_eq!(
            f.next_event().unwrap_err().condition,
            StreamErrorCondition::PolicyViolation
        );
    }

    #[test]
    fn stanza_exactly_at_the_limit_passes() {
        let body = "<message><body>hello</body></message>";
        let mut f = StreamFramer::new(FramerConfig::with_max_stanza_bytes(body.len()));
        f.feed(HEADER.as_bytes());
        f.feed(body.as_bytes());
        f.feed(b"<message><body>hello!</body></message>");
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Element(_)))));
        assert_eq!(
            f.next_event().unwrap_err().condition,
            StreamErrorCondition::PolicyViolation
        );
    }

    #[test]
    fn depth_attribute_node_and_header_limits() {
        let config = FramerConfig {
            max_depth: 3,
            ..FramerConfig::default()
        };
        let (events, err) = run(format!("{HEADER}<a><b><c/></b></a>").as_bytes(), config.clone());
        assert_eq!((events.len(), err), (2, None));
        let (_, err) = run(format!("{HEADER}<a><b><c><d/></c></b></a>").as_bytes(), config);
        assert_eq!(err.unwrap().condition, StreamErrorCondition::PolicyViolation);

        let attrs: String = (0..65).map(|i| format!(" a{i}='x'")).collect();
        let err = error_of(&format!("{HEADER}<message{attrs}/>"));
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);

        let children = "<x/>".repeat(8200);
        let err = error_of(&format!("{HEADER}<message>{children}</message>"));
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);

        let err = error_of(&format!("<stream:stream a='{}'", "x".repeat(9000)));
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        let err = error_of(&" ".repeat(9000));
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    }

    /// Issue 13: a 220 KiB namespace on an open `<x>`, then 8000 `<a/>`, made one copy of
    /// the URI per element (gigabytes). Refused at the declaration now.
    #[test]
    fn namespace_amplification_attack_is_refused() {
        let uri = format!("urn:{}", "n".repeat(220 * 1024));
        let input = format!("{HEADER}<x xmlns='{uri}'>{}</x>", "<a/>".repeat(8000));
        let (events, err) = run(input.as_bytes(), FramerConfig::default());
        assert_eq!(events.len(), 1);
        let err = err.expect("refused");
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        assert_eq!(err.text.as_deref(), Some("namespace URI longer than 1024 bytes"));

        // With no length cap, the 8000 elements share the one URI instead of copying it.
        let uncapped = FramerConfig {
            max_namespace_bytes: usize::MAX,
            ..FramerConfig::default()
        };
        let (events, err) = run(input.as_bytes(), uncapped);
        assert_eq!(err, None);
        let StreamEvent::Element(x) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(x.children.len(), 8000);
        assert!(x.elements().all(|a| a.ns.shares_allocation_with(&x.ns)));
    }

    #[test]
    fn namespace_length_limit() {
        let at_limit = format!("urn:{}", "u".repeat(1020));
        for declaration in [format!("xmlns='{at_limit}'"), format!("xmlns:p='{at_limit}'")] {
            let e = stanza(&format!("<message {declaration}/>"));
            assert_eq!(e.name, "message");
            let over = declaration.replace("urn:", "urn:+");
            let err = error_of(&format!("{HEADER}<message {over}/>"));
            assert_eq!(err.condition, StreamErrorCondition::PolicyViolation, "{err}");
        }
        // The header's declarations too; the length is the decoded one.
        let err = error_of(&format!(
            "<stream:stream xmlns='{}' xmlns:stream='http://etherx.jabber.org/streams'>",
            "u".repeat(1025)
        ));
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        let e = stanza(&format!("<message xmlns:p='{}&amp;' p:a=''/>", "u".repeat(1023)));
        assert_eq!(e.attr("xmlns:p").map(str::len), Some(1024));
    }

    #[test]
    fn redeclared_and_inherited_namespaces_share_one_allocation() {
        let e = stanza("<iq><query xmlns='urn:q'><item xmlns='urn:q'/><item/></query><x xmlns='urn:q'/></iq>");
        let query = e.get_child("query", "urn:q").unwrap();
        assert!(query.elements().all(|item| item.ns.shares_allocation_with(&query.ns)));
        // A sibling's declaration is a new scope: equal text, its own allocation.
        let x = e.get_child("x", "urn:q").unwrap();
        assert!(!x.ns.shares_allocation_with(&query.ns));

        let (events, err) = run(
            format!("{HEADER}<presence/><message><body/></message>").as_bytes(),
            FramerConfig::default(),
        );
        assert_eq!(err, None);
        let [_, StreamEvent::Element(presence), StreamEvent::Element(message)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(presence.ns.shares_allocation_with(&message.ns));
        assert!(message.elements().all(|b| b.ns.shares_allocation_with(&message.ns)));
    }

    /// The declaration a prefixed attribute needs is copied into each element using it; a
    /// long URI declared once and used by many elements is stopped by the memory budget.
    #[test]
    fn copies_for_prefixed_attributes_are_charged() {
        let uri = format!("urn:{}", "u".repeat(1000));
        let input = format!("{HEADER}<x xmlns:p='{uri}'>{}</x>", "<a p:b=''/>".repeat(1000));
        let err = error_of(&input);
        assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
        assert!(
            err.text.as_deref().is_some_and(|t| t.contains("bytes of memory")),
            "{err}"
        );

        // The budget grows with what was received: the same copies in a stanza carrying
        // that much text pass.
        let padded = format!(
            "{HEADER}<x xmlns:p='{uri}'><body>{}</body>{}</x>",
            "t".repeat(200 * 1024),
            "<a p:b=''/>".repeat(1000)
        );
        let (events, err) = run(padded.as_bytes(), FramerConfig::default());
        assert_eq!((events.len(), err), (2, None));
    }

    #[test]
    fn memory_budget_counts_nodes_and_text() {
        let config = FramerConfig {
            // Enough for the message and body nodes themselves.
            stanza_memory_allowance: 512,
            memory_per_stanza_byte: 4,
            ..FramerConfig::default()
        };
        // Text costs about its size: passes at 4 bytes per byte.
        let text = format!("{HEADER}<message><body>{}</body></message>", "x".repeat(10_000));
        let (events, err) = run(text.as_bytes(), config.clone());
        assert_eq!((events.len(), err), (2, None));
        // Empty elements cost a node each, far more than their 4 bytes.
        let dense = format!("{HEADER}<message>{}</message>", "<a/>".repeat(100));
        let (_, err) = run(dense.as_bytes(), config);
        assert_eq!(err.unwrap().condition, StreamErrorCondition::PolicyViolation);
        // The budget is per stanza: the next one starts afresh.
        let (events, err) = run(
            format!("{HEADER}{}", "<message><body>hello</body></message>".repeat(500)).as_bytes(),
            FramerConfig {
                stanza_memory_allowance: 1024,
                ..FramerConfig::default()
            },
        );
        assert_eq!((events.len(), err), (501, None));
    }

    #[test]
    fn reset_expects_a_new_header_and_drops_buffered_bytes() {
        let mut f = framer();
        f.feed(HEADER.as_bytes());
        f.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><injected/>");
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Element(_)))));
        f.reset();
        assert_eq!(f.buffered_len(), 0);
        f.feed(HEADER.as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        assert_eq!(f.next_event(), Ok(None));
    }

    #[test]
    fn restart_keeps_pipelined_bytes() {
        let mut f = framer();
        f.feed(HEADER.as_bytes());
        f.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        f.feed(HEADER.as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Element(_)))));
        f.restart();
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
    }

    #[test]
    fn closed_stream_ignores_further_input() {
        let mut f = framer();
        f.feed(format!("{HEADER}</stream:stream>garbage<<<").as_bytes());
        assert!(matches!(f.next_event(), Ok(Some(StreamEvent::Header(_)))));
        assert_eq!(f.next_event(), Ok(Some(StreamEvent::End)));
        assert_eq!(f.buffered_len(), 0);
        assert_eq!(f.next_event(), Ok(None));
        f.feed(b"more");
        assert_eq!(f.next_event(), Ok(None));
        assert!(!f.is_open());
    }

    #[test]
    fn header_round_trip() {
        let header = StreamHeader {
            to: Some("example.com".into()),
            from: Some("juliet@example.com".into()),
            id: Some("a'b<c".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            default_ns: ns::SERVER.into(),
            prefixes: vec![("db".into(), ns::DIALBACK.into())],
        };
        let bytes = header.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
             xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
             to='example.com' from='juliet@example.com' id='a&apos;b&lt;c' version='1.0' xml:lang='en'>"
        );
        let mut f = framer();
        f.feed(&bytes);
        f.feed(STREAM_CLOSE);
        assert_eq!(f.next_event(), Ok(Some(StreamEvent::Header(header))));
        assert_eq!(f.next_event(), Ok(Some(StreamEvent::End)));
    }

    #[test]
    fn header_helpers() {
        let h = StreamHeader::new(ns::COMPONENT).with_prefix("db", ns::DIALBACK);
        assert!(h.is_version_1());
        assert_eq!(h.prefix_ns("db"), Some(ns::DIALBACK));
        assert!(h.check_default_ns(ns::COMPONENT).is_ok());
        assert_eq!(
            h.check_default_ns(ns::CLIENT).unwrap_err().condition,
            StreamErrorCondition::InvalidNamespace
        );
        let v = |s: &str| StreamHeader {
            version: Some(s.into()),
            ..StreamHeader::default()
        };
        assert!(v("1.1").is_version_1());
        assert!(!v("2.0").is_version_1());
        assert!(!v("0.9").is_version_1());
    }

    #[test]
    fn element_serialization_frames_back_identically() {
        let original = Element::new("message", ns::CLIENT)
            .with_attr("to", "a&b<c>'\"")
            .with_child(Element::new("body", ns::CLIENT).with_text("x < y & ]]> z \u{e9}"))
            .with_child(Element::new("x", "urn:other").with_child(Element::new("y", "urn:other")));
        let mut input = HEADER.as_bytes().to_vec();
        input.extend_from_slice(&original.to_bytes(ns::CLIENT));
        let (events, err) = run(&input, FramerConfig::default());
        assert_eq!(err, None);
        assert_eq!(events[1], StreamEvent::Element(original));
    }
}
