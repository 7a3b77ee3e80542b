//! The initiating side of a server-to-server stream.
//!
//! Two uses: a *link* that authenticates one or more of our domains to a remote domain
//! (SASL EXTERNAL when offered over TLS, else Server Dialback with `db:result`; more of our
//! domains can be piggybacked later), and a *verify-only* stream on which we, as receiving
//! server, ask an authoritative server about keys with `db:verify` and close as soon as every
//! question is answered.
//!
//! Sequence: header → (features → STARTTLS → header) → features → EXTERNAL or db:result →
//! established. A pre-1.0 peer (no `version`) sends no features: dialback starts right after
//! its header, unless TLS is required.

use super::{
    AuthMethod, LinkError, Output, Verdict, VerifyRequest, is_stanza, read_stream_error, read_verdict,
    stream_error_bytes,
};
use sb_proto::dialback::dialback_key;
use sb_proto::log_safe;
use sb_proto::retarget_namespace;
use sb_proto::{Element, Jid, StreamError, StreamErrorCondition, StreamEvent, StreamHeader, ns};
use sb_store::{Secret, SecurityMode};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Carry stanzas from our domain `local` (more can be added with `add_pair`).
    Link,
    /// Ask these questions, then close.
    VerifyOnly(Vec<VerifyRequest>),
}

#[derive(Clone, Debug)]
pub struct OutgoingConfig {
    /// Our domain: the sender domain of a link, the receiving domain of a verify stream.
    pub local: String,
    /// The peer's domain.
    pub remote: String,
    pub security: SecurityMode,
    /// The dialback secret; `Secret` prints as `<redacted>`, so the config can be logged.
    pub secret: Secret,
    pub purpose: Purpose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Idle,
    AwaitHeader,
    AwaitFeatures,
    AwaitProceed,
    TlsHandshake,
    AwaitSasl,
    /// Authentication requests are out (or the stream is up); answers and features may come.
    Open,
    Closed,
}

pub struct OutgoingStream {
    config: OutgoingConfig,
    state: State,
    tls: bool,
    sasl_succeeded: bool,
    external_failed: bool,
    stream_id: Option<String>,
    /// Our domains with a `db:result` out and no answer yet.
    pending: Vec<String>,
    /// Our domains that may send stanzas on this stream, with how.
    authenticated: Vec<(String, AuthMethod)>,
    /// Pairs to authenticate once the stream is ready (piggybacked before it was).
    queued_pairs: Vec<String>,
    verifies: Vec<VerifyRequest>,
    /// Questions asked and not yet answered.
    asked: Vec<VerifyRequest>,
}

impl OutgoingStream {
    pub fn new(config: OutgoingConfig) -> Self {
        let verifies = match &config.purpose {
            Purpose::VerifyOnly(requests) => requests.clone(),
            Purpose::Link => Vec::new(),
        };
        OutgoingStream {
            config,
            state: State::Idle,
            tls: false,
            sasl_succeeded: false,
            external_failed: false,
            stream_id: None,
            pending: Vec::new(),
            authenticated: Vec::new(),
            queued_pairs: Vec::new(),
            verifies,
            asked: Vec::new(),
        }
    }

    /// For a direct-TLS connection (XEP-0368): TLS is up before the first byte.
    pub fn with_direct_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn local(&self) -> &str {
        &self.config.local
    }

    pub fn remote(&self) -> &str {
        &self.config.remote
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// How `local` was authenticated on this stream, if it was.
    pub fn auth_method(&self, local: &str) -> Option<AuthMethod> {
        self.authenticated.iter().find(|(d, _)| d == local).map(|(_, m)| *m)
    }

    pub fn authenticated_domains(&self) -> impl Iterator<Item = &str> {
        self.authenticated.iter().map(|(d, _)| d.as_str())
    }

    pub fn is_pending(&self, local: &str) -> bool {
        self.pending.iter().any(|d| d == local) || self.queued_pairs.iter().any(|d| d == local)
    }

    /// Whether the stream waits for nothing: every question answered, every pair decided.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty() && self.queued_pairs.is_empty() && self.asked.is_empty()
    }

    fn header(&self) -> Vec<u8> {
        let mut header = StreamHeader::new(ns::SERVER).with_prefix("db", ns::DIALBACK);
        header.from = Some(self.config.local.clone());
        header.to = Some(self.config.remote.clone());
        header.to_bytes()
    }

