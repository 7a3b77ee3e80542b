//! Client stream negotiation as a pure state machine (RFC 6120 §4–§7): which features are
//! offered in which state, and what a received top-level element means there.
//!
//! No I/O and no clock: the connection task feeds it headers and elements and carries out
//! the [`Step`] it returns (upgrade to TLS, run a SASL exchange, bind, or process a stanza),
//! then reports the outcome back (`tls_established`, `sasl_succeeded`, `bound`, ...).

use sb_proto::sasl::{NS_SASL_CHANNEL_BINDING, SaslError, TLS_EXPORTER};
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition, StreamHeader, ns};

/// Feature namespaces announced after authentication.
pub const NS_ROSTER_VER: &str = "urn:xmpp:features:rosterver";
pub const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";

#[derive(Clone, Debug)]
pub struct NegotiationConfig {
    /// The domain this stream must be addressed to.
    pub domain: String,
    /// A TLS identity is configured, so STARTTLS can be offered.
    pub tls_available: bool,
    /// Nothing but STARTTLS is possible before TLS.
    pub tls_required: bool,
    /// SASL failures tolerated on this connection before it is closed.
    pub max_auth_attempts: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-256 bound to the TLS connection (`tls-exporter`, RFC 9266).
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256-PLUS" => Some(Mechanism::ScramSha256Plus),
            "SCRAM-SHA-1-PLUS" => Some(Mechanism::ScramSha1Plus),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-1" => Some(Mechanism::ScramSha1),
            "PLAIN" => Some(Mechanism::Plain),
            _ => None,
        }
    }

    /// Whether the exchange is bound to the TLS connection.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }
}

