//! PID 1: bring the box up, then one poll loop that supervises xmppd, the DHCP client and
//! the console, pets the watchdog, reaps every zombie and shuts down in order.
//! Synchronous on purpose (no tokio: its SIGCHLD handling races a PID-1 reaper).

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
use crate::board::Board;
use crate::cmdline::{self, Cmdline};
use crate::config::{self, NetworkConfig};
use crate::control::{self, Request};
use crate::start_failure::{self, Held};
use crate::upgrade::{self, Upgrades};
use crate::watchdog::{WDIOF_CARDRESET, Watchdog};
use crate::{kmod, logger, mounts, net, privileges};

const BOARD_FILE: &str = "/etc/switchboard/board.toml";
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
    let board = Board::load(&board_path).unwrap_or_else(|e| {
        log::error!("board file: {e}; using built-in defaults");
        Board::fallback()
    });

    let loaded = kmod::load_board_modules(&board.kernel.release, &board.kernel.modules);
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
    pid1.control = bind_control();
    pid1.apply_network();
    if pid1.cmdline.recovery {
        log::warn!("switchboard.recovery on the command line: xmppd stays stopped");
        pid1.xmppd.held = true;
    }
    pid1.start_xmppd_or_setup();
    pid1.spawn_console();
    pid1.write_health();
    pid1.main_loop(signal_fd.ok())
}

fn bind_control() -> Option<UnixDatagram> {
    let _ = std::fs::remove_file(control::SOCKET);
    match UnixDatagram::bind(control::SOCKET) {
        Ok(socket) => {
            let _ = socket.set_nonblocking(true);
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(control::SOCKET, std::fs::Permissions::from_mode(0o600));
            Some(socket)
        }
        Err(e) => {
            log::error!("control socket: {e}");
            None
        }
    }
}

impl Pid1 {
    fn record_boot_reason(&mut self) {
        let hardware = self
            .watchdog
            .as_ref()
            .map(|w| w.boot_status & WDIOF_CARDRESET != 0)
            .unwrap_or(false);
        let reason = if !self.data_ok {
            "unknown (/data unavailable)".to_string()
        } else if std::path::Path::new(config::RUNNING).exists() {
            match std::fs::read_to_string(config::WATCHDOG_EXPECTED) {
                Ok(why) => format!("watchdog reset (init stopped petting: {})", why.trim()),
                Err(_) if hardware => "watchdog reset (reported by the hardware)".to_string(),
                Err(_) => "unclean (power loss, crash or hard reset)".to_string(),
            }
        } else if hardware {
            "watchdog reset (reported by the hardware)".to_string()
        } else if std::path::Path::new(config::ADMIN).exists() || std::path::Path::new(SETUP_DONE).exists() {
            "orderly reboot or power on".to_string()
        } else {
            "first boot".to_string()
        };
        log::info!("last reset: {reason}");
        self.last_reset = reason;
        let _ = std::fs::write(config::LAST_RESET, &self.last_reset);
        if self.data_ok {
            config::remove_durably(config::WATCHDOG_EXPECTED);
            if let Err(e) = config::write_atomic(config::RUNNING, b"") {
                log::warn!("writing the running marker: {e}");
            }
        }
    }

    fn default_kernel_iface(&self) -> Option<String> {
        self.board
            .kernel_iface(&self.board.network.default_interface)
            .map(String::from)
    }

    /// Static addresses from /data/appliance/network; DHCPv4 on the default interface otherwise.
    fn apply_network(&mut self) {
        let stored = if self.data_ok {
            NetworkConfig::load()
        } else {
            NetworkConfig::default()
        };
        let mut dhcp_iface = None;
        for iface in self.board.network.interfaces.clone() {
            if let Err(e) = net::link_up(&iface.kernel) {
                log::debug!("link up {}: {e}", iface.kernel);
                continue;
            }
            match stored.for_iface(&iface.name) {
                Some(s) => {
                    let _ = net::clear_ipv4(&iface.kernel);
                    match net::set_ipv4(&iface.kernel, s.addr, s.prefix) {
                        Ok(()) => log::info!("{} ({}): {}/{}", iface.name, iface.kernel, s.addr, s.prefix),
                        Err(e) => log::error!(
                            "{} ({}): setting {}/{}: {e}",
                            iface.name,
                            iface.kernel,
                            s.addr,
                            s.prefix
                        ),
                    }
                    if let Some(gw) = s.gateway
                        && let Err(e) = net::add_default_route(&iface.kernel, gw)
                    {
                        log::warn!("default route via {gw}: {e}");
                    }
                }
                None if iface.name == self.board.network.default_interface && self.board.network.default == "dhcp4" => {
                    dhcp_iface = Some(iface.kernel.clone());
                }
                None => {
                    let _ = net::clear_ipv4(&iface.kernel);
                }
            }
        }
        if !stored.dns.is_empty() {
            let _ = net::write_resolv_conf(&stored.dns);
        }
        if dhcp_iface != self.dhcp_iface {
            if let Some(pid) = self.dhcp.pid.take() {
                let _ = kill(pid, Signal::SIGTERM);
            }
            if let Some(old) = &self.dhcp_iface
                && stored.for_iface(self.board.board_iface(old)).is_none()
            {
                let _ = net::clear_ipv4(old);
            }
            self.dhcp_iface = dhcp_iface;
            self.dhcp.restart_at = self.dhcp_iface.as_ref().map(|_| Instant::now());
        }
    }

