//! Where the XMPP services listen: one entry of `xmpp listen` ([`ListenTarget`]) and how an
//! interface name turns into addresses ([`InterfaceAddresses`]).
//!
//! An entry is an IP address or an interface name, each with an optional port:
//! `192.0.2.1`, `192.0.2.1:5222`, `::1`, `[::1]`, `[::1]:5222`, `a`, `a:5222`, `eth0`. Without a
//! port each service (clients, Call Bridges, servers) listens on its own default port. An
//! interface stands for its current IPv4 addresses, so the listeners follow DHCP and `ipv4`
//! changes. The stored form ([`crate::XmppConfig::listen`]) is [`ListenTarget`]'s `Display`;
//! every form stored before interfaces existed still parses to the same address.
//!
//! Everything here is pure: the daemon reads the kernel's interface list and hands it in.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Linux interface names are at most 15 bytes (IFNAMSIZ less the terminating NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// The host part of a [`ListenTarget`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenHost {
    Address(IpAddr),
    /// A board name (`a`) on the appliance, a kernel name (`eth0`, `lo`) anywhere.
    Interface(String),
}

/// One entry of the listen list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenTarget {
    pub host: ListenHost,
    /// `None`: the service's default port. Parsing accepts 0 (any free port, which tests use);
    /// `xmpp listen` refuses it.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenParseError {
    #[error(
        "invalid address '{0}': expected an IPv4 or IPv6 address or an interface name, with an optional :port ([v6]:port)"
    )]
    Unrecognized(String),
    #[error("invalid address '{text}': '{port}' is not a port number")]
    BadPort { text: String, port: String },
    #[error("invalid address '{0}': an interface name has at most {MAX_INTERFACE_NAME} characters")]
    NameTooLong(String),
}

/// Why an interface entry has nowhere to listen right now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// The interface exists but has no IPv4 address yet (DHCP pending, cable out): its
    /// listeners wait and bind as soon as one appears.
    #[error("no IPv4 address on {0} yet")]
    NoAddress(String),
    /// No interface of that name on this machine (a missing driver, a removed device).
    #[error("no interface '{0}'")]
    NoInterface(String),
}

impl ListenTarget {
    pub fn parse(text: &str) -> Result<ListenTarget, ListenParseError> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(ListenTarget::address(ip, None));
        }
        if let Ok(socket) = text.parse::<SocketAddr>() {
            return Ok(ListenTarget::address(socket.ip(), Some(socket.port())));
        }
        if let Some(Ok(ip)) = text
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .map(str::parse::<Ipv6Addr>)
        {
            return Ok(ListenTarget::address(IpAddr::V6(ip), None));
        }
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        // An IPv4 address with a valid port parsed above: here its port is the problem.
        let ipv4_with_port = port.is_some() && host.parse::<Ipv4Addr>().is_ok();
        if !(looks_like_interface(host) || ipv4_with_port) || port.is_some_and(|p| p.contains(':')) {
            return Err(ListenParseError::Unrecognized(text.to_owned()));
        }
        let port = match port {
            None => None,
            Some(digits) if !ipv4_with_port && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse::<u16>() {
                    Ok(port) => Some(port),
                    Err(_) => return Err(bad_port(text, digits)),
                }
            }
            Some(other) => return Err(bad_port(text, other)),
        };
        if host.len() > MAX_INTERFACE_NAME {
            return Err(ListenParseError::NameTooLong(text.to_owned()));
        }
        Ok(ListenTarget {
            host: ListenHost::Interface(host.to_owned()),
            port,
        })
    }

    fn address(ip: IpAddr, port: Option<u16>) -> ListenTarget {
        ListenTarget {
            host: ListenHost::Address(ip),
            port,
        }
    }

    /// The interface name, for an interface entry.
    pub fn interface(&self) -> Option<&str> {
        match &self.host {
            ListenHost::Interface(name) => Some(name),
            ListenHost::Address(_) => None,
        }
    }

    /// The same entry for another interface name (a kernel name replaced by the board's).
    pub fn with_interface(&self, name: &str) -> ListenTarget {
        ListenTarget {
            host: ListenHost::Interface(name.to_owned()),
            port: self.port,
        }
    }

    /// The IP addresses this entry stands for now: the address itself, or every IPv4
    /// address of the interface (several when it has secondary addresses).
    pub fn ips(&self, interfaces: &InterfaceAddresses) -> Result<Vec<IpAddr>, Unresolved> {
        match &self.host {
            ListenHost::Address(ip) => Ok(vec![*ip]),
            ListenHost::Interface(name) => match interfaces.ipv4(name) {
                None => Err(Unresolved::NoInterface(name.clone())),
                Some([]) => Err(Unresolved::NoAddress(name.clone())),
                Some(addrs) => Ok(addrs.iter().copied().map(IpAddr::V4).collect()),
            },
        }
    }

    /// Where a service binds, given its default port and the interfaces' addresses now.
    pub fn socket_addrs(
        &self,
        default_port: u16,
        interfaces: &InterfaceAddresses,
    ) -> Result<Vec<SocketAddr>, Unresolved> {
        let port = self.port.unwrap_or(default_port);
        Ok(self
            .ips(interfaces)?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

fn bad_port(text: &str, port: &str) -> ListenParseError {
    ListenParseError::BadPort {
        text: text.to_owned(),
        port: port.to_owned(),
    }
}

/// A letter, then letters, digits, `-`, `_` or `.`: every name a board uses and the usual
/// kernel names (`eth0`, `enp3s0`, `br-lan`, `eth0.100`), while a mistyped address such as
/// `300.1.1.1` is not taken for one.
fn looks_like_interface(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl fmt::Display for ListenTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (ListenHost::Address(ip), None) => write!(f, "{ip}"),
            (ListenHost::Address(ip), Some(port)) => write!(f, "{}", SocketAddr::new(*ip, port)),
            (ListenHost::Interface(name), None) => f.write_str(name),
            (ListenHost::Interface(name), Some(port)) => write!(f, "{name}:{port}"),
        }
    }
}

