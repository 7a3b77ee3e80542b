//! Call Bridge mode: one external component (XEP-0114 accept protocol; TLS on the socket, or
//! plain TCP where the server allows it on loopback) exchanging messages with the logged-in
//! users, measured per direction: component → users and users → component. The throughput
//! phase runs one direction after the other (each one's maximum); the rate phase runs both
//! at once, half the rate each way, as a Call Bridge's traffic mixes them.
//!
//! The component's messages carry sender index 0 in the `lg` body the client mode uses, so
//! the users' readers (load.rs) record them; the users' messages carry their own index and
//! are recorded by the component's reader here.

use crate::conn::{self, ClientError, Session, XmlConn};
use crate::load::{self, MessageClients, MessagePhase, MessageShared, Sender, Windows};
use crate::stats::{Clock, PhaseSummary};
use sb_proto::component::handshake_digest;
use sb_proto::{Element, StreamEvent, StreamFramer, StreamHeader, ns};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

/// Messages the component writes at once when several are due or its window has room for
/// several: one TLS record and one system call instead of one per message, as a real Call
/// Bridge with many participants would batch.
const BATCH: usize = 64;

/// Messages in flight per user from the component: servers queue a bounded number of stanzas
/// per session (xmppd 256), and a bench that fills a queue measures its overflow, not its speed.
const IN_FLIGHT_PER_USER: usize = 64;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The component's stream: TLS or plain TCP.
pub type ComponentIo = Box<dyn Io>;

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(transparent)]
    Stream(#[from] ClientError),
    #[error("the server's stream header carries no id to hash")]
    NoStreamId,
    #[error("handshake refused: <{0}/>")]
    Refused(String),
    #[error("unexpected <{0}/> instead of the handshake answer")]
    Unexpected(String),
}

/// Where and as whom the component connects.
pub struct ComponentTarget {
    pub addr: SocketAddr,
    /// The server's domain: the TLS server name.
    pub domain: String,
    /// `<name>.<domain>`, the address the component serves.
    pub jid: String,
    pub secret: String,
    /// `None`: plain TCP.
    pub tls: Option<TlsConnector>,
    pub timeout: Duration,
}

/// Connect and authenticate: TLS (unless plain), our header to the component's address, then
/// `<handshake>` with SHA-1(stream id ‖ escaped secret) as sb-proto computes it.
pub async fn connect(target: &ComponentTarget) -> Result<XmlConn<ComponentIo>, ComponentError> {
    match tokio::time::timeout(target.timeout, connect_steps(target)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout("component handshake").into()),
    }
}

async fn connect_steps(target: &ComponentTarget) -> Result<XmlConn<ComponentIo>, ComponentError> {
    let tcp = conn::connect_tcp(target.addr, None).await?;
    let io: ComponentIo = match &target.tls {
        Some(tls) => {
            let server_name = rustls_pki_types::ServerName::try_from(target.domain.clone())
                .map_err(|_| ClientError::ServerName(target.domain.clone()))?;
            Box::new(tls.connect(server_name, tcp).await.map_err(ClientError::Tls)?)
        }
        None => Box::new(tcp),
    };
    let mut conn = XmlConn::new(io);
    let header = StreamHeader {
        to: Some(target.jid.clone()),
        // XEP-0114 streams carry no version.
        version: None,
        ..StreamHeader::new(ns::COMPONENT)
    };
    conn.send(&header.to_bytes()).await?;
    let stream_id = match conn.next_event("component stream opening").await? {
        StreamEvent::Header(header) => header.id.ok_or(ComponentError::NoStreamId)?,
        StreamEvent::Element(element) if element.is("error", ns::STREAM) => {
            return Err(ComponentError::Refused(conn::first_child_name(&element)));
        }
        StreamEvent::Element(element) => return Err(ComponentError::Unexpected(element.name)),
        StreamEvent::End => return Err(ClientError::Closed("component stream opening").into()),
    };
    let handshake = Element::new("handshake", ns::COMPONENT).with_text(handshake_digest(&stream_id, &target.secret));
    conn.send(&handshake.to_bytes(ns::COMPONENT)).await?;
    match conn.next_element("component handshake").await {
        Ok(answer) if answer.is("handshake", ns::COMPONENT) => Ok(conn),
        Ok(other) => Err(ComponentError::Unexpected(other.name)),
        Err(ClientError::ServerStreamError(condition)) => Err(ComponentError::Refused(condition)),
        Err(err) => Err(err.into()),
    }
}

/// What the message phases of one run do.
pub struct ComponentPlan {
    /// Messages in flight in the throughput phase.
    pub window: usize,
    /// Seconds of the throughput phase per direction (0 skips it).
    pub throughput_secs: f64,
    /// Messages/s of both directions together in the rate phase (half each way).
    pub rate: f64,
    pub duration_secs: f64,
}

