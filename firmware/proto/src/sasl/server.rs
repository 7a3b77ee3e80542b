//! Server side of SCRAM (RFC 5802 §5): one exchange per [`ScramServer`].
//!
//! ```text
//! data = client_first(..)?        -> look the returned username up
//! server_first(&creds)?           -> <challenge/>   (or server_first_unknown_user(secret)?)
//! client_final(..)?               -> <success/> carrying the returned "v=..."
//! ```
//! Any error ends the exchange; the caller sends `error.to_failure_element()`.

use super::scram::{
    ScramCredentials, ScramHash, attribute, check_extensions, decode_saslname, expect_attribute, is_valid_nonce,
    xor_in_place,
};
use super::{SaslError, ServerChannelBinding};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

struct ClientFirst {
    /// `n,,` / `y,,` / `n,a=...,` exactly as received: `c=` must carry these bytes back.
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

enum State {
    AwaitingClientFirst,
    AwaitingServerFirst(ClientFirst),
    AwaitingClientFinal {
        client_first: ClientFirst,
        server_first: String,
        creds: ScramCredentials,
        user_known: bool,
    },
    Finished,
}

pub struct ScramServer {
    hash: ScramHash,
    server_nonce: String,
    channel_binding: ServerChannelBinding,
    domain: Option<String>,
    username: Option<String>,
    authzid: Option<String>,
    state: State,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramServer")
            .field("hash", &self.hash)
            .field("channel_binding", &self.channel_binding)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// `server_nonce` is this side's nonce part: printable ASCII without ','. Production code
    /// passes [`ScramServer::random_nonce`]; tests pass the RFC's.
    pub fn new(hash: ScramHash, server_nonce: String) -> ScramServer {
        ScramServer {
            hash,
            server_nonce,
            channel_binding: ServerChannelBinding::NotOffered,
            domain: None,
            username: None,
            authzid: None,
            state: State::AwaitingClientFirst,
        }
    }

    /// Also accept an authzid equal to the user's own bare JID `username@domain`.
    pub fn with_domain(mut self, domain: impl Into<String>) -> ScramServer {
        self.domain = Some(domain.into());
        self
    }

    /// What this exchange is as to channel binding: a SCRAM-*-PLUS exchange carries the
    /// connection's `tls-exporter` value; a plain one on a connection that offers -PLUS
    /// must refuse the `y` flag. Without this call the server offers no -PLUS.
    pub fn with_channel_binding(mut self, binding: ServerChannelBinding) -> ScramServer {
        self.channel_binding = binding;
        self
    }

    pub fn random_nonce() -> Result<String, SaslError> {
        super::random_nonce()
    }

    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The authentication identity, once `client_first` accepted it.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The authorization identity the client sent, if any (already checked to be itself).
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// Parse the client-first-message; returns the (saslname-decoded) username for the
    /// caller to normalize and look up.
    pub fn client_first(&mut self, data: &[u8]) -> Result<String, SaslError> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            self.state = State::Finished;
            return Err(SaslError::MalformedRequest("client-first-message out of order"));
        }
        self.state = State::Finished;
        let text = std::str::from_utf8(data).map_err(|_| SaslError::MalformedRequest("SCRAM message is not UTF-8"))?;

        let (cbind_flag, rest) = text
            .split_once(',')
            .ok_or(SaslError::MalformedRequest("client-first-message has no gs2 header"))?;
        self.channel_binding.check_flag(cbind_flag)?;
        let (authzid_part, bare) = rest.split_once(',').ok_or(SaslError::MalformedRequest(
            "client-first-message has an incomplete gs2 header",
        ))?;
        let authzid = match authzid_part {
            "" => None,
            part => match part.strip_prefix("a=") {
                Some(value) if !value.is_empty() => Some(decode_saslname(value)?),
                _ => return Err(SaslError::MalformedRequest("bad authzid in gs2 header")),
            },
        };
        let gs2_header = &text[..text.len() - bare.len()];

        let mut parts = bare.split(',');
        let username = decode_saslname(expect_attribute(parts.next(), b'n', "client-first-message lacks n=")?)?;
        if username.is_empty() {
            return Err(SaslError::MalformedRequest("empty username"));
        }
        let client_nonce = expect_attribute(parts.next(), b'r', "client-first-message lacks r=")?;
        if !is_valid_nonce(client_nonce) {
            return Err(SaslError::MalformedRequest(
                "client nonce is empty or not printable ASCII",
            ));
        }
        check_extensions(parts)?;

        if let Some(authzid) = &authzid
            && !super::authzid_is_self(authzid, &username, self.domain.as_deref())
        {
            return Err(SaslError::InvalidAuthzid);
        }

