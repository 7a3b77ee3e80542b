//! Outgoing connections: links that carry our stanzas to a remote domain, and verify-only
//! streams that ask an authoritative server about a key.
//!
//! Finding the server: static routes when the domain has any (no DNS fallback), else SRV
//! (`_xmpp-server`, and `_xmpps-server` unless TLS is off) ordered by RFC 2782, else the
//! domain's A/AAAA on the fallback port. Each address is tried in turn while failures are
//! connection-level; a peer's considered refusal (dialback invalid) ends the attempt.

use crate::service::{Direction, Federation, LinkInfo, LinkState, Snapshot};
use crate::srv::{Target, TargetSource};
use crate::stream::outgoing::{OutgoingConfig, OutgoingStream, Purpose};
use crate::stream::{LinkError, Output, Verdict, VerifyRequest};
use crate::transport::Conn;
use sb_proto::{Element, Jid, StanzaError, StanzaErrorCondition, log_safe};
use sb_server::budget::{QueueBudget, element_bytes};
use sb_store::SecurityMode;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::{sleep_until, timeout, timeout_at};

#[derive(Clone)]
pub(crate) struct LinkHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Element>,
    /// Bytes of the stanzas in this link's custody (queued, held for a pair's dialback,
    /// being written); charged by `Federation::send_remote`, released by the link task.
    pub budget: Arc<QueueBudget>,
    pub close: Arc<Notify>,
    pub info: Arc<Mutex<LinkInfo>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Start a link to `remote`; it connects when its first stanza arrives.
pub(crate) fn spawn(federation: &Arc<Federation>, remote: &str) -> LinkHandle {
    let (tx, rx) = mpsc::channel(federation.tuning.queue_capacity.max(1));
    let id = federation.next_id();
    let handle = LinkHandle {
        id,
        tx,
        budget: Arc::new(federation.core.queue_budget(federation.tuning.queue_bytes)),
        close: Arc::new(Notify::new()),
        info: Arc::new(Mutex::new(LinkInfo::new(id, Direction::Outgoing, remote))),
    };
    let task = Link {
        federation: Arc::clone(federation),
        remote: remote.to_owned(),
        handle: handle.clone(),
    };
    federation.runtime().spawn(task.run(rx));
    handle
}

fn sender_domain(stanza: &Element) -> Option<String> {
    stanza
        .attr("from")
        .and_then(|f| Jid::parse(f).ok())
        .map(|f| crate::policy::normalize_domain(f.domain()))
}

struct Link {
    federation: Arc<Federation>,
    remote: String,
    handle: LinkHandle,
}

impl Link {
    async fn run(self, mut rx: mpsc::Receiver<Element>) {
        let _tracked = self.federation.core.connections.track();
        let Some(first) = rx.recv().await else {
            self.federation.forget_link(&self.remote, self.handle.id);
            return;
        };
        let snapshot = self.federation.snapshot();
        let local = sender_domain(&first).unwrap_or_else(|| self.federation.core.domain());
        let started = Instant::now();
        let established = establish(
            &self.federation,
            &snapshot,
            &self.remote,
            &local,
            Purpose::Link,
            Some(&self.handle.info),
        )
        .await;
        let (conn, machine) = match established {
            Ok((conn, machine, _)) => (conn, machine),
            Err(error) => {
                log::warn!(
                    "s2s out {local} -> {}: link failed after {} ms: {error}",
                    log_safe(&self.remote),
                    started.elapsed().as_millis()
                );
                self.federation.record_failure(&self.remote, error.to_string());
                self.federation.forget_link(&self.remote, self.handle.id);
                rx.close();
                let condition = error.bounce_condition();
                let text = format!("cannot reach {}: {error}", self.remote);
                self.bounce(first, condition, &text).await;
                while let Some(stanza) = rx.recv().await {
                    self.bounce(stanza, condition, &text).await;
                }
                return;
            }
        };
        log::info!(
            "s2s out {local} -> {}: link up in {} ms",
            log_safe(&self.remote),
            started.elapsed().as_millis()
        );
        self.federation.clear_failure(&self.remote);
        Established {
            link: &self,
            snapshot,
            conn,
            machine,
            held: HashMap::new(),
            held_count: 0,
            pair_deadline: None,
        }
        .run(first, rx)
        .await;
    }

