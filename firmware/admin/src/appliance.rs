//! The appliance commands: `ipv4`, `iface`, `uptime`, `version`, `health`, `reboot`,
//! `shutdown`, `admin passwd` (and `hostname <name>` in `hostname.rs`).
//!
//! Parsing, validation and the result text live here, so the serial console and `mmp` give the
//! same answers. The effects go through [`ApplianceHost`]: the settings files PID 1 reads on
//! `/data/appliance`, the health file PID 1 writes and its control socket, both in
//! `/run/switchboard`. A host without PID 1's control socket is not the appliance: commands
//! that need it answer `FAILURE: not running on the appliance`.

use crate::command::{Args, ParseError, Usage};
use crate::{Admin, Family, Reply, SecretPrompt};
use sb_appliance::control::{self, Request};
use sb_appliance::health::{self, Health};
use sb_appliance::network::{Setting, parse_cidr, parse_line};
use sb_appliance::{Board, paths};
use sb_store::{BoardInterface, ListenTarget, Secret};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const NOT_ON_APPLIANCE: &str = "not running on the appliance";
const MIN_ADMIN_PASSWORD_CHARS: usize = 8;

/// Where the appliance's state lives; [`ApplianceHost::system`] on the appliance, a temporary
/// dir in tests.
#[derive(Clone, Debug)]
pub struct ApplianceHost {
    /// `/data/appliance`: `network`, `hostname`, `admin`.
    pub settings_dir: PathBuf,
    /// `/run/switchboard`: `control` (PID 1's datagram socket) and `health`.
    pub run_dir: PathBuf,
    /// The board file, for interface names.
    pub board_file: PathBuf,
    /// `/data`, for `health`'s partition usage.
    pub data_mount: PathBuf,
}

impl ApplianceHost {
    pub fn system() -> ApplianceHost {
        ApplianceHost {
            settings_dir: PathBuf::from(paths::SETTINGS_DIR),
            run_dir: PathBuf::from(paths::RUN_DIR),
            board_file: PathBuf::from(paths::BOARD_FILE),
            data_mount: PathBuf::from("/data"),
        }
    }

    fn control_socket(&self) -> PathBuf {
        self.run_dir.join(file_name(control::SOCKET))
    }

    /// PID 1's control socket exists only on the appliance.
    pub fn on_appliance(&self) -> bool {
        self.control_socket().exists()
    }

    /// One request to PID 1 (reboot, power off, network reload).
    fn request(&self, request: Request) -> Reply {
        if !self.on_appliance() {
            return Reply::failure(NOT_ON_APPLIANCE);
        }
        match control::send_to(&self.control_socket(), request) {
            Ok(_) => Reply::success(),
            Err(err) => Reply::failure(format!("init did not take the request: {err}")),
        }
    }

