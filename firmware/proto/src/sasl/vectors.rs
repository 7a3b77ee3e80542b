//! Whole SCRAM exchanges: the RFC 5802 §5 and RFC 7677 §3 examples byte for byte, both sides,
//! the same exchanges as SCRAM-*-PLUS with `tls-exporter` channel binding, and the ways a
//! hostile or broken peer can get them wrong.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

struct Vector {
    hash: ScramHash,
    client_nonce: &'static str,
    server_nonce: &'static str,
    salt_b64: &'static str,
    client_first: &'static str,
    server_first: &'static str,
    client_final: &'static str,
    server_final: &'static str,
    /// The connection's `tls-exporter` value for a -PLUS exchange.
    exporter: Option<&'static [u8]>,
}

const RFC5802: Vector = Vector {
    hash: ScramHash::Sha1,
    client_nonce: "fyko+d2lbbFgONRv9qkxdawL",
    server_nonce: "3rfcNHYJY1ZVvWVs7j",
    salt_b64: "QSXCR+Q6sek8bf92",
    client_first: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    client_final: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    server_final: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    exporter: None,
};

const RFC7677: Vector = Vector {
    hash: ScramHash::Sha256,
    client_nonce: "rOprNGfwEbeRWgbNEkqO",
    server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    salt_b64: "W22ZaJ0SNY7soEsUEjb6gQ==",
    client_first: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    exporter: None,
};

/// A stand-in exporter value: bytes 0 to 31.
const EXPORTER: &[u8; 32] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    31,
];

// The -PLUS vectors below were computed independently of this code (Python's hashlib and
// hmac, following RFC 5802 §3 and RFC 9266 §2), with the RFC examples' password, salts and
// nonces and EXPORTER as the channel binding data:
// c = base64("p=tls-exporter,," || EXPORTER).

const RFC5802_PLUS: Vector = Vector {
    hash: ScramHash::Sha1,
    client_nonce: "fyko+d2lbbFgONRv9qkxdawL",
    server_nonce: "3rfcNHYJY1ZVvWVs7j",
    salt_b64: "QSXCR+Q6sek8bf92",
    client_first: "p=tls-exporter,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    client_final: "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,\
                   r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=i0z2xFi+ITaJvbLXpcWyruGx26U=",
    server_final: "v=YgmPUhdXTCPY9I7+PKzEdnp1cdo=",
    exporter: Some(EXPORTER),
};

const RFC7677_PLUS: Vector = Vector {
    hash: ScramHash::Sha256,
    client_nonce: "rOprNGfwEbeRWgbNEkqO",
    server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    salt_b64: "W22ZaJ0SNY7soEsUEjb6gQ==",
    client_first: "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    client_final: "c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,\
                   r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=",
    server_final: "v=2GiAgapEppLVlUXbxUDksL3VgYHzuqiK5tR4mhJGgvs=",
    exporter: Some(EXPORTER),
};

fn server_binding(v: &Vector) -> ServerChannelBinding {
    match v.exporter {
        Some(data) => ServerChannelBinding::TlsExporter(data.to_vec()),
        None => ServerChannelBinding::NotOffered,
    }
}

fn client_binding(v: &Vector) -> ClientChannelBinding {
    match v.exporter {
        Some(data) => ClientChannelBinding::TlsExporter(data.to_vec()),
        None => ClientChannelBinding::None,
    }
}

fn credentials(v: &Vector) -> ScramCredentials {
    let salt = BASE64.decode(v.salt_b64).unwrap();
    ScramCredentials::derive(v.hash, "pencil", &salt, 4096).unwrap()
}

/// A server that has answered the vector's client-first-message.
fn server_awaiting_final(v: &Vector) -> ScramServer {
    let mut server = ScramServer::new(v.hash, v.server_nonce.to_owned()).with_channel_binding(server_binding(v));
    server.client_first(v.client_first.as_bytes()).unwrap();
    server.server_first(&credentials(v)).unwrap();
    server
}