    /// The stanza left this link's custody (written, or handed elsewhere).
    fn release(&self, stanza: &Element) {
        self.handle.budget.release(element_bytes(stanza));
    }

    async fn bounce(&self, stanza: Element, condition: StanzaErrorCondition, text: &str) {
        self.release(&stanza);
        self.federation
            .core
            .bounce(&stanza, StanzaError::with_text(condition, text))
            .await;
    }
}

struct Established<'a> {
    link: &'a Link,
    snapshot: Arc<Snapshot>,
    conn: Conn,
    machine: OutgoingStream,
    /// Stanzas from our domains whose pair is still being authenticated.
    held: HashMap<String, VecDeque<Element>>,
    held_count: usize,
    pair_deadline: Option<tokio::time::Instant>,
}

enum Next {
    Continue,
    Stop(Option<LinkError>),
}

impl Established<'_> {
    async fn run(mut self, first: Element, mut rx: mpsc::Receiver<Element>) {
        let mut stop = self.link.federation.stop_signal();
        let mut core_stop = self.link.federation.core.stop_signal();
        let idle_timeout = self.link.federation.tuning.idle_timeout;
        let mut outcome = self.submit(first).await;
        while matches!(outcome, Next::Continue) {
            outcome = match self.conn.next_event() {
                Ok(Some(event)) => {
                    let outputs = self.machine.handle(event);
                    self.apply(outputs).await
                }
                Err(error) => {
                    let outputs = self.machine.framing_error(error);
                    self.apply(outputs).await
                }
                Ok(None) => {
                    let last = locked(&self.link.handle.info).last_activity;
                    let idle_at = tokio::time::Instant::from_std(last + idle_timeout);
                    let pair_at = self.pair_deadline;
                    tokio::select! {
                        biased;
                        _ = stop.changed() => self.close_now("federation stopped").await,
                        _ = core_stop.changed() => self.close_now("server stopping").await,
                        _ = self.link.handle.close.notified() => self.close_now("closed on request (policy or queue budget)").await,
                        read = self.conn.read() => match read {
                            Ok(0) => Next::Stop(Some(LinkError::ClosedEarly)),
                            Ok(_) => Next::Continue,
                            Err(e) => Next::Stop(Some(LinkError::Connect(format!("read failed: {e}")))),
                        },
                        stanza = rx.recv() => match stanza {
                            Some(stanza) => self.submit(stanza).await,
                            None => self.close_now("no longer needed").await,
                        },
                        _ = sleep_until(idle_at) => {
                            log::info!(
                                "s2s out -> {}: idle for {} s, closing",
                                self.link.remote,
                                idle_timeout.as_secs()
                            );
                            self.close_now("idle").await
                        }
                        _ = async { match pair_at { Some(at) => sleep_until(at).await, None => std::future::pending().await } } => {
                            self.pair_deadline = None;
                            let outputs = self.machine.dialback_timed_out();
                            self.apply(outputs).await
                        }
                    }
                }
            };
        }
        let Next::Stop(error) = outcome else {
            return;
        };
        self.conn.shutdown().await;
        let federation = &self.link.federation;
        federation.forget_link(&self.link.remote, self.link.handle.id);
        rx.close();
        let error = error.unwrap_or(LinkError::ClosedEarly);
        for (_, stanzas) in std::mem::take(&mut self.held) {
            for stanza in stanzas {
                self.link
                    .bounce(
                        stanza,
                        error.bounce_condition(),
                        &format!("link to {} closed: {error}", self.link.remote),
                    )
                    .await;
            }
        }
        // Stanzas that were queued for this link start a new one.
        while let Some(stanza) = rx.recv().await {
            self.link.release(&stanza);
            if let Err(e) = federation.send_remote(stanza.clone()) {
                log::debug!("s2s out -> {}: requeue failed: {e}", self.link.remote);
                let error = StanzaError::with_text(StanzaErrorCondition::RemoteServerNotFound, "link closed");
                federation.core.bounce(&stanza, error).await;
            }
        }
        log::info!("s2s out -> {}: link closed", self.link.remote);
    }

    async fn close_now(&mut self, why: &str) -> Next {
        log::debug!("s2s out -> {}: closing ({why})", self.link.remote);
        let outputs = self.machine.close();
        let tls_deadline = self.tls_deadline();
        let _ = perform(&mut self.conn, &mut self.machine, &self.snapshot, outputs, tls_deadline).await;
        Next::Stop(None)
    }

    fn touch(&self) {
        locked(&self.link.handle.info).last_activity = Instant::now();
    }

    /// An established link does not start TLS again; should it ever, the same bound applies.
    fn tls_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.link.federation.tuning.dialback_timeout
    }

    async fn submit(&mut self, stanza: Element) -> Next {
        let Some(local) = sender_domain(&stanza) else {
            self.link.release(&stanza);
            log::debug!(
                "s2s out -> {}: dropping a stanza without a valid from",
                self.link.remote
            );
            return Next::Continue;
        };
        if self.machine.auth_method(&local).is_some() {
            let charged = element_bytes(&stanza);
            return match self.machine.encode_stanza(stanza) {
                Ok(bytes) => {
                    self.touch();
                    let written = self.conn.write(&bytes).await;
                    self.link.handle.budget.release(charged);
                    match written {
                        Ok(()) => Next::Continue,
                        Err(e) => Next::Stop(Some(LinkError::Connect(format!("write failed: {e}")))),
                    }
                }
                Err(stanza) => {
                    self.link
                        .bounce(stanza, StanzaErrorCondition::RemoteServerNotFound, "link not ready")
                        .await;
                    Next::Continue
                }
            };
        }
        if self.held_count >= self.link.federation.tuning.queue_capacity {
            self.link
                .bounce(
                    stanza,
                    StanzaErrorCondition::ResourceConstraint,
                    "too many stanzas waiting",
                )
                .await;
            return Next::Continue;
        }
        self.held.entry(local.clone()).or_default().push_back(stanza);
        self.held_count += 1;
        if self.machine.is_pending(&local) {
            return Next::Continue;
        }
        log::info!(
            "s2s out {local} -> {}: piggybacking a new domain pair",
            self.link.remote
        );
        self.pair_deadline = Some(tokio::time::Instant::now() + self.link.federation.tuning.dialback_timeout);
        let outputs = self.machine.add_pair(&local);
        self.apply(outputs).await
    }

    async fn apply(&mut self, outputs: Vec<Output>) -> Next {
        let tls_deadline = self.tls_deadline();
        let events = match perform(&mut self.conn, &mut self.machine, &self.snapshot, outputs, tls_deadline).await {
            Ok(events) => events,
            Err(error) => return Next::Stop(Some(error)),
        };
        for event in events {
            match event {
                Output::Authenticated { local, method, .. } => {
                    {
                        let mut info = locked(&self.link.handle.info);
                        if !info.local_domains.contains(&local) {
                            info.local_domains.push(local.clone());
                        }
                        info.auth.get_or_insert(method);
                    }
                    if self.machine.is_settled() {
                        self.pair_deadline = None;
                    }
                    for stanza in self.held.remove(&local).unwrap_or_default() {
                        self.held_count = self.held_count.saturating_sub(1);
                        if let Next::Stop(error) = Box::pin(self.submit(stanza)).await {
                            return Next::Stop(error);
                        }
                    }
                }
                Output::PairFailed { local, error } => {
                    log::warn!("s2s out {local} -> {}: pair refused: {error}", self.link.remote);
                    for stanza in self.held.remove(&local).unwrap_or_default() {
                        self.held_count = self.held_count.saturating_sub(1);
                        self.link
                            .bounce(
                                stanza,
                                error.bounce_condition(),
                                &format!("{} refused {local}: {error}", self.link.remote),
                            )
                            .await;
                    }
                }
                Output::Close { error } => return Next::Stop(error),
                _ => {}
            }
        }
        Next::Continue
    }
}