    /// An upgrade request to PID 1 (`upgrade <file>`, `upgrade rollback`).
    pub(crate) fn request_upgrade(&self, request: &control::UpgradeRequest) -> Reply {
        if !self.on_appliance() {
            return Reply::failure(NOT_ON_APPLIANCE);
        }
        // Root (the console, mmp) has the control socket; xmppd's user (SSH, web admin) the
        // upgrade socket only.
        let sent = match control::send_upgrade_to(&self.control_socket(), request) {
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                control::send_upgrade_to(&self.run_dir.join(file_name(control::UPGRADE_SOCKET)), request)
            }
            other => other,
        };
        match sent {
            Ok(_) => Reply::success(),
            Err(err) => Reply::failure(format!("init did not take the request: {err}")),
        }
    }

    fn health(&self) -> Health {
        Health::read(&self.run_dir.join(file_name(control::HEALTH)))
    }

    /// `/data` is a mount of its own (else it is the initramfs, and the data partition is
    /// missing).
    fn data_mounted(&self) -> bool {
        let wanted = self.data_mount.to_string_lossy();
        std::fs::read_to_string("/proc/self/mounts")
            .map(|mounts| mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&*wanted)))
            .unwrap_or(false)
    }

    fn write_setting(&self, name: &str, text: &str) -> std::io::Result<()> {
        // Owner-only from the first byte: the admin password hash is one of these settings.
        sb_appliance::files::write_atomic(&self.settings_dir.join(name), text.as_bytes(), 0o600)
    }

    fn read_setting(&self, name: &str) -> String {
        std::fs::read_to_string(self.settings_dir.join(name)).unwrap_or_default()
    }

    /// The interfaces the board file names; empty off the appliance.
    pub fn board_interfaces(&self) -> Vec<BoardInterface> {
        let Ok(board) = Board::load(&self.board_file) else {
            return Vec::new();
        };
        board
            .network
            .interfaces
            .into_iter()
            .map(|i| BoardInterface {
                name: i.name,
                kernel: i.kernel,
            })
            .collect()
    }

    /// A board name (`a`) or kernel name (`eth0`) → (board name, kernel name). Off the
    /// appliance there is no board: a kernel name stands for itself.
    pub fn resolve_interface(&self, name: &str) -> Option<(String, String)> {
        let interfaces = self.board_interfaces();
        if let Some(found) = interfaces.iter().find(|i| i.name == name || i.kernel == name) {
            return Some((found.name.clone(), found.kernel.clone()));
        }
        let kernel_names = kernel_interfaces();
        kernel_names
            .contains(&name.to_owned())
            .then(|| (name.to_owned(), name.to_owned()))
    }

    /// An interface for `xmpp listen`, as stored. On a board: one of the board's interfaces,
    /// by its board or kernel name, stored by its board name (`eth0` becomes `a`). Off the
    /// appliance: any interface this host has now, by its kernel name.
    /// A listen address as stored: parsed, and an interface name (`a`) the board's name for
    /// it. A `FAILURE` text when not.
    pub fn stored_listen_address(&self, address: &str) -> Result<String, String> {
        let entry = ListenTarget::parse(address).map_err(|err| err.to_string())?;
        self.stored_listen_target(&entry).map(|entry| entry.to_string())
    }

    /// [`Self::stored_listen_address`] of an entry already parsed.
    pub fn stored_listen_target(&self, entry: &ListenTarget) -> Result<ListenTarget, String> {
        Ok(match entry.interface() {
            None => entry.clone(),
            Some(name) => entry.with_interface(&self.listen_interface(name)?),
        })
    }

    pub fn listen_interface(&self, name: &str) -> Result<String, String> {
        let board = self.board_interfaces();
        if !board.is_empty() {
            return match board.iter().find(|i| i.name == name || i.kernel == name) {
                Some(found) => Ok(found.name.clone()),
                None => {
                    let names: Vec<&str> = board.iter().map(|i| i.name.as_str()).collect();
                    Err(format!(
                        "no interface '{name}' on this board (interfaces: {})",
                        names.join(", ")
                    ))
                }
            };
        }
        let host = host_interfaces();
        if host.iter().any(|known| known == name) {
            Ok(name.to_owned())
        } else {
            Err(format!(
                "no interface '{name}' on this host (interfaces: {})",
                host.join(", ")
            ))
        }
    }

    pub fn hostname_set(&self, name: &str) -> Reply {
        if !valid_hostname(name) {
            return Reply::failure("a hostname is 1-63 letters, digits and inner '-'");
        }
        if !self.on_appliance() {
            return Reply::failure(NOT_ON_APPLIANCE);
        }
        if let Err(err) = self.write_setting("hostname", &format!("{name}\n")) {
            return Reply::failure(err);
        }
        match nix::unistd::sethostname(name) {
            Ok(()) => Reply::success(),
            Err(err) => Reply::failure(format!("stored, but sethostname failed: {err}")),
        }
    }
}

fn kernel_interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The interfaces getifaddrs lists, as xmppd sees them when it resolves a listen entry.
fn host_interfaces() -> Vec<String> {
    let mut names: Vec<String> = nix::ifaddrs::getifaddrs()
        .map(|addrs| addrs.map(|a| a.interface_name).collect())
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// The IPv4 addresses of a kernel interface, as `addr/prefix`.
pub fn interface_ipv4(kernel: &str) -> Vec<(Ipv4Addr, u8)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter(|a| a.interface_name == kernel)
        .filter_map(|a| {
            let addr = a.address?.as_sockaddr_in()?.ip();
            let prefix = a
                .netmask
                .and_then(|m| m.as_sockaddr_in().map(|m| m.ip().to_bits().count_ones() as u8))
                .unwrap_or(32);
            Some((addr, prefix))
        })
        .collect()
}

pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The last part of one of PID 1's fixed paths (`/run/switchboard/control` → `control`), to
/// find it under a host's own folders.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One static address in `/data/appliance/network` (`ipv4 <iface> <addr>/<prefix> [<gw>]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticIpv4 {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl std::fmt::Display for StaticIpv4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)?;
        match self.gateway {
            Some(gateway) => write!(f, " {gateway}"),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ipv4Command {
    Show { iface: String },
    Add { iface: String, address: StaticIpv4 },
    Del { iface: String, addr: Ipv4Addr, prefix: u8 },
}

impl Family for Ipv4Command {
    const PREFIX: &'static [&'static str] = &["ipv4"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "ipv4 <iface>",
            summary: "show the static IPv4 address stored for an interface",
        },
        Usage {
            syntax: "ipv4 <iface> add <addr>/<prefix> [<gateway>]",
            summary: "set the interface's static IPv4 address (replaces DHCP)",
        },
        Usage {
            syntax: "ipv4 <iface> del <addr>/<prefix>",
            summary: "remove a static IPv4 address",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let mut args = Args::new("ipv4", words);
        let iface = args.required("<iface>")?.to_owned();
        let Some(action) = args.optional() else {
            return Ok(Ipv4Command::Show { iface });
        };
        match action {
            "add" => {
                let (addr, prefix) = parse_cidr(args.required("<addr>/<prefix>")?).map_err(|e| args.invalid(e))?;
                let gateway = match args.optional() {
                    Some(g) => Some(
                        g.parse()
                            .map_err(|_| args.invalid("the gateway must be an IPv4 address"))?,
                    ),
                    None => None,
                };
                args.end()?;
                Ok(Ipv4Command::Add {
                    iface,
                    address: StaticIpv4 { addr, prefix, gateway },
                })
            }
            "del" => {
                let (addr, prefix) = parse_cidr(args.required("<addr>/<prefix>")?).map_err(|e| args.invalid(e))?;
                args.end()?;
                Ok(Ipv4Command::Del { iface, addr, prefix })
            }
            other => Err(args.invalid(format!("expected add or del, not '{other}'"))),
        }
    }

    fn apply(self, _admin: &Admin) -> Reply {
        self.run(&ApplianceHost::system())
    }
}

/// The `network` settings file: `ipv4 <board iface> <addr>/<prefix> [<gw>]` and `dns <addr>`
/// lines; lines this module does not touch are kept as they are.
fn network_lines(host: &ApplianceHost) -> Vec<String> {
    host.read_setting("network").lines().map(str::to_owned).collect()
}

fn stored_for(lines: &[String], iface: &str) -> Vec<(usize, StaticIpv4)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(index, line)| match parse_line(line) {
            Ok(Some(Setting::Ipv4(s))) if s.iface == iface => Some((
                index,
                StaticIpv4 {
                    addr: s.addr,
                    prefix: s.prefix,
                    gateway: s.gateway,
                },
            )),
            _ => None,
        })
        .collect()
}

