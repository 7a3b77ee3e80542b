//! The serial console process (`/init console`), started and restarted by PID 1: the
//! recovery window and menu, the admin login, and the MMP command line. Appliance commands
//! are handled here; every other line goes to `mmp`, so the console gives the same answers
//! as every other front end.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::termios::{self, BaudRate, LocalFlags, SetArg};

use crate::board::Board;
use crate::config::{self, NetworkConfig, StaticIpv4, parse_cidr, valid_hostname};
use crate::control::{self, Request};
use crate::pid1::{MMP, XMPP_DIR, hostname};
use crate::{cmdline, logger, mounts, net, password};

const STARTED_MARKER: &str = "/run/switchboard/console-started";
const LOGIN_DELAY: Duration = Duration::from_secs(2);

fn out(text: &str) {
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// One line from the terminal; None at end of input (the process then ends and PID 1
/// starts a fresh console).
fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

fn set_echo(on: bool) {
    let stdin = std::io::stdin();
    if let Ok(mut t) = termios::tcgetattr(&stdin) {
        t.local_flags.set(LocalFlags::ECHO, on);
        let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &t);
    }
}

fn read_secret(prompt: &str) -> Option<String> {
    out(prompt);
    set_echo(false);
    let line = read_line();
    set_echo(true);
    out("\n");
    line
}

fn baud(rate: u32) -> BaudRate {
    match rate {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        _ => BaudRate::B115200,
    }
}

/// Makes the board's serial port this process's controlling terminal and stdio.
fn open_terminal(board: &Board) -> Result<(), String> {
    let path = format!("/dev/{}", board.console.device);
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    let _ = nix::unistd::setsid();
    // SAFETY: TIOCSCTTY takes an int argument; the fd is open.
    unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) };
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe { libc::dup2(tty.as_raw_fd(), target) };
    }
    if let Ok(mut t) = termios::tcgetattr(&tty) {
        let _ = termios::cfsetspeed(&mut t, baud(board.console.baud));
        t.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ISIG;
        t.input_flags |= termios::InputFlags::ICRNL;
        t.output_flags |= termios::OutputFlags::OPOST | termios::OutputFlags::ONLCR;
        let _ = termios::tcsetattr(&tty, SetArg::TCSANOW, &t);
    }
    Ok(())
}

