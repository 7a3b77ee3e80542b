//! SASL mechanisms on client streams (RFC 6120 §6): SCRAM-SHA-256 and SCRAM-SHA-1, each also
//! as -PLUS bound to the TLS connection (`tls-exporter`), and PLAIN.
//!
//! This file runs one exchange over `sb_proto::sasl`; credentials come from a lookup the
//! caller provides (the store in production), so the exchange itself is plain computation.
//! Which mechanisms are offered when is the negotiation state machine's business.

use crate::c2s::negotiation::Mechanism;
use sb_proto::Jid;
use sb_proto::sasl::{self, SaslError, ScramHash, ScramServer, ServerChannelBinding, UserCredentials};

/// A running exchange between `<auth/>` and its `<success/>` or `<failure/>`.
pub enum Exchange {
    /// `<auth/>` came without an initial response; the client-first-message follows.
    ScramAwaitingFirst(ScramServer),
    ScramAwaitingFinal(ScramServer),
    PlainAwaitingResponse,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exchange::ScramAwaitingFirst(_) => "ScramAwaitingFirst",
            Exchange::ScramAwaitingFinal(_) => "ScramAwaitingFinal",
            Exchange::PlainAwaitingResponse => "PlainAwaitingResponse",
        })
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// Send `<challenge/>` with this payload and keep the exchange for the next response.
    Challenge(Vec<u8>, Box<Exchange>),
    /// Send `<success/>` with this additional data; `user` is the normalized localpart.
    Success {
        user: String,
        additional: Vec<u8>,
    },
    Failure(SaslFailure),
}

/// A failed exchange: the condition for the client, and whether it was a wrong credential
/// (counted against the connection's and the address' attempt limits) or a protocol slip.
#[derive(Debug)]
pub struct SaslFailure {
    pub error: SaslError,
    pub bad_credentials: bool,
    /// The account the client tried, for the log; never sent to the peer.
    pub user: Option<String>,
}

impl SaslFailure {
    fn protocol(error: SaslError) -> Outcome {
        Outcome::Failure(SaslFailure {
            error,
            bad_credentials: false,
            user: None,
        })
    }

    fn credentials(error: SaslError, user: Option<String>) -> Outcome {
        Outcome::Failure(SaslFailure {
            error,
            bad_credentials: true,
            user,
        })
    }
}

/// Where an exchange gets stored credentials and the per-process secret used to answer
/// unknown users indistinguishably.
pub struct AuthContext<'a> {
    pub domain: &'a str,
    pub lookup: &'a dyn Fn(&str) -> Result<Option<UserCredentials>, String>,
    pub unknown_user_secret: &'a [u8],
    /// The connection's `tls-exporter` value (RFC 9266) when it has one, which is exactly
    /// when the -PLUS mechanisms are offered.
    pub tls_exporter: Option<&'a [u8]>,
}

/// The canonical localpart for what the client typed (RFC 7622 UsernameCaseMapped).
pub fn normalize_user(name: &str, domain: &str) -> Option<String> {
    Jid::from_parts(Some(name), domain, None)
        .ok()
        .and_then(|jid| jid.node().map(str::to_owned))
}

fn scram_hash(mechanism: Mechanism) -> Option<ScramHash> {
    match mechanism {
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
        Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
        Mechanism::Plain => None,
    }
}

/// What a SCRAM exchange with `mechanism` is bound to on this connection.
fn channel_binding(ctx: &AuthContext<'_>, mechanism: Mechanism) -> Result<ServerChannelBinding, SaslError> {
    match (mechanism.is_plus(), ctx.tls_exporter) {
        (true, Some(exporter)) => Ok(ServerChannelBinding::TlsExporter(exporter.to_vec())),
        // Negotiation offers -PLUS only with an exporter value; refuse rather than bind to nothing.
        (true, None) => Err(SaslError::InvalidMechanism),
        (false, Some(_)) => Ok(ServerChannelBinding::OfferedNotUsed),
        (false, None) => Ok(ServerChannelBinding::NotOffered),
    }
}