fn check_server_side(v: &Vector) {
    let mut server = ScramServer::new(v.hash, v.server_nonce.to_owned()).with_channel_binding(server_binding(v));
    assert_eq!(server.client_first(v.client_first.as_bytes()).unwrap(), "user");
    assert_eq!(server.username(), Some("user"));
    assert_eq!(server.authzid(), None);
    assert_eq!(
        String::from_utf8(server.server_first(&credentials(v)).unwrap()).unwrap(),
        v.server_first
    );
    assert_eq!(
        String::from_utf8(server.client_final(v.client_final.as_bytes()).unwrap()).unwrap(),
        v.server_final
    );
}

fn check_client_side(v: &Vector) {
    let mut client = ScramClient::new(v.hash, "user", "pencil", v.client_nonce.to_owned())
        .unwrap()
        .with_channel_binding(client_binding(v));
    assert_eq!(String::from_utf8(client.client_first()).unwrap(), v.client_first);
    let answer = client.handle_server_first(v.server_first.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(answer).unwrap(), v.client_final);
    client.verify_server_final(v.server_final.as_bytes()).unwrap();

    // A second login reusing the cached SaltedPassword produces the same bytes.
    let cached = client.salted_password().unwrap().clone();
    assert_eq!(cached.iterations, 4096);
    assert_eq!(cached.value.len(), v.hash.output_len());
    let mut again = ScramClient::new(v.hash, "user", "pencil", v.client_nonce.to_owned())
        .unwrap()
        .with_channel_binding(client_binding(v));
    again.use_salted_password(cached);
    again.client_first();
    assert_eq!(
        again.handle_server_first(v.server_first.as_bytes()).unwrap(),
        v.client_final.as_bytes()
    );
}

#[test]
fn rfc5802_sha1_server_side() {
    check_server_side(&RFC5802);
}

#[test]
fn rfc5802_sha1_client_side() {
    check_client_side(&RFC5802);
}

#[test]
fn rfc7677_sha256_server_side() {
    check_server_side(&RFC7677);
}

#[test]
fn rfc7677_sha256_client_side() {
    check_client_side(&RFC7677);
}

#[test]
fn client_and_server_agree_with_random_nonces_and_stored_credentials() {
    let creds = UserCredentials::new("s3cr3t p\u{00E4}ss").unwrap();
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let mut client = ScramClient::new(hash, "al,i=ce", "s3cr3t p\u{00E4}ss", random_nonce().unwrap()).unwrap();
        let mut server = ScramServer::new(hash, ScramServer::random_nonce().unwrap());
        assert_eq!(server.client_first(&client.client_first()).unwrap(), "al,i=ce");
        let challenge = server.server_first(creds.for_hash(hash)).unwrap();
        let response = client.handle_server_first(&challenge).unwrap();
        let success = server.client_final(&response).unwrap();
        client.verify_server_final(&success).unwrap();
    }
}

#[test]
fn wrong_password_is_not_authorized() {
    let mut client = ScramClient::new(ScramHash::Sha256, "user", "pencil2", "abc".to_owned()).unwrap();
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    server.client_first(&client.client_first()).unwrap();
    let challenge = server.server_first(&credentials(&RFC7677)).unwrap();
    let response = client.handle_server_first(&challenge).unwrap();
    assert_eq!(
        server.client_final(&response),
        Err(SaslError::NotAuthorized("wrong password"))
    );
}

#[test]
fn bad_proof_is_not_authorized() {
    let mut server = server_awaiting_final(&RFC7677);
    let tampered = RFC7677.client_final.replace("p=dHzb", "p=dHzc");
    assert!(matches!(
        server.client_final(tampered.as_bytes()),
        Err(SaslError::NotAuthorized(_))
    ));
}

