//! The phases of a run: idle sessions (memory per session), logins, unthrottled message
//! throughput, and messages at a fixed rate (latency).

use crate::conn::{self, Credentials, LoginTarget, Session, TlsTcp, XmlConn};
use crate::peer::{PeerAccounts, is_peer_index};
use crate::stats::{Clock, LoginReport, PhaseStats, PhaseSummary};
use sb_proto::sasl::SaltedPassword;
use sb_proto::{Element, StreamEvent, StreamFramer, ns};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Whitespace keepalive for sessions held idle, well under any server's idle timeout.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// How long to wait for messages still in flight when a phase's senders stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
pub const CLOSE_LIMIT: Duration = Duration::from_secs(30);
/// Longest a single message may take to be written before its sender gives up.
pub const SEND_LIMIT: Duration = Duration::from_secs(10);

/// `bench{n}` → `bench17`.
#[derive(Clone, Debug)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn expand(&self, index: usize) -> String {
        self.0.replace("{n}", &index.to_string())
    }
}

/// What every task of a run shares.
pub struct Run {
    pub target: LoginTarget,
    pub users: Pattern,
    pub passwords: Pattern,
    pub sources: Vec<IpAddr>,
    pub concurrency: usize,
    pub clock: Clock,
    /// SaltedPassword per user index, reused by later logins as a real client would.
    pub salted: Mutex<HashMap<usize, SaltedPassword>>,
    /// Cross-server pairs: the odd clients log in here instead.
    pub peer: Option<PeerAccounts>,
}

impl Run {
    /// Server, user name pattern and password pattern of client `index`.
    fn account(&self, index: usize) -> (&LoginTarget, &Pattern, &Pattern) {
        match &self.peer {
            Some(peer) if is_peer_index(index) => (&peer.target, &peer.users, &peer.passwords),
            _ => (&self.target, &self.users, &self.passwords),
        }
    }

    fn source_for(&self, index: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[index % self.sources.len()])
        }
    }

    fn cached(&self, index: usize) -> Option<SaltedPassword> {
        self.salted.lock().ok().and_then(|cache| cache.get(&index).cloned())
    }

    fn remember(&self, index: usize, salted: SaltedPassword) {
        if let Ok(mut cache) = self.salted.lock() {
            cache.insert(index, salted);
        }
    }
}

/// Log in the given users, at most `concurrency` at a time.
pub async fn login_batch(run: &Arc<Run>, indices: Vec<usize>) -> (Vec<(usize, Session)>, LoginReport) {
    let permits = Arc::new(Semaphore::new(run.concurrency.max(1)));
    let mut report = LoginReport {
        attempted: indices.len(),
        warm: indices.iter().filter(|&&i| run.cached(i).is_some()).count(),
        ..LoginReport::default()
    };
    let started = Instant::now();
    let handles: Vec<JoinHandle<(usize, Result<Session, conn::ClientError>)>> = indices
        .into_iter()
        .map(|index| {
            let run = Arc::clone(run);
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let (target, users, passwords) = run.account(index);
                let username = users.expand(index);
                let password = passwords.expand(index);
                let credentials = Credentials {
                    username: &username,
                    password: &password,
                    cached: run.cached(index),
                };
                let result = conn::login(target, run.source_for(index), credentials).await;
                if let Ok(session) = &result
                    && let Some(salted) = &session.salted
                {
                    run.remember(index, salted.clone());
                }
                (index, result)
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok((index, Ok(session))) => {
                report.mechanism.get_or_insert(session.mechanism.mechanism());
                sessions.push((index, session));
            }
            Ok((_, Err(err))) => report.add_error(err.to_string()),
            Err(err) => report.add_error(format!("login task failed: {err}")),
        }
    }
    report.secs = started.elapsed().as_secs_f64();
    report.succeeded = sessions.len();
    (sessions, report)
}