impl Ipv4Command {
    pub fn run(self, host: &ApplianceHost) -> Reply {
        let iface = match &self {
            Ipv4Command::Show { iface } | Ipv4Command::Add { iface, .. } | Ipv4Command::Del { iface, .. } => iface,
        };
        let Some((board_name, _kernel)) = host.resolve_interface(iface) else {
            return Reply::failure(format!("no interface {iface}"));
        };
        let mut lines = network_lines(host);
        let stored = stored_for(&lines, &board_name);
        match self {
            Ipv4Command::Show { .. } => match stored.first() {
                Some((_, address)) => Reply::output(address.to_string()),
                None => Reply::output("dhcp4 or unconfigured"),
            },
            Ipv4Command::Add { address, .. } => {
                if !host.on_appliance() {
                    return Reply::failure(NOT_ON_APPLIANCE);
                }
                // One static address per interface: a new one replaces the old.
                let replaced: Vec<usize> = stored.iter().map(|(index, _)| *index).collect();
                lines = lines
                    .into_iter()
                    .enumerate()
                    .filter(|(index, _)| !replaced.contains(index))
                    .map(|(_, line)| line)
                    .collect();
                lines.push(format!("ipv4 {board_name} {address}"));
                save_network(host, &lines)
            }
            Ipv4Command::Del { addr, prefix, .. } => {
                if !host.on_appliance() {
                    return Reply::failure(NOT_ON_APPLIANCE);
                }
                let Some((index, _)) = stored.iter().find(|(_, s)| s.addr == addr && s.prefix == prefix) else {
                    return Reply::failure(format!("{addr}/{prefix} is not configured on {iface}"));
                };
                lines.remove(*index);
                save_network(host, &lines)
            }
        }
    }
}

fn save_network(host: &ApplianceHost, lines: &[String]) -> Reply {
    let mut text = lines.join("\n");
    text.push('\n');
    if let Err(err) = host.write_setting("network", &text) {
        return Reply::failure(err);
    }
    host.request(Request::NetworkReload)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfaceCommand {
    All,
    One { name: String },
}

impl Family for IfaceCommand {
    const PREFIX: &'static [&'static str] = &["iface"];
    const USAGE: &'static [Usage] = &[Usage {
        syntax: "iface [<name>]",
        summary: "network interfaces: state, MAC, IPv4 addresses",
    }];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let mut args = Args::new("iface", words);
        let name = args.optional().map(str::to_owned);
        args.end()?;
        Ok(name.map_or(IfaceCommand::All, |name| IfaceCommand::One { name }))
    }

    fn apply(self, _admin: &Admin) -> Reply {
        self.run(&ApplianceHost::system())
    }
}

fn describe(host: &ApplianceHost, board_name: &str, kernel: &str) -> String {
    let sys = Path::new("/sys/class/net").join(kernel);
    let read = |file: &str| std::fs::read_to_string(sys.join(file)).map(|s| s.trim().to_owned());
    let state = match (read("operstate"), read("carrier")) {
        (Err(_), _) => "absent".to_owned(),
        (Ok(state), Ok(carrier)) if state == "up" || carrier == "1" => "up, carrier".to_owned(),
        (Ok(state), _) => state,
    };
    let mac = read("address").unwrap_or_else(|_| "-".to_owned());
    let addresses: Vec<String> = interface_ipv4(kernel)
        .iter()
        .map(|(addr, prefix)| format!("{addr}/{prefix}"))
        .collect();
    let addresses = if addresses.is_empty() {
        "none".to_owned()
    } else {
        addresses.join(" ")
    };
    let stored = stored_for(&network_lines(host), board_name);
    let config = match stored.first() {
        Some((_, s)) => format!(
            "static {}/{}{}",
            s.addr,
            s.prefix,
            s.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
        ),
        None => "dhcp4 or unconfigured".to_owned(),
    };
    format!(
        "Interface: {board_name} ({kernel})\nState   : {state}\nMAC     : {mac}\nIPv4    : {addresses}\nConfig  : {config}"
    )
}

impl IfaceCommand {
    pub fn run(self, host: &ApplianceHost) -> Reply {
        match self {
            IfaceCommand::One { name } => match host.resolve_interface(&name) {
                Some((board_name, kernel)) => Reply::output(describe(host, &board_name, &kernel)),
                None => Reply::failure(format!("no interface {name}")),
            },
            IfaceCommand::All => {
                let interfaces = host.board_interfaces();
                let pairs: Vec<(String, String)> = if interfaces.is_empty() {
                    kernel_interfaces().into_iter().map(|k| (k.clone(), k)).collect()
                } else {
                    interfaces.into_iter().map(|i| (i.name, i.kernel)).collect()
                };
                let text: Vec<String> = pairs.iter().map(|(b, k)| describe(host, b, k)).collect();
                Reply::output(text.join("\n\n"))
            }
        }
    }
}