#[test]
fn unknown_user_fails_only_at_the_end_and_looks_like_a_real_one() {
    let secret = b"per-install secret";
    let mut client = ScramClient::new(ScramHash::Sha256, "ghost", "pencil", "abc".to_owned()).unwrap();
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    assert_eq!(server.client_first(&client.client_first()).unwrap(), "ghost");
    let challenge = server.server_first_unknown_user(secret).unwrap();
    let text = String::from_utf8(challenge.clone()).unwrap();
    assert!(text.starts_with("r=abcxyz,s="), "{text}");
    assert!(text.ends_with(",i=4096"), "{text}");
    // The same name gets the same salt every time.
    let mut server2 = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    server2.client_first(b"n,,n=ghost,r=abc").unwrap();
    assert_eq!(server2.server_first_unknown_user(secret).unwrap(), challenge);

    let response = client.handle_server_first(&challenge).unwrap();
    let err = server.client_final(&response).unwrap_err();
    assert_eq!(err, SaslError::NotAuthorized("unknown user"));
    assert_eq!(
        err.to_failure_element(),
        SaslError::NotAuthorized("wrong password").to_failure_element()
    );
}

#[test]
fn tampered_nonce_is_rejected() {
    for bad in [
        // server part changed
        RFC5802.client_final.replace("3rfcNHYJY1ZVvWVs7j", "3rfcNHYJY1ZVvWVs7k"),
        // client part changed
        RFC5802.client_final.replace("r=fyko", "r=gyko"),
        // extended
        RFC5802.client_final.replace("Vs7j,", "Vs7jX,"),
        // truncated
        RFC5802.client_final.replace("Vs7j,", "Vs7,"),
    ] {
        let mut server = server_awaiting_final(&RFC5802);
        assert_eq!(
            server.client_final(bad.as_bytes()),
            Err(SaslError::NotAuthorized("nonce does not match this exchange")),
            "{bad}"
        );
    }
}