/// Sessions held open without traffic, answering pings, until told to close.
pub struct IdleSessions {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl IdleSessions {
    pub fn hold(sessions: Vec<(usize, Session)>) -> IdleSessions {
        let (stop, stop_rx) = watch::channel(false);
        let tasks = sessions
            .into_iter()
            .map(|(_, session)| tokio::spawn(hold_idle(session.conn, stop_rx.clone())))
            .collect();
        IdleSessions { stop, tasks }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Close every session with `</stream:stream>`; bounded in time.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + CLOSE_LIMIT;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

async fn hold_idle(mut conn: XmlConn<TlsTcp>, mut stop: watch::Receiver<bool>) {
    let mut chunk = [0u8; 1024];
    loop {
        tokio::select! {
            _ = stop.changed() => {
                close_stream(&mut conn.io).await;
                return;
            }
            _ = tokio::time::sleep(KEEPALIVE) => {
                if !write_bounded(&mut conn.io, b" ").await {
                    return;
                }
            }
            read = conn.io.read(&mut chunk) => {
                let Ok(read) = read else { return };
                if read == 0 {
                    return;
                }
                conn.framer.feed(&chunk[..read]);
                loop {
                    match conn.framer.next_event() {
                        Ok(None) => break,
                        Ok(Some(StreamEvent::Element(element))) => {
                            if element.is("iq", ns::CLIENT)
                                && let Some(reply) = conn::answer_iq(&element)
                                && !write_bounded(&mut conn.io, &reply).await
                            {
                                return;
                            }
                        }
                        Ok(Some(StreamEvent::Header(_))) => {}
                        Ok(Some(StreamEvent::End)) | Err(_) => return,
                    }
                }
            }
        }
    }
}

/// Write and flush within SEND_LIMIT; `false` when that failed or took too long.
pub async fn write_bounded<S: tokio::io::AsyncWrite + Unpin>(io: &mut S, data: &[u8]) -> bool {
    let write = async {
        io.write_all(data).await?;
        io.flush().await
    };
    matches!(tokio::time::timeout(SEND_LIMIT, write).await, Ok(Ok(())))
}

pub async fn close_stream<S: tokio::io::AsyncWrite + Unpin>(io: &mut S) {
    let close = async {
        let _ = io.write_all(sb_proto::framer::STREAM_CLOSE).await;
        let _ = io.shutdown().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
}

pub type SharedWriter = Arc<tokio::sync::Mutex<WriteHalf<TlsTcp>>>;

/// A sender of a message phase: its index (carried in the body), its writer, and the escaped
/// address its messages go to.
pub type Sender = (usize, SharedWriter, String);

/// Which phase a message belongs to; carried in its body so late arrivals are attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessagePhase {
    Throughput = 0,
    Rate = 1,
}

/// How many messages may be in flight in the throughput phase; a delivery gives its
/// sender's permit back.
pub enum Windows {
    /// One window per sender index (clients in pairs).
    PerSender(Vec<Semaphore>),
    /// One window for every sender together (all traffic of one direction to or from a
    /// Call Bridge, whose server-side queue is shared).
    Shared(Semaphore),
}

impl Windows {
    pub fn of(&self, sender: usize) -> Option<&Semaphore> {
        match self {
            Windows::PerSender(windows) => windows.get(sender),
            Windows::Shared(window) => Some(window),
        }
    }

    /// Let `sender`'s window hold up to `size` messages again (permits lost with lost
    /// messages come back; a shared window is opened once whichever sender asks).
    pub fn open(&self, sender: usize, size: usize) {
        if let Some(semaphore) = self.of(sender) {
            semaphore.add_permits(size.saturating_sub(semaphore.available_permits()));
        }
    }
}

/// State the message tasks of one direction share: what was sent and delivered, and the
/// windows that deliveries reopen.
pub struct MessageShared {
    pub phases: [PhaseStats; 2],
    pub windows: Windows,
    pub errors: AtomicU64,
    pub clock: Clock,
}

impl MessageShared {
    /// Count one of our messages coming back in `namespace`: an error bounce, or a delivery
    /// timed from the stamp in its body, which also frees its sender's window slot.
    pub fn record_message(&self, message: &Element, namespace: &str) {
        if message.attr("type") == Some("error") {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some((phase, sender, sent_us)) = message.get_child("body", namespace).and_then(|b| parse_body(&b.text()))
        else {
            return;
        };
        let latency = self.clock.now_us().saturating_sub(sent_us);
        self.phases[phase].record_delivery(latency);
        if let Some(window) = self.windows.of(sender) {
            window.add_permits(1);
        }
    }

    pub fn new(windows: Windows, clock: Clock) -> Arc<MessageShared> {
        Arc::new(MessageShared {
            phases: [PhaseStats::default(), PhaseStats::default()],
            windows,
            errors: AtomicU64::new(0),
            clock,
        })
    }

    /// One window per sender index up to `highest`.
    pub fn per_sender(highest: usize, clock: Clock) -> Arc<MessageShared> {
        MessageShared::new(
            Windows::PerSender((0..=highest).map(|_| Semaphore::new(0)).collect()),
            clock,
        )
    }

    pub fn stats(&self, phase: MessagePhase) -> &PhaseStats {
        &self.phases[phase as usize]
    }

    /// Wait (bounded) until every message sent in the phase has arrived.
    pub async fn drain(&self, phase: MessagePhase) {
        let stats = self.stats(phase);
        let deadline = Instant::now() + DRAIN_LIMIT;
        while stats.delivered() < stats.sent() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Logged-in clients with a reader task each, which records deliveries in the
/// [`MessageShared`] its client was given.
pub struct MessageClients {
    writers: HashMap<usize, SharedWriter>,
    jids: HashMap<usize, String>,
    readers: Vec<JoinHandle<()>>,
}

impl MessageClients {
    /// `receiver(index)`: where client `index`'s reader records what it receives.
    pub fn start_by(sessions: Vec<(usize, Session)>, receiver: impl Fn(usize) -> Arc<MessageShared>) -> MessageClients {
        let mut writers = HashMap::new();
        let mut jids = HashMap::new();
        let mut readers = Vec::new();
        for (index, session) in sessions {
            let framer = session.conn.framer;
            let (reader, writer) = tokio::io::split(session.conn.io);
            let writer = Arc::new(tokio::sync::Mutex::new(writer));
            readers.push(tokio::spawn(read_messages(
                reader,
                framer,
                Arc::clone(&writer),
                receiver(index),
            )));
            writers.insert(index, writer);
            jids.insert(index, session.jid);
        }
        MessageClients { writers, jids, readers }
    }

    /// Every client with its partner's (2k ↔ 2k+1) full JID, for those whose partner is
    /// logged in too.
    pub fn pair_senders(&self) -> Vec<Sender> {
        let mut senders: Vec<Sender> = self
            .writers
            .iter()
            .filter_map(|(&index, writer)| {
                let partner = self.jids.get(&(index ^ 1))?;
                Some((index, Arc::clone(writer), sb_proto::element::escape(partner)))
            })
            .collect();
        senders.sort_by_key(|(index, _, _)| *index);
        senders
    }

    /// Every client, each sending to `to`.
    pub fn senders_to(&self, to: &str) -> Vec<Sender> {
        let to = sb_proto::element::escape(to);
        let mut senders: Vec<Sender> = self
            .writers
            .iter()
            .map(|(&index, writer)| (index, Arc::clone(writer), to.clone()))
            .collect();
        senders.sort_by_key(|(index, _, _)| *index);
        senders
    }

    /// Full JIDs of the logged-in clients, in index order.
    pub fn jids(&self) -> Vec<String> {
        let mut jids: Vec<(usize, String)> = self.jids.iter().map(|(i, jid)| (*i, jid.clone())).collect();
        jids.sort_unstable();
        jids.into_iter().map(|(_, jid)| jid).collect()
    }

    pub async fn close(self) {
        let deadline = tokio::time::Instant::now() + CLOSE_LIMIT;
        for writer in self.writers.values() {
            let mut writer = writer.lock().await;
            let _ = tokio::time::timeout_at(deadline, close_stream(&mut *writer)).await;
        }
        for reader in self.readers {
            let abort = reader.abort_handle();
            if tokio::time::timeout_at(deadline, reader).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Clients on one server talking in pairs (2k ↔ 2k+1), each with its own window.
pub struct Pairs {
    clients: MessageClients,
    pub shared: Arc<MessageShared>,
}

impl Pairs {
    pub fn start(sessions: Vec<(usize, Session)>, clock: Clock) -> Pairs {
        let highest = sessions.iter().map(|(index, _)| index + 1).max().unwrap_or(0);
        let shared = MessageShared::per_sender(highest, clock);
        let clients = MessageClients::start_by(sessions, |_| Arc::clone(&shared));
        Pairs { clients, shared }
    }

    pub fn pairs(&self) -> usize {
        self.clients.pair_senders().len() / 2
    }

    /// Every client as fast as the server delivers, at most `window` of its messages in
    /// flight, for `secs`.
    pub async fn throughput(&self, secs: f64, window: usize) -> PhaseSummary {
        let senders = self.clients.pair_senders();
        for (index, _, _) in &senders {
            self.shared.windows.open(*index, window);
        }
        let sending = send_with_window(senders, &self.shared, secs).await;
        self.shared.drain(MessagePhase::Throughput).await;
        self.shared.stats(MessagePhase::Throughput).summary(sending)
    }

    /// `rate` messages/s in all, spread evenly over the clients and over time, for `secs`.
    pub async fn fixed_rate(&self, rate: f64, secs: f64) -> PhaseSummary {
        let sending = send_at_rate(self.clients.pair_senders(), &self.shared, rate, secs).await;
        self.shared.drain(MessagePhase::Rate).await;
        self.shared.stats(MessagePhase::Rate).summary(sending)
    }

    pub async fn close(self) {
        self.clients.close().await;
    }
}

/// Throughput phase: each sender sends whenever its window (in `shared`) has room, for
/// `secs`. Returns how long the senders ran.
pub async fn send_with_window(senders: Vec<Sender>, shared: &Arc<MessageShared>, secs: f64) -> f64 {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<JoinHandle<()>> = senders
        .into_iter()
        .map(|(index, writer, to)| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let Some(window) = shared.windows.of(index) else { return };
                let mut seq = 0u64;
                loop {
                    let permit = tokio::select! {
                        permit = window.acquire() => permit,
                        _ = tokio::time::sleep_until(deadline) => break,
                    };
                    let Ok(permit) = permit else { break };
                    permit.forget();
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    if send_message(&writer, &to, MessagePhase::Throughput, index, seq, &shared)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    join_all(tasks).await;
    started.elapsed().as_secs_f64()
}

/// Rate phase: `rate` messages/s from all senders together, spread evenly over them and over
/// time, for `secs`. Returns the sending time (at most `secs`).
pub async fn send_at_rate(senders: Vec<Sender>, shared: &Arc<MessageShared>, rate: f64, secs: f64) -> f64 {
    if senders.is_empty() || rate <= 0.0 {
        return secs;
    }
    let period = Duration::from_secs_f64(senders.len() as f64 / rate);
    let count = senders.len() as u32;
    let started = Instant::now();
    let origin = tokio::time::Instant::now();
    let deadline = origin + Duration::from_secs_f64(secs);
    let tasks: Vec<JoinHandle<()>> = senders
        .into_iter()
        .enumerate()
        .map(|(slot, (index, writer, to))| {
            let shared = Arc::clone(shared);
            // Staggered starts, so the aggregate is a steady stream and not bursts.
            let first = origin + period.mul_f64(f64::from(slot as u32) / f64::from(count));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval_at(first, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut seq = 0u64;
                loop {
                    ticks.tick().await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    if send_message(&writer, &to, MessagePhase::Rate, index, seq, &shared)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    join_all(tasks).await;
    // Sends are scheduled within `secs`; the last tick may be observed a period later.
    started.elapsed().as_secs_f64().min(secs)
}

pub async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

pub async fn send_message(
    writer: &SharedWriter,
    to: &str,
    phase: MessagePhase,
    sender: usize,
    seq: u64,
    shared: &MessageShared,
) -> std::io::Result<()> {
    let send = async {
        let mut writer = writer.lock().await;
        // The timestamp is taken with the lock held, right before the bytes go out.
        let stanza = format!(
            "<message to='{to}' type='chat' id='lg{sender}-{seq}'><body>lg {} {sender} {seq} {}</body></message>",
            phase as u8,
            shared.clock.now_us()
        );
        writer.write_all(stanza.as_bytes()).await?;
        writer.flush().await
    };
    // A server that stops reading must not hang the phase: the sender gives up instead.
    match tokio::time::timeout(SEND_LIMIT, send).await {
        Ok(result) => result?,
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "send timed out")),
    }
    shared.phases[phase as usize].sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// `lg <phase> <sender> <seq> <sent_us>` → (phase, sender, sent_us).
pub fn parse_body(body: &str) -> Option<(usize, usize, u64)> {
    let mut words = body.split_ascii_whitespace();
    if words.next()? != "lg" {
        return None;
    }
    let phase: usize = words.next()?.parse().ok()?;
    let sender: usize = words.next()?.parse().ok()?;
    let _seq: u64 = words.next()?.parse().ok()?;
    let sent_us: u64 = words.next()?.parse().ok()?;
    (phase < 2).then_some((phase, sender, sent_us))
}

async fn read_messages(
    mut reader: ReadHalf<TlsTcp>,
    mut framer: StreamFramer,
    writer: SharedWriter,
    shared: Arc<MessageShared>,
) {
    let mut chunk = [0u8; 8192];
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
                    if element.is("message", ns::CLIENT) {
                        shared.record_message(&element, ns::CLIENT);
                    } else if element.is("iq", ns::CLIENT)
                        && let Some(reply) = conn::answer_iq(&element)
                    {
                        let mut writer = writer.lock().await;
                        if !write_bounded(&mut *writer, &reply).await {
                            return;
                        }
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

    #[test]
    fn patterns_expand_the_index() {
        assert_eq!(Pattern("bench{n}".into()).expand(42), "bench42");
        assert_eq!(Pattern("fixed".into()).expand(42), "fixed");
    }

    #[test]
    fn message_bodies_round_trip() {
        assert_eq!(parse_body("lg 1 17 3 123456"), Some((1, 17, 123456)));
        assert_eq!(parse_body("lg 7 17 3 123456"), None);
        assert_eq!(parse_body("hello"), None);
        assert_eq!(parse_body("lg 0 x 3 1"), None);
    }
}
