//! Arbitrary bytes at arbitrary split points. Properties: no panic; the same events and
//! error however the input is split; only documented stream errors, with a text; every
//! released element survives serialization and re-framing unchanged; and the heap the
//! framer uses is bounded by its input (issue 13: no memory amplification).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_proto::framer::{FramerConfig, StreamEvent, StreamFramer, StreamHeader};
use sb_proto::{StreamError, StreamErrorCondition, ns};

type Outcome = (Vec<StreamEvent>, Option<StreamError>);

#[path = "../../tests/counting_heap/mod.rs"]
mod counting_heap;

#[global_allocator]
static ALLOCATOR: counting_heap::Counting = counting_heap::Counting;

/// Heap the framer may use whatever it is sent (its state, error texts, per-tag scratch),
/// on top of the stanza allowance.
const FIXED_HEAP: usize = 32 * 1024;
/// Per input byte, on top of the stanza budget's: the receive buffer and the unit being
/// decoded.
const BUFFER_HEAP_PER_BYTE: usize = 4;

/// Peak heap above the starting point while `input` is framed, each event dropped as it
/// comes (as a connection task does once it has routed it).
fn peak_heap(input: &[u8], config: &FramerConfig) -> usize {
    let start = counting_heap::start_measuring();
    let mut framer = StreamFramer::new(config.clone());
    framer.feed(input);
    while let Ok(Some(event)) = framer.next_event() {
        drop(event);
    }
    drop(framer);
    counting_heap::peak() - start
}

fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, config: &FramerConfig) -> Outcome {
    let mut framer = StreamFramer::new(config.clone());
    let mut events = Vec::new();
    for chunk in chunks {
        framer.feed(chunk);
        loop {
            match framer.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(err) => {
                    // Poisoned: the same error again.
                    assert_eq!(framer.next_event(), Err(err.clone()));
                    return (events, Some(err));
                }
            }
        }
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits, the next two how the rest is cut.
    let [mode, split_a, split_b, input @ ..] = data else {
        return;
    };
    let config = if mode & 1 == 0 {
        FramerConfig::default()
    } else {
        FramerConfig {
            max_stanza_bytes: 64 + usize::from(mode >> 1) * 8,
            max_depth: 1 + usize::from(mode >> 5),
            max_header_bytes: 128,
            max_attributes: 3,
            max_nodes: 16,
            max_namespace_bytes: 8 + usize::from(mode >> 3),
            stanza_memory_allowance: 256,
            memory_per_stanza_byte: 2 + usize::from(mode >> 6),
        }
    };
    let whole = run([input], &config);

    let peak = peak_heap(input, &config);
    let bound = FIXED_HEAP
        + config.stanza_memory_allowance
        + (config.memory_per_stanza_byte + BUFFER_HEAP_PER_BYTE) * input.len();
    assert!(
        peak <= bound,
        "peak heap {peak} for {} input bytes exceeds {bound}",
        input.len()
    );

    let cut = usize::from(*split_a) * input.len() / 256;
    let (a, b) = input.split_at(cut);
    assert_eq!(run([a, b], &config), whole);
    let chunk = usize::from(*split_b % 16) + 1;
    assert_eq!(run(input.chunks(chunk), &config), whole);

    if let Some(err) = &whole.1 {
        assert!(matches!(
            err.condition,
            StreamErrorCondition::NotWellFormed
                | StreamErrorCondition::RestrictedXml
                | StreamErrorCondition::BadNamespacePrefix
                | StreamErrorCondition::InvalidNamespace
                | StreamErrorCondition::PolicyViolation
                | StreamErrorCondition::UnsupportedEncoding
        ));
        assert!(err.text.as_deref().is_some_and(|t| !t.is_empty()));
    }

    let mut default_ns = String::new();
    for event in &whole.0 {
        match event {
            StreamEvent::Header(header) => default_ns = header.default_ns.clone(),
            StreamEvent::Element(element) => {
                let mut wire = StreamHeader::new(default_ns.as_str())
                    .with_prefix("db", ns::DIALBACK)
                    .to_bytes();
                wire.extend_from_slice(&element.to_bytes(&default_ns));
                let (again, err) = run([wire.as_slice()], &FramerConfig::default());
                assert_eq!(err, None);
                assert_eq!(again.get(1), Some(event));
            }
            StreamEvent::End => {}
        }
    }
});
