//! The framer must give the same events and the same error whatever the split of its input.

mod common;

use common::{Outcome, SESSION, run_chunks};
use sb_proto::framer::{FramerConfig, StreamEvent};
use sb_proto::{StreamErrorCondition, ns};

fn assert_split_independent(input: &[u8], config: &FramerConfig) -> Outcome {
    let whole = run_chunks([input], config);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(run_chunks([a, b], config), whole, "split at byte {cut}");
    }
    let bytewise = run_chunks(input.chunks(1), config);
    assert_eq!(bytewise, whole, "byte by byte");
    for size in [2, 3, 7, 64] {
        assert_eq!(run_chunks(input.chunks(size), config), whole, "chunks of {size}");
    }
    whole
}

#[test]
fn realistic_session_is_split_independent() {
    let (events, err) = assert_split_independent(SESSION.as_bytes(), &FramerConfig::default());
    assert_eq!(err, None);
    assert_eq!(events.len(), 9, "{events:#?}");
    let StreamEvent::Header(header) = &events[0] else {
        panic!("first event {:?}", events[0])
    };
    assert_eq!(header.default_ns, ns::CLIENT);
    assert_eq!(header.to.as_deref(), Some("example.com"));
    assert_eq!(header.lang.as_deref(), Some("en"));

    let elements: Vec<_> = events[1..8]
        .iter()
        .map(|e| match e {
            StreamEvent::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        })
        .collect();
    assert!(elements[0].is("starttls", ns::TLS));
    assert!(elements[1].is("auth", ns::SASL));
    assert_eq!(elements[1].attr("mechanism"), Some("SCRAM-SHA-256"));
    let bind = elements[2].get_child("bind", ns::BIND).expect("bind");
    assert_eq!(
        bind.get_child("resource", ns::BIND).map(|r| r.text()).as_deref(),
        Some("balcony \u{2615}")
    );
    let status = elements[3].get_child("status", ns::CLIENT).expect("status");
    assert_eq!(status.text(), "Caf\u{e9} & cr\u{e8}me <3 \u{1F600}");

    let message = elements[4];
    assert!(message.is("message", ns::CLIENT));
    assert_eq!(message.attr("id"), Some("m1\""));
    assert_eq!(message.attr("xml:lang"), Some("ja"));
    assert_eq!(
        message.get_child("body", ns::CLIENT).map(|b| b.text()).as_deref(),
        Some("\u{65e5}\u{672c}\u{8a9e} \u{e9}\u{1F389} <b>raw & ready</b> \u{20ac} tail")
    );
    let html = message
        .get_child("html", "http://jabber.org/protocol/xhtml-im")
        .expect("html");
    let p = html
        .get_child("body", "http://www.w3.org/1999/xhtml")
        .and_then(|b| b.get_child("p", "http://www.w3.org/1999/xhtml"))
        .expect("p");
    assert!(p.has_child("em", "http://www.w3.org/1999/xhtml"));
    let data = message.get_child("data", "urn:example:x").expect("x:data");
    assert_eq!(data.attr("x:kind"), Some("deep"));
    assert!(elements[5].get_child("ping", ns::PING).is_some());
    assert!(elements[6].is("features", ns::STREAM));
    assert_eq!(events[8], StreamEvent::End);
}

#[test]
fn errors_are_split_independent() {
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let cases: &[(&str, StreamErrorCondition)] = &[
        (
            "<message><body>ok</body></message><!-- c -->",
            StreamErrorCondition::RestrictedXml,
        ),
        (
            "<message><body>&nbsp;</body></message>",
            StreamErrorCondition::RestrictedXml,
        ),
        ("<presence/><?php echo 1; ?>", StreamErrorCondition::RestrictedXml),
        (
            "<message><body>\u{e9}</body></presence>",
            StreamErrorCondition::NotWellFormed,
        ),
        (
            "<message><body>&#0;</body></message>",
            StreamErrorCondition::NotWellFormed,
        ),
        ("<presence/> junk", StreamErrorCondition::NotWellFormed),
        ("<presence a='1'b='2'/>", StreamErrorCondition::NotWellFormed),
        ("<p:message/>", StreamErrorCondition::BadNamespacePrefix),
        (
            "<message><body>0123456789012345678901234567890123456789</body></message>",
            StreamErrorCondition::PolicyViolation,
        ),
        // Malformed only beyond the limit: the limit is what every split reports.
        (
            "<message a='0123456789012345678901234567890123456789012345678901234567890<'/>",
            StreamErrorCondition::PolicyViolation,
        ),
    ];
    let config = FramerConfig::with_max_stanza_bytes(64);
    for (body, condition) in cases {
        let input = format!("{header}{body}");
        let (_, err) = assert_split_independent(input.as_bytes(), &config);
        assert_eq!(err.map(|e| e.condition), Some(*condition), "{body}");
    }
    let (events, err) = assert_split_independent(b"<?xml version='1.0'?><!DOCTYPE a><stream:stream>", &config);
    assert!(events.is_empty());
    assert_eq!(err.map(|e| e.condition), Some(StreamErrorCondition::RestrictedXml));

    let mut bad_utf8 = header.as_bytes().to_vec();
    bad_utf8.extend_from_slice(b"<message><body>\xe2\x82</body></message>");
    let (_, err) = assert_split_independent(&bad_utf8, &config);
    assert_eq!(err.map(|e| e.condition), Some(StreamErrorCondition::NotWellFormed));
}

/// A large stanza fed one byte at a time: with a framer that re-parsed its whole buffer on
/// every feed this would take ~10^10 steps and never finish; a linear one is instant.
#[test]
fn big_stanza_byte_by_byte_is_linear() {
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let mut input = header.as_bytes().to_vec();
    input.extend_from_slice(b"<message><body>");
    let text_len = 256 * 1024 - 100;
    input.extend(std::iter::repeat_n(b'x', text_len));
    input.extend_from_slice(b"</body><x a='");
    input.extend(std::iter::repeat_n(b'y', 40));
    input.extend_from_slice(b"'/></message>");
    let (events, err) = run_chunks(input.chunks(1), &FramerConfig::default());
    assert_eq!(err, None);
    let StreamEvent::Element(message) = &events[1] else {
        panic!("no message")
    };
    assert_eq!(
        message.get_child("body", ns::CLIENT).map(|b| b.text().len()),
        Some(text_len)
    );
}