    /// Open the stream.
    pub fn start(&mut self) -> Vec<Output> {
        self.state = State::AwaitHeader;
        vec![Output::Write(self.header())]
    }

    /// The TLS handshake after `<proceed/>` finished; the framer was reset.
    pub fn tls_established(&mut self) -> Vec<Output> {
        self.tls = true;
        self.state = State::AwaitHeader;
        self.stream_id = None;
        vec![Output::Write(self.header())]
    }

    /// The framer failed: tell the peer why and close.
    pub fn framing_error(&mut self, error: StreamError) -> Vec<Output> {
        self.fail_with(error)
    }

    pub fn handle(&mut self, event: StreamEvent) -> Vec<Output> {
        if self.state == State::Closed {
            return Vec::new();
        }
        match event {
            StreamEvent::Header(header) => self.on_header(header),
            StreamEvent::Element(element) => self.on_element(element),
            StreamEvent::End => {
                let error = (self.authenticated.is_empty() && self.config.purpose == Purpose::Link)
                    .then_some(LinkError::ClosedEarly);
                self.close_with(error)
            }
        }
    }

    /// Authenticate another of our domains to the same remote domain (XEP-0220 §4,
    /// multiplexing sender domains).
    pub fn add_pair(&mut self, local: &str) -> Vec<Output> {
        if self.auth_method(local).is_some() || self.is_pending(local) {
            return Vec::new();
        }
        if self.state != State::Open || !self.ready_for_dialback() {
            self.queued_pairs.push(local.to_owned());
            return Vec::new();
        }
        self.send_result(local)
    }

    /// Ask about a key over this stream.
    pub fn verify(&mut self, request: VerifyRequest) -> Vec<Output> {
        if self.state == State::Open {
            self.ask(request)
        } else {
            self.verifies.push(request);
            Vec::new()
        }
    }

    /// Serialize a stanza from the router (`jabber:client`) for this stream, if its sender
    /// domain is authenticated here; otherwise it comes back unchanged.
    pub fn encode_stanza(&self, mut stanza: Element) -> Result<Vec<u8>, Element> {
        let sender_ok = stanza
            .attr("from")
            .and_then(|from| Jid::parse(from).ok())
            .is_some_and(|from| self.auth_method(from.domain()).is_some());
        if !sender_ok || self.state != State::Open {
            return Err(stanza);
        }
        retarget_namespace(&mut stanza, ns::CLIENT, ns::SERVER);
        Ok(stanza.to_bytes(ns::SERVER))
    }

    /// End the stream politely.
    pub fn close(&mut self) -> Vec<Output> {
        self.close_with(None)
    }

