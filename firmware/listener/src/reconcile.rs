//! The sockets of one owner, made to match what it wants.

use crate::spec::{Refusal, Service, Target, TlsMode, Wanted};
use sb_store::Unresolved;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Takes the connections a listener accepts. Called on the accept path: hand the stream to a
/// task, never wait here.
pub trait Acceptor: Send + Sync + 'static {
    fn admit(&self, service: Service, tcp: TcpStream, peer: SocketAddr, tls: TlsMode);
}

/// Why a listener does not listen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The address is taken or not ours.
    #[error(transparent)]
    Bind(Arc<std::io::Error>),
}

/// One listener as status pages show it.
#[derive(Clone, Debug)]
pub struct ListenerStatus {
    pub service: Service,
    /// The entry as configured (with this service's port where the owner asked so).
    pub configured: String,
    /// The interface whose address this is, for an entry that names one.
    pub interface: Option<String>,
    pub tls: TlsMode,
    /// Where it listens or tried to; `None` when the entry has no address (yet).
    pub address: Option<SocketAddr>,
    /// Where it listens, once bound (the real port when port 0 was asked).
    pub bound: Option<SocketAddr>,
    pub error: Option<ListenError>,
    /// Why it does not listen yet, with nothing wrong: its interface has no IPv4 address
    /// (DHCP pending); it binds as soon as one appears.
    pub waiting: Option<Unresolved>,
}

impl ListenerStatus {
    /// For status lines: the address (and its interface), else the entry.
    pub fn label(&self) -> String {
        match (self.bound.or(self.address), &self.interface) {
            (Some(address), Some(interface)) => format!("{address} on {interface}"),
            (Some(address), None) => address.to_string(),
            (None, _) => self.configured.clone(),
        }
    }

    /// Whether it is plain TCP where TLS would be the rule.
    pub fn plain(&self) -> bool {
        self.tls == TlsMode::Plain
    }
}

struct Listener {
    status: ListenerStatus,
    /// Read by the accept loop for every connection, so switching a Call Bridge listener
    /// between TLS and plain TCP keeps the socket instead of rebinding its address.
    tls: Arc<AtomicU8>,
    task: Option<JoinHandle<()>>,
}

impl Listener {
    fn from_wanted(want: Wanted, address: Option<SocketAddr>) -> Listener {
        Listener {
            tls: Arc::new(AtomicU8::new(want.tls.as_u8())),
            status: ListenerStatus {
                service: want.service,
                configured: want.label,
                interface: want.interface,
                tls: want.tls,
                address,
                bound: None,
                error: None,
                waiting: None,
            },
            task: None,
        }
    }

    fn listens_at(&self, service: Service, addr: SocketAddr) -> bool {
        self.task.is_some() && self.status.service == service && self.status.address == Some(addr)
    }

    /// Stop accepting and wait until the socket is closed (an aborted task drops its listener
    /// only when the runtime gets to it).
    async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One owner's listeners and what they were made from. Dropping it stops them all.
#[derive(Default)]
pub struct ListenerSet {
    listeners: Vec<Listener>,
    applied: Vec<Wanted>,
}

impl ListenerSet {
    /// What the last [`ListenerSet::reconcile`] was asked for: an owner compares it with a new
    /// resolution to rebind nothing when an address changed elsewhere.
    pub fn applied(&self) -> &[Wanted] {
        &self.applied
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    pub fn status(&self) -> Vec<ListenerStatus> {
        self.listeners.iter().map(|l| l.status.clone()).collect()
    }

    /// Where its sockets listen now.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.status.bound).collect()
    }

    /// Make the listeners what `wanted` says: those already bound where wanted keep their
    /// socket (a changed label or TLS mode applies to the next connection), the rest close,
    /// then the new ones bind. Bind failures are kept in the status, not returned: the other
    /// listeners still serve.
    /// Stop every listener and return once their sockets are closed: dropping the set only
    /// aborts their tasks, and a connection attempt could still be accepted until the runtime
    /// gets to them.
    pub async fn close(self) {
        let mut set = self;
        for listener in std::mem::take(&mut set.listeners) {
            listener.close().await;
        }
    }

