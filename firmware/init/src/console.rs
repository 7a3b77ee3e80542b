//! The serial console process (`/init console`), started and restarted by PID 1: the
//! recovery window and menu, the admin login, and the MMP command line. Every command line,
//! the appliance commands included, goes to `mmp` (sb-admin's one parser and executor), so
//! the console gives the same answers as every other front end.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::termios::{self, BaudRate, LocalFlags, SetArg};

use crate::config;
use crate::pid1::{MMP, XMPP_DIR, XMPPD, hostname};
use crate::{cmdline, logger, mounts};
use sb_appliance::Board;
use sb_appliance::control::{self, Request};
use sb_appliance::health::{self, Health};
use sb_appliance::network::NetworkConfig;

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

/// A line typed within the idle limit, the end of input, or nothing for too long.
enum Input {
    Line(String),
    Closed,
    Idle,
}

fn read_line_within(idle: Duration) -> Input {
    if !wait_readable(std::io::stdin().as_fd(), idle) {
        return Input::Idle;
    }
    match read_line() {
        Some(line) => Input::Line(line),
        None => Input::Closed,
    }
}

/// Waits (bounded by `limit`) until `fd` has input: on the terminal in canonical mode that
/// is a whole line, so typing without Enter still counts as idle. A hang-up counts as input
/// (the read then sees the end).
fn wait_readable(fd: BorrowedFd<'_>, limit: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) | Err(_) => return true,
        }
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
    let board =
        Board::load(std::path::Path::new(sb_appliance::paths::BOARD_FILE)).unwrap_or_else(|_| Board::fallback());
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
        // With /data unavailable the service never becomes ready: straight to the reason.
        if !std::path::Path::new(control::DATA_ERROR).exists() {
            wait_until_ready();
        }
    }
    let idle = Duration::from_secs(u64::from(cmdline.console_idle_s));
    loop {
        if !login(&board) {
            std::process::exit(0);
        }
        if !session(&board, idle) {
            std::process::exit(0);
        }
    }
}

/// Holds the login prompt back until the service is up (or a key is pressed), so boot
/// messages do not land in the middle of it.
fn wait_until_ready() {
    let deadline = Instant::now() + Duration::from_secs(180);
    let settled =
        || std::path::Path::new(control::READY).exists() || std::path::Path::new(control::XMPPD_HELD).exists();
    while Instant::now() < deadline && !settled() {
        if key_within(Duration::from_millis(500)) {
            break;
        }
    }
}

