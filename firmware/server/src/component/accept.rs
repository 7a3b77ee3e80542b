//! The XEP-0114 accept protocol as a pure state machine: which stream header names which
//! Call Bridge, whether a `<handshake/>` proves its secret, and what a stanza from an
//! authenticated component may look like.
//!
//! No I/O, no store and no clock: the connection task looks the secret up between
//! [`Accept::on_header`] and [`Accept::on_handshake`] and carries out what comes back.

use sb_proto::component::verify_handshake;
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition, StreamHeader, ns};

/// Why a component was refused, as `xmpp status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthFailureReason {
    /// No Call Bridge of that name is configured (`<host-unknown/>`).
    UnknownName,
    /// The digest did not match the configured secret (`<not-authorized/>`).
    WrongSecret,
    /// No usable handshake: a malformed header, or something other than `<handshake/>` first.
    BadHandshake,
}

impl std::fmt::Display for AuthFailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthFailureReason::UnknownName => "unknown name",
            AuthFailureReason::WrongSecret => "wrong secret",
            AuthFailureReason::BadHandshake => "bad handshake",
        })
    }
}

/// A refused handshake: the stream error to close with, and what to record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {error}")]
pub struct Refusal {
    pub error: StreamError,
    pub reason: AuthFailureReason,
}

impl Refusal {
    fn new(reason: AuthFailureReason, condition: StreamErrorCondition, text: &str) -> Refusal {
        Refusal {
            error: StreamError::with_text(condition, text),
            reason,
        }
    }
}

/// The Call Bridge a stream header asks to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The configured bridge name (`cb1`).
    pub name: String,
    /// Its address, `<name>.<domain>`: the domain it may send from and receives for.
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    AwaitHeader,
    /// Header accepted; the connection task looks up the secret of `claim`.
    AwaitSecret {
        claim: Claim,
    },
    AwaitHandshake {
        claim: Claim,
    },
    Authenticated {
        claim: Claim,
    },
    Refused,
}

/// One component stream's handshake, from the header to `<handshake/>`.
#[derive(Clone, Debug)]
pub struct Accept {
    domain: String,
    stream_id: String,
    phase: Phase,
    /// What the header asked for, for status and logs even when it was refused.
    requested: Option<String>,
}

/// What a checked stanza from an authenticated component becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Route it: namespace already turned into `jabber:client`, `from` and `to` checked.
    Route(Element),
    /// Answer the component with this error (in the component's namespace).
    Reply(Element),
    /// Drop it silently (an error or result that cannot be answered).
    Drop,
}

