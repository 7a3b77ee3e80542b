//! `xmpp status`: what runs, what is configured, and what is wrong.

use crate::pki::{self, CertSummary};
use crate::{Admin, LiveStatus, Reply};
use sb_store::XmppConfig;
use std::fmt::Write;
use time::OffsetDateTime;

/// A certificate this close to expiry is a fault.
const EXPIRY_WARNING_DAYS: i64 = 30;

pub(super) fn apply(admin: &Admin) -> Reply {
    let config = match admin.store().xmpp_config() {
        Ok(config) => config,
        Err(err) => return Reply::failure(format!("cannot read the configuration: {err}")),
    };
    let live = admin.live().map(|live| live.status());
    let certificate = config.tls.as_ref().map(|tls| {
        pki::cert_file(&admin.certs_dir(), &tls.cert)
            .and_then(|path| pki::inspect(&path))
            .map_err(|err| err.to_string())
    });
    Reply::output(render_status(
        &config,
        live.as_ref(),
        certificate,
        OffsetDateTime::now_utc(),
    ))
}

/// The `xmpp status` text. `live` is `None` when no daemon runs; `certificate` is `None` when no
/// TLS identity is configured, else what reading the configured certificate gave.
pub fn render_status(
    config: &XmppConfig,
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
            .map(|listener| match &listener.error {
                None => format!("{} (listening)", listener.address),
                Some(error) => {
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

fn format_unix(seconds: u64) -> String {
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
    use crate::{ListenerStatus, SessionInfo};
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
                },
                ListenerStatus {
                    address: "192.0.2.7:5222".to_owned(),
                    error: Some("Cannot assign requested address (os error 99)".to_owned()),
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
        }
    }

    #[test]
    fn status_of_a_running_node_with_faults() {
        let dir = tempfile::tempdir().unwrap();
        let (_certs, summary) = certificate();
        let text = render_status(
            &config(dir.path()),
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
Certificate       : server.crt
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (in 13 days)
Connected clients : 2
  alice@example.com/phone from 127.0.0.1:40001 since 2025-02-12 22:40:00 UTC, TLS
  bob@example.com/laptop from 127.0.0.1:40002 since 2025-02-14 02:26:40 UTC, TLS
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
        let text = render_status(&config, Some(&live), Some(Ok(summary)), datetime!(2025-01-02 0:00 UTC));
        assert_eq!(
            text,
            "\
Service           : enabled, running since 2025-02-08 07:33:20 UTC
Domain            : example.com
Listeners         : 127.0.0.1:5222 (listening)
Certificate       : server.crt (bundle ca.pem)
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (in 58 days)
Connected clients : 0
Faults: none"
        );
    }

    #[test]
    fn status_without_a_daemon_or_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.tls = None;
        config.enabled = false;
        let text = render_status(&config, None, None, datetime!(2025-01-02 0:00 UTC));
        assert_eq!(
            text,
            "\
Service           : disabled, not running (no daemon)
Domain            : example.com
Listeners         : 127.0.0.1 (not listening)
                    192.0.2.7 (not listening)
Certificate       : (none)
Connected clients : 0 (no daemon)
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
Certificate       : server.crt
  Subject         : CN=example.com
  Issuer          : CN=example.com
  SANs            : example.com, xmpp.example.com
  Expires         : 2025-03-01 00:00:00 UTC (EXPIRED)
Connected clients : 0
Faults:
  service enabled but not running
  certificate server.crt expired on 2025-03-01 00:00:00 UTC"
        );
        let text = render_status(
            &config(dir.path()),
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
    }
}