    fn close_with(&mut self, error: Option<LinkError>) -> Vec<Output> {
        if self.state == State::Closed {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.state != State::Idle {
            out.push(Output::Write(sb_proto::STREAM_CLOSE.to_vec()));
        }
        out.extend(self.fail_pending(error.clone()));
        self.state = State::Closed;
        out.push(Output::Close { error });
        out
    }

    /// Every pair and question still open fails with `error` (or as "closed early").
    fn fail_pending(&mut self, error: Option<LinkError>) -> Vec<Output> {
        let error = error.unwrap_or(LinkError::ClosedEarly);
        let mut out = Vec::new();
        for local in self.pending.drain(..).chain(self.queued_pairs.drain(..)) {
            out.push(Output::PairFailed {
                local,
                error: error.clone(),
            });
        }
        let verdict = match error {
            LinkError::DialbackTimeout => Verdict::Timeout,
            _ => Verdict::ConnectionFailed,
        };
        for request in self.asked.drain(..).chain(self.verifies.drain(..)) {
            out.push(Output::Verified { request, verdict });
        }
        out
    }

    /// A protocol error on our side of the judgement: send the stream error and close.
    fn fail_with(&mut self, error: StreamError) -> Vec<Output> {
        if self.state == State::Closed {
            return Vec::new();
        }
        log::warn!("s2s out {} -> {}: {error}", self.config.local, self.config.remote);
        let mut out = vec![Output::Write(stream_error_bytes(&error))];
        let link_error = LinkError::Protocol(error);
        out.extend(self.fail_pending(Some(link_error.clone())));
        self.state = State::Closed;
        out.push(Output::Close {
            error: Some(link_error),
        });
        out
    }

    /// We decline to continue (policy): close without blaming the peer's XML.
    fn give_up(&mut self, error: LinkError) -> Vec<Output> {
        log::warn!("s2s out {} -> {}: {error}", self.config.local, self.config.remote);
        let mut out = vec![Output::Write(sb_proto::STREAM_CLOSE.to_vec())];
        out.extend(self.fail_pending(Some(error.clone())));
        self.state = State::Closed;
        out.push(Output::Close { error: Some(error) });
        out
    }

    fn on_header(&mut self, header: StreamHeader) -> Vec<Output> {
        if self.state != State::AwaitHeader {
            return self.fail_with(StreamError::with_text(
                StreamErrorCondition::BadFormat,
                "unexpected stream header",
            ));
        }
        if let Err(error) = header.check_default_ns(ns::SERVER) {
            return self.fail_with(error);
        }
        self.stream_id = header.id.clone();
        if header.is_version_1() {
            self.state = State::AwaitFeatures;
            return Vec::new();
        }
        // A pre-1.0 server sends no features and knows no STARTTLS.
        if !self.tls && self.config.security == SecurityMode::TlsRequired {
            return self.give_up(LinkError::TlsNotOffered);
        }
        self.authenticate(None)
    }

    fn on_element(&mut self, element: Element) -> Vec<Output> {
        if element.is("error", ns::STREAM) {
            let error = read_stream_error(&element);
            log::warn!(
                "s2s out {} -> {}: peer sent {error}",
                self.config.local,
                self.config.remote
            );
            return self.close_with(Some(LinkError::PeerStreamError(error)));
        }
        match (self.state, element.ns.as_str(), element.name.as_str()) {
            (State::AwaitFeatures, ns::STREAM, "features") => self.on_features(&element),
            (State::AwaitProceed, ns::TLS, "proceed") => {
                self.state = State::TlsHandshake;
                vec![Output::StartTls]
            }
            (State::AwaitProceed, ns::TLS, "failure") => self.give_up(LinkError::TlsRefused),
            (State::AwaitSasl, ns::SASL, "success") => {
                self.sasl_succeeded = true;
                self.state = State::AwaitHeader;
                self.stream_id = None;
                log::info!(
                    "s2s out {} -> {}: SASL EXTERNAL succeeded",
                    self.config.local,
                    self.config.remote
                );
                vec![Output::Restart, Output::Write(self.header())]
            }
            (State::AwaitSasl, ns::SASL, "failure") => {
                log::info!(
                    "s2s out {} -> {}: SASL EXTERNAL refused, falling back to dialback",
                    self.config.local,
                    self.config.remote
                );
                self.external_failed = true;
                self.state = State::Open;
                let mut out = self.send_result(&self.config.local.clone());
                out.extend(self.drain_queued());
                out
            }
            (State::Open, ns::DIALBACK, "result") => self.on_result(&element),
            (State::Open, ns::DIALBACK, "verify") => self.on_verify_answer(&element),
            (State::Open, ns::STREAM, "features") => Vec::new(),
            (State::Open, _, _) if is_stanza(&element) => {
                // Streams are one-way (no XEP-0288): a stanza here is the peer's mistake, and
                // dropping it is kinder than tearing down our link.
                log::debug!(
                    "s2s out {} -> {}: ignoring a <{}/> on an outgoing stream",
                    self.config.local,
                    self.config.remote,
                    element.name
                );
                Vec::new()
            }
            _ => self.fail_with(StreamError::with_text(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("unexpected <{}/> in {}", element.name, element.ns),
            )),
        }
    }

    fn on_features(&mut self, features: &Element) -> Vec<Output> {
        if self.sasl_succeeded {
            let local = self.config.local.clone();
            self.authenticated.push((local.clone(), AuthMethod::SaslExternal));
            self.state = State::Open;
            let mut out = vec![Output::Authenticated {
                local,
                remote: self.config.remote.clone(),
                method: AuthMethod::SaslExternal,
            }];
            out.extend(self.drain_queued());
            return out;
        }
        let starttls = features.get_child("starttls", ns::TLS);
        if !self.tls {
            match (starttls, self.config.security) {
                (Some(_), SecurityMode::TlsRequired | SecurityMode::TlsOptional) => {
                    self.state = State::AwaitProceed;
                    return vec![Output::Write(Element::new("starttls", ns::TLS).to_bytes(ns::SERVER))];
                }
                (Some(offer), SecurityMode::NoTls) if offer.has_child("required", ns::TLS) => {
                    return self.give_up(LinkError::PeerRequiresTls);
                }
                (None, SecurityMode::TlsRequired) => return self.give_up(LinkError::TlsNotOffered),
                _ => {}
            }
        }
        self.authenticate(Some(features))
    }

    fn offers_external(features: Option<&Element>) -> bool {
        features
            .and_then(|f| f.get_child("mechanisms", ns::SASL))
            .is_some_and(|m| {
                m.elements()
                    .any(|mech| mech.name == "mechanism" && mech.text().trim() == "EXTERNAL")
            })
    }

    fn authenticate(&mut self, features: Option<&Element>) -> Vec<Output> {
        self.state = State::Open;
        let mut out = Vec::new();
        if self.config.purpose == Purpose::Link {
            if self.tls && !self.external_failed && Self::offers_external(features) {
                self.state = State::AwaitSasl;
                log::info!(
                    "s2s out {} -> {}: peer offers SASL EXTERNAL, trying it",
                    self.config.local,
                    self.config.remote
                );
                let auth = Element::new("auth", ns::SASL)
                    .with_attr("mechanism", "EXTERNAL")
                    .with_text(sb_proto::sasl::encode_payload(self.config.local.as_bytes()));
                return vec![Output::Write(auth.to_bytes(ns::SERVER))];
            }
            out.extend(self.send_result(&self.config.local.clone()));
        }
        out.extend(self.drain_queued());
        if self.state == State::Open && self.config.purpose != Purpose::Link && self.is_settled() {
            out.extend(self.close());
        }
        out
    }

    fn ready_for_dialback(&self) -> bool {
        self.stream_id.is_some()
    }

    fn drain_queued(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        for local in std::mem::take(&mut self.queued_pairs) {
            out.extend(self.send_result(&local));
        }
        for request in std::mem::take(&mut self.verifies) {
            out.extend(self.ask(request));
        }
        out
    }

    fn send_result(&mut self, local: &str) -> Vec<Output> {
        let Some(stream_id) = self.stream_id.clone() else {
            return self.fail_with(StreamError::with_text(
                StreamErrorCondition::InvalidXml,
                "the stream header has no id, which dialback needs",
            ));
        };
        let key = dialback_key(self.config.secret.expose(), &self.config.remote, local, &stream_id);
        log::info!(
            "s2s out {local} -> {}: sending db:result (dialback key) on stream {stream_id}",
            self.config.remote
        );
        self.pending.push(local.to_owned());
        let result = Element::new("result", ns::DIALBACK)
            .with_attr("from", local)
            .with_attr("to", &self.config.remote)
            .with_text(key);
        vec![Output::Write(result.to_bytes(ns::SERVER))]
    }

    fn ask(&mut self, request: VerifyRequest) -> Vec<Output> {
        log::info!(
            "s2s out {} -> {}: sending db:verify for stream {}",
            request.receiving,
            request.originating,
            request.stream_id
        );
        let verify = Element::new("verify", ns::DIALBACK)
            .with_attr("from", &request.receiving)
            .with_attr("to", &request.originating)
            .with_attr("id", &request.stream_id)
            .with_text(request.key.clone());
        self.asked.push(request);
        vec![Output::Write(verify.to_bytes(ns::SERVER))]
    }

    fn on_result(&mut self, element: &Element) -> Vec<Output> {
        let (Some(from), Some(to), Some(verdict)) = (element.attr("from"), element.attr("to"), read_verdict(element))
        else {
            return self.fail_with(StreamError::with_text(
                StreamErrorCondition::ImproperAddressing,
                "db:result answer without from, to or type",
            ));
        };
        let from = crate::policy::normalize_domain(from);
        let to = crate::policy::normalize_domain(to);
        let Some(pos) = self.pending.iter().position(|d| *d == to) else {
            log::debug!(
                "s2s out: ignoring a db:result answer for a pair we did not ask about ({} -> {})",
                log_safe(&to),
                log_safe(&from)
            );
            return Vec::new();
        };
        if from != self.config.remote {
            return self.fail_with(StreamError::with_text(
                StreamErrorCondition::InvalidFrom,
                "db:result answer from another domain than the stream's",
            ));
        }
        let local = self.pending.remove(pos);
        log::info!("s2s out {local} -> {from}: db:result answer: {}", verdict.describe());
        match verdict {
            Verdict::Valid => {
                self.authenticated.push((local.clone(), AuthMethod::Dialback));
                vec![Output::Authenticated {
                    local,
                    remote: from,
                    method: AuthMethod::Dialback,
                }]
            }
            Verdict::Invalid | Verdict::Error(_) | Verdict::Timeout | Verdict::ConnectionFailed => {
                let error = match verdict {
                    Verdict::Invalid => LinkError::DialbackInvalid,
                    Verdict::Error(condition) => LinkError::DialbackError(condition),
                    Verdict::ConnectionFailed => {
                        LinkError::DialbackError(sb_proto::StanzaErrorCondition::RemoteServerNotFound)
                    }
                    Verdict::Timeout | Verdict::Valid => LinkError::DialbackTimeout,
                };
                let mut out = vec![Output::PairFailed {
                    local,
                    error: error.clone(),
                }];
                if self.authenticated.is_empty() && self.is_settled() {
                    out.extend(self.close_with(Some(error)));
                }
                out
            }
        }
    }

    fn on_verify_answer(&mut self, element: &Element) -> Vec<Output> {
        let Some(verdict) = read_verdict(element) else {
            log::debug!("s2s out: ignoring a db:verify request on an outgoing stream");
            return Vec::new();
        };
        let id = element.attr("id").unwrap_or_default();
        let from = element
            .attr("from")
            .map(crate::policy::normalize_domain)
            .unwrap_or_default();
        let to = element
            .attr("to")
            .map(crate::policy::normalize_domain)
            .unwrap_or_default();
        let Some(pos) = self
            .asked
            .iter()
            .position(|r| r.stream_id == id && r.originating == from && r.receiving == to)
        else {
            log::debug!(
                "s2s out: ignoring a db:verify answer nobody asked for (id {})",
                log_safe(id)
            );
            return Vec::new();
        };
        let request = self.asked.remove(pos);
        log::info!(
            "s2s out {} -> {}: db:verify answer for stream {}: {}",
            request.receiving,
            request.originating,
            request.stream_id,
            verdict.describe()
        );
        let mut out = vec![Output::Verified { request, verdict }];
        if matches!(self.config.purpose, Purpose::VerifyOnly(_)) && self.is_settled() {
            // XEP-0220: a stream used only for verification is closed right after its answer.
            out.extend(self.close());
        }
        out
    }

    /// The dialback answer did not come in time: every pair still waiting fails.
    pub fn dialback_timed_out(&mut self) -> Vec<Output> {
        if self.is_settled() {
            return Vec::new();
        }
        log::warn!(
            "s2s out {} -> {}: no dialback answer in time",
            self.config.local,
            self.config.remote
        );
        if self.authenticated.is_empty() {
            return self.close_with(Some(LinkError::DialbackTimeout));
        }
        self.fail_pending(Some(LinkError::DialbackTimeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::StanzaErrorCondition;

    const SECRET: &str = "s3cr3tf0rd14lb4ck";

    fn link(security: SecurityMode) -> OutgoingStream {
        OutgoingStream::new(OutgoingConfig {
            local: "a.example".into(),
            remote: "b.example".into(),
            security,
            secret: Secret::new(SECRET),
            purpose: Purpose::Link,
        })
    }

    fn header(id: &str) -> StreamEvent {
        let mut h = StreamHeader::new(ns::SERVER).with_prefix("db", ns::DIALBACK);
        h.id = Some(id.into());
        h.from = Some("b.example".into());
        StreamEvent::Header(h)
    }

    fn features(children: Vec<Element>) -> StreamEvent {
        let mut f = Element::new("features", ns::STREAM);
        for c in children {
            f.push_child(c);
        }
        StreamEvent::Element(f)
    }

    fn written(out: &[Output]) -> String {
        out.iter()
            .filter_map(|o| match o {
                Output::Write(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn answer(name: &str, verdict: &str) -> StreamEvent {
        StreamEvent::Element(
            Element::new(name, ns::DIALBACK)
                .with_attr("from", "b.example")
                .with_attr("to", "a.example")
                .with_attr("type", verdict),
        )
    }

    #[test]
    fn starttls_then_dialback_then_stanzas() {
        let mut s = link(SecurityMode::TlsRequired);
        let out = s.start();
        let text = written(&out);
        assert!(text.contains("xmlns='jabber:server'") && text.contains("xmlns:db='jabber:server:dialback'"));
        assert!(text.contains("from='a.example'") && text.contains("to='b.example'"));
        assert!(s.handle(header("s1")).is_empty());
        let out = s.handle(features(vec![Element::new("starttls", ns::TLS)]));
        assert_eq!(written(&out), "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        let out = s.handle(StreamEvent::Element(Element::new("proceed", ns::TLS)));
        assert_eq!(out, vec![Output::StartTls]);
        let out = s.tls_established();
        assert!(written(&out).starts_with("<?xml"));
        assert!(s.is_tls());
        s.handle(header("D60000229F"));
        let out = s.handle(features(vec![Element::new("dialback", "urn:xmpp:features:dialback")]));
        // The key is the SPEC formula over the id of the stream after TLS.
        let key = dialback_key(SECRET, "b.example", "a.example", "D60000229F");
        assert_eq!(
            written(&out),
            format!("<db:result from='a.example' to='b.example'>{key}</db:result>")
        );
        let stanza = Element::new("message", ns::CLIENT)
            .with_attr("from", "alice@a.example/r")
            .with_attr("to", "bob@b.example")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        assert!(s.encode_stanza(stanza.clone()).is_err(), "not authenticated yet");
        let out = s.handle(answer("result", "valid"));
        assert_eq!(
            out,
            vec![Output::Authenticated {
                local: "a.example".into(),
                remote: "b.example".into(),
                method: AuthMethod::Dialback
            }]
        );
        let bytes = s.encode_stanza(stanza).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "<message from='alice@a.example/r' to='bob@b.example'><body>hi</body></message>"
        );
        // A sender domain that was not authenticated is refused.
        let foreign = Element::new("message", ns::CLIENT)
            .with_attr("from", "x@c.example")
            .with_attr("to", "bob@b.example");
        assert!(s.encode_stanza(foreign).is_err());
        let out = s.close();
        assert!(written(&out).ends_with("</stream:stream>"));
        assert!(matches!(out.last(), Some(Output::Close { error: None })));
    }

    #[test]
    fn tls_required_refuses_a_peer_without_starttls() {
        let mut s = link(SecurityMode::TlsRequired);
        s.start();
        s.handle(header("x"));
        let out = s.handle(features(vec![]));
        assert!(
            out.contains(&Output::PairFailed {
                local: "a.example".into(),
                error: LinkError::TlsNotOffered
            }) || matches!(
                out.last(),
                Some(Output::Close {
                    error: Some(LinkError::TlsNotOffered)
                })
            )
        );
        assert!(!written(&out).contains("db:result"));
        assert!(s.is_closed());
    }

    #[test]
    fn tls_optional_goes_plain_and_no_tls_skips_offers() {
        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        s.handle(header("x"));
        assert!(written(&s.handle(features(vec![]))).contains("<db:result"));

        let mut s = link(SecurityMode::NoTls);
        s.start();
        s.handle(header("x"));
        assert!(written(&s.handle(features(vec![Element::new("starttls", ns::TLS)]))).contains("<db:result"));

        let mut s = link(SecurityMode::NoTls);
        s.start();
        s.handle(header("x"));
        let required = Element::new("starttls", ns::TLS).with_child(Element::new("required", ns::TLS));
        let out = s.handle(features(vec![required]));
        assert!(matches!(
            out.last(),
            Some(Output::Close {
                error: Some(LinkError::PeerRequiresTls)
            })
        ));
    }

    #[test]
    fn invalid_and_error_answers_fail_the_pair() {
        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        s.handle(header("x"));
        s.handle(features(vec![]));
        let out = s.handle(answer("result", "invalid"));
        assert_eq!(
            out[0],
            Output::PairFailed {
                local: "a.example".into(),
                error: LinkError::DialbackInvalid
            }
        );
        assert!(s.is_closed());

        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        s.handle(header("x"));
        s.handle(features(vec![]));
        let mut error = Element::new("result", ns::DIALBACK)
            .with_attr("from", "b.example")
            .with_attr("to", "a.example")
            .with_attr("type", "error");
        error.push_child(sb_proto::StanzaError::new(StanzaErrorCondition::NotAllowed).to_element(ns::SERVER));
        let out = s.handle(StreamEvent::Element(error));
        assert_eq!(
            out[0],
            Output::PairFailed {
                local: "a.example".into(),
                error: LinkError::DialbackError(StanzaErrorCondition::NotAllowed)
            }
        );
    }

    #[test]
    fn sasl_external_when_offered_over_tls_with_fallback() {
        let mut s = link(SecurityMode::TlsRequired).with_direct_tls();
        s.start();
        s.handle(header("x"));
        let mechanisms =
            Element::new("mechanisms", ns::SASL).with_child(Element::new("mechanism", ns::SASL).with_text("EXTERNAL"));
        let out = s.handle(features(vec![mechanisms.clone()]));
        assert_eq!(
            written(&out),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS5leGFtcGxl</auth>"
        );
        let out = s.handle(StreamEvent::Element(Element::new("success", ns::SASL)));
        assert_eq!(out[0], Output::Restart);
        s.handle(header("y"));
        let out = s.handle(features(vec![]));
        assert_eq!(
            out[0],
            Output::Authenticated {
                local: "a.example".into(),
                remote: "b.example".into(),
                method: AuthMethod::SaslExternal
            }
        );

        // Refused: dialback takes over on the same stream.
        let mut s = link(SecurityMode::TlsRequired).with_direct_tls();
        s.start();
        s.handle(header("x"));
        s.handle(features(vec![mechanisms]));
        let out = s.handle(StreamEvent::Element(Element::new("failure", ns::SASL)));
        assert!(written(&out).contains("<db:result"));
    }

    #[test]
    fn piggybacked_pairs_and_timeouts() {
        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        // Asked before the stream is ready: sent once it is.
        assert!(s.add_pair("conf.a.example").is_empty());
        s.handle(header("x"));
        let out = s.handle(features(vec![]));
        let text = written(&out);
        assert!(text.contains("from='a.example'") && text.contains("from='conf.a.example'"));
        s.handle(answer("result", "valid"));
        // The second pair never gets an answer.
        let out = s.dialback_timed_out();
        assert_eq!(
            out,
            vec![Output::PairFailed {
                local: "conf.a.example".into(),
                error: LinkError::DialbackTimeout
            }]
        );
        assert!(!s.is_closed(), "the authenticated pair keeps the stream");
        assert!(s.add_pair("a.example").is_empty(), "already authenticated");
    }

    #[test]
    fn verify_only_stream_closes_after_the_answer() {
        let request = VerifyRequest {
            originating: "b.example".into(),
            receiving: "a.example".into(),
            stream_id: "417GAF25".into(),
            key: "k".into(),
        };
        let mut s = OutgoingStream::new(OutgoingConfig {
            local: "a.example".into(),
            remote: "b.example".into(),
            security: SecurityMode::TlsOptional,
            secret: Secret::new(SECRET),
            purpose: Purpose::VerifyOnly(vec![request.clone()]),
        });
        s.start();
        s.handle(header("x"));
        let out = s.handle(features(vec![]));
        assert_eq!(
            written(&out),
            "<db:verify from='a.example' to='b.example' id='417GAF25'>k</db:verify>"
        );
        // An answer for another id is ignored.
        let mut other = Element::new("verify", ns::DIALBACK)
            .with_attr("from", "b.example")
            .with_attr("to", "a.example")
            .with_attr("id", "other")
            .with_attr("type", "valid");
        assert!(s.handle(StreamEvent::Element(other.clone())).is_empty());
        other.set_attr("id", "417GAF25");
        let out = s.handle(StreamEvent::Element(other));
        assert_eq!(
            out[0],
            Output::Verified {
                request,
                verdict: Verdict::Valid
            }
        );
        assert!(written(&out).ends_with("</stream:stream>"));
        assert!(s.is_closed());
    }

    #[test]
    fn peer_errors_and_bad_namespaces() {
        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        let mut h = StreamHeader::new(ns::CLIENT);
        h.id = Some("x".into());
        let out = s.handle(StreamEvent::Header(h));
        assert!(written(&out).contains("<invalid-namespace"));
        assert!(s.is_closed());

        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        s.handle(header("x"));
        let error = StreamError::new(StreamErrorCondition::HostUnknown).to_element();
        let out = s.handle(StreamEvent::Element(error));
        assert!(matches!(
            out.last(),
            Some(Output::Close {
                error: Some(LinkError::PeerStreamError(_))
            })
        ));
        let mut s = link(SecurityMode::TlsOptional);
        s.start();
        let out = s.handle(StreamEvent::End);
        assert!(matches!(
            out.last(),
            Some(Output::Close {
                error: Some(LinkError::ClosedEarly)
            })
        ));
    }
}