/// Figures of one phase, per direction.
#[derive(Clone, Debug)]
pub struct DirectionSummaries {
    pub to_users: PhaseSummary,
    pub from_users: PhaseSummary,
}

#[derive(Clone, Debug, Default)]
pub struct ComponentReport {
    pub users: usize,
    pub throughput: Option<DirectionSummaries>,
    pub rate: Option<DirectionSummaries>,
    /// Error stanzas received, by users and by the component.
    pub errors: u64,
}

/// Run the phases with an authenticated component and logged-in users, then close both.
pub async fn exchange(
    component: XmlConn<ComponentIo>,
    component_jid: &str,
    sessions: Vec<(usize, Session)>,
    clock: Clock,
    plan: &ComponentPlan,
) -> ComponentReport {
    let to_users = MessageShared::new(Windows::Shared(Semaphore::new(0)), clock);
    let from_users = MessageShared::new(Windows::Shared(Semaphore::new(0)), clock);
    let clients = MessageClients::start_by(sessions, |_| Arc::clone(&to_users));
    let user_senders: Vec<Sender> = clients.senders_to(component_jid);
    let (reader, writer) = tokio::io::split(component.io);
    let reader_task = tokio::spawn(read_from_users(reader, component.framer, Arc::clone(&from_users)));
    let mut bridge = BridgeSender {
        writer,
        from: sb_proto::element::escape(component_jid),
        targets: clients
            .jids()
            .iter()
            .map(|jid| sb_proto::element::escape(jid))
            .collect(),
        next_target: 0,
        seq: 0,
    };
    let mut report = ComponentReport {
        users: user_senders.len(),
        ..ComponentReport::default()
    };

    if plan.throughput_secs > 0.0 && !bridge.targets.is_empty() {
        // One direction at a time: each figure is that direction's own maximum, not a share
        // of the connection the other direction also loads.
        to_users
            .windows
            .open(0, plan.window.min(bridge.targets.len() * IN_FLIGHT_PER_USER));
        let to_secs = bridge.throughput(&to_users, plan.throughput_secs).await;
        to_users.drain(MessagePhase::Throughput).await;
        from_users.windows.open(0, plan.window);
        let from_secs = load::send_with_window(user_senders.clone(), &from_users, plan.throughput_secs).await;
        from_users.drain(MessagePhase::Throughput).await;
        report.throughput = Some(DirectionSummaries {
            to_users: to_users.stats(MessagePhase::Throughput).summary(to_secs),
            from_users: from_users.stats(MessagePhase::Throughput).summary(from_secs),
        });
    }
    if plan.rate > 0.0 && plan.duration_secs > 0.0 && !bridge.targets.is_empty() {
        let each_way = plan.rate / 2.0;
        let (to_secs, from_secs) = tokio::join!(
            bridge.at_rate(&to_users, each_way, plan.duration_secs),
            load::send_at_rate(user_senders, &from_users, each_way, plan.duration_secs)
        );
        tokio::join!(to_users.drain(MessagePhase::Rate), from_users.drain(MessagePhase::Rate));
        report.rate = Some(DirectionSummaries {
            to_users: to_users.stats(MessagePhase::Rate).summary(to_secs),
            from_users: from_users.stats(MessagePhase::Rate).summary(from_secs),
        });
    }
    report.errors = to_users.errors.load(Ordering::Relaxed) + from_users.errors.load(Ordering::Relaxed);

    clients.close().await;
    let _ = tokio::time::timeout(load::CLOSE_LIMIT, load::close_stream(&mut bridge.writer)).await;
    let abort = reader_task.abort_handle();
    if tokio::time::timeout(load::CLOSE_LIMIT, reader_task).await.is_err() {
        abort.abort();
    }
    report
}

/// The component's sending side: users in turn, from the component's own address.
struct BridgeSender {
    writer: WriteHalf<ComponentIo>,
    from: String,
    /// Escaped full JIDs of the users.
    targets: Vec<String>,
    next_target: usize,
    seq: u64,
}