/// Carry out the I/O outputs (write, STARTTLS, restart) and return the others in order.
/// A STARTTLS handshake must be over by `tls_deadline`: a peer that answers `<proceed/>` and
/// then stalls must not hold the link (and its queued stanzas) for ever.
async fn perform(
    conn: &mut Conn,
    machine: &mut OutgoingStream,
    snapshot: &Snapshot,
    outputs: Vec<Output>,
    tls_deadline: tokio::time::Instant,
) -> Result<Vec<Output>, LinkError> {
    let mut queue: VecDeque<Output> = outputs.into();
    let mut events = Vec::new();
    while let Some(output) = queue.pop_front() {
        match output {
            Output::Write(bytes) => conn
                .write(&bytes)
                .await
                .map_err(|e| LinkError::Connect(format!("write to {} failed: {e}", conn.io.peer)))?,
            Output::StartTls => {
                let Some(tls) = &snapshot.tls else {
                    return Err(LinkError::Certificate("TLS is unavailable on this node".to_owned()));
                };
                let started = Instant::now();
                timeout_at(
                    tls_deadline,
                    conn.io
                        .transport
                        .start_tls_client(Arc::clone(&tls.client), machine.remote()),
                )
                .await
                .map_err(|_| LinkError::Connect(format!("TLS handshake with {} timed out", conn.io.peer)))?
                .map_err(|e| LinkError::Connect(format!("TLS handshake with {} failed: {e}", conn.io.peer)))?;
                check_certificate(conn, snapshot, machine.remote())?;
                log::info!(
                    "s2s out {} -> {}: TLS up with {} in {} ms ({})",
                    machine.local(),
                    machine.remote(),
                    conn.io.peer,
                    started.elapsed().as_millis(),
                    conn.io.transport.tls_description().unwrap_or_default()
                );
                conn.framer.reset();
                queue.extend(machine.tls_established());
            }
            Output::Restart => conn.framer.restart(),
            other => events.push(other),
        }
    }
    Ok(events)
}