#[test]
fn client_rejects_server_nonce_that_does_not_extend_its_own() {
    for bad in [
        "r=XXXX+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
    ] {
        let mut client = ScramClient::new(ScramHash::Sha1, "user", "pencil", RFC5802.client_nonce.to_owned()).unwrap();
        client.client_first();
        assert!(
            matches!(
                client.handle_server_first(bad.as_bytes()),
                Err(SaslError::NotAuthorized(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn client_rejects_forged_server_final() {
    let mut client = ScramClient::new(ScramHash::Sha1, "user", "pencil", RFC5802.client_nonce.to_owned()).unwrap();
    client.client_first();
    client.handle_server_first(RFC5802.server_first.as_bytes()).unwrap();
    assert!(matches!(
        client.verify_server_final(b"v=rmF9pqV8S7suAoZWja4eJRkFsKQ="),
        Err(SaslError::NotAuthorized(_))
    ));
    let mut client = ScramClient::new(ScramHash::Sha1, "user", "pencil", RFC5802.client_nonce.to_owned()).unwrap();
    client.client_first();
    client.handle_server_first(RFC5802.server_first.as_bytes()).unwrap();
    assert!(matches!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(SaslError::NotAuthorized(_))
    ));
}

#[test]
fn client_rejects_bad_server_first() {
    for (bad, expect_condition) in [
        ("r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92", "malformed-request"),
        (
            "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=0",
            "malformed-request",
        ),
        (
            "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=99999999",
            "malformed-request",
        ),
        ("r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSX*,i=4096", "incorrect-encoding"),
        (
            "m=ext,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
            "malformed-request",
        ),
    ] {
        let mut client = ScramClient::new(ScramHash::Sha1, "user", "pencil", RFC5802.client_nonce.to_owned()).unwrap();
        client.client_first();
        let err = client.handle_server_first(bad.as_bytes()).unwrap_err();
        assert_eq!(err.as_str(), expect_condition, "{bad}: {err}");
    }
}

#[test]
fn bad_base64_is_incorrect_encoding() {
    let mut server = server_awaiting_final(&RFC7677);
    let bad_proof = RFC7677.client_final.replace("p=dHzb", "p=*Hzb");
    assert!(matches!(
        server.client_final(bad_proof.as_bytes()),
        Err(SaslError::IncorrectEncoding(_))
    ));
    let mut server = server_awaiting_final(&RFC7677);
    let bad_cbind = RFC7677.client_final.replace("c=biws", "c=bi!s");
    assert!(matches!(
        server.client_final(bad_cbind.as_bytes()),
        Err(SaslError::IncorrectEncoding(_))
    ));
}

#[test]
fn missing_or_misplaced_attributes_are_malformed() {
    let first_cases = [
        "",
        "n",
        "n,,",
        "n,,r=abc",
        "n,,n=user",
        "n,,n=,r=abc",
        "n,,n=user,r=",
        "n,,n=user,r=a b",
        "n,,r=abc,n=user",
        "x,,n=user,r=abc",
        "n,b=x,n=user,r=abc",
        "n,,m=ext,n=user,r=abc",
        "n,,n=us=er,r=abc",
        "n,,n=user,r=abc,m=ext",
        "n,,n=user,r=abc,bogus",
    ];
    for bad in first_cases {
        let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
        let err = server.client_first(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, SaslError::MalformedRequest(_)), "{bad:?}: {err}");
    }
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    assert!(matches!(
        server.client_first(b"n,,n=\xff,r=abc"),
        Err(SaslError::MalformedRequest(_))
    ));

    let final_cases = [
        "",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1",
        // proof of a SHA-1 length in a SHA-256 exchange
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    ];
    for bad in final_cases {
        let mut server = server_awaiting_final(&RFC7677);
        let err = server.client_final(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, SaslError::MalformedRequest(_)), "{bad:?}: {err}");
    }
}

#[test]
fn channel_binding_requested_is_refused() {
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    let err = server.client_first(b"p=tls-exporter,,n=user,r=abc").unwrap_err();
    assert!(matches!(err, SaslError::MalformedRequest(_)), "{err}");
}

#[test]
fn rfc5802_sha1_plus_server_side() {
    check_server_side(&RFC5802_PLUS);
}

#[test]
fn rfc5802_sha1_plus_client_side() {
    check_client_side(&RFC5802_PLUS);
}

#[test]
fn rfc7677_sha256_plus_server_side() {
    check_server_side(&RFC7677_PLUS);
}

#[test]
fn rfc7677_sha256_plus_client_side() {
    check_client_side(&RFC7677_PLUS);
}

#[test]
fn plus_round_trip_with_stored_credentials() {
    let creds = UserCredentials::new("correct horse battery").unwrap();
    let exporter = vec![0x5a; EXPORTER_LEN];
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let mut client = ScramClient::new(hash, "user", "correct horse battery", random_nonce().unwrap())
            .unwrap()
            .with_channel_binding(ClientChannelBinding::TlsExporter(exporter.clone()));
        let mut server = ScramServer::new(hash, ScramServer::random_nonce().unwrap())
            .with_channel_binding(ServerChannelBinding::TlsExporter(exporter.clone()));
        server.client_first(&client.client_first()).unwrap();
        let challenge = server.server_first(creds.for_hash(hash)).unwrap();
        let response = client.handle_server_first(&challenge).unwrap();
        let success = server.client_final(&response).unwrap();
        client.verify_server_final(&success).unwrap();
    }
}

/// A man in the middle that terminates TLS on both sides sees two different exporter
/// values; whatever it does with c=, the login cannot be relayed.
#[test]
fn relayed_plus_login_is_not_authorized() {
    let server_side_exporter = vec![0xEE; EXPORTER_LEN];
    // Relayed untouched: the client bound its own connection to the MITM.
    let mut server = ScramServer::new(ScramHash::Sha256, RFC7677_PLUS.server_nonce.to_owned())
        .with_channel_binding(ServerChannelBinding::TlsExporter(server_side_exporter.clone()));
    server.client_first(RFC7677_PLUS.client_first.as_bytes()).unwrap();
    server.server_first(&credentials(&RFC7677_PLUS)).unwrap();
    assert_eq!(
        server.client_final(RFC7677_PLUS.client_final.as_bytes()),
        Err(SaslError::NotAuthorized(
            "channel binding data does not match this connection"
        ))
    );

    // c= rewritten to the server side's value: the proof covers c=, so it no longer verifies.
    let mut rewritten_cbind = b"p=tls-exporter,,".to_vec();
    rewritten_cbind.extend_from_slice(&server_side_exporter);
    let original_cbind = BASE64.encode([b"p=tls-exporter,,".as_slice(), EXPORTER].concat());
    let rewritten = RFC7677_PLUS
        .client_final
        .replace(&original_cbind, &BASE64.encode(&rewritten_cbind));
    assert_ne!(rewritten, RFC7677_PLUS.client_final);
    let mut server = ScramServer::new(ScramHash::Sha256, RFC7677_PLUS.server_nonce.to_owned())
        .with_channel_binding(ServerChannelBinding::TlsExporter(server_side_exporter));
    server.client_first(RFC7677_PLUS.client_first.as_bytes()).unwrap();
    server.server_first(&credentials(&RFC7677_PLUS)).unwrap();
    assert_eq!(
        server.client_final(rewritten.as_bytes()),
        Err(SaslError::NotAuthorized("wrong password"))
    );
}

#[test]
fn plus_without_the_binding_data_in_c_is_not_authorized() {
    // c= carries only the gs2 header: as if the client had nothing to bind to.
    let header_only = BASE64.encode(b"p=tls-exporter,,");
    let original_cbind = BASE64.encode([b"p=tls-exporter,,".as_slice(), EXPORTER].concat());
    let stripped = RFC7677_PLUS.client_final.replace(&original_cbind, &header_only);
    let mut server = server_awaiting_final(&RFC7677_PLUS);
    assert!(matches!(
        server.client_final(stripped.as_bytes()),
        Err(SaslError::NotAuthorized(_))
    ));
}

#[test]
fn y_flag_is_refused_when_plus_is_offered() {
    // The client can bind, but saw no -PLUS in the features: someone stripped them.
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned())
        .with_channel_binding(ServerChannelBinding::OfferedNotUsed);
    assert!(matches!(
        server.client_first(b"y,,n=user,r=abc"),
        Err(SaslError::NotAuthorized(_))
    ));
    // The same, with the real client and an authzid in the header.
    let mut client = ScramClient::new(ScramHash::Sha256, "user", "pencil", "abc".to_owned())
        .unwrap()
        .with_channel_binding(ClientChannelBinding::SupportedNotOffered);
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned())
        .with_channel_binding(ServerChannelBinding::OfferedNotUsed);
    assert!(matches!(
        server.client_first(&client.client_first()),
        Err(SaslError::NotAuthorized(_))
    ));
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned())
        .with_channel_binding(ServerChannelBinding::OfferedNotUsed);
    assert!(matches!(
        server.client_first(b"y,a=user,n=user,r=abc"),
        Err(SaslError::NotAuthorized(_))
    ));
}

