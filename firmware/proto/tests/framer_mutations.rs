//! Bounded, deterministic mutation testing of the framer: thousands of corrupted sessions,
//! each fed whole and at random split points. The framer must never panic, must give the
//! same result for every split, and must only fail with the stream errors it documents.

mod common;

use common::{SESSION, run_chunks};
use sb_proto::framer::{FramerConfig, StreamEvent, StreamHeader};
use sb_proto::{StreamErrorCondition, ns};

/// Every element the framer releases must survive serialization and re-framing unchanged:
/// that is what forwarding a stanza does, and a peer must never receive broken XML.
fn assert_round_trips(events: &[StreamEvent], context: &str) -> usize {
    let mut checked = 0;
    let mut default_ns = String::new();
    for event in events {
        match event {
            StreamEvent::Header(header) => default_ns = header.default_ns.clone(),
            StreamEvent::Element(element) => {
                let mut wire = StreamHeader::new(default_ns.as_str())
                    .with_prefix("db", ns::DIALBACK)
                    .to_bytes();
                wire.extend_from_slice(&element.to_bytes(&default_ns));
                let (again, err) = run_chunks([wire.as_slice()], &FramerConfig::default());
                assert_eq!(err, None, "{context}: {}", String::from_utf8_lossy(&wire));
                assert_eq!(
                    again.get(1),
                    Some(event),
                    "{context}: {}",
                    String::from_utf8_lossy(&wire)
                );
                checked += 1;
            }
            StreamEvent::End => {}
        }
    }
    checked
}

/// xorshift64*: deterministic, so a failure reproduces from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to an XML tokenizer, so mutations hit interesting paths often.
const INTERESTING: &[u8] = b"<>&;'\"/!?[]-#x:= \t\r\n\0\xff\xc3\xa9\xe2\x82\xac\xf0\x9f";

const SNIPPETS: &[&[u8]] = &[
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE x>",
    b"<?xml version='1.0'?>",
    b"<?pi?>",
    b"&amp;",
    b"&#0;",
    b"&#x1F600;",
    b"&unknown;",
    b"xmlns:p='urn:p'",
    b"<p:a/>",
    b"</stream:stream>",
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
    b"xmlns=''",
    b"xml:lang='en'",
    b"&#13;&#9;&#10;",
    b" t='&#13;&#9;&#10;'",
    b"<p:a xmlns:p='urn:p' p:k='1'><db:x xmlns:db='jabber:server:dialback'/></p:a>",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] ^= 1 << rng.below(8),
            1 => input.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < input.len() => {
                let end = (at + 1 + rng.below(16)).min(input.len());
                input.drain(at..end);
            }
            3 if at < input.len() => {
                let end = (at + 1 + rng.below(64)).min(input.len());
                let copy = input[at..end].to_vec();
                let to = rng.below(input.len() + 1);
                input.splice(to..to, copy);
            }
            4 => {
                let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                input.splice(at..at, snippet.iter().copied());
            }
            _ if at < input.len() => input[at] = INTERESTING[rng.below(INTERESTING.len())],
            _ => input.push(INTERESTING[rng.below(INTERESTING.len())]),
        }
    }
}

#[test]
fn mutated_sessions_never_panic_and_fail_typed() {
    let documented = [
        StreamErrorCondition::NotWellFormed,
        StreamErrorCondition::RestrictedXml,
        StreamErrorCondition::BadNamespacePrefix,
        StreamErrorCondition::InvalidNamespace,
        StreamErrorCondition::PolicyViolation,
        StreamErrorCondition::UnsupportedEncoding,
    ];
    // Small limits so the limit paths are exercised as well.
    let configs = [
        FramerConfig::default(),
        FramerConfig {
            max_stanza_bytes: 300,
            max_depth: 4,
            max_header_bytes: 200,
            max_attributes: 4,
            max_nodes: 8,
            // Below `http://jabber.org/protocol/xhtml-im`, so the session itself trips it.
            max_namespace_bytes: 34,
            stanza_memory_allowance: 1024,
            memory_per_stanza_byte: 4,
        },
    ];
    let mut rng = Rng(0x5EED_F00D);
    let mut failures_seen = 0usize;
    let mut round_trips = assert_round_trips(&run_chunks([SESSION.as_bytes()], &configs[0]).0, "session");
    for iteration in 0..3000 {
        let mut input = SESSION.as_bytes().to_vec();
        mutate(&mut rng, &mut input);
        let config = &configs[iteration % configs.len()];
        let whole = run_chunks([input.as_slice()], config);
        round_trips += assert_round_trips(&whole.0, &format!("iteration {iteration}"));
        if let Some(err) = &whole.1 {
            failures_seen += 1;
            assert!(documented.contains(&err.condition), "iteration {iteration}: {err}");
            assert!(
                err.text.as_deref().is_some_and(|t| !t.is_empty()),
                "iteration {iteration}: no text"
            );
        }
        // Random splits, three cut points each.
        let mut cuts: Vec<usize> = (0..3).map(|_| rng.below(input.len() + 1)).collect();
        cuts.sort_unstable();
        let chunks = [
            &input[..cuts[0]],
            &input[cuts[0]..cuts[1]],
            &input[cuts[1]..cuts[2]],
            &input[cuts[2]..],
        ];
        assert_eq!(
            run_chunks(chunks, config),
            whole,
            "iteration {iteration}, cuts {cuts:?}"
        );
        if iteration % 100 == 0 {
            assert_eq!(
                run_chunks(input.chunks(1), config),
                whole,
                "iteration {iteration}, byte by byte"
            );
        }
    }
    // The mutations must actually break things, or this test proves nothing.
    assert!(failures_seen > 1000, "only {failures_seen} mutated inputs failed");
    assert!(round_trips > 3000, "only {round_trips} elements round-tripped");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    let config = FramerConfig::default();
    for iteration in 0..2000 {
        let len = rng.below(256);
        let mut input: Vec<u8> = (0..len).map(|_| INTERESTING[rng.below(INTERESTING.len())]).collect();
        if iteration % 2 == 0 {
            // Behind a valid header so the stanza paths see the garbage.
            let header = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><a>";
            input.splice(0..0, header.iter().copied());
        }
        let whole = run_chunks([input.as_slice()], &config);
        let cut = rng.below(input.len() + 1);
        let (a, b) = input.split_at(cut);
        assert_eq!(run_chunks([a, b], &config), whole, "iteration {iteration}");
    }
}
