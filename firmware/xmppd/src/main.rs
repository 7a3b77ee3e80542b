//! The Switchboard daemon: composition root wiring store, server and admin.
//!
//! `xmppd -d DIR [options]`: opens the store in DIR, applies the embedded default on a
//! fresh DIR (domain `localhost`, listening on 127.0.0.1, a self-signed certificate), starts
//! the XMPP service and the admin socket, follows the store's change feed to reconfigure
//! the running services ([`xmppd::reconciler`]), and shuts down cleanly on SIGTERM or SIGINT.

mod federation_admin;
mod startup;

use sb_admin::{
    Admin, CallBridgeConnection, ComponentAuthFailure, ComponentAuthFailureReason, ListenerStatus, LiveNode,
    LiveStatus, SessionInfo,
};
use sb_server::component::AuthFailureReason;
use sb_server::{Server, ServerTuning, Service};
use sb_store::{ConfigChange, ConfigWriter, Store, TlsIdentity};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use xmppd::cluster::ClusterNode;

const USAGE: &str = "usage: xmppd -d DIR [--log-level LEVEL[,module=LEVEL...]] [--idle-timeout SECS]
             [--pre-auth-timeout SECS] [--keepalive SECS] [--write-timeout SECS]
             [--shutdown-timeout SECS] [--max-connections-per-ip N] [--max-connections N]
             [--max-pre-auth-connections N] [--max-auth-failures-per-ip N]
             [--s2s-port PORT] [--s2s-idle-timeout SECS]
             [--ssh-auth-timeout SECS] [--ssh-max-file-bytes N]";

/// Name of the certificate made on first start when none is configured.
const SELF_SIGNED_BASENAME: &str = "selfsigned";

/// How often the heartbeat byte goes to init (issue 5's supervision contract).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long an admin command waits for the running services to take its change.
const RECONCILE_WAIT: Duration = Duration::from_secs(30);

