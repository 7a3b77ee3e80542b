//! Stream negotiation against the real daemon: STARTTLS, SASL, bind, and their failures.

mod common;

use common::{Client, DOMAIN, Daemon, PASSWORD, failure_condition, mechanisms};
use sb_proto::sasl::{ScramHash, encode_payload};
use sb_proto::{Element, StreamHeader, ns};

#[tokio::test]
async fn starttls_scram_sha256_and_bind() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let mut client = Client::connect(daemon.addr).await;
    let features = client.open_stream(DOMAIN).await;
    let starttls = features.get_child("starttls", ns::TLS).expect("starttls offered");
    assert!(starttls.has_child("required", ns::TLS));
    assert!(
        mechanisms(&features).is_empty(),
        "no SASL before TLS: {}",
        features.to_xml()
    );

    client.starttls(daemon.certificate()).await;
    let features = client.open_stream(DOMAIN).await;
    assert!(!features.has_child("starttls", ns::TLS));
    assert_eq!(
        mechanisms(&features),
        [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );

    client.authenticate("alice", PASSWORD).await.expect("login");
    let features = client.open_stream(DOMAIN).await;
    assert!(features.has_child("bind", ns::BIND));
    assert!(
        features
            .get_child("session", ns::SESSION)
            .is_some_and(|s| s.has_child("optional", ns::SESSION))
    );

    let jid = client.bind(Some("phone")).await;
    assert_eq!(jid, format!("alice@{DOMAIN}/phone"));

    // Legacy session establishment is answered for old clients.
    let session = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_child(Element::new("session", ns::SESSION));
    let reply = client.iq(session).await;
    assert_eq!(reply.attr("type"), Some("result"));
    client.ping_server().await;
    client.close().await;
}

#[tokio::test]
async fn server_generated_resource_sha1_and_plain() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    for mechanism in ["SCRAM-SHA-1", "PLAIN"] {
        let mut client = Client::connect(daemon.addr).await;
        client.open_stream(DOMAIN).await;
        client.starttls(daemon.certificate()).await;
        client.open_stream(DOMAIN).await;
        if mechanism == "PLAIN" {
            let payload = encode_payload(format!("\0alice\0{PASSWORD}").as_bytes());
            client
                .send(
                    &Element::new("auth", ns::SASL)
                        .with_attr("mechanism", "PLAIN")
                        .with_text(payload),
                )
                .await;
            client.expect("success", |e| e.is("success", ns::SASL)).await;
            client.restart_stream();
        } else {
            client
                .authenticate_with(ScramHash::Sha1, "alice", PASSWORD)
                .await
                .expect("SCRAM-SHA-1 login");
        }
        client.open_stream(DOMAIN).await;
        let jid = client.bind(None).await;
        let resource = jid.strip_prefix(&format!("alice@{DOMAIN}/")).expect("bare part");
        assert!(!resource.is_empty());
        client.ping_server().await;
    }
}

#[tokio::test]
async fn nothing_but_starttls_before_tls() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let mut client = Client::connect(daemon.addr).await;
    client.open_stream(DOMAIN).await;
    let payload = encode_payload(format!("\0alice\0{PASSWORD}").as_bytes());
    client
        .send(
            &Element::new("auth", ns::SASL)
                .with_attr("mechanism", "PLAIN")
                .with_text(payload),
        )
        .await;
    let failure = client.expect("failure", |e| e.is("failure", ns::SASL)).await;
    assert_eq!(failure_condition(&failure), "encryption-required");
    client.message(&format!("bob@{DOMAIN}"), "chat", "in the clear").await;
    client.expect_stream_error("not-authorized").await;
}

#[tokio::test]
async fn stream_header_errors() {
    let daemon = Daemon::start(&[], &[], |_| {});
    let mut client = Client::connect(daemon.addr).await;
    let mut header = StreamHeader::new(ns::CLIENT);
    header.to = Some("elsewhere.example".to_owned());
    client.send_raw(&header.to_bytes()).await;
    client.expect_header().await;
    client.expect_stream_error("host-unknown").await;

    let mut client = Client::connect(daemon.addr).await;
    let mut header = StreamHeader::new(ns::SERVER);
    header.to = Some(DOMAIN.to_owned());
    client.send_raw(&header.to_bytes()).await;
    client.expect_header().await;
    client.expect_stream_error("invalid-namespace").await;
}

#[tokio::test]
async fn wrong_passwords_are_retried_then_refused() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let mut client = Client::connect(daemon.addr).await;
    client.open_stream(DOMAIN).await;
    client.starttls(daemon.certificate()).await;
    client.open_stream(DOMAIN).await;
    assert_eq!(
        client.authenticate("alice", "wrong").await,
        Err("not-authorized".to_owned())
    );
    // An unknown user fails exactly like a wrong password.
    assert_eq!(
        client.authenticate("nobody", PASSWORD).await,
        Err("not-authorized".to_owned())
    );
    assert_eq!(
        client.authenticate("alice", "wrong again").await,
        Err("not-authorized".to_owned())
    );
    client.expect_stream_error("policy-violation").await;

    // A retry within the limit still logs in.
    let mut client = Client::connect(daemon.addr).await;
    client.open_stream(DOMAIN).await;
    client.starttls(daemon.certificate()).await;
    client.open_stream(DOMAIN).await;
    assert!(client.authenticate("alice", "typo").await.is_err());
    client.authenticate("alice", PASSWORD).await.expect("second try");
}

#[tokio::test]
async fn newer_session_wins_a_resource_conflict() {
    let daemon = Daemon::start(&["alice", "bob"], &[], |_| {});
    let mut old = daemon.online("alice", "desk").await;
    let mut new = daemon.online("alice", "desk").await;
    old.expect_stream_error("conflict").await;
    let mut bob = daemon.online("bob", "home").await;
    bob.message(&format!("alice@{DOMAIN}/desk"), "chat", "to the new one")
        .await;
    new.expect_body("to the new one").await;
}

/// Both versions are served, and the server picks its SHA-256 suites even though rustls
/// (like most clients) lists AES-256-GCM-SHA384 first: they are cheaper per handshake.
#[tokio::test]
async fn tls_1_2_and_1_3_are_both_served_with_sha256_suites() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    for (offered, expected, expected_suite) in [
        (
            &rustls::version::TLS12,
            rustls::ProtocolVersion::TLSv1_2,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS13,
            rustls::ProtocolVersion::TLSv1_3,
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
    ] {
        let mut client = Client::connect(daemon.addr).await;
        client.open_stream(DOMAIN).await;
        let (version, suite) = client.starttls_with(daemon.certificate(), &[offered]).await;
        assert_eq!(version, expected);
        assert_eq!(suite, expected_suite);
        client.open_stream(DOMAIN).await;
        client.authenticate("alice", PASSWORD).await.expect("login");
    }
}