    pub async fn reconcile(&mut self, wanted: Vec<Wanted>, acceptor: &Arc<dyn Acceptor>) {
        let (mut current, unwanted): (Vec<Listener>, Vec<Listener>) =
            std::mem::take(&mut self.listeners).into_iter().partition(|l| {
                wanted
                    .iter()
                    .any(|w| matches!(w.target, Target::Bind(addr) if l.listens_at(w.service, addr)))
            });
        // Closed before anything binds: moving from 0.0.0.0:5222 to 10.0.2.15:5222 needs the
        // wildcard socket gone first. Their established connections go on.
        for listener in unwanted {
            listener.close().await;
        }
        let mut keep = Vec::with_capacity(wanted.len());
        for want in wanted.iter().cloned() {
            let service = want.service;
            let addr = match &want.target {
                Target::Bind(addr) => *addr,
                Target::Waiting(reason) => {
                    log::info!("{service}: {} waits: {reason}", want.label);
                    let reason = reason.clone();
                    let mut idle = Listener::from_wanted(want, None);
                    idle.status.waiting = Some(reason);
                    keep.push(idle);
                    continue;
                }
                Target::Refused(refusal) => {
                    log::error!("{service}: cannot listen on {}: {refusal}", want.label);
                    let error = ListenError::Refused(refusal.clone());
                    let mut idle = Listener::from_wanted(want, None);
                    idle.status.error = Some(error);
                    keep.push(idle);
                    continue;
                }
            };
            if let Some(pos) = current.iter().position(|l| l.listens_at(service, addr)) {
                let mut listener = current.swap_remove(pos);
                listener.tls.store(want.tls.as_u8(), Ordering::Relaxed);
                listener.status.configured = want.label;
                listener.status.interface = want.interface;
                listener.status.tls = want.tls;
                keep.push(listener);
                continue;
            }
            if want.asked == TlsMode::Plain && want.tls != TlsMode::Plain {
                log::warn!("{service}: TLS stays on for {addr}: plain TCP is only allowed on loopback addresses");
            }
            keep.push(bind(want, addr, acceptor).await);
        }
        drop(current);
        self.listeners = keep;
        self.applied = wanted;
    }
}

async fn bind(want: Wanted, addr: SocketAddr, acceptor: &Arc<dyn Acceptor>) -> Listener {
    let service = want.service;
    let mut listener = Listener::from_wanted(want, Some(addr));
    match TcpListener::bind(addr).await {
        Ok(socket) => {
            let bound = socket.local_addr().unwrap_or(addr);
            log::info!("{service}: listening on {bound}{}", listener.status.tls.note());
            listener.status.bound = Some(bound);
            listener.task = Some(tokio::spawn(accept_loop(
                socket,
                service,
                Arc::clone(&listener.tls),
                Arc::clone(acceptor),
            )));
        }
        Err(e) => {
            log::error!("{service}: cannot listen on {addr}: {e}");
            listener.status.error = Some(ListenError::Bind(Arc::new(e)));
        }
    }
    listener
}

async fn accept_loop(socket: TcpListener, service: Service, tls: Arc<AtomicU8>, acceptor: Arc<dyn Acceptor>) {
    loop {
        match socket.accept().await {
            Ok((tcp, peer)) => acceptor.admit(service, tcp, peer, TlsMode::from_u8(tls.load(Ordering::Relaxed))),
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning, the
                // condition usually clears when connections close.
                log::warn!("{service}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ListenEntry, ListenSpec, resolve};
    use sb_store::InterfaceAddresses;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Service, TlsMode)>>);

    impl Acceptor for Recorder {
        fn admit(&self, service: Service, _tcp: TcpStream, _peer: SocketAddr, tls: TlsMode) {
            self.0.lock().unwrap().push((service, tls));
        }
    }

    fn wanted(entries: &[&str], service: Service, port: u16, tls: TlsMode) -> Vec<Wanted> {
        let specs: Vec<ListenSpec> = entries
            .iter()
            .map(|e| ListenSpec {
                service,
                entry: ListenEntry::parse(e),
                label: e.to_string(),
                port,
                tls,
            })
            .collect();
        resolve(&specs, &InterfaceAddresses::default())
    }

    async fn connect_and_wait(addr: SocketAddr, recorder: &Recorder, count: usize) {
        let _tcp = TcpStream::connect(addr).await.unwrap();
        for _ in 0..200 {
            if recorder.0.lock().unwrap().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("connection {count} to {addr} not admitted");
    }

    #[tokio::test]
    async fn a_kept_listener_keeps_its_socket_and_takes_the_new_tls_mode() {
        let recorder = Arc::new(Recorder::default());
        let acceptor: Arc<dyn Acceptor> = recorder.clone();
        let mut set = ListenerSet::default();
        set.reconcile(
            wanted(&["127.0.0.1:0"], Service::Component, 0, TlsMode::Plain),
            &acceptor,
        )
        .await;
        let [bound] = set.bound()[..] else {
            panic!("one listener expected: {:?}", set.status());
        };
        connect_and_wait(bound, &recorder, 1).await;
        set.reconcile(
            wanted(&["127.0.0.1:0"], Service::Component, 0, TlsMode::Direct),
            &acceptor,
        )
        .await;
        assert_eq!(set.bound(), vec![bound], "the socket stays");
        connect_and_wait(bound, &recorder, 2).await;
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                (Service::Component, TlsMode::Plain),
                (Service::Component, TlsMode::Direct)
            ]
        );
    }

    #[tokio::test]
    async fn an_unwanted_listener_closes_before_its_port_is_bound_again() {
        let acceptor: Arc<dyn Acceptor> = Arc::new(Recorder::default());
        let mut set = ListenerSet::default();
        set.reconcile(wanted(&["0.0.0.0:0"], Service::Client, 0, TlsMode::Starttls), &acceptor)
            .await;
        let port = set.bound()[0].port();
        // The wildcard socket holds the port: the specific address can only bind once it is gone.
        set.reconcile(
            wanted(&["127.0.0.1"], Service::Client, port, TlsMode::Starttls),
            &acceptor,
        )
        .await;
        let status = set.status();
        assert_eq!(status.len(), 1);
        assert!(status[0].error.is_none(), "{:?}", status[0].error);
        assert_eq!(status[0].bound, Some(SocketAddr::from(([127, 0, 0, 1], port))));
    }

    #[tokio::test]
    async fn failures_and_waits_are_reported_per_listener() {
        let acceptor: Arc<dyn Acceptor> = Arc::new(Recorder::default());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut set = ListenerSet::default();
        let mut want = wanted(&["127.0.0.1"], Service::Server, port, TlsMode::Starttls);
        want.extend(wanted(&["eth9"], Service::Server, port, TlsMode::Starttls));
        set.reconcile(want, &acceptor).await;
        let status = set.status();
        assert!(matches!(status[0].error, Some(ListenError::Bind(_))), "{status:?}");
        assert_eq!(status[0].label(), format!("127.0.0.1:{port}"));
        assert!(matches!(status[1].error, Some(ListenError::Refused(_))), "{status:?}");
        assert_eq!(status[1].label(), "eth9");
        assert!(set.bound().is_empty());
    }
}
