//! Client connections: one task per connection drives the transport, the framer and the
//! negotiation state machine, and, once bound, the session's outbound queue.
//!
//! The task waits on everything at once (socket, queue, close requests, shutdown, timers)
//! so an idle session is one parked future and two small buffers. Handlers for received
//! elements are boxed futures: their state exists only while they run, which keeps the
//! idle task small.

pub mod negotiation;
mod stanza;

use crate::core::{Core, Settings, TrackedConnection, unix_now};
use crate::limits::ConnectionSlot;
use crate::presence::SessionPresence;
use crate::router::{Outbound, SessionControl, SessionHandle, SessionMeta};
use crate::sasl::{self as sasl_auth, AuthContext, Exchange, Outcome};
use crate::stream_io::{FlushError, StreamIo, Wake};
use crate::transport::Transport;
use crate::{bind, legacy_session};
use negotiation::{Mechanism, Negotiation, NegotiationConfig, Step};
use sb_proto::sasl::encode_payload;
use sb_proto::{
    Element, FramerConfig, Jid, StreamError, StreamErrorCondition, StreamEvent, StreamFramer, StreamHeader, ns,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// Queued stanzas written in one go before the socket is flushed.
const OUTBOUND_BATCH: usize = 32;

/// A bound resource on this connection.
struct Session {
    user: String,
    jid: Jid,
    handle: SessionHandle,
    control: Arc<SessionControl>,
    rx: mpsc::Receiver<Outbound>,
    presence: SessionPresence,
}

/// How processing of received data ended.
enum Flow {
    Continue,
    /// The transport changed (STARTTLS): drop what was buffered and read again.
    Restarted,
    /// Close the stream, with this error if any.
    Close(Option<StreamError>),
    /// The socket is unusable: stop without a closing handshake.
    Abort,
}

pub struct Connection {
    core: Arc<Core>,
    settings: Arc<Settings>,
    io: StreamIo,
    framer: StreamFramer,
    negotiation: Negotiation,
    sasl: Option<(Mechanism, Box<Exchange>)>,
    /// The TLS session's `tls-exporter` value once TLS 1.3 is up: what -PLUS binds to.
    tls_exporter: Option<Vec<u8>>,
    session: Option<Session>,
    /// Our header for the current stream went out (an error needs one first).
    header_sent: bool,
    accepted_at: Instant,
    stop: watch::Receiver<u64>,
    slot: ConnectionSlot,
    _tracked: TrackedConnection,
}

/// Serve one accepted client connection to its end.
pub async fn serve(
    core: Arc<Core>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    tracked: TrackedConnection,
) {
    // Stanzas are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let settings = core.settings();
    let negotiation = Negotiation::new(NegotiationConfig {
        domain: settings.domain.clone(),
        tls_available: settings.tls.is_some(),
        tls_required: settings.starttls_required,
        max_auth_attempts: core.tuning.max_auth_attempts,
    });
    let mut connection = Connection {
        framer: StreamFramer::new(FramerConfig::with_max_stanza_bytes(settings.max_stanza_bytes)),
        stop: core.stop_signal(),
        core,
        settings,
        io: StreamIo::new(Transport::Plain(tcp), peer),
        negotiation,
        sasl: None,
        tls_exporter: None,
        session: None,
        header_sent: false,
        accepted_at: Instant::now(),
        slot,
        _tracked: tracked,
    };
    log::debug!("c2s: connection from {peer}");
    let flow = Box::pin(connection.run()).await;
    Box::pin(connection.finish(flow)).await;
}

impl Connection {
    async fn run(&mut self) -> Flow {
        loop {
            if self.core.is_shutting_down() {
                return Flow::Close(Some(StreamError::new(StreamErrorCondition::SystemShutdown)));
            }
            let wake_at = self.next_timer();
            let wake = {
                let Connection { io, session, stop, .. } = self;
                let (control_ref, rx_ref) = match session {
                    Some(s) => (Some(&*s.control), Some(&mut s.rx)),
                    None => (None, None),
                };
                io.wait(stop, control_ref, rx_ref, wake_at).await
            };
            let flow = match wake {
                Wake::Shutdown => Flow::Close(Some(StreamError::new(StreamErrorCondition::SystemShutdown))),
                Wake::Control => match self.session.as_ref().and_then(|s| s.control.take_close()) {
                    Some(error) => {
                        log::info!("c2s: closing {}: {error}", self.describe());
                        Flow::Close(Some(error))
                    }
                    None => Flow::Continue,
                },
                Wake::Read(Ok(0)) => {
                    log::debug!("c2s: {} closed the connection", self.io.peer);
                    Flow::Abort
                }
                Wake::Read(Ok(_)) => {
                    self.io.feed(&mut self.framer);
                    let flow = Box::pin(self.process_input()).await;
                    // The read arm wins the biased wait whenever input is ready, so a peer that
                    // keeps sending would otherwise starve what is queued for it.
                    self.drain_outbound();
                    flow
                }
                Wake::Read(Err(e)) => {
                    log::debug!("c2s: read from {} failed: {e}", self.io.peer);
                    Flow::Abort
                }
                Wake::Outbound(Some(item)) => {
                    self.write_outbound(item);
                    self.drain_outbound();
                    Flow::Continue
                }
                // Every sender is gone: the binding was removed; a close request follows.
                Wake::Outbound(None) => Flow::Continue,
                Wake::Timer => self.on_timer(),
            };
            if !matches!(flow, Flow::Abort) && !self.flush().await {
                return Flow::Abort;
            }
            // A close request that arrived while the flush waited (see `flush`).
            if let Some(error) = self.session.as_ref().and_then(|s| s.control.take_close()) {
                log::info!("c2s: closing {}: {error}", self.describe());
                return Flow::Close(Some(error));
            }
            match flow {
                Flow::Continue | Flow::Restarted => {}
                other => return other,
            }
        }
    }

    fn next_timer(&self) -> Instant {
        let tuning = &self.core.tuning;
        if self.negotiation.is_authenticated() {
            self.io.liveness_deadline(tuning)
        } else {
            self.accepted_at + tuning.pre_auth_timeout
        }
    }

    fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        let tuning = &self.core.tuning;
        if !self.negotiation.is_authenticated() {
            if now >= self.accepted_at + tuning.pre_auth_timeout {
                log::info!("c2s: {} did not authenticate in time", self.io.peer);
                return Flow::Close(Some(StreamError::with_text(
                    StreamErrorCondition::ConnectionTimeout,
                    "authentication took too long",
                )));
            }
            return Flow::Continue;
        }
        match self.io.check_liveness(tuning, now) {
            Ok(()) => Flow::Continue,
            Err(error) => {
                log::info!("c2s: {} idle for too long", self.describe());
                Flow::Close(Some(error))
            }
        }
    }

    fn describe(&self) -> String {
        match &self.session {
            Some(s) => format!("{} ({})", s.jid, self.io.peer),
            None => self.io.peer.to_string(),
        }
    }

    fn write_element(&mut self, element: &Element) {
        element.write_to(&mut self.io.write_buf, ns::CLIENT);
    }

    fn write_outbound(&mut self, item: Outbound) {
        self.io.charged += crate::budget::outbound_bytes(&item);
        match item {
            Outbound::Stanza(stanza) => stanza.write_to(&mut self.io.write_buf, ns::CLIENT),
            Outbound::Raw(bytes) => self.io.write_buf.extend_from_slice(&bytes),
        }
    }

    /// Take whatever else is queued right now, so a burst goes out in one write; at most
    /// the write buffer budget, so large stanzas stay in the queue (where a close can still
    /// route them elsewhere) rather than in bytes no one else can use.
    fn drain_outbound(&mut self) {
        for _ in 0..OUTBOUND_BATCH {
            if self.io.write_buf.len() >= self.core.tuning.write_buffer_bytes {
                break;
            }
            let Some(item) = self.session.as_mut().and_then(|s| s.rx.try_recv().ok()) else {
                break;
            };
            self.write_outbound(item);
        }
    }

    /// Write out what is buffered. False when the peer is gone or does not take our bytes
    /// in time. A close request for the session (its queue went over budget while we waited
    /// for a peer that does not read) cuts the wait to `close_grace`: the caller then sees
    /// the request with `take_close`.
    async fn flush(&mut self) -> bool {
        let control = self.session.as_ref().map(|s| &*s.control);
        match self.io.flush_session(&self.core.tuning, control).await {
            Ok(()) => true,
            Err(FlushError::Stalled) => {
                match self.session.as_ref().and_then(|s| s.control.take_close()) {
                    Some(error) => log::info!(
                        "c2s: closing {} without a goodbye (it does not read): {error}",
                        self.describe()
                    ),
                    None => log::info!("c2s: {} does not read; dropping it", self.describe()),
                }
                false
            }
            Err(e) => {
                log::debug!("c2s: {} to {}", e, self.io.peer);
                false
            }
        }
    }

    /// Act on every complete event the framer has. Replies are flushed whenever they exceed
    /// the write buffer budget, so a client that pipelines requests without reading waits
    /// for its own replies (and is dropped when it never takes them) instead of growing them.
    async fn process_input(&mut self) -> Flow {
        loop {
            if self.io.write_buf.len() > self.core.tuning.write_buffer_bytes && !self.flush().await {
                return Flow::Abort;
            }
            let event = match self.framer.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Flow::Continue,
                Err(error) => {
                    log::info!("c2s: stream error from {}: {error}", self.describe());
                    return Flow::Close(Some(error));
                }
            };
            let flow = match event {
                StreamEvent::Header(header) => self.on_header(header),
                StreamEvent::Element(element) => Box::pin(self.on_element(element)).await,
                StreamEvent::End => Flow::Close(None),
            };
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
    }

    fn send_header(&mut self, to: Option<&str>) {
        let mut header = StreamHeader::new(ns::CLIENT);
        header.from = Some(self.settings.domain.clone());
        header.id = Some(self.core.unique_id());
        header.lang = Some("en".to_owned());
        header.to = to.and_then(|t| Jid::parse(t).ok()).map(|j| j.to_string());
        self.io.write_buf.extend_from_slice(&header.to_bytes());
        self.header_sent = true;
    }

    fn on_header(&mut self, header: StreamHeader) -> Flow {
        self.send_header(header.from.as_deref());
        if let Err(error) = self.negotiation.check_header(&header) {
            log::info!("c2s: refusing stream from {}: {error}", self.io.peer);
            return Flow::Close(Some(error));
        }
        let features = self.negotiation.features();
        self.write_element(&features);
        Flow::Continue
    }

    async fn on_element(&mut self, element: Element) -> Flow {
        match self.negotiation.classify(&element) {
            Step::StartTls => self.start_tls().await,
            Step::SaslStart { mechanism, payload } => self.sasl_start(mechanism, payload).await,
            Step::SaslContinue { payload } => match self.sasl.take() {
                Some((mechanism, exchange)) => self.sasl_step(mechanism, Some(exchange), payload).await,
                None => self.sasl_failed(sasl_auth::SaslFailure {
                    error: sb_proto::sasl::SaslError::MalformedRequest("no exchange"),
                    bad_credentials: false,
                    user: None,
                }),
            },
            Step::SaslAbort => {
                self.sasl = None;
                self.sasl_failed(sasl_auth::SaslFailure {
                    error: sb_proto::sasl::SaslError::Aborted,
                    bad_credentials: false,
                    user: None,
                })
            }
            Step::SaslFailure(error) => self.sasl_failed(sasl_auth::SaslFailure {
                error,
                bad_credentials: false,
                user: None,
            }),
            Step::Bind => self.bind(&element).await,
            Step::LegacySession => {
                self.write_element(&legacy_session::answer(&element));
                Flow::Continue
            }
            Step::Stanza => self.on_stanza(element).await,
            Step::Reject(error) => {
                if crate::delivery::may_bounce(&element) {
                    self.write_element(&error.reply_to(&element));
                }
                Flow::Continue
            }
            Step::Close(error) => {
                log::info!("c2s: closing {}: {error}", self.describe());
                Flow::Close(Some(error))
            }
        }
    }

    async fn start_tls(&mut self) -> Flow {
        let Some(config) = self.settings.tls.clone() else {
            return Flow::Close(Some(StreamError::new(StreamErrorCondition::UnsupportedFeature)));
        };
        self.write_element(&Element::new("proceed", ns::TLS));
        if !self.flush().await {
            return Flow::Abort;
        }
        let handshake = timeout(self.core.tuning.pre_auth_timeout, self.io.transport.start_tls(config)).await;
        match handshake {
            Ok(Ok(())) => {
                log::debug!(
                    "c2s: TLS with {}: {}",
                    self.io.peer,
                    self.io.transport.tls_description().unwrap_or_default()
                );
                self.tls_exporter = self.io.transport.tls_exporter();
                self.negotiation.tls_established(self.tls_exporter.is_some());
                // RFC 6120 §5.4.3.3: a fresh stream; anything sent in the clear after
                // <starttls/> is discarded, never read as if it came over TLS.
                self.framer.reset();
                self.header_sent = false;
                Flow::Restarted
            }
            Ok(Err(e)) => {
                log::info!("c2s: TLS handshake with {} failed: {e}", self.io.peer);
                Flow::Abort
            }
            Err(_) => {
                log::info!("c2s: TLS handshake with {} timed out", self.io.peer);
                Flow::Abort
            }
        }
    }

    async fn sasl_start(&mut self, mechanism: Mechanism, payload: String) -> Flow {
        let ip = self.io.peer.ip();
        let tuning = &self.core.tuning;
        if !self.core.auth_failures.allowed(
            ip,
            tuning.max_auth_failures_per_ip,
            tuning.auth_failure_window,
            Instant::now(),
        ) {
            log::warn!("c2s: login attempt from {ip} refused: too many failures from this address");
            return self.sasl_failed(sasl_auth::SaslFailure {
                error: sb_proto::sasl::SaslError::TemporaryAuthFailure,
                bad_credentials: true,
                user: None,
            });
        }
        self.negotiation.sasl_started(mechanism);
        self.sasl_step(mechanism, None, payload).await
    }

    /// Run one SASL step. PLAIN's check derives a key from the password (thousands of
    /// hash rounds), so it runs on the blocking pool; SCRAM steps are cheap.
    async fn sasl_step(&mut self, mechanism: Mechanism, exchange: Option<Box<Exchange>>, payload: String) -> Flow {
        let core = Arc::clone(&self.core);
        let domain = self.settings.domain.clone();
        let tls_exporter = self.tls_exporter.clone();
        let run = move || {
            let storage = core.storage.clone();
            let lookup = move |user: &str| storage.credentials(user);
            let ctx = AuthContext {
                domain: &domain,
                lookup: &lookup,
                unknown_user_secret: &core.unknown_user_secret,
                tls_exporter: tls_exporter.as_deref(),
            };
            match exchange {
                None => sasl_auth::start(&ctx, mechanism, &payload),
                Some(exchange) => sasl_auth::step(&ctx, exchange, &payload),
            }
        };
        let outcome = if mechanism == Mechanism::Plain {
            match tokio::task::spawn_blocking(run).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    log::error!("c2s: SASL task failed: {e}");
                    Outcome::Failure(sasl_auth::SaslFailure {
                        error: sb_proto::sasl::SaslError::TemporaryAuthFailure,
                        bad_credentials: false,
                        user: None,
                    })
                }
            }
        } else {
            run()
        };
        match outcome {
            Outcome::Challenge(data, exchange) => {
                self.sasl = Some((mechanism, exchange));
                self.write_element(&Element::new("challenge", ns::SASL).with_text(encode_payload(&data)));
                Flow::Continue
            }
            Outcome::Success { user, additional } => {
                let mut success = Element::new("success", ns::SASL);
                if !additional.is_empty() {
                    success = success.with_text(encode_payload(&additional));
                }
                self.write_element(&success);
                crate::counters::record(crate::counters::Event::Login);
                log::info!(
                    "c2s: {user} authenticated from {} with {}",
                    self.io.peer,
                    mechanism.name()
                );
                self.negotiation.sasl_succeeded(user);
                // Logged in: this connection no longer counts against its address's
                // unauthenticated cap.
                self.slot.authenticated();
                // RFC 6120 §6.4.6: a new stream follows; a client may already have sent
                // its header right behind the last response, so keep unread bytes.
                self.framer.restart();
                self.header_sent = false;
                Flow::Continue
            }
            Outcome::Failure(failure) => self.sasl_failed(failure),
        }
    }

    fn sasl_failed(&mut self, failure: sasl_auth::SaslFailure) -> Flow {
        self.sasl = None;
        self.write_element(&failure.error.to_failure_element());
        if failure.bad_credentials {
            crate::counters::record(crate::counters::Event::LoginFailure);
            let tuning = &self.core.tuning;
            self.core
                .auth_failures
                .record_failure(self.io.peer.ip(), tuning.auth_failure_window, Instant::now());
            log::warn!(
                "c2s: authentication failed for {} from {}: {}",
                failure.user.as_deref().unwrap_or("?"),
                self.io.peer,
                failure.error
            );
        } else if let sb_proto::sasl::SaslError::NotAuthorized(_) = failure.error {
            // A refused channel-binding downgrade: a man in the middle or a client that
            // ignores the -PLUS offer; the operator should see it either way.
            log::warn!("c2s: SASL refused for {}: {}", self.io.peer, failure.error);
        } else {
            log::info!("c2s: SASL failure for {}: {}", self.io.peer, failure.error);
        }
        match self.negotiation.sasl_failed(failure.bad_credentials) {
            Some(error) => Flow::Close(Some(error)),
            None => Flow::Continue,
        }
    }

    async fn bind(&mut self, request: &Element) -> Flow {
        let Some(user) = self.negotiation.user().map(str::to_owned) else {
            return Flow::Close(Some(StreamError::new(StreamErrorCondition::NotAuthorized)));
        };
        let core = Arc::clone(&self.core);
        let jid = match bind::requested_jid(request, &user, &self.settings.domain, || core.unique_id()) {
            Ok(jid) => jid,
            Err(error) => {
                self.write_element(&error.reply_to(request));
                return Flow::Continue;
            }
        };
        let resource = jid.resource().unwrap_or_default().to_owned();
        let (tx, rx) = mpsc::channel(self.core.tuning.outbound_queue_len.max(1));
        let budget = self.core.queue_budget(self.core.tuning.outbound_queue_bytes);
        let control = Arc::new(SessionControl::with_budget(budget));
        let handle = SessionHandle::new(self.core.router.next_session_id(), tx, Arc::clone(&control));
        let meta = SessionMeta {
            peer: self.io.peer,
            since_unix: unix_now(),
            tls: self.io.transport.is_tls(),
        };
        if let Some(replaced) = self.core.router.bind(&user, &resource, handle.clone(), meta) {
            log::info!("c2s: {jid} from {} replaces the session on that resource", self.io.peer);
            replaced.handle.close(StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new session",
            ));
            crate::presence::session_replaced(&self.core, &user, &jid, replaced.presence).await;
        }
        log::info!("c2s: {jid} bound from {}", self.io.peer);
        self.write_element(&bind::answer(request, &jid));
        self.negotiation.bound(jid.clone());
        self.session = Some(Session {
            user,
            jid,
            handle,
            control,
            rx,
            presence: SessionPresence::default(),
        });
        Flow::Continue
    }

    /// Leave the router first (so nothing more is queued here and contacts learn at once),
    /// then send the closing handshake when the stream is still usable.
    async fn finish(&mut self, flow: Flow) {
        if let Some(mut session) = self.session.take() {
            log::info!("c2s: {} ended", session.jid);
            crate::presence::session_ended(
                &self.core,
                &session.user,
                &session.jid,
                session.handle.id(),
                session.presence.directed,
            )
            .await;
            // Unbound now, so nothing new is queued here: what is left goes elsewhere.
            self.core
                .reroute_queued(&mut session.rx, session.control.budget())
                .await;
            session.control.budget().release(std::mem::take(&mut self.io.charged));
        }
        if let Flow::Close(error) = flow {
            if !self.header_sent {
                self.send_header(None);
            }
            if let Some(error) = &error {
                self.write_element(&error.to_element());
            }
            self.io.write_buf.extend_from_slice(b"</stream:stream>");
            // A peer ended for not reading will not read our goodbye either: give it the
            // grace period, not the full write timeout.
            let written = if error.as_ref().is_some_and(crate::budget::ends_slow_reader) {
                self.io.flush(self.core.tuning.close_grace).await.is_ok()
            } else {
                self.flush().await
            };
            if written {
                self.io.close(self.core.tuning.close_grace).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection task's future is allocated once per connection and lives as long as
    /// it; what it holds while idle is the per-session footprint we track.
    #[test]
    fn idle_connection_state_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = TcpStream::connect(addr).await.unwrap();
            let (tcp, peer) = listener.accept().await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = sb_store::Store::open(dir.path()).unwrap();
            let core = Arc::new(Core::new(
                crate::storage::Storage::new(store),
                dir.path().to_owned(),
                crate::ServerTuning::default(),
                crate::core::Settings {
                    domain: "example.com".into(),
                    tls: None,
                    starttls_required: true,
                    max_stanza_bytes: 1024,
                    offline_limit: 1,
                },
            ));
            let slot = core.connection_limiter.try_acquire(peer.ip()).unwrap();
            let tracked = core.connections.track();
            let future = serve(Arc::clone(&core), tcp, peer, slot, tracked);
            let size = size_of_future(&future);
            println!("c2s task future: {size} bytes");
            // Generous bound: a handler future inlined by mistake (instead of boxed) adds
            // kilobytes to every idle session and trips this.
            assert!(size < 4096, "the c2s task future grew to {size} bytes");
        });
    }
}
