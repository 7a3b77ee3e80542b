//! The node-to-node transport: mutual TLS over TCP, one request and one response per frame
//! pair, connections kept per peer for reuse. It also keeps what the status display needs:
//! each peer's last contact and health, and the peers refused at the TLS level.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::NodeId;
use crate::config::Timing;
use crate::frame::{FrameError, read_frame, write_frame};
use crate::rpc::{Envelope, Request, Response};
use crate::status::{Health, PeerFault};
use crate::tls::peer_server_name;

type ClientConn = tokio_rustls::client::TlsStream<TcpStream>;

/// Idle connections kept per peer: replication, votes and probes may overlap.
const IDLE_PER_PEER: usize = 4;
/// An inbound connection silent for this long is closed.
const INBOUND_IDLE: Duration = Duration::from_secs(120);
/// Refused peers remembered for the status display.
const MAX_FAULTS: usize = 32;

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    #[error("{0}")]
    Untrusted(String),
    #[error("timed out ({0})")]
    Timeout(&'static str),
    #[error("{0}")]
    Io(String),
    #[error("bad response: {0}")]
    Protocol(String),
    /// The request does not fit in one frame.
    #[error("request of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
    /// Another identity answers at the address (the node was reset).
    #[error("{0}")]
    Replaced(String),
}

/// A certificate problem behind a TLS failure, in words; `None` for other failures.
fn certificate_problem(err: &std::io::Error) -> Option<String> {
    use rustls::AlertDescription as Alert;
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(reason) => Some(format!("certificate not trusted: {reason:?}")),
        rustls::Error::NoCertificatesPresented => Some("presented no certificate".to_owned()),
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::AccessDenied
            // A chain that names a trusted issuer but whose signature does not verify (another
            // self-signed certificate with the same subject) ends in this alert.
            | Alert::DecryptError),
        ) => Some(format!("refused our certificate ({alert:?})")),
        _ => None,
    }
}

#[derive(Default)]
struct Contact {
    last_ok: Option<(Instant, SystemTime)>,
    failing_since: Option<SystemTime>,
    last_error: String,
}

/// Peers refused at the TLS level, newest last, one entry per peer.
#[derive(Default)]
pub(crate) struct Faults {
    list: Mutex<Vec<PeerFault>>,
}

impl Faults {
    pub fn record(&self, peer: &str, reason: &str) {
        log::warn!("cluster: peer {peer} refused: {reason}");
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|fault| fault.peer != peer);
        if list.len() >= MAX_FAULTS {
            list.remove(0);
        }
        list.push(PeerFault {
            peer: peer.to_owned(),
            reason: reason.to_owned(),
            at: SystemTime::now(),
        });
    }

    fn clear(&self, peer: &str) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|fault| fault.peer != peer);
    }

    pub fn snapshot(&self) -> Vec<PeerFault> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) struct Transport {
    me: NodeId,
    /// Outbound links leave from the listen address, so peers (and their fault lists) see the
    /// node's own address.
    source_ip: Option<IpAddr>,
    connector: TlsConnector,
    timing: Timing,
    idle: Mutex<HashMap<String, Vec<ClientConn>>>,
    /// Peers this node neither calls nor answers (a simulated partition, for tests).
    blocked: Mutex<HashSet<String>>,
    contacts: Mutex<HashMap<String, Contact>>,
    pub faults: Arc<Faults>,
}

