//! SASL as a hostile client drives it: PLAIN, SCRAM-SHA-1/-256 and their -PLUS variants with
//! `tls-exporter` channel binding, with arbitrary client messages.
//!
//! Input: one mode byte, then up to three client messages separated by 0xFF (a byte no UTF-8
//! SCRAM message contains). Mode bits 0-1 pick the mechanism (PLAIN, SCRAM, SCRAM-PLUS, plain
//! SCRAM where -PLUS is offered), bit 2 the hash, bit 3 whether the account exists, bit 4
//! whether the messages go through the base64 of the XML payload, bit 5 whether the whole
//! c2s exchange (`sb_server::sasl`, random nonces, name normalization) runs instead of the
//! sb-proto state machine with the RFC examples' nonces (so the seeds complete a login and
//! mutations explore around a success).
//!
//! Properties: no panic; a login succeeds only for the account that exists and only with
//! its password: for SCRAM the harness recomputes the proof and the server signature from
//! the password with ring, independently of sb-proto; a -PLUS login's `c=` carries this
//! connection's exporter value; where -PLUS is offered no plain SCRAM login says `y`; an
//! exchange never succeeds twice.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use ring::{digest, hmac, pbkdf2};
use sb_proto::sasl::{
    self, SaslError, ScramCredentials, ScramHash, ScramServer, ServerChannelBinding, UserCredentials, authzid_is_self,
    parse_plain, prepare_password,
};
use sb_server::c2s::negotiation::Mechanism;
use sb_server::sasl::{AuthContext, Outcome};
use std::num::NonZeroU32;
use std::sync::OnceLock;

const DOMAIN: &str = "example.com";
const USER: &str = "user";
const PASSWORD: &str = "pencil";
const UNKNOWN_USER_SECRET: &[u8] = b"fuzz unknown-user secret";
/// The connection's exporter value, as in sb-proto's -PLUS vectors (bytes 0 to 31).
const EXPORTER: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    31,
];

/// The RFC 5802 and RFC 7677 examples' server nonce, salt and iteration count per hash.
fn example(hash: ScramHash) -> (&'static str, &'static str) {
    match hash {
        ScramHash::Sha1 => ("3rfcNHYJY1ZVvWVs7j", "QSXCR+Q6sek8bf92"),
        ScramHash::Sha256 => ("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "W22ZaJ0SNY7soEsUEjb6gQ=="),
    }
}

const ITERATIONS: u32 = 4096;

/// SaltedPassword for the example's salt, computed once per hash with ring directly.
fn salted_password(hash: ScramHash) -> &'static [u8] {
    static SHA1: OnceLock<Vec<u8>> = OnceLock::new();
    static SHA256: OnceLock<Vec<u8>> = OnceLock::new();
    let (cell, algorithm, len) = match hash {
        ScramHash::Sha1 => (&SHA1, pbkdf2::PBKDF2_HMAC_SHA1, 20),
        ScramHash::Sha256 => (&SHA256, pbkdf2::PBKDF2_HMAC_SHA256, 32),
    };
    cell.get_or_init(|| {
        let salt = BASE64.decode(example(hash).1).expect("example salt");
        let mut out = vec![0u8; len];
        let rounds = NonZeroU32::new(ITERATIONS).expect("non-zero");
        pbkdf2::derive(algorithm, rounds, &salt, PASSWORD.as_bytes(), &mut out);
        out
    })
}

fn credentials(hash: ScramHash) -> &'static ScramCredentials {
    static SHA1: OnceLock<ScramCredentials> = OnceLock::new();
    static SHA256: OnceLock<ScramCredentials> = OnceLock::new();
    let cell = match hash {
        ScramHash::Sha1 => &SHA1,
        ScramHash::Sha256 => &SHA256,
    };
    cell.get_or_init(|| {
        let salt = BASE64.decode(example(hash).1).expect("example salt");
        ScramCredentials::derive(hash, PASSWORD, &salt, ITERATIONS).expect("credentials")
    })
}

/// The account's record for the c2s path. PLAIN recomputes PBKDF2 from the record's
/// iteration count, so a low one keeps the fuzzer fast; SCRAM never runs PBKDF2 server-side.
fn user_credentials() -> &'static UserCredentials {
    static CREDS: OnceLock<UserCredentials> = OnceLock::new();
    CREDS.get_or_init(|| {
        let derive = |hash| ScramCredentials::derive(hash, PASSWORD, b"fuzz salt 16 byt", 2).expect("credentials");
        UserCredentials {
            sha1: derive(ScramHash::Sha1),
            sha256: derive(ScramHash::Sha256),
        }
    })
}