/// The peer's certificate must name its domain, and unless verification is turned off
/// (`federation verify off`, or the domain exempted with `federation verify-exempt`) its
/// chain must lead to the public roots or the federation trust bundle.
fn check_certificate(conn: &Conn, snapshot: &Snapshot, remote: &str) -> Result<(), LinkError> {
    let Some(tls) = &snapshot.tls else {
        return Err(LinkError::Certificate("TLS is unavailable on this node".to_owned()));
    };
    let chain = conn.io.transport.peer_certificates();
    let judged = tls.trust.evaluate(&chain, Some(remote));
    if !judged.names_domain(remote) {
        return Err(LinkError::Certificate(format!(
            "the certificate of {} does not name {remote} (names: {})",
            conn.io.peer,
            if judged.names.is_empty() {
                "none".to_owned()
            } else {
                judged.names.join(", ")
            }
        )));
    }
    let config = &snapshot.config;
    let verify = config.verify_outgoing && !config.unverified.iter().any(|d| d == remote);
    if verify && !judged.chain_trusted {
        return Err(LinkError::Certificate(format!(
            "the certificate of {remote} ({}) is not trusted: its chain leads neither to the public roots nor to \
             the federation trust bundle ({}); add its CA with 'federation trust <bundle>' or exempt it with \
             'federation verify-exempt add {remote}'",
            conn.io.peer,
            config.trust_bundle.as_deref().unwrap_or("none set"),
        )));
    }
    if !verify {
        log::warn!(
            "s2s out -> {}: certificate chain of {} not verified (verification is off for it)",
            log_safe(remote),
            conn.io.peer
        );
    }
    Ok(())
}