/// First boot: set the admin password before anything else. Then the login prompt.
/// Returns false when the terminal went away.
fn login(board: &Board) -> bool {
    if !mounts::is_mounted(mounts::DATA) {
        // No password file to check against, and nothing a login could reach: only recovery
        // helps, and it never asks for a password (physical access is the trust there).
        let reason = std::fs::read_to_string(control::DATA_ERROR).unwrap_or_else(|_| "not mounted".into());
        out(&format!("\n/data is not available: {}\n", reason.trim()));
        recovery(board);
        return true;
    }
    if !std::path::Path::new(config::ADMIN).exists() {
        if std::path::Path::new(config::ADMIN_WAS_SET).exists() {
            // An interrupted reset or a damaged file, not a first boot: a password prompt
            // here would be a login without a password.
            out("\nThe admin password file is missing. Set a new one in the recovery menu (2).\n");
            recovery(board);
            return true;
        }
        out("\nFirst boot: choose the admin password.\n");
        return set_admin_password();
    }
    loop {
        out(&format!("\n{} login: ", hostname()));
        let Some(user) = read_line() else { return false };
        let Some(secret) = read_secret("Password: ") else {
            return false;
        };
        // The same check (and upgrade of an old hash) as `admin passwd` and the web admin use.
        // The hash is computed for any user name, so a wrong one takes as long.
        let password_ok = sb_appliance::password::file::verify(std::path::Path::new(config::ADMIN), &secret);
        if user.trim() == "admin" && password_ok {
            log::info!("admin logged in on the console");
            // Appliances set up before the marker existed get it at their next login.
            if !std::path::Path::new(config::ADMIN_WAS_SET).exists() {
                let _ = config::write_atomic(config::ADMIN_WAS_SET, b"");
            }
            return true;
        }
        // What was typed as a user name is often a password typed one prompt too early:
        // never log it.
        if user.trim() == "admin" {
            log::warn!("failed console login for admin");
        } else {
            log::warn!("failed console login (unknown user name)");
        }
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
        match sb_appliance::password::file::set(std::path::Path::new(config::ADMIN), &first) {
            Ok(()) => {
                config::share_admin_hash();
                if let Err(e) = config::write_atomic(config::ADMIN_WAS_SET, b"") {
                    log::warn!("writing the admin-password marker: {e}");
                }
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

/// When PID 1 holds xmppd stopped (damaged store, missing binary): why, and where to go.
fn show_held() {
    if let Ok(reason) = std::fs::read_to_string(control::XMPPD_HELD) {
        out(&format!(
            "\nxmppd is stopped and will not be restarted: {}\n\
             Type 'recovery' for the recovery menu (check, export or restore the store).\n",
            reason.trim()
        ));
    }
}

/// The MMP command line, until logout, `idle` without a command, or the terminal going away
/// (false).
fn session(board: &Board, idle: Duration) -> bool {
    show_held();
    loop {
        out(&format!("{}> ", hostname()));
        let line = match read_line_within(idle) {
            Input::Line(line) => line,
            Input::Closed => return false,
            Input::Idle => {
                log::info!("console session idle for {} s: logged out", idle.as_secs());
                out(&format!("\nLogged out after {} s without a command.\n", idle.as_secs()));
                return true;
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["exit" | "logout" | "quit"] => return true,
            // Logged in at the console is physical access already, which the menu trusts.
            ["recovery"] => recovery(board),
            #[cfg(feature = "test-hooks")]
            ["test", "corrupt-store"] => out(&test_corrupt_store()),
            #[cfg(feature = "test-hooks")]
            ["test", "xmppd-credentials"] => out(&test_xmppd_credentials()),
            #[cfg(feature = "test-hooks")]
            ["test", "watchdog-stop"] => out(&request(Request::TestStopPetting)),
            #[cfg(feature = "test-hooks")]
            ["test", "xmppd-sigstop"] => out(&request(Request::TestStopXmppd)),
            // Every command, the appliance ones included, is parsed and run by sb-admin through
            // mmp, so the console answers exactly as every other front end does.
            _ => run_mmp(&words),
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

fn request(r: Request) -> String {
    match control::send(r) {
        Ok(()) => success(),
        Err(e) => failure(format!("init did not take the request: {e}")),
    }
}

fn save_network(config: &NetworkConfig) -> String {
    if let Err(e) = config::write_atomic(config::NETWORK, config.render().as_bytes()) {
        return failure(e);
    }
    request(Request::NetworkReload)
}

/// Physical access is the trust here: no password asked.
fn recovery(board: &Board) {
    let _ = control::send(Request::RecoveryEnter);
    loop {
        if let Ok(reason) = std::fs::read_to_string(control::XMPPD_HELD) {
            out(&format!("\nxmppd was held: {}\n", reason.trim()));
        }
        out("\n=== Switchboard recovery (xmppd is stopped) ===\n\
             1) factory reset (wipe /data)\n\
             2) reset the admin password\n\
             3) show the last log lines\n\
             4) set the network\n\
             5) reboot\n\
             6) leave recovery and start the service\n\
             7) check the XMPP store (open it and read every record)\n\
             8) export the XMPP data folder (a copy under /data/export)\n\
             9) restore the XMPP store from its last-good copy\n\
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
            "7" => run_xmppd_maintenance("--check-store"),
            "8" => out(&export_data_folder()),
            "9" => {
                out("The current store is kept aside (store.damaged-<time>), not erased.\n");
                run_xmppd_maintenance("--restore-last-good");
            }
            other => out(&format!("unknown choice {other:?}\n")),
        }
    }
}

/// `xmppd -d /data/xmpp --check-store` or `--restore-last-good`, its output on the terminal.
/// xmppd is stopped in recovery, so it has the store to itself.
fn run_xmppd_maintenance(flag: &str) {
    match std::process::Command::new(XMPPD)
        .args(["-d", XMPP_DIR, flag])
        .stdin(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {
            out("SUCCESS: choose 6 to start the service with it.\n");
        }
        Ok(status) => out(&format!("FAILURE: xmppd {flag} ended with {status}\n")),
        Err(e) => out(&format!("FAILURE: {XMPPD}: {e}\n")),
    }
}

/// A copy of the whole data folder (store, certificates, the last-good copy) under
/// /data/export, before anything is restored over it.
fn export_data_folder() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = std::path::PathBuf::from(format!("{}/export/xmpp-{now}", mounts::DATA));
    match copy_tree(std::path::Path::new(XMPP_DIR), &to, 0) {
        Ok(bytes) => {
            nix::unistd::sync();
            format!("SUCCESS: {} ({} KiB)\n", to.display(), bytes.div_ceil(1024))
        }
        Err(e) => failure(format!("copying {XMPP_DIR} to {}: {e}", to.display())),
    }
}

/// Copies regular files and directories (owner-only), skipping sockets and links; bounded depth.
fn copy_tree(from: &std::path::Path, to: &std::path::Path, depth: usize) -> std::io::Result<u64> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() && depth < 16 {
            bytes += copy_tree(&entry.path(), &target, depth + 1)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(bytes)
}

/// Test hook: garbage over every file of sled's, then the service started on it, as a
/// damaged disk would leave it.
#[cfg(feature = "test-hooks")]
fn test_corrupt_store() -> String {
    if let Err(e) = control::send(Request::RecoveryEnter) {
        return failure(e);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !xmppd_stopped() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let store = std::path::Path::new(XMPP_DIR).join("store");
    let mut damaged = 0;
    for entry in std::fs::read_dir(&store).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_file() {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0).max(64);
            if std::fs::write(&path, vec![0xA5u8; len as usize]).is_ok() {
                damaged += 1;
            }
        }
    }
    nix::unistd::sync();
    let _ = control::send(Request::RecoveryLeave);
    format!("SUCCESS: {damaged} store files overwritten\n")
}

/// Test hook: xmppd's credentials from /proc and any data-folder entry that is not owner-only
/// or not owned by the xmppd user.
#[cfg(feature = "test-hooks")]
fn test_xmppd_credentials() -> String {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let pid = Health::read(std::path::Path::new(control::HEALTH))
        .get(health::XMPPD)
        .and_then(|v| {
            let (_, rest) = v.split_once("(pid ")?;
            rest.trim_end_matches(')').parse::<u32>().ok()
        });
    let Some(pid) = pid else {
        return failure("xmppd is not running");
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut text = String::new();
    for line in status.lines() {
        if ["Uid:", "Gid:", "CapEff:", "CapPrm:"]
            .iter()
            .any(|k| line.starts_with(k))
        {
            text.push_str(&line.split_whitespace().collect::<Vec<_>>().join(" "));
            text.push('\n');
        }
    }
    let mut wrong = Vec::new();
    let mut pending = vec![std::path::PathBuf::from(XMPP_DIR)];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != wanted || meta.uid() != crate::privileges::XMPPD_UID {
            wrong.push(format!("{} {mode:o} uid {}", path.display(), meta.uid()));
        }
        if meta.is_dir() && pending.len() < 10_000 {
            pending.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    if wrong.is_empty() {
        text.push_str("data folder: owner-only, owned by the xmppd user\n");
    } else {
        text.push_str(&format!("data folder entries not owner-only: {}\n", wrong.join(", ")));
    }
    text
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
    if !mounts::mkfs(&device, &board.disk.data_label, &|| {}) {
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
    Health::read(std::path::Path::new(control::HEALTH))
        .get(health::XMPPD)
        .is_some_and(|v| v.starts_with("stopped"))
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
        let mut stored = config::load_network();
        let name = board
            .kernel_iface(&iface)
            .map(|k| board.board_iface(k).to_string())
            .unwrap_or(iface.clone());
        stored.addresses.retain(|a| a.iface != name);
        save_network(&stored)
    } else {
        out("Gateway (empty for none): ");
        let Some(gateway) = read_line() else { return };
        let mut args = vec!["ipv4", iface.as_str(), "add", cidr.trim()];
        if !gateway.trim().is_empty() {
            args.push(gateway.trim());
        }
        // The same `ipv4` command as on the command line: sb-admin validates and stores it.
        run_mmp(&args);
        return;
    };
    out(&result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_input_gives_up_after_the_limit_and_sees_a_line_or_a_hang_up() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        assert!(!wait_readable(reader.as_fd(), Duration::from_millis(50)));
        nix::unistd::write(&writer, b"health\n").unwrap();
        assert!(wait_readable(reader.as_fd(), Duration::from_secs(30)));
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(writer);
        assert!(wait_readable(reader.as_fd(), Duration::from_secs(30)));
    }
}
