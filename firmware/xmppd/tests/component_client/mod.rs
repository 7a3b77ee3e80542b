//! A Call Bridge stand-in for the daemon's integration tests: an XEP-0114 component over TLS
//! on the socket (or plain TCP), built on sb-proto's framer, plus helpers to configure the
//! daemon for components through its admin socket.
//!
//! Waits are bounded (a stuck test fails with a clear message) but never measure speed.

#![allow(dead_code)]

use crate::common::{DOMAIN, Daemon, PATIENCE};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sb_proto::component::handshake_digest;
use sb_proto::{Element, FramerConfig, StreamEvent, StreamFramer, StreamHeader, ns};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The SPEC.md example secret.
pub const SECRET: &str = "kvgP1SRzWVabhiPVAb1";

/// A daemon with a component listener on a free port of its loopback address.
pub struct Bridges {
    pub daemon: Daemon,
    pub component_addr: SocketAddr,
    pub plain: bool,
}

impl Bridges {
    /// `plain`: the component listener speaks plain TCP (allowed on loopback only).
    pub fn start(
        users: &[&str],
        extra_args: &[&str],
        plain: bool,
        configure: impl FnOnce(&mut sb_store::XmppConfig),
    ) -> Bridges {
        let mut component_port = 0;
        let daemon = Daemon::start(users, extra_args, |c| {
            let ip = c.listen[0].parse::<SocketAddr>().expect("listen address").ip();
            let probe = std::net::TcpListener::bind((ip, 0)).expect("free port");
            component_port = probe.local_addr().expect("addr").port();
            c.component_port = component_port;
            c.component_plain = plain;
            configure(c);
        });
        let component_addr = SocketAddr::new(daemon.addr.ip(), component_port);
        Bridges {
            daemon,
            component_addr,
            plain,
        }
    }

    pub fn address(name: &str) -> String {
        format!("{name}.{DOMAIN}")
    }

    /// Run an admin command through the daemon's socket (retrying while the socket is not
    /// bound yet, right after the start).
    pub fn admin(&self, command: sb_admin::Command) -> sb_admin::Reply {
        let socket = sb_admin::socket::socket_path(self.daemon.dir.path());
        let mut last_error = String::new();
        for _ in 0..200 {
            match sb_admin::socket::request(&socket, &command) {
                Ok(reply) => return reply,
                Err(e) => last_error = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the admin socket never answered: {last_error}\n{}", self.daemon.log());
    }

    pub fn admin_line(&self, line: &str) -> sb_admin::Reply {
        self.admin(sb_admin::parse(line).expect("command parses"))
    }

    /// `xmpp callbridge add-secret <name>` with `secret`.
    pub fn add_bridge(&self, name: &str, secret: &str) {
        let command = sb_admin::parse(&format!("xmpp callbridge add-secret {name}"))
            .expect("command parses")
            .with_secret(sb_admin::Secret::new(secret));
        let reply = self.admin(command);
        assert!(reply.ok, "add-secret {name}: {}", reply.text);
    }

    pub fn status(&self) -> String {
        let reply = self.admin_line("xmpp status");
        assert!(reply.ok, "{}", reply.text);
        reply.text
    }

    /// A component connected (TLS unless the listener is plain) with its header sent and
    /// our header read.
    pub async fn open(&self, name: &str) -> (Component, StreamHeader) {
        self.open_to(&Bridges::address(name)).await
    }

    /// A component whose stream header is addressed to `address` as it is.
    pub async fn open_to(&self, address: &str) -> (Component, StreamHeader) {
        let mut component = Component::connect(self.component_addr, self.tls_certificate()).await;
        let header = component.open_stream(address).await;
        (component, header)
    }

    /// An authenticated component.
    pub async fn connect(&self, name: &str, secret: &str) -> Component {
        let (mut component, header) = self.open(name).await;
        let id = header.id.expect("stream id");
        component.send_handshake(&handshake_digest(&id, secret)).await;
        let answer = component
            .expect("handshake answer", |e| {
                e.is("handshake", ns::COMPONENT) || e.is("error", ns::STREAM)
            })
            .await;
        assert!(
            answer.is("handshake", ns::COMPONENT) && answer.children.is_empty(),
            "expected an empty <handshake/>, got {}",
            answer.to_xml()
        );
        component.name = Some(name.to_owned());
        component
    }

    fn tls_certificate(&self) -> Option<CertificateDer<'static>> {
        (!self.plain).then(|| self.daemon.certificate())
    }
}

/// Accepts exactly one certificate: the daemon's own.
#[derive(Debug)]
struct PinnedCertificate {
    certificate: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the daemon's certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug)]
pub enum Event {
    Element(Element),
    /// `</stream:stream>`.
    End,
    /// The connection closed (EOF or reset).
    Closed,
}

pub struct Component {
    io: Box<dyn Io>,
    framer: StreamFramer,
    pub local_addr: SocketAddr,
    pub name: Option<String>,
    pub tls: bool,
}

impl Component {
    /// Connect (retrying briefly: the component listener binds right after the client one
    /// the harness waits for) and run the TLS handshake when `certificate` is given.
    pub async fn connect(addr: SocketAddr, certificate: Option<CertificateDer<'static>>) -> Component {
        let mut tcp = None;
        for _ in 0..100 {
            match tokio::time::timeout(PATIENCE, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => panic!("connect to {addr}: timeout"),
            }
        }
        let tcp = tcp.unwrap_or_else(|| panic!("nothing listens on {addr}"));
        let local_addr = tcp.local_addr().expect("local address");
        let framer = StreamFramer::new(FramerConfig::with_max_stanza_bytes(4 * 1024 * 1024));
        let Some(certificate) = certificate else {
            return Component {
                io: Box::new(tcp),
                framer,
                local_addr,
                name: None,
                tls: false,
            };
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate { certificate, provider }))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(DOMAIN).expect("server name");
        let tls = tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
            .await
            .expect("TLS handshake: timeout")
            .expect("TLS handshake");
        Component {
            io: Box::new(tls),
            framer,
            local_addr,
            name: None,
            tls: true,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
        let _ = self.io.flush().await;
    }

