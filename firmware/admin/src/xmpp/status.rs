//! `xmpp status`: what runs, what is configured, and what is wrong.

use crate::pki::{self, CertSummary};
use crate::{Admin, ComponentAuthFailure, ComponentAuthFailureReason, LiveStatus, Reply};
use sb_store::XmppConfig;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use time::OffsetDateTime;

/// A certificate this close to expiry is a fault.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Component authentication failures this recent are faults.
const AUTH_FAILURE_WINDOW_SECONDS: u64 = 3600;

/// Distinct authentication-failure faults shown; a flood of them is summarised.
const MAX_AUTH_FAILURE_LINES: usize = 10;

pub(super) fn apply(admin: &Admin) -> Reply {
    let config = match admin.store().xmpp_config() {
        Ok(config) => config,
        Err(err) => return Reply::failure(format!("cannot read the configuration: {err}")),
    };
    let bridges = match admin.store().list_callbridges() {
        Ok(bridges) => bridges.into_iter().map(|bridge| bridge.name).collect::<Vec<_>>(),
        Err(err) => return Reply::failure(format!("cannot read the Call Bridges: {err}")),
    };
    let live = admin.live().map(|live| live.status());
    let certificate = config.tls.as_ref().map(|tls| {
        pki::cert_file(&admin.certs_dir(), &tls.cert)
            .and_then(|path| pki::inspect(&path))
            .map_err(|err| err.to_string())
    });
    let mut text = render_status(&config, &bridges, live.as_ref(), certificate, OffsetDateTime::now_utc());
    // Federation security opt-outs are repeated here, so the overview shows them too.
    if let Ok(federation) = admin.store().federation_config()
        && federation.enabled
    {
        let warnings = crate::federation::security_warnings(&federation);
        if !warnings.is_empty() {
            text.push_str("\nWarnings:");
            for warning in warnings {
                let _ = write!(text, "\n  federation: {warning}");
            }
        }
    }
    Reply::output(text)
}