    fn spawn_dhcp(&mut self) {
        let Some(iface) = self.dhcp_iface.clone() else { return };
        let mut command = Command::new(self_exe());
        command
            .arg0("dhcp")
            .args(["dhcp", &iface, &hostname()])
            .stdin(Stdio::null());
        unblock_signals_in_child(&mut command);
        match command.spawn() {
            Ok(child) => self.dhcp.pid = Some(Pid::from_raw(child.id() as i32)),
            Err(e) => {
                log::error!("starting the DHCP client: {e}");
                self.dhcp.restart_at = Some(Instant::now() + Duration::from_secs(10));
            }
        }
    }

    fn spawn_console(&mut self) {
        let mut command = Command::new(self_exe());
        command.arg0("console").arg("console").stdin(Stdio::null());
        unblock_signals_in_child(&mut command);
        match command.spawn() {
            Ok(child) => self.console.pid = Some(Pid::from_raw(child.id() as i32)),
            Err(e) => {
                log::error!("starting the console: {e}");
                self.console.restart_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
        self.console.restart_at = None;
    }

    /// On the first boot, give xmppd's store the appliance defaults (listen on every
    /// interface, not just loopback) through mmp, then start xmppd.
    fn start_xmppd_or_setup(&mut self) {
        if self.xmppd_kept_stopped() || self.xmppd.pid.is_some() || self.setup_pid.is_some() {
            return;
        }
        let _ = std::fs::create_dir_all(XMPP_DIR);
        if !std::path::Path::new(SETUP_DONE).exists() {
            log::info!("first boot: mmp xmpp listen 0.0.0.0");
            let mut setup = Command::new(MMP);
            setup
                .args(["-d", XMPP_DIR, "xmpp", "listen", "0.0.0.0"])
                .stdin(Stdio::null());
            match unblock_signals_in_child(&mut setup).spawn() {
                Ok(child) => {
                    self.setup_pid = Some(Pid::from_raw(child.id() as i32));
                    return;
                }
                Err(e) => log::error!("running mmp for first-boot setup: {e}"),
            }
        }
        self.spawn_xmppd();
    }

    fn xmppd_kept_stopped(&self) -> bool {
        self.xmppd.held || self.xmppd.held_for.is_some()
    }

    /// Stops restarting xmppd (issue 13): the reason goes to the log, `health` and the console.
    fn hold_xmppd(&mut self, held: Held) {
        log::error!("xmppd held stopped, not restarted: {held}. The recovery menu can check, export or restore it");
        let _ = std::fs::write(control::XMPPD_HELD, held.to_string());
        self.xmppd.held_for = Some(held);
        self.xmppd.restart_at = None;
        self.write_health();
    }

    fn spawn_xmppd(&mut self) {
        // Root-run tools (mmp on a stopped daemon, first-boot setup, a recovery restore) may
        // have left files xmppd's user could not open.
        let _ = std::fs::create_dir_all(XMPP_DIR);
        let failures = privileges::hand_over_data_dir(std::path::Path::new(XMPP_DIR));
        if failures > 0 {
            log::warn!("{failures} entries of {XMPP_DIR} could not be given to the xmppd user");
        }
        let Some((hb_read, hb_write)) = pipe() else {
            return self.schedule_xmppd_restart("no pipe");
        };
        let Some((out_read, out_write)) = pipe() else {
            return self.schedule_xmppd_restart("no pipe");
        };
        let out_write2 = match out_write.try_clone() {
            Ok(fd) => fd,
            Err(_) => return self.schedule_xmppd_restart("no fd"),
        };
        let hb_raw = hb_write.as_raw_fd();
        let mut command = Command::new(XMPPD);
        command
            .args(["-d", XMPP_DIR])
            .env("SB_HEARTBEAT_FD", HEARTBEAT_FD.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(out_write2));
        unblock_signals_in_child(&mut command);
        // SAFETY: only async-signal-safe calls (setsid, setrlimit, dup2, fcntl, and the
        // credential calls of become_xmppd) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::setsid();
                // PID 1 starts with the kernel's 1024 descriptors; xmppd needs one per session
                // plus headroom for the admin socket and certificate reloads (it raises its soft
                // limit to this hard one). A failure leaves the inherited limit, which works,
                // only smaller, so it is not a reason to refuse to start.
                let files = libc::rlimit {
                    rlim_cur: XMPPD_OPEN_FILES,
                    rlim_max: XMPPD_OPEN_FILES,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &files);
                if hb_raw == HEARTBEAT_FD {
                    libc::fcntl(HEARTBEAT_FD, libc::F_SETFD, 0);
                } else if libc::dup2(hb_raw, HEARTBEAT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Last: the limit above needs root; from here on only the bind capability.
                privileges::become_xmppd()
            });
        }
        match command.spawn() {
            Ok(child) => {
                let now = Instant::now();
                self.xmppd.pid = Some(Pid::from_raw(child.id() as i32));
                self.xmppd.started = now;
                self.xmppd.last_heartbeat = now;
                self.xmppd.heard = false;
                self.xmppd.heartbeat = Some(hb_read);
                self.xmppd.output = Some(out_read);
                self.xmppd.kill_reason = None;
                log::info!("xmppd started (pid {})", child.id());
            }
            Err(e) => {
                log::error!("starting xmppd: {e}");
                self.xmppd.last_exit.clear();
                let _ = std::fmt::write(&mut self.xmppd.last_exit, format_args!("could not start: {e}"));
                match start_failure::classify_spawn_error(&e) {
                    Some(held) => self.hold_xmppd(held),
                    None => self.on_xmppd_failure(Duration::ZERO),
                }
            }
        }
        drop(hb_write);
        self.write_health();
    }

