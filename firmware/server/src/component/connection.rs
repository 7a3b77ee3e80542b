//! One Call Bridge connection: TLS on the socket, the XEP-0114 handshake, then stanzas both
//! ways until either side ends it.
//!
//! Like a client connection, the task waits on everything at once (socket, its outbound
//! queue, close requests, shutdown, timers); the byte handling is the shared
//! [`StreamIo`], the protocol decisions are [`Accept`]'s.

use super::accept::{Accept, AuthFailureReason, Inbound, Refusal};
use super::registry::{AuthFailure, ComponentLink};
use crate::core::{Core, TrackedConnection, unix_now};
use crate::limits::ConnectionSlot;
use crate::router::{Outbound, SessionControl, SessionHandle, SessionMeta};
use crate::stream_io::{FlushError, StreamIo, Wake};
use crate::transport::Transport;
use ring::rand::{SecureRandom, SystemRandom};
use sb_proto::{
    Element, FramerConfig, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition, StreamEvent,
    StreamFramer, StreamHeader, ns,
};
use sb_store::Secret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

/// Queued stanzas written in one go before the socket is flushed. A bridge carries the
/// traffic of many users, so its batches are larger than a client's.
const OUTBOUND_BATCH: usize = 128;

/// Bytes of randomness in a stream id: the handshake digest covers it, so a recorded
/// handshake is worthless on any other stream.
const STREAM_ID_BYTES: usize = 16;

/// The authenticated side of the connection.
struct Attached {
    link: Arc<ComponentLink>,
    control: Arc<SessionControl>,
    rx: mpsc::Receiver<Outbound>,
}

enum Flow {
    Continue,
    Close(Option<StreamError>),
    /// The socket is unusable: stop without a closing handshake.
    Abort,
}

struct Connection {
    core: Arc<Core>,
    io: StreamIo,
    framer: StreamFramer,
    accept: Accept,
    /// Between the header and the handshake: the secret the claimed bridge must prove.
    secret: Option<Secret>,
    attached: Option<Attached>,
    header_sent: bool,
    accepted_at: Instant,
    stop: watch::Receiver<u64>,
    slot: ConnectionSlot,
    _tracked: TrackedConnection,
}

fn fresh_stream_id() -> Option<String> {
    let mut random = [0u8; STREAM_ID_BYTES];
    SystemRandom::new().fill(&mut random).ok()?;
    Some(random.iter().map(|b| format!("{b:02x}")).collect())
}

