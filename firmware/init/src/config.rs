//! The appliance's own settings on /data/appliance (network, hostname, admin password
//! hash, boot markers). Small text files, each replaced atomically.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

pub const NETWORK: &str = "/data/appliance/network";
pub const HOSTNAME: &str = "/data/appliance/hostname";
pub const ADMIN: &str = "/data/appliance/admin";
/// Written once the admin password has been set: without it a missing [`ADMIN`] file means a
/// first boot, with it a damaged or interrupted reset that only the recovery menu may repair.
pub const ADMIN_WAS_SET: &str = "/data/appliance/admin-was-set";
/// Present while the system runs; an orderly shutdown removes it. Found at boot → unclean end.
pub const RUNNING: &str = "/data/appliance/running";
/// Written just before init stops petting the watchdog, with the reason.
pub const WATCHDOG_EXPECTED: &str = "/data/appliance/watchdog-expected";
/// The reset cause found at boot, for `health`.
pub const LAST_RESET: &str = "/run/switchboard/last-reset";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIpv4 {
    /// Board interface name (`a`).
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    pub addresses: Vec<StaticIpv4>,
    pub dns: Vec<Ipv4Addr>,
}

/// `<addr>/<prefix>` as the `ipv4` command takes it.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text}: expected <address>/<prefix>"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{addr}: not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{prefix}: prefix must be 0-32"))?;
    Ok((addr, prefix))
}

impl NetworkConfig {
    pub fn parse(text: &str) -> Result<NetworkConfig, String> {
        let mut config = NetworkConfig::default();
        for (number, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let bad = || format!("network config line {}: {line:?}", number + 1);
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["ipv4", iface, cidr, rest @ ..] if rest.len() <= 1 => {
                    let (addr, prefix) = parse_cidr(cidr).map_err(|_| bad())?;
                    let gateway = match rest.first() {
                        Some(g) => Some(g.parse().map_err(|_| bad())?),
                        None => None,
                    };
                    config.addresses.push(StaticIpv4 {
                        iface: iface.to_string(),
                        addr,
                        prefix,
                        gateway,
                    });
                }
                ["dns", server] => config.dns.push(server.parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        Ok(config)
    }

    pub fn render(&self) -> String {
        let mut text =
            String::from("# Switchboard network settings (ipv4 <iface> <addr>/<prefix> [<gateway>], dns <addr>)\n");
        for a in &self.addresses {
            text.push_str(&format!("ipv4 {} {}/{}", a.iface, a.addr, a.prefix));
            if let Some(g) = a.gateway {
                text.push_str(&format!(" {g}"));
            }
            text.push('\n');
        }
        for d in &self.dns {
            text.push_str(&format!("dns {d}\n"));
        }
        text
    }

    pub fn for_iface(&self, iface: &str) -> Option<&StaticIpv4> {
        self.addresses.iter().find(|a| a.iface == iface)
    }

    pub fn load() -> NetworkConfig {
        match std::fs::read_to_string(NETWORK) {
            Ok(text) => NetworkConfig::parse(&text).unwrap_or_else(|e| {
                log::error!("{e}; ignoring the stored network settings");
                NetworkConfig::default()
            }),
            Err(_) => NetworkConfig::default(),
        }
    }
}

/// Replaces `path` with `contents` so that a power cut leaves either the old or the new file.
/// Owner-only (0600) from its creation: the admin password hash is one of these files.
pub fn write_atomic(path: &str, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = Path::new(path);
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// /data/appliance owner-only: releases before issue 13 wrote its files 0644, the admin
/// password hash among them. Then the hash alone is shared with xmppd ([`share_admin_hash`]).
pub fn restrict_settings() {
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = Path::new(ADMIN).parent() else { return };
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
        }
    }
    share_admin_hash();
}

/// The xmppd group may read the admin password hash (root:xmppd 0640, the folder root:xmppd
/// 0710, so nothing else in it is listed or read): the web admin and API in xmppd check the
/// same password as the console. Writing it stays PID 1's and the console's.
pub fn share_admin_hash() {
    use std::os::unix::fs::PermissionsExt;
    let gid = Some(crate::privileges::XMPPD_GID);
    let Some(dir) = Path::new(ADMIN).parent() else { return };
    let shared = std::os::unix::fs::chown(dir, Some(0), gid)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710)));
    if let Err(e) = shared {
        log::warn!("sharing {} with xmppd: {e}", dir.display());
    }
    if Path::new(ADMIN).is_file() {
        let shared = std::os::unix::fs::chown(ADMIN, Some(0), gid)
            .and_then(|()| std::fs::set_permissions(ADMIN, std::fs::Permissions::from_mode(0o640)));
        if let Err(e) = shared {
            log::warn!("sharing the admin password hash with xmppd: {e}");
        }
    }
}

pub fn remove_durably(path: &str) {
    if std::fs::remove_file(path).is_ok()
        && let Some(dir) = Path::new(path).parent()
    {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_config_round_trips() {
        let config = NetworkConfig {
            addresses: vec![
                StaticIpv4 {
                    iface: "a".into(),
                    addr: Ipv4Addr::new(192, 0, 2, 10),
                    prefix: 24,
                    gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                },
                StaticIpv4 {
                    iface: "b".into(),
                    addr: Ipv4Addr::new(198, 51, 100, 7),
                    prefix: 30,
                    gateway: None,
                },
            ],
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
        };
        assert_eq!(NetworkConfig::parse(&config.render()).unwrap(), config);
        assert_eq!(config.for_iface("b").unwrap().prefix, 30);
        assert!(config.for_iface("c").is_none());
    }

    #[test]
    fn bad_network_lines_are_errors() {
        for bad in [
            "ipv4 a 10.0.0.1",
            "ipv4 a 10.0.0.1/33",
            "ipv4 a 10.0.0.300/24",
            "dns x",
            "route a b",
            "ipv4 a 1.2.3.4/8 g",
        ] {
            assert!(NetworkConfig::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(NetworkConfig::parse("# c\n\n").unwrap(), NetworkConfig::default());
    }

    #[test]
    fn cidr_rules() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap(), (Ipv4Addr::new(10, 1, 2, 3), 8));
        assert!(parse_cidr("10.1.2.3").is_err());
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f");
        let path = path.to_str().unwrap();
        write_atomic(path, b"one").unwrap();
        write_atomic(path, b"two").unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
        remove_durably(path);
        assert!(!Path::new(path).exists());
    }
}