/// Where `domain`'s server is: routes, or DNS.
async fn targets(federation: &Federation, snapshot: &Snapshot, domain: &str) -> Result<Vec<Target>, LinkError> {
    if let Some(routes) = snapshot.config.routes.get(domain) {
        let targets = crate::dns::route_targets(routes, federation.tuning.fallback_port);
        log::info!(
            "s2s: {domain} has static routes: {}",
            targets
                .iter()
                .map(|t| format!("{}:{}", t.host, t.port))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(targets);
    }
    let Some(resolver) = &snapshot.resolver else {
        return Err(LinkError::Dns("the resolver is unavailable".to_owned()));
    };
    let direct_tls = snapshot.config.security != SecurityMode::NoTls;
    resolver
        .server_targets(domain, direct_tls, federation.tuning.fallback_port)
        .await
        .map_err(|e| LinkError::Dns(e.to_string()))
}

/// Connect to `remote` and run the stream until `purpose` is reached: the pair for `local`
/// authenticated (a link), or every question answered (a verify-only stream, already closed).
pub(crate) async fn establish(
    federation: &Federation,
    snapshot: &Snapshot,
    remote: &str,
    local: &str,
    purpose: Purpose,
    info: Option<&Arc<Mutex<LinkInfo>>>,
) -> Result<(Conn, OutgoingStream, Vec<Output>), LinkError> {
    let targets = targets(federation, snapshot, remote).await?;
    let Some(resolver) = snapshot.resolver.clone() else {
        return Err(LinkError::Dns("the resolver is unavailable".to_owned()));
    };
    let mut last = LinkError::Dns(format!("no server found for {remote}"));
    for target in targets {
        let addresses = match resolver.addresses(&target.host).await {
            Ok(addresses) => addresses,
            Err(e) => {
                last = LinkError::Dns(e.to_string());
                continue;
            }
        };
        for ip in addresses {
            let addr = SocketAddr::new(ip, target.port);
            if target.source != TargetSource::Route
                && !snapshot.config.allow_internal
                && crate::internal::is_internal(ip)
            {
                log::warn!(
                    "s2s out {local} -> {}: refusing {addr}: DNS ({}) puts {} at an internal address; \
                     name it in a static route or set 'federation allow-internal on'",
                    log_safe(remote),
                    target.source.as_str(),
                    log_safe(&target.host)
                );
                last = LinkError::Connect(format!(
                    "{} resolves to an internal address ({addr}), which is refused",
                    target.host
                ));
                continue;
            }
            log::info!(
                "s2s out {local} -> {remote}: trying {addr} ({}{})",
                target.source.as_str(),
                if target.direct_tls { ", direct TLS" } else { "" }
            );
            if let Some(info) = info {
                let mut info = locked(info);
                info.address = Some(addr);
                info.state = LinkState::Connecting;
            }
            match attempt(
                federation,
                snapshot,
                remote,
                local,
                purpose.clone(),
                addr,
                target.direct_tls,
                info,
            )
            .await
            {
                Ok(done) => return Ok(done),
                Err(error) => {
                    log::warn!("s2s out {local} -> {remote}: {addr}: {error}");
                    let next = error.try_next_target();
                    last = error;
                    if !next {
                        return Err(last);
                    }
                }
            }
        }
    }
    Err(last)
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    federation: &Federation,
    snapshot: &Snapshot,
    remote: &str,
    local: &str,
    purpose: Purpose,
    addr: SocketAddr,
    direct_tls: bool,
    info: Option<&Arc<Mutex<LinkInfo>>>,
) -> Result<(Conn, OutgoingStream, Vec<Output>), LinkError> {
    let started = Instant::now();
    let tcp = match timeout(federation.tuning.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(LinkError::Connect(format!("cannot connect to {addr}: {e}"))),
        Err(_) => return Err(LinkError::Connect(format!("connection to {addr} timed out"))),
    };
    log::info!(
        "s2s out {local} -> {remote}: connected to {addr} in {} ms",
        started.elapsed().as_millis()
    );
    let mut conn = Conn::new(tcp, addr, snapshot.max_stanza_bytes);
    let mut machine = OutgoingStream::new(OutgoingConfig {
        local: local.to_owned(),
        remote: remote.to_owned(),
        security: snapshot.config.security,
        secret: snapshot.secret(),
        purpose: purpose.clone(),
    });
    let deadline = tokio::time::Instant::now() + federation.tuning.dialback_timeout;
    if direct_tls {
        let Some(tls) = &snapshot.tls else {
            return Err(LinkError::Certificate("TLS is unavailable on this node".to_owned()));
        };
        timeout_at(
            deadline,
            conn.io
                .transport
                .start_tls_client(Arc::clone(&tls.client_direct), remote),
        )
        .await
        .map_err(|_| LinkError::Connect(format!("TLS handshake with {addr} timed out")))?
        .map_err(|e| LinkError::Connect(format!("TLS handshake with {addr} failed: {e}")))?;
        check_certificate(&conn, snapshot, remote)?;
        machine = machine.with_direct_tls();
    }
    let outputs = machine.start();
    let verify_only = matches!(purpose, Purpose::VerifyOnly(_));
    let mut collected = Vec::new();
    let mut pending = perform(&mut conn, &mut machine, snapshot, outputs, deadline).await?;
    loop {
        for output in pending.drain(..) {
            match &output {
                Output::Authenticated {
                    local: done, method, ..
                } if !verify_only && done == local => {
                    if let Some(info) = info {
                        let mut info = locked(info);
                        info.state = LinkState::Up;
                        info.auth = Some(*method);
                        info.tls = conn.io.transport.tls_description();
                        info.local_domains = vec![local.to_owned()];
                        info.last_activity = Instant::now();
                    }
                    collected.push(output);
                    return Ok((conn, machine, collected));
                }
                Output::PairFailed { local: failed, error } if failed == local => return Err(error.clone()),
                Output::Close { error } => {
                    if verify_only && machine.is_settled() {
                        collected.push(output.clone());
                        conn.shutdown().await;
                        return Ok((conn, machine, collected));
                    }
                    return Err(error.clone().unwrap_or(LinkError::ClosedEarly));
                }
                _ => collected.push(output),
            }
        }
        if let Some(info) = info {
            let mut info = locked(info);
            info.state = LinkState::Authenticating;
            info.tls = conn.io.transport.tls_description();
        }
        let outputs = match conn.next_event() {
            Ok(Some(event)) => machine.handle(event),
            Err(error) => machine.framing_error(error),
            Ok(None) => match timeout_at(deadline, conn.read()).await {
                Ok(Ok(0)) => machine.handle(sb_proto::StreamEvent::End),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(LinkError::Connect(format!("read from {addr} failed: {e}"))),
                Err(_) => {
                    let outputs = machine.dialback_timed_out();
                    let _ = perform(&mut conn, &mut machine, snapshot, outputs, deadline).await;
                    conn.shutdown().await;
                    return Err(LinkError::DialbackTimeout);
                }
            },
        };
        pending = perform(&mut conn, &mut machine, snapshot, outputs, deadline).await?;
    }
}

/// Receiving server: ask the authoritative server for `request.originating` whether the key
/// is its own, on a verify-only stream (closed right after the answer).
///
/// Whatever kept us from an answer (no DNS records, a refused or internal target, a timeout,
/// a TLS failure) is one verdict for the peer, `remote-connection-failed`: telling them apart
/// would let a peer whose DNS points at addresses of its choosing map what answers where.
/// The log has the real reason.
pub(crate) async fn verify(federation: &Federation, request: VerifyRequest) -> Verdict {
    let snapshot = federation.snapshot();
    let started = Instant::now();
    log::info!(
        "s2s: verifying the dialback key of {} (stream {}) with its authoritative server",
        request.originating,
        request.stream_id
    );
    let outcome = timeout(
        federation.tuning.dialback_timeout,
        establish(
            federation,
            &snapshot,
            &request.originating.clone(),
            &request.receiving.clone(),
            Purpose::VerifyOnly(vec![request.clone()]),
            None,
        ),
    )
    .await;
    let verdict = match outcome {
        Ok(Ok((_, _, outputs))) => outputs
            .into_iter()
            .find_map(|o| match o {
                Output::Verified { verdict, .. } => Some(verdict),
                _ => None,
            })
            .unwrap_or(Verdict::ConnectionFailed),
        Ok(Err(error)) => {
            log::warn!(
                "s2s: verification with the authoritative server of {} failed: {error}",
                log_safe(&request.originating)
            );
            Verdict::ConnectionFailed
        }
        Err(_) => {
            log::warn!(
                "s2s: verification with the authoritative server of {} took too long",
                log_safe(&request.originating)
            );
            Verdict::ConnectionFailed
        }
    };
    log::info!(
        "s2s: dialback key of {} for {}: {} ({} ms)",
        request.originating,
        request.receiving,
        verdict.describe(),
        started.elapsed().as_millis()
    );
    verdict
}
