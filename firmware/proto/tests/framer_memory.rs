//! What the framer allocates is bounded by what it was sent (issue 13: one stanza of 257 KB
//! made xmppd allocate gigabytes, one copy of a 220 KiB namespace URI per element).
//!
//! A counting global allocator measures the peak heap above the starting point while a
//! framer consumes adversarial input, each released event being dropped at once as a
//! connection task would after routing it. The property: peak ≤ FIXED + K × input bytes.

mod common;

use common::{Outcome, SESSION, run_chunks};
use sb_proto::framer::{FramerConfig, StreamEvent, StreamFramer};
use sb_proto::{StreamErrorCondition, ns};

mod counting_heap;

#[global_allocator]
static ALLOCATOR: counting_heap::Counting = counting_heap::Counting;

/// Heap the framer may hold whatever it is sent: its own state, the stanza allowance, the
/// error text, quick-xml's per-tag scratch space.
const FIXED: usize = 96 * 1024;
/// Per input byte: the per-byte stanza budget (16), the receive buffer (1, plus the unit being
/// decoded), with margin.
const PER_INPUT_BYTE: usize = 20;

/// Feed `chunks`, dropping every event as it comes; returns the outcome's shape (events
/// reduced to their kind, error) and the peak heap above the starting point.
fn frame_measuring<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    config: &FramerConfig,
) -> (usize, Option<sb_proto::StreamError>, usize) {
    let start = counting_heap::start_measuring();
    let mut framer = StreamFramer::new(config.clone());
    let mut events = 0usize;
    let mut error = None;
    'feed: for chunk in chunks {
        framer.feed(chunk);
        loop {
            match framer.next_event() {
                Ok(Some(event)) => {
                    events += 1;
                    drop(event);
                }
                Ok(None) => break,
                Err(err) => {
                    error = Some(err);
                    break 'feed;
                }
            }
        }
    }
    drop(framer);
    let peak = counting_heap::peak() - start;
    (events, error, peak)
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

fn with_header(body: &str) -> Vec<u8> {
    format!("{HEADER}{body}").into_bytes()
}

/// The review's input: a 220 KiB namespace on an open `<x>`, then 8000 `<a/>`.
fn review_attack() -> Vec<u8> {
    let uri = format!("urn:{}", "n".repeat(220 * 1024));
    with_header(&format!("<x xmlns='{uri}'>{}</x>", "<a/>".repeat(8000)))
}