/// What the connection task must do with a received element.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer `<proceed/>`, then run the TLS handshake and call `tls_established`.
    StartTls,
    /// Begin a SASL exchange; `payload` is the `<auth/>` text (base64 or `=`).
    SaslStart { mechanism: Mechanism, payload: String },
    /// The next `<response/>` of the running exchange.
    SaslContinue { payload: String },
    /// The client gave up the running exchange: answer `<failure><aborted/></failure>`.
    SaslAbort,
    /// Answer a SASL `<failure/>`; the stream continues.
    SaslFailure(SaslError),
    /// Resource binding request (RFC 6120 §7).
    Bind,
    /// Legacy session establishment (RFC 3921 §3, kept optional by RFC 6121 appendix E).
    LegacySession,
    /// A stanza of a bound session: process it.
    Stanza,
    /// Answer the element with this stanza error; the stream continues.
    Reject(StanzaError),
    /// Send this stream error and close.
    Close(StreamError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sasl {
    Idle,
    Running(Mechanism),
}

#[derive(Debug)]
pub struct Negotiation {
    config: NegotiationConfig,
    tls: bool,
    /// The TLS session gives a `tls-exporter` value (TLS 1.3), so -PLUS is offered.
    channel_binding: bool,
    user: Option<String>,
    jid: Option<Jid>,
    sasl: Sasl,
    auth_failures: u8,
}

impl Negotiation {
    pub fn new(config: NegotiationConfig) -> Self {
        Negotiation {
            config,
            tls: false,
            channel_binding: false,
            user: None,
            jid: None,
            sasl: Sasl::Idle,
            auth_failures: 0,
        }
    }

    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    pub fn tls_active(&self) -> bool {
        self.tls
    }

    /// The authenticated account (normalized localpart), once SASL succeeded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn jid(&self) -> Option<&Jid> {
        self.jid.as_ref()
    }

    pub fn is_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// Check a received stream header (RFC 6120 §4.7). The caller sends its own header
    /// either way (§4.9.1.2: even an error needs an open stream) and then the error.
    pub fn check_header(&self, header: &StreamHeader) -> Result<(), StreamError> {
        if header.default_ns != ns::CLIENT {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidNamespace,
                "client streams use jabber:client",
            ));
        }
        match header.to.as_deref() {
            Some(to) if to.eq_ignore_ascii_case(&self.config.domain) => {}
            Some(_) => {
                return Err(StreamError::with_text(
                    StreamErrorCondition::HostUnknown,
                    "this server does not serve that domain",
                ));
            }
            None => {
                return Err(StreamError::with_text(
                    StreamErrorCondition::HostUnknown,
                    "the stream header has no 'to'",
                ));
            }
        }
        if !header.is_version_1() {
            return Err(StreamError::with_text(
                StreamErrorCondition::UnsupportedVersion,
                "XMPP 1.0 streams only",
            ));
        }
        Ok(())
    }

    /// Whether TLS must come first (required and not yet active).
    fn tls_pending(&self) -> bool {
        self.config.tls_required && !self.tls
    }

    /// Mechanisms offered now; empty while TLS is still required.
    pub fn mechanisms(&self) -> Vec<Mechanism> {
        if self.tls_pending() || self.is_authenticated() {
            return Vec::new();
        }
        let mut mechanisms = Vec::with_capacity(5);
        // Strongest first: clients pick the first they support.
        if self.offers_channel_binding() {
            mechanisms.extend([Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus]);
        }
        mechanisms.extend([Mechanism::ScramSha256, Mechanism::ScramSha1]);
        // PLAIN sends the password itself: only inside TLS (RFC 6120 §13.8).
        if self.tls {
            mechanisms.push(Mechanism::Plain);
        }
        mechanisms
    }

    /// Whether the SCRAM-*-PLUS mechanisms are offered now. A plain SCRAM exchange then
    /// refuses a client that says it could bind (`y`): it was shown a list without them.
    pub fn offers_channel_binding(&self) -> bool {
        self.tls && self.channel_binding && !self.tls_pending() && !self.is_authenticated()
    }

    /// `<stream:features/>` for the current state.
    pub fn features(&self) -> Element {
        let mut features = Element::new("features", ns::STREAM);
        if self.is_authenticated() {
            features.push_child(Element::new("bind", ns::BIND));
            features.push_child(Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)));
            features.push_child(Element::new("ver", NS_ROSTER_VER));
            features.push_child(Element::new("sub", NS_PRE_APPROVAL));
            return features;
        }
        if !self.tls && self.config.tls_available {
            let mut starttls = Element::new("starttls", ns::TLS);
            if self.config.tls_required {
                starttls.push_child(Element::new("required", ns::TLS));
            }
            features.push_child(starttls);
        }
        let mechanisms = self.mechanisms();
        if !mechanisms.is_empty() {
            let mut list = Element::new("mechanisms", ns::SASL);
            for m in mechanisms {
                list.push_child(Element::new("mechanism", ns::SASL).with_text(m.name()));
            }
            features.push_child(list);
            if self.offers_channel_binding() {
                // XEP-0440: which binding types the -PLUS mechanisms accept.
                features.push_child(
                    Element::new("sasl-channel-binding", NS_SASL_CHANNEL_BINDING).with_child(
                        Element::new("channel-binding", NS_SASL_CHANNEL_BINDING).with_attr("type", TLS_EXPORTER),
                    ),
                );
            }
        }
        features
    }

    /// Decide what a received top-level element means in the current state.
    pub fn classify(&self, element: &Element) -> Step {
        match (element.name.as_str(), element.ns.as_str()) {
            ("starttls", ns::TLS) => self.classify_starttls(),
            ("auth", ns::SASL) => self.classify_auth(element),
            ("response", ns::SASL) => match self.sasl {
                Sasl::Running(_) => Step::SaslContinue {
                    payload: element.text(),
                },
                Sasl::Idle => Step::SaslFailure(SaslError::MalformedRequest("response without an exchange")),
            },
            ("abort", ns::SASL) => match self.sasl {
                Sasl::Running(_) => Step::SaslAbort,
                Sasl::Idle => Step::SaslFailure(SaslError::Aborted),
            },
            ("iq" | "message" | "presence", ns::CLIENT) => self.classify_stanza(element),
            _ => Step::Close(StreamError::with_text(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("unexpected <{}/> in {}", element.name, element.ns),
            )),
        }
    }

    fn classify_starttls(&self) -> Step {
        if self.tls || self.is_authenticated() || self.sasl != Sasl::Idle {
            return Step::Close(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "STARTTLS is only possible before authentication and once",
            ));
        }
        if !self.config.tls_available {
            return Step::Close(StreamError::with_text(
                StreamErrorCondition::UnsupportedFeature,
                "no TLS identity is configured",
            ));
        }
        Step::StartTls
    }

    fn classify_auth(&self, element: &Element) -> Step {
        if self.is_authenticated() {
            return Step::Close(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "already authenticated",
            ));
        }
        if self.sasl != Sasl::Idle {
            return Step::SaslFailure(SaslError::MalformedRequest("an exchange is already running"));
        }
        if self.tls_pending() {
            return Step::SaslFailure(SaslError::EncryptionRequired);
        }
        let Some(mechanism) = element.attr("mechanism").and_then(Mechanism::from_name) else {
            return Step::SaslFailure(SaslError::InvalidMechanism);
        };
        if !self.mechanisms().contains(&mechanism) {
            return Step::SaslFailure(if mechanism == Mechanism::Plain {
                SaslError::EncryptionRequired
            } else {
                SaslError::InvalidMechanism
            });
        }
        Step::SaslStart {
            mechanism,
            payload: element.text(),
        }
    }

    fn classify_stanza(&self, element: &Element) -> Step {
        if !self.is_authenticated() {
            // RFC 6120 §4.9.3.12: data before authentication is not processed.
            return Step::Close(StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "authenticate before sending stanzas",
            ));
        }
        let is_iq = element.name == "iq";
        let bind_request = is_iq && element.has_child("bind", ns::BIND);
        let session_request = is_iq && element.has_child("session", ns::SESSION);
        if self.jid.is_none() {
            return if bind_request && element.attr("type") == Some("set") {
                Step::Bind
            } else {
                Step::Close(StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "bind a resource before sending stanzas",
                ))
            };
        }
        if bind_request {
            // RFC 6120 §7.7.2.1 leaves multiple bindings per stream undefined; refuse them.
            return Step::Reject(StanzaError::with_text(
                StanzaErrorCondition::NotAllowed,
                "a resource is already bound on this stream",
            ));
        }
        if session_request && element.attr("type") == Some("set") {
            return Step::LegacySession;
        }
        Step::Stanza
    }

    /// TLS is up; `channel_binding` when the session can export a `tls-exporter` value.
    pub fn tls_established(&mut self, channel_binding: bool) {
        self.tls = true;
        self.channel_binding = channel_binding;
    }

    pub fn sasl_started(&mut self, mechanism: Mechanism) {
        self.sasl = Sasl::Running(mechanism);
    }

    pub fn sasl_succeeded(&mut self, user: String) {
        self.sasl = Sasl::Idle;
        self.user = Some(user);
    }

    /// Record a failed exchange. Returns the stream error to close with when the client
    /// has used up its attempts (RFC 6120 §6.4.5 recommends `<policy-violation/>`).
    pub fn sasl_failed(&mut self, counts_as_attempt: bool) -> Option<StreamError> {
        self.sasl = Sasl::Idle;
        if counts_as_attempt {
            self.auth_failures = self.auth_failures.saturating_add(1);
        }
        (self.auth_failures >= self.config.max_auth_attempts).then(|| {
            StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many failed authentication attempts",
            )
        })
    }

    pub fn bound(&mut self, jid: Jid) {
        self.jid = Some(jid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls_required: bool) -> NegotiationConfig {
        NegotiationConfig {
            domain: "example.com".into(),
            tls_available: true,
            tls_required,
            max_auth_attempts: 3,
        }
    }

    fn header(to: Option<&str>, version: Option<&str>, default_ns: &str) -> StreamHeader {
        StreamHeader {
            to: to.map(str::to_owned),
            version: version.map(str::to_owned),
            default_ns: default_ns.to_owned(),
            ..StreamHeader::default()
        }
    }

    fn auth(mechanism: &str) -> Element {
        Element::new("auth", ns::SASL)
            .with_attr("mechanism", mechanism)
            .with_text("=")
    }

    fn mechanism_names(features: &Element) -> Vec<String> {
        features
            .get_child("mechanisms", ns::SASL)
            .map(|m| m.elements().map(|e| e.text()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn header_checks() {
        let n = Negotiation::new(config(true));
        assert!(
            n.check_header(&header(Some("example.com"), Some("1.0"), ns::CLIENT))
                .is_ok()
        );
        assert!(
            n.check_header(&header(Some("EXAMPLE.com"), Some("1.0"), ns::CLIENT))
                .is_ok()
        );
        let cond = |h| n.check_header(&h).unwrap_err().condition;
        assert_eq!(
            cond(header(Some("other.org"), Some("1.0"), ns::CLIENT)),
            StreamErrorCondition::HostUnknown
        );
        assert_eq!(
            cond(header(None, Some("1.0"), ns::CLIENT)),
            StreamErrorCondition::HostUnknown
        );
        assert_eq!(
            cond(header(Some("example.com"), None, ns::CLIENT)),
            StreamErrorCondition::UnsupportedVersion
        );
        assert_eq!(
            cond(header(Some("example.com"), Some("2.0"), ns::CLIENT)),
            StreamErrorCondition::UnsupportedVersion
        );
        assert_eq!(
            cond(header(Some("example.com"), Some("1.0"), ns::SERVER)),
            StreamErrorCondition::InvalidNamespace
        );
    }

    #[test]
    fn tls_required_offers_only_starttls_and_refuses_everything_else() {
        let n = Negotiation::new(config(true));
        let f = n.features();
        assert!(f.get_child("starttls", ns::TLS).unwrap().has_child("required", ns::TLS));
        assert!(!f.has_child("mechanisms", ns::SASL));
        assert_eq!(
            n.classify(&auth("SCRAM-SHA-256")),
            Step::SaslFailure(SaslError::EncryptionRequired)
        );
        let message = Element::new("message", ns::CLIENT);
        assert!(matches!(n.classify(&message), Step::Close(e) if e.condition == StreamErrorCondition::NotAuthorized));
        assert_eq!(n.classify(&Element::new("starttls", ns::TLS)), Step::StartTls);
    }

    #[test]
    fn tls_optional_offers_scram_but_never_plain_in_the_clear() {
        let n = Negotiation::new(config(false));
        let f = n.features();
        assert!(!f.get_child("starttls", ns::TLS).unwrap().has_child("required", ns::TLS));
        assert_eq!(mechanism_names(&f), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        assert_eq!(
            n.classify(&auth("PLAIN")),
            Step::SaslFailure(SaslError::EncryptionRequired)
        );
        assert!(matches!(
            n.classify(&auth("SCRAM-SHA-1")),
            Step::SaslStart {
                mechanism: Mechanism::ScramSha1,
                ..
            }
        ));
    }

    #[test]
    fn after_tls_all_mechanisms_and_no_second_starttls() {
        let mut n = Negotiation::new(config(true));
        n.tls_established(false);
        let f = n.features();
        assert!(!f.has_child("starttls", ns::TLS));
        assert_eq!(mechanism_names(&f), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
        assert!(matches!(n.classify(&Element::new("starttls", ns::TLS)), Step::Close(_)));
        assert_eq!(
            n.classify(&auth("DIGEST-MD5")),
            Step::SaslFailure(SaslError::InvalidMechanism)
        );
        assert!(matches!(
            n.classify(&auth("SCRAM-SHA-256")),
            Step::SaslStart {
                mechanism: Mechanism::ScramSha256,
                ref payload
            } if payload == "="
        ));
    }

    #[test]
    fn tls_with_an_exporter_offers_plus_first_and_announces_tls_exporter() {
        let mut n = Negotiation::new(config(true));
        n.tls_established(true);
        assert!(n.offers_channel_binding());
        let f = n.features();
        assert_eq!(
            mechanism_names(&f),
            [
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "PLAIN"
            ]
        );
        let binding = f
            .get_child("sasl-channel-binding", NS_SASL_CHANNEL_BINDING)
            .expect("XEP-0440 element");
        let types: Vec<_> = binding
            .elements()
            .filter(|e| e.is("channel-binding", NS_SASL_CHANNEL_BINDING))
            .map(|e| e.attr("type").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(types, ["tls-exporter"]);
        for (name, mechanism) in [
            ("SCRAM-SHA-256-PLUS", Mechanism::ScramSha256Plus),
            ("SCRAM-SHA-1-PLUS", Mechanism::ScramSha1Plus),
        ] {
            assert!(mechanism.is_plus());
            assert_eq!(Mechanism::from_name(name), Some(mechanism));
            assert!(matches!(n.classify(&auth(name)), Step::SaslStart { mechanism: m, .. } if m == mechanism));
        }
        n.sasl_succeeded("juliet".into());
        assert!(!n.offers_channel_binding());
        assert!(!n.features().has_child("sasl-channel-binding", NS_SASL_CHANNEL_BINDING));
    }

    #[test]
    fn no_plus_without_tls_or_without_an_exporter() {
        let plain = Negotiation::new(config(false));
        assert!(!plain.offers_channel_binding());
        assert_eq!(
            plain.classify(&auth("SCRAM-SHA-256-PLUS")),
            Step::SaslFailure(SaslError::InvalidMechanism)
        );
        let mut tls12 = Negotiation::new(config(true));
        tls12.tls_established(false);
        let f = tls12.features();
        assert_eq!(mechanism_names(&f), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
        assert!(!f.has_child("sasl-channel-binding", NS_SASL_CHANNEL_BINDING));
        assert_eq!(
            tls12.classify(&auth("SCRAM-SHA-1-PLUS")),
            Step::SaslFailure(SaslError::InvalidMechanism)
        );
    }

    #[test]
    fn sasl_exchange_steps_and_attempt_limit() {
        let mut n = Negotiation::new(config(true));
        n.tls_established(false);
        n.sasl_started(Mechanism::ScramSha256);
        assert_eq!(
            n.classify(&Element::new("response", ns::SASL).with_text("abc")),
            Step::SaslContinue { payload: "abc".into() }
        );
        assert!(matches!(
            n.classify(&auth("PLAIN")),
            Step::SaslFailure(SaslError::MalformedRequest(_))
        ));
        assert_eq!(n.classify(&Element::new("abort", ns::SASL)), Step::SaslAbort);
        assert!(n.sasl_failed(true).is_none());
        assert!(n.sasl_failed(false).is_none());
        assert!(n.sasl_failed(true).is_none());
        let closing = n.sasl_failed(true).unwrap();
        assert_eq!(closing.condition, StreamErrorCondition::PolicyViolation);
    }

    #[test]
    fn bind_then_stanzas() {
        let mut n = Negotiation::new(config(true));
        n.tls_established(false);
        n.sasl_succeeded("juliet".into());
        let f = n.features();
        assert!(f.has_child("bind", ns::BIND));
        assert!(
            f.get_child("session", ns::SESSION)
                .unwrap()
                .has_child("optional", ns::SESSION)
        );
        assert!(!f.has_child("mechanisms", ns::SASL));
        let bind = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "b")
            .with_child(Element::new("bind", ns::BIND));
        let message = Element::new("message", ns::CLIENT);
        assert!(matches!(n.classify(&message), Step::Close(e) if e.condition == StreamErrorCondition::NotAuthorized));
        assert_eq!(n.classify(&bind), Step::Bind);
        assert!(matches!(n.classify(&auth("PLAIN")), Step::Close(_)));

        n.bound("juliet@example.com/balcony".parse().unwrap());
        assert_eq!(n.classify(&message), Step::Stanza);
        assert!(matches!(n.classify(&bind), Step::Reject(e) if e.condition == StanzaErrorCondition::NotAllowed));
        let session = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(Element::new("session", ns::SESSION));
        assert_eq!(n.classify(&session), Step::LegacySession);
        let unknown = Element::new("enable", "urn:xmpp:sm:3");
        assert!(
            matches!(n.classify(&unknown), Step::Close(e) if e.condition == StreamErrorCondition::UnsupportedStanzaType)
        );
    }

    #[test]
    fn tls_required_without_identity_offers_nothing_usable() {
        let n = Negotiation::new(NegotiationConfig {
            tls_available: false,
            ..config(true)
        });
        let f = n.features();
        assert!(f.children.is_empty());
        assert!(matches!(n.classify(&Element::new("starttls", ns::TLS)), Step::Close(_)));
        assert_eq!(
            n.classify(&auth("SCRAM-SHA-256")),
            Step::SaslFailure(SaslError::EncryptionRequired)
        );
    }
}