struct Options {
    dir: PathBuf,
    log_level: String,
    tuning: ServerTuning,
    federation_tuning: sb_federation::FederationTuning,
    ssh_tuning: sb_ssh::SshTuning,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Store(#[from] sb_store::StoreError),
    #[error("cannot create a self-signed certificate: {0}")]
    Certificate(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Server(#[from] sb_server::ServerError),
    #[error("admin socket: {0}")]
    AdminSocket(std::io::Error),
    #[error("cannot write the first-boot defaults: {0}")]
    Defaults(String),
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, StartError> {
    let mut dir = None;
    let mut log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut tuning = ServerTuning::default();
    let mut federation_tuning = sb_federation::FederationTuning::default();
    let mut ssh_tuning = sb_ssh::SshTuning::default();
    let mut args = args.peekable();
    fn value(args: &mut dyn Iterator<Item = String>, flag: &str) -> Result<String, StartError> {
        args.next()
            .ok_or_else(|| StartError::Usage(format!("{flag} needs a value\n{USAGE}")))
    }
    fn number<T: std::str::FromStr>(text: String, flag: &str) -> Result<T, StartError> {
        text.parse()
            .map_err(|_| StartError::Usage(format!("{flag}: '{text}' is not a number\n{USAGE}")))
    }
    fn seconds(text: String, flag: &str) -> Result<Duration, StartError> {
        let secs: f64 = number(text, flag)?;
        if !(secs > 0.0 && secs.is_finite()) {
            return Err(StartError::Usage(format!("{flag} must be positive")));
        }
        Ok(Duration::from_secs_f64(secs))
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-d" | "--dir" => dir = Some(PathBuf::from(value(&mut args, &arg)?)),
            "--log-level" => log_level = value(&mut args, &arg)?,
            "--idle-timeout" => tuning.idle_timeout = seconds(value(&mut args, &arg)?, &arg)?,
            "--pre-auth-timeout" => tuning.pre_auth_timeout = seconds(value(&mut args, &arg)?, &arg)?,
            "--keepalive" => tuning.keepalive_interval = seconds(value(&mut args, &arg)?, &arg)?,
            "--write-timeout" => tuning.write_timeout = seconds(value(&mut args, &arg)?, &arg)?,
            "--shutdown-timeout" => tuning.shutdown_timeout = seconds(value(&mut args, &arg)?, &arg)?,
            "--max-connections-per-ip" => tuning.max_connections_per_ip = number(value(&mut args, &arg)?, &arg)?,
            "--max-connections" => tuning.max_connections = number(value(&mut args, &arg)?, &arg)?,
            "--max-pre-auth-connections" => {
                tuning.max_pre_auth_connections = number(value(&mut args, &arg)?, &arg)?;
            }
            "--max-auth-failures-per-ip" => tuning.max_auth_failures_per_ip = number(value(&mut args, &arg)?, &arg)?,
            "--s2s-port" => {
                let port: u16 = number(value(&mut args, &arg)?, &arg)?;
                federation_tuning.port = port;
                federation_tuning.fallback_port = port;
            }
            "--s2s-idle-timeout" => federation_tuning.idle_timeout = seconds(value(&mut args, &arg)?, &arg)?,
            "--ssh-auth-timeout" => ssh_tuning.auth_timeout = seconds(value(&mut args, &arg)?, &arg)?,
            "--ssh-max-file-bytes" => ssh_tuning.max_file_bytes = number(value(&mut args, &arg)?, &arg)?,
            "-h" | "--help" => return Err(StartError::Usage(USAGE.to_owned())),
            other => return Err(StartError::Usage(format!("unknown argument '{other}'\n{USAGE}"))),
        }
    }
    let dir = dir.ok_or_else(|| StartError::Usage(USAGE.to_owned()))?;
    // `xmpp listen a` names the board's interface a; off the appliance there is no board file.
    tuning.board_interfaces = sb_admin::ApplianceHost::system().board_interfaces();
    Ok(Options {
        dir,
        log_level,
        tuning,
        federation_tuning,
        ssh_tuning,
    })
}

/// `info` or `warn,sb_server=debug`: a default level and per-module levels, RUST_LOG style.
/// The logger writes to the console and keeps recent lines for `syslog`; sled never logs
/// above info whatever is asked (it prints the pages it writes, secrets included).
fn init_logger(spec: &str) -> Option<sb_logging::LogHandle> {
    let config = match sb_logging::LogConfig::default().with_spec(spec) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("xmppd: --log-level '{spec}': {e}; logging at info");
            sb_logging::LogConfig::default()
        }
    };
    match sb_logging::install(config) {
        Ok(handle) => Some(handle),
        Err(e) => {
            eprintln!("xmppd: logger: {e}");
            None
        }
    }
}

/// 10,000 sessions need more descriptors than the usual soft limit of 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => log::debug!("open files limit raised from {soft} to {hard}"),
            Err(e) => log::warn!("cannot raise the open files limit from {soft}: {e}"),
        },
        Ok((soft, _)) => log::debug!("open files limit is {soft}"),
        Err(e) => log::warn!("cannot read the open files limit: {e}"),
    }
}

/// A fresh data dir gets a working service: domain `localhost` on 127.0.0.1, enabled; and
/// any configuration without a certificate gets a self-signed one for its domain.
///
/// Node-local defaults (enabled, listen address, certificate) are this machine's own and
/// always safe to write. The shared default (domain `localhost`) goes through the writer, and
/// only while no domain is set: a standalone first boot, or a node reset and then restarted.
/// A node that joins a cluster gets the cluster's domain through the log (join replaces it). A node that will join a
/// cluster must not write it (it would fight the cluster's domain): the joining path gets the
/// shared state from the cluster first, and then finds it configured here.
fn apply_defaults(store: &Store, writer: &dyn ConfigWriter, dir: &Path) -> Result<(), StartError> {
    let config = store.xmpp_config()?;
    // No domain: a first boot (the appliance's first-boot setup may already have written the
    // node's listen address), or a node reset and restarted, which starts over as new.
    let fresh = !config.is_configured();
    if fresh {
        log::info!("no configuration yet: serving domain 'localhost' on 127.0.0.1");
        let mut service = config.service();
        service.domain = "localhost".to_owned();
        writer
            .write(ConfigChange::SetService(service))
            .map_err(|e| StartError::Defaults(e.to_string()))?;
    }
    let mut node = store.node_config()?;
    if fresh {
        node.enabled = true;
    }
    if node.listen.is_empty() {
        node.listen = vec!["127.0.0.1".to_owned()];
    }
    if fresh || node != store.node_config()? {
        store.set_node_config(&node)?;
    }
    let config = store.xmpp_config()?;
    if config.tls.is_none() {
        let certs = dir.join("certs");
        sb_admin::pki::selfsigned(
            &certs,
            SELF_SIGNED_BASENAME,
            &config.domain,
            std::slice::from_ref(&config.domain),
        )
        .map_err(|e| StartError::Certificate(e.to_string()))?;
        log::info!(
            "made a self-signed certificate for '{}': certs/{SELF_SIGNED_BASENAME}.crt",
            config.domain
        );
        let mut node = store.node_config()?;
        node.tls = Some(TlsIdentity {
            key: format!("{SELF_SIGNED_BASENAME}.key"),
            cert: format!("{SELF_SIGNED_BASENAME}.crt"),
            bundle: None,
        });
        store.set_node_config(&node)?;
    }
    Ok(())
}

