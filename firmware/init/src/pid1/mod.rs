//! PID 1: bring the box up, then one poll loop that supervises xmppd, the DHCP client and
//! the console, pets the watchdog, reaps every zombie and shuts down in order.
//! Synchronous on purpose (no tokio: its SIGCHLD handling races a PID-1 reaper).

mod health;
mod network;
mod shutdown;
mod supervision;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::reboot::{RebootMode, reboot, set_cad_enabled};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::backoff::{Backoff, Verdict};
use crate::cmdline::{self, Cmdline};
use crate::config;
use crate::start_failure::{self, Held};
use crate::upgrade::{self, Upgrades};
use crate::watchdog::{WDIOF_CARDRESET, Watchdog};
use crate::{kmod, logger, mounts, net, privileges};
use sb_appliance::Board;
use sb_appliance::control::{self, Request};
use sb_appliance::health::Health;
use sb_appliance::network::NetworkConfig;

use sb_appliance::paths::BOARD_FILE;
pub const XMPPD: &str = "/bin/xmppd";
pub const MMP: &str = "/bin/mmp";
pub const XMPP_DIR: &str = "/data/xmpp";
/// Marks that the appliance's first-boot settings were given to xmppd's store.
const SETUP_DONE: &str = "/data/appliance/xmpp-setup-done";
const HEARTBEAT_FD: RawFd = 3;
/// xmppd writes a byte every 2 s; this many seconds of silence means it is stuck.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Before the first heartbeat (store open, first-boot certificate under emulation).
const STARTUP_GRACE: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const XMPP_PORT: u16 = 5222;
/// What xmppd writes on the heartbeat pipe once its client listener is bound (a heartbeat
/// is any other byte).
const READY_BYTE: u8 = b'R';
/// After xmppd's ready signal, how often init looks for the default interface's address.
const ADDRESS_PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Without the signal, how often init tries to connect to port 5222.
const PORT_PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// RLIMIT_NOFILE for xmppd (soft and hard): 10,000 sessions and their TLS state with room to
/// spare; the kernel's own ceiling (fs.nr_open) is a million.
const XMPPD_OPEN_FILES: libc::rlim_t = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Reboot,
    PowerOff,
}

struct Xmppd {
    pid: Option<Pid>,
    started: Instant,
    last_heartbeat: Instant,
    heard: bool,
    heartbeat: Option<OwnedFd>,
    output: Option<OwnedFd>,
    line: heapless::Vec<u8, 1024>,
    restart_at: Option<Instant>,
    restarts: u32,
    last_exit: heapless::String<160>,
    /// Why init killed it, reported instead of the bare signal.
    kill_reason: Option<&'static str>,
    backoff: Backoff,
    /// When a held xmppd that ignored SIGTERM gets SIGKILL.
    kill_at: Option<Instant>,
    /// Kept stopped: recovery menu, missing /data, or shutting down.
    held: bool,
    /// Kept stopped because starting again cannot help (damaged store, missing binary) until
    /// the operator repairs it in the recovery menu; the watchdog is still petted.
    held_for: Option<Held>,
    /// xmppd's last output line: the reason of a start failure.
    last_line: heapless::String<256>,
    /// xmppd wrote its readiness byte (`R`) on the heartbeat pipe: its client listener is bound.
    signalled_ready: bool,
    gave_up: bool,
}

struct Helper {
    pid: Option<Pid>,
    restart_at: Option<Instant>,
}

struct Pid1 {
    boot: Instant,
    init_uptime: f64,
    cmdline: Cmdline,
    board: Board,
    watchdog: Option<Watchdog>,
    petting: bool,
    next_pet: Instant,
    data_ok: bool,
    xmppd: Xmppd,
    console: Helper,
    dhcp: Helper,
    dhcp_iface: Option<String>,
    setup_pid: Option<Pid>,
    ready: bool,
    next_ready_probe: Instant,
    last_reset: String,
    shutdown: Option<(Shutdown, Instant)>,
    control: Option<UnixDatagram>,
    /// [`control::UPGRADE_SOCKET`]: upgrade requests from xmppd's front ends, nothing else.
    upgrade_requests: Option<UnixDatagram>,
    /// A/B upgrades: the boot slots, a slot on trial, a slot being written.
    upgrades: Option<Upgrades>,
}

fn read_to_string(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn set_hostname(name: &str) {
    if let Err(e) = nix::unistd::sethostname(name) {
        log::warn!("sethostname {name}: {e}");
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "switchboard".into())
}

fn pipe() -> Option<(OwnedFd, OwnedFd)> {
    match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
        Ok(p) => Some(p),
        Err(e) => {
            log::error!("pipe: {e}");
            None
        }
    }
}