impl std::str::FromStr for ListenTarget {
    type Err = ListenParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ListenTarget::parse(text)
    }
}

/// One interface the board names (`[network] interfaces` in `board/*.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BoardInterface {
    /// The board's name, what the operator types: `a`.
    pub name: String,
    /// The kernel's name: `eth0`.
    pub kernel: String,
}

/// The IPv4 addresses of every interface, by name: kernel names, plus the board's names for
/// the interfaces the board has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceAddresses {
    by_name: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl InterfaceAddresses {
    /// From what the kernel lists: (interface, address) pairs, an interface without an address
    /// as `None` (getifaddrs lists every interface that way, whatever its addresses). IPv6
    /// addresses are left out: on the appliance an interface stands for its IPv4 addresses.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Option<IpAddr>)>) -> InterfaceAddresses {
        let mut by_name: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for (name, addr) in pairs {
            let addrs = by_name.entry(name).or_default();
            if let Some(IpAddr::V4(addr)) = addr
                && !addrs.contains(&addr)
            {
                addrs.push(addr);
            }
        }
        for addrs in by_name.values_mut() {
            addrs.sort();
        }
        InterfaceAddresses { by_name }
    }

    /// The board's names become names of their kernel interfaces; a board interface the
    /// kernel does not have stays unknown.
    pub fn with_board_names(mut self, board: &[BoardInterface]) -> InterfaceAddresses {
        for interface in board {
            if let Some(addrs) = self.by_name.get(&interface.kernel).cloned() {
                self.by_name.insert(interface.name.clone(), addrs);
            }
        }
        self
    }

    /// `None` when there is no such interface; empty when it has no IPv4 address.
    pub fn ipv4(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// Every name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ListenTarget {
        ListenTarget::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        ListenTarget::parse(text).expect_err(text).to_string()
    }

    #[test]
    fn addresses_and_interfaces_parse_and_print_in_stored_form() {
        for (text, stored) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.2:15222", "127.0.0.2:15222"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[::3]:5222", "[::3]:5222"),
            ("0.0.0.0", "0.0.0.0"),
            (" 127.0.0.1 ", "127.0.0.1"),
            ("a", "a"),
            ("a:5222", "a:5222"),
            ("eth0", "eth0"),
            ("lo:15222", "lo:15222"),
            ("enp3s0", "enp3s0"),
            ("br-lan", "br-lan"),
            ("eth0.100:5300", "eth0.100:5300"),
            ("abcdefghijklmno", "abcdefghijklmno"),
        ] {
            let target = parse(text);
            assert_eq!(target.to_string(), stored, "{text}");
            assert_eq!(parse(stored), target, "{stored} reads back as {text}");
        }
        assert_eq!(parse("a:5222").host, ListenHost::Interface("a".to_owned()));
        assert_eq!(parse("a:5222").port, Some(5222));
        assert_eq!(parse("[::1]").host, ListenHost::Address("::1".parse().unwrap()));
        // "::1:5222" is itself an IPv6 address, not ::1 port 5222: brackets are needed.
        assert_eq!(parse("::1:5222").port, None);
        // Port 0 (any free port) parses; `xmpp listen` refuses it, tests store it.
        assert_eq!(parse("127.0.0.1:0").port, Some(0));
        assert_eq!(parse("lo:0").port, Some(0));
    }

    #[test]
    fn bad_entries_name_the_problem() {
        let expected = "expected an IPv4 or IPv6 address or an interface name, with an optional :port ([v6]:port)";
        for text in [
            "300.1.1.1",
            "[::1:5222",
            "1eth",
            "eth 0",
            "a/b",
            "",
            "a:b:c",
            "[::1]:",
            "1.2.3:5222",
        ] {
            assert_eq!(error(text), format!("invalid address '{}': {expected}", text.trim()));
        }
        assert_eq!(
            error("127.0.0.1:70000"),
            "invalid address '127.0.0.1:70000': '70000' is not a port number"
        );
        assert_eq!(error("a:x"), "invalid address 'a:x': 'x' is not a port number");
        assert_eq!(error("a:"), "invalid address 'a:': '' is not a port number");
        assert_eq!(error("a:+5"), "invalid address 'a:+5': '+5' is not a port number");
        assert_eq!(
            error("127.0.0.1:+5"),
            "invalid address '127.0.0.1:+5': '+5' is not a port number"
        );
        assert_eq!(
            error("abcdefghijklmnop"),
            "invalid address 'abcdefghijklmnop': an interface name has at most 15 characters"
        );
    }

    fn table() -> InterfaceAddresses {
        let v4 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        InterfaceAddresses::from_pairs([
            ("lo".to_owned(), None),
            ("lo".to_owned(), v4("127.0.0.1")),
            ("lo".to_owned(), v4("::1")),
            ("eth0".to_owned(), None),
            ("eth0".to_owned(), v4("192.0.2.9")),
            ("eth0".to_owned(), v4("192.0.2.7")),
            ("eth0".to_owned(), v4("192.0.2.7")),
            ("eth1".to_owned(), None),
        ])
    }

    #[test]
    fn interfaces_stand_for_their_ipv4_addresses() {
        let interfaces = table();
        let addrs = |text: &str, port| {
            parse(text)
                .socket_addrs(port, &interfaces)
                .map(|a| a.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(addrs("lo", 5222), Ok(vec!["127.0.0.1:5222".to_owned()]));
        assert_eq!(
            addrs("eth0:5300", 5222),
            Ok(vec!["192.0.2.7:5300".to_owned(), "192.0.2.9:5300".to_owned()])
        );
        assert_eq!(addrs("eth1", 5222), Err(Unresolved::NoAddress("eth1".to_owned())));
        assert_eq!(addrs("eth9", 5222), Err(Unresolved::NoInterface("eth9".to_owned())));
        assert_eq!(addrs("[::1]", 5269), Ok(vec!["[::1]:5269".to_owned()]));
        assert_eq!(addrs("192.0.2.1:5222", 5269), Ok(vec!["192.0.2.1:5222".to_owned()]));
        assert_eq!(
            Unresolved::NoAddress("a".to_owned()).to_string(),
            "no IPv4 address on a yet"
        );
        assert_eq!(Unresolved::NoInterface("x".to_owned()).to_string(), "no interface 'x'");
    }

    #[test]
    fn board_names_alias_their_kernel_interfaces() {
        let board = [
            BoardInterface {
                name: "a".to_owned(),
                kernel: "eth0".to_owned(),
            },
            BoardInterface {
                name: "b".to_owned(),
                kernel: "eth1".to_owned(),
            },
            BoardInterface {
                name: "c".to_owned(),
                kernel: "eth2".to_owned(),
            },
        ];
        let interfaces = table().with_board_names(&board);
        assert_eq!(interfaces.ipv4("a"), interfaces.ipv4("eth0"));
        assert_eq!(
            parse("a").ips(&interfaces),
            Ok(vec![
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "192.0.2.9".parse().unwrap()
            ])
        );
        assert_eq!(parse("b").ips(&interfaces), Err(Unresolved::NoAddress("b".to_owned())));
        // The board names eth2, the kernel has none: the driver is missing, not the address.
        assert_eq!(
            parse("c").ips(&interfaces),
            Err(Unresolved::NoInterface("c".to_owned()))
        );
        assert_eq!(interfaces.names().collect::<Vec<_>>(), ["a", "b", "eth0", "eth1", "lo"]);
    }
}