/// The admin layer's view of the running server.
struct LiveServer {
    server: Arc<Server>,
    cluster: Arc<ClusterNode>,
    federation: Arc<sb_federation::Federation>,
    reconciled: xmppd::reconciler::Reconciled,
    runtime: tokio::runtime::Handle,
    log: Option<sb_logging::LogHandle>,
    web: sb_web::WebHandle,
    ssh: sb_ssh::SshHandle,
}

fn failure_reason(reason: AuthFailureReason) -> ComponentAuthFailureReason {
    match reason {
        AuthFailureReason::UnknownName => ComponentAuthFailureReason::UnknownName,
        AuthFailureReason::WrongSecret => ComponentAuthFailureReason::WrongSecret,
        AuthFailureReason::BadHandshake => ComponentAuthFailureReason::BadHandshake,
    }
}

impl LiveNode for LiveServer {
    fn status(&self) -> LiveStatus {
        let status = self.server.status();
        LiveStatus {
            running: status.running,
            started_at_unix: status.started_at_unix,
            listeners: status.listeners.into_iter().map(listener_status).collect(),
            sessions: status
                .sessions
                .into_iter()
                .map(|s| SessionInfo {
                    jid: s.jid,
                    peer: s.meta.peer.to_string(),
                    since_unix: s.meta.since_unix,
                    tls: s.meta.tls,
                })
                .collect(),
            callbridges: status
                .components
                .into_iter()
                .map(|c| CallBridgeConnection {
                    name: c.name,
                    peer: c.peer.to_string(),
                    since_unix: c.since_unix,
                    tls: c.tls,
                })
                .collect(),
            component_auth_failures: status
                .component_auth_failures
                .into_iter()
                .map(|f| ComponentAuthFailure {
                    name: f.name,
                    peer: f.peer.to_string(),
                    at_unix: f.at_unix,
                    reason: failure_reason(f.reason),
                    count: f.count,
                })
                .collect(),
            cluster: self.cluster.view(),
            cluster_error: self.cluster.start_error(),
            web: self.web.status().into_iter().map(listener_status).collect(),
            ssh: self.ssh.status().into_iter().map(listener_status).collect(),
        }
    }

    /// Runs on the admin layer's blocking thread: wait (bounded) for the reconciler, so a
    /// command that follows (`xmpp status`) already sees its effect.
    fn wait_reconciled(&self, seq: u64) {
        let (reconciled, web, ssh) = (self.reconciled.clone(), self.web.clone(), self.ssh.clone());
        let done = self.runtime.block_on(async move {
            reconciled.wait_for(seq, RECONCILE_WAIT).await
                && web.wait_for(seq, RECONCILE_WAIT).await
                && ssh.wait_for(seq, RECONCILE_WAIT).await
        });
        if !done {
            log::error!(
                "configuration change {seq} not applied to the running services within {} s",
                RECONCILE_WAIT.as_secs()
            );
        }
    }

    fn federation(&self) -> Option<Arc<dyn sb_admin::FederationLive>> {
        Some(federation_admin::admin_handle(&self.federation))
    }

    fn cluster(&self) -> Option<Arc<dyn sb_admin::ClusterLive>> {
        Some(Arc::clone(&self.cluster) as Arc<dyn sb_admin::ClusterLive>)
    }

    fn log_handle(&self) -> Option<sb_logging::LogHandle> {
        self.log.clone()
    }
}

fn listener_status(l: sb_listener::ListenerStatus) -> ListenerStatus {
    ListenerStatus {
        address: match (l.bound, &l.interface) {
            (Some(bound), Some(interface)) => format!("{bound} on {interface}"),
            (Some(bound), None) => bound.to_string(),
            (None, _) => l.configured,
        },
        error: l.error.map(|e| e.to_string()),
        waiting: l.waiting.map(|w| w.to_string()),
    }
}