/// The `xmpp status` text. `bridges` are the configured Call Bridges' names; `live` is `None`
/// when no daemon runs; `certificate` is `None` when no TLS identity is configured, else what
/// reading the configured certificate gave.
pub fn render_status(
    config: &XmppConfig,
    bridges: &[String],
    live: Option<&LiveStatus>,
    certificate: Option<Result<CertSummary, String>>,
    now: OffsetDateTime,
) -> String {
    let mut out = String::new();
    let mut faults: Vec<String> = Vec::new();
    let enabled = if config.enabled { "enabled" } else { "disabled" };

    let state = match live {
        None => "not running (no daemon)".to_owned(),
        Some(live) if live.running => format!("running since {}", format_unix(live.started_at_unix)),
        // DHCP has not answered yet: nothing is wrong, the listeners bind when it does.
        Some(live) if live.listeners.iter().any(|l| l.waiting.is_some() && l.error.is_none()) => {
            "not running (waiting for an interface address)".to_owned()
        }
        Some(_) => {
            if config.enabled {
                faults.push("service enabled but not running".to_owned());
            }
            "not running".to_owned()
        }
    };
    row(&mut out, "Service", &format!("{enabled}, {state}"));
    if config.domain.is_empty() {
        row(&mut out, "Domain", "(none)");
        faults.push("no domain configured (xmpp domain <domain>)".to_owned());
    } else {
        row(&mut out, "Domain", &config.domain);
    }

    let listener_lines: Vec<String> = match live {
        Some(live) if !live.listeners.is_empty() => live
            .listeners
            .iter()
            .map(|listener| match (&listener.error, &listener.waiting) {
                (None, None) => format!("{} (listening)", listener.address),
                (None, Some(reason)) => format!("{} (waiting: {reason})", listener.address),
                (Some(error), _) => {
                    faults.push(format!("listener {}: bind failed: {error}", listener.address));
                    format!("{} (bind failed: {error})", listener.address)
                }
            })
            .collect(),
        _ => config
            .listen
            .iter()
            .map(|address| format!("{address} (not listening)"))
            .collect(),
    };
    rows(&mut out, "Listeners", &listener_lines);
    row(
        &mut out,
        "Call Bridge port",
        &super::callbridge::listener_summary(config),
    );

    match (&config.tls, certificate) {
        (None, _) | (Some(_), None) => {
            row(&mut out, "Certificate", "(none)");
            faults.push("no certificate configured (xmpp certs <key> <crt> [<bundle>])".to_owned());
        }
        (Some(tls), Some(Err(error))) => {
            row(&mut out, "Certificate", &tls.cert);
            row(&mut out, "  Error", &error);
            faults.push(format!("certificate {}: {error}", tls.cert));
        }
        (Some(tls), Some(Ok(summary))) => {
            let name = match &tls.bundle {
                Some(bundle) => format!("{} (bundle {bundle})", tls.cert),
                None => tls.cert.clone(),
            };
            row(&mut out, "Certificate", &name);
            row(&mut out, "  Subject", &summary.subject);
            row(&mut out, "  Issuer", &summary.issuer);
            let sans = if summary.sans.is_empty() {
                "(none)".to_owned()
            } else {
                summary.sans.join(", ")
            };
            row(&mut out, "  SANs", &sans);
            let expiry = pki::format_time(summary.not_after);
            let days_left = (summary.not_after - now).whole_days();
            if summary.not_after <= now {
                row(&mut out, "  Expires", &format!("{expiry} (EXPIRED)"));
                faults.push(format!("certificate {} expired on {expiry}", tls.cert));
            } else {
                row(&mut out, "  Expires", &format!("{expiry} (in {days_left} days)"));
                if days_left < EXPIRY_WARNING_DAYS {
                    faults.push(format!(
                        "certificate {} expires in {days_left} days, on {expiry}",
                        tls.cert
                    ));
                }
            }
        }
    }

    match live {
        None => row(&mut out, "Connected clients", "0 (no daemon)"),
        Some(live) => {
            row(&mut out, "Connected clients", &live.sessions.len().to_string());
            let mut sessions: Vec<_> = live.sessions.iter().collect();
            sessions.sort_by(|a, b| a.jid.cmp(&b.jid).then(a.since_unix.cmp(&b.since_unix)));
            for session in sessions {
                let security = if session.tls { "TLS" } else { "no TLS" };
                let _ = writeln!(
                    out,
                    "  {} from {} since {}, {security}",
                    session.jid,
                    session.peer,
                    format_unix(session.since_unix)
                );
            }
        }
    }

    render_callbridges(&mut out, &config.domain, bridges, live);
    if let Some(live) = live {
        auth_failure_faults(&mut faults, &live.component_auth_failures, now);
    }
    render_cluster(&mut out, &mut faults, config, live);

    if faults.is_empty() {
        out.push_str("Faults: none");
    } else {
        out.push_str("Faults:");
        for fault in &faults {
            let _ = write!(out, "\n  {fault}");
        }
    }
    out
}

/// One line on this node's cluster membership (when cluster mode is on); its problems go to
/// the faults.
fn render_cluster(out: &mut String, faults: &mut Vec<String>, config: &XmppConfig, live: Option<&LiveStatus>) {
    let cluster = live.and_then(|live| live.cluster.as_ref());
    let text = match (config.cluster.enabled, cluster) {
        (false, _) => return,
        (true, None) => {
            if let Some(reason) = live.and_then(|live| live.cluster_error.as_deref()) {
                faults.push(format!("cluster: not running: {reason}"));
            }
            "enabled, not running".to_owned()
        }
        (true, Some(view)) if view.members.is_empty() => "enabled, not a member yet".to_owned(),
        (true, Some(view)) => {
            faults.extend(super::cluster::cluster_faults(view));
            let reachable = view.members.iter().filter(|m| m.reachable()).count();
            format!(
                "{} of {} members, {reachable} reachable, term {}",
                view.state,
                view.members.len(),
                view.term
            )
        }
    };
    row(out, "Cluster", &text);
}