/// Start an exchange with the `<auth/>` element's text.
pub fn start(ctx: &AuthContext<'_>, mechanism: Mechanism, payload: &str) -> Outcome {
    let data = match sasl::decode_payload(payload) {
        Ok(data) => data,
        Err(e) => return SaslFailure::protocol(e),
    };
    match scram_hash(mechanism) {
        Some(hash) => {
            let nonce = match ScramServer::random_nonce() {
                Ok(nonce) => nonce,
                Err(e) => return SaslFailure::protocol(e),
            };
            let binding = match channel_binding(ctx, mechanism) {
                Ok(binding) => binding,
                Err(e) => return SaslFailure::protocol(e),
            };
            let server = ScramServer::new(hash, nonce)
                .with_domain(ctx.domain)
                .with_channel_binding(binding);
            if data.is_empty() {
                // RFC 6120 §6.4.2: no initial response; ask for it with an empty challenge.
                Outcome::Challenge(Vec::new(), Box::new(Exchange::ScramAwaitingFirst(server)))
            } else {
                scram_first(ctx, server, &data)
            }
        }
        None if data.is_empty() => Outcome::Challenge(Vec::new(), Box::new(Exchange::PlainAwaitingResponse)),
        None => plain(ctx, &data),
    }
}

/// Continue an exchange with a `<response/>` element's text.
pub fn step(ctx: &AuthContext<'_>, exchange: Box<Exchange>, payload: &str) -> Outcome {
    let data = match sasl::decode_payload(payload) {
        Ok(data) => data,
        Err(e) => return SaslFailure::protocol(e),
    };
    match *exchange {
        Exchange::ScramAwaitingFirst(server) => scram_first(ctx, server, &data),
        Exchange::ScramAwaitingFinal(mut server) => {
            let user = server.username().and_then(|u| normalize_user(u, ctx.domain));
            match server.client_final(&data) {
                Ok(additional) => match user {
                    Some(user) => Outcome::Success { user, additional },
                    None => SaslFailure::credentials(SaslError::NotAuthorized("invalid username"), None),
                },
                Err(error @ SaslError::NotAuthorized(_)) => SaslFailure::credentials(error, user),
                Err(error) => SaslFailure::protocol(error),
            }
        }
        Exchange::PlainAwaitingResponse => plain(ctx, &data),
    }
}

fn scram_first(ctx: &AuthContext<'_>, mut server: ScramServer, data: &[u8]) -> Outcome {
    let name = match server.client_first(data) {
        Ok(name) => name,
        // Includes a `y` flag where -PLUS is offered (the offer was stripped on the way, or
        // the client ignores XEP-0440): refused, but not counted as a guessed password, so
        // such clients sharing an address do not lock it out.
        Err(e) => return SaslFailure::protocol(e),
    };
    let hash = server.hash();
    let credentials = match normalize_user(&name, ctx.domain) {
        Some(user) => match (ctx.lookup)(&user) {
            Ok(found) => found,
            Err(reason) => {
                log::error!("credentials lookup failed: {reason}");
                return SaslFailure::protocol(SaslError::TemporaryAuthFailure);
            }
        },
        None => None,
    };
    let challenge = match credentials {
        Some(creds) => server.server_first(creds.for_hash(hash)),
        // Carry on with made-up parameters: the failure then comes at the proof, exactly as
        // for a wrong password, so the exchange does not reveal which accounts exist.
        None => server.server_first_unknown_user(ctx.unknown_user_secret),
    };
    match challenge {
        Ok(challenge) => Outcome::Challenge(challenge, Box::new(Exchange::ScramAwaitingFinal(server))),
        Err(e) => SaslFailure::protocol(e),
    }
}

fn plain(ctx: &AuthContext<'_>, data: &[u8]) -> Outcome {
    let (authzid, authcid, password) = match sasl::parse_plain(data) {
        Ok(parts) => parts,
        Err(e) => return SaslFailure::protocol(e),
    };
    if let Some(authzid) = &authzid
        && !sasl::authzid_is_self(authzid, &authcid, Some(ctx.domain))
    {
        return SaslFailure::protocol(SaslError::InvalidAuthzid);
    }
    let Some(user) = normalize_user(&authcid, ctx.domain) else {
        return SaslFailure::credentials(SaslError::NotAuthorized("invalid username"), None);
    };
    match (ctx.lookup)(&user) {
        Ok(found) if check_plain(found.as_ref(), &password, UserCredentials::verify_plain) => Outcome::Success {
            user,
            additional: Vec::new(),
        },
        Ok(_) => SaslFailure::credentials(SaslError::NotAuthorized("wrong password or unknown user"), Some(user)),
        Err(reason) => {
            log::error!("credentials lookup failed: {reason}");
            SaslFailure::protocol(SaslError::TemporaryAuthFailure)
        }
    }
}

