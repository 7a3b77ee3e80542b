//! The cluster port against misbehaving clients: an oversize frame, an unreadable request
//! and a client that does not speak TLS each lose their connection, and the node carries on.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sb_cluster::TlsIdentity;
use support::Harness;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const READ_LIMIT: Duration = Duration::from_secs(10);

fn connector(identity: TlsIdentity) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in identity.trust {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain, identity.key)
        .unwrap();
    TlsConnector::from(Arc::new(config))
}

/// Read until the peer closes; fails if it keeps the connection open.
async fn assert_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match tokio::time::timeout(READ_LIMIT, stream.read(&mut buf)).await {
            Err(_) => panic!("the node kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
    panic!("the node kept sending");
}

async fn open_link(connector: &TlsConnector, addr: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("xmpp.example.com").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    // The greeting frame.
    let len = tokio::time::timeout(READ_LIMIT, tls.read_u32()).await.unwrap().unwrap();
    assert!(len > 0 && len < 1024, "greeting of {len} bytes");
    let mut greeting = vec![0u8; len as usize];
    tokio::time::timeout(READ_LIMIT, tls.read_exact(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_link_and_the_node_carries_on() {
    let mut h = Harness::new(39, 1);
    h.start(0).await;
    h.cluster(0).initialize().await.unwrap();
    h.wait_leader().await;
    let addr = h.addr(0);
    let connector = connector(h.ca.identity(&h.ca.pem));

    // A length far past the frame limit: refused before anything is allocated.
    let mut link = open_link(&connector, &addr).await;
    link.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    link.flush().await.unwrap();
    assert_closed(&mut link).await;

    // A frame of the right shape that is not a request.
    let mut link = open_link(&connector, &addr).await;
    let junk = b"{\"not\": \"a request\"}";
    link.write_all(&(junk.len() as u32).to_be_bytes()).await.unwrap();
    link.write_all(junk).await.unwrap();
    link.flush().await.unwrap();
    assert_closed(&mut link).await;

    // Not TLS at all.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert_closed(&mut plain).await;

    h.propose_ok(0, b"still serving").await;
    assert_eq!(h.node(0).state.entries(), vec![b"still serving".to_vec()]);
    h.shutdown_all().await;
}