/// Serve one accepted component connection to its end; `tls` says whether TLS runs on the
/// socket (always, except on a loopback listener explicitly configured for plain TCP).
pub async fn serve(
    core: Arc<Core>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: bool,
    slot: ConnectionSlot,
    tracked: TrackedConnection,
) {
    let _ = tcp.set_nodelay(true);
    let settings = core.settings();
    let mut transport = Transport::Plain(tcp);
    if tls {
        let Some(config) = settings.tls.clone() else {
            log::error!("component: refusing {peer}: no usable TLS identity (see 'xmpp status')");
            return;
        };
        match timeout(core.tuning.pre_auth_timeout, transport.start_tls(config)).await {
            Ok(Ok(())) => log::debug!(
                "component: TLS with {peer}: {}",
                transport.tls_description().unwrap_or_default()
            ),
            Ok(Err(e)) => {
                log::info!("component: TLS handshake with {peer} failed: {e}");
                return;
            }
            Err(_) => {
                log::info!("component: TLS handshake with {peer} timed out");
                return;
            }
        }
    }
    let Some(stream_id) = fresh_stream_id() else {
        log::error!("component: refusing {peer}: no system randomness for a stream id");
        return;
    };
    let mut connection = Connection {
        framer: StreamFramer::new(FramerConfig::with_max_stanza_bytes(settings.max_stanza_bytes)),
        accept: Accept::new(settings.domain.clone(), stream_id),
        stop: core.stop_signal(),
        io: StreamIo::new(transport, peer),
        core,
        secret: None,
        attached: None,
        header_sent: false,
        accepted_at: Instant::now(),
        slot,
        _tracked: tracked,
    };
    log::debug!("component: connection from {peer}");
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
                let Connection { io, attached, stop, .. } = self;
                let (control_ref, rx_ref) = match attached {
                    Some(a) => (Some(&*a.control), Some(&mut a.rx)),
                    None => (None, None),
                };
                io.wait(stop, control_ref, rx_ref, wake_at).await
            };
            let flow = match wake {
                Wake::Shutdown => Flow::Close(Some(StreamError::new(StreamErrorCondition::SystemShutdown))),
                Wake::Control => match self.attached.as_ref().and_then(|a| a.control.take_close()) {
                    Some(error) => {
                        log::info!("component: closing {}: {error}", self.describe());
                        Flow::Close(Some(error))
                    }
                    None => Flow::Continue,
                },
                Wake::Read(Ok(0)) => {
                    log::debug!("component: {} closed the connection", self.describe());
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
                    log::debug!("component: read from {} failed: {e}", self.describe());
                    Flow::Abort
                }
                Wake::Outbound(Some(item)) => {
                    self.write_outbound(item);
                    self.drain_outbound();
                    Flow::Continue
                }
                // Every sender is gone: the link was dropped; a close request follows.
                Wake::Outbound(None) => Flow::Continue,
                Wake::Timer => self.on_timer(),
            };
            if !matches!(flow, Flow::Abort) && !self.flush().await {
                return Flow::Abort;
            }
            // A close request that arrived while the flush waited (see `flush_session`).
            if let Some(error) = self.attached.as_ref().and_then(|a| a.control.take_close()) {
                log::info!("component: closing {}: {error}", self.describe());
                return Flow::Close(Some(error));
            }
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
    }

    fn next_timer(&self) -> Instant {
        if self.attached.is_some() {
            self.io.liveness_deadline(&self.core.tuning)
        } else {
            self.accepted_at + self.core.tuning.pre_auth_timeout
        }
    }

    fn on_timer(&mut self) -> Flow {
        let now = Instant::now();
        if self.attached.is_none() {
            if now >= self.accepted_at + self.core.tuning.pre_auth_timeout {
                log::info!("component: {} did not complete the handshake in time", self.describe());
                return Flow::Close(Some(StreamError::with_text(
                    StreamErrorCondition::ConnectionTimeout,
                    "the handshake took too long",
                )));
            }
            return Flow::Continue;
        }
        match self.io.check_liveness(&self.core.tuning, now) {
            Ok(()) => Flow::Continue,
            Err(error) => {
                log::info!("component: {} idle for too long", self.describe());
                Flow::Close(Some(error))
            }
        }
    }

    fn describe(&self) -> String {
        match &self.attached {
            Some(a) => format!("{} ({})", a.link.name(), self.io.peer),
            None => self.io.peer.to_string(),
        }
    }

    fn write_element(&mut self, element: &Element) {
        element.write_to(&mut self.io.write_buf, ns::COMPONENT);
    }

    fn write_outbound(&mut self, item: Outbound) {
        self.io.charged += crate::budget::outbound_bytes(&item);
        match item {
            // The link already moved it into the component namespace.
            Outbound::Stanza(stanza) => stanza.write_to(&mut self.io.write_buf, ns::COMPONENT),
            // Bytes serialized for a jabber:client stream carry no namespace declaration on
            // the stanza itself, so on this stream they read as jabber:component:accept.
            Outbound::Raw(bytes) => self.io.write_buf.extend_from_slice(&bytes),
        }
    }

    /// Take what else is queued, up to the write buffer budget (see the client's).
    fn drain_outbound(&mut self) {
        for _ in 0..OUTBOUND_BATCH {
            if self.io.write_buf.len() >= self.core.tuning.write_buffer_bytes {
                break;
            }
            let Some(item) = self.attached.as_mut().and_then(|a| a.rx.try_recv().ok()) else {
                break;
            };
            self.write_outbound(item);
        }
    }

    async fn flush(&mut self) -> bool {
        let control = self.attached.as_ref().map(|a| &*a.control);
        match self.io.flush_session(&self.core.tuning, control).await {
            Ok(()) => true,
            Err(FlushError::Stalled) => {
                match self.attached.as_ref().and_then(|a| a.control.take_close()) {
                    Some(error) => log::warn!(
                        "component: closing {} without a goodbye (it does not read): {error}",
                        self.describe()
                    ),
                    None => log::warn!("component: {} does not read; dropping it", self.describe()),
                }
                false
            }
            Err(e) => {
                log::debug!("component: {} to {}", e, self.describe());
                false
            }
        }
    }

    async fn process_input(&mut self) -> Flow {
        loop {
            // Replies go out before more requests are read once they fill the write budget.
            if self.io.write_buf.len() > self.core.tuning.write_buffer_bytes && !self.flush().await {
                return Flow::Abort;
            }
            let event = match self.framer.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Flow::Continue,
                Err(error) => {
                    log::info!("component: stream error from {}: {error}", self.describe());
                    if self.attached.is_none() {
                        self.record_failure(AuthFailureReason::BadHandshake);
                    }
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

    fn send_header(&mut self, requested_to: Option<&str>) {
        let header: StreamHeader = self.accept.response_header(requested_to);
        self.io.write_buf.extend_from_slice(&header.to_bytes());
        self.header_sent = true;
    }

    fn on_header(&mut self, header: StreamHeader) -> Flow {
        self.send_header(header.to.as_deref());
        let claim = match self.accept.on_header(&header) {
            Ok(claim) => claim,
            Err(refusal) => return self.refuse(refusal),
        };
        let ip = self.io.peer.ip();
        let tuning = &self.core.tuning;
        if !self.core.auth_failures.allowed(
            ip,
            tuning.max_auth_failures_per_ip,
            tuning.auth_failure_window,
            Instant::now(),
        ) {
            // Refused before the secret is looked up, so a guessing source learns nothing
            // more until its window ends; not recorded for `xmpp status` (the failures that
            // led here are), so a flood cannot crowd out real failures.
            log::info!("component: refusing {ip}: too many failed handshakes from this address");
            self.secret = None;
            return Flow::Close(Some(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many failed handshakes from this address; try again later",
            )));
        }
        match self.core.storage.callbridge_secret(&claim.name) {
            Ok(Some(secret)) => {
                log::debug!(
                    "component: {} asks to be Call Bridge {} ({})",
                    self.io.peer,
                    claim.name,
                    claim.address
                );
                self.secret = Some(secret);
                self.accept.secret_found();
                Flow::Continue
            }
            Ok(None) => {
                let refusal = self.accept.secret_missing();
                self.refuse(refusal)
            }
            Err(e) => {
                log::error!("component: cannot look up Call Bridge {}: {e}", claim.name);
                Flow::Close(Some(StreamError::new(StreamErrorCondition::InternalServerError)))
            }
        }
    }

    fn record_failure(&self, reason: AuthFailureReason) {
        self.core.components.record_failure(AuthFailure {
            name: self.accept.requested_name().unwrap_or("-").to_owned(),
            peer: self.io.peer,
            at_unix: unix_now(),
            reason,
            count: 1,
        });
    }

    /// Record and log a refused handshake (never with the digest it sent) and close.
    fn refuse(&mut self, refusal: Refusal) -> Flow {
        self.secret = None;
        self.record_failure(refusal.reason);
        if matches!(
            refusal.reason,
            AuthFailureReason::WrongSecret | AuthFailureReason::UnknownName
        ) {
            // The same per-address limiter as client logins: guessing a secret or a name.
            let tuning = &self.core.tuning;
            self.core
                .auth_failures
                .record_failure(self.io.peer.ip(), tuning.auth_failure_window, Instant::now());
        }
        log::warn!(
            "component: refused Call Bridge '{}' from {}: {} (<{}/>)",
            // The header's `to` as the peer wrote it.
            sb_proto::log_safe(self.accept.requested_name().unwrap_or("-")),
            self.io.peer,
            refusal.reason,
            refusal.error.condition
        );
        Flow::Close(Some(refusal.error))
    }

    async fn on_element(&mut self, element: Element) -> Flow {
        if self.attached.is_some() {
            return self.on_stanza(element).await;
        }
        let Some(secret) = self.secret.take() else {
            let refusal = self.accept.unexpected_before_handshake();
            return self.refuse(refusal);
        };
        match self.accept.on_handshake(&element, secret.expose()) {
            Ok(claim) => {
                self.attach(claim.name, claim.address, &secret);
                Flow::Continue
            }
            Err(refusal) => self.refuse(refusal),
        }
    }

    fn attach(&mut self, name: String, address: String, secret: &Secret) {
        let (tx, rx) = mpsc::channel(self.core.tuning.component_queue_len.max(1));
        let budget = self.core.queue_budget(self.core.tuning.component_queue_bytes);
        let control = Arc::new(SessionControl::with_budget(budget));
        let handle = SessionHandle::new(self.core.router.next_session_id(), tx, Arc::clone(&control));
        let meta = SessionMeta {
            peer: self.io.peer,
            since_unix: unix_now(),
            tls: self.io.transport.is_tls(),
        };
        let link = Arc::new(ComponentLink::new(name, address, handle, meta, secret.expose()));
        self.slot.authenticated();
        // The answer goes into the write buffer before anything routed to the new link can:
        // this task is the only writer and reads the queue only after this returns.
        self.write_element(&Element::new("handshake", ns::COMPONENT));
        let tls = if self.io.transport.is_tls() { "TLS" } else { "plain TCP" };
        log::info!(
            "component: Call Bridge {} ({}) authenticated from {} over {tls}",
            link.name(),
            link.address(),
            self.io.peer
        );
        if let Some(replaced) = self.core.components.attach(&self.core.router, Arc::clone(&link)) {
            log::warn!(
                "component: Call Bridge {} connected again from {}; closing its connection from {} with <conflict/>",
                link.name(),
                self.io.peer,
                replaced.meta().peer
            );
            replaced.close(StreamError::with_text(
                StreamErrorCondition::Conflict,
                "replaced by a new connection of this Call Bridge",
            ));
        }
        self.attached = Some(Attached { link, control, rx });
    }

    async fn on_stanza(&mut self, element: Element) -> Flow {
        match self.accept.on_stanza(element) {
            Ok(Inbound::Route(stanza)) => {
                self.core.route(stanza).await;
                Flow::Continue
            }
            Ok(Inbound::Reply(reply)) => {
                self.write_element(&reply);
                Flow::Continue
            }
            Ok(Inbound::Drop) => Flow::Continue,
            Err(error) => {
                log::warn!("component: closing {}: {error}", self.describe());
                Flow::Close(Some(error))
            }
        }
    }

    /// Leave the router first (so nothing more is queued here), answer what was queued and
    /// will now never be delivered, then send the closing handshake when the stream is
    /// still usable.
    async fn finish(&mut self, flow: Flow) {
        if let Some(mut attached) = self.attached.take() {
            self.core.components.detach(&self.core.router, &attached.link);
            log::info!(
                "component: Call Bridge {} from {} disconnected",
                attached.link.name(),
                self.io.peer
            );
            attached.rx.close();
            attached.control.budget().release(std::mem::take(&mut self.io.charged));
            while let Ok(item) = attached.rx.try_recv() {
                attached.control.budget().release(crate::budget::outbound_bytes(&item));
                if let Outbound::Stanza(mut stanza) = item
                    && stanza.name != "presence"
                {
                    sb_proto::retarget_namespace(&mut stanza, ns::COMPONENT, ns::CLIENT);
                    self.core
                        .bounce(&stanza, StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
                        .await;
                }
            }
        }
        if let Flow::Close(error) = flow {
            if !self.header_sent {
                self.send_header(None);
            }
            if let Some(error) = &error {
                self.write_element(&error.to_element());
            }
            self.io.write_buf.extend_from_slice(sb_proto::STREAM_CLOSE);
            // A peer ended for not reading will not read our goodbye either.
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