/// A family of one word and no arguments.
macro_rules! word_command {
    ($name:ident, $word:literal, $summary:literal, |$host:ident| $body:expr) => {
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name;

        impl Family for $name {
            const PREFIX: &'static [&'static str] = &[$word];
            const USAGE: &'static [Usage] = &[Usage {
                syntax: $word,
                summary: $summary,
            }];

            fn parse(words: &[String]) -> Result<Self, ParseError> {
                Args::new($word, words).end()?;
                Ok($name)
            }

            fn apply(self, _admin: &Admin) -> Reply {
                self.run(&ApplianceHost::system())
            }
        }

        impl $name {
            pub fn run(self, $host: &ApplianceHost) -> Reply {
                $body
            }
        }
    };
}

word_command!(UptimeCommand, "uptime", "time since boot and load", |_host| uptime());
word_command!(VersionCommand, "version", "firmware and kernel versions", |_host| {
    version()
});
word_command!(
    HealthCommand,
    "health",
    "watchdog, last reset cause, xmppd restarts, data partition",
    |host| health(host)
);
word_command!(RebootCommand, "reboot", "restart the appliance", |host| host
    .request(Request::Reboot));
word_command!(ShutdownCommand, "shutdown", "power the appliance off", |host| host
    .request(Request::PowerOff));

fn uptime() -> Reply {
    let Some(up) = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
    else {
        return Reply::failure("cannot read /proc/uptime");
    };
    let up = up as u64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    Reply::output(format!(
        "up {} days, {:02}:{:02}:{:02}, load {}",
        up / 86400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60,
        load.join(" ")
    ))
}

fn version() -> Reply {
    let firmware = std::fs::read_to_string("/etc/switchboard/version")
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_owned());
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Reply::output(format!("Switchboard {firmware}\nkernel {kernel}"))
}

fn health(host: &ApplianceHost) -> Reply {
    if !host.on_appliance() {
        return Reply::failure(NOT_ON_APPLIANCE);
    }
    let values = host.health();
    let get = |key: &str| values.get(key).unwrap_or("-");
    let data = match nix::sys::statvfs::statvfs(&host.data_mount)
        .ok()
        .filter(|_| host.data_mounted())
    {
        Some(stat) => {
            let block = stat.fragment_size();
            let total = stat.blocks() * block;
            let used = total.saturating_sub(stat.blocks_available() * block);
            format!(
                "{} MiB used of {} MiB ({}%)",
                used >> 20,
                total >> 20,
                used * 100 / total.max(1)
            )
        }
        None => "NOT MOUNTED".to_owned(),
    };
    let memory = memory_in_use().map(|(used, total)| format!("{} MiB used of {} MiB", used >> 10, total >> 10));
    Reply::output(format!(
        "Watchdog          : {} ({}, timeout {} s, boot status {})\nLast reset cause  : {}\nxmppd             : {}\n\
         xmppd restarts    : {}\nxmppd last exit   : {}\nData partition    : {data}\nMemory            : {}",
        get(health::WATCHDOG),
        get(health::WATCHDOG_DEVICE),
        get(health::WATCHDOG_TIMEOUT_S),
        get(health::WATCHDOG_BOOT_STATUS),
        get(health::LAST_RESET),
        get(health::XMPPD),
        get(health::XMPPD_RESTARTS),
        get(health::XMPPD_LAST_EXIT),
        memory.as_deref().unwrap_or("-"),
    ))
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

/// `admin passwd`: the console login password, asked twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPasswdCommand {
    pub password: Option<Secret>,
}

impl Family for AdminPasswdCommand {
    const PREFIX: &'static [&'static str] = &["admin", "passwd"];
    const USAGE: &'static [Usage] = &[Usage {
        syntax: "admin passwd",
        summary: "change the console admin password (asked twice)",
    }];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        Args::new("admin passwd", words).end()?;
        Ok(AdminPasswdCommand { password: None })
    }

    fn apply(self, admin: &Admin) -> Reply {
        self.run_at(&crate::admin_password::password_file(admin.appliance(), admin.dir()))
    }

    fn secret_prompt(&self) -> Option<SecretPrompt> {
        self.password.is_none().then_some(SecretPrompt {
            prompt: "Enter admin password",
            confirm: Some("Confirm admin password"),
        })
    }

    fn with_secret(self, secret: Secret) -> Self {
        AdminPasswdCommand { password: Some(secret) }
    }
}