    fn schedule_xmppd_restart(&mut self, why: &str) {
        log::error!("xmppd not started: {why}");
        self.xmppd.restart_at = Some(Instant::now() + Duration::from_secs(5));
    }

    fn on_xmppd_exit(&mut self, status: WaitStatus) {
        let ran = self.xmppd.started.elapsed();
        self.xmppd.pid = None;
        self.xmppd.kill_at = None;
        self.xmppd.heartbeat = None;
        self.drain_output();
        self.xmppd.output = None;
        let mut text: heapless::String<160> = heapless::String::new();
        let _ = match (status, self.xmppd.kill_reason.take()) {
            (_, Some(reason)) => std::fmt::write(&mut text, format_args!("{reason}")),
            (WaitStatus::Exited(_, code), None) => {
                std::fmt::write(&mut text, format_args!("exited with status {code}"))
            }
            (WaitStatus::Signaled(_, signal, core), None) => std::fmt::write(
                &mut text,
                format_args!("killed by {signal:?}{}", if core { " (core)" } else { "" }),
            ),
            (other, None) => std::fmt::write(&mut text, format_args!("{other:?}")),
        };
        let _ = std::fmt::write(&mut text, format_args!(" after {} s", ran.as_secs()));
        self.xmppd.last_exit = text;
        if self.shutdown.is_some() || self.xmppd.held {
            log::info!("xmppd stopped: {}", self.xmppd.last_exit);
            self.write_health();
            return;
        }
        log::warn!("xmppd {}", self.xmppd.last_exit);
        let code = match status {
            WaitStatus::Exited(_, code) => Some(code),
            _ => None,
        };
        match start_failure::classify_exit(code, &self.xmppd.last_line) {
            Some(held) => self.hold_xmppd(held),
            None => self.on_xmppd_failure(ran),
        }
    }

    fn on_xmppd_failure(&mut self, ran: Duration) {
        let since_boot = self.boot.elapsed();
        match self.xmppd.backoff.on_exit(since_boot, ran) {
            Verdict::RestartAfter(delay) => {
                log::info!("restarting xmppd in {} ms", delay.as_millis());
                self.xmppd.restart_at = Some(Instant::now() + delay);
            }
            Verdict::GiveUp => {
                let why = format!(
                    "xmppd failed {} times within {} s (last: {})",
                    self.xmppd.backoff.recent_failures(),
                    self.xmppd.backoff.window.as_secs(),
                    self.xmppd.last_exit
                );
                self.xmppd.gave_up = true;
                self.stop_petting(&why);
            }
        }
        self.write_health();
    }

