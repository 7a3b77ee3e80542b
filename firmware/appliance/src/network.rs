//! The stored network settings, `/data/appliance/network`: `ipv4 <iface> <addr>/<prefix>
//! [<gateway>]` and `dns <addr>` lines, `#` comments. The `ipv4` command writes it, PID 1
//! applies it at boot and on `network-reload`.

use std::net::Ipv4Addr;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIpv4 {
    /// Board interface name (`a`).
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl StaticIpv4 {
    /// The settings line for this address.
    pub fn line(&self) -> String {
        let mut line = format!("ipv4 {} {}/{}", self.iface, self.addr, self.prefix);
        if let Some(g) = self.gateway {
            line.push_str(&format!(" {g}"));
        }
        line
    }
}

/// One line of the settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Ipv4(StaticIpv4),
    Dns(Ipv4Addr),
}

/// A line of the settings file that is not a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a network setting: {0:?}")]
pub struct BadLine(pub String);

/// One line: `Ok(None)` for blank lines and comments, `Err` for anything not understood.
pub fn parse_line(line: &str) -> Result<Option<Setting>, BadLine> {
    let bad = || BadLine(line.to_string());
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(None),
        [first, ..] if first.starts_with('#') => Ok(None),
        ["ipv4", iface, cidr, rest @ ..] if rest.len() <= 1 => {
            let (addr, prefix) = parse_cidr(cidr).map_err(|_| bad())?;
            let gateway = match rest.first() {
                Some(g) => Some(g.parse().map_err(|_| bad())?),
                None => None,
            };
            Ok(Some(Setting::Ipv4(StaticIpv4 {
                iface: iface.to_string(),
                addr,
                prefix,
                gateway,
            })))
        }
        ["dns", server] => Ok(Some(Setting::Dns(server.parse().map_err(|_| bad())?))),
        _ => Err(bad()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    pub addresses: Vec<StaticIpv4>,
    pub dns: Vec<Ipv4Addr>,
}

impl NetworkConfig {
    pub fn parse(text: &str) -> Result<NetworkConfig, String> {
        let mut config = NetworkConfig::default();
        for (number, line) in text.lines().enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some(Setting::Ipv4(address))) => config.addresses.push(address),
                Ok(Some(Setting::Dns(server))) => config.dns.push(server),
                Err(_) => return Err(format!("network config line {}: {line:?}", number + 1)),
            }
        }
        Ok(config)
    }

    pub fn render(&self) -> String {
        let mut text =
            String::from("# Switchboard network settings (ipv4 <iface> <addr>/<prefix> [<gateway>], dns <addr>)\n");
        for a in &self.addresses {
            text.push_str(&a.line());
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
        assert!(parse_cidr("10.1.2.3/33").is_err());
    }
}