/// Configured bridges with their connection, and any connected bridge no longer configured.
fn render_callbridges(out: &mut String, domain: &str, bridges: &[String], live: Option<&LiveStatus>) {
    let address = |name: &str| {
        if domain.is_empty() {
            name.to_owned()
        } else {
            format!("{name}.{domain}")
        }
    };
    let mut names: Vec<&str> = bridges.iter().map(String::as_str).collect();
    if let Some(live) = live {
        names.extend(live.callbridges.iter().map(|bridge| bridge.name.as_str()));
    }
    names.sort_unstable();
    names.dedup();
    let connected = live.map_or(0, |live| live.callbridges.len());
    let summary = match (bridges.len(), live) {
        (0, None) => "none configured (no daemon)".to_owned(),
        (configured, None) => format!("{configured} configured (no daemon)"),
        (0, Some(_)) if connected == 0 => "none configured".to_owned(),
        (configured, Some(_)) => format!("{configured} configured, {connected} connected"),
    };
    row(out, "Call Bridges", &summary);
    for name in names {
        let configured = bridges.iter().any(|known| known == name);
        let mut connections: Vec<_> = live
            .map(|live| live.callbridges.iter().filter(|bridge| bridge.name == name).collect())
            .unwrap_or_default();
        connections.sort_by_key(|bridge| bridge.since_unix);
        let note = if configured { "" } else { " (not configured)" };
        if connections.is_empty() {
            let _ = writeln!(out, "  {} not connected{note}", address(name));
        }
        for bridge in connections {
            let security = if bridge.tls { "TLS" } else { "no TLS" };
            let _ = writeln!(
                out,
                "  {} from {} since {}, {security}{note}",
                address(name),
                bridge.peer,
                format_unix(bridge.since_unix)
            );
        }
    }
}

