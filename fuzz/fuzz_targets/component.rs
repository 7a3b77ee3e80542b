//! Arbitrary bytes from a would-be Call Bridge on the component port, framed and driven
//! through the XEP-0114 accept state machine as the connection task drives it.
//! Properties: no panic; the stream authenticates only with the digest of the configured
//! secret for our stream id, and only as the bridge its header named; nothing but a
//! handshake is accepted before that; a routed stanza comes from the bridge's own domain,
//! in `jabber:client`, with normalized addresses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_proto::component::handshake_digest;
use sb_proto::{FramerConfig, Jid, StreamEvent, StreamFramer, ns};
use sb_server::component::accept::{Accept, Inbound};

const DOMAIN: &str = "example.com";
const STREAM_ID: &str = "3BF96D32";
/// The one configured bridge, `cb1.example.com`, with XEP-0114's example secret.
const BRIDGE: &str = "cb1";
const SECRET: &str = "kvgP1SRzWVabhiPVAb1";

fuzz_target!(|data: &[u8]| {
    let mut framer = StreamFramer::new(FramerConfig::with_max_stanza_bytes(4096));
    framer.feed(data);
    let mut accept = Accept::new(DOMAIN, STREAM_ID);
    let expected_digest = handshake_digest(STREAM_ID, SECRET);
    let mut header_seen = false;
    while let Ok(Some(event)) = framer.next_event() {
        match event {
            StreamEvent::Header(header) => {
                let _ = accept.response_header(header.to.as_deref()).to_bytes();
                let first = !header_seen;
                header_seen = true;
                match accept.on_header(&header) {
                    Ok(claim) => {
                        assert!(first, "a second header was accepted");
                        assert_eq!(claim.address, format!("{}.{DOMAIN}", claim.name));
                        if claim.name == BRIDGE {
                            accept.secret_found();
                        } else {
                            let _ = accept.secret_missing();
                            return;
                        }
                    }
                    Err(refusal) => {
                        assert!(!accept.is_authenticated());
                        let _ = refusal.error.to_element().to_bytes(ns::COMPONENT);
                        return;
                    }
                }
            }
            StreamEvent::Element(element) if !accept.is_authenticated() => {
                if !header_seen {
                    return;
                }
                let text = element.text();
                match accept.on_handshake(&element, SECRET) {
                    Ok(claim) => {
                        assert_eq!(claim.name, BRIDGE);
                        assert!(element.is("handshake", ns::COMPONENT));
                        assert_eq!(text.trim().to_ascii_lowercase(), expected_digest);
                        assert!(accept.is_authenticated());
                    }
                    Err(_) => {
                        assert!(!accept.is_authenticated());
                        return;
                    }
                }
            }
            StreamEvent::Element(element) => match accept.on_stanza(element) {
                Ok(Inbound::Route(stanza)) => {
                    assert_eq!(stanza.ns, ns::CLIENT);
                    let from = stanza.attr("from").expect("a routed stanza has a from");
                    let from_jid = Jid::parse(from).expect("a routed stanza's from parses");
                    assert_eq!(from_jid.domain(), format!("{BRIDGE}.{DOMAIN}"));
                    assert_eq!(from_jid.to_string(), from, "from is not normalized");
                    let to = stanza.attr("to").expect("a routed stanza has a to");
                    assert_eq!(Jid::parse(to).map(|j| j.to_string()).as_deref(), Ok(to));
                }
                Ok(Inbound::Reply(reply)) => {
                    let _ = reply.to_bytes(ns::COMPONENT);
                }
                Ok(Inbound::Drop) => {}
                Err(error) => {
                    let _ = error.to_element().to_bytes(ns::COMPONENT);
                    return;
                }
            },
            StreamEvent::End => return,
        }
    }
});