/// Adversarial inputs, each within the default stanza byte limit, and what they must end in.
fn adversarial() -> Vec<(&'static str, Vec<u8>, Option<StreamErrorCondition>)> {
    let long_uri = format!("urn:{}", "u".repeat(1020)); // 1024 bytes: the longest allowed
    let policy = Some(StreamErrorCondition::PolicyViolation);
    vec![
        ("the review's attack", review_attack(), policy),
        (
            "1 KiB namespace, then 6000 <a/>",
            with_header(&format!("<x xmlns='{long_uri}'>{}</x>", "<a/>".repeat(6000))),
            policy,
        ),
        (
            "8000 <a/> in one message",
            with_header(&format!("<message>{}</message>", "<a/>".repeat(8000))),
            policy,
        ),
        (
            "text and elements interleaved",
            with_header(&format!("<message>{}</message>", "x<a/>".repeat(4000))),
            policy,
        ),
        (
            "a prefix bound to 1 KiB, used by attributes of 5000 elements",
            with_header(&format!("<x xmlns:p='{long_uri}'>{}</x>", "<a p:b=''/>".repeat(5000))),
            policy,
        ),
        (
            "64 prefixed attributes per element",
            with_header(&format!(
                "<x xmlns:p='{long_uri}'>{}</x>",
                format!(
                    "<a {}/>",
                    (0..63).map(|i| format!("p:a{i}=''")).collect::<Vec<_>>().join(" ")
                )
                .repeat(300)
            )),
            // About 9 heap bytes per byte: under the budget, and bounded all the same.
            None,
        ),
        (
            "1 KiB namespace redeclared on 200 elements",
            with_header(&format!("<x>{}</x>", format!("<a xmlns='{long_uri}'/>").repeat(200))),
            None,
        ),
        (
            "1 KiB namespaces, a new one per element, nested 32 deep, 7 stanzas",
            with_header(
                &(0..7)
                    .map(|s| {
                        let open: String = (0..32)
                            .map(|d| format!("<a xmlns='{}{s}-{d}'>", &long_uri[..1018]))
                            .collect();
                        format!("{open}{}", "</a>".repeat(32))
                    })
                    .collect::<String>(),
            ),
            None,
        ),
        (
            "60 prefixes declared on each of 32 nested elements",
            with_header(&format!(
                "{}{}",
                (0..32)
                    .map(|d| format!(
                        "<a {}>",
                        (0..60)
                            .map(|i| format!("xmlns:p{i}='urn:{d}:{i}:{}'", "z".repeat(100)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ))
                    .collect::<String>(),
                "</a>".repeat(32)
            )),
            None,
        ),
        (
            "2000 small stanzas",
            with_header(&"<message to='a@b'><body>hi</body></message>".repeat(2000)),
            None,
        ),
    ]
}

#[test]
fn peak_heap_is_bounded_by_the_input() {
    let config = FramerConfig::default();
    for (name, input, expected) in adversarial() {
        for chunk in [input.len(), 4096, 1] {
            let (events, err, peak) = frame_measuring(input.chunks(chunk), &config);
            assert_eq!(
                err.as_ref().map(|e| e.condition),
                expected,
                "{name} (chunks of {chunk}): {err:?}"
            );
            assert!(events >= 1, "{name}: no header");
            let bound = FIXED + PER_INPUT_BYTE * input.len();
            println!(
                "{name}, chunks of {chunk}: {} bytes in, peak heap {peak} ({:.1} per byte), bound {bound}",
                input.len(),
                peak as f64 / input.len() as f64
            );
            assert!(
                peak <= bound,
                "{name} (chunks of {chunk}): peak heap {peak} for {} bytes of input exceeds {bound}",
                input.len()
            );
        }
    }
}

/// The review's attack allocated gigabytes; now it is refused at the namespace, having
/// allocated about what it sent.
#[test]
fn review_attack_is_refused_at_the_namespace() {
    let input = review_attack();
    let (_, err, peak) = frame_measuring([input.as_slice()], &FramerConfig::default());
    let err = err.expect("refused");
    assert_eq!(err.condition, StreamErrorCondition::PolicyViolation);
    assert!(err.text.as_deref().is_some_and(|t| t.contains("namespace")), "{err}");
    assert!(peak < 3 * input.len(), "peak heap {peak}");

    // Even with the length cap lifted, the elements share the one URI.
    let uncapped = FramerConfig {
        max_namespace_bytes: usize::MAX,
        ..FramerConfig::default()
    };
    let (events, err, peak) = frame_measuring([input.as_slice()], &uncapped);
    assert_eq!((events, err), (2, None));
    assert!(
        peak <= FIXED + PER_INPUT_BYTE * input.len(),
        "peak heap {peak} for {} bytes",
        input.len()
    );
}

/// The measurement can fail: with the budget lifted, the prefixed-attribute copies (the one
/// copy left by design) grow far past the bound.
#[test]
fn without_the_budget_copies_break_the_bound() {
    let uri = format!("urn:{}", "u".repeat(1020));
    let input = with_header(&format!("<x xmlns:p='{uri}'>{}</x>", "<a p:b=''/>".repeat(5000)));
    let unbudgeted = FramerConfig {
        stanza_memory_allowance: usize::MAX / 2,
        memory_per_stanza_byte: 0,
        ..FramerConfig::default()
    };
    let (events, err, peak) = frame_measuring([input.as_slice()], &unbudgeted);
    assert_eq!((events, err), (2, None));
    assert!(
        peak > FIXED + PER_INPUT_BYTE * input.len(),
        "peak heap {peak} for {} bytes",
        input.len()
    );
}

/// Stanzas real clients and servers send are not refused by the memory budget, even dense
/// ones well past the allowance.
#[test]
fn dense_real_stanzas_fit_the_budget() {
    let features: String = (0..3000)
        .map(|i| format!("<feature var='urn:xmpp:feature:{i}'/>"))
        .collect();
    let disco = format!(
        "<iq type='result' id='d1' from='example.com'><query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='server' type='im'/>{features}</query></iq>"
    );
    let fields: String = (0..1500)
        .map(|i| format!("<field var='f{i}' type='text-single'><value>{i}</value></field>"))
        .collect();
    let form = format!(
        "<iq type='set' id='f1'><command xmlns='http://jabber.org/protocol/commands'>\
         <x xmlns='jabber:x:data' type='submit'>{fields}</x></command></iq>"
    );
    // 9 nodes a line: 800 lines stay under the 8192-node limit.
    let xhtml_body: String = (0..800)
        .map(|i| format!("<p>line {i} with <em>some</em> <strong>markup</strong>.</p><br/>"))
        .collect();
    let xhtml = format!(
        "<message to='a@b'><body>plain</body><html xmlns='http://jabber.org/protocol/xhtml-im'>\
         <body xmlns='http://www.w3.org/1999/xhtml'>{xhtml_body}</body></html></message>"
    );
    let roster_items: String = (0..2000)
        .map(|i| {
            format!("<item jid='contact{i}@example.net' name='Contact {i}' subscription='both'><group>Friends</group></item>")
        })
        .collect();
    let roster = format!("<iq type='result' id='r1'><query xmlns='jabber:iq:roster'>{roster_items}</query></iq>");
    for (name, stanza) in [
        ("disco#info", disco),
        ("data form", form),
        ("XHTML-IM", xhtml),
        ("roster", roster),
    ] {
        assert!(stanza.len() <= 256 * 1024, "{name}: {} bytes", stanza.len());
        let input = with_header(&stanza);
        let (events, err, peak) = frame_measuring([input.as_slice()], &FramerConfig::default());
        println!(
            "{name}: {} bytes, peak heap {peak} ({:.1} per byte)",
            stanza.len(),
            peak as f64 / stanza.len() as f64
        );
        assert_eq!(err, None, "{name}");
        assert_eq!(events, 2, "{name}");
    }
}

/// A released stanza holds little spare capacity: what it costs in a queue is close to what
/// its tree needs.
#[test]
fn released_stanza_has_no_spare_vector_capacity() {
    let (events, err) = run_chunks(
        [with_header(
            "<message to='a@b' type='chat' id='1'><body>hi</body><x xmlns='urn:x'><y/><y/><y/></x></message>",
        )
        .as_slice()],
        &FramerConfig::default(),
    );
    assert_eq!(err, None);
    let StreamEvent::Element(message) = &events[1] else {
        panic!("{events:?}")
    };
    fn check(e: &sb_proto::Element) {
        assert_eq!(e.children.capacity(), e.children.len(), "<{}/>", e.name);
        assert_eq!(e.attrs.capacity(), e.attrs.len(), "<{}/>", e.name);
        for child in e.elements() {
            check(child);
        }
    }
    check(message);
    assert!(
        message
            .get_child("x", "urn:x")
            .is_some_and(|x| x.elements().count() == 3)
    );
}

/// Small limits so the namespace and memory checks fire within a few hundred bytes, then
/// every split of the input must give the same events and error.
#[test]
fn memory_limits_are_split_independent() {
    let config = FramerConfig {
        max_namespace_bytes: 40,
        stanza_memory_allowance: 2048,
        memory_per_stanza_byte: 4,
        ..FramerConfig::default()
    };
    let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let uri40 = format!("urn:{}", "u".repeat(36));
    let cases: Vec<(String, Option<StreamErrorCondition>)> = vec![
        (
            format!("<x xmlns='{uri40}x'/>"),
            Some(StreamErrorCondition::PolicyViolation),
        ),
        (
            format!("<x xmlns:p='{uri40}x'/>"),
            Some(StreamErrorCondition::PolicyViolation),
        ),
        (
            format!("<x xmlns='{uri40}'>{}</x>", "<a/>".repeat(40)),
            Some(StreamErrorCondition::PolicyViolation),
        ),
        (
            format!("<x xmlns:p='{uri40}'>{}</x>", "<a p:b='1'/>".repeat(30)),
            Some(StreamErrorCondition::PolicyViolation),
        ),
        (
            format!("<x>{}</x>", "t<a>&amp;</a><![CDATA[c]]>".repeat(12)),
            Some(StreamErrorCondition::PolicyViolation),
        ),
        (
            format!("<x xmlns='{uri40}'><a xmlns='{uri40}'>text</a><b/></x><y/>"),
            None,
        ),
    ];
    for (body, condition) in cases {
        let input = format!("{header}{body}");
        let input = input.as_bytes();
        let whole: Outcome = run_chunks([input], &config);
        assert_eq!(
            whole.1.as_ref().map(|e| e.condition),
            condition,
            "{body}: {:?}",
            whole.1
        );
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(run_chunks([a, b], &config), whole, "{body}: split at byte {cut}");
        }
        assert_eq!(run_chunks(input.chunks(1), &config), whole, "{body}: byte by byte");
    }
}

/// The realistic session frames the same with the new limits, and its elements share the
/// namespace allocations of their declarations.
#[test]
fn session_elements_share_namespaces() {
    let (events, err) = run_chunks([SESSION.as_bytes()], &FramerConfig::default());
    assert_eq!(err, None);
    let elements: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Element(e) => Some(e),
            _ => None,
        })
        .collect();
    let presence = elements
        .iter()
        .find(|e| e.is("presence", ns::CLIENT))
        .expect("presence");
    let message = elements.iter().find(|e| e.is("message", ns::CLIENT)).expect("message");
    // Both inherit the header's default namespace: one allocation for the whole stream.
    assert!(presence.ns.shares_allocation_with(&message.ns));
    for child in presence.elements() {
        assert!(child.ns.shares_allocation_with(&presence.ns), "<{}/>", child.name);
    }
    let data = message.get_child("data", "urn:example:x").expect("x:data");
    let a = data.get_child("a", "urn:example:x").expect("x:a");
    assert!(a.ns.shares_allocation_with(&data.ns));
}
