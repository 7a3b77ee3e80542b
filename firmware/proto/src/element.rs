//! A small owned XML element tree: what the framer releases and what the server builds.
//!
//! Names are local names with their namespace already resolved, so code matches on
//! `(name, ns)` and never on prefixes the peer happened to choose.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::ns;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Local name, without any prefix.
    pub name: String,
    /// Resolved namespace URI; empty when the element is in no namespace. Shared, not
    /// copied, between the elements a declaration applies to.
    pub ns: Namespace,
    /// Attributes other than namespace declarations, values unescaped. Prefixed
    /// attributes keep their qualified name (`xml:lang`).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<Namespace>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute.
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Builder: set an attribute only when a value is present.
    pub fn with_opt_attr(mut self, key: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        if let Some(v) = value {
            self.set_attr(key, v);
        }
        self
    }

    /// Builder: append a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: append text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key, value)),
        }
    }

    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(pos).1)
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Child elements, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Concatenated direct text content.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Serialize, declaring `xmlns` only where the namespace differs from the parent's.
    /// Top-level stanzas pass the stream's default namespace (`jabber:client`, ...) so
    /// they go out without a redundant declaration.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        self.write_element(out, parent_ns, true);
    }

    fn write_element(&self, out: &mut Vec<u8>, parent_ns: &str, top_level: bool) {
        // Every stream header declares the `stream` prefix, but only server-to-server
        // headers declare `db`: a nested element in the dialback namespace (which a client
        // can put in any stanza) carries its own declaration, or the recipient would get
        // an unbound prefix and lose its stream.
        let prefix = ns::stream_prefix(&self.ns).filter(|p| top_level || *p == "stream");
        out.push(b'<');
        if let Some(p) = prefix {
            out.extend_from_slice(p.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(self.name.as_bytes());
        if prefix.is_none() && self.ns != parent_ns {
            out.extend_from_slice(b" xmlns='");
            escape_attr_into(out, &self.ns);
            out.push(b'\'');
        }
        for (k, v) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr_into(out, v);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        // Children of a prefixed element inherit the default namespace of the parent's
        // parent, because the prefix does not change the default namespace.
        let child_parent_ns = if prefix.is_some() { parent_ns } else { self.ns.as_str() };
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_element(out, child_parent_ns, false),
                Node::Text(t) => escape_text_into(out, t),
            }
        }
        out.extend_from_slice(b"</");
        if let Some(p) = prefix {
            out.extend_from_slice(p.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }

    pub fn to_bytes(&self, parent_ns: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_to(&mut out, parent_ns);
        out
    }

    /// Serialization as a standalone document fragment (always declares its namespace).
    pub fn to_xml(&self) -> String {
        String::from_utf8(self.to_bytes("")).unwrap_or_default()
    }
}

/// Rewrite the stanza-content namespace of `element` and its descendants from `from_ns` to
/// `to_ns`. Stanzas inside the server travel in `jabber:client`; a link to a stream with
/// another default namespace (`jabber:component:accept`, `jabber:server`) translates at
/// its edge with this.
pub fn retarget_namespace(element: &mut Element, from_ns: &str, to_ns: &str) {
    if element.ns == from_ns {
        element.ns = to_ns.into();
    }
    for child in &mut element.children {
        if let Node::Element(e) = child {
            retarget_namespace(e, from_ns, to_ns);
        }
    }
}

/// A namespace URI behind a reference count. The framer makes one per `xmlns` declaration
/// and every element in its scope holds a clone: a URI received once is stored once, however
/// many elements it applies to (a copy per element let one stanza allocate gigabytes).
/// Reads like a `&str` (deref, comparisons with strings, `Display`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Namespace(Arc<str>);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes of heap this URI occupies (its text and the two reference counts), counted once
    /// however many elements share it.
    pub fn heap_bytes(&self) -> usize {
        self.0.len() + 2 * std::mem::size_of::<usize>()
    }

    /// Whether both are the same allocation (not merely equal text).
    pub fn shares_allocation_with(&self, other: &Namespace) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Namespace {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Namespace {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Namespace {
    fn from(uri: &str) -> Self {
        Namespace(Arc::from(uri))
    }
}

impl From<&String> for Namespace {
    fn from(uri: &String) -> Self {
        Namespace(Arc::from(uri.as_str()))
    }
}

impl From<String> for Namespace {
    fn from(uri: String) -> Self {
        Namespace(Arc::from(uri))
    }
}

impl From<&Namespace> for Namespace {
    fn from(uri: &Namespace) -> Self {
        uri.clone()
    }
}

impl From<Namespace> for String {
    fn from(uri: Namespace) -> Self {
        uri.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for Namespace {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Namespace {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Namespace {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Namespace> for str {
    fn eq(&self, other: &Namespace) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Namespace> for &str {
    fn eq(&self, other: &Namespace) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Namespace> for String {
    fn eq(&self, other: &Namespace) -> bool {
        **self == *other.0
    }
}

/// Escape the five predefined entities, nothing else. This is the exact transformation
/// XEP-0114 hashes a component secret through; the serializer uses `escape_text_into` and
/// `escape_attr_into`, which also protect characters a parser would not give back.
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            _ => out.push(b),
        }
    }
}

/// Escape text content so a parser reads back exactly `s`: the five predefined entities,
/// `\r` as a character reference (a parser would otherwise read it as a line end), and
/// characters XML cannot carry at all (C0 controls, U+FFFE, U+FFFF) replaced by U+FFFD so
/// the output is always well-formed.
pub fn escape_text_into(out: &mut Vec<u8>, s: &str) {
    escape_with(out, s, false);
}

/// Escape an attribute value: as `escape_text_into`, plus `\t` and `\n` as character
/// references, since attribute-value normalization would turn them into spaces.
pub fn escape_attr_into(out: &mut Vec<u8>, s: &str) {
    escape_with(out, s, true);
}

fn escape_with(out: &mut Vec<u8>, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\'' => out.extend_from_slice(b"&apos;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\r' => out.extend_from_slice(b"&#13;"),
            '\t' if attribute => out.extend_from_slice(b"&#9;"),
            '\n' if attribute => out.extend_from_slice(b"&#10;"),
            '\t' | '\n' => out.push(c as u8),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.extend_from_slice("\u{fffd}".as_bytes()),
            c if c.is_ascii() => out.push(c as u8),
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

pub fn escape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    escape_into(&mut out, s);
    // Escaping only replaces ASCII bytes, so UTF-8 validity is preserved.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retargets_nested_namespaces_and_leaves_others() {
        let mut m = Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT))
            .with_child(Element::new("composing", "http://jabber.org/protocol/chatstates"));
        retarget_namespace(&mut m, ns::CLIENT, ns::COMPONENT);
        assert_eq!(m.ns, ns::COMPONENT);
        assert!(m.has_child("body", ns::COMPONENT));
        assert!(m.has_child("composing", "http://jabber.org/protocol/chatstates"));
    }

    #[test]
    fn serializes_with_minimal_namespace_declarations() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", "a'b")
            .with_child(
                Element::new("query", ns::ROSTER).with_child(Element::new("item", ns::ROSTER).with_attr("jid", "x@y")),
            );
        let xml = String::from_utf8(iq.to_bytes(ns::CLIENT)).unwrap();
        assert_eq!(
            xml,
            "<iq type='result' id='a&apos;b'><query xmlns='jabber:iq:roster'><item jid='x@y'/></query></iq>"
        );
    }

    #[test]
    fn stream_namespace_uses_prefix_and_children_keep_their_own() {
        let err = Element::new("error", ns::STREAM)
            .with_child(Element::new("policy-violation", ns::STREAMS_ERROR))
            .with_child(Element::new("text", ns::STREAMS_ERROR).with_text("a<b & c"));
        let xml = String::from_utf8(err.to_bytes(ns::CLIENT)).unwrap();
        assert_eq!(
            xml,
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a&lt;b &amp; c</text></stream:error>"
        );
    }

    #[test]
    fn escaping_keeps_every_character_through_a_parser() {
        let e = Element::new("message", ns::CLIENT)
            .with_attr("a", "t\tn\nr\r&<>'\"")
            .with_text("t\tn\nr\r\u{1}\u{fffe}\u{e9}");
        assert_eq!(
            String::from_utf8(e.to_bytes(ns::CLIENT)).unwrap(),
            "<message a='t&#9;n&#10;r&#13;&amp;&lt;&gt;&apos;&quot;'>t\tn\nr&#13;\u{fffd}\u{fffd}\u{e9}</message>"
        );
    }

    #[test]
    fn nested_dialback_elements_declare_their_namespace() {
        let top = Element::new("result", ns::DIALBACK).with_text("k");
        assert_eq!(
            String::from_utf8(top.to_bytes(ns::SERVER)).unwrap(),
            "<db:result>k</db:result>"
        );
        let nested = Element::new("message", ns::CLIENT).with_child(Element::new("result", ns::DIALBACK));
        assert_eq!(
            String::from_utf8(nested.to_bytes(ns::CLIENT)).unwrap(),
            "<message><result xmlns='jabber:server:dialback'/></message>"
        );
    }

    #[test]
    fn attribute_helpers() {
        let mut e = Element::new("message", ns::CLIENT).with_attr("to", "a@b");
        e.set_attr("to", "c@d");
        assert_eq!(e.attr("to"), Some("c@d"));
        assert_eq!(e.remove_attr("to").as_deref(), Some("c@d"));
        assert_eq!(e.attr("to"), None);
    }
}