impl Accept {
    /// `domain` is the XMPP domain served; `stream_id` the fresh, unpredictable id our header
    /// carries and the handshake digest covers.
    pub fn new(domain: impl Into<String>, stream_id: impl Into<String>) -> Accept {
        Accept {
            domain: domain.into(),
            stream_id: stream_id.into(),
            phase: Phase::AwaitHeader,
            requested: None,
        }
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Authenticated { .. })
    }

    /// The bridge the peer asked to be: the name when its header addressed `<name>.<domain>`,
    /// else the address as it wrote it; `None` before a header.
    pub fn requested_name(&self) -> Option<&str> {
        self.requested.as_deref()
    }

    /// The bridge this stream is (or is trying to be).
    pub fn claim(&self) -> Option<&Claim> {
        match &self.phase {
            Phase::AwaitSecret { claim } | Phase::AwaitHandshake { claim } | Phase::Authenticated { claim } => {
                Some(claim)
            }
            Phase::AwaitHeader | Phase::Refused => None,
        }
    }

    /// Our answering header: `from` the address the component asked for (XEP-0114 §3), the
    /// stream id, and no version (the accept protocol has no stream features).
    pub fn response_header(&self, requested_to: Option<&str>) -> StreamHeader {
        let mut header = StreamHeader::new(ns::COMPONENT);
        header.version = None;
        header.id = Some(self.stream_id.clone());
        header.from = Some(
            requested_to
                .and_then(|to| Jid::parse(to).ok())
                .map(|jid| jid.to_string())
                .unwrap_or_else(|| self.domain.clone()),
        );
        header
    }

    /// Check the component's stream header. On success the connection task looks up the
    /// secret of the returned claim and calls [`Accept::secret_found`] or
    /// [`Accept::secret_missing`].
    pub fn on_header(&mut self, header: &StreamHeader) -> Result<Claim, Refusal> {
        let result = self.check_header(header);
        self.phase = match &result {
            Ok(claim) => Phase::AwaitSecret { claim: claim.clone() },
            Err(_) => Phase::Refused,
        };
        result
    }

    fn check_header(&mut self, header: &StreamHeader) -> Result<Claim, Refusal> {
        if self.phase != Phase::AwaitHeader {
            return Err(Refusal::new(
                AuthFailureReason::BadHandshake,
                StreamErrorCondition::NotAuthorized,
                "a second stream header",
            ));
        }
        self.requested = header.to.clone();
        header.check_default_ns(ns::COMPONENT).map_err(|error| Refusal {
            error,
            reason: AuthFailureReason::BadHandshake,
        })?;
        let Some(to) = header.to.as_deref().filter(|to| !to.is_empty()) else {
            return Err(Refusal::new(
                AuthFailureReason::BadHandshake,
                StreamErrorCondition::ImproperAddressing,
                "the stream header must name the component in 'to'",
            ));
        };
        let unknown = || {
            Refusal::new(
                AuthFailureReason::UnknownName,
                StreamErrorCondition::HostUnknown,
                "no Call Bridge of that name is configured here",
            )
        };
        let jid = Jid::parse(to).map_err(|_| unknown())?;
        if jid.node().is_some() || jid.resource().is_some() {
            return Err(unknown());
        }
        let address = jid.domain().to_owned();
        let name = address
            .strip_suffix(&self.domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|name| is_dns_label(name))
            .ok_or_else(unknown)?;
        self.requested = Some(name.to_owned());
        Ok(Claim {
            name: name.to_owned(),
            address: address.clone(),
        })
    }

    /// The claimed bridge exists; wait for its handshake.
    pub fn secret_found(&mut self) {
        if let Phase::AwaitSecret { claim } = &self.phase {
            self.phase = Phase::AwaitHandshake { claim: claim.clone() };
        }
    }

    /// The claimed bridge is not configured: `<host-unknown/>`.
    pub fn secret_missing(&mut self) -> Refusal {
        self.phase = Phase::Refused;
        Refusal::new(
            AuthFailureReason::UnknownName,
            StreamErrorCondition::HostUnknown,
            "no Call Bridge of that name is configured here",
        )
    }

    /// The first element after the header must be `<handshake>digest</handshake>` proving
    /// `secret` for our stream id.
    pub fn on_handshake(&mut self, element: &Element, secret: &str) -> Result<Claim, Refusal> {
        let Phase::AwaitHandshake { claim } = &self.phase else {
            self.phase = Phase::Refused;
            return Err(Refusal::new(
                AuthFailureReason::BadHandshake,
                StreamErrorCondition::NotAuthorized,
                "not expecting a handshake now",
            ));
        };
        let claim = claim.clone();
        if !element.is("handshake", ns::COMPONENT) {
            self.phase = Phase::Refused;
            return Err(Refusal::new(
                AuthFailureReason::BadHandshake,
                StreamErrorCondition::NotAuthorized,
                "the component must send <handshake/> first",
            ));
        }
        if !verify_handshake(&self.stream_id, secret, &element.text()) {
            self.phase = Phase::Refused;
            return Err(Refusal::new(
                AuthFailureReason::WrongSecret,
                StreamErrorCondition::NotAuthorized,
                "handshake does not match the configured secret",
            ));
        }
        self.phase = Phase::Authenticated { claim: claim.clone() };
        Ok(claim)
    }

    /// An element before authentication that is not the awaited handshake.
    pub fn unexpected_before_handshake(&mut self) -> Refusal {
        self.phase = Phase::Refused;
        Refusal::new(
            AuthFailureReason::BadHandshake,
            StreamErrorCondition::NotAuthorized,
            "the component must send <handshake/> first",
        )
    }

    /// Check a stanza from the authenticated component (XEP-0114 §3: it addresses every
    /// stanza itself). A missing or unusable `from` ends the stream with
    /// `<improper-addressing/>`, a `from` outside the component's domain with
    /// `<invalid-from/>`; a missing `to` is answered with `bad-request`, a malformed one with
    /// `jid-malformed`. Any localpart and resource at the component's domain may be used.
    pub fn on_stanza(&self, mut stanza: Element) -> Result<Inbound, StreamError> {
        let Phase::Authenticated { claim } = &self.phase else {
            return Err(StreamError::new(StreamErrorCondition::NotAuthorized));
        };
        if stanza.ns != ns::COMPONENT || !matches!(stanza.name.as_str(), "message" | "presence" | "iq") {
            return Err(StreamError::with_text(
                StreamErrorCondition::UnsupportedStanzaType,
                format!("<{}/> is not a stanza", stanza.name),
            ));
        }
        let from = match stanza.attr("from").filter(|f| !f.is_empty()).map(Jid::parse) {
            None => {
                return Err(StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    "a component must address every stanza: 'from' is missing",
                ));
            }
            Some(Err(_)) => {
                return Err(StreamError::with_text(
                    StreamErrorCondition::ImproperAddressing,
                    "'from' is not a valid address",
                ));
            }
            Some(Ok(from)) => from,
        };
        if from.domain() != claim.address {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidFrom,
                format!("a component may only send from {}", claim.address),
            ));
        }
        // The normalized form travels on: contacts and routes compare it byte for byte.
        stanza.set_attr("from", from.to_string());
        let to_problem = match stanza.attr("to").filter(|t| !t.is_empty()).map(Jid::parse) {
            None => Some(StanzaError::with_text(
                StanzaErrorCondition::BadRequest,
                "components must specify a 'to' address on stanzas",
            )),
            Some(Err(_)) => Some(StanzaError::new(StanzaErrorCondition::JidMalformed)),
            Some(Ok(to)) => {
                stanza.set_attr("to", to.to_string());
                None
            }
        };
        let problem = to_problem.or_else(|| {
            (stanza.name == "iq")
                .then(|| crate::iq::validate(&stanza).err())
                .flatten()
        });
        if let Some(error) = problem {
            if !crate::delivery::may_bounce(&stanza) {
                return Ok(Inbound::Drop);
            }
            let mut reply = error.reply_to(&stanza);
            // Without a usable 'to' the answer comes from the server itself.
            if reply.attr("from").is_none_or(|f| Jid::parse(f).is_err()) {
                reply.set_attr("from", self.domain.clone());
            }
            return Ok(Inbound::Reply(reply));
        }
        sb_proto::retarget_namespace(&mut stanza, ns::COMPONENT, ns::CLIENT);
        Ok(Inbound::Route(stanza))
    }
}