/// One fault per (name, peer address, reason) seen in the last hour, newest first. The peer's
/// port is left out: a component retrying comes from a new port each time.
fn auth_failure_faults(faults: &mut Vec<String>, failures: &[ComponentAuthFailure], now: OffsetDateTime) {
    let now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let mut groups: BTreeMap<(&str, String, ComponentAuthFailureReason), (usize, u64)> = BTreeMap::new();
    for failure in failures
        .iter()
        .filter(|failure| now.saturating_sub(failure.at_unix) <= AUTH_FAILURE_WINDOW_SECONDS)
    {
        let host = match failure.peer.parse::<SocketAddr>() {
            Ok(address) => address.ip().to_string(),
            Err(_) => failure.peer.clone(),
        };
        let entry = groups
            .entry((failure.name.as_str(), host, failure.reason))
            .or_insert((0, 0));
        entry.0 += failure.count.max(1) as usize;
        entry.1 = entry.1.max(failure.at_unix);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
    let hidden = groups.len().saturating_sub(MAX_AUTH_FAILURE_LINES);
    for ((name, host, reason), (count, last)) in groups.into_iter().take(MAX_AUTH_FAILURE_LINES) {
        let when = if count == 1 {
            format!("once in the last hour, at {}", format_unix(last))
        } else {
            format!("{count} times in the last hour, last at {}", format_unix(last))
        };
        faults.push(format!("Call Bridge '{name}' from {host} refused: {reason} ({when})"));
    }
    if hidden > 0 {
        faults.push(format!(
            "... and {hidden} more Call Bridge authentication failure sources in the last hour"
        ));
    }
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{label:<18}: {value}");
}

/// The first value on the label's line, the others aligned under it.
fn rows(out: &mut String, label: &str, values: &[String]) {
    match values.split_first() {
        None => row(out, label, "(none)"),
        Some((first, others)) => {
            row(out, label, first);
            for value in others {
                let _ = writeln!(out, "{:<18}  {value}", "");
            }
        }
    }
}

pub(super) fn format_unix(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    match OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(at) => pki::format_time(at),
        Err(_) => seconds.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Validity, selfsigned_with_validity};
    use crate::testing::{admin, admin_with_node, run};
    use crate::{CallBridgeConnection, ListenerStatus, SessionInfo};
    use sb_store::TlsIdentity;
    use time::macros::datetime;

    fn config(dir: &std::path::Path) -> XmppConfig {
        let admin = admin(dir);
        let mut config = admin.store().xmpp_config().unwrap();
        config.domain = "example.com".to_owned();
        config.enabled = true;
        config.listen = vec!["127.0.0.1".to_owned(), "192.0.2.7".to_owned()];
        config.tls = Some(TlsIdentity {
            key: "server.key".to_owned(),
            cert: "server.crt".to_owned(),
            bundle: None,
        });
        config
    }

    fn certificate() -> (tempfile::TempDir, CertSummary) {
        let dir = tempfile::tempdir().unwrap();
        let validity = Validity {
            not_before: datetime!(2025-01-01 0:00 UTC),
            not_after: datetime!(2025-03-01 0:00 UTC),
        };
        let sans = ["example.com".to_owned(), "xmpp.example.com".to_owned()];
        let (_, crt) = selfsigned_with_validity(dir.path(), "server", "example.com", &sans, validity).unwrap();
        let summary = pki::inspect(&crt).unwrap();
        (dir, summary)
    }

    fn live() -> LiveStatus {
        LiveStatus {
            running: true,
            started_at_unix: 1_739_000_000,
            listeners: vec![
                ListenerStatus {
                    address: "127.0.0.1:5222".to_owned(),
                    error: None,
                    waiting: None,
                },
                ListenerStatus {
                    address: "192.0.2.7:5222".to_owned(),
                    error: Some("Cannot assign requested address (os error 99)".to_owned()),
                    waiting: None,
                },
            ],
            sessions: vec![
                SessionInfo {
                    jid: "bob@example.com/laptop".to_owned(),
                    peer: "127.0.0.1:40002".to_owned(),
                    since_unix: 1_739_500_000,
                    tls: true,
                },
                SessionInfo {
                    jid: "alice@example.com/phone".to_owned(),
                    peer: "127.0.0.1:40001".to_owned(),
                    since_unix: 1_739_400_000,
                    tls: true,
                },
            ],
            ..Default::default()
        }
    }

    fn failure(name: &str, peer: &str, at_unix: u64, reason: ComponentAuthFailureReason) -> ComponentAuthFailure {
        ComponentAuthFailure {
            name: name.to_owned(),
            peer: peer.to_owned(),
            at_unix,
            reason,
            count: 1,
        }
    }

    #[test]
    fn status_shows_call_bridges_and_their_authentication_failures() {
        use ComponentAuthFailureReason::{BadHandshake, UnknownName, WrongSecret};
        let dir = tempfile::tempdir().unwrap();
        let (_certs, summary) = certificate();
        let mut live = live();
        live.listeners[1].error = None;
        live.listeners.push(ListenerStatus {
            address: "127.0.0.1:5223".to_owned(),
            error: None,
            waiting: None,
        });
        live.sessions.truncate(1);
        live.callbridges = vec![
            CallBridgeConnection {
                name: "cb2".to_owned(),
                peer: "127.0.0.1:41002".to_owned(),
                since_unix: 1_739_610_000,
                tls: true,
            },
            CallBridgeConnection {
                name: "old".to_owned(),
                peer: "127.0.0.1:41009".to_owned(),
                since_unix: 1_739_600_000,
                tls: false,
            },
        ];
        live.component_auth_failures = vec![
            // More than an hour before `now`: history, not a fault.
            failure("cb1", "127.0.0.9:40000", 1_739_610_000, WrongSecret),
            failure("cb1", "127.0.0.5:40001", 1_739_618_000, WrongSecret),
            failure("cb1", "127.0.0.5:40002", 1_739_620_200, WrongSecret),
            failure("cb9.example.com", "127.0.0.6:40003", 1_739_619_600, UnknownName),
            failure("cb1", "[::1]:40004", 1_739_619_600, BadHandshake),
        ];
        let bridges = ["cb1".to_owned(), "cb2".to_owned()];
        let text = render_status(
            &config(dir.path()),
            &bridges,
            Some(&live),
            Some(Ok(summary)),
            datetime!(2025-02-15 12:00 UTC),
        );
        assert_eq!(
            text,
            "\
Service           : enabled, running since 2025-02-08 07:33:20 UTC
Domain            : example.com
Listeners         : 127.0.0.1:5222 (listening)
                    192.0.2.7:5222 (listening)
                    127.0.0.1:5223 (listening)
Call Bridge port  : 5223, TLS
Certificate       : server.crt
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (in 13 days)
Connected clients : 1
  bob@example.com/laptop from 127.0.0.1:40002 since 2025-02-14 02:26:40 UTC, TLS
Call Bridges      : 2 configured, 2 connected
  cb1.example.com not connected
  cb2.example.com from 127.0.0.1:41002 since 2025-02-15 09:00:00 UTC, TLS
  old.example.com from 127.0.0.1:41009 since 2025-02-15 06:13:20 UTC, no TLS (not configured)
Faults:
  certificate server.crt expires in 13 days, on 2025-03-01 00:00:00 UTC
  Call Bridge 'cb1' from 127.0.0.5 refused: wrong secret (2 times in the last hour, last at 2025-02-15 11:50:00 UTC)
  Call Bridge 'cb1' from ::1 refused: bad handshake (once in the last hour, at 2025-02-15 11:40:00 UTC)
  Call Bridge 'cb9.example.com' from 127.0.0.6 refused: unknown name (once in the last hour, at 2025-02-15 \
             11:40:00 UTC)"
        );
    }

    #[test]
    fn status_of_call_bridges_without_a_daemon_and_a_flood_of_failures() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.tls = None;
        let bridges = ["cb1".to_owned()];
        let text = render_status(&config, &bridges, None, None, datetime!(2025-02-15 12:00 UTC));
        assert!(
            text.contains("\nCall Bridges      : 1 configured (no daemon)\n  cb1.example.com not connected\nFaults:"),
            "{text}"
        );
        let mut live = live();
        live.component_auth_failures = (0..25u16)
            .map(|i| {
                failure(
                    &format!("x{i}"),
                    &format!("127.0.1.{i}:4000"),
                    1_739_620_000 + u64::from(i),
                    ComponentAuthFailureReason::UnknownName,
                )
            })
            .collect();
        let text = render_status(&config, &bridges, Some(&live), None, datetime!(2025-02-15 12:00 UTC));
        let refused: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("refused: unknown name"))
            .collect();
        assert_eq!(refused.len(), 10, "{text}");
        // Newest first.
        assert!(
            refused[0].starts_with("  Call Bridge 'x24' from 127.0.1.24 refused"),
            "{text}"
        );
        assert!(text.ends_with("\n  ... and 15 more Call Bridge authentication failure sources in the last hour"));
        assert!(text.contains("Call Bridges      : 1 configured, 0 connected\n  cb1.example.com not connected\n"));
    }

    #[test]
    fn live_status_from_an_older_daemon_still_reads() {
        let old = r#"{"running":true,"started_at_unix":5,"listeners":[],"sessions":[]}"#;
        let status: LiveStatus = serde_json::from_str(old).unwrap();
        assert_eq!(
            status,
            LiveStatus {
                running: true,
                started_at_unix: 5,
                ..Default::default()
            }
        );
        let reason = serde_json::to_string(&ComponentAuthFailureReason::WrongSecret).unwrap();
        assert_eq!(reason, "\"wrong_secret\"");
    }

    #[test]
    fn status_of_a_running_node_with_faults() {
        let dir = tempfile::tempdir().unwrap();
        let (_certs, summary) = certificate();
        let text = render_status(
            &config(dir.path()),
            &[],
            Some(&live()),
            Some(Ok(summary)),
            datetime!(2025-02-15 12:00 UTC),
        );
        assert_eq!(
            text,
            "\
Service           : enabled, running since 2025-02-08 07:33:20 UTC
Domain            : example.com
Listeners         : 127.0.0.1:5222 (listening)
                    192.0.2.7:5222 (bind failed: Cannot assign requested address (os error 99))
Call Bridge port  : 5223, TLS
Certificate       : server.crt
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (in 13 days)
Connected clients : 2
  alice@example.com/phone from 127.0.0.1:40001 since 2025-02-12 22:40:00 UTC, TLS
  bob@example.com/laptop from 127.0.0.1:40002 since 2025-02-14 02:26:40 UTC, TLS
Call Bridges      : none configured
Faults:
  listener 192.0.2.7:5222: bind failed: Cannot assign requested address (os error 99)
  certificate server.crt expires in 13 days, on 2025-03-01 00:00:00 UTC"
        );
    }

    #[test]
    fn status_of_a_healthy_node() {
        let dir = tempfile::tempdir().unwrap();
        let (_certs, summary) = certificate();
        let mut live = live();
        live.listeners.truncate(1);
        live.sessions.clear();
        let mut config = config(dir.path());
        config.tls.as_mut().unwrap().bundle = Some("ca.pem".to_owned());
        let text = render_status(
            &config,
            &[],
            Some(&live),
            Some(Ok(summary)),
            datetime!(2025-01-02 0:00 UTC),
        );
        assert_eq!(
            text,
            "\
Service           : enabled, running since 2025-02-08 07:33:20 UTC
Domain            : example.com
Listeners         : 127.0.0.1:5222 (listening)
Call Bridge port  : 5223, TLS
Certificate       : server.crt (bundle ca.pem)
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (in 58 days)
Connected clients : 0
Call Bridges      : none configured
Faults: none"
        );
    }

    #[test]
    fn listeners_waiting_for_an_interface_address_are_no_fault() {
        let dir = tempfile::tempdir().unwrap();
        let (_certs, summary) = certificate();
        let mut config = config(dir.path());
        config.listen = vec!["a".to_owned(), "b".to_owned()];
        let waiting = |address: &str, interface: &str| ListenerStatus {
            address: address.to_owned(),
            error: None,
            waiting: Some(format!("no IPv4 address on {interface} yet")),
        };
        let mut live = live();
        live.running = false;
        live.sessions.clear();
        live.listeners = vec![waiting("a", "a"), waiting("a:5223", "a")];
        let render = |live: &LiveStatus| {
            render_status(
                &config,
                &[],
                Some(live),
                Some(Ok(summary.clone())),
                datetime!(2025-01-02 0:00 UTC),
            )
        };
        let text = render(&live);
        assert!(
            text.starts_with(
                "\
Service           : enabled, not running (waiting for an interface address)
Domain            : example.com
Listeners         : a (waiting: no IPv4 address on a yet)
                    a:5223 (waiting: no IPv4 address on a yet)
"
            ),
            "{text}"
        );
        assert!(text.ends_with("Faults: none"), "{text}");

        // One interface got its address: it listens, the other still waits.
        live.running = true;
        live.listeners = vec![
            ListenerStatus {
                address: "10.0.2.15:5222 on a".to_owned(),
                error: None,
                waiting: None,
            },
            waiting("b", "b"),
        ];
        let text = render(&live);
        assert!(
            text.contains(
                "Listeners         : 10.0.2.15:5222 on a (listening)\n                    b (waiting: no IPv4 address on b yet)\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("Faults: none"), "{text}");
    }

    #[test]
    fn status_without_a_daemon_or_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.tls = None;
        config.enabled = false;
        let text = render_status(&config, &[], None, None, datetime!(2025-01-02 0:00 UTC));
        assert_eq!(
            text,
            "\
Service           : disabled, not running (no daemon)
Domain            : example.com
Listeners         : 127.0.0.1 (not listening)
                    192.0.2.7 (not listening)
Call Bridge port  : 5223, TLS
Certificate       : (none)
Connected clients : 0 (no daemon)
Call Bridges      : none configured (no daemon)
Faults:
  no certificate configured (xmpp certs <key> <crt> [<bundle>])"
        );
    }

    #[test]
    fn status_with_an_expired_or_unreadable_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (_certs, summary) = certificate();
        let mut live = live();
        live.running = false;
        live.listeners.clear();
        live.sessions.clear();
        let text = render_status(
            &config(dir.path()),
            &[],
            Some(&live),
            Some(Ok(summary)),
            datetime!(2025-04-01 0:00 UTC),
        );
        assert_eq!(
            text,
            "\
Service           : enabled, not running
Domain            : example.com
Listeners         : 127.0.0.1 (not listening)
                    192.0.2.7 (not listening)
Call Bridge port  : 5223, TLS
Certificate       : server.crt
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (EXPIRED)
Connected clients : 0
Call Bridges      : none configured
Faults:
  service enabled but not running
  certificate server.crt expired on 2025-03-01 00:00:00 UTC"
        );
        let text = render_status(
            &config(dir.path()),
            &[],
            None,
            Some(Err("no such file: server.crt".to_owned())),
            datetime!(2025-04-01 0:00 UTC),
        );
        assert!(text.contains("Certificate       : server.crt\n  Error           : no such file: server.crt\n"));
        assert!(
            text.ends_with("Faults:\n  certificate server.crt: no such file: server.crt"),
            "{text}"
        );
    }

    #[test]
    fn status_command_asks_the_live_node() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        *node.status.lock().unwrap() = live();
        assert_eq!(run(&admin, "xmpp domain example.com").text, "SUCCESS");
        let reply = run(&admin, "xmpp status");
        assert!(reply.ok);
        assert!(reply.text.contains("Connected clients : 2\n"), "{}", reply.text);
        assert!(reply.text.contains("192.0.2.7:5222 (bind failed: "));
        assert!(reply.text.contains("\n  no certificate configured"));
        assert_eq!(run(&admin, "pki selfsigned server").text, "SUCCESS");
        assert_eq!(run(&admin, "xmpp certs server.key server.crt").text, "SUCCESS");
        let reply = run(&admin, "xmpp status");
        assert!(
            reply.text.contains("  Subject         : CN=example.com\n"),
            "{}",
            reply.text
        );
        assert!(!reply.text.contains("no certificate configured"));
        assert!(
            reply.text.contains("\nCall Bridges      : none configured\n"),
            "{}",
            reply.text
        );
        assert!(run(&admin, "xmpp callbridge add cb1").ok);
        let reply = run(&admin, "xmpp status");
        assert!(
            reply
                .text
                .contains("\nCall Bridges      : 1 configured, 0 connected\n  cb1.example.com not connected\n"),
            "{}",
            reply.text
        );
    }
}