#[test]
fn plain_scram_still_works_where_plus_is_offered() {
    let mut server = ScramServer::new(ScramHash::Sha256, RFC7677.server_nonce.to_owned())
        .with_channel_binding(ServerChannelBinding::OfferedNotUsed);
    server.client_first(RFC7677.client_first.as_bytes()).unwrap();
    server.server_first(&credentials(&RFC7677)).unwrap();
    assert_eq!(
        server.client_final(RFC7677.client_final.as_bytes()).unwrap(),
        RFC7677.server_final.as_bytes()
    );
}

#[test]
fn plus_mechanism_requires_tls_exporter_binding() {
    for first in [
        "n,,n=user,r=abc",
        "y,,n=user,r=abc",
        "p=tls-unique,,n=user,r=abc",
        "p=tls-server-end-point,,n=user,r=abc",
    ] {
        let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned())
            .with_channel_binding(ServerChannelBinding::TlsExporter(EXPORTER.to_vec()));
        assert!(
            matches!(
                server.client_first(first.as_bytes()),
                Err(SaslError::MalformedRequest(_))
            ),
            "{first}"
        );
    }
}

#[test]
fn every_truncation_of_a_plus_final_message_fails() {
    let full = RFC7677_PLUS.client_final.as_bytes();
    for cut in 0..full.len() {
        let mut server = server_awaiting_final(&RFC7677_PLUS);
        assert!(
            server.client_final(&full[..cut]).is_err(),
            "accepted a prefix of {cut} bytes"
        );
    }
}

