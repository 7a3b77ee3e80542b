//! Where a remote domain's server is: SRV records ordered as RFC 2782 says, XEP-0368 direct
//! TLS records mixed in by priority, and the fallback to the domain itself on port 5269.
//!
//! Pure: the resolver (`dns.rs`) fetches records, this orders them. Randomness comes in as a
//! function so tests can pin it.

/// One SRV answer, for `_xmpp-server._tcp` (STARTTLS) or `_xmpps-server._tcp` (direct TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot.
    pub target: String,
    pub direct_tls: bool,
}

/// A host to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    pub direct_tls: bool,
    /// Where this target came from, for logs and `dns check` (`SRV`, `A/AAAA fallback`, `route`).
    pub source: TargetSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    Srv,
    Fallback,
    Route,
}

impl TargetSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSource::Srv => "SRV",
            TargetSource::Fallback => "A/AAAA fallback",
            TargetSource::Route => "static route",
        }
    }
}

/// Whether a record set says "no such service here": a single record whose target is `.`
/// (RFC 2782); the client must then not fall back to the domain's address.
pub fn is_service_refusal(records: &[SrvRecord]) -> bool {
    records.len() == 1 && (records[0].target.is_empty() || records[0].target == ".")
}

/// Order `records` for connection attempts: ascending priority; within one priority, the
/// RFC 2782 weighted random selection. `random(n)` returns a uniform number in `0..=n`.
pub fn order_srv(mut records: Vec<SrvRecord>, random: &mut dyn FnMut(u32) -> u32) -> Vec<SrvRecord> {
    records.retain(|r| !(r.target.is_empty() || r.target == "."));
    records.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|r| r.priority == first.priority).count();
        let (group, tail) = rest.split_at(same);
        // RFC 2782: weight-0 records go first in the list the running sums are taken over,
        // which gives them a small chance when others have weight, and an equal one when all
        // are zero.
        let mut unordered: Vec<SrvRecord> = group.iter().filter(|r| r.weight == 0).cloned().collect();
        unordered.extend(group.iter().filter(|r| r.weight > 0).cloned());
        while !unordered.is_empty() {
            let total: u32 = unordered.iter().map(|r| u32::from(r.weight)).sum();
            let pick = random(total).min(total);
            let mut running = 0u32;
            let mut chosen = unordered.len() - 1;
            for (i, record) in unordered.iter().enumerate() {
                running += u32::from(record.weight);
                if running >= pick {
                    chosen = i;
                    break;
                }
            }
            ordered.push(unordered.remove(chosen));
        }
        rest = tail;
    }
    ordered
}

/// The targets for a domain from its (already ordered) SRV records, or the domain itself on
/// `fallback_port` when there are none.
pub fn targets_from_srv(domain: &str, ordered: &[SrvRecord], fallback_port: u16) -> Vec<Target> {
    if ordered.is_empty() {
        return vec![Target {
            host: domain.to_owned(),
            port: fallback_port,
            direct_tls: false,
            source: TargetSource::Fallback,
        }];
    }
    ordered
        .iter()
        .map(|r| Target {
            host: r.target.clone(),
            port: r.port,
            direct_tls: r.direct_tls,
            source: TargetSource::Srv,
        })
        .collect()
}

/// Why a static route target is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteTargetError {
    #[error("empty route target")]
    Empty,
    #[error("'{0}' is not an address")]
    BadAddress(String),
    #[error("'{0}' is not a port")]
    BadPort(String),
    #[error("port 0 is not a port")]
    PortZero,
    #[error("'{0}' is not a host name or address")]
    BadHost(String),
}

