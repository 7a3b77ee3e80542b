//! Server-to-server streams without I/O: what to send and what happened, given what arrived.
//!
//! [`outgoing::OutgoingStream`] is the initiating side (originating server, and the receiving
//! server's verify-only streams to an authoritative server); [`incoming::IncomingStream`] is
//! the accepting side (receiving server, and authoritative server answering `db:verify`).
//! Both take [`StreamEvent`](sb_proto::StreamEvent)s from the framer and return [`Output`]s the
//! connection task carries out in order. Time is not theirs: timeouts are the task's, which
//! reports them back (e.g. [`Verdict::Timeout`]).

pub mod incoming;
pub mod outgoing;

use sb_proto::{Element, StanzaErrorCondition, StreamError, StreamErrorCondition, ns};

/// How a domain pair was authenticated, as `federation status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Dialback,
    SaslExternal,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Dialback => "dialback",
            AuthMethod::SaslExternal => "SASL EXTERNAL",
        }
    }
}

/// A key the receiving server asks the authoritative server to confirm (`db:verify`).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The domain that claims to have sent the key (the authoritative server's domain).
    pub originating: String,
    /// Our domain the originating server wants to talk to.
    pub receiving: String,
    /// The id of the incoming stream the key was sent on.
    pub stream_id: String,
    pub key: String,
}

impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a one-time proof, not a secret, but it has no business in a log either.
        f.debug_struct("VerifyRequest")
            .field("originating", &self.originating)
            .field("receiving", &self.receiving)
            .field("stream_id", &self.stream_id)
            .finish_non_exhaustive()
    }
}

/// What the authoritative server said about a key, or why it said nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// A dialback error (XEP-0220 §2.4), from the authoritative server or from our failure to
    /// reach it (`remote-server-not-found`, `remote-connection-failed`).
    Error(StanzaErrorCondition),
    /// No answer within the dialback timeout.
    Timeout,
    /// We could not reach the authoritative server (XEP-0220 `remote-connection-failed`, a
    /// condition RFC 6120 defines for streams only, hence its own variant).
    ConnectionFailed,
}

impl Verdict {
    pub fn describe(self) -> String {
        match self {
            Verdict::Valid => "valid".to_owned(),
            Verdict::Invalid => "invalid".to_owned(),
            Verdict::Error(condition) => format!("error <{condition}/>"),
            Verdict::Timeout => "no answer in time".to_owned(),
            Verdict::ConnectionFailed => "authoritative server unreachable".to_owned(),
        }
    }
}

/// Why an outgoing stream could not carry stanzas for a pair. `bounce_condition` is what
/// the senders of queued stanzas get.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the peer sent a stream error: {0}")]
    PeerStreamError(StreamError),
    #[error("protocol error: {0}")]
    Protocol(StreamError),
    #[error("TLS is required but the peer does not offer STARTTLS")]
    TlsNotOffered,
    #[error("the peer requires TLS but the security mode is no-tls")]
    PeerRequiresTls,
    #[error("the peer refused STARTTLS")]
    TlsRefused,
    #[error("the peer said our dialback key is invalid")]
    DialbackInvalid,
    #[error("the peer answered our dialback request with an error <{0}/>")]
    DialbackError(StanzaErrorCondition),
    #[error("no dialback answer within the timeout")]
    DialbackTimeout,
    #[error("the peer closed the stream before authentication")]
    ClosedEarly,
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Certificate(String),
    #[error("{0}")]
    Dns(String),
    #[error("no stanza could be sent: {0}")]
    Policy(String),
}

impl LinkError {
    /// `remote-server-timeout` when the peer was slow, `remote-server-not-found` otherwise.
    pub fn bounce_condition(&self) -> StanzaErrorCondition {
        match self {
            LinkError::DialbackTimeout => StanzaErrorCondition::RemoteServerTimeout,
            LinkError::DialbackError(StanzaErrorCondition::RemoteServerTimeout) => {
                StanzaErrorCondition::RemoteServerTimeout
            }
            LinkError::Connect(reason) if reason.contains("timed out") => StanzaErrorCondition::RemoteServerTimeout,
            _ => StanzaErrorCondition::RemoteServerNotFound,
        }
    }

