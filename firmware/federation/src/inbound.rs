//! Incoming connections on the s2s listener: one task per connection drives the receiving /
//! authoritative state machine, asks authoritative servers about keys (verify-only streams
//! on their own tasks) and hands authenticated stanzas to the core.

use crate::service::{Direction, Federation, LinkInfo, LinkState, Snapshot};
use crate::stream::incoming::{IncomingConfig, IncomingStream};
use crate::stream::{Output, Verdict, VerifyRequest};
use crate::transport::Conn;
use sb_proto::{StreamError, StreamErrorCondition};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) async fn serve(federation: Arc<Federation>, tcp: TcpStream, peer: SocketAddr) {
    let _tracked = federation.core.connections.track();
    let snapshot = federation.snapshot();
    if !snapshot.enabled {
        return;
    }
    let id = federation.next_id();
    let info = Arc::new(Mutex::new(LinkInfo::new(id, Direction::Incoming, "")));
    {
        let mut info = locked(&info);
        info.address = Some(peer);
        info.state = LinkState::Authenticating;
    }
    let close = Arc::new(tokio::sync::Notify::new());
    federation.register_incoming(Arc::clone(&info), Arc::clone(&close));
    log::info!("s2s in: connection from {peer}");
    let machine = IncomingStream::new(IncomingConfig {
        local_domains: federation.local_domains(),
        security: snapshot.config.security,
        tls_available: snapshot.tls.as_ref().is_some_and(|t| t.server.is_some()),
        secret: snapshot.secret(),
        client_certs: snapshot.config.client_certs,
        policy: snapshot.policy.clone(),
        stream_id_base: federation.core.unique_id(),
    });
    let mut connection = Inbound {
        conn: Conn::new(tcp, peer, snapshot.max_stanza_bytes),
        federation: Arc::clone(&federation),
        snapshot,
        machine,
        info,
        close,
        // A peer has twice the dialback timeout to authenticate: its own dialback can wait
        // for ours to another server.
        auth_deadline: tokio::time::Instant::now() + federation.tuning.dialback_timeout * 2,
    };
    connection.run().await;
    connection.conn.shutdown().await;
    federation.unregister_incoming(id);
    log::info!("s2s in: connection from {peer} closed");
}

struct Inbound {
    conn: Conn,
    federation: Arc<Federation>,
    snapshot: Arc<Snapshot>,
    machine: IncomingStream,
    info: Arc<Mutex<LinkInfo>>,
    /// The administrator's policy no longer allows the peer.
    close: Arc<tokio::sync::Notify>,
    /// Authentication, TLS handshake included, must be over by then.
    auth_deadline: tokio::time::Instant,
}

impl Inbound {
    async fn run(&mut self) {
        let (verify_tx, mut verify_rx) = mpsc::channel::<(VerifyRequest, Verdict)>(8);
        let mut stop = self.federation.stop_signal();
        let mut core_stop = self.federation.core.stop_signal();
        let tuning = self.federation.tuning.clone();
        let auth_deadline = self.auth_deadline;
        loop {
            let outputs = match self.conn.next_event() {
                Ok(Some(event)) => self.machine.handle(event),
                Err(error) => self.machine.framing_error(error),
                Ok(None) => {
                    // A verification pending at the auth deadline gets one more dialback timeout
                    // to answer, then the stream ends whatever is pending. (Waiting on the passed
                    // deadline itself would be ready at every turn and spin the loop.)
                    let grace_deadline = auth_deadline + tuning.dialback_timeout;
                    let now = tokio::time::Instant::now();
                    let deadline = if self.machine.is_authenticated() {
                        tokio::time::Instant::from_std(locked(&self.info).last_activity + tuning.idle_timeout)
                    } else if now >= auth_deadline && self.machine.has_pending_verification() {
                        grace_deadline
                    } else {
                        auth_deadline
                    };
                    tokio::select! {
                        biased;
                        _ = stop.changed() => self.machine.fail(StreamError::new(StreamErrorCondition::SystemShutdown)),
                        _ = core_stop.changed() => self.machine.fail(StreamError::new(StreamErrorCondition::SystemShutdown)),
                        _ = self.close.notified() => self.machine.fail(StreamError::with_text(
                            StreamErrorCondition::PolicyViolation,
                            "federation with your domain is no longer allowed",
                        )),
                        answer = verify_rx.recv() => match answer {
                            Some((request, verdict)) => self.machine.verify_outcome(&request, verdict),
                            None => Vec::new(),
                        },
                        read = self.conn.read() => match read {
                            Ok(0) => return,
                            Ok(_) => continue,
                            Err(e) => {
                                log::debug!("s2s in {}: read failed: {e}", self.conn.io.peer);
                                return;
                            }
                        },
                        _ = sleep_until(deadline) => {
                            if self.machine.is_authenticated() {
                                log::info!("s2s in {}: idle for {} s, closing", self.conn.io.peer, tuning.idle_timeout.as_secs());
                                self.machine.close()
                            } else if self.machine.has_pending_verification() && tokio::time::Instant::now() < grace_deadline {
                                // The verification has its own timeout and will answer; the
                                // next turn waits on the grace deadline.
                                continue;
                            } else {
                                self.machine.fail(StreamError::with_text(
                                    StreamErrorCondition::ConnectionTimeout,
                                    "no authentication in time",
                                ))
                            }
                        }
                    }
                }
            };
            if !self.perform(outputs, &verify_tx).await {
                return;
            }
        }
    }