/// A DNS label as `xmpp callbridge add` accepts it (the stored names are lower case, and
/// JID normalization lower-cases the header's address the same way).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "example.com";

    fn header(to: Option<&str>) -> StreamHeader {
        let mut h = StreamHeader::new(ns::COMPONENT);
        h.version = None;
        h.to = to.map(str::to_owned);
        h
    }

    fn handshake(digest: &str) -> Element {
        Element::new("handshake", ns::COMPONENT).with_text(digest)
    }

    fn authenticated() -> Accept {
        let mut accept = Accept::new(DOMAIN, "3BF96D32");
        accept.on_header(&header(Some("cb1.example.com"))).unwrap();
        accept.secret_found();
        accept
            .on_handshake(
                &handshake("c44263edf0d2a08adf2e8fc441b0904420abbf8b"),
                "kvgP1SRzWVabhiPVAb1",
            )
            .unwrap();
        accept
    }

    fn stanza(name: &str, from: Option<&str>, to: Option<&str>) -> Element {
        Element::new(name, ns::COMPONENT)
            .with_opt_attr("from", from)
            .with_opt_attr("to", to)
            .with_child(Element::new("body", ns::COMPONENT).with_text("hi"))
    }

    #[test]
    fn spec_vector_authenticates_and_a_wrong_digest_does_not() {
        let accept = authenticated();
        assert!(accept.is_authenticated());
        assert_eq!(
            accept.claim(),
            Some(&Claim {
                name: "cb1".into(),
                address: "cb1.example.com".into()
            })
        );

        let mut wrong = Accept::new(DOMAIN, "3BF96D32");
        wrong.on_header(&header(Some("cb1.example.com"))).unwrap();
        wrong.secret_found();
        let refusal = wrong
            .on_handshake(&handshake("c44263edf0d2a08adf2e8fc441b0904420abbf8b"), "another secret")
            .unwrap_err();
        assert_eq!(refusal.reason, AuthFailureReason::WrongSecret);
        assert_eq!(refusal.error.condition, StreamErrorCondition::NotAuthorized);
        assert!(!wrong.is_authenticated());
    }

    #[test]
    fn escaped_secret_vector() {
        let mut accept = Accept::new(DOMAIN, "3BF96D32");
        accept.on_header(&header(Some("cb1.example.com"))).unwrap();
        accept.secret_found();
        accept
            .on_handshake(&handshake("fca6defc797f96517f28ed12c31133e4bbb28a33"), "s3cr3t&<x")
            .unwrap();
        assert!(accept.is_authenticated());
    }

    #[test]
    fn headers_name_a_bridge_inside_our_domain() {
        let claim = |to: Option<&str>| {
            let mut accept = Accept::new(DOMAIN, "id");
            let result = accept.on_header(&header(to));
            (result, accept.requested_name().map(str::to_owned))
        };
        let (ok, name) = claim(Some("CB1.Example.COM"));
        assert_eq!(ok.unwrap().address, "cb1.example.com");
        assert_eq!(name.as_deref(), Some("cb1"));
        for (to, expected_name) in [
            ("example.com", "example.com"),
            ("cb1.example.org", "cb1.example.org"),
            ("a.b.example.com", "a.b.example.com"),
            ("user@cb1.example.com", "user@cb1.example.com"),
            ("-x.example.com", "-x.example.com"),
            ("cb1example.com", "cb1example.com"),
        ] {
            let (result, name) = claim(Some(to));
            let refusal = result.unwrap_err();
            assert_eq!(refusal.reason, AuthFailureReason::UnknownName, "{to}");
            assert_eq!(refusal.error.condition, StreamErrorCondition::HostUnknown, "{to}");
            assert_eq!(name.as_deref(), Some(expected_name));
        }
        let (result, _) = claim(None);
        assert_eq!(
            result.unwrap_err().error.condition,
            StreamErrorCondition::ImproperAddressing
        );
        let mut client_ns = header(Some("cb1.example.com"));
        client_ns.default_ns = ns::CLIENT.to_owned();
        let refusal = Accept::new(DOMAIN, "id").on_header(&client_ns).unwrap_err();
        assert_eq!(refusal.error.condition, StreamErrorCondition::InvalidNamespace);
        assert_eq!(refusal.reason, AuthFailureReason::BadHandshake);
    }

    #[test]
    fn unknown_names_and_out_of_order_elements_are_refused() {
        let mut accept = Accept::new(DOMAIN, "id");
        accept.on_header(&header(Some("cb9.example.com"))).unwrap();
        let refusal = accept.secret_missing();
        assert_eq!(refusal.error.condition, StreamErrorCondition::HostUnknown);
        assert_eq!(refusal.reason, AuthFailureReason::UnknownName);

        let mut accept = Accept::new(DOMAIN, "id");
        accept.on_header(&header(Some("cb1.example.com"))).unwrap();
        accept.secret_found();
        let refusal = accept
            .on_handshake(&stanza("message", Some("cb1.example.com"), Some("a@example.com")), "s")
            .unwrap_err();
        assert_eq!(refusal.reason, AuthFailureReason::BadHandshake);
        assert_eq!(refusal.error.condition, StreamErrorCondition::NotAuthorized);

        // A handshake before the secret lookup finished, or a second one, is refused.
        let mut accept = Accept::new(DOMAIN, "id");
        accept.on_header(&header(Some("cb1.example.com"))).unwrap();
        assert!(accept.on_handshake(&handshake("00"), "s").is_err());
        assert!(authenticated().on_handshake(&handshake("00"), "s").is_err());
    }

    #[test]
    fn the_answering_header_carries_the_id_and_the_requested_address() {
        let accept = Accept::new(DOMAIN, "3BF96D32");
        let text = String::from_utf8(accept.response_header(Some("cb1.example.com")).to_bytes()).unwrap();
        assert!(text.contains("xmlns='jabber:component:accept'"), "{text}");
        assert!(text.contains("from='cb1.example.com'"), "{text}");
        assert!(text.contains("id='3BF96D32'"), "{text}");
        let stream_tag = text.split("<stream:stream").nth(1).unwrap_or_default();
        assert!(!stream_tag.contains("version="), "{text}");
        let text = String::from_utf8(accept.response_header(Some("@@")).to_bytes()).unwrap();
        assert!(text.contains("from='example.com'"), "{text}");
    }

    #[test]
    fn stanzas_are_checked_and_turned_into_client_namespace() {
        let accept = authenticated();
        let routed = accept
            .on_stanza(stanza(
                "message",
                Some("Conf@CB1.example.com/r"),
                Some("alice@example.com"),
            ))
            .unwrap();
        let Inbound::Route(routed) = routed else {
            panic!("not routed: {routed:?}")
        };
        assert_eq!(routed.ns, ns::CLIENT);
        assert_eq!(routed.attr("from"), Some("conf@cb1.example.com/r"));
        assert!(routed.has_child("body", ns::CLIENT));

        let condition = |s: Element| accept.on_stanza(s).unwrap_err().condition;
        assert_eq!(
            condition(stanza("message", None, Some("alice@example.com"))),
            StreamErrorCondition::ImproperAddressing
        );
        assert_eq!(
            condition(stanza("message", Some("@@"), Some("alice@example.com"))),
            StreamErrorCondition::ImproperAddressing
        );
        for foreign in [
            "example.com",
            "cb2.example.com",
            "x@cb1.example.com.evil",
            "alice@example.com",
        ] {
            assert_eq!(
                condition(stanza("message", Some(foreign), Some("alice@example.com"))),
                StreamErrorCondition::InvalidFrom,
                "{foreign}"
            );
        }
        assert_eq!(
            condition(Element::new("handshake", ns::COMPONENT)),
            StreamErrorCondition::UnsupportedStanzaType
        );
    }

    #[test]
    fn bad_addressing_or_iq_gets_a_stanza_error_back() {
        let accept = authenticated();
        let reply = |s: Element| match accept.on_stanza(s).unwrap() {
            Inbound::Reply(reply) => reply,
            other => panic!("expected a reply, got {other:?}"),
        };
        let no_to = reply(stanza("message", Some("cb1.example.com"), None).with_attr("id", "m1"));
        assert_eq!(no_to.attr("to"), Some("cb1.example.com"));
        assert_eq!(no_to.attr("from"), Some("example.com"));
        assert_eq!(no_to.ns, ns::COMPONENT);
        let error = no_to.get_child("error", ns::COMPONENT).unwrap();
        assert_eq!(error.attr("type"), Some("modify"));
        assert!(error.has_child("bad-request", ns::STANZAS_ERROR));

        let malformed = reply(stanza("message", Some("cb1.example.com"), Some("@@")));
        assert!(
            malformed
                .get_child("error", ns::COMPONENT)
                .unwrap()
                .has_child("jid-malformed", ns::STANZAS_ERROR)
        );

        let iq_without_id = Element::new("iq", ns::COMPONENT)
            .with_attr("from", "cb1.example.com")
            .with_attr("to", "alice@example.com/phone")
            .with_attr("type", "get")
            .with_child(Element::new("ping", ns::PING));
        let bad = reply(iq_without_id);
        assert_eq!(bad.attr("from"), Some("alice@example.com/phone"));
        assert!(
            bad.get_child("error", ns::COMPONENT)
                .unwrap()
                .has_child("bad-request", ns::STANZAS_ERROR)
        );

        let error_without_to = stanza("message", Some("cb1.example.com"), None).with_attr("type", "error");
        assert_eq!(accept.on_stanza(error_without_to).unwrap(), Inbound::Drop);
    }
}
