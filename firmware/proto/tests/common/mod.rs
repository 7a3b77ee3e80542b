//! Inputs and helpers shared by the framer's integration tests.

use sb_proto::StreamError;
use sb_proto::framer::{FramerConfig, StreamEvent, StreamFramer};

/// A realistic client session: declaration, header, nonzas, stanzas with nested children,
/// entities, CDATA, multi-byte UTF-8 (2, 3 and 4 bytes), keepalives, and the close.
pub const SESSION: &str = "<?xml version='1.0' encoding='UTF-8'?>\n\
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
to='example.com' version='1.0' xml:lang='en'>\n\
<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=</auth>\
 \n \
<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony \u{2615}</resource></bind></iq>\
<presence><show>chat</show><status>Caf\u{e9} &amp; cr\u{e8}me &lt;3 \u{1F600}</status><priority>5</priority></presence>\
\t\n\
<message to=\"romeo@example.net/orchard\" type='chat' id=\"m&#x31;&quot;\" xml:lang='ja'>\
<body>\u{65e5}\u{672c}\u{8a9e} &#233;&#x1F389; <![CDATA[<b>raw & ready</b> \u{20ac}]]> tail</body>\
<thread>e0ffe42b28561960c6b12b944a092794b9683a38</thread>\
<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>\
<p style='font-weight:bold'>hi <em>there</em></p></body></html>\
<x:data xmlns:x='urn:example:x' x:kind='deep'><x:a><x:b><x:c>deep</x:c></x:b></x:a></x:data>\
</message>\
   \
<iq type='get' id='ping1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>\
<stream:features/>\
</stream:stream >";

pub type Outcome = (Vec<StreamEvent>, Option<StreamError>);

/// Feed `chunks` in order, draining events after each, stopping at the first error.
pub fn run_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, config: &FramerConfig) -> Outcome {
    let mut framer = StreamFramer::new(config.clone());
    let mut events = Vec::new();
    for chunk in chunks {
        framer.feed(chunk);
        loop {
            match framer.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(err) => return (events, Some(err)),
            }
        }
    }
    (events, None)
}