    /// Whether another address of the same domain might do better (a connection-level
    /// problem), as opposed to the peer's considered answer (it refused us).
    pub fn try_next_target(&self) -> bool {
        matches!(
            self,
            LinkError::Connect(_)
                | LinkError::ClosedEarly
                | LinkError::Protocol(_)
                | LinkError::PeerStreamError(_)
                | LinkError::Certificate(_)
                | LinkError::TlsNotOffered
                | LinkError::TlsRefused
        )
    }
}

/// What the connection task must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Bytes for the peer.
    Write(Vec<u8>),
    /// Run the TLS handshake now (client side on outgoing, server side on incoming), reset the
    /// framer, then call `tls_established`.
    StartTls,
    /// SASL succeeded: expect a new stream header, keeping bytes already received.
    Restart,
    /// A domain pair can now carry stanzas from `remote` to `local` (incoming) or from
    /// `local` to `remote` (outgoing).
    Authenticated {
        local: String,
        remote: String,
        method: AuthMethod,
    },
    /// An outgoing pair will not come up on this stream.
    PairFailed { local: String, error: LinkError },
    /// Incoming: confirm this key with the originating domain's authoritative server and
    /// report back with `verify_outcome`.
    Verify(VerifyRequest),
    /// Outgoing: the authoritative server answered a `db:verify` we sent.
    Verified { request: VerifyRequest, verdict: Verdict },
    /// Incoming: an authenticated stanza, already in the `jabber:client` namespace.
    Stanza(Element),
    /// The stream is over: flush what was written and close the connection. `error` says why
    /// when it ended badly.
    Close { error: Option<LinkError> },
}

/// The peer's certificate as the TLS layer judged it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// DNS names and XmppAddr identities from the subject alternative names, lower case.
    pub names: Vec<String>,
    /// The chain verifies against the system roots plus the admin's bundle.
    pub chain_trusted: bool,
}

impl PeerCertificate {
    /// Whether the certificate names `domain` (a `*.` wildcard covers one leftmost label).
    pub fn names_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(suffix) = name.strip_prefix("*.") {
                domain
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
            } else {
                name == domain
            }
        })
    }

    /// Strong (PKIX) authentication of `domain`: what SASL EXTERNAL needs.
    pub fn authenticates(&self, domain: &str) -> bool {
        self.chain_trusted && self.names_domain(domain)
    }
}

const REMOTE_CONNECTION_FAILED: &str = "remote-connection-failed";

/// The dialback element (`db:result` / `db:verify`) answering a request, with the stanza
/// error child a `type='error'` answer carries.
pub(crate) fn dialback_answer(name: &str, from: &str, to: &str, id: Option<&str>, verdict: Verdict) -> Element {
    let (kind, condition) = match verdict {
        Verdict::Valid => ("valid", None),
        Verdict::Invalid => ("invalid", None),
        Verdict::Error(condition) => ("error", Some(condition)),
        Verdict::Timeout => ("error", Some(StanzaErrorCondition::RemoteServerTimeout)),
        Verdict::ConnectionFailed => ("error", None),
    };
    let mut answer = Element::new(name, ns::DIALBACK)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_opt_attr("id", id)
        .with_attr("type", kind);
    if let Some(condition) = condition {
        answer.push_child(sb_proto::StanzaError::new(condition).to_element(ns::SERVER));
    } else if verdict == Verdict::ConnectionFailed {
        answer.push_child(
            Element::new("error", ns::SERVER)
                .with_attr("type", "cancel")
                .with_child(Element::new(REMOTE_CONNECTION_FAILED, ns::STANZAS_ERROR)),
        );
    }
    answer
}