impl AdminPasswdCommand {
    /// On the appliance, without a data folder to fall back on.
    pub fn run(self, host: &ApplianceHost) -> Reply {
        if !host.on_appliance() {
            return Reply::failure(NOT_ON_APPLIANCE);
        }
        self.run_at(&host.settings_dir.join("admin"))
    }

    /// Store the password's hash in `file` (see [`crate::admin_password::password_file`]).
    pub fn run_at(self, file: &Path) -> Reply {
        let Some(password) = self.password else {
            return Reply::failure("admin passwd: no password given");
        };
        if password.expose().chars().count() < MIN_ADMIN_PASSWORD_CHARS {
            return Reply::failure(format!("use at least {MIN_ADMIN_PASSWORD_CHARS} characters"));
        }
        match sb_appliance::password::file::set(file, password.expose()) {
            Ok(()) => Reply::success(),
            Err(err) => Reply::failure(err),
        }
    }
}

impl crate::Command {
    /// Appliance commands run in the front end the operator uses, never inside xmppd: `health`,
    /// `reboot` and the network settings must answer while the daemon is stopped, hung or
    /// restarting. Front ends run them with [`execute_in_front_end`].
    pub fn runs_in_front_end(&self) -> bool {
        use crate::Command;
        matches!(
            self,
            Command::Ipv4(_)
                | Command::Iface(_)
                | Command::Uptime(_)
                | Command::Version(_)
                | Command::Health(_)
                | Command::Reboot(_)
                | Command::Shutdown(_)
                | Command::Upgrade(_)
                | Command::AdminPasswd(_)
                | Command::Hostname(crate::HostnameCommand::Set { .. })
        )
    }
}

/// Execute a command for which [`crate::Command::runs_in_front_end`] holds, on this machine,
/// without the daemon or the store; any other command is refused.
pub fn execute_in_front_end(command: crate::Command) -> Reply {
    execute_on(&ApplianceHost::system(), command)
}

/// [`execute_in_front_end`] for a front end working on the data folder `data_dir` (`mmp -d`):
/// off the appliance, `admin passwd` keeps the hash there.
pub fn execute_in_front_end_in(data_dir: &Path, command: crate::Command) -> Reply {
    let host = ApplianceHost::system();
    match command {
        crate::Command::AdminPasswd(c) => {
            log::info!("appliance command: {c:?}");
            c.run_at(&crate::admin_password::password_file(&host, data_dir))
        }
        other => execute_on(&host, other),
    }
}

/// [`execute_in_front_end`] against the given appliance state.
pub fn execute_on(host: &ApplianceHost, command: crate::Command) -> Reply {
    use crate::Command;
    log::info!("appliance command: {command:?}");
    match command {
        Command::Ipv4(c) => c.run(host),
        Command::Iface(c) => c.run(host),
        Command::Uptime(c) => c.run(host),
        Command::Version(c) => c.run(host),
        Command::Health(c) => c.run(host),
        Command::Reboot(c) => c.run(host),
        Command::Shutdown(c) => c.run(host),
        Command::Upgrade(c) => c.run(host),
        Command::AdminPasswd(c) => c.run(host),
        Command::Hostname(crate::HostnameCommand::Set { name }) => host.hostname_set(&name),
        other => Reply::failure(format!("{other:?} needs the daemon or the store")),
    }
}