/// Children must not inherit PID 1's blocked signals (std keeps the mask across exec):
/// a daemon with SIGTERM blocked never hears the shutdown.
pub fn unblock_signals_in_child(command: &mut Command) -> &mut Command {
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        })
    }
}

fn self_exe() -> &'static str {
    if std::path::Path::new("/init").exists() {
        "/init"
    } else {
        "/proc/self/exe"
    }
}

pub fn run() -> ! {
    let init_uptime = logger::uptime_s();
    mounts::early();
    logger::init("init");
    log::info!(
        "Switchboard init {} starting ({init_uptime:.2} s after kernel start)",
        env!("CARGO_PKG_VERSION")
    );

    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGHUP,
    ] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        log::error!("blocking signals: {e}");
    }
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC);
    if let Err(e) = &signal_fd {
        log::error!("signalfd: {e}; zombies will be reaped by polling");
    }
    // Ctrl-Alt-Del becomes SIGINT to us, so it is an orderly reboot rather than an instant one.
    let _ = set_cad_enabled(false);

    let cmdline = cmdline::parse(&read_to_string("/proc/cmdline"));
    let board_path = cmdline.board.as_deref().unwrap_or(BOARD_FILE).to_string();
    let board = Board::load(std::path::Path::new(&board_path)).unwrap_or_else(|e| {
        log::error!("board file: {e}; using built-in defaults");
        Board::fallback()
    });

    let mut wanted = board.kernel.modules.clone();
    if std::path::Path::new("/sys/firmware/efi").exists() {
        wanted.extend(board.kernel.uefi_modules.iter().cloned());
    }
    // Each link goes up as soon as its driver made the interface: the kernel then settles the
    // link (carrier, queue, operational state) while the other modules load and /data mounts,
    // instead of delaying the first DHCP packet.
    let mut links_down: Vec<&str> = board.network.interfaces.iter().map(|i| i.kernel.as_str()).collect();
    let loaded = kmod::load_board_modules(&board.kernel.release, &wanted, || {
        links_down.retain(|iface| net::link_up(iface).is_err());
    });
    log::info!("loaded {loaded} kernel modules for board {}", board.board.name);

    set_hostname(read_to_string("/etc/hostname").trim());
    let _ = net::link_up("lo");

    let timeout = cmdline.watchdog_timeout_s.unwrap_or(board.watchdog.timeout_s);
    let watchdog = match Watchdog::open(&board.watchdog.device, timeout) {
        Ok(w) => {
            log::info!(
                "watchdog {}: timeout {} s, petting every {} ms",
                w.device,
                w.timeout.as_secs(),
                w.pet_interval().as_millis()
            );
            Some(w)
        }
        Err(e) => {
            log::warn!("no hardware watchdog ({e})");
            None
        }
    };

    let pet_during_checks = || {
        if let Some(w) = &watchdog {
            w.pet();
        }
    };
    let data = mounts::mount_data(&board.disk.data_label, &pet_during_checks);
    let data_ok = match &data {
        Ok(device) => {
            log::info!("{device} mounted on /data");
            let _ = std::fs::remove_file(control::DATA_ERROR);
            config::restrict_settings();
            true
        }
        Err(e) => {
            log::error!("/data unavailable: {e}; xmppd stays stopped");
            // The console shows this before anything else and sends the operator to recovery.
            let _ = std::fs::write(control::DATA_ERROR, e);
            false
        }
    };

    let mut pid1 = Pid1 {
        boot: Instant::now(),
        init_uptime,
        cmdline,
        board,
        watchdog,
        petting: true,
        next_pet: Instant::now(),
        data_ok,
        xmppd: Xmppd {
            pid: None,
            started: Instant::now(),
            last_heartbeat: Instant::now(),
            heard: false,
            heartbeat: None,
            output: None,
            line: heapless::Vec::new(),
            restart_at: None,
            restarts: 0,
            last_exit: heapless::String::new(),
            kill_reason: None,
            backoff: Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(30),
                Duration::from_secs(120),
                5,
                Duration::from_secs(300),
            ),
            kill_at: None,
            held: !data_ok,
            held_for: None,
            last_line: heapless::String::new(),
            signalled_ready: false,
            gave_up: false,
        },
        console: Helper {
            pid: None,
            restart_at: Some(Instant::now()),
        },
        dhcp: Helper {
            pid: None,
            restart_at: None,
        },
        dhcp_iface: None,
        setup_pid: None,
        ready: false,
        next_ready_probe: Instant::now(),
        last_reset: String::new(),
        shutdown: None,
        control: None,
        upgrade_requests: None,
        upgrades: None,
    };
    pid1.record_boot_reason();
    pid1.upgrades = Some(Upgrades::at_boot(
        data_ok,
        &read_to_string("/proc/cmdline"),
        &pid1.last_reset,
    ));
    if data_ok && let Ok(name) = std::fs::read_to_string(config::HOSTNAME) {
        set_hostname(name.trim());
    }
    pid1.control = bind_control(control::SOCKET, 0o600, None);
    pid1.upgrade_requests = bind_control(control::UPGRADE_SOCKET, 0o660, Some(crate::privileges::XMPPD_GID));
    pid1.apply_network();
    // The DHCP client runs while xmppd starts, not after: the lease is on the way to ready.
    if pid1.dhcp.restart_at.take().is_some() {
        pid1.spawn_dhcp();
    }
    if pid1.cmdline.recovery {
        log::warn!("switchboard.recovery on the command line: xmppd stays stopped");
        pid1.xmppd.held = true;
    }
    pid1.start_xmppd_or_setup();
    pid1.spawn_console();
    pid1.write_health();
    pid1.main_loop(signal_fd.ok())
}