/// The verdict in a `db:result` / `db:verify` answer.
pub(crate) fn read_verdict(element: &Element) -> Option<Verdict> {
    match element.attr("type")? {
        "valid" => Some(Verdict::Valid),
        "invalid" => Some(Verdict::Invalid),
        "error" => {
            let connection_failed = element
                .elements()
                .filter(|e| e.name == "error")
                .any(|error| error.has_child(REMOTE_CONNECTION_FAILED, ns::STANZAS_ERROR));
            if connection_failed {
                return Some(Verdict::ConnectionFailed);
            }
            let condition = element
                .elements()
                .find(|e| e.name == "error")
                .and_then(|error| {
                    error
                        .elements()
                        .find(|c| c.ns == ns::STANZAS_ERROR && c.name != "text")
                        .and_then(|c| StanzaErrorCondition::from_name(&c.name))
                })
                .unwrap_or(StanzaErrorCondition::UndefinedCondition);
            Some(Verdict::Error(condition))
        }
        _ => None,
    }
}

/// `<stream:error/>` followed by the closing tag.
pub(crate) fn stream_error_bytes(error: &StreamError) -> Vec<u8> {
    let mut bytes = error.to_element().to_bytes(ns::SERVER);
    bytes.extend_from_slice(sb_proto::STREAM_CLOSE);
    bytes
}

/// The stream error a peer sent, as a typed value.
pub(crate) fn read_stream_error(element: &Element) -> StreamError {
    let condition = element
        .elements()
        .filter(|c| c.ns == ns::STREAMS_ERROR && c.name != "text")
        .find_map(|c| StreamErrorCondition::from_name(&c.name))
        .unwrap_or(StreamErrorCondition::UndefinedCondition);
    match element.get_child("text", ns::STREAMS_ERROR) {
        Some(text) => StreamError::with_text(condition, text.text()),
        None => StreamError::new(condition),
    }
}

pub(crate) fn is_stanza(element: &Element) -> bool {
    matches!(element.name.as_str(), "message" | "presence" | "iq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names() {
        let cert = PeerCertificate {
            names: vec!["b.example".into(), "*.conf.example".into()],
            chain_trusted: false,
        };
        assert!(cert.names_domain("B.Example"));
        assert!(cert.names_domain("rooms.conf.example"));
        assert!(!cert.names_domain("conf.example"));
        assert!(!cert.names_domain("a.rooms.conf.example"));
        assert!(!cert.names_domain("c.example"));
        assert!(!cert.authenticates("b.example"));
        let trusted = PeerCertificate {
            chain_trusted: true,
            ..cert
        };
        assert!(trusted.authenticates("b.example"));
    }

    #[test]
    fn dialback_answers_round_trip() {
        for verdict in [
            Verdict::Valid,
            Verdict::Invalid,
            Verdict::Error(StanzaErrorCondition::ItemNotFound),
            Verdict::ConnectionFailed,
        ] {
            let answer = dialback_answer("result", "a.example", "b.example", None, verdict);
            assert_eq!(read_verdict(&answer), Some(verdict));
        }
        let timeout = dialback_answer("verify", "a", "b", Some("id1"), Verdict::Timeout);
        assert_eq!(
            read_verdict(&timeout),
            Some(Verdict::Error(StanzaErrorCondition::RemoteServerTimeout))
        );
        assert_eq!(
            String::from_utf8(
                dialback_answer(
                    "result",
                    "a",
                    "b",
                    None,
                    Verdict::Error(StanzaErrorCondition::ItemNotFound)
                )
                .to_bytes(ns::SERVER)
            )
            .unwrap(),
            "<db:result from='a' to='b' type='error'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
        );
    }

    #[test]
    fn bounce_conditions() {
        assert_eq!(
            LinkError::DialbackTimeout.bounce_condition(),
            StanzaErrorCondition::RemoteServerTimeout
        );
        assert_eq!(
            LinkError::DialbackInvalid.bounce_condition(),
            StanzaErrorCondition::RemoteServerNotFound
        );
        assert!(LinkError::Connect("refused".into()).try_next_target());
        assert!(!LinkError::DialbackInvalid.try_next_target());
    }
}