/// Write one byte to init's pipe every 2 s: proof that the runtime still schedules tasks.
/// The pipe is returned for [`signal_ready`].
fn start_heartbeat() -> Option<Arc<std::os::fd::OwnedFd>> {
    let Ok(text) = std::env::var("SB_HEARTBEAT_FD") else {
        return None;
    };
    let Ok(raw) = text.trim().parse::<std::os::fd::RawFd>() else {
        log::warn!("SB_HEARTBEAT_FD='{text}' is not a file descriptor; no heartbeats");
        return None;
    };
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: init hands this descriptor to us for exactly this purpose and nothing else in
    // this process opens, uses or closes it; from here on the OwnedFd is its only owner.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Never block a runtime worker on a pipe init stopped reading: a full pipe just loses
    // beats, which init notices, which is the point.
    if let Err(e) = fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
        log::warn!("heartbeat fd {raw}: cannot make it non-blocking: {e}");
    }
    let _ = fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    log::info!("sending heartbeats to fd {raw}");
    let fd = Arc::new(fd);
    let beat = Arc::clone(&fd);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            ticker.tick().await;
            match nix::unistd::write(&*beat, b".") {
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => {
                    log::warn!("heartbeat fd {raw}: {e}; no more heartbeats");
                    return;
                }
            }
        }
    });
    Some(fd)
}

/// Tells init that XMPP clients can connect (`R` on the heartbeat pipe), so it need not poll
/// port 5222. Sent only when a client listener is bound: otherwise init keeps probing.
fn signal_ready(pipe: Option<&std::os::fd::OwnedFd>, server: &Server) {
    let Some(pipe) = pipe else { return };
    let bound = server
        .status()
        .listeners
        .iter()
        .any(|l| l.service == Service::Client && l.bound.is_some());
    if bound && let Err(e) = nix::unistd::write(pipe, b"R") {
        log::warn!("telling init that XMPP is ready: {e}");
    }
}

fn print_banner(server: &Server, web: &sb_web::WebHandle, ssh: &sb_ssh::SshHandle, dir: &Path) {
    let status = server.status();
    println!(
        "Switchboard xmppd {}: XMPP domain '{}'",
        env!("CARGO_PKG_VERSION"),
        status.domain
    );
    for listener in &status.listeners {
        let what = match (listener.service, listener.plain()) {
            (Service::Client, _) => "clients",
            (Service::Component, false) => "Call Bridges (TLS)",
            (Service::Component, true) => "Call Bridges (plain TCP)",
            (Service::Server, _) => "servers",
            (Service::Web, _) => "web admin",
            (Service::Ssh, _) => "SSH",
        };
        match (&listener.bound, &listener.error, &listener.waiting) {
            (Some(addr), _, _) => println!("  {what}: listening on {addr}"),
            (None, Some(error), _) => println!("  {what}: NOT listening on {}: {error}", listener.configured),
            (None, None, Some(reason)) => println!("  {what}: {} waits: {reason}", listener.configured),
            (None, None, None) => {}
        }
    }
    if !status.enabled {
        println!("  the XMPP service is disabled (mmp -d {} xmpp enable)", dir.display());
    }
    match web.bound().first() {
        Some(addr) => println!(
            "Web admin and API: https://{addr}/ (user admin; set its password with: mmp -d {} admin passwd)",
            dir.display()
        ),
        None => println!("Web admin: not listening (mmp -d {} webadmin status)", dir.display()),
    }
    match ssh.bound().first() {
        Some(addr) => println!(
            "SSH and SFTP: ssh -p {} admin@{} (the admin password, or ssh authorized-key add)",
            addr.port(),
            addr.ip()
        ),
        None => println!("SSH: not listening (mmp -d {} ssh status)", dir.display()),
    }
    println!("Add a user:  mmp -d {} user add <name>", dir.display());
    if let Some(addr) = status
        .listeners
        .iter()
        .filter(|l| l.service == Service::Client)
        .find_map(|l| l.bound)
    {
        println!(
            "Client settings: server {}, port {}, domain {}, STARTTLS{}",
            addr.ip(),
            addr.port(),
            status.domain,
            if status.tls {
                " required (accept the self-signed certificate unless you configured your own)"
            } else {
                " unavailable: configure a certificate with 'xmpp certs'"
            }
        );
    }
}

/// SIGTERM and SIGINT, caught from the first moment of [`run`]: one arriving while the
/// services start (PID 1 shutting down, a test stopping the daemon) must end in the same
/// orderly stop as later, not in the default action's kill.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Option<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Some(StopSignals { term, int }),
            _ => {
                log::error!("cannot install signal handlers; stop with SIGKILL");
                None
            }
        }
    }
}

