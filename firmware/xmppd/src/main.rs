//! The Switchboard daemon: composition root wiring store, server and admin.
//!
//! `xmppd -d DIR [options]`: opens the store in DIR, applies the embedded default on a
//! fresh DIR (domain `localhost`, listening on 127.0.0.1, a self-signed certificate), starts
//! the XMPP service and the admin socket, and shuts down cleanly on SIGTERM or SIGINT.

use sb_admin::{Admin, ListenerStatus, LiveNode, LiveStatus, SessionInfo};
use sb_server::{Server, ServerTuning};
use sb_store::{Store, TlsIdentity};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: xmppd -d DIR [--log-level LEVEL[,module=LEVEL...]] [--idle-timeout SECS]
             [--pre-auth-timeout SECS] [--keepalive SECS] [--write-timeout SECS]
             [--shutdown-timeout SECS] [--max-connections-per-ip N] [--max-auth-failures-per-ip N]";

/// Name of the certificate made on first start when none is configured.
const SELF_SIGNED_BASENAME: &str = "selfsigned";

/// How often the heartbeat byte goes to init (issue 5's supervision contract).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

struct Options {
    dir: PathBuf,
    log_level: String,
    tuning: ServerTuning,
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
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, StartError> {
    let mut dir = None;
    let mut log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut tuning = ServerTuning::default();
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
            "--max-auth-failures-per-ip" => tuning.max_auth_failures_per_ip = number(value(&mut args, &arg)?, &arg)?,
            "-h" | "--help" => return Err(StartError::Usage(USAGE.to_owned())),
            other => return Err(StartError::Usage(format!("unknown argument '{other}'\n{USAGE}"))),
        }
    }
    let dir = dir.ok_or_else(|| StartError::Usage(USAGE.to_owned()))?;
    Ok(Options { dir, log_level, tuning })
}

fn parse_level(text: &str) -> Option<log::LevelFilter> {
    text.trim().parse().ok()
}

/// `info` or `warn,sb_server=debug`: a default level and per-module levels, RUST_LOG style.
fn init_logger(spec: &str) {
    let mut logger = simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Info);
    let mut sled_level = log::LevelFilter::Warn;
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('=') {
            Some((module, level)) => {
                let Some(level) = parse_level(level) else { continue };
                if module.trim() == "sled" {
                    sled_level = level;
                } else {
                    logger = logger.with_module_level(module.trim(), level);
                }
            }
            None => {
                if let Some(level) = parse_level(part) {
                    logger = logger.with_level(level);
                }
            }
        }
    }
    // Chatty dependencies stay at warn unless asked for by name; sled never goes above info
    // whatever is asked, because at debug it prints the pages it writes, secrets included.
    for module in ["rustls", "tokio_rustls"] {
        if !spec.contains(module) {
            logger = logger.with_module_level(module, log::LevelFilter::Warn);
        }
    }
    logger = logger.with_module_level("sled", sled_level.min(log::LevelFilter::Info));
    if let Err(e) = logger.init() {
        eprintln!("xmppd: logger: {e}");
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
fn apply_defaults(store: &Store, dir: &Path) -> Result<(), StartError> {
    let config = store.xmpp_config()?;
    if !config.is_configured() {
        log::info!("no configuration yet: serving domain 'localhost' on 127.0.0.1");
        store.update_xmpp_config(|c| {
            c.domain = "localhost".to_owned();
            if c.listen.is_empty() {
                c.listen = vec!["127.0.0.1".to_owned()];
            }
            c.enabled = true;
        })?;
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
        store.update_xmpp_config(|c| {
            c.tls = Some(TlsIdentity {
                key: format!("{SELF_SIGNED_BASENAME}.key"),
                cert: format!("{SELF_SIGNED_BASENAME}.crt"),
                bundle: None,
            });
        })?;
    }
    Ok(())
}

/// The admin layer's view of the running server.
struct LiveServer {
    server: Arc<Server>,
    runtime: tokio::runtime::Handle,
}

impl LiveNode for LiveServer {
    fn status(&self) -> LiveStatus {
        let status = self.server.status();
        LiveStatus {
            running: status.running,
            started_at_unix: status.started_at_unix,
            listeners: status
                .listeners
                .into_iter()
                .map(|l| ListenerStatus {
                    address: l.bound.map(|a| a.to_string()).unwrap_or(l.address),
                    error: l.error,
                })
                .collect(),
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
            // Components and federation report here once they exist.
            ..LiveStatus::default()
        }
    }

    /// Runs on the admin layer's blocking thread: wait for the reload, so a command that
    /// follows (`xmpp status`) already sees its effect.
    fn config_changed(&self) {
        let server = Arc::clone(&self.server);
        let reload = self
            .runtime
            .block_on(async move { tokio::time::timeout(Duration::from_secs(30), server.reload()).await });
        match reload {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("reload: {e}"),
            Err(_) => log::error!("reload did not finish within 30 s"),
        }
    }

    fn user_changed(&self, user: &str) {
        let closed = self.server.kick_user(user);
        if closed > 0 {
            log::info!("account {user} changed: closing {closed} session(s)");
        }
    }
}

/// Write one byte to init's pipe every 2 s: proof that the runtime still schedules tasks.
fn start_heartbeat() {
    let Ok(text) = std::env::var("SB_HEARTBEAT_FD") else {
        return;
    };
    let Ok(raw) = text.trim().parse::<std::os::fd::RawFd>() else {
        log::warn!("SB_HEARTBEAT_FD='{text}' is not a file descriptor; no heartbeats");
        return;
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
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            ticker.tick().await;
            match nix::unistd::write(&fd, b".") {
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => {
                    log::warn!("heartbeat fd {raw}: {e}; no more heartbeats");
                    return;
                }
            }
        }
    });
}