impl BridgeSender {
    /// `count` messages to the next users in one write; one timestamp for all of them, taken
    /// right before they go out.
    async fn send_batch(&mut self, shared: &MessageShared, phase: MessagePhase, count: usize) -> std::io::Result<()> {
        let sent_us = shared.clock.now_us();
        let mut batch = String::with_capacity(count * 192);
        for _ in 0..count {
            let to = &self.targets[self.next_target % self.targets.len()];
            self.next_target += 1;
            let _ = write!(
                batch,
                "<message from='{}' to='{to}' type='chat' id='cb{}'><body>lg {} 0 {} {sent_us}</body></message>",
                self.from, self.seq, phase as u8, self.seq
            );
            self.seq += 1;
        }
        let write = async {
            self.writer.write_all(batch.as_bytes()).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(load::SEND_LIMIT, write).await {
            Ok(result) => result?,
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "send timed out")),
        }
        shared.stats(phase).sent.fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }

    /// As fast as the window (reopened by deliveries) allows, for `secs`; returns the time spent.
    async fn throughput(&mut self, shared: &MessageShared, secs: f64) -> f64 {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        let Some(window) = shared.windows.of(0) else {
            return 0.0;
        };
        loop {
            let permit = tokio::select! {
                permit = window.acquire() => permit,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let Ok(permit) = permit else { break };
            permit.forget();
            let mut count = 1;
            while count < BATCH {
                match window.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        count += 1;
                    }
                    Err(_) => break,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if self.send_batch(shared, MessagePhase::Throughput, count).await.is_err() {
                break;
            }
        }
        started.elapsed().as_secs_f64()
    }

    /// Message k is due at origin + k/rate; whatever is due goes out together (at most BATCH
    /// per write), so a slow write is caught up instead of lowering the rate.
    async fn at_rate(&mut self, shared: &MessageShared, rate: f64, secs: f64) -> f64 {
        if rate <= 0.0 {
            return secs;
        }
        let started = std::time::Instant::now();
        let origin = tokio::time::Instant::now();
        let deadline = origin + Duration::from_secs_f64(secs);
        let mut sent: u64 = 0;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let due = (now.duration_since(origin).as_secs_f64() * rate) as u64 + 1;
            let count = due.saturating_sub(sent).min(BATCH as u64);
            if count > 0 {
                if self
                    .send_batch(shared, MessagePhase::Rate, count as usize)
                    .await
                    .is_err()
                {
                    break;
                }
                sent += count;
            }
            let next = origin + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(next.min(deadline)).await;
        }
        started.elapsed().as_secs_f64().min(secs)
    }
}

/// The component's receiving side: users' messages, timed from the stamp in their body.
async fn read_from_users(mut reader: ReadHalf<ComponentIo>, mut framer: StreamFramer, shared: Arc<MessageShared>) {
    let mut chunk = [0u8; 16384];
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        framer.feed(&chunk[..read]);
        loop {
            match framer.next_event() {
                Ok(None) => break,
                Ok(Some(StreamEvent::Element(element))) => {
                    if element.is("message", ns::COMPONENT) {
                        shared.record_message(&element, ns::COMPONENT);
                    }
                }
                Ok(Some(StreamEvent::Header(_))) => {}
                Ok(Some(StreamEvent::End)) | Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection accept-protocol server: sends stream id `id`, checks the handshake
    /// against `secret` and answers as xmppd does.
    async fn fake_server(secret: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = XmlConn::new(tcp);
            let StreamEvent::Header(header) = conn.next_event("header").await.unwrap() else {
                panic!("no header");
            };
            let reply = StreamHeader {
                id: Some("3BF96D32".to_owned()),
                from: header.to.clone(),
                version: None,
                ..StreamHeader::new(ns::COMPONENT)
            };
            conn.send(&reply.to_bytes()).await.unwrap();
            let handshake = conn.next_element("handshake").await.unwrap();
            if sb_proto::component::verify_handshake("3BF96D32", secret, &handshake.text()) {
                conn.send(b"<handshake/>").await.unwrap();
            } else {
                conn.send(
                    b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                )
                .await
                .unwrap();
            }
            header.to.unwrap_or_default()
        });
        (addr, task)
    }

    fn target(addr: SocketAddr, secret: &str) -> ComponentTarget {
        ComponentTarget {
            addr,
            domain: "localhost".to_owned(),
            jid: "cb1.localhost".to_owned(),
            secret: secret.to_owned(),
            tls: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn handshake_proves_the_secret_with_xml_escaping() {
        let (addr, server) = fake_server("s3cr3t&<x").await;
        let connected = connect(&target(addr, "s3cr3t&<x")).await;
        assert!(connected.is_ok(), "{:?}", connected.err());
        assert_eq!(server.await.unwrap(), "cb1.localhost");
    }

    #[tokio::test]
    async fn a_wrong_secret_is_reported_with_the_servers_condition() {
        let (addr, _server) = fake_server("right").await;
        match connect(&target(addr, "wrong")).await {
            Err(ComponentError::Refused(condition)) => assert_eq!(condition, "not-authorized"),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a wrong secret was accepted"),
        }
    }
}
