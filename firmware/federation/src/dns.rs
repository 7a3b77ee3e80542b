//! DNS through hickory-resolver: the system's configuration, or the nameservers the admin set
//! with `dns nameserver add` (`ip` or `ip:port`). Every lookup is logged with its timing.

use crate::srv::{SrvRecord, Target, TargetSource, is_service_refusal, order_srv, targets_from_srv};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("invalid nameserver '{0}': expected an IP address, optionally with :port")]
    BadNameserver(String),
    #[error("cannot set up the resolver: {0}")]
    Setup(String),
    #[error("{name}: {reason}")]
    Lookup { name: String, reason: String },
    #[error("{0}: the domain publishes '.' for this service (no server)")]
    Refused(String),
    #[error("{0}: no address found")]
    NoAddress(String),
}

/// Parse a nameserver as `dns nameserver add` accepts it.
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, DnsError> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| DnsError::BadNameserver(text.to_owned()))
}

pub struct Resolver {
    inner: TokioResolver,
    /// `system (/etc/resolv.conf)` or the configured list, for logs and `dns check`.
    pub description: String,
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

impl Resolver {
    /// The system resolver when `nameservers` is empty, else exactly those servers.
    pub fn new(nameservers: &[String]) -> Result<Resolver, DnsError> {
        if nameservers.is_empty() {
            let builder = TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?;
            let inner = builder.build().map_err(|e| DnsError::Setup(e.to_string()))?;
            return Ok(Resolver {
                inner,
                description: "system (/etc/resolv.conf)".to_owned(),
            });
        }
        let mut servers = Vec::new();
        for text in nameservers {
            let addr = parse_nameserver(text)?;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
        }
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_secs(3);
        let inner = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Resolver {
            inner,
            description: nameservers.join(", "),
        })
    }

    /// SRV records for `name` (e.g. `_xmpp-server._tcp.b.example`), unordered; empty when
    /// there are none.
    pub async fn srv(&self, name: &str, direct_tls: bool) -> Result<Vec<SrvRecord>, DnsError> {
        let started = Instant::now();
        let result = self.inner.srv_lookup(fqdn(name)).await;
        let elapsed = started.elapsed();
        match result {
            Ok(lookup) => {
                let records: Vec<SrvRecord> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(SrvRecord {
                            priority: srv.priority,
                            weight: srv.weight,
                            port: srv.port,
                            target: srv.target.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                            direct_tls,
                        }),
                        _ => None,
                    })
                    .collect();
                log::info!(
                    "dns: SRV {name}: {} record(s) in {} ms",
                    records.len(),
                    elapsed.as_millis()
                );
                Ok(records)
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                log::info!("dns: SRV {name}: none ({} ms)", elapsed.as_millis());
                Ok(Vec::new())
            }
            Err(e) => {
                log::warn!("dns: SRV {name}: failed after {} ms: {e}", elapsed.as_millis());
                Err(DnsError::Lookup {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// A and AAAA addresses of `host` (an IP literal is its own answer).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let started = Instant::now();
        let result = self.inner.lookup_ip(fqdn(host)).await;
        let elapsed = started.elapsed();
        match result {
            Ok(lookup) => {
                let addresses: Vec<IpAddr> = lookup.iter().collect();
                log::info!(
                    "dns: A/AAAA {host}: {} in {} ms",
                    addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", "),
                    elapsed.as_millis()
                );
                if addresses.is_empty() {
                    return Err(DnsError::NoAddress(host.to_owned()));
                }
                Ok(addresses)
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                log::info!("dns: A/AAAA {host}: none ({} ms)", elapsed.as_millis());
                Err(DnsError::NoAddress(host.to_owned()))
            }
            Err(e) => {
                log::warn!("dns: A/AAAA {host}: failed after {} ms: {e}", elapsed.as_millis());
                Err(DnsError::Lookup {
                    name: host.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Where to reach `domain`'s server, in order: `_xmpps-server` (direct TLS, when
    /// `direct_tls_allowed`) and `_xmpp-server` records together by priority and weight, or
    /// the domain itself on `fallback_port`.
    pub async fn server_targets(
        &self,
        domain: &str,
        direct_tls_allowed: bool,
        fallback_port: u16,
    ) -> Result<Vec<Target>, DnsError> {
        // RFC 6120 §3.2.2: a failed SRV lookup falls back to the domain's addresses, as an
        // empty answer does (the failure is logged by `srv`).
        let starttls = self
            .srv(&format!("_xmpp-server._tcp.{domain}"), false)
            .await
            .unwrap_or_default();
        let direct = if direct_tls_allowed {
            // A failing direct-TLS lookup must not stop the usual one from being used.
            self.srv(&format!("_xmpps-server._tcp.{domain}"), true)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let starttls_refused = is_service_refusal(&starttls);
        let direct_refused = is_service_refusal(&direct);
        if starttls_refused && (direct.is_empty() || direct_refused) {
            return Err(DnsError::Refused(domain.to_owned()));
        }
        let mut records = starttls;
        records.extend(direct);
        let ordered = order_srv(records, &mut random_up_to);
        Ok(targets_from_srv(domain, &ordered, fallback_port))
    }
}

/// Static routes become targets in random order: they have equal priority.
pub fn route_targets(routes: &[String], default_port: u16) -> Vec<Target> {
    let mut targets: Vec<Target> = routes
        .iter()
        .filter_map(|route| match crate::srv::parse_route_target(route, default_port) {
            Ok((host, port)) => Some(Target {
                host,
                port,
                direct_tls: false,
                source: TargetSource::Route,
            }),
            Err(e) => {
                log::warn!("ignoring static route target '{route}': {e}");
                None
            }
        })
        .collect();
    for i in (1..targets.len()).rev() {
        let j = random_up_to(i as u32) as usize;
        targets.swap(i, j);
    }
    targets
}

/// A uniform number in `0..=n` from the system's secure generator (the quality is not
/// needed here; one source of randomness is simpler than two).
pub fn random_up_to(n: u32) -> u32 {
    let mut bytes = [0u8; 4];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return 0;
    }
    let value = u32::from_le_bytes(bytes);
    match n.checked_add(1) {
        Some(range) => value % range,
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_parse_with_and_without_port() {
        assert_eq!(
            parse_nameserver("127.0.0.53").unwrap(),
            "127.0.0.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("127.0.0.53:5353").unwrap(),
            "127.0.0.53:5353".parse().unwrap()
        );
        assert_eq!(parse_nameserver("[::1]:5353").unwrap(), "[::1]:5353".parse().unwrap());
        assert_eq!(parse_nameserver("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_nameserver("ns.example").is_err());
    }

    #[test]
    fn routes_keep_every_valid_target() {
        let targets = route_targets(&["127.0.0.2:15269".into(), "bad host".into(), "127.0.0.3".into()], 5269);
        let mut found: Vec<(String, u16)> = targets.iter().map(|t| (t.host.clone(), t.port)).collect();
        found.sort();
        assert_eq!(
            found,
            vec![("127.0.0.2".to_owned(), 15269), ("127.0.0.3".to_owned(), 5269)]
        );
        assert!(targets.iter().all(|t| t.source == TargetSource::Route));
        for n in [0, 1, 7] {
            assert!(random_up_to(n) <= n);
        }
    }
}
