//! The web admin's sockets and connections. Its listener goes through sb-listener like every
//! other service; the settings are this node's `webadmin ...` record, followed on the store's
//! change feed, so `webadmin listen|certs|enable|disable` apply live. A new TLS identity applies
//! to the next connection without rebinding.

use crate::AppState;
use hyper::body::Incoming;
use sb_listener::tls::TlsIdentity;
use sb_listener::{Acceptor, Follow, FollowHandle, ListenEntry, ListenSpec, Service, TlsMode};
use sb_store::{InterfaceAddresses, Store};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower_service::Service as _;

/// How long a request's headers may take, and how long an idle keep-alive connection stays.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's address, in every request's extensions (the login limiter keys on it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// What the rest of the daemon sees of the web admin: its listeners and how far it has
/// followed the change feed (it reports them in `webadmin status`), started with [`start`].
pub type WebHandle = FollowHandle;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Start following the configuration: bind, serve, rebind as `webadmin ...` changes. Runs
/// until the returned task is aborted.
pub fn start(
    handle: WebHandle,
    state: Arc<AppState>,
    store: Store,
    interfaces: watch::Receiver<Arc<InterfaceAddresses>>,
) -> tokio::task::JoinHandle<()> {
    let https = Arc::new(HttpsAcceptor {
        tls: Mutex::new(None),
        app: crate::router(Arc::clone(&state)),
        connections: Arc::new(Semaphore::new(state.tuning.max_connections)),
        handshake_timeout: state.tuning.handshake_timeout,
    });
    handle.start(
        &store,
        interfaces,
        WebFollower {
            store: store.clone(),
            state,
            https,
        },
    )
}

struct WebFollower {
    store: Store,
    state: Arc<AppState>,
    https: Arc<HttpsAcceptor>,
}

impl Follow for WebFollower {
    async fn wanted(&mut self) -> Option<Vec<ListenSpec>> {
        let config = match self.store.xmpp_config() {
            Ok(config) => config,
            Err(err) => {
                log::error!("web: cannot read the configuration: {err}");
                return None;
            }
        };
        let web = &config.web;
        let identity = web.tls.as_ref().or(config.tls.as_ref());
        let tls = match (web.enabled, identity) {
            (false, _) => None,
            (true, None) => {
                log::error!("web: no certificate (webadmin certs or xmpp certs): not listening");
                None
            }
            (true, Some(identity)) => match tls_config(&self.state.admin.certs_dir(), identity) {
                Ok(config) => Some(config),
                Err(err) => {
                    log::error!(
                        "web: cannot serve {} / {}: {err}; not listening",
                        identity.key,
                        identity.cert
                    );
                    None
                }
            },
        };
        let specs = match &tls {
            None => Vec::new(),
            Some(_) => vec![ListenSpec::at_port(
                Service::Web,
                ListenEntry::parse(&web.listen),
                web.port,
                TlsMode::Direct,
            )],
        };
        *lock(&self.https.tls) = tls;
        Some(specs)
    }

    fn acceptor(&self) -> Arc<dyn Acceptor> {
        self.https.clone()
    }

    fn bound_line(&self, bound: SocketAddr) -> String {
        format!("web admin: https://{bound}/")
    }
}

fn tls_config(
    certs_dir: &std::path::Path,
    identity: &sb_store::TlsIdentity,
) -> Result<TlsAcceptor, sb_listener::tls::TlsIdentityError> {
    let loaded = TlsIdentity::load(certs_dir, identity)?;
    let mut config = (*loaded.server_config()?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct HttpsAcceptor {
    /// `None` while the web admin is off or has no usable certificate.
    tls: Mutex<Option<TlsAcceptor>>,
    app: axum::Router,
    connections: Arc<Semaphore>,
    handshake_timeout: Duration,
}

impl Acceptor for HttpsAcceptor {
    fn admit(&self, _service: Service, tcp: TcpStream, peer: SocketAddr, _tls: TlsMode) {
        let Some(tls) = lock(&self.tls).clone() else {
            return;
        };
        let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            log::warn!("web: {peer} refused: too many connections");
            return;
        };
        let app = self.app.clone();
        let handshake_timeout = self.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(handshake_timeout, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    log::debug!("web: TLS handshake with {peer} failed: {err}");
                    return;
                }
                Err(_) => {
                    log::debug!("web: TLS handshake with {peer} timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer));
                app.clone().call(request)
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                log::debug!("web: connection from {peer}: {err}");
            }
        });
    }
}