/// A resolved board file as the image tool writes it, with the given `network.interfaces`.
#[cfg(test)]
pub(crate) fn test_board(interfaces: &str) -> String {
    format!(
        r#"[board]
name = "test"
[kernel]
package = "linux-image-test"
version = "1"
release = "test"
modules = []
cmdline = ""
[console]
device = "ttyS0"
baud = 115200
[watchdog]
device = "/dev/watchdog"
timeout_s = 30
[network]
interfaces = {interfaces}
default = "dhcp4"
default_interface = "a"
[disk]
size_mib = 512
esp_mib = 64
boot_slot_mib = 64
data_label = "data"
block_device = "vda"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, parse};
    use std::os::unix::net::UnixDatagram;

    /// A fake appliance in a temp dir: the board maps `a` to `lo`, and a real datagram socket
    /// stands where PID 1 listens, so requests can be read back.
    fn appliance(dir: &Path) -> (ApplianceHost, UnixDatagram) {
        let host = ApplianceHost {
            settings_dir: dir.join("data/appliance"),
            run_dir: dir.join("run"),
            board_file: dir.join("board.toml"),
            data_mount: dir.to_path_buf(),
        };
        std::fs::create_dir_all(&host.run_dir).unwrap();
        std::fs::write(&host.board_file, test_board(r#"[{ name = "a", kernel = "lo" }]"#)).unwrap();
        let init = UnixDatagram::bind(host.control_socket()).unwrap();
        init.set_nonblocking(true).unwrap();
        (host, init)
    }

    fn received(init: &UnixDatagram) -> String {
        let mut buf = [0u8; 64];
        let n = init.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn ipv4(line: &str) -> Ipv4Command {
        match parse(line).unwrap() {
            Command::Ipv4(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv4_arguments_are_validated_with_clear_reasons() {
        let fail = |line: &str| Reply::from(parse(line).unwrap_err()).text;
        assert_eq!(fail("ipv4"), "FAILURE: ipv4: missing <iface>");
        assert_eq!(
            fail("ipv4 a add 1.2.3.4"),
            "FAILURE: ipv4: 1.2.3.4: expected <address>/<prefix>"
        );
        assert_eq!(fail("ipv4 a add 1.2.3.4/33"), "FAILURE: ipv4: 33: prefix must be 0-32");
        assert_eq!(
            fail("ipv4 a add 1.2.3.4/24 gw"),
            "FAILURE: ipv4: the gateway must be an IPv4 address"
        );
        assert_eq!(fail("ipv4 a frob"), "FAILURE: ipv4: expected add or del, not 'frob'");
        assert_eq!(
            fail("ipv4 a del 1.2.3.4/24 x"),
            "FAILURE: ipv4: unexpected argument 'x'"
        );
        assert_eq!(fail("uptime now"), "FAILURE: uptime: unexpected argument 'now'");
        assert_eq!(fail("admin passwd x"), "FAILURE: admin passwd: unexpected argument 'x'");
        assert_eq!(
            ipv4("ipv4 a add 10.0.2.50/24 10.0.2.2"),
            Ipv4Command::Add {
                iface: "a".into(),
                address: StaticIpv4 {
                    addr: Ipv4Addr::new(10, 0, 2, 50),
                    prefix: 24,
                    gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                },
            }
        );
    }

    #[test]
    fn ipv4_add_and_del_store_the_setting_and_ask_init_to_apply_it() {
        let dir = tempfile::tempdir().unwrap();
        let (host, init) = appliance(dir.path());
        std::fs::create_dir_all(&host.settings_dir).unwrap();
        std::fs::write(host.settings_dir.join("network"), "dns 9.9.9.9\n").unwrap();

        assert_eq!(ipv4("ipv4 a").run(&host).text, "dhcp4 or unconfigured");
        assert_eq!(ipv4("ipv4 a add 10.0.2.50/24 10.0.2.2").run(&host), Reply::success());
        assert_eq!(received(&init), "network-reload");
        // The kernel name reaches the same interface; a second add replaces the first.
        assert_eq!(ipv4("ipv4 lo add 10.0.2.51/24").run(&host), Reply::success());
        assert_eq!(received(&init), "network-reload");
        let stored = std::fs::read_to_string(host.settings_dir.join("network")).unwrap();
        assert_eq!(stored, "dns 9.9.9.9\nipv4 a 10.0.2.51/24\n");
        assert_eq!(ipv4("ipv4 a").run(&host).text, "10.0.2.51/24");

        assert_eq!(
            ipv4("ipv4 a del 10.0.2.50/24").run(&host).text,
            "FAILURE: 10.0.2.50/24 is not configured on a"
        );
        assert_eq!(ipv4("ipv4 a del 10.0.2.51/24").run(&host), Reply::success());
        assert_eq!(received(&init), "network-reload");
        let stored = std::fs::read_to_string(host.settings_dir.join("network")).unwrap();
        assert_eq!(stored, "dns 9.9.9.9\n");
        assert_eq!(
            ipv4("ipv4 zz add 1.2.3.4/24").run(&host).text,
            "FAILURE: no interface zz"
        );
    }

    #[test]
    fn off_the_appliance_effects_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = ApplianceHost {
            settings_dir: dir.path().join("settings"),
            run_dir: dir.path().join("run"),
            board_file: dir.path().join("none.toml"),
            data_mount: dir.path().to_path_buf(),
        };
        let not_here = Reply::failure(NOT_ON_APPLIANCE);
        assert_eq!(RebootCommand.run(&host), not_here);
        assert_eq!(ShutdownCommand.run(&host), not_here);
        assert_eq!(HealthCommand.run(&host), not_here);
        // Without a board file a kernel name stands for itself.
        assert_eq!(ipv4("ipv4 lo add 127.0.0.9/8").run(&host), not_here);
        assert_eq!(host.hostname_set("node1"), not_here);
        assert!(!host.settings_dir.exists());
        assert!(UptimeCommand.run(&host).text.starts_with("up "));
        assert!(VersionCommand.run(&host).text.starts_with("Switchboard "));
    }

    #[test]
    fn reboot_shutdown_and_health_talk_to_init() {
        let dir = tempfile::tempdir().unwrap();
        let (host, init) = appliance(dir.path());
        assert!(parse("reboot").unwrap().runs_in_front_end());
        assert!(!parse("xmpp status").unwrap().runs_in_front_end());
        assert!(!parse("hostname").unwrap().runs_in_front_end());
        assert_eq!(execute_on(&host, parse("reboot").unwrap()), Reply::success());
        assert_eq!(received(&init), "reboot");
        assert!(!execute_on(&host, parse("user list").unwrap()).ok);
        assert_eq!(ShutdownCommand.run(&host), Reply::success());
        assert_eq!(received(&init), "poweroff");
        std::fs::write(
            host.run_dir.join("health"),
            "watchdog=petting\nwatchdog_timeout_s=30\nxmppd_restarts=2\n",
        )
        .unwrap();
        let health = HealthCommand.run(&host).text;
        assert!(
            health.starts_with("Watchdog          : petting (-, timeout 30 s"),
            "{health}"
        );
        assert!(health.contains("xmppd restarts    : 2"), "{health}");
        // The temp dir is no mount point of its own.
        assert!(health.contains("Data partition    : NOT MOUNTED"), "{health}");
    }

    #[test]
    fn iface_shows_the_board_name_kernel_name_and_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _init) = appliance(dir.path());
        let text = IfaceCommand::One { name: "a".into() }.run(&host).text;
        assert!(text.starts_with("Interface: a (lo)\n"), "{text}");
        assert!(text.contains("127.0.0.1/8"), "{text}");
        assert_eq!(
            IfaceCommand::One { name: "zz".into() }.run(&host).text,
            "FAILURE: no interface zz"
        );
        assert_eq!(parse("iface"), Ok(Command::Iface(IfaceCommand::All)));
    }

    #[test]
    fn admin_passwd_asks_twice_and_stores_a_hash_never_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _init) = appliance(dir.path());
        let command = parse("admin passwd").unwrap();
        assert_eq!(command.secret_prompt(), Some("Enter admin password"));
        assert_eq!(command.secret_confirm_prompt(), Some("Confirm admin password"));
        let short = AdminPasswdCommand {
            password: Some(Secret::new("short")),
        };
        assert_eq!(short.run(&host).text, "FAILURE: use at least 8 characters");
        let good = AdminPasswdCommand {
            password: Some(Secret::new("correct horse")),
        };
        assert!(!format!("{good:?}").contains("correct horse"));
        assert_eq!(good.run(&host), Reply::success());
        let stored = std::fs::read_to_string(host.settings_dir.join("admin")).unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$600000$"), "{stored}");
        assert!(sb_appliance::password::verify(&stored, "correct horse"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(host.settings_dir.join("admin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert!(!stored.contains("correct horse"));
    }
}