async fn wait_for_signal(signals: Option<StopSignals>) {
    let Some(mut signals) = signals else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = signals.term.recv() => log::info!("SIGTERM received"),
        _ = signals.int.recv() => log::info!("SIGINT received"),
    }
}

async fn run(options: Options, store: Store, log: Option<sb_logging::LogHandle>) -> Result<(), StartError> {
    let stop_signals = StopSignals::install();
    let init_pipe = start_heartbeat();
    // One writer for the admin layer and the server: the local store until this node is a
    // cluster member, the replicated log after.
    let cluster = ClusterNode::new(
        store.clone(),
        &options.dir,
        options.tuning.board_interfaces.clone(),
        sb_cluster::Timing::default(),
    );
    let writer: Arc<dyn ConfigWriter> = Arc::clone(&cluster) as Arc<dyn ConfigWriter>;
    {
        let (store, writer, dir) = (store.clone(), Arc::clone(&writer), options.dir.clone());
        tokio::task::spawn_blocking(move || apply_defaults(&store, writer.as_ref(), &dir))
            .await
            .map_err(|e| StartError::Defaults(e.to_string()))??;
    }
    cluster.reconcile().await;
    let server = Server::with_writer(store.clone(), Arc::clone(&writer), &options.dir, options.tuning);
    cluster.attach_server(Arc::clone(server.core()));
    server.start().await?;
    signal_ready(init_pipe.as_deref(), &server);
    startup::save_last_good(&store, &options.dir);
    let federation =
        sb_federation::Federation::start(Arc::clone(server.core()), store.clone(), options.federation_tuning).await;
    let (reconciled, reconciler) = xmppd::reconciler::spawn(
        &store,
        Arc::clone(&server),
        Some(Arc::clone(&federation)),
        Some(Arc::clone(&cluster)),
    );
    let web = sb_web::WebHandle::new();
    let ssh = sb_ssh::SshHandle::new();
    let live = Arc::new(LiveServer {
        server: Arc::clone(&server),
        cluster: Arc::clone(&cluster),
        federation: Arc::clone(&federation),
        reconciled,
        runtime: tokio::runtime::Handle::current(),
        log,
        web: web.clone(),
        ssh: ssh.clone(),
    });
    let admin = Arc::new(Admin::new(store.clone(), options.dir.clone(), Some(live)).with_writer(writer));
    // One failed-login count per address for the web admin and SSH.
    let login_limiter = Arc::new(sb_server::limits::AuthFailureLimiter::default());
    let web_task = sb_web::start(
        web.clone(),
        sb_web::AppState::with_limiter(
            Arc::clone(&admin),
            sb_web::WebTuning::default(),
            Arc::clone(&login_limiter),
        ),
        store.clone(),
        server.core().interfaces.subscribe(),
    );
    let ssh_task = sb_ssh::start(
        ssh.clone(),
        Arc::clone(&admin),
        store,
        login_limiter,
        options.ssh_tuning.clone(),
        server.core().interfaces.subscribe(),
    );
    let admin_listener = sb_admin::socket::bind(&options.dir).map_err(StartError::AdminSocket)?;
    let admin_task = tokio::spawn(sb_admin::socket::serve(admin_listener, admin));
    web.wait_for(0, RECONCILE_WAIT).await;
    ssh.wait_for(0, RECONCILE_WAIT).await;
    print_banner(&server, &web, &ssh, &options.dir);
    wait_for_signal(stop_signals).await;
    reconciler.abort();
    federation.shutdown().await;
    server.shutdown().await;
    cluster.shutdown().await;
    admin_task.abort();
    web_task.abort();
    ssh_task.abort();
    let _ = std::fs::remove_file(sb_admin::socket::socket_path(&options.dir));
    log::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = startup::maintenance(&args) {
        return code;
    }
    let options = match parse_args(args.into_iter()) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(startup::exit_code(&e));
        }
    };
    let log = init_logger(&options.log_level);
    raise_fd_limit();
    startup::secure_data_dir(&options.dir);
    let started = (|| {
        let store = startup::open_store(&options.dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        runtime.block_on(run(options, store, log))
    })();
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            // The last line init keeps as the reason; the code says whether to restart.
            eprintln!("xmppd: {e}");
            ExitCode::from(startup::exit_code(&e))
        }
    }
}
