//! Arbitrary bytes from a peer server on the s2s port, framed and driven through the
//! accepting side of federation (receiving server for `db:result`, authoritative server for
//! `db:verify`, XEP-0220), with the harness playing the peer's authoritative server.
//!
//! Input: one mode byte (security mode, direct TLS, client certificates, privacy, how the
//! authoritative server answers), then the peer's bytes; a 0xFF byte (never part of a
//! well-formed UTF-8 stream) separates what is sent before STARTTLS from what follows it.
//!
//! Properties: no panic; a domain pair authenticates only when the authoritative server
//! said its key is valid; a stanza is delivered only from an authenticated remote domain to
//! a local one, in `jabber:client`; a `db:verify` is answered valid only for a key that is
//! ours for exactly that stream and direction; nothing is written after the stream closed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_federation::policy::{Policy, normalize_domain};
use sb_federation::stream::incoming::{IncomingConfig, IncomingStream};
use sb_federation::stream::{AuthMethod, Output, Verdict};
use sb_proto::dialback::dialback_key;
use sb_proto::{FramerConfig, Jid, StanzaErrorCondition, StreamEvent, StreamFramer, ns};
use sb_store::{FederationConfig, PrivacyMode, Secret, SecurityMode};

const LOCAL: &str = "montague.example";
const LOCAL_MUC: &str = "conf.montague.example";
const REMOTE: &str = "capulet.example";
/// Our dialback secret, and the one the peer's authoritative server keys with.
const SECRET: &str = "s3cr3tf0rd14lb4ck";
const REMOTE_SECRET: &str = "d14lb4ck43v3r";
const STREAM_ID_BASE: &str = "417GAF2";

struct Harness {
    stream: IncomingStream,
    /// (remote, local) pairs the harness's authoritative server said valid.
    vouched: Vec<(String, String)>,
    /// Pairs the stream reported authenticated (dialback or SASL EXTERNAL).
    authenticated: Vec<(String, String)>,
    verdict_mode: u8,
    closed: bool,
    tls_requested: bool,
    restart: bool,
}

