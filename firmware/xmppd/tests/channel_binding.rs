//! SCRAM-*-PLUS with `tls-exporter` channel binding against the real daemon (issue 13: an
//! accepted man in the middle cannot relay a login). The client side is sb-proto's SCRAM
//! client, bound to the exporter value of its own TLS 1.3 session (rustls); Python's ssl
//! module cannot export it, and Debian's slixmpp knows only tls-unique.

mod common;

use common::{Client, DOMAIN, Daemon, PASSWORD, mechanisms};
use sb_proto::sasl::{
    ClientChannelBinding, EXPORTER_LEN, NS_SASL_CHANNEL_BINDING, ScramClient, ScramHash, random_nonce,
};
use sb_proto::{Element, ns};

/// A client on a fresh connection, past STARTTLS with `versions`, features in hand.
async fn connected(daemon: &Daemon, versions: &[&'static rustls::SupportedProtocolVersion]) -> (Client, Element) {
    let mut client = Client::connect(daemon.addr).await;
    client.open_stream(DOMAIN).await;
    client.starttls_with(daemon.certificate(), versions).await;
    let features = client.open_stream(DOMAIN).await;
    (client, features)
}

fn scram(hash: ScramHash, binding: ClientChannelBinding) -> ScramClient {
    ScramClient::new(hash, "alice", PASSWORD, random_nonce().expect("nonce"))
        .expect("scram client")
        .with_channel_binding(binding)
}

#[tokio::test]
async fn plus_bound_to_this_connection_logs_in() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    for hash in [ScramHash::Sha256, ScramHash::Sha1] {
        let (mut client, features) = connected(&daemon, &[&rustls::version::TLS13]).await;
        assert!(
            mechanisms(&features).contains(&hash.plus_mechanism().to_owned()),
            "{}",
            features.to_xml()
        );
        let announced = features
            .get_child("sasl-channel-binding", NS_SASL_CHANNEL_BINDING)
            .expect("XEP-0440 announcement");
        assert!(
            announced
                .elements()
                .any(|e| e.is("channel-binding", NS_SASL_CHANNEL_BINDING) && e.attr("type") == Some("tls-exporter")),
            "{}",
            features.to_xml()
        );
        let exporter = client.tls_exporter.clone().expect("TLS 1.3 exporter");
        assert_eq!(exporter.len(), EXPORTER_LEN);
        client
            .authenticate_scram(
                hash.plus_mechanism(),
                scram(hash, ClientChannelBinding::TlsExporter(exporter)),
            )
            .await
            .expect("-PLUS login with this connection's binding");
        let features = client.open_stream(DOMAIN).await;
        assert!(features.has_child("bind", ns::BIND), "{}", features.to_xml());
        client.bind(Some("bound")).await;
        client.ping_server().await;
        client.close().await;
    }
}

/// A man in the middle that terminates TLS towards the client and opens its own TLS session
/// to the server relays the client's SCRAM messages: the client bound them to the MITM's
/// session, whose exporter value the server does not have.
#[tokio::test]
async fn relayed_plus_login_is_refused() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    // The value the client saw: its own session with the man in the middle (here: another
    // real session with the server, which is just as foreign to the relaying connection).
    let (victim_side, _) = connected(&daemon, &[&rustls::version::TLS13]).await;
    let victim_exporter = victim_side.tls_exporter.clone().expect("TLS 1.3 exporter");
    let (mut relay, _) = connected(&daemon, &[&rustls::version::TLS13]).await;
    assert_ne!(relay.tls_exporter.as_ref(), Some(&victim_exporter));
    assert_eq!(
        relay
            .authenticate_scram(
                "SCRAM-SHA-256-PLUS",
                scram(ScramHash::Sha256, ClientChannelBinding::TlsExporter(victim_exporter)),
            )
            .await,
        Err("not-authorized".to_owned())
    );
    // Made-up binding data fails the same way.
    assert_eq!(
        relay
            .authenticate_scram(
                "SCRAM-SHA-256-PLUS",
                scram(
                    ScramHash::Sha256,
                    ClientChannelBinding::TlsExporter(vec![0; EXPORTER_LEN])
                ),
            )
            .await,
        Err("not-authorized".to_owned())
    );
    // The refusals did not take the connection down: the right binding still logs in.
    let exporter = relay.tls_exporter.clone().expect("TLS 1.3 exporter");
    relay
        .authenticate_scram(
            "SCRAM-SHA-256-PLUS",
            scram(ScramHash::Sha256, ClientChannelBinding::TlsExporter(exporter)),
        )
        .await
        .expect("login with the relay's own binding");
    victim_side.abort();
}

/// A client that can bind says `y` when it sees no -PLUS offer; the server did offer it, so
/// someone stripped it from the features on the way.
#[tokio::test]
async fn y_flag_where_plus_is_offered_is_refused() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let (mut client, features) = connected(&daemon, &[&rustls::version::TLS13]).await;
    assert!(mechanisms(&features).contains(&"SCRAM-SHA-256-PLUS".to_owned()));
    for hash in [ScramHash::Sha256, ScramHash::Sha1] {
        assert_eq!(
            client
                .authenticate_scram(hash.mechanism(), scram(hash, ClientChannelBinding::SupportedNotOffered),)
                .await,
            Err("not-authorized".to_owned())
        );
    }
    // A client that does not bind at all (`n`) is still welcome.
    client
        .authenticate_scram("SCRAM-SHA-256", scram(ScramHash::Sha256, ClientChannelBinding::None))
        .await
        .expect("plain SCRAM with n");
}

/// TLS 1.2 has no exporter value we bind to: no -PLUS, no announcement, and `y` is right.
#[tokio::test]
async fn tls_1_2_offers_no_plus_and_accepts_y() {
    let daemon = Daemon::start(&["alice"], &[], |_| {});
    let (mut client, features) = connected(&daemon, &[&rustls::version::TLS12]).await;
    assert_eq!(mechanisms(&features), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    assert!(!features.has_child("sasl-channel-binding", NS_SASL_CHANNEL_BINDING));
    assert_eq!(client.tls_exporter, None);
    assert_eq!(
        client
            .authenticate_scram(
                "SCRAM-SHA-256-PLUS",
                scram(
                    ScramHash::Sha256,
                    ClientChannelBinding::TlsExporter(vec![0; EXPORTER_LEN])
                ),
            )
            .await,
        Err("invalid-mechanism".to_owned())
    );
    client
        .authenticate_scram(
            "SCRAM-SHA-256",
            scram(ScramHash::Sha256, ClientChannelBinding::SupportedNotOffered),
        )
        .await
        .expect("y where no -PLUS is offered");
}