        self.username = Some(username.clone());
        self.authzid = authzid;
        self.state = State::AwaitingServerFirst(ClientFirst {
            gs2_header: gs2_header.to_owned(),
            bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
        });
        Ok(username)
    }

    /// The server-first-message for a known user.
    pub fn server_first(&mut self, creds: &ScramCredentials) -> Result<Vec<u8>, SaslError> {
        self.start_challenge(creds.clone(), true)
    }

    /// The server-first-message for a user that does not exist: indistinguishable on the
    /// wire from a real one (see [`ScramCredentials::fake_for_unknown_user`]); the exchange
    /// then fails at `client_final` with not-authorized, as a wrong password would.
    pub fn server_first_unknown_user(&mut self, server_secret: &[u8]) -> Result<Vec<u8>, SaslError> {
        let username = self.username.clone().unwrap_or_default();
        let creds = ScramCredentials::fake_for_unknown_user(self.hash, server_secret, &username);
        self.start_challenge(creds, false)
    }

    fn start_challenge(&mut self, creds: ScramCredentials, user_known: bool) -> Result<Vec<u8>, SaslError> {
        let State::AwaitingServerFirst(client_first) = std::mem::replace(&mut self.state, State::Finished) else {
            return Err(SaslError::MalformedRequest("server-first-message out of order"));
        };
        if !creds.is_usable_with(self.hash) {
            // A stored record that does not fit this mechanism: our fault, not the client's.
            return Err(SaslError::TemporaryAuthFailure);
        }
        let server_first = format!(
            "r={}{},s={},i={}",
            client_first.client_nonce,
            self.server_nonce,
            BASE64.encode(&creds.salt),
            creds.iterations
        );
        let out = server_first.clone().into_bytes();
        self.state = State::AwaitingClientFinal {
            client_first,
            server_first,
            creds,
            user_known,
        };
        Ok(out)
    }

    /// Check the client-final-message; on success returns the server-final-message
    /// (`v=...`) to send in `<success/>`.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        let State::AwaitingClientFinal {
            client_first,
            server_first,
            creds,
            user_known,
        } = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(SaslError::MalformedRequest("client-final-message out of order"));
        };
        let text = std::str::from_utf8(data).map_err(|_| SaslError::MalformedRequest("SCRAM message is not UTF-8"))?;

        // The proof is always last, and AuthMessage covers everything before it.
        let (without_proof, proof_part) = text
            .rsplit_once(',')
            .ok_or(SaslError::MalformedRequest("client-final-message lacks p="))?;
        let (name, proof_b64) = attribute(proof_part)?;
        if name != b'p' {
            return Err(SaslError::MalformedRequest("client-final-message lacks p= at the end"));
        }

        let mut parts = without_proof.split(',');
        let cbind_b64 = expect_attribute(parts.next(), b'c', "client-final-message lacks c=")?;
        let nonce = expect_attribute(parts.next(), b'r', "client-final-message lacks r=")?;
        check_extensions(parts)?;

        let cbind = BASE64
            .decode(cbind_b64)
            .map_err(|_| SaslError::IncorrectEncoding("c= is not valid base64"))?;
        let proof = BASE64
            .decode(proof_b64)
            .map_err(|_| SaslError::IncorrectEncoding("p= is not valid base64"))?;
        // c= is the gs2 header, then (for -PLUS) this connection's channel binding data.
        let header = client_first.gs2_header.as_bytes();
        if cbind.len() < header.len() || cbind[..header.len()] != *header {
            return Err(SaslError::NotAuthorized("c= does not match the gs2 header"));
        }
        if !super::constant_time_eq(&cbind[header.len()..], self.channel_binding.data()) {
            return Err(SaslError::NotAuthorized(
                "channel binding data does not match this connection",
            ));
        }
        let expected_nonce_len = client_first.client_nonce.len() + self.server_nonce.len();
        if nonce.len() != expected_nonce_len
            || !nonce.starts_with(&client_first.client_nonce)
            || !nonce.ends_with(&self.server_nonce)
        {
            return Err(SaslError::NotAuthorized("nonce does not match this exchange"));
        }
        if proof.len() != self.hash.output_len() {
            return Err(SaslError::MalformedRequest("proof has the wrong length"));
        }

        let auth_message = format!("{},{},{}", client_first.bare, server_first, without_proof);
        let client_signature = self.hash.hmac(&creds.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        xor_in_place(&mut client_key, &client_signature);
        // Unknown users get the same work done so timing does not tell them apart.
        let proof_ok = super::constant_time_eq(&self.hash.hash(&client_key), &creds.stored_key);
        if !user_known {
            return Err(SaslError::NotAuthorized("unknown user"));
        }
        if !proof_ok {
            return Err(SaslError::NotAuthorized("wrong password"));
        }
        let server_signature = self.hash.hmac(&creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}