impl Transport {
    pub fn new(
        me: NodeId,
        source_ip: IpAddr,
        connector: TlsConnector,
        timing: Timing,
        faults: Arc<Faults>,
    ) -> Transport {
        Transport {
            me,
            source_ip: (!source_ip.is_unspecified()).then_some(source_ip),
            connector,
            timing,
            idle: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashSet::new()),
            contacts: Mutex::new(HashMap::new()),
            faults,
        }
    }

    /// One request to the node at `addr` (`to`: the identity expected there), answered within
    /// `ttl`.
    pub async fn call(
        &self,
        addr: &str,
        to: Option<NodeId>,
        request: Request,
        ttl: Duration,
    ) -> Result<Response, TransportError> {
        let payload = serde_json::to_vec(&Envelope {
            from: self.me,
            to,
            request,
        })
        .map_err(|e| TransportError::Protocol(e.to_string()))?;
        if self.is_blocked(addr) {
            let result = Err(TransportError::Connect("link blocked (partition)".to_owned()));
            self.note(addr, &result);
            return result;
        }
        if payload.len() > self.timing.max_frame {
            return Err(TransportError::TooLarge(payload.len()));
        }
        let result = match tokio::time::timeout(ttl, self.call_inner(addr, &payload)).await {
            Ok(Ok(Response::WrongNode { actual })) => {
                Err(TransportError::Replaced(format!("{addr} is node {actual:016x} now")))
            }
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout("no answer")),
        };
        self.note(addr, &result);
        result
    }

    async fn call_inner(&self, addr: &str, payload: &[u8]) -> Result<Response, TransportError> {
        // A pooled connection may have been closed by the peer (restart): one fresh retry.
        if let Some(conn) = self.take_idle(addr) {
            match self.exchange(addr, conn, payload).await {
                Ok(response) => return Ok(response),
                Err(TransportError::Io(reason)) => {
                    log::debug!("cluster: reused link to {addr} failed ({reason}), redialling")
                }
                Err(other) => return Err(other),
            }
        }
        let conn = self.dial(addr).await?;
        self.exchange(addr, conn, payload).await
    }

    pub fn set_blocked(&self, addrs: HashSet<String>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for addr in &addrs {
            idle.remove(addr);
        }
        drop(idle);
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = addrs;
    }

    pub fn is_blocked(&self, addr: &str) -> bool {
        self.blocked.lock().unwrap_or_else(|e| e.into_inner()).contains(addr)
    }

    fn take_idle(&self, addr: &str) -> Option<ClientConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get_mut(addr).and_then(Vec::pop)
    }

    fn put_idle(&self, addr: &str, conn: ClientConn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(addr.to_owned()).or_default();
        if conns.len() < IDLE_PER_PEER {
            conns.push(conn);
        }
    }

    fn io_error(&self, addr: &str, err: FrameError) -> TransportError {
        if let FrameError::Io(io) = &err
            && let Some(problem) = certificate_problem(io)
        {
            let reason = format!("{addr} {problem}");
            self.faults.record(addr, &reason);
            return TransportError::Untrusted(reason);
        }
        TransportError::Io(err.to_string())
    }

    async fn exchange(&self, addr: &str, mut conn: ClientConn, payload: &[u8]) -> Result<Response, TransportError> {
        let max = self.timing.max_frame;
        write_frame(&mut conn, payload, max)
            .await
            .map_err(|e| self.io_error(addr, e))?;
        let answer = read_frame(&mut conn, max).await.map_err(|e| self.io_error(addr, e))?;
        let response: Response =
            serde_json::from_slice(&answer).map_err(|e| TransportError::Protocol(e.to_string()))?;
        self.put_idle(addr, conn);
        Ok(response)
    }

    async fn dial(&self, addr: &str) -> Result<ClientConn, TransportError> {
        let target: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?
            .next()
            .ok_or_else(|| TransportError::Connect(format!("{addr} has no address")))?;
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| TransportError::Connect(e.to_string()))?;
        if let Some(ip) = self.source_ip
            && ip.is_ipv4() == target.is_ipv4()
        {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| TransportError::Connect(format!("bind {ip}: {e}")))?;
        }
        let tcp = tokio::time::timeout(self.timing.connect_timeout, socket.connect(target))
            .await
            .map_err(|_| TransportError::Timeout("connect"))?
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let handshake = self.connector.connect(peer_server_name(), tcp);
        let mut conn = match tokio::time::timeout(self.timing.handshake_timeout, handshake).await {
            Err(_) => return Err(TransportError::Timeout("TLS handshake")),
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return match certificate_problem(&e) {
                    Some(problem) => {
                        let reason = format!("{addr} {problem}");
                        self.faults.record(addr, &reason);
                        Err(TransportError::Untrusted(reason))
                    }
                    None => Err(TransportError::Handshake(e.to_string())),
                };
            }
        };
        // In TLS 1.3 the server judges our certificate after our side finished the
        // handshake; its greeting (or its alert) tells us the verdict before we send anything.
        let greeting = tokio::time::timeout(
            self.timing.handshake_timeout,
            read_frame(&mut conn, self.timing.max_frame),
        )
        .await
        .map_err(|_| TransportError::Timeout("greeting"))?
        .map_err(|e| self.io_error(addr, e))?;
        match serde_json::from_slice::<Response>(&greeting) {
            Ok(Response::Pong { .. }) => Ok(conn),
            Ok(other) => Err(TransportError::Protocol(format!("greeting {other:?}"))),
            Err(e) => Err(TransportError::Protocol(e.to_string())),
        }
    }

    fn note(&self, addr: &str, result: &Result<Response, TransportError>) {
        let mut contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        let contact = contacts.entry(addr.to_owned()).or_default();
        match result {
            Ok(_) => {
                contact.last_ok = Some((Instant::now(), SystemTime::now()));
                contact.failing_since = None;
                drop(contacts);
                self.faults.clear(addr);
            }
            Err(e) => {
                contact.failing_since.get_or_insert_with(SystemTime::now);
                contact.last_error = e.to_string();
            }
        }
    }

    /// When `addr` last answered, and whether it counts as reachable now.
    pub fn health(&self, addr: &str) -> (Option<SystemTime>, Health) {
        let contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(contact) = contacts.get(addr) else {
            return (None, Health::Unknown);
        };
        let last = contact.last_ok.map(|(_, at)| at);
        match contact.last_ok {
            Some((at, _)) if at.elapsed() <= self.timing.unreachable_after => (last, Health::Reachable),
            _ => (
                last,
                Health::Unreachable {
                    since: contact.failing_since.or(last),
                    reason: contact.last_error.clone(),
                },
            ),
        }
    }
}

