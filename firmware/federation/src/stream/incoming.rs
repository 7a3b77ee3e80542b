//! The accepting side of a server-to-server stream: receiving server (a peer proves a domain
//! with `db:result` or SASL EXTERNAL, then sends stanzas) and authoritative server (a peer
//! asks whether a key we issued is ours, with `db:verify`).
//!
//! Stanzas are accepted only for authenticated domain pairs: a `from` domain that was not
//! authenticated on this stream closes it with `<invalid-from/>`, a `to` domain we do not
//! serve with `<host-unknown/>`. Dialback problems are dialback errors (XEP-0220 §2.4) and
//! leave the stream, and the pairs already authenticated on it, alone.

use super::{
    AuthMethod, Output, PeerCertificate, Verdict, VerifyRequest, dialback_answer, is_stanza, read_stream_error,
    stream_error_bytes,
};
use crate::policy::{Policy, normalize_domain};
use sb_proto::dialback::verify_dialback_key;
use sb_proto::log_safe;
use sb_proto::retarget_namespace;
use sb_proto::{Element, Jid, StanzaErrorCondition, StreamError, StreamErrorCondition, StreamEvent, StreamHeader, ns};
use sb_store::{Secret, SecurityMode};

/// `urn:xmpp:features:dialback`: we handle dialback errors gracefully (XEP-0220 §2.4.2).
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

/// Verifications one stream may have running at once: each costs a connection to another
/// server, so a peer must not be able to make us open them without bound.
pub const MAX_PENDING_VERIFICATIONS: usize = 16;

#[derive(Clone, Debug)]
pub struct IncomingConfig {
    /// Domains this server answers for (ours and the components'), normalized.
    pub local_domains: Vec<String>,
    pub security: SecurityMode,
    /// A certificate is configured, so STARTTLS can be offered.
    pub tls_available: bool,
    /// The dialback secret; `Secret` prints as `<redacted>`, so the config can be logged.
    pub secret: Secret,
    /// Require a trusted certificate naming the peer's domain before accepting it.
    pub client_certs: bool,
    pub policy: Policy,
    /// Unpredictable per connection; each stream restart appends a counter.
    pub stream_id_base: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitHeader,
    Open,
    TlsHandshake,
    Closed,
}

pub struct IncomingStream {
    config: IncomingConfig,
    state: State,
    restarts: u32,
    stream_id: String,
    tls: bool,
    peer_certificate: Option<PeerCertificate>,
    /// The `to` of the current header: our domain the peer addressed.
    local: Option<String>,
    /// The `from` of the current header, when given.
    peer: Option<String>,
    /// Remote domain authenticated by SASL EXTERNAL for every local domain.
    sasl_domain: Option<String>,
    /// (remote, local) pairs authenticated by dialback.
    pairs: Vec<(String, String)>,
    /// (remote, local) pairs waiting for the authoritative server.
    pending: Vec<(String, String)>,
}