/// Waits up to `window` for any key, reading raw bytes (no Enter needed).
fn key_within(window: Duration) -> bool {
    let stdin = std::io::stdin();
    let Ok(saved) = termios::tcgetattr(&stdin) else {
        return false;
    };
    let mut raw = saved.clone();
    raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO);
    let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw);
    let mut pressed = false;
    let mut fds = [nix::poll::PollFd::new(
        stdin.as_fd_borrowed(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = window.as_millis().min(60_000) as u16;
    if nix::poll::poll(&mut fds, ms).unwrap_or(0) > 0 {
        pressed = true;
    }
    let _ = termios::tcflush(&stdin, termios::FlushArg::TCIFLUSH);
    let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    pressed
}

trait BorrowFd {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl BorrowFd for std::io::Stdin {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

pub fn run() -> ! {
    logger::init("console");
    let board = Board::load("/etc/switchboard/board.toml").unwrap_or_else(|_| Board::fallback());
    if let Err(e) = open_terminal(&board) {
        log::error!("console: {e}");
        std::thread::sleep(Duration::from_secs(10));
        std::process::exit(1);
    }
    let cmdline = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let first_start = !std::path::Path::new(STARTED_MARKER).exists();
    let _ = std::fs::write(STARTED_MARKER, b"");
    if first_start {
        if cmdline.recovery {
            recovery(&board);
        } else if cmdline.recovery_window_s > 0 {
            out(&format!(
                "Press any key within {} s for the recovery menu...\n",
                cmdline.recovery_window_s
            ));
            if key_within(Duration::from_secs(cmdline.recovery_window_s as u64)) {
                recovery(&board);
            }
        }
        wait_until_ready();
    }
    loop {
        if !login() {
            std::process::exit(0);
        }
        if !session(&board) {
            std::process::exit(0);
        }
    }
}

/// Holds the login prompt back until the service is up (or a key is pressed), so boot
/// messages do not land in the middle of it.
fn wait_until_ready() {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline && !std::path::Path::new(control::READY).exists() {
        if key_within(Duration::from_millis(500)) {
            break;
        }
    }
}

/// First boot: set the admin password before anything else. Then the login prompt.
/// Returns false when the terminal went away.
fn login() -> bool {
    if !mounts::is_mounted(mounts::DATA) {
        out("\n/data is not available: only the recovery menu can help (reboot with switchboard.recovery).\n");
    }
    if !std::path::Path::new(config::ADMIN).exists() {
        out("\nFirst boot: choose the admin password.\n");
        return set_admin_password();
    }
    loop {
        out(&format!("\n{} login: ", hostname()));
        let Some(user) = read_line() else { return false };
        let Some(secret) = read_secret("Password: ") else {
            return false;
        };
        let stored = std::fs::read_to_string(config::ADMIN).unwrap_or_default();
        if user.trim() == "admin" && password::verify(&stored, &secret) {
            log::info!("admin logged in on the console");
            return true;
        }
        log::warn!("failed console login for {:?}", user.trim());
        std::thread::sleep(LOGIN_DELAY);
        out("Login incorrect\n");
    }
}

fn set_admin_password() -> bool {
    loop {
        let Some(first) = read_secret("New admin password: ") else {
            return false;
        };
        let Some(second) = read_secret("Repeat the password: ") else {
            return false;
        };
        if first != second {
            out("The passwords differ; try again.\n");
            continue;
        }
        if first.chars().count() < 8 {
            out("Use at least 8 characters.\n");
            continue;
        }
        match password::hash(&first)
            .and_then(|h| config::write_atomic(config::ADMIN, h.as_bytes()).map_err(|e| e.to_string()))
        {
            Ok(()) => {
                out("SUCCESS\n");
                return true;
            }
            Err(e) => {
                out(&format!("FAILURE: {e}\n"));
                return true;
            }
        }
    }
}

/// The MMP command line. Returns false when the terminal went away.
fn session(board: &Board) -> bool {
    loop {
        out(&format!("{}> ", hostname()));
        let Some(line) = read_line() else { return false };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["exit" | "logout" | "quit"] => return true,
            _ => match appliance_command(board, &words) {
                Some(answer) => out(&answer),
                None => run_mmp(&words),
            },
        }
    }
}

fn run_mmp(words: &[&str]) {
    match std::process::Command::new(MMP)
        .arg("-d")
        .arg(XMPP_DIR)
        .args(words)
        .status()
    {
        Ok(_) => {}
        Err(e) => out(&format!("FAILURE: mmp: {e}\n")),
    }
}

fn success() -> String {
    "SUCCESS\n".into()
}

fn failure(reason: impl std::fmt::Display) -> String {
    format!("FAILURE: {reason}\n")
}

/// Commands the appliance answers itself; None for everything mmp handles.
pub fn appliance_command(board: &Board, words: &[&str]) -> Option<String> {
    Some(match words {
        ["ipv4", iface, rest @ ..] => ipv4(board, iface, rest),
        ["iface"] => net::interfaces()
            .iter()
            .map(|k| format!("{} ({k})\n{}", board.board_iface(k), net::describe(k)))
            .collect::<Vec<_>>()
            .join("\n"),
        ["iface", name] => match board.kernel_iface(name) {
            Some(kernel) => {
                let stored = NetworkConfig::load();
                let mode = match stored.for_iface(board.board_iface(kernel)) {
                    Some(s) => format!(
                        "static {}/{}{}",
                        s.addr,
                        s.prefix,
                        s.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                    ),
                    None if board.network.default_interface == board.board_iface(kernel) => "dhcp4".into(),
                    None => "unconfigured".into(),
                };
                format!(
                    "Interface: {} ({kernel})\n{}Config  : {mode}\n",
                    board.board_iface(kernel),
                    net::describe(kernel)
                )
            }
            None => failure(format!("no interface {name}")),
        },
        ["hostname"] => format!("{}\n", hostname()),
        ["hostname", name] => {
            if !valid_hostname(name) {
                failure("a hostname is 1-63 letters, digits and inner '-'")
            } else if let Err(e) = config::write_atomic(config::HOSTNAME, format!("{name}\n").as_bytes()) {
                failure(e)
            } else {
                let _ = nix::unistd::sethostname(name);
                success()
            }
        }
        ["uptime"] => uptime(),
        ["version"] => format!(
            "Switchboard {}\nkernel {}\n",
            std::fs::read_to_string("/etc/switchboard/version")
                .unwrap_or_default()
                .trim(),
            nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        ["health"] => health(),
        ["reboot"] => request(Request::Reboot),
        ["shutdown"] => request(Request::PowerOff),
        ["admin", "passwd"] => {
            set_admin_password();
            String::new()
        }
        #[cfg(feature = "test-hooks")]
        ["test", "watchdog-stop"] => request(Request::TestStopPetting),
        #[cfg(feature = "test-hooks")]
        ["test", "xmppd-sigstop"] => request(Request::TestStopXmppd),
        _ => return None,
    })
}

fn request(r: Request) -> String {
    match control::send(r) {
        Ok(()) => success(),
        Err(e) => failure(format!("init did not take the request: {e}")),
    }
}

fn ipv4(board: &Board, iface: &str, rest: &[&str]) -> String {
    let Some(kernel) = board.kernel_iface(iface) else {
        return failure(format!("no interface {iface}"));
    };
    let name = board.board_iface(kernel).to_string();
    let mut stored = NetworkConfig::load();
    match rest {
        [] => match stored.for_iface(&name) {
            Some(s) => format!(
                "{}/{}{}\n",
                s.addr,
                s.prefix,
                s.gateway.map(|g| format!(" {g}")).unwrap_or_default()
            ),
            None => "dhcp4 or unconfigured\n".into(),
        },
        ["add", cidr, gateway @ ..] if gateway.len() <= 1 => {
            let (addr, prefix) = match parse_cidr(cidr) {
                Ok(v) => v,
                Err(e) => return failure(e),
            };
            let gateway = match gateway.first().map(|g| g.parse()) {
                Some(Ok(g)) => Some(g),
                Some(Err(_)) => return failure("the gateway must be an IPv4 address"),
                None => None,
            };
            stored.addresses.retain(|a| a.iface != name);
            stored.addresses.push(StaticIpv4 {
                iface: name,
                addr,
                prefix,
                gateway,
            });
            save_network(&stored)
        }
        ["del", cidr] => {
            let Ok((addr, prefix)) = parse_cidr(cidr) else {
                return failure("expected <address>/<prefix>");
            };
            let before = stored.addresses.len();
            stored
                .addresses
                .retain(|a| !(a.iface == name && a.addr == addr && a.prefix == prefix));
            if stored.addresses.len() == before {
                return failure(format!("{cidr} is not configured on {iface}"));
            }
            save_network(&stored)
        }
        _ => failure("usage: ipv4 <iface> add <addr>/<prefix> [<gateway>] | ipv4 <iface> del <addr>/<prefix>"),
    }
}

fn save_network(config: &NetworkConfig) -> String {
    if let Err(e) = config::write_atomic(config::NETWORK, config.render().as_bytes()) {
        return failure(e);
    }
    request(Request::NetworkReload)
}

fn uptime() -> String {
    let up = logger::uptime_s() as u64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "up {} days, {:02}:{:02}:{:02}, load {}\n",
        up / 86400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60,
        load.join(" ")
    )
}

fn health() -> String {
    let h = control::read_health();
    let get = |k: &str| {
        h.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("-")
    };
    let data = match mounts::usage(mounts::DATA).filter(|_| mounts::is_mounted(mounts::DATA)) {
        Some((used, total)) => format!(
            "{} MiB used of {} MiB ({}%)",
            used >> 20,
            total >> 20,
            used * 100 / total.max(1)
        ),
        None => "NOT MOUNTED".into(),
    };
    let memory = memory_in_use().map(|(used, total)| format!("{} MiB used of {} MiB", used >> 10, total >> 10));
    format!(
        "Watchdog          : {} ({}, timeout {} s, boot status {})\nLast reset cause  : {}\nxmppd             : {}\n\
         xmppd restarts    : {}\nxmppd last exit   : {}\nData partition    : {data}\nMemory            : {}\n",
        get("watchdog"),
        get("watchdog_device"),
        get("watchdog_timeout_s"),
        get("watchdog_boot_status"),
        get("last_reset"),
        get("xmppd"),
        get("xmppd_restarts"),
        get("xmppd_last_exit"),
        memory.as_deref().unwrap_or("-"),
    )
}

/// (in use, total) KiB from /proc/meminfo: total minus what the kernel could hand out.
fn memory_in_use() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    let (total, available) = (field("MemTotal:")?, field("MemAvailable:")?);
    Some((total.saturating_sub(available), total))
}

/// Physical access is the trust here: no password asked.
fn recovery(board: &Board) {
    let _ = control::send(Request::RecoveryEnter);
    loop {
        out("\n=== Switchboard recovery (xmppd is stopped) ===\n\
             1) factory reset (wipe /data)\n\
             2) reset the admin password\n\
             3) show the last log lines\n\
             4) set the network\n\
             5) reboot\n\
             6) leave recovery and start the service\n\
             recovery> ");
        let Some(choice) = read_line() else { return };
        match choice.trim() {
            "1" => factory_reset(board),
            "2" => {
                config::remove_durably(config::ADMIN);
                out("The admin password is cleared; set the new one now.\n");
                set_admin_password();
            }
            "3" => {
                for line in logger::tail(40) {
                    out(&format!("{line}\n"));
                }
            }
            "4" => recovery_network(board),
            "5" => {
                out(&request(Request::Reboot));
                std::thread::sleep(Duration::from_secs(30));
            }
            "6" => {
                out(&request(Request::RecoveryLeave));
                return;
            }
            other => out(&format!("unknown choice {other:?}\n")),
        }
    }
}

fn factory_reset(board: &Board) {
    out("This erases every user, setting and certificate on this node.\nType 'factory reset' to confirm: ");
    let Some(answer) = read_line() else { return };
    if answer.trim() != "factory reset" {
        out("Not confirmed; nothing changed.\n");
        return;
    }
    let Some(device) = mounts::find_partition(&board.disk.data_label, Duration::from_secs(2)) else {
        out("FAILURE: no data partition found\n");
        return;
    };
    // The key may come while xmppd is still starting: wait until init reports it stopped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !xmppd_stopped() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    out(&format!("Wiping {device}...\n"));
    nix::unistd::sync();
    let mut unmounted = false;
    for _ in 0..50 {
        match nix::mount::umount2(mounts::DATA, nix::mount::MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {
                unmounted = true;
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    if !unmounted || mounts::is_mounted(mounts::DATA) {
        out("FAILURE: /data is still in use; nothing erased\n");
        return;
    }
    if !mounts::mkfs(&device, &board.disk.data_label) {
        out("FAILURE: mke2fs failed\n");
        return;
    }
    nix::unistd::sync();
    log::warn!("factory reset done on {device}");
    out("SUCCESS: factory reset done; rebooting.\n");
    // The new filesystem is mounted fresh by the next boot; init's own /data mount is gone.
    let _ = control::send(Request::Reboot);
    std::thread::sleep(Duration::from_secs(30));
}

fn xmppd_stopped() -> bool {
    control::read_health()
        .iter()
        .any(|(k, v)| k == "xmppd" && v.starts_with("stopped"))
}

fn recovery_network(board: &Board) {
    out(&format!("Interface [{}]: ", board.network.default_interface));
    let Some(iface) = read_line() else { return };
    let iface = if iface.trim().is_empty() {
        board.network.default_interface.clone()
    } else {
        iface.trim().to_string()
    };
    out("Address/prefix (empty for DHCP): ");
    let Some(cidr) = read_line() else { return };
    let result = if cidr.trim().is_empty() {
        let mut stored = NetworkConfig::load();
        let name = board
            .kernel_iface(&iface)
            .map(|k| board.board_iface(k).to_string())
            .unwrap_or(iface.clone());
        stored.addresses.retain(|a| a.iface != name);
        save_network(&stored)
    } else {
        out("Gateway (empty for none): ");
        let Some(gateway) = read_line() else { return };
        let mut args = vec!["add", cidr.trim()];
        if !gateway.trim().is_empty() {
            args.push(gateway.trim());
        }
        ipv4(board, &iface, &args)
    };
    out(&result);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        Board::load(&format!("{}/../../board/qemu-q35.toml", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn xmpp_commands_go_to_mmp_and_bad_appliance_arguments_fail_cleanly() {
        let b = board();
        assert!(appliance_command(&b, &["xmpp", "status"]).is_none());
        assert!(appliance_command(&b, &["user", "add", "x"]).is_none());
        assert_eq!(
            appliance_command(&b, &["hostname", "bad name!"]).unwrap(),
            failure("a hostname is 1-63 letters, digits and inner '-'")
        );
        assert!(
            appliance_command(&b, &["ipv4", "zz", "add", "1.2.3.4/24"])
                .unwrap()
                .starts_with("FAILURE: no interface zz")
        );
        assert!(
            appliance_command(&b, &["ipv4", "a", "add", "1.2.3.4"])
                .unwrap()
                .starts_with("FAILURE")
        );
        assert!(
            appliance_command(&b, &["ipv4", "a", "add", "1.2.3.4/24", "gw"])
                .unwrap()
                .starts_with("FAILURE")
        );
        assert!(
            appliance_command(&b, &["ipv4", "a", "frob"])
                .unwrap()
                .starts_with("FAILURE: usage")
        );
        assert!(appliance_command(&b, &["uptime"]).unwrap().starts_with("up "));
    }
}