/// A request socket, owned by root and `group` with `mode`: until both are set, nobody else
/// may use it, so a failure leaves the socket closed rather than open too wide.
fn bind_control(path: &str, mode: u32, group: Option<u32>) -> Option<UnixDatagram> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let bound = UnixDatagram::bind(path).and_then(|socket| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, Some(0), Some(gid))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    });
    match bound {
        Ok(socket) => Some(socket),
        Err(e) => {
            log::error!("request socket {path}: {e}");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

impl Pid1 {
    fn handle_request(&mut self, request: Request) {
        log::info!("request: {}", request.as_str());
        match request {
            Request::Reboot => self.begin_shutdown(Shutdown::Reboot),
            Request::PowerOff => self.begin_shutdown(Shutdown::PowerOff),
            Request::RecoveryEnter => {
                self.xmppd.held = true;
                self.xmppd.restart_at = None;
                self.stop_xmppd();
            }
            Request::RecoveryLeave => {
                self.xmppd.held = !self.data_ok;
                self.xmppd.gave_up = false;
                // The operator repaired or restored what held it: try again (and hold again
                // if it was not enough).
                if self.xmppd.held_for.take().is_some() {
                    let _ = std::fs::remove_file(control::XMPPD_HELD);
                }
                self.start_xmppd_or_setup();
            }
            Request::NetworkReload => self.apply_network(),
            Request::TestStopPetting | Request::TestStopXmppd if !cfg!(feature = "test-hooks") => {
                log::warn!(
                    "test hook {} refused: this image is built without test hooks",
                    request.as_str()
                )
            }
            Request::TestStopPetting => self.stop_petting("test hook"),
            Request::TestStopXmppd => {
                if let Some(pid) = self.xmppd.pid {
                    log::warn!("test hook: SIGSTOP to xmppd (pid {pid})");
                    let _ = kill(pid, Signal::SIGSTOP);
                }
            }
        }
        self.write_health();
    }

    /// Timers: watchdog, heartbeat deadline, restarts, readiness, shutdown deadline.
    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.petting && now >= self.next_pet {
            if let Some(w) = &self.watchdog {
                w.pet();
                self.next_pet = now + w.pet_interval();
            } else {
                self.next_pet = now + Duration::from_secs(3600);
            }
        }
        if let Some(pid) = self.xmppd.pid {
            let limit = if self.xmppd.heard {
                HEARTBEAT_TIMEOUT
            } else {
                STARTUP_GRACE
            };
            let silent = now.saturating_duration_since(self.xmppd.last_heartbeat);
            if silent > limit && self.xmppd.kill_reason.is_none() && self.shutdown.is_none() {
                log::error!("xmppd sent no heartbeat for {} s: killing it", silent.as_secs());
                self.xmppd.kill_reason = Some(if self.xmppd.heard {
                    "killed: heartbeats stopped"
                } else {
                    "killed: no heartbeat after start"
                });
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        if let (Some(pid), Some(at)) = (self.xmppd.pid, self.xmppd.kill_at)
            && now >= at
            && self.xmppd.held
        {
            log::warn!("xmppd ignored SIGTERM for {} s: SIGKILL", STOP_TIMEOUT.as_secs());
            let _ = kill(pid, Signal::SIGKILL);
            self.xmppd.kill_at = None;
        }
        if self.xmppd.restart_at.is_some_and(|t| now >= t) && self.shutdown.is_none() && !self.xmppd_kept_stopped() {
            self.xmppd.restart_at = None;
            self.xmppd.restarts += 1;
            self.spawn_xmppd();
        }
        if self.console.restart_at.is_some_and(|t| now >= t) && self.shutdown.is_none() {
            self.spawn_console();
        }
        if self.dhcp.restart_at.is_some_and(|t| now >= t) && self.shutdown.is_none() {
            self.dhcp.restart_at = None;
            self.spawn_dhcp();
        }
        self.probe_ready();
        let healthy = self.ready && self.xmppd.pid.is_some() && self.xmppd.heard;
        if self.shutdown.is_none()
            && let Some(upgrade::Action::Reboot) = self.upgrades.as_mut().and_then(|u| u.tick(healthy))
        {
            self.begin_shutdown(Shutdown::Reboot);
        }
    }

    fn handle_upgrade(&mut self, request: upgrade::UpgradeRequest) {
        if self.shutdown.is_none()
            && let Some(upgrade::Action::Reboot) = self.upgrades.as_mut().and_then(|u| u.request(request))
        {
            self.begin_shutdown(Shutdown::Reboot);
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(5);
        let mut next = far;
        if self.petting && self.watchdog.is_some() {
            next = next.min(self.next_pet);
        }
        for t in [
            self.xmppd.restart_at,
            self.xmppd.kill_at,
            self.console.restart_at,
            self.dhcp.restart_at,
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        if !self.ready && self.xmppd.pid.is_some() {
            next = next.min(self.next_ready_probe);
        }
        if let Some((_, t)) = self.shutdown {
            next = next.min(t);
        }
        if let Some(t) = self.upgrades.as_ref().and_then(Upgrades::next_deadline) {
            next = next.min(t);
        }
        next.min(Instant::now() + Duration::from_secs(1))
    }

    fn main_loop(mut self, signal_fd: Option<SignalFd>) -> ! {
        loop {
            if let Some((mode, deadline)) = self.shutdown {
                let services_down = self.xmppd.pid.is_none() && self.setup_pid.is_none();
                if services_down || Instant::now() >= deadline {
                    self.finish_shutdown(mode);
                }
            }
            let timeout = self.next_deadline().saturating_duration_since(Instant::now());
            let timeout = PollTimeout::try_from(timeout.as_millis().min(5000) as i32).unwrap_or(PollTimeout::MAX);
            let (mut sig_ready, mut ctl_ready, mut hb_ready, mut out_ready) = (false, false, false, false);
            let mut upgrade_ready = false;
            {
                let mut tags: heapless::Vec<u8, 5> = heapless::Vec::new();
                let mut polled: heapless::Vec<PollFd, 5> = heapless::Vec::new();
                let sources = [
                    (0u8, signal_fd.as_ref().map(|f| f.as_fd())),
                    (1, self.control.as_ref().map(|f| f.as_fd())),
                    (2, self.xmppd.heartbeat.as_ref().map(|f| f.as_fd())),
                    (3, self.xmppd.output.as_ref().map(|f| f.as_fd())),
                    (4, self.upgrade_requests.as_ref().map(|f| f.as_fd())),
                ];
                for (tag, fd) in sources {
                    if let Some(fd) = fd {
                        let _ = tags.push(tag);
                        let _ = polled.push(PollFd::new(fd, PollFlags::POLLIN));
                    }
                }
                match poll(&mut polled, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => {
                        log::error!("poll: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                for (tag, p) in tags.iter().zip(polled.iter()) {
                    let ready = p.revents().is_some_and(|r| !r.is_empty());
                    match tag {
                        0 => sig_ready = ready,
                        1 => ctl_ready = ready,
                        2 => hb_ready = ready,
                        3 => out_ready = ready,
                        _ => upgrade_ready = ready,
                    }
                }
            }
            if sig_ready && let Some(fd) = &signal_fd {
                while let Ok(Some(info)) = fd.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGTERM | Signal::SIGINT) => self.begin_shutdown(Shutdown::Reboot),
                        Ok(Signal::SIGPWR | Signal::SIGUSR2) => self.begin_shutdown(Shutdown::PowerOff),
                        _ => {}
                    }
                }
            }
            // Reap on every turn: cheap, and covers a lost or coalesced SIGCHLD.
            self.reap();
            if ctl_ready {
                let mut buf = [0u8; 64];
                while let Some(Ok(n)) = self.control.as_ref().map(|s| s.recv(&mut buf)) {
                    if let Some(request) = upgrade::UpgradeRequest::parse(&buf[..n]) {
                        self.handle_upgrade(request);
                        continue;
                    }
                    match Request::parse(&buf[..n]) {
                        Some(request) => self.handle_request(request),
                        None => log::warn!("control: unknown request ignored"),
                    }
                }
            }
            if upgrade_ready {
                let mut buf = [0u8; 64];
                while let Some(Ok(n)) = self.upgrade_requests.as_ref().map(|s| s.recv(&mut buf)) {
                    match upgrade::UpgradeRequest::parse(&buf[..n]) {
                        Some(request) => self.handle_upgrade(request),
                        None => log::warn!("upgrade socket: only upgrade requests are taken there; ignored"),
                    }
                }
            }
            if hb_ready {
                self.drain_heartbeat();
            }
            if out_ready {
                self.drain_output();
            }
            self.on_tick();
        }
    }
}

/// Writes to the console even before (or without) a logger.
pub fn console_line(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}
