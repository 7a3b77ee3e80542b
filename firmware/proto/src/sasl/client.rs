//! Client side of SCRAM, for the load generator and the tests.

use super::scram::{
    CredentialsError, ScramHash, check_extensions, encode_saslname, expect_attribute, is_valid_nonce, prepare_password,
    xor_in_place,
};
use super::{ClientChannelBinding, SaslError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::num::NonZeroU32;

/// A malicious or misconfigured server could announce a huge iteration count and pin the
/// client's CPU; refuse beyond this.
const MAX_ITERATIONS: u32 = 1_000_000;

/// SaltedPassword with the parameters it was computed for. PBKDF2 is the expensive part of a
/// login; a client logging in repeatedly (the load generator) hands it back through
/// [`ScramClient::use_salted_password`] and skips it while the server's salt is unchanged.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltedPassword {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for SaltedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltedPassword")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

enum State {
    Initial,
    AwaitingServerFirst,
    AwaitingServerFinal { server_signature: Vec<u8> },
    Finished,
}

pub struct ScramClient {
    hash: ScramHash,
    prepared_password: String,
    client_first_bare: String,
    client_nonce: String,
    channel_binding: ClientChannelBinding,
    salted: Option<SaltedPassword>,
    state: State,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .field("channel_binding", &self.channel_binding)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// `nonce`: printable ASCII without ',' ([`super::random_nonce`] in real use).
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: &str,
        nonce: String,
    ) -> Result<ScramClient, CredentialsError> {
        let prepared_password = prepare_password(password)?;
        Ok(ScramClient {
            hash,
            prepared_password,
            client_first_bare: format!("n={},r={}", encode_saslname(username), nonce),
            client_nonce: nonce,
            channel_binding: ClientChannelBinding::None,
            salted: None,
            state: State::Initial,
        })
    }

    /// Bind the exchange to the TLS connection (`p=tls-exporter`, for a SCRAM-*-PLUS
    /// mechanism) or say that this client could have (`y`); the default is `n`.
    pub fn with_channel_binding(mut self, binding: ClientChannelBinding) -> ScramClient {
        self.channel_binding = binding;
        self
    }

    /// Offer a SaltedPassword computed by an earlier login; used only if the server sends
    /// the same salt and iteration count.
    pub fn use_salted_password(&mut self, salted: SaltedPassword) {
        self.salted = Some(salted);
    }

    /// The SaltedPassword of this exchange, available after `handle_server_first`.
    pub fn salted_password(&self) -> Option<&SaltedPassword> {
        self.salted.as_ref()
    }

    /// The initial response for `<auth mechanism='SCRAM-...'>`.
    pub fn client_first(&mut self) -> Vec<u8> {
        self.state = State::AwaitingServerFirst;
        format!("{}{}", self.channel_binding.gs2_header(), self.client_first_bare).into_bytes()
    }

    /// Answer the server's challenge with the client-final-message (carrying the proof).
    pub fn handle_server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        if !matches!(
            std::mem::replace(&mut self.state, State::Finished),
            State::AwaitingServerFirst
        ) {
            return Err(SaslError::MalformedRequest("server-first-message out of order"));
        }
        let text = std::str::from_utf8(data).map_err(|_| SaslError::MalformedRequest("SCRAM message is not UTF-8"))?;
        let mut parts = text.split(',');
        let nonce = expect_attribute(parts.next(), b'r', "server-first-message lacks r=")?;
        let salt_b64 = expect_attribute(parts.next(), b's', "server-first-message lacks s=")?;
        let iterations = expect_attribute(parts.next(), b'i', "server-first-message lacks i=")?;
        check_extensions(parts)?;

        if !is_valid_nonce(nonce) || !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(SaslError::NotAuthorized(
                "server nonce does not extend the client nonce",
            ));
        }
        let salt = BASE64
            .decode(salt_b64)
            .map_err(|_| SaslError::IncorrectEncoding("s= is not valid base64"))?;
        if salt.is_empty() {
            return Err(SaslError::MalformedRequest("empty salt"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| SaslError::MalformedRequest("i= is not a number"))?;
        let rounds = NonZeroU32::new(iterations)
            .filter(|n| n.get() <= MAX_ITERATIONS)
            .ok_or(SaslError::MalformedRequest("i= is zero or unreasonably large"))?;

        let salted = match self.salted.take() {
            Some(cached) if cached.salt == salt && cached.iterations == iterations => cached,
            _ => SaltedPassword {
                value: self.hash.salted_password(&self.prepared_password, &salt, rounds),
                salt,
                iterations,
            },
        };

        let mut cbind_input = self.channel_binding.gs2_header().into_bytes();
        cbind_input.extend_from_slice(self.channel_binding.data());
        let without_proof = format!("c={},r={nonce}", BASE64.encode(cbind_input));
        let auth_message = format!("{},{},{}", self.client_first_bare, text, without_proof);
        let client_key = self.hash.client_key(&salted.value);
        let stored_key = self.hash.hash(&client_key);
        let client_signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        xor_in_place(&mut proof, &client_signature);
        let server_key = self.hash.server_key(&salted.value);
        let server_signature = self.hash.hmac(&server_key, auth_message.as_bytes());

        self.salted = Some(salted);
        self.state = State::AwaitingServerFinal { server_signature };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Check the server-final-message (from `<success/>`): the server proves it knows the
    /// ServerKey, so a fake server cannot claim success.
    pub fn verify_server_final(&mut self, data: &[u8]) -> Result<(), SaslError> {
        let State::AwaitingServerFinal { server_signature } = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(SaslError::MalformedRequest("server-final-message out of order"));
        };
        let text = std::str::from_utf8(data).map_err(|_| SaslError::MalformedRequest("SCRAM message is not UTF-8"))?;
        let first = text.split(',').next().unwrap_or_default();
        if first.starts_with("e=") {
            return Err(SaslError::NotAuthorized("server-final-message reports an error"));
        }
        let verifier = expect_attribute(Some(first), b'v', "server-final-message lacks v=")?;
        let received = BASE64
            .decode(verifier)
            .map_err(|_| SaslError::IncorrectEncoding("v= is not valid base64"))?;
        if !super::constant_time_eq(&received, &server_signature) {
            return Err(SaslError::NotAuthorized("server signature does not verify"));
        }
        Ok(())
    }
}