#[test]
fn y_flag_is_accepted_and_must_be_echoed_in_c() {
    // The client supports channel binding but thinks we do not: fine, we offer no -PLUS.
    let mut server = ScramServer::new(ScramHash::Sha1, RFC5802.server_nonce.to_owned());
    server.client_first(b"y,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
    server.server_first(&credentials(&RFC5802)).unwrap();
    // c=biws is "n,,": a downgrade of the gs2 header must not verify.
    assert_eq!(
        server.client_final(RFC5802.client_final.as_bytes()),
        Err(SaslError::NotAuthorized("c= does not match the gs2 header"))
    );
}

#[test]
fn authzid_must_be_the_user_itself() {
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    assert_eq!(
        server.client_first(b"n,a=admin,n=user,r=abc"),
        Err(SaslError::InvalidAuthzid)
    );

    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    assert_eq!(server.client_first(b"n,a=user,n=user,r=abc").unwrap(), "user");
    assert_eq!(server.authzid(), Some("user"));

    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned()).with_domain("example.com");
    assert_eq!(
        server.client_first(b"n,a=user@example.com,n=user,r=abc").unwrap(),
        "user"
    );
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned()).with_domain("example.com");
    assert_eq!(
        server.client_first(b"n,a=admin@example.com,n=user,r=abc"),
        Err(SaslError::InvalidAuthzid)
    );
}

#[test]
fn calls_out_of_order_fail_cleanly() {
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    assert!(server.server_first(&credentials(&RFC7677)).is_err());
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    assert!(server.client_final(RFC7677.client_final.as_bytes()).is_err());

    // A finished exchange cannot be replayed.
    let mut server = server_awaiting_final(&RFC7677);
    server.client_final(RFC7677.client_final.as_bytes()).unwrap();
    assert!(server.client_final(RFC7677.client_final.as_bytes()).is_err());
    assert!(server.client_first(RFC7677.client_first.as_bytes()).is_err());

    let mut client = ScramClient::new(ScramHash::Sha1, "user", "pencil", "abc".to_owned()).unwrap();
    assert!(client.handle_server_first(RFC5802.server_first.as_bytes()).is_err());
}

#[test]
fn credentials_for_the_wrong_hash_are_a_temporary_failure() {
    let mut server = ScramServer::new(ScramHash::Sha256, "xyz".to_owned());
    server.client_first(b"n,,n=user,r=abc").unwrap();
    assert_eq!(
        server.server_first(&credentials(&RFC5802)),
        Err(SaslError::TemporaryAuthFailure)
    );
}

#[test]
fn every_truncation_of_the_final_message_fails() {
    let full = RFC7677.client_final.as_bytes();
    for cut in 0..full.len() {
        let mut server = server_awaiting_final(&RFC7677);
        assert!(
            server.client_final(&full[..cut]).is_err(),
            "accepted a prefix of {cut} bytes"
        );
    }
}

#[test]
fn mutated_messages_never_panic_and_never_authenticate() {
    let first = RFC7677.client_first.as_bytes();
    let last = RFC7677.client_final.as_bytes();
    for cut in 0..first.len() {
        let mut server = ScramServer::new(ScramHash::Sha256, RFC7677.server_nonce.to_owned());
        let _ = server.client_first(&first[..cut]);
    }
    for index in 0..last.len() {
        for replacement in [b'\0', b',', b'=', b'A', 0xff] {
            if last[index] == replacement {
                continue;
            }
            let mut mutated = last.to_vec();
            mutated[index] = replacement;
            let mut server = server_awaiting_final(&RFC7677);
            assert!(
                server.client_final(&mutated).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
    }
}
