//! The SSH server's socket and connections. Its listener goes through sb-listener like every
//! other service; the settings are this node's `ssh ...` record, followed on the store's change
//! feed, so `ssh listen|enable|disable` apply live and `ssh authorized-key` applies to the next
//! login. Each connection runs russh's server session in its own task.

use crate::connection::Connection;
use crate::{SshTuning, host_key};
use russh::keys::PrivateKey;
use sb_admin::Admin;
use sb_listener::{Acceptor, Follow, FollowHandle, ListenEntry, ListenSpec, Service, TlsMode};
use sb_server::limits::AuthFailureLimiter;
use sb_store::{InterfaceAddresses, Store};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

/// What the rest of the daemon sees of the SSH server: its listeners and how far it has
/// followed the change feed (it reports them in `ssh status`), started with [`start`].
pub type SshHandle = FollowHandle;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What every connection of this server shares.
pub(crate) struct Shared {
    pub admin: Arc<Admin>,
    pub store: Store,
    pub limiter: Arc<AuthFailureLimiter>,
    pub tuning: SshTuning,
}

struct SshAcceptor {
    shared: Arc<Shared>,
    /// `None` while SSH is off or has no host key.
    config: Mutex<Option<Arc<russh::server::Config>>>,
    connections: Arc<Semaphore>,
}

/// Start following the configuration: bind, serve, rebind as `ssh ...` changes. Runs until the
/// returned task is aborted. `limiter` is the failed-login limiter the web admin uses too, so
/// guessing through one front end counts against the other.
pub fn start(
    handle: SshHandle,
    admin: Arc<Admin>,
    store: Store,
    limiter: Arc<AuthFailureLimiter>,
    tuning: SshTuning,
    interfaces: watch::Receiver<Arc<InterfaceAddresses>>,
) -> tokio::task::JoinHandle<()> {
    let acceptor = Arc::new(SshAcceptor {
        connections: Arc::new(Semaphore::new(tuning.max_connections)),
        shared: Arc::new(Shared {
            admin,
            store: store.clone(),
            limiter,
            tuning,
        }),
        config: Mutex::new(None),
    });
    handle.start(
        &store,
        interfaces,
        SshFollower {
            store: store.clone(),
            acceptor,
            host_key: None,
        },
    )
}

struct SshFollower {
    store: Store,
    acceptor: Arc<SshAcceptor>,
    /// Made the first time SSH is enabled, then read once per process.
    host_key: Option<PrivateKey>,
}

impl Follow for SshFollower {
    async fn wanted(&mut self) -> Option<Vec<ListenSpec>> {
        let ssh = match self.store.node_config() {
            Ok(node) => node.ssh,
            Err(err) => {
                log::error!("ssh: cannot read the configuration: {err}");
                return None;
            }
        };
        if ssh.enabled && self.host_key.is_none() {
            let dir = self.acceptor.shared.admin.dir().to_owned();
            match tokio::task::spawn_blocking(move || host_key::load_or_create(&dir)).await {
                Ok(Ok(key)) => self.host_key = Some(key),
                Ok(Err(err)) => log::error!("ssh: {err}; not listening"),
                Err(err) => log::error!("ssh: host key task failed: {err}; not listening"),
            }
        }
        let config = match (&self.host_key, ssh.enabled) {
            (Some(key), true) => Some(Arc::new(server_config(key.clone(), &self.acceptor.shared.tuning))),
            _ => None,
        };
        let specs = match &config {
            None => Vec::new(),
            // SSH brings its own transport security; the listener passes the socket as is.
            Some(_) => vec![ListenSpec::at_port(
                Service::Ssh,
                ListenEntry::parse(&ssh.listen),
                ssh.port,
                TlsMode::Direct,
            )],
        };
        *lock(&self.acceptor.config) = config;
        Some(specs)
    }

    fn acceptor(&self) -> Arc<dyn Acceptor> {
        self.acceptor.clone()
    }

    fn bound_line(&self, bound: SocketAddr) -> String {
        format!("ssh: listening on {bound}")
    }
}

fn server_config(key: PrivateKey, tuning: &SshTuning) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Switchboard".into()),
        methods: russh::MethodSet::from(&[russh::MethodKind::Password, russh::MethodKind::PublicKey][..]),
        // Every refusal takes this long, so timing tells nothing about why.
        auth_rejection_time: std::time::Duration::from_secs(1),
        // OpenSSH first asks with method "none" to learn the methods: answer that at once.
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        keys: vec![key],
        max_auth_attempts: tuning.max_auth_attempts,
        inactivity_timeout: Some(tuning.idle_timeout),
        keepalive_interval: None,
        nodelay: true,
        ..Default::default()
    }
}

impl Acceptor for SshAcceptor {
    fn admit(&self, _service: Service, tcp: TcpStream, peer: SocketAddr, _tls: TlsMode) {
        let Some(config) = lock(&self.config).clone() else {
            return;
        };
        let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            log::warn!("ssh: {peer} refused: too many connections");
            return;
        };
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let _permit = permit;
            let authenticated = Arc::new(AtomicBool::new(false));
            let auth_timeout = shared.tuning.auth_timeout;
            let connection = Connection::new(Arc::clone(&shared), peer, Arc::clone(&authenticated));
            let session = match russh::server::run_stream(config, tcp, connection).await {
                Ok(session) => session,
                Err(err) => {
                    log::debug!("ssh: {peer}: {err}");
                    return;
                }
            };
            let handle = session.handle();
            tokio::pin!(session);
            let result = tokio::select! {
                result = &mut session => Some(result),
                () = tokio::time::sleep(auth_timeout) => None,
            };
            let result = match result {
                Some(result) => result,
                None if authenticated.load(Ordering::Acquire) => session.await,
                None => {
                    log::warn!(
                        "ssh: {peer} did not log in within {} s: disconnected",
                        auth_timeout.as_secs()
                    );
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "authentication timeout".to_owned(),
                            "en".to_owned(),
                        )
                        .await;
                    session.await
                }
            };
            if let Err(err) = result {
                log::debug!("ssh: connection from {peer} ended: {err}");
            }
        });
    }
}