    /// The hardware resets the box when nothing else can bring the service back.
    fn stop_petting(&mut self, why: &str) {
        log::error!("{why}: no longer petting the watchdog; the hardware will reset the box");
        if self.data_ok {
            let _ = config::write_atomic(config::WATCHDOG_EXPECTED, why.as_bytes());
        }
        nix::unistd::sync();
        self.petting = false;
        if self.watchdog.is_none() {
            log::error!("no hardware watchdog: rebooting instead");
            self.begin_shutdown(Shutdown::Reboot);
        }
        self.write_health();
    }

    fn drain_output(&mut self) {
        let Some(fd) = self.xmppd.output.take() else { return };
        let mut buf = [0u8; 512];
        let mut open = true;
        loop {
            match nix::unistd::read(&fd, &mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' || self.xmppd.line.is_full() {
                            self.emit_xmppd_line();
                        }
                        if b != b'\n' {
                            let _ = self.xmppd.line.push(b);
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if open {
            self.xmppd.output = Some(fd);
        } else if !self.xmppd.line.is_empty() {
            self.emit_xmppd_line();
        }
    }

    fn emit_xmppd_line(&mut self) {
        let mut out: heapless::Vec<u8, 1100> = heapless::Vec::new();
        let _ = out.extend_from_slice(b"xmppd: ");
        let _ = out.extend_from_slice(&self.xmppd.line);
        let _ = out.push(b'\n');
        self.xmppd.last_line.clear();
        for c in String::from_utf8_lossy(&self.xmppd.line).chars() {
            if self.xmppd.last_line.push(c).is_err() {
                break;
            }
        }
        self.xmppd.line.clear();
        logger::append_to_file(&out);
        if !self.ready || self.cmdline.debug {
            let _ = std::io::stderr().write_all(&out);
        }
    }

    fn drain_heartbeat(&mut self) {
        let Some(fd) = self.xmppd.heartbeat.as_ref() else {
            return;
        };
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    self.xmppd.heartbeat = None;
                    break;
                }
                Ok(_) => {
                    self.xmppd.last_heartbeat = Instant::now();
                    self.xmppd.heard = true;
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    break;
                }
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    if Some(pid) == self.xmppd.pid {
                        self.on_xmppd_exit(status);
                    } else if Some(pid) == self.setup_pid {
                        self.setup_pid = None;
                        match status {
                            WaitStatus::Exited(_, 0) => {
                                let _ = config::write_atomic(SETUP_DONE, b"listen 0.0.0.0\n");
                            }
                            other => log::warn!("first-boot mmp setup ended with {other:?}; starting xmppd anyway"),
                        }
                        if self.shutdown.is_none() && !self.xmppd_kept_stopped() {
                            self.spawn_xmppd();
                        }
                    } else if Some(pid) == self.console.pid {
                        self.console.pid = None;
                        if self.shutdown.is_none() {
                            self.console.restart_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    } else if Some(pid) == self.dhcp.pid {
                        self.dhcp.pid = None;
                        if self.shutdown.is_none() && self.dhcp_iface.is_some() {
                            log::warn!("DHCP client ended ({status:?}); restarting in 5 s");
                            self.dhcp.restart_at = Some(Instant::now() + Duration::from_secs(5));
                        }
                    }
                    // Anything else is an orphan the kernel handed us: reaped, nothing more.
                }
            }
        }
    }

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

    fn stop_xmppd(&mut self) {
        if let Some(pid) = self.xmppd.pid {
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
            self.xmppd.kill_at = Some(Instant::now() + STOP_TIMEOUT);
        }
    }

    fn begin_shutdown(&mut self, mode: Shutdown) {
        if self.shutdown.is_some() {
            return;
        }
        log::warn!(
            "orderly {}: stopping services",
            if mode == Shutdown::Reboot {
                "reboot"
            } else {
                "power off"
            }
        );
        self.shutdown = Some((mode, Instant::now() + STOP_TIMEOUT));
        self.xmppd.held = true;
        self.stop_xmppd();
        for pid in [self.console.pid, self.dhcp.pid, self.setup_pid].into_iter().flatten() {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }

    fn finish_shutdown(&mut self, mode: Shutdown) -> ! {
        for pid in [self.xmppd.pid, self.console.pid, self.dhcp.pid, self.setup_pid]
            .into_iter()
            .flatten()
        {
            log::warn!("pid {pid} did not stop in time: SIGKILL");
            let _ = kill(pid, Signal::SIGKILL);
        }
        // Everything else still running (orphans) gets the same treatment.
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        self.reap();
        if self.data_ok {
            config::remove_durably(config::RUNNING);
        }
        mounts::unmount_data();
        nix::unistd::sync();
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.magic_close();
        }
        log::warn!(
            "{}",
            if mode == Shutdown::Reboot {
                "rebooting"
            } else {
                "powering off"
            }
        );
        let how = if mode == Shutdown::Reboot {
            RebootMode::RB_AUTOBOOT
        } else {
            RebootMode::RB_POWER_OFF
        };
        let err = reboot(how);
        log::error!("reboot(2) failed: {err:?}; halting here");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    fn probe_ready(&mut self) {
        if self.ready || self.xmppd.pid.is_none() || Instant::now() < self.next_ready_probe {
            return;
        }
        self.next_ready_probe = Instant::now() + Duration::from_millis(500);
        let iface = self.default_kernel_iface();
        let address = iface.as_deref().and_then(net::ipv4);
        let Some((address, _)) = address else { return };
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, XMPP_PORT));
        let external = SocketAddr::from((address, XMPP_PORT));
        let accepts = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(300)).is_ok();
        if !accepts(&local) && !accepts(&external) {
            return;
        }
        self.ready = true;
        let now = logger::uptime_s();
        let line = format!(
            "switchboard: XMPP ready on {address}:{XMPP_PORT} (kernel {:.2} s, userspace {:.2} s, total {now:.2} s)\n",
            self.init_uptime,
            now - self.init_uptime
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        logger::append_to_file(line.as_bytes());
        let _ = std::fs::write(control::READY, &line);
        logger::set_quiet_console(!self.cmdline.debug);
        self.write_health();
    }

    fn write_health(&self) {
        let watchdog = match (&self.watchdog, self.petting) {
            (Some(_), true) => "petting",
            (Some(_), false) => "NOT petting (reset pending)",
            (None, _) => "absent",
        };
        let xmppd = match (self.xmppd.pid, self.xmppd.held, self.xmppd.gave_up) {
            (None, _, _) if self.setup_pid.is_some() => "starting (first-boot setup)".into(),
            (None, _, _) if let Some(held) = &self.xmppd.held_for => format!("stopped (held: {held})"),
            (Some(pid), _, _) if self.ready => format!("running (pid {pid})"),
            (Some(pid), _, _) => format!("starting (pid {pid})"),
            (None, true, _) => "stopped (held)".into(),
            (None, _, true) => "failed (gave up)".into(),
            (None, _, _) => "restarting".into(),
        };
        let text = format!(
            "watchdog={watchdog}\nwatchdog_device={}\nwatchdog_timeout_s={}\nwatchdog_boot_status=0x{:x}\n\
             last_reset={}\nxmppd={xmppd}\nxmppd_restarts={}\nxmppd_last_exit={}\nready={}\nboot_kernel_s={:.2}\n\
             data_error={}\n",
            self.watchdog.as_ref().map(|w| w.device.as_str()).unwrap_or("-"),
            self.watchdog.as_ref().map(|w| w.timeout.as_secs()).unwrap_or(0),
            self.watchdog.as_ref().map(|w| w.boot_status).unwrap_or(0),
            self.last_reset,
            self.xmppd.restarts,
            if self.xmppd.last_exit.is_empty() {
                "-"
            } else {
                self.xmppd.last_exit.as_str()
            },
            self.ready,
            self.init_uptime,
            std::fs::read_to_string(control::DATA_ERROR)
                .map(|e| e.replace('\n', " "))
                .unwrap_or_else(|_| "-".into()),
        );
        let _ = std::fs::write("/run/switchboard/health.tmp", text);
        let _ = std::fs::rename("/run/switchboard/health.tmp", control::HEALTH);
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
            {
                let mut tags: heapless::Vec<u8, 4> = heapless::Vec::new();
                let mut polled: heapless::Vec<PollFd, 4> = heapless::Vec::new();
                let sources = [
                    (0u8, signal_fd.as_ref().map(|f| f.as_fd())),
                    (1, self.control.as_ref().map(|f| f.as_fd())),
                    (2, self.xmppd.heartbeat.as_ref().map(|f| f.as_fd())),
                    (3, self.xmppd.output.as_ref().map(|f| f.as_fd())),
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
                        _ => out_ready = ready,
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
                    if let Some(request) = upgrade::parse_request(&buf[..n]) {
                        self.handle_upgrade(request);
                        continue;
                    }
                    match Request::parse(&buf[..n]) {
                        Some(request) => self.handle_request(request),
                        None => log::warn!("control: unknown request ignored"),
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
