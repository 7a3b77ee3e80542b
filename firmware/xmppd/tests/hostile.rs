//! Hostile input gets the right stream or stanza error, and nobody else notices: after
//! every attack a witness session still receives a message.

mod common;

use common::{Client, DOMAIN, Daemon, error_condition};
use sb_proto::Element;

struct Witness {
    sender: Client,
    receiver: Client,
    receiver_jid: String,
    count: usize,
}

impl Witness {
    async fn still_works(&mut self, after: &str) {
        self.count += 1;
        let body = format!("still here after {after} ({})", self.count);
        self.sender.message(&self.receiver_jid, "chat", &body).await;
        self.receiver.expect_body(&body).await;
    }
}

#[tokio::test]
async fn hostile_input_is_refused_and_other_sessions_keep_working() {
    let daemon = Daemon::start(&["alice", "bob", "mallory"], &[], |c| c.max_stanza_bytes = 16 * 1024);
    let mut witness = Witness {
        sender: daemon.online("alice", "phone").await,
        receiver: daemon.online("bob", "desk").await,
        receiver_jid: format!("{}/desk", daemon.jid("bob")),
        count: 0,
    };

    // Bytes of a TLS ClientHello where XML is expected (a client using direct TLS).
    let mut c = Client::connect(daemon.addr).await;
    c.send_raw(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage").await;
    c.expect_header().await;
    c.expect_stream_error("not-well-formed").await;
    witness.still_works("garbage before TLS").await;

    // A DTD, which could declare entities (billion laughs).
    let mut c = Client::connect(daemon.addr).await;
    c.send_raw(b"<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY lol 'lol'>]>")
        .await;
    c.expect_header().await;
    c.expect_stream_error("restricted-xml").await;
    witness.still_works("DOCTYPE").await;

    // Malformed XML from an authenticated session.
    let mut c = daemon.login("mallory", "bad-xml").await;
    c.send_raw(b"<message to='bob@switchboard.test'><body>hi</mesage>")
        .await;
    c.expect_stream_error("not-well-formed").await;
    witness.still_works("malformed XML").await;

    // An undeclared entity.
    let mut c = daemon.login("mallory", "entity").await;
    c.send_raw(b"<message to='bob@switchboard.test'><body>&xxe;</body></message>")
        .await;
    c.expect_stream_error("restricted-xml").await;
    witness.still_works("an undeclared entity").await;

    // A stanza over the configured size limit.
    let mut c = daemon.login("mallory", "big").await;
    let big = "x".repeat(20 * 1024);
    c.message(&witness.receiver_jid.clone(), "chat", &big).await;
    c.expect_stream_error("policy-violation").await;
    witness.still_works("an oversized stanza").await;

    // Nesting beyond the depth limit.
    let mut c = daemon.login("mallory", "deep").await;
    let mut deep = Vec::new();
    deep.extend_from_slice(b"<message to='bob@switchboard.test'>");
    for _ in 0..200 {
        deep.extend_from_slice(b"<a>");
    }
    c.send_raw(&deep).await;
    c.expect_stream_error("policy-violation").await;
    witness.still_works("deep nesting").await;

    // Unknown top-level element.
    let mut c = daemon.login("mallory", "unknown").await;
    c.send(&Element::new("enable", "urn:xmpp:sm:3")).await;
    c.expect_stream_error("unsupported-stanza-type").await;
    witness.still_works("an unknown element").await;

    // A forged sender.
    let mut c = daemon.login("mallory", "forger").await;
    let forged = common::message(&witness.receiver_jid.clone(), "chat", "I am alice")
        .with_attr("from", format!("{}/phone", daemon.jid("alice")));
    c.send(&forged).await;
    c.expect_stream_error("invalid-from").await;
    witness.still_works("a forged from").await;

    // A malformed 'to' is a stanza error; the stream survives.
    let mut c = daemon.login("mallory", "typo").await;
    c.send(&common::message("@nobody", "chat", "?").with_attr("id", "bad-to"))
        .await;
    let error = c.expect("jid-malformed", |e| e.attr("id") == Some("bad-to")).await;
    assert_eq!(error_condition(&error).as_deref(), Some("jid-malformed"));
    c.ping_server().await;
    witness.still_works("a malformed to").await;

    // Wrong passwords: failures, retries, then the stream is closed.
    let mut c = Client::connect(daemon.addr).await;
    c.open_stream(DOMAIN).await;
    c.starttls(daemon.certificate()).await;
    c.open_stream(DOMAIN).await;
    for _ in 0..3 {
        assert_eq!(
            c.authenticate("mallory", "guess").await,
            Err("not-authorized".to_owned())
        );
    }
    c.expect_stream_error("policy-violation").await;
    witness.still_works("wrong passwords").await;

    // A stream opened without a header, straight to a stanza.
    let mut c = Client::connect(daemon.addr).await;
    c.send_raw(b"<message to='bob@switchboard.test'/>").await;
    c.expect_header().await;
    c.expect_stream_error("invalid-namespace").await;
    witness.still_works("a stanza without a stream").await;
}

#[tokio::test]
async fn failed_logins_per_address_are_limited() {
    let daemon = Daemon::start(&["alice"], &["--max-auth-failures-per-ip", "2"], |_| {});
    let mut c = Client::connect(daemon.addr).await;
    c.open_stream(DOMAIN).await;
    c.starttls(daemon.certificate()).await;
    c.open_stream(DOMAIN).await;
    assert_eq!(
        c.authenticate("alice", "guess1").await,
        Err("not-authorized".to_owned())
    );
    assert_eq!(
        c.authenticate("alice", "guess2").await,
        Err("not-authorized".to_owned())
    );
    // From now on even the right password is turned away from this address for a while.
    let mut c = Client::connect(daemon.addr).await;
    c.open_stream(DOMAIN).await;
    c.starttls(daemon.certificate()).await;
    c.open_stream(DOMAIN).await;
    assert_eq!(
        c.authenticate("alice", common::PASSWORD).await,
        Err("temporary-auth-failure".to_owned())
    );
}