/// Parse a static route target: `host`, `host:port`, `ip`, `ip:port`, `[v6]:port`.
pub fn parse_route_target(text: &str, default_port: u16) -> Result<(String, u16), RouteTargetError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RouteTargetError::Empty);
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok((ip.to_string(), default_port));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok((ip.to_string(), default_port)),
            Err(_) => Err(RouteTargetError::BadAddress(text.to_owned())),
        };
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port.parse().map_err(|_| RouteTargetError::BadPort(port.to_owned()))?;
            if port == 0 {
                return Err(RouteTargetError::PortZero);
            }
            (host, port)
        }
        None => (text, default_port),
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid_host {
        return Err(RouteTargetError::BadHost(host.to_owned()));
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 5269,
            target: target.to_owned(),
            direct_tls: false,
        }
    }

    fn names(records: &[SrvRecord]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn lower_priority_always_comes_first() {
        let records = vec![rec(20, 100, "c"), rec(10, 0, "a"), rec(30, 0, "d"), rec(10, 0, "b")];
        let ordered = order_srv(records, &mut |_| 0);
        assert_eq!(names(&ordered[..2]).len(), 2);
        assert!(names(&ordered[..2]).contains(&"a") && names(&ordered[..2]).contains(&"b"));
        assert_eq!(names(&ordered[2..]), vec!["c", "d"]);
    }

    #[test]
    fn weights_follow_the_running_sum_rule() {
        // Sums over [zero-weight first]: z=0, x=10, y=30 → running 0, 10, 40.
        let records = vec![rec(0, 10, "x"), rec(0, 30, "y"), rec(0, 0, "z")];
        // random = 0 picks the first whose running sum >= 0: the weight-0 record.
        assert_eq!(names(&order_srv(records.clone(), &mut |_| 0))[0], "z");
        // random = 5 → x (running 10); then among [z, y] random 31 → y is the only >= 31.
        let mut picks = vec![5, 31, 0].into_iter();
        let ordered = order_srv(records.clone(), &mut |_| picks.next().unwrap_or(0));
        assert_eq!(names(&ordered), vec!["x", "y", "z"]);
        // random = 40 → y; then [z, x]: 10 → x; then z.
        let mut picks = vec![40, 10, 0].into_iter();
        let ordered = order_srv(records, &mut |_| picks.next().unwrap_or(0));
        assert_eq!(names(&ordered), vec!["y", "x", "z"]);
    }

    #[test]
    fn heavier_records_win_more_often() {
        // A deterministic sweep over every random value gives the exact proportions.
        let records = vec![rec(0, 1, "light"), rec(0, 3, "heavy")];
        let mut heavy_first = 0;
        for value in 0..=4u32 {
            let ordered = order_srv(records.clone(), &mut |total| value.min(total));
            if ordered[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        // Values 0 and 1 pick "light" (running sum 1), 2..=4 pick "heavy".
        assert_eq!(heavy_first, 3);
    }

    #[test]
    fn refusal_and_fallback() {
        assert!(is_service_refusal(&[rec(0, 0, ".")]));
        assert!(!is_service_refusal(&[rec(0, 0, "a")]));
        let fallback = targets_from_srv("b.example", &[], 5269);
        assert_eq!(fallback.len(), 1);
        assert_eq!(fallback[0].host, "b.example");
        assert_eq!(fallback[0].port, 5269);
        assert_eq!(fallback[0].source, TargetSource::Fallback);
        let mut direct = rec(0, 0, "xmpp.b.example");
        direct.direct_tls = true;
        direct.port = 5270;
        let targets = targets_from_srv("b.example", &[direct], 5269);
        assert!(targets[0].direct_tls);
        assert_eq!(targets[0].port, 5270);
    }

    #[test]
    fn route_targets_parse() {
        assert_eq!(parse_route_target("127.0.0.2", 5269), Ok(("127.0.0.2".into(), 5269)));
        assert_eq!(
            parse_route_target("127.0.0.2:15269", 5269),
            Ok(("127.0.0.2".into(), 15269))
        );
        assert_eq!(parse_route_target("[::1]:5270", 5269), Ok(("::1".into(), 5270)));
        assert_eq!(parse_route_target("[::1]", 5269), Ok(("::1".into(), 5269)));
        assert_eq!(
            parse_route_target("XMPP.b.example:5299", 5269),
            Ok(("xmpp.b.example".into(), 5299))
        );
        assert_eq!(parse_route_target("host:0", 5269), Err(RouteTargetError::PortZero));
        assert_eq!(
            parse_route_target("bad host", 5269),
            Err(RouteTargetError::BadHost("bad host".into()))
        );
        assert_eq!(parse_route_target("", 5269), Err(RouteTargetError::Empty));
        assert_eq!(
            parse_route_target("a..b", 5269),
            Err(RouteTargetError::BadHost("a..b".into()))
        );
        assert_eq!(
            parse_route_target("b:x", 5269),
            Err(RouteTargetError::BadPort("x".into()))
        );
    }
}