    /// Carry out outputs; false once the connection is over.
    async fn perform(&mut self, outputs: Vec<Output>, verify_tx: &mpsc::Sender<(VerifyRequest, Verdict)>) -> bool {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Write(bytes) => {
                    if let Err(e) = self.conn.write(&bytes).await {
                        log::debug!("s2s in {}: write failed: {e}", self.conn.io.peer);
                        return false;
                    }
                }
                Output::StartTls => {
                    let Some(config) = self.snapshot.tls.as_ref().and_then(|t| t.server.clone()) else {
                        return false;
                    };
                    let started = Instant::now();
                    // A peer that asks for TLS and then stalls the handshake must not hold the
                    // task, the descriptor and its address's slot past the auth deadline.
                    match tokio::time::timeout_at(self.auth_deadline, self.conn.io.transport.start_tls(config)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            log::warn!("s2s in {}: TLS handshake failed: {e}", self.conn.io.peer);
                            return false;
                        }
                        Err(_) => {
                            log::warn!(
                                "s2s in {}: TLS handshake not finished in time, closing",
                                self.conn.io.peer
                            );
                            return false;
                        }
                    }
                    let peer_domain = locked(&self.info).peer_domain.clone();
                    let chain = self.conn.io.transport.peer_certificates();
                    let certificate = (!chain.is_empty()).then(|| {
                        let domain = (!peer_domain.is_empty()).then_some(peer_domain.as_str());
                        self.snapshot
                            .tls
                            .as_ref()
                            .map(|t| t.trust.evaluate(&chain, domain))
                            .unwrap_or_default()
                    });
                    let description = self.conn.io.transport.tls_description();
                    log::info!(
                        "s2s in {}: TLS up in {} ms ({}; client certificate: {})",
                        self.conn.io.peer,
                        started.elapsed().as_millis(),
                        description.clone().unwrap_or_default(),
                        match &certificate {
                            None => "none".to_owned(),
                            Some(c) => format!(
                                "{} {}",
                                c.names.join(","),
                                if c.chain_trusted { "trusted" } else { "not trusted" }
                            ),
                        }
                    );
                    locked(&self.info).tls = description;
                    self.conn.framer.reset();
                    queue.extend(self.machine.tls_established(certificate));
                }
                Output::Restart => self.conn.framer.restart(),
                Output::Verify(request) => {
                    let federation = Arc::clone(&self.federation);
                    let tx = verify_tx.clone();
                    tokio::spawn(async move {
                        let verdict = crate::link::verify(&federation, request.clone()).await;
                        let _ = tx.send((request, verdict)).await;
                    });
                }
                Output::Authenticated { local, remote, method } => {
                    let mut info = locked(&self.info);
                    info.peer_domain = remote;
                    if !info.local_domains.contains(&local) {
                        info.local_domains.push(local);
                    }
                    info.auth.get_or_insert(method);
                    info.state = LinkState::Up;
                    info.last_activity = Instant::now();
                }
                Output::Stanza(stanza) => {
                    locked(&self.info).last_activity = Instant::now();
                    self.federation.core.route(stanza).await;
                }
                Output::Close { .. } => return false,
                Output::PairFailed { .. } | Output::Verified { .. } => {}
            }
        }
        // The header's `from` names the peer until it authenticates.
        let mut info = locked(&self.info);
        if info.peer_domain.is_empty()
            && let Some(peer) = self.machine.peer_domain()
        {
            info.peer_domain = peer.to_owned();
        }
        true
    }
}