/// Credentials PLAIN checks an unknown user's password against: the same key derivation
/// (salted SHA-256, default iteration count) as an account's, so the answer's timing does
/// not say whether the account exists. Made once per process.
fn unknown_user_credentials() -> Option<&'static UserCredentials> {
    static DUMMY: std::sync::OnceLock<Option<UserCredentials>> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| UserCredentials::new("no-such-account-dummy-password").ok())
        .as_ref()
}

/// Whether `password` is the account's; an unknown account (`found` is `None`) runs
/// `verify` on the dummy credentials and fails.
fn check_plain(
    found: Option<&UserCredentials>,
    password: &str,
    verify: impl Fn(&UserCredentials, &str) -> bool,
) -> bool {
    match found {
        Some(credentials) => verify(credentials, password),
        None => {
            if let Some(dummy) = unknown_user_credentials() {
                std::hint::black_box(verify(dummy, password));
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_proto::sasl::{ClientChannelBinding, ScramClient, encode_payload};

    fn with_ctx<R>(f: impl FnOnce(&AuthContext<'_>) -> R) -> R {
        let creds = UserCredentials::new("pencil").unwrap();
        let lookup = move |user: &str| -> Result<Option<UserCredentials>, String> {
            Ok((user == "user").then(|| creds.clone()))
        };
        let ctx = AuthContext {
            domain: "example.com",
            lookup: &lookup,
            unknown_user_secret: b"secret",
            tls_exporter: Some(&EXPORTER),
        };
        f(&ctx)
    }

    /// Stands in for the connection's exporter value.
    const EXPORTER: [u8; 32] = [0x42; 32];

    fn scram_login(ctx: &AuthContext<'_>, mechanism: Mechanism, user: &str, password: &str) -> Outcome {
        let binding = if mechanism.is_plus() {
            ClientChannelBinding::TlsExporter(EXPORTER.to_vec())
        } else {
            ClientChannelBinding::None
        };
        scram_login_bound(ctx, mechanism, binding, user, password)
    }

    fn scram_login_bound(
        ctx: &AuthContext<'_>,
        mechanism: Mechanism,
        binding: ClientChannelBinding,
        user: &str,
        password: &str,
    ) -> Outcome {
        let hash = scram_hash(mechanism).unwrap();
        let mut client = ScramClient::new(hash, user, password, sasl::random_nonce().unwrap())
            .unwrap()
            .with_channel_binding(binding);
        let first = encode_payload(&client.client_first());
        let Outcome::Challenge(challenge, exchange) = start(ctx, mechanism, &first) else {
            panic!("expected a challenge");
        };
        let Ok(final_message) = client.handle_server_first(&challenge) else {
            panic!("client refused the challenge");
        };
        step(ctx, exchange, &encode_payload(&final_message))
    }

    #[test]
    fn scram_success_and_wrong_password() {
        with_ctx(|ctx| {
            for mechanism in [
                Mechanism::ScramSha256Plus,
                Mechanism::ScramSha1Plus,
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
            ] {
                match scram_login(ctx, mechanism, "User", "pencil") {
                    Outcome::Success { user, additional } => {
                        assert_eq!(user, "user");
                        assert!(additional.starts_with(b"v="));
                    }
                    other => panic!("{other:?}"),
                }
                match scram_login(ctx, mechanism, "user", "wrong") {
                    Outcome::Failure(f) => {
                        assert!(f.bad_credentials);
                        assert_eq!(f.error.as_str(), "not-authorized");
                    }
                    other => panic!("{other:?}"),
                }
            }
        });
    }

    #[test]
    fn plus_bound_to_another_connection_is_not_authorized() {
        with_ctx(|ctx| {
            // What a relaying man in the middle presents: its own TLS session's value.
            let relayed = ClientChannelBinding::TlsExporter(vec![0x99; 32]);
            match scram_login_bound(ctx, Mechanism::ScramSha256Plus, relayed, "user", "pencil") {
                Outcome::Failure(f) => {
                    assert!(f.bad_credentials);
                    assert_eq!(f.error.as_str(), "not-authorized");
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn y_flag_where_plus_is_offered_is_refused_as_a_downgrade() {
        with_ctx(|ctx| {
            let first = encode_payload(b"y,,n=user,r=abcdef");
            match start(ctx, Mechanism::ScramSha256, &first) {
                Outcome::Failure(f) => {
                    assert!(!f.bad_credentials);
                    assert_eq!(f.error.as_str(), "not-authorized");
                }
                other => panic!("{other:?}"),
            }
            // The same client on a connection without -PLUS is right to say y.
            let lookup = |_: &str| -> Result<Option<UserCredentials>, String> { Ok(None) };
            let no_plus = AuthContext {
                tls_exporter: None,
                lookup: &lookup,
                ..*ctx
            };
            assert!(matches!(
                start(&no_plus, Mechanism::ScramSha256, &first),
                Outcome::Challenge(..)
            ));
        });
    }

    #[test]
    fn plus_without_an_exporter_is_an_invalid_mechanism() {
        with_ctx(|ctx| {
            let no_exporter = AuthContext {
                tls_exporter: None,
                ..*ctx
            };
            let first = encode_payload(b"p=tls-exporter,,n=user,r=abcdef");
            assert!(matches!(
                start(&no_exporter, Mechanism::ScramSha1Plus, &first),
                Outcome::Failure(SaslFailure {
                    error: SaslError::InvalidMechanism,
                    ..
                })
            ));
        });
    }

    #[test]
    fn scram_unknown_user_fails_at_the_proof_like_a_wrong_password() {
        with_ctx(
            |ctx| match scram_login(ctx, Mechanism::ScramSha256, "nobody", "pencil") {
                Outcome::Failure(f) => {
                    assert!(f.bad_credentials);
                    assert_eq!(f.error.as_str(), "not-authorized");
                }
                other => panic!("{other:?}"),
            },
        );
    }

    #[test]
    fn scram_without_initial_response_asks_for_it() {
        with_ctx(|ctx| {
            let Outcome::Challenge(challenge, exchange) = start(ctx, Mechanism::ScramSha256, "=") else {
                panic!("expected an empty challenge");
            };
            assert!(challenge.is_empty());
            assert!(matches!(*exchange, Exchange::ScramAwaitingFirst(_)));
        });
    }

    #[test]
    fn plain_checks_password_and_authzid() {
        with_ctx(|ctx| {
            let ok = encode_payload(b"\0user\0pencil");
            assert!(matches!(start(ctx, Mechanism::Plain, &ok), Outcome::Success { ref user, .. } if user == "user"));
            let wrong = encode_payload(b"\0user\0nope");
            assert!(matches!(start(ctx, Mechanism::Plain, &wrong), Outcome::Failure(f) if f.bad_credentials));
            let other = encode_payload(b"admin@example.com\0user\0pencil");
            assert!(matches!(
                start(ctx, Mechanism::Plain, &other),
                Outcome::Failure(SaslFailure {
                    error: SaslError::InvalidAuthzid,
                    ..
                })
            ));
            let garbage = "!!!";
            assert!(matches!(
                start(ctx, Mechanism::Plain, garbage),
                Outcome::Failure(SaslFailure {
                    error: SaslError::IncorrectEncoding(_),
                    ..
                })
            ));
        });
    }

    #[test]
    fn plain_runs_the_same_derivation_for_an_unknown_user() {
        let calls = std::cell::RefCell::new(Vec::new());
        let record = |credentials: &UserCredentials, password: &str| {
            calls
                .borrow_mut()
                .push((credentials.sha256.iterations, password.to_owned()));
            credentials.verify_plain(password)
        };
        let known = UserCredentials::new("pencil-pencil").unwrap();
        assert!(check_plain(Some(&known), "pencil-pencil", record));
        assert!(!check_plain(None, "pencil-pencil", record));
        let calls = calls.into_inner();
        assert_eq!(calls.len(), 2, "the unknown user's password was not derived");
        assert_eq!(calls[0], calls[1]);
        assert_eq!(calls[1].0, sb_proto::sasl::DEFAULT_ITERATIONS);
    }
}