    /// Send an element of the component stream (stanzas in `jabber:component:accept`).
    pub async fn send(&mut self, element: &Element) {
        let bytes = element.to_bytes(ns::COMPONENT);
        self.send_raw(&bytes).await;
    }

    /// Send our header addressed to `to` and read the server's.
    pub async fn open_stream(&mut self, to: &str) -> StreamHeader {
        let mut header = StreamHeader::new(ns::COMPONENT);
        header.version = None;
        header.to = Some(to.to_owned());
        self.send_raw(&header.to_bytes()).await;
        match self.next_event().await {
            Some(StreamEvent::Header(h)) => h,
            other => panic!("expected a stream header, got {other:?}"),
        }
    }

    pub async fn send_handshake(&mut self, digest: &str) {
        self.send(&Element::new("handshake", ns::COMPONENT).with_text(digest))
            .await;
    }

    async fn next_event(&mut self) -> Option<StreamEvent> {
        loop {
            match self.framer.next_event() {
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(e) => panic!("server sent bad XML: {e}"),
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(PATIENCE, self.io.read(&mut buf))
                .await
                .expect("the server sent nothing in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.framer.feed(&buf[..n]),
            }
        }
    }

    pub async fn next(&mut self) -> Event {
        match self.next_event().await {
            Some(StreamEvent::Element(e)) => Event::Element(e),
            Some(StreamEvent::End) => Event::End,
            Some(StreamEvent::Header(h)) => panic!("unexpected stream header {h:?}"),
            None => Event::Closed,
        }
    }

    /// The next element matching `want`; other elements are skipped (and printed).
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Element) -> bool) -> Element {
        loop {
            match self.next().await {
                Event::Element(e) if want(&e) => return e,
                Event::Element(e) => eprintln!(
                    "[component {:?}] skipping {} while waiting for {what}",
                    self.name,
                    e.to_xml()
                ),
                other => panic!("[component {:?}] waiting for {what}, got {other:?}", self.name),
            }
        }
    }

    /// Expect `<stream:error>` with `condition`, then the end of the stream and the close.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        let error = self.expect("stream error", |e| e.is("error", ns::STREAM)).await;
        assert!(
            error.has_child(condition, ns::STREAMS_ERROR),
            "expected <{condition}/>, got {}",
            error.to_xml()
        );
        let mut saw_end = false;
        loop {
            match self.next().await {
                Event::End => saw_end = true,
                Event::Closed => break,
                Event::Element(e) => panic!("expected the stream to end, got {}", e.to_xml()),
            }
        }
        assert!(saw_end, "connection closed without </stream:stream>");
    }

    /// Send an iq and wait for the reply with its id (other stanzas are skipped).
    pub async fn iq(&mut self, iq: Element) -> Element {
        let id = iq.attr("id").expect("iq with an id").to_owned();
        self.send(&iq).await;
        self.expect("iq reply", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str()) && matches!(e.attr("type"), Some("result" | "error"))
        })
        .await
    }
}

/// A stanza of the component stream.
pub fn stanza(name: &str, from: &str, to: &str) -> Element {
    Element::new(name, ns::COMPONENT)
        .with_attr("from", from)
        .with_attr("to", to)
}

pub fn component_message(from: &str, to: &str, body: &str) -> Element {
    stanza("message", from, to)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::COMPONENT).with_text(body))
}

pub fn component_body(message: &Element) -> String {
    message
        .get_child("body", ns::COMPONENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

/// The stanza error condition of an error reply on the component stream.
pub fn component_error_condition(stanza: &Element) -> Option<String> {
    assert_eq!(stanza.attr("type"), Some("error"), "not an error: {}", stanza.to_xml());
    stanza
        .get_child("error", ns::COMPONENT)?
        .elements()
        .find(|e| e.ns == ns::STANZAS_ERROR && e.name != "text")
        .map(|e| e.name.clone())
}