/// What answers requests arriving on the cluster port.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The answer, or `None` to close the link without one.
    fn handle(self: Arc<Self>, envelope: Envelope) -> impl Future<Output = Option<Response>> + Send;
}

/// Accept and serve cluster links until the task is aborted (which aborts every link too).
pub(crate) async fn serve<H: Handler>(
    me: NodeId,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Weak<H>,
    faults: Arc<Faults>,
    timing: Timing,
) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    links.spawn(serve_link(
                        me,
                        tcp,
                        peer,
                        acceptor.clone(),
                        handler.clone(),
                        Arc::clone(&faults),
                        timing.clone(),
                    ));
                }
                Err(e) => {
                    log::warn!("cluster: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
}

async fn serve_link<H: Handler>(
    me: NodeId,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    handler: Weak<H>,
    faults: Arc<Faults>,
    timing: Timing,
) {
    let _ = tcp.set_nodelay(true);
    let mut tls = match tokio::time::timeout(timing.handshake_timeout, acceptor.accept(tcp)).await {
        Err(_) => {
            log::info!("cluster: TLS handshake from {peer} timed out");
            return;
        }
        Ok(Err(e)) => {
            match certificate_problem(&e) {
                Some(problem) => faults.record(&peer.ip().to_string(), &format!("{peer} {problem}")),
                None => log::info!("cluster: TLS handshake from {peer} failed: {e}"),
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    // The greeting: the peer reads it before sending, so it learns we accepted its
    // certificate (see `Transport::dial`).
    let greeting = serde_json::to_vec(&Response::Pong { id: me }).unwrap_or_default();
    if let Err(e) = write_frame(&mut tls, &greeting, timing.max_frame).await {
        log::info!("cluster: link from {peer} closed before the greeting: {e}");
        return;
    }
    loop {
        let frame = match tokio::time::timeout(INBOUND_IDLE, read_frame(&mut tls, timing.max_frame)).await {
            Err(_) | Ok(Err(FrameError::Closed)) => return,
            Ok(Err(e)) => {
                log::warn!("cluster: closing link from {peer}: {e}");
                return;
            }
            Ok(Ok(frame)) => frame,
        };
        let envelope: Envelope = match serde_json::from_slice(&frame) {
            Ok(envelope) => envelope,
            Err(e) => {
                log::warn!("cluster: closing link from {peer}: unreadable request: {e}");
                return;
            }
        };
        let Some(strong) = handler.upgrade() else {
            return;
        };
        let Some(response) = strong.handle(envelope).await else {
            return;
        };
        let bytes = match serde_json::to_vec(&response) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::warn!("cluster: cannot encode a response to {peer}: {e}");
                return;
            }
        };
        if let Err(e) = write_frame(&mut tls, &bytes, timing.max_frame).await {
            log::warn!("cluster: closing link from {peer}: {e}");
            return;
        }
    }
}
