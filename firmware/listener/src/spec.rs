//! What an owner wants to listen on, and what that resolves to with the interfaces' addresses now.

use sb_store::{InterfaceAddresses, ListenParseError, ListenTarget, Unresolved};
use std::net::{IpAddr, SocketAddr};

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Clients (RFC 6120 c2s, STARTTLS).
    Client,
    /// Call Bridges (XEP-0114 components, TLS on the socket).
    Component,
    /// Other servers (RFC 6120 s2s, STARTTLS).
    Server,
    /// The HTTPS web admin and API (TLS on the socket).
    Web,
    /// The SSH server for the administrator (SSH's own transport; [`TlsMode`] is unused).
    Ssh,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Client => "c2s",
            Service::Component => "component",
            Service::Server => "s2s",
            Service::Web => "web",
            Service::Ssh => "ssh",
        })
    }
}

/// How a listener's connections start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plain XML first, TLS after `<starttls/>` (clients, servers).
    Starttls,
    /// TLS from the first byte (Call Bridges).
    Direct,
    /// Plain TCP where TLS would be the rule; only ever granted on loopback addresses.
    Plain,
}

impl TlsMode {
    pub(crate) fn as_u8(self) -> u8 {
        match self {
            TlsMode::Starttls => 0,
            TlsMode::Direct => 1,
            TlsMode::Plain => 2,
        }
    }

    pub(crate) fn from_u8(value: u8) -> TlsMode {
        match value {
            0 => TlsMode::Starttls,
            2 => TlsMode::Plain,
            _ => TlsMode::Direct,
        }
    }

    /// For log lines after the address.
    pub(crate) fn note(self) -> &'static str {
        match self {
            TlsMode::Starttls => "",
            TlsMode::Direct => " (TLS)",
            TlsMode::Plain => " (plain TCP, loopback only)",
        }
    }
}

/// One entry of `xmpp listen`, parsed once: every service that listens there reads this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenEntry {
    /// As stored.
    pub text: String,
    pub target: Result<ListenTarget, ListenParseError>,
}

impl ListenEntry {
    pub fn parse(text: &str) -> ListenEntry {
        ListenEntry {
            text: text.to_owned(),
            target: ListenTarget::parse(text),
        }
    }

    pub fn parse_all(texts: &[String]) -> Vec<ListenEntry> {
        texts.iter().map(|text| ListenEntry::parse(text)).collect()
    }

    /// The interface name, for an entry that names one.
    pub fn interface(&self) -> Option<&str> {
        self.target.as_ref().ok().and_then(ListenTarget::interface)
    }

    /// The entry's own port, if it has one (the client port).
    pub fn port(&self) -> Option<u16> {
        self.target.as_ref().ok().and_then(|t| t.port)
    }

    /// The entry as another service's status shows it: the same host at `port`.
    pub fn with_port(&self, port: u16) -> String {
        match &self.target {
            Ok(target) => ListenTarget {
                host: target.host.clone(),
                port: Some(port),
            }
            .to_string(),
            Err(_) => self.text.clone(),
        }
    }
}

/// One listener an owner asks for: a service on every address of an entry, at `port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    pub service: Service,
    pub entry: ListenEntry,
    /// What status shows for it when it has no address (the entry, or the entry with this
    /// service's port).
    pub label: String,
    pub port: u16,
    /// [`TlsMode::Plain`] is granted on loopback addresses only; elsewhere it becomes
    /// [`TlsMode::Direct`].
    pub tls: TlsMode,
}

impl ListenSpec {
    /// `service` on the addresses of `entry` at a `port` of its own (an entry's port is the
    /// client service's): status labels it with that port.
    pub fn at_port(service: Service, entry: ListenEntry, port: u16, tls: TlsMode) -> ListenSpec {
        ListenSpec {
            service,
            label: entry.with_port(port),
            entry,
            port,
            tls,
        }
    }
}

/// Why an entry cannot listen at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Unparsable(#[from] ListenParseError),
    /// No interface of that name on this machine.
    #[error(transparent)]
    NoInterface(Unresolved),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Bind(SocketAddr),
    /// The entry's interface has no IPv4 address yet; it binds as soon as one appears.
    Waiting(Unresolved),
    /// The entry cannot listen (unparsable, no such interface).
    Refused(Refusal),
}

/// One socket (or the reason there is none) a [`ListenSpec`] resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub service: Service,
    pub label: String,
    pub interface: Option<String>,
    pub target: Target,
    /// The mode granted for this address.
    pub tls: TlsMode,
    /// The mode asked for (differs when plain TCP was asked on a non-loopback address).
    pub asked: TlsMode,
}