fn print_banner(server: &Server, dir: &Path) {
    let status = server.status();
    println!(
        "Switchboard xmppd {}: XMPP domain '{}'",
        env!("CARGO_PKG_VERSION"),
        status.domain
    );
    for listener in &status.listeners {
        match (&listener.bound, &listener.error) {
            (Some(addr), _) => println!("  clients: listening on {addr}"),
            (None, Some(error)) => println!("  clients: NOT listening on {}: {error}", listener.address),
            (None, None) => {}
        }
    }
    if !status.enabled {
        println!("  the XMPP service is disabled (mmp -d {} xmpp enable)", dir.display());
    }
    println!("Add a user:  mmp -d {} user add <name>", dir.display());
    if let Some(addr) = status.listeners.iter().find_map(|l| l.bound) {
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

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        log::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
}

async fn run(options: Options, store: Store) -> Result<(), StartError> {
    start_heartbeat();
    let server = Server::new(store.clone(), &options.dir, options.tuning);
    server.start().await?;
    let live = Arc::new(LiveServer {
        server: Arc::clone(&server),
        runtime: tokio::runtime::Handle::current(),
    });
    let admin = Arc::new(Admin::new(store, options.dir.clone(), Some(live)));
    let admin_listener = sb_admin::socket::bind(&options.dir).map_err(StartError::AdminSocket)?;
    let admin_task = tokio::spawn(sb_admin::socket::serve(admin_listener, admin));
    print_banner(&server, &options.dir);
    wait_for_signal().await;
    server.shutdown().await;
    admin_task.abort();
    let _ = std::fs::remove_file(sb_admin::socket::socket_path(&options.dir));
    log::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logger(&options.log_level);
    raise_fd_limit();
    let started = (|| {
        let store = Store::open(&options.dir)?;
        apply_defaults(&store, &options.dir)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        runtime.block_on(run(options, store))
    })();
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("xmppd: {e}");
            ExitCode::FAILURE
        }
    }
}