fn hmac_sign(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    let algorithm = match hash {
        ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        ScramHash::Sha256 => hmac::HMAC_SHA256,
    };
    hmac::sign(&hmac::Key::new(algorithm, key), data).as_ref().to_vec()
}

fn digest_of(hash: ScramHash, data: &[u8]) -> Vec<u8> {
    let algorithm = match hash {
        ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        ScramHash::Sha256 => &digest::SHA256,
    };
    digest::digest(algorithm, data).as_ref().to_vec()
}

/// What the server was told about channel binding, from mode bits 0-1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Scram,
    ScramPlus,
    ScramWherePlusOffered,
}

/// A successful SCRAM login must be one an honest client with the password produced:
/// recompute ClientProof and ServerSignature from SaltedPassword and the messages.
fn check_scram_success(kind: Kind, hash: ScramHash, first: &[u8], server_first: &[u8], last: &[u8], v: &[u8]) {
    let first = std::str::from_utf8(first).expect("an accepted client-first is UTF-8");
    let last = std::str::from_utf8(last).expect("an accepted client-final is UTF-8");
    let server_first = std::str::from_utf8(server_first).expect("server-first is UTF-8");
    let (flag, rest) = first.split_once(',').expect("gs2 flag");
    let (_authzid, bare) = rest.split_once(',').expect("gs2 header");
    let gs2_header = &first[..first.len() - bare.len()];
    match kind {
        Kind::ScramPlus => assert_eq!(flag, "p=tls-exporter"),
        Kind::ScramWherePlusOffered => assert_eq!(flag, "n", "a plain SCRAM login where -PLUS is offered"),
        Kind::Scram => assert!(flag == "n" || flag == "y", "{flag}"),
        Kind::Plain => unreachable!(),
    }
    let (without_proof, proof) = last.rsplit_once(",p=").expect("proof");
    let cbind = without_proof
        .strip_prefix("c=")
        .and_then(|rest| rest.split(',').next())
        .expect("c= first");
    let mut expected_cbind = gs2_header.as_bytes().to_vec();
    if kind == Kind::ScramPlus {
        expected_cbind.extend_from_slice(&EXPORTER);
    }
    assert_eq!(BASE64.decode(cbind).expect("c= base64"), expected_cbind);

    let auth_message = format!("{bare},{server_first},{without_proof}");
    let salted = salted_password(hash);
    let client_key = hmac_sign(hash, salted, b"Client Key");
    let stored_key = digest_of(hash, &client_key);
    let signature = hmac_sign(hash, &stored_key, auth_message.as_bytes());
    let expected_proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
    assert_eq!(
        BASE64.decode(proof).expect("p= base64"),
        expected_proof,
        "accepted a proof that is not the password's"
    );
    let server_key = hmac_sign(hash, salted, b"Server Key");
    let server_signature = hmac_sign(hash, &server_key, auth_message.as_bytes());
    assert_eq!(v, format!("v={}", BASE64.encode(server_signature)).as_bytes());
}

/// sb-proto's state machines with fixed nonces.
fn run_proto(kind: Kind, hash: ScramHash, user_exists: bool, messages: &[Vec<u8>]) {
    if kind == Kind::Plain {
        let Some(first) = messages.first() else {
            return;
        };
        let Ok((authzid, authcid, password)) = parse_plain(first) else {
            return;
        };
        if authzid.is_some_and(|a| !authzid_is_self(&a, &authcid, Some(DOMAIN))) {
            return;
        }
        if user_exists && authcid == USER && user_credentials().verify_plain(&password) {
            assert_eq!(prepare_password(&password).as_deref(), Ok(PASSWORD));
        }
        return;
    }

    let binding = match kind {
        Kind::ScramPlus => ServerChannelBinding::TlsExporter(EXPORTER.to_vec()),
        Kind::ScramWherePlusOffered => ServerChannelBinding::OfferedNotUsed,
        Kind::Scram | Kind::Plain => ServerChannelBinding::NotOffered,
    };
    let mut server = ScramServer::new(hash, example(hash).0.to_owned())
        .with_domain(DOMAIN)
        .with_channel_binding(binding);
    let [first, last, extra @ ..] = messages else {
        if let Some(first) = messages.first() {
            let _ = server.client_first(first);
        }
        return;
    };
    let Ok(name) = server.client_first(first) else {
        return;
    };
    let known = user_exists && name == USER;
    let server_first = if known {
        server.server_first(credentials(hash))
    } else {
        server.server_first_unknown_user(UNKNOWN_USER_SECRET)
    };
    let server_first = server_first.expect("a server-first-message after an accepted client-first");
    match server.client_final(last) {
        Ok(v) => {
            assert!(known, "an account that does not exist logged in");
            check_scram_success(kind, hash, first, &server_first, last, &v);
        }
        Err(error) => {
            let _ = error.to_failure_element();
        }
    }
    for again in extra.iter().chain([last]) {
        assert!(server.client_final(again).is_err(), "a finished exchange went on");
    }
}