/// Each spec on each address its entry stands for now, in order: an address entry is its
/// address, an interface entry each of the interface's IPv4 addresses.
pub fn resolve(specs: &[ListenSpec], interfaces: &InterfaceAddresses) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for spec in specs {
        let ips: Result<Vec<IpAddr>, Target> = match &spec.entry.target {
            Err(e) => Err(Target::Refused(Refusal::Unparsable(e.clone()))),
            Ok(target) => target.ips(interfaces).map_err(|unresolved| match unresolved {
                Unresolved::NoAddress(_) => Target::Waiting(unresolved),
                Unresolved::NoInterface(_) => Target::Refused(Refusal::NoInterface(unresolved)),
            }),
        };
        let one = |target: Target, tls: TlsMode| Wanted {
            service: spec.service,
            label: spec.label.clone(),
            interface: spec.entry.interface().map(str::to_owned),
            target,
            tls,
            asked: spec.tls,
        };
        let granted = |ip: Option<IpAddr>| match spec.tls {
            TlsMode::Plain if ip.is_some_and(|ip| ip.is_loopback()) => TlsMode::Plain,
            TlsMode::Plain => TlsMode::Direct,
            other => other,
        };
        match ips {
            Ok(ips) => wanted.extend(
                ips.into_iter()
                    .map(|ip| one(Target::Bind(SocketAddr::new(ip, spec.port)), granted(Some(ip)))),
            ),
            Err(target) => wanted.push(one(target, granted(None))),
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(service: Service, entry: &str, port: u16, tls: TlsMode) -> ListenSpec {
        ListenSpec {
            service,
            entry: ListenEntry::parse(entry),
            label: entry.to_owned(),
            port,
            tls,
        }
    }

    #[test]
    fn each_spec_listens_on_every_address_of_its_entry_in_order() {
        let pair = |name: &str, addr: Option<&str>| (name.to_owned(), addr.map(|a| a.parse().unwrap()));
        let interfaces = InterfaceAddresses::from_pairs([
            pair("eth0", Some("192.0.2.7")),
            pair("eth0", Some("192.0.2.8")),
            pair("eth1", None),
        ]);
        let specs = [
            spec(Service::Server, "127.0.0.1:15222", 5269, TlsMode::Starttls),
            spec(Service::Server, "eth0:5222", 5269, TlsMode::Starttls),
            spec(Service::Server, "eth1", 5269, TlsMode::Starttls),
            spec(Service::Server, "eth9", 5269, TlsMode::Starttls),
            spec(Service::Server, "300.1.1.1", 5269, TlsMode::Starttls),
        ];
        let targets: Vec<(String, String)> = resolve(&specs, &interfaces)
            .into_iter()
            .map(|w| {
                let target = match w.target {
                    Target::Bind(addr) => addr.to_string(),
                    Target::Waiting(reason) => format!("waiting: {reason}"),
                    Target::Refused(error) => format!("refused: {error}"),
                };
                (w.label, target)
            })
            .collect();
        let expected = [
            ("127.0.0.1:15222", "127.0.0.1:5269"),
            ("eth0:5222", "192.0.2.7:5269"),
            ("eth0:5222", "192.0.2.8:5269"),
            ("eth1", "waiting: no IPv4 address on eth1 yet"),
            ("eth9", "refused: no interface 'eth9'"),
        ];
        for (got, want) in targets.iter().zip(expected) {
            assert_eq!((got.0.as_str(), got.1.as_str()), want);
        }
        assert!(
            targets[5].1.starts_with("refused: invalid address '300.1.1.1'"),
            "{targets:?}"
        );
    }

    #[test]
    fn plain_tcp_is_granted_on_loopback_only() {
        let none = InterfaceAddresses::default();
        let specs = [
            spec(Service::Component, "127.0.0.2", 5223, TlsMode::Plain),
            spec(Service::Component, "192.0.2.7", 5223, TlsMode::Plain),
            spec(Service::Component, "::1", 5223, TlsMode::Plain),
            spec(Service::Component, "eth9", 5223, TlsMode::Plain),
        ];
        let granted: Vec<(TlsMode, TlsMode)> = resolve(&specs, &none).iter().map(|w| (w.tls, w.asked)).collect();
        assert_eq!(
            granted,
            [
                (TlsMode::Plain, TlsMode::Plain),
                (TlsMode::Direct, TlsMode::Plain),
                (TlsMode::Plain, TlsMode::Plain),
                (TlsMode::Direct, TlsMode::Plain),
            ]
        );
    }

    #[test]
    fn another_service_shows_the_entry_with_its_port() {
        assert_eq!(ListenEntry::parse("a:5222").with_port(5223), "a:5223");
        assert_eq!(ListenEntry::parse("::1").with_port(5223), "[::1]:5223");
        assert_eq!(ListenEntry::parse("300.1.1.1").with_port(5223), "300.1.1.1");
    }
}
