//! Test harness shared by the daemon's integration tests: a real `xmppd` process on a
//! loopback address with its own data dir, and a small XMPP client built on sb-proto's
//! framer and SCRAM client over real TCP and TLS.
//!
//! Waits are bounded (a stuck test fails with a clear message) but never measure speed.

#![allow(dead_code)]

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use sb_proto::sasl::{
    EXPORTER_LABEL, EXPORTER_LEN, ScramClient, ScramHash, UserCredentials, decode_payload, encode_payload, random_nonce,
};
use sb_proto::{Element, FramerConfig, StreamEvent, StreamFramer, StreamHeader, ns};
use sb_store::testing::Changes;
use sb_store::{Store, XmppConfig};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DOMAIN: &str = "switchboard.test";
pub const PASSWORD: &str = "correct horse";

/// Upper bound for any single wait: far above anything a healthy run needs, so hitting it
/// means something is stuck, not slow.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A distinct loopback address per daemon, so parallel tests never share a listener.
fn next_loopback() -> std::net::IpAddr {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid_part = (std::process::id() % 50) as u8;
    std::net::IpAddr::from([127, 0, 100 + pid_part, 10 + n % 200])
}

fn free_port(ip: std::net::IpAddr) -> u16 {
    let listener = StdTcpListener::bind((ip, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A child forked while this process holds a store open inherits the store's lock (flock
/// belongs to the open file, and the copy lives until the child's exec), and the daemon it
/// becomes would find its store "in use". Tests run in parallel threads, so opening a
/// store and spawning a daemon are serialized; tests that start other processes take it too.
pub static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon with `users` (all with [`PASSWORD`]); `configure` may change the stored
    /// configuration before the start.
    pub fn start(users: &[&str], extra_args: &[&str], configure: impl FnOnce(&mut XmppConfig)) -> Daemon {
        Daemon::start_with_env(users, extra_args, &[], configure)
    }

    /// [`Daemon::start`] with extra environment variables for the daemon.
    pub fn start_with_env(
        users: &[&str],
        extra_args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut XmppConfig),
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip = next_loopback();
        let addr = SocketAddr::new(ip, free_port(ip));
        {
            let _no_fork = FORK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            let store = Store::open(dir.path()).expect("open store");
            store
                .update_xmpp_config(|c| {
                    c.domain = DOMAIN.to_owned();
                    c.listen = vec![addr.to_string()];
                    c.enabled = true;
                    configure(c);
                })
                .expect("configure");
            // Credentials are expensive to derive; derive once and reuse for every user.
            let credentials = UserCredentials::new(PASSWORD).expect("credentials");
            for user in users {
                store.add_user(user, &credentials).expect("add user");
            }
        }
        let mut daemon = Daemon {
            dir,
            addr,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
        };
        daemon.spawn();
        daemon
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("xmppd.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let _no_fork = FORK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let child = Command::new(env!("CARGO_BIN_EXE_xmppd"))
            .arg("-d")
            .arg(self.dir.path())
            .args(["--log-level", "debug"])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start xmppd");
        drop(_no_fork);
        self.child = Some(child);
        self.wait_listening();
    }

    /// Wait until the listener accepts (the daemon binds after opening the store).
    fn wait_listening(&mut self) {
        for _ in 0..400 {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("xmppd exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("xmppd never listened on {}:\n{}", self.addr, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("daemon running")
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        for _ in 0..600 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("xmppd did not exit after SIGTERM:\n{}", self.log());
    }

    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "xmppd exited with {status}:\n{}", self.log());
        self.spawn();
    }

    /// The self-signed certificate the daemon made for itself; clients pin it.
    pub fn certificate(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.dir.path().join("certs/selfsigned.crt")).expect("daemon certificate")
    }

    pub fn jid(&self, user: &str) -> String {
        format!("{user}@{DOMAIN}")
    }

    /// A logged-in client (STARTTLS, SCRAM-SHA-256, bind) with `resource`.
    pub async fn login(&self, user: &str, resource: &str) -> Client {
        let mut client = Client::connect(self.addr).await;
        client.open_stream(DOMAIN).await;
        client.starttls(self.certificate()).await;
        let features = client.open_stream(DOMAIN).await;
        assert!(
            mechanisms(&features).contains(&"SCRAM-SHA-256".to_owned()),
            "{}",
            features.to_xml()
        );
        client
            .authenticate(user, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("login of {user} failed: {e}"));
        let features = client.open_stream(DOMAIN).await;
        assert!(features.has_child("bind", ns::BIND), "{}", features.to_xml());
        client.bind(Some(resource)).await;
        client
    }

    /// Logged in and available (initial presence sent), with the roster requested.
    pub async fn online(&self, user: &str, resource: &str) -> Client {
        let mut client = self.login(user, resource).await;
        client.roster_get().await;
        client.send(&Element::new("presence", ns::CLIENT)).await;
        // The server does not echo presence to the resource that sent it; a ping round
        // trip makes sure it has processed the presence before the test goes on.
        client.ping_server().await;
        client
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", ns::SASL)
        .map(|m| m.elements().map(|e| e.text()).collect())
        .unwrap_or_default()
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

/// What the server sent.
#[derive(Debug)]
pub enum Event {
    Element(Element),
    /// `</stream:stream>`.
    End,
    /// The connection closed (EOF or reset).
    Closed,
}

pub struct Client {
    io: Option<Box<dyn Io>>,
    framer: StreamFramer,
    pub jid: Option<String>,
    next_id: u32,
    /// Raw bytes received, when `record_raw` is on (to see whitespace keepalives).
    pub raw: Vec<u8>,
    pub record_raw: bool,
    /// How the connection ended: true for a clean end (TLS close_notify, or FIN on a plain
    /// stream), false for a reset or a TLS stream cut without close_notify.
    pub closed_cleanly: Option<bool>,
    /// This side's `tls-exporter` channel binding value (RFC 9266), once TLS 1.3 is up.
    pub tls_exporter: Option<Vec<u8>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let tcp = tokio::time::timeout(PATIENCE, TcpStream::connect(addr))
            .await
            .expect("connect: timeout")
            .expect("connect");
        Client {
            io: Some(Box::new(tcp)),
            framer: StreamFramer::new(FramerConfig::with_max_stanza_bytes(4 * 1024 * 1024)),
            jid: None,
            next_id: 0,
            raw: Vec::new(),
            record_raw: false,
            closed_cleanly: None,
            tls_exporter: None,
        }
    }

    fn io(&mut self) -> &mut Box<dyn Io> {
        self.io.as_mut().expect("connection in place")
    }

    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let io = self.io();
        let _ = io.write_all(bytes).await;
        let _ = io.flush().await;
    }

    pub async fn send(&mut self, element: &Element) {
        let bytes = element.to_bytes(ns::CLIENT);
        self.send_raw(&bytes).await;
    }

    /// Send a stream header and read the server's header and features.
    pub async fn open_stream(&mut self, to: &str) -> Element {
        let mut header = StreamHeader::new(ns::CLIENT);
        header.to = Some(to.to_owned());
        let bytes = header.to_bytes();
        self.send_raw(&bytes).await;
        self.expect_header().await;
        self.expect("stream features", |e| e.is("features", ns::STREAM)).await
    }

    pub async fn expect_header(&mut self) -> StreamHeader {
        match self.next_event().await {
            Some(StreamEvent::Header(h)) => h,
            other => panic!("expected a stream header, got {other:?}"),
        }
    }

    /// Next framer event; `None` when the connection closed.
    async fn next_event(&mut self) -> Option<StreamEvent> {
        loop {
            match self.framer.next_event() {
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(e) => panic!("server sent bad XML: {e}"),
            }
            let mut buf = [0u8; 4096];
            let io = self.io.as_mut()?;
            let read = tokio::time::timeout(PATIENCE, io.read(&mut buf))
                .await
                .expect("the server sent nothing in time");
            match read {
                Ok(0) => {
                    self.closed_cleanly = Some(true);
                    return None;
                }
                Err(_) => {
                    self.closed_cleanly = Some(false);
                    return None;
                }
                Ok(n) => {
                    if self.record_raw {
                        self.raw.extend_from_slice(&buf[..n]);
                    }
                    self.framer.feed(&buf[..n]);
                }
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
                Event::Element(e) => eprintln!("[{:?}] skipping {} while waiting for {what}", self.jid, e.to_xml()),
                other => panic!("waiting for {what}, got {other:?}"),
            }
        }
    }

    /// Expect `<stream:error>` with `condition`, then the end of the stream.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        let error = self.expect("stream error", |e| e.is("error", ns::STREAM)).await;
        assert!(
            error.has_child(condition, ns::STREAMS_ERROR),
            "expected <{condition}/>, got {}",
            error.to_xml()
        );
        self.expect_closed().await;
    }

    /// Expect the stream end and the connection close (extra elements are a failure).
    pub async fn expect_closed(&mut self) {
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

    pub async fn starttls(&mut self, certificate: CertificateDer<'static>) {
        self.starttls_with(certificate, rustls::DEFAULT_VERSIONS).await;
    }

    /// STARTTLS offering only `versions` (suites in rustls's default order); returns the
    /// version and cipher suite negotiated.
    pub async fn starttls_with(
        &mut self,
        certificate: CertificateDer<'static>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (rustls::ProtocolVersion, rustls::CipherSuite) {
        self.send(&Element::new("starttls", ns::TLS)).await;
        self.expect("proceed", |e| e.is("proceed", ns::TLS)).await;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate { certificate, provider }))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let io = self.io.take().expect("connection in place");
        let name = ServerName::try_from(DOMAIN).expect("server name");
        let tls = tokio::time::timeout(PATIENCE, connector.connect(name, io))
            .await
            .expect("TLS handshake: timeout")
            .expect("TLS handshake");
        let session = tls.get_ref().1;
        let version = session.protocol_version().expect("negotiated version");
        let suite = session.negotiated_cipher_suite().expect("negotiated suite").suite();
        self.tls_exporter = (version == rustls::ProtocolVersion::TLSv1_3).then(|| {
            session
                .export_keying_material(vec![0u8; EXPORTER_LEN], EXPORTER_LABEL, Some(&[]))
                .expect("tls-exporter value")
        });
        self.io = Some(Box::new(tls));
        self.framer.reset();
        (version, suite)
    }

    /// SCRAM-SHA-256; `Err(condition)` on `<failure/>`.
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), String> {
        self.authenticate_with(ScramHash::Sha256, user, password).await
    }

    pub async fn authenticate_with(&mut self, hash: ScramHash, user: &str, password: &str) -> Result<(), String> {
        let scram = ScramClient::new(hash, user, password, random_nonce().expect("nonce")).expect("scram client");
        self.authenticate_scram(hash.mechanism(), scram).await
    }

    /// Run `scram` as `mechanism` (e.g. a -PLUS client bound to some exporter value).
    pub async fn authenticate_scram(&mut self, mechanism: &str, mut scram: ScramClient) -> Result<(), String> {
        let first = encode_payload(&scram.client_first());
        self.send(
            &Element::new("auth", ns::SASL)
                .with_attr("mechanism", mechanism)
                .with_text(first),
        )
        .await;
        let reply = self
            .expect("challenge", |e| {
                e.ns == ns::SASL && (e.name == "challenge" || e.name == "failure")
            })
            .await;
        if reply.name == "failure" {
            return Err(failure_condition(&reply));
        }
        let challenge = decode_payload(&reply.text()).expect("challenge payload");
        let client_final = scram.handle_server_first(&challenge).expect("server-first");
        self.send(&Element::new("response", ns::SASL).with_text(encode_payload(&client_final)))
            .await;
        let reply = self
            .expect("success", |e| {
                e.ns == ns::SASL && (e.name == "success" || e.name == "failure")
            })
            .await;
        if reply.name == "failure" {
            return Err(failure_condition(&reply));
        }
        let additional = decode_payload(&reply.text()).expect("success payload");
        scram.verify_server_final(&additional).expect("server signature");
        self.framer.restart();
        Ok(())
    }

    /// Expect a fresh stream from the server (after SASL success done by hand).
    pub fn restart_stream(&mut self) {
        self.framer.restart();
    }

    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        let mut bind = Element::new("bind", ns::BIND);
        if let Some(r) = resource {
            bind.push_child(Element::new("resource", ns::BIND).with_text(r));
        }
        let id = self.new_id();
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", id)
            .with_child(bind);
        let reply = self.iq(iq).await;
        assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
        let jid = reply
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(|j| j.text())
            .expect("bound jid");
        self.jid = Some(jid.clone());
        jid
    }

    /// Send an iq and wait for the reply with its id (other stanzas are skipped).
    pub async fn iq(&mut self, mut iq: Element) -> Element {
        let id = match iq.attr("id") {
            Some(id) => id.to_owned(),
            None => {
                let id = self.new_id();
                iq.set_attr("id", id.clone());
                id
            }
        };
        self.send(&iq).await;
        self.expect("iq reply", |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str()) && matches!(e.attr("type"), Some("result" | "error"))
        })
        .await
    }

    pub async fn ping_server(&mut self) {
        let ping = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("ping", ns::PING));
        let reply = self.iq(ping).await;
        assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
    }

    pub async fn roster_get(&mut self) -> Element {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("query", ns::ROSTER));
        let reply = self.iq(iq).await;
        assert_eq!(reply.attr("type"), Some("result"), "{}", reply.to_xml());
        reply
    }

    pub async fn message(&mut self, to: &str, kind: &str, body: &str) {
        self.send(&message(to, kind, body)).await;
    }

    /// The next message (presence and other stanzas are skipped).
    pub async fn expect_message(&mut self) -> Element {
        self.expect("message", |e| e.name == "message").await
    }

    /// The next message with `body`.
    pub async fn expect_body(&mut self, body: &str) -> Element {
        self.expect(&format!("message '{body}'"), |e| {
            e.name == "message" && body_of(e) == body
        })
        .await
    }

    /// Close our stream politely and wait for the server's close.
    pub async fn close(mut self) {
        self.send_raw(b"</stream:stream>").await;
        loop {
            match self.next().await {
                Event::End | Event::Closed => break,
                Event::Element(_) => {}
            }
        }
    }

    /// Drop the connection without closing the stream.
    pub fn abort(self) {
        drop(self);
    }
}

pub fn message(to: &str, kind: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", kind)
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

pub fn body_of(message: &Element) -> String {
    message
        .get_child("body", ns::CLIENT)
        .map(|b| b.text())
        .unwrap_or_default()
}

pub fn failure_condition(failure: &Element) -> String {
    failure.elements().next().map(|c| c.name.clone()).unwrap_or_default()
}

/// The stanza error condition of an error reply.
pub fn error_condition(stanza: &Element) -> Option<String> {
    assert_eq!(stanza.attr("type"), Some("error"), "not an error: {}", stanza.to_xml());
    stanza
        .get_child("error", ns::CLIENT)?
        .elements()
        .find(|e| e.ns == ns::STANZAS_ERROR && e.name != "text")
        .map(|e| e.name.clone())
}

pub fn data_dir(daemon: &Daemon) -> &Path {
    daemon.dir.path()
}