impl IncomingStream {
    pub fn new(config: IncomingConfig) -> Self {
        let stream_id = format!("{}0", config.stream_id_base);
        IncomingStream {
            config,
            state: State::AwaitHeader,
            restarts: 0,
            stream_id,
            tls: false,
            peer_certificate: None,
            local: None,
            peer: None,
            sasl_domain: None,
            pairs: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// For a direct-TLS listener: TLS is up before the header.
    pub fn with_direct_tls(mut self, certificate: Option<PeerCertificate>) -> Self {
        self.tls = true;
        self.peer_certificate = certificate;
        self
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn is_authenticated(&self) -> bool {
        self.sasl_domain.is_some() || !self.pairs.is_empty()
    }

    /// The remote domains that may send here and how, for status.
    pub fn authenticated_remotes(&self) -> Vec<(String, AuthMethod)> {
        let mut out: Vec<(String, AuthMethod)> = Vec::new();
        if let Some(domain) = &self.sasl_domain {
            out.push((domain.clone(), AuthMethod::SaslExternal));
        }
        for (remote, _) in &self.pairs {
            if !out.iter().any(|(d, _)| d == remote) {
                out.push((remote.clone(), AuthMethod::Dialback));
            }
        }
        out
    }

    /// The domain the peer named in its stream header, if it did.
    pub fn peer_domain(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    pub fn has_pending_verification(&self) -> bool {
        !self.pending.is_empty()
    }

    fn is_local(&self, domain: &str) -> bool {
        self.config.local_domains.iter().any(|d| d == domain)
    }

    /// The TLS handshake after `<proceed/>` finished; the framer was reset.
    pub fn tls_established(&mut self, certificate: Option<PeerCertificate>) -> Vec<Output> {
        self.tls = true;
        self.peer_certificate = certificate;
        self.state = State::AwaitHeader;
        Vec::new()
    }

    pub fn framing_error(&mut self, error: StreamError) -> Vec<Output> {
        self.fail(error)
    }

    pub fn handle(&mut self, event: StreamEvent) -> Vec<Output> {
        match (self.state, event) {
            (State::Closed, _) => Vec::new(),
            (State::AwaitHeader, StreamEvent::Header(header)) => self.on_header(header),
            (_, StreamEvent::End) => self.close(),
            (State::Open, StreamEvent::Element(element)) => self.on_element(element),
            (_, StreamEvent::Header(_)) | (_, StreamEvent::Element(_)) => self.fail(StreamError::with_text(
                StreamErrorCondition::BadFormat,
                "unexpected data at this point of the stream",
            )),
        }
    }

    /// Close politely (idle timeout, shutdown, the peer closed).
    pub fn close(&mut self) -> Vec<Output> {
        if self.state == State::Closed {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.local.is_none() && self.state == State::AwaitHeader {
            // Nothing of ours was sent yet; a bare close tag would not be well-formed.
            out.push(Output::Write(self.our_header(None).to_bytes()));
        }
        out.push(Output::Write(sb_proto::STREAM_CLOSE.to_vec()));
        self.state = State::Closed;
        out.push(Output::Close { error: None });
        out
    }

    /// Close with a stream error; our header goes first when the peer has not seen one.
    pub fn fail(&mut self, error: StreamError) -> Vec<Output> {
        if self.state == State::Closed {
            return Vec::new();
        }
        log::warn!(
            "s2s in {}: closing with {error}",
            log_safe(self.peer.as_deref().unwrap_or("(unknown peer)"))
        );
        let mut out = Vec::new();
        if self.state == State::AwaitHeader {
            out.push(Output::Write(self.our_header(None).to_bytes()));
        }
        out.push(Output::Write(stream_error_bytes(&error)));
        self.state = State::Closed;
        out.push(Output::Close { error: None });
        out
    }

    fn our_header(&self, version: Option<String>) -> StreamHeader {
        let mut header = StreamHeader::new(ns::SERVER).with_prefix("db", ns::DIALBACK);
        header.version = version;
        header.from = self
            .local
            .clone()
            .or_else(|| self.config.local_domains.first().cloned());
        header.to = self.peer.clone();
        header.id = Some(self.stream_id.clone());
        header
    }

    fn on_header(&mut self, header: StreamHeader) -> Vec<Output> {
        self.stream_id = format!("{}{}", self.config.stream_id_base, self.restarts);
        self.restarts += 1;
        self.peer = header.from.as_deref().map(normalize_domain);
        let to = header.to.as_deref().map(normalize_domain);
        if let Err(error) = header.check_default_ns(ns::SERVER) {
            return self.fail(error);
        }
        match to {
            Some(to) if self.is_local(&to) => self.local = Some(to),
            Some(to) => {
                return self.fail(StreamError::with_text(
                    StreamErrorCondition::HostUnknown,
                    format!("this server does not serve {to}"),
                ));
            }
            // Old servers leave 'to' out; the dialback requests name the domain anyway.
            None => self.local = self.config.local_domains.first().cloned(),
        }
        let version_1 = header.is_version_1();
        let mut out = vec![Output::Write(
            self.our_header(version_1.then(|| "1.0".to_owned())).to_bytes(),
        )];
        self.state = State::Open;
        if version_1 {
            out.push(Output::Write(self.features().to_bytes(ns::SERVER)));
        }
        log::debug!(
            "s2s in: stream {} from {} to {} (tls: {})",
            self.stream_id,
            log_safe(self.peer.as_deref().unwrap_or("(unnamed)")),
            log_safe(self.local.as_deref().unwrap_or("?")),
            self.tls
        );
        out
    }

    fn tls_mandatory_pending(&self) -> bool {
        !self.tls && self.config.security == SecurityMode::TlsRequired
    }

    fn features(&self) -> Element {
        let mut features = Element::new("features", ns::STREAM);
        if !self.tls && self.config.tls_available && self.config.security != SecurityMode::NoTls {
            let mut starttls = Element::new("starttls", ns::TLS);
            if self.config.security == SecurityMode::TlsRequired {
                starttls.push_child(Element::new("required", ns::TLS));
            }
            features.push_child(starttls);
        }
        if self.tls_mandatory_pending() {
            // RFC 6120 §5.3.1: when TLS is mandatory, offer nothing else before it.
            return features;
        }
        if self.sasl_domain.is_none() && self.external_acceptable(self.peer.as_deref()) {
            features.push_child(
                Element::new("mechanisms", ns::SASL)
                    .with_child(Element::new("mechanism", ns::SASL).with_text("EXTERNAL")),
            );
        }
        features.push_child(
            Element::new("dialback", DIALBACK_FEATURE).with_child(Element::new("errors", DIALBACK_FEATURE)),
        );
        features
    }

    /// SASL EXTERNAL needs TLS and a certificate that PKIX-authenticates the domain.
    fn external_acceptable(&self, domain: Option<&str>) -> bool {
        let Some(domain) = domain else {
            return false;
        };
        self.tls
            && self.peer_certificate.as_ref().is_some_and(|c| c.authenticates(domain))
            && self.config.policy.allows(domain)
    }

    fn on_element(&mut self, element: Element) -> Vec<Output> {
        if element.is("error", ns::STREAM) {
            log::warn!(
                "s2s in {}: peer sent {}",
                log_safe(self.peer.as_deref().unwrap_or("(unknown peer)")),
                read_stream_error(&element)
            );
            return self.close();
        }
        match (element.ns.as_str(), element.name.as_str()) {
            (ns::TLS, "starttls") => self.on_starttls(),
            (ns::SASL, "auth") => self.on_auth(&element),
            (ns::DIALBACK, "result") => self.on_result(&element),
            (ns::DIALBACK, "verify") => self.on_verify(&element),
            (ns::SERVER, _) if is_stanza(&element) => self.on_stanza(element),
            _ => self.fail(StreamError::with_text(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("unexpected <{}/> in {}", element.name, element.ns),
            )),
        }
    }

    fn on_starttls(&mut self) -> Vec<Output> {
        if self.tls || !self.config.tls_available || self.config.security == SecurityMode::NoTls {
            // RFC 6120 §5.4.2.2: refuse and close.
            let mut out = vec![Output::Write(Element::new("failure", ns::TLS).to_bytes(ns::SERVER))];
            out.push(Output::Write(sb_proto::STREAM_CLOSE.to_vec()));
            self.state = State::Closed;
            out.push(Output::Close { error: None });
            return out;
        }
        self.state = State::TlsHandshake;
        vec![
            Output::Write(Element::new("proceed", ns::TLS).to_bytes(ns::SERVER)),
            Output::StartTls,
        ]
    }

    fn on_auth(&mut self, auth: &Element) -> Vec<Output> {
        let claimed = match auth.text().trim() {
            "" | "=" => self.peer.clone(),
            encoded => sb_proto::sasl::decode_payload(encoded)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .map(|d| normalize_domain(&d)),
        };
        let mechanism_ok = auth.attr("mechanism") == Some("EXTERNAL");
        let acceptable = mechanism_ok && self.sasl_domain.is_none() && self.external_acceptable(claimed.as_deref());
        match (claimed, acceptable) {
            (Some(domain), true) => {
                log::info!(
                    "s2s in {domain}: authenticated by SASL EXTERNAL (certificate) on stream {}",
                    self.stream_id
                );
                self.sasl_domain = Some(domain.clone());
                self.state = State::AwaitHeader;
                vec![
                    Output::Write(Element::new("success", ns::SASL).to_bytes(ns::SERVER)),
                    Output::Authenticated {
                        local: self.local.clone().unwrap_or_default(),
                        remote: domain,
                        method: AuthMethod::SaslExternal,
                    },
                    Output::Restart,
                ]
            }
            (claimed, _) => {
                log::info!(
                    "s2s in {}: SASL EXTERNAL refused (mechanism {:?}, certificate does not authenticate the domain or policy forbids it)",
                    claimed.as_deref().unwrap_or("(unknown)"),
                    auth.attr("mechanism")
                );
                let failure = Element::new("failure", ns::SASL).with_child(Element::new("not-authorized", ns::SASL));
                vec![Output::Write(failure.to_bytes(ns::SERVER))]
            }
        }
    }

    fn dialback_error(
        &self,
        name: &str,
        from: &str,
        to: &str,
        id: Option<&str>,
        condition: StanzaErrorCondition,
    ) -> Output {
        Output::Write(dialback_answer(name, from, to, id, Verdict::Error(condition)).to_bytes(ns::SERVER))
    }

    fn on_result(&mut self, element: &Element) -> Vec<Output> {
        if element.attr("type").is_some() {
            log::debug!("s2s in: ignoring a db:result answer on an incoming stream");
            return Vec::new();
        }
        let (Some(from), Some(to)) = (element.attr("from"), element.attr("to")) else {
            return self.fail(StreamError::with_text(
                StreamErrorCondition::ImproperAddressing,
                "db:result needs from and to",
            ));
        };
        let (remote, local) = (normalize_domain(from), normalize_domain(to));
        if Jid::domain_jid(&remote).is_err() {
            return self.fail(StreamError::with_text(
                StreamErrorCondition::ImproperAddressing,
                "db:result from is not a domain",
            ));
        }
        let key = element.text().trim().to_owned();
        // `to` is not checked yet: what the peer sent, escaped.
        let shown_local = log_safe(&local);
        log::info!(
            "s2s in {remote} -> {shown_local}: received db:result (dialback key) on stream {}",
            self.stream_id
        );
        if !self.is_local(&local) {
            log::warn!("s2s in {remote}: dialback for {shown_local}, which this server does not serve");
            return vec![self.dialback_error("result", &local, &remote, None, StanzaErrorCondition::ItemNotFound)];
        }
        if self.tls_mandatory_pending() {
            log::warn!("s2s in {remote}: dialback over plain TCP refused, TLS is required");
            return vec![self.dialback_error("result", &local, &remote, None, StanzaErrorCondition::PolicyViolation)];
        }
        let decision = self.config.policy.decide(&remote);
        if !decision.allowed() {
            log::warn!(
                "s2s in {remote}: refused by the federation policy ({})",
                decision.describe()
            );
            return vec![self.dialback_error("result", &local, &remote, None, StanzaErrorCondition::NotAllowed)];
        }
        if self.config.client_certs && !self.peer_certificate.as_ref().is_some_and(|c| c.authenticates(&remote)) {
            log::warn!("s2s in {remote}: no trusted certificate for the domain, and client certificates are required");
            return vec![self.dialback_error("result", &local, &remote, None, StanzaErrorCondition::NotAuthorized)];
        }
        let pair = (remote.clone(), local.clone());
        if self.pairs.contains(&pair) {
            // Already good: say so again rather than verify a second time.
            return vec![Output::Write(
                dialback_answer("result", &local, &remote, None, Verdict::Valid).to_bytes(ns::SERVER),
            )];
        }
        if self.pending.contains(&pair) {
            return Vec::new();
        }
        if self.pending.len() >= MAX_PENDING_VERIFICATIONS {
            log::warn!("s2s in {remote}: too many dialback requests waiting on one stream");
            return vec![self.dialback_error(
                "result",
                &local,
                &remote,
                None,
                StanzaErrorCondition::ResourceConstraint,
            )];
        }
        self.pending.push(pair);
        vec![Output::Verify(VerifyRequest {
            originating: remote,
            receiving: local,
            stream_id: self.stream_id.clone(),
            key,
        })]
    }

    /// What the authoritative server said about a key sent on this stream.
    pub fn verify_outcome(&mut self, request: &VerifyRequest, verdict: Verdict) -> Vec<Output> {
        let pair = (request.originating.clone(), request.receiving.clone());
        let Some(pos) = self.pending.iter().position(|p| *p == pair) else {
            return Vec::new();
        };
        self.pending.remove(pos);
        if self.state == State::Closed {
            return Vec::new();
        }
        let (remote, local) = pair;
        log::info!(
            "s2s in {remote} -> {local}: dialback verification {}; sending db:result type {}",
            verdict.describe(),
            match verdict {
                Verdict::Valid => "valid",
                Verdict::Invalid => "invalid",
                _ => "error",
            }
        );
        // XEP-0220 §2.4: whatever error the authoritative server gave, the receiving server
        // reports it as remote-server-not-found.
        // Not reaching it at all is one answer whatever the cause (see `link::verify`).
        let answer = match verdict {
            Verdict::Error(_) => Verdict::Error(StanzaErrorCondition::RemoteServerNotFound),
            Verdict::Timeout => Verdict::ConnectionFailed,
            other => other,
        };
        let mut out = vec![Output::Write(
            dialback_answer("result", &local, &remote, None, answer).to_bytes(ns::SERVER),
        )];
        match verdict {
            Verdict::Valid => {
                self.pairs.push((remote.clone(), local.clone()));
                out.push(Output::Authenticated {
                    local,
                    remote,
                    method: AuthMethod::Dialback,
                });
            }
            Verdict::Invalid => {
                // XEP-0220 §2.1.3: a spoofing attempt; the stream must be closed.
                log::warn!("s2s in {remote}: the authoritative server says the key is invalid; closing");
                out.push(Output::Write(sb_proto::STREAM_CLOSE.to_vec()));
                self.state = State::Closed;
                out.push(Output::Close { error: None });
            }
            Verdict::Error(_) | Verdict::Timeout | Verdict::ConnectionFailed => {}
        }
        out
    }

    fn on_verify(&mut self, element: &Element) -> Vec<Output> {
        if element.attr("type").is_some() {
            log::debug!("s2s in: ignoring a db:verify answer on an incoming stream");
            return Vec::new();
        }
        let (Some(from), Some(to), Some(id)) = (element.attr("from"), element.attr("to"), element.attr("id")) else {
            return self.fail(StreamError::with_text(
                StreamErrorCondition::ImproperAddressing,
                "db:verify needs from, to and id",
            ));
        };
        let (receiving, originating) = (normalize_domain(from), normalize_domain(to));
        // Neither is checked for being a domain: what the peer sent, escaped.
        let (shown_receiving, shown_originating, shown_id) =
            (log_safe(&receiving), log_safe(&originating), log_safe(id));
        if self.tls_mandatory_pending() {
            return vec![self.dialback_error(
                "verify",
                &originating,
                &receiving,
                Some(id),
                StanzaErrorCondition::PolicyViolation,
            )];
        }
        if !self.is_local(&originating) {
            log::warn!(
                "s2s in {shown_receiving}: asked to verify a key for {shown_originating}, which this server does not serve"
            );
            return vec![self.dialback_error(
                "verify",
                &originating,
                &receiving,
                Some(id),
                StanzaErrorCondition::ItemNotFound,
            )];
        }
        let valid = verify_dialback_key(
            self.config.secret.expose(),
            &receiving,
            &originating,
            id,
            &element.text(),
        );
        if valid {
            log::info!(
                "s2s in {shown_receiving}: db:verify for stream {shown_id} ({shown_originating} -> {shown_receiving}): key is ours, valid"
            );
        } else {
            log::warn!(
                "s2s in {shown_receiving}: db:verify for stream {shown_id} ({shown_originating} -> {shown_receiving}): key is NOT ours, invalid"
            );
        }
        let verdict = if valid { Verdict::Valid } else { Verdict::Invalid };
        vec![Output::Write(
            dialback_answer("verify", &originating, &receiving, Some(id), verdict).to_bytes(ns::SERVER),
        )]
    }

    fn on_stanza(&mut self, mut stanza: Element) -> Vec<Output> {
        let from = stanza.attr("from").map(Jid::parse);
        let to = stanza.attr("to").map(Jid::parse);
        let (Some(Ok(from)), Some(Ok(to))) = (from, to) else {
            return self.fail(StreamError::with_text(
                StreamErrorCondition::ImproperAddressing,
                "stanzas between servers need valid from and to addresses",
            ));
        };
        if !self.is_authenticated() {
            return self.fail(StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "stanza before authentication",
            ));
        }
        let (remote, local) = (from.domain().to_owned(), to.domain().to_owned());
        let sasl_ok = self.sasl_domain.as_deref() == Some(remote.as_str()) && self.is_local(&local);
        if !sasl_ok && !self.pairs.contains(&(remote.clone(), local.clone())) {
            if !self.is_local(&local) {
                return self.fail(StreamError::with_text(
                    StreamErrorCondition::HostUnknown,
                    format!("this server does not serve {local}"),
                ));
            }
            return self.fail(StreamError::with_text(
                StreamErrorCondition::InvalidFrom,
                format!("{remote} is not authenticated on this stream for {local}"),
            ));
        }
        retarget_namespace(&mut stanza, ns::SERVER, ns::CLIENT);
        vec![Output::Stanza(stanza)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::dialback::dialback_key;
    use sb_store::{FederationConfig, PrivacyMode};

    const SECRET: &str = "d14lb4ck43v3r";

    fn stream(security: SecurityMode, privacy: PrivacyMode) -> IncomingStream {
        let policy = Policy::from_config(&FederationConfig {
            privacy,
            allow: vec!["capulet.example".into()],
            ..FederationConfig::default()
        });
        IncomingStream::new(IncomingConfig {
            local_domains: vec!["montague.example".into(), "conf.montague.example".into()],
            security,
            tls_available: true,
            secret: Secret::new(SECRET),
            client_certs: false,
            policy,
            stream_id_base: "417GAF2".into(),
        })
    }

    #[test]
    fn the_config_logs_without_the_secret() {
        let printed = format!("{:?}", stream(SecurityMode::TlsRequired, PrivacyMode::Off).config);
        assert!(printed.contains("montague.example"), "{printed}");
        assert!(!printed.contains(SECRET), "{printed}");
    }

    fn header(to: &str) -> StreamEvent {
        let mut h = StreamHeader::new(ns::SERVER).with_prefix("db", ns::DIALBACK);
        h.to = Some(to.into());
        h.from = Some("capulet.example".into());
        StreamEvent::Header(h)
    }

    fn written(out: &[Output]) -> String {
        out.iter()
            .filter_map(|o| match o {
                Output::Write(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn db(name: &str, from: &str, to: &str, id: Option<&str>, key: &str) -> StreamEvent {
        StreamEvent::Element(
            Element::new(name, ns::DIALBACK)
                .with_attr("from", from)
                .with_attr("to", to)
                .with_opt_attr("id", id)
                .with_text(key),
        )
    }

    fn message(from: &str, to: &str) -> StreamEvent {
        StreamEvent::Element(
            Element::new("message", ns::SERVER)
                .with_attr("from", from)
                .with_attr("to", to)
                .with_child(Element::new("body", ns::SERVER).with_text("hi")),
        )
    }

    fn open_plain(s: &mut IncomingStream) {
        let out = s.handle(header("montague.example"));
        assert!(written(&out).contains("<stream:features>"));
    }

    #[test]
    fn tls_required_offers_only_starttls_and_refuses_plain_dialback() {
        let mut s = stream(SecurityMode::TlsRequired, PrivacyMode::Off);
        let out = s.handle(header("montague.example"));
        let text = written(&out);
        assert!(text.contains("id='417GAF20'"));
        assert!(text.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"));
        assert!(!text.contains("dialback xmlns"));
        let out = s.handle(db("result", "capulet.example", "montague.example", None, "k"));
        assert!(written(&out).contains("type='error'") && written(&out).contains("<policy-violation"));
        assert!(!s.is_closed(), "a dialback error is not a stream error");
        // STARTTLS, then a fresh header gets a fresh id and the dialback feature.
        let out = s.handle(StreamEvent::Element(Element::new("starttls", ns::TLS)));
        assert_eq!(out[1], Output::StartTls);
        s.tls_established(None);
        let out = s.handle(header("montague.example"));
        let text = written(&out);
        assert!(text.contains("id='417GAF21'"));
        assert!(!text.contains("starttls"));
        assert!(text.contains("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"));
    }

    #[test]
    fn dialback_valid_then_stanzas_flow_with_checks() {
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut s);
        // Stanzas before authentication close the stream.
        let mut early = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut early);
        assert!(
            written(&early.handle(message("romeo@capulet.example", "juliet@montague.example")))
                .contains("<not-authorized")
        );

        let out = s.handle(db("result", "capulet.example", "montague.example", None, "thekey"));
        let request = VerifyRequest {
            originating: "capulet.example".into(),
            receiving: "montague.example".into(),
            stream_id: "417GAF20".into(),
            key: "thekey".into(),
        };
        assert_eq!(out, vec![Output::Verify(request.clone())]);
        let out = s.verify_outcome(&request, Verdict::Valid);
        assert_eq!(
            written(&out),
            "<db:result from='montague.example' to='capulet.example' type='valid'/>"
        );
        assert!(out.contains(&Output::Authenticated {
            local: "montague.example".into(),
            remote: "capulet.example".into(),
            method: AuthMethod::Dialback
        }));
        let out = s.handle(message("romeo@capulet.example/orchard", "juliet@montague.example"));
        match &out[..] {
            [Output::Stanza(stanza)] => {
                assert_eq!(stanza.ns, ns::CLIENT);
                assert_eq!(
                    stanza.get_child("body", ns::CLIENT).map(Element::text).as_deref(),
                    Some("hi")
                );
            }
            other => panic!("expected a stanza, got {other:?}"),
        }
        // A pair that was not authenticated: to a local domain → invalid-from.
        let mut other = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut other);
        other.handle(db("result", "capulet.example", "montague.example", None, "k"));
        other.verify_outcome(&request, Verdict::Valid);
        let out = other.handle(message("x@evil.example", "juliet@montague.example"));
        assert!(written(&out).contains("<invalid-from"));
        let mut third = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut third);
        third.handle(db("result", "capulet.example", "montague.example", None, "k"));
        third.verify_outcome(&request, Verdict::Valid);
        let out = third.handle(message("romeo@capulet.example", "x@elsewhere.example"));
        assert!(written(&out).contains("<host-unknown"));
    }

    #[test]
    fn invalid_verification_closes_and_errors_do_not() {
        let request = VerifyRequest {
            originating: "capulet.example".into(),
            receiving: "montague.example".into(),
            stream_id: "417GAF20".into(),
            key: "k".into(),
        };
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut s);
        s.handle(db("result", "capulet.example", "montague.example", None, "k"));
        let out = s.verify_outcome(&request, Verdict::Timeout);
        assert!(written(&out).contains("<remote-connection-failed"));
        assert!(!s.is_closed());
        s.handle(db("result", "capulet.example", "montague.example", None, "k"));
        let out = s.verify_outcome(&request, Verdict::Error(StanzaErrorCondition::ItemNotFound));
        assert!(written(&out).contains("<remote-server-not-found"));
        s.handle(db("result", "capulet.example", "montague.example", None, "k"));
        let out = s.verify_outcome(&request, Verdict::Invalid);
        assert!(written(&out).contains("type='invalid'"));
        assert!(s.is_closed());
    }

    #[test]
    fn dialback_errors_for_unknown_targets_and_denied_domains() {
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Allow);
        open_plain(&mut s);
        let out = s.handle(db("result", "capulet.example", "elsewhere.example", None, "k"));
        assert!(written(&out).contains("<item-not-found"));
        let out = s.handle(db("result", "evil.example", "montague.example", None, "k"));
        assert!(written(&out).contains("<not-allowed"));
        // The listed domain gets through to verification.
        let out = s.handle(db("result", "capulet.example", "montague.example", None, "k"));
        assert!(matches!(out[..], [Output::Verify(_)]));
        assert!(!s.is_closed());
    }

    #[test]
    fn verifications_per_stream_are_bounded() {
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut s);
        for i in 0..MAX_PENDING_VERIFICATIONS {
            let out = s.handle(db("result", &format!("d{i}.example"), "montague.example", None, "k"));
            assert!(matches!(out[..], [Output::Verify(_)]));
        }
        let out = s.handle(db("result", "one-more.example", "montague.example", None, "k"));
        assert!(written(&out).contains("<resource-constraint"));
    }

    #[test]
    fn authoritative_answers_with_the_spec_vector() {
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        open_plain(&mut s);
        let key = dialback_key(SECRET, "capulet.example", "montague.example", "417GAF25");
        assert_eq!(key, "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d");
        let out = s.handle(db(
            "verify",
            "capulet.example",
            "montague.example",
            Some("417GAF25"),
            &key,
        ));
        assert_eq!(
            written(&out),
            "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>"
        );
        let out = s.handle(db(
            "verify",
            "capulet.example",
            "montague.example",
            Some("417GAF26"),
            &key,
        ));
        assert!(written(&out).contains("type='invalid'"));
        let out = s.handle(db("verify", "capulet.example", "other.example", Some("417GAF25"), &key));
        assert!(written(&out).contains("<item-not-found"));
        assert!(!s.is_closed());
    }

    #[test]
    fn unknown_host_and_namespace_are_stream_errors() {
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        let out = s.handle(header("elsewhere.example"));
        let text = written(&out);
        assert!(text.starts_with("<?xml"), "our header first: {text}");
        assert!(text.contains("<host-unknown"));
        assert!(s.is_closed());
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        let out = s.handle(StreamEvent::Header(StreamHeader::new(ns::CLIENT)));
        assert!(written(&out).contains("<invalid-namespace"));
    }

    #[test]
    fn sasl_external_needs_a_trusted_certificate_for_the_domain() {
        let mut s = stream(SecurityMode::TlsRequired, PrivacyMode::Off);
        s.handle(header("montague.example"));
        s.handle(StreamEvent::Element(Element::new("starttls", ns::TLS)));
        s.tls_established(Some(PeerCertificate {
            names: vec!["capulet.example".into()],
            chain_trusted: true,
        }));
        let out = s.handle(header("montague.example"));
        assert!(written(&out).contains("<mechanism>EXTERNAL</mechanism>"));
        let auth = Element::new("auth", ns::SASL)
            .with_attr("mechanism", "EXTERNAL")
            .with_text("=");
        let out = s.handle(StreamEvent::Element(auth));
        assert!(written(&out).contains("<success"));
        assert!(out.contains(&Output::Restart));
        s.handle(header("montague.example"));
        assert!(matches!(
            s.handle(message("romeo@capulet.example", "juliet@conf.montague.example"))[..],
            [Output::Stanza(_)]
        ));

        // Untrusted chain: no EXTERNAL offered, and asking anyway fails.
        let mut s = stream(SecurityMode::TlsRequired, PrivacyMode::Off);
        s.handle(header("montague.example"));
        s.handle(StreamEvent::Element(Element::new("starttls", ns::TLS)));
        s.tls_established(Some(PeerCertificate {
            names: vec!["capulet.example".into()],
            chain_trusted: false,
        }));
        let out = s.handle(header("montague.example"));
        assert!(!written(&out).contains("EXTERNAL"));
        let auth = Element::new("auth", ns::SASL)
            .with_attr("mechanism", "EXTERNAL")
            .with_text("=");
        assert!(written(&s.handle(StreamEvent::Element(auth))).contains("<not-authorized"));
    }

    #[test]
    fn client_certs_policy_refuses_dialback_without_a_trusted_certificate() {
        let mut s = stream(SecurityMode::TlsOptional, PrivacyMode::Off);
        s.config.client_certs = true;
        open_plain(&mut s);
        let out = s.handle(db("result", "capulet.example", "montague.example", None, "k"));
        assert!(written(&out).contains("<not-authorized"));
    }
}