/// The c2s exchange: random nonces, so only PLAIN can succeed, and only with the password.
fn run_c2s(kind: Kind, hash: ScramHash, user_exists: bool, payloads: &[String]) {
    let mechanism = match (kind, hash) {
        (Kind::Plain, _) => Mechanism::Plain,
        (Kind::ScramPlus, ScramHash::Sha1) => Mechanism::ScramSha1Plus,
        (Kind::ScramPlus, ScramHash::Sha256) => Mechanism::ScramSha256Plus,
        (_, ScramHash::Sha1) => Mechanism::ScramSha1,
        (_, ScramHash::Sha256) => Mechanism::ScramSha256,
    };
    let lookup = move |user: &str| -> Result<Option<UserCredentials>, String> {
        Ok((user_exists && user == USER).then(|| user_credentials().clone()))
    };
    let ctx = AuthContext {
        domain: DOMAIN,
        lookup: &lookup,
        unknown_user_secret: UNKNOWN_USER_SECRET,
        tls_exporter: (kind != Kind::Scram).then_some(EXPORTER.as_slice()),
    };
    let mut payloads = payloads.iter();
    let Some(first) = payloads.next() else {
        return;
    };
    let mut outcome = sb_server::sasl::start(&ctx, mechanism, first);
    loop {
        match outcome {
            Outcome::Challenge(_, exchange) => {
                let Some(next) = payloads.next() else {
                    return;
                };
                outcome = sb_server::sasl::step(&ctx, exchange, next);
            }
            Outcome::Success { user, .. } => {
                assert_eq!(mechanism, Mechanism::Plain, "SCRAM succeeded against a random nonce");
                assert!(user_exists);
                assert_eq!(user, USER);
                return;
            }
            Outcome::Failure(failure) => {
                if failure.error == SaslError::InvalidMechanism {
                    assert!(mechanism.is_plus() && ctx.tls_exporter.is_none());
                }
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let kind = match mode & 3 {
        0 => Kind::Plain,
        1 => Kind::Scram,
        2 => Kind::ScramPlus,
        _ => Kind::ScramWherePlusOffered,
    };
    let hash = if mode & 4 == 0 {
        ScramHash::Sha256
    } else {
        ScramHash::Sha1
    };
    let user_exists = mode & 8 == 0;
    let as_payload_text = mode & 16 != 0;
    let messages: Vec<&[u8]> = rest.split(|&b| b == 0xFF).take(4).collect();

    if mode & 32 != 0 {
        // The XML text of <auth/> and <response/>: base64 of the message, or the bytes as
        // text for the decoder to refuse.
        let payloads: Vec<String> = messages
            .iter()
            .map(|m| {
                if as_payload_text {
                    String::from_utf8_lossy(m).into_owned()
                } else {
                    sasl::encode_payload(m)
                }
            })
            .collect();
        run_c2s(kind, hash, user_exists, &payloads);
        return;
    }
    let messages: Vec<Vec<u8>> = if as_payload_text {
        let decoded: Result<Vec<_>, _> = messages
            .iter()
            .map(|m| sasl::decode_payload(&String::from_utf8_lossy(m)))
            .collect();
        match decoded {
            Ok(decoded) => decoded,
            Err(_) => return,
        }
    } else {
        messages.iter().map(|m| m.to_vec()).collect()
    };
    run_proto(kind, hash, user_exists, &messages);
});