impl Harness {
    fn verdict(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> Verdict {
        match self.verdict_mode {
            0 => {
                if dialback_key(REMOTE_SECRET, receiving, originating, stream_id) == key {
                    Verdict::Valid
                } else {
                    Verdict::Invalid
                }
            }
            1 => Verdict::Timeout,
            2 => Verdict::Error(StanzaErrorCondition::RemoteServerNotFound),
            _ => Verdict::ConnectionFailed,
        }
    }

    /// Check and carry out what the stream asked for; verification requests are answered
    /// at once, and their answers checked in turn.
    fn carry_out(&mut self, outputs: Vec<Output>, sent: Option<&sb_proto::Element>) {
        let mut queue = outputs;
        while !queue.is_empty() {
            let mut follow_up = Vec::new();
            for output in queue {
                assert!(!self.closed, "output after the stream closed: {output:?}");
                match output {
                    Output::Write(bytes) => check_verify_answer(&bytes, sent),
                    Output::StartTls => self.tls_requested = true,
                    Output::Restart => self.restart = true,
                    Output::Authenticated { local, remote, method } => {
                        if method == AuthMethod::Dialback {
                            assert!(
                                self.vouched.contains(&(remote.clone(), local.clone())),
                                "{remote} -> {local} authenticated without a valid key"
                            );
                        }
                        self.authenticated.push((remote, local));
                    }
                    Output::Verify(request) => {
                        let verdict = self.verdict(
                            &request.receiving,
                            &request.originating,
                            &request.stream_id,
                            &request.key,
                        );
                        if verdict == Verdict::Valid {
                            self.vouched
                                .push((request.originating.clone(), request.receiving.clone()));
                        }
                        follow_up.extend(self.stream.verify_outcome(&request, verdict));
                    }
                    Output::Stanza(stanza) => {
                        assert_eq!(stanza.ns, ns::CLIENT);
                        let from = Jid::parse(stanza.attr("from").unwrap_or_default()).expect("from parses");
                        let to = Jid::parse(stanza.attr("to").unwrap_or_default()).expect("to parses");
                        assert!(
                            self.authenticated
                                .iter()
                                .any(|(remote, local)| remote == from.domain() && local == to.domain()),
                            "stanza from {from} to {to} on an unauthenticated pair"
                        );
                    }
                    Output::Close { .. } => self.closed = true,
                    Output::Verified { .. } | Output::PairFailed { .. } => {
                        panic!("an incoming stream produced an outgoing-only output")
                    }
                }
            }
            queue = follow_up;
        }
    }
}

/// A `db:verify` we answered `valid` must carry a key that is ours for that stream id and
/// direction, computed here independently of the verification code.
fn check_verify_answer(bytes: &[u8], sent: Option<&sb_proto::Element>) {
    let text = String::from_utf8_lossy(bytes);
    let Some(sent) = sent.filter(|e| e.is("verify", ns::DIALBACK)) else {
        return;
    };
    if !(text.contains("<db:verify") || text.contains("<verify")) || !text.contains("type='valid'") {
        return;
    }
    let receiving = normalize_domain(sent.attr("from").unwrap_or_default());
    let originating = normalize_domain(sent.attr("to").unwrap_or_default());
    let id = sent.attr("id").unwrap_or_default();
    let expected = dialback_key(SECRET, &receiving, &originating, id);
    assert_eq!(
        sent.text().trim().to_ascii_lowercase(),
        expected,
        "db:verify answered valid for a key that is not ours"
    );
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let security = match mode & 3 {
        0 => SecurityMode::TlsRequired,
        1 => SecurityMode::TlsOptional,
        _ => SecurityMode::NoTls,
    };
    let policy = Policy::from_config(&FederationConfig {
        privacy: if mode & 16 == 0 {
            PrivacyMode::Off
        } else {
            PrivacyMode::Allow
        },
        allow: vec![REMOTE.into()],
        ..FederationConfig::default()
    });
    let mut stream = IncomingStream::new(IncomingConfig {
        local_domains: vec![LOCAL.into(), LOCAL_MUC.into()],
        security,
        tls_available: true,
        secret: Secret::new(SECRET),
        client_certs: mode & 8 != 0,
        policy,
        stream_id_base: STREAM_ID_BASE.into(),
    });
    if mode & 4 != 0 {
        stream = stream.with_direct_tls(None);
    }
    let mut harness = Harness {
        stream,
        vouched: Vec::new(),
        authenticated: Vec::new(),
        verdict_mode: (mode >> 5) & 3,
        closed: false,
        tls_requested: false,
        restart: false,
    };

    let mut segments = rest.split(|&b| b == 0xFF);
    let mut framer = StreamFramer::new(FramerConfig::with_max_stanza_bytes(4096));
    framer.feed(segments.next().unwrap_or_default());
    loop {
        match framer.next_event() {
            Ok(Some(event)) => {
                let sent = match &event {
                    StreamEvent::Element(element) => Some(element.clone()),
                    _ => None,
                };
                let outputs = harness.stream.handle(event);
                harness.carry_out(outputs, sent.as_ref());
                if harness.restart {
                    harness.restart = false;
                    framer.restart();
                }
                if harness.tls_requested {
                    // The connection task runs the handshake, then frames a fresh stream.
                    harness.tls_requested = false;
                    let outputs = harness.stream.tls_established(None);
                    harness.carry_out(outputs, None);
                    framer.reset();
                    let Some(next) = segments.next() else {
                        return;
                    };
                    framer.feed(next);
                }
            }
            Ok(None) => {
                let outputs = harness.stream.close();
                harness.carry_out(outputs, None);
                return;
            }
            Err(error) => {
                let outputs = harness.stream.framing_error(error);
                harness.carry_out(outputs, None);
                assert!(harness.stream.is_closed());
                return;
            }
        }
        if harness.closed {
            assert!(harness.stream.handle(StreamEvent::End).is_empty());
            return;
        }
    }
});
