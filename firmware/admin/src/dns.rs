//! `dns ...`: the resolver federation uses (the system's configuration, or nameservers set
//! here), and a check of a domain's XMPP SRV records.

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::federation::{DnsCheckReport, normalize_domain};
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsCommand {
    /// `dns`: the nameservers in use.
    Show,
    /// `dns nameserver add|del <ip[:port]>`, normalized to `ip:port`.
    Nameserver { add: bool, address: String },
    /// `dns check <domain>`.
    Check { domain: String },
}

impl Family for DnsCommand {
    const PREFIX: &'static [&'static str] = &["dns"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "dns",
            summary: "the nameservers federation uses (the system's when none is set)",
        },
        Usage {
            syntax: "dns nameserver add|del <ip[:port]>",
            summary: "use this nameserver instead of the system's configuration",
        },
        Usage {
            syntax: "dns check <domain>",
            summary: "SRV records for client, component and server services, their addresses, and whether each answers",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        match words.first().map(String::as_str) {
            None => Ok(DnsCommand::Show),
            Some("nameserver") => {
                let mut args = Args::new("dns nameserver", rest);
                let add = match args.required("add|del")? {
                    "add" => true,
                    "del" => false,
                    other => return Err(args.invalid(format!("'{other}': expected add or del"))),
                };
                let text = args.required("<ip[:port]>")?;
                let address = parse_nameserver(text).map_err(|r| args.invalid(r))?;
                args.end()?;
                Ok(DnsCommand::Nameserver {
                    add,
                    address: address.to_string(),
                })
            }
            Some("check") => {
                let mut args = Args::new("dns check", rest);
                let domain = normalize_domain(args.required("<domain>")?).map_err(|r| args.invalid(r))?;
                args.end()?;
                Ok(DnsCommand::Check { domain })
            }
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            DnsCommand::Show => match admin.store().dns_config() {
                Ok(config) if config.nameservers.is_empty() => Reply::output("Nameservers: system (/etc/resolv.conf)"),
                Ok(config) => Reply::output(format!("Nameservers: {}", config.nameservers.join(", "))),
                Err(e) => crate::write_failure("dns", e),
            },
            DnsCommand::Nameserver { add, address } => {
                // Read, edit, write the whole record: DNS settings are one shared record.
                let mut config = match admin.store().dns_config() {
                    Ok(config) => config,
                    Err(e) => return Reply::failure(format!("dns: {e}")),
                };
                let present = config.nameservers.contains(&address);
                match (add, present) {
                    (true, true) => return Reply::failure(format!("{address} is already a nameserver")),
                    (false, false) => return Reply::failure(format!("{address} is not a nameserver")),
                    (true, false) => config.nameservers.push(address.clone()),
                    (false, true) => config.nameservers.retain(|n| *n != address),
                }
                match admin.write(sb_store::ConfigChange::SetDns(config)) {
                    Ok(_) => Reply::success(),
                    Err(e) => crate::write_failure("dns", e),
                }
            }
            DnsCommand::Check { domain } => match admin.live().and_then(|live| live.federation()) {
                Some(federation) => Reply::output(render_check(&domain, &federation.dns_check(&domain))),
                None => Reply::failure("dns check: needs the running daemon (xmppd), whose resolver it uses"),
            },
        }
    }
}

/// `ip` (port 53) or `ip:port`, `[v6]:port`.
fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("'{text}' is not an IP address (optionally with :port)"))
}

/// The `dns check` text.
pub fn render_check(domain: &str, report: &DnsCheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Resolver: {}", report.resolver);
    for service in &report.services {
        let _ = writeln!(out, "{}:", service.name);
        if let Some(error) = &service.error {
            let _ = writeln!(out, "  lookup failed: {error}");
            continue;
        }
        if service.records.is_empty() {
            let _ = writeln!(out, "  no SRV records");
        }
        for record in &service.records {
            let _ = writeln!(
                out,
                "  priority {} weight {} port {} target {}",
                record.priority, record.weight, record.port, record.target
            );
            if let Some(error) = &record.error {
                let _ = writeln!(out, "    {error}");
            }
            for (address, answer) in &record.addresses {
                match answer {
                    Ok(()) => {
                        let _ = writeln!(out, "    {address}:{} answers", record.port);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "    {address}:{} does not answer: {e}", record.port);
                    }
                }
            }
        }
    }
    if report.services.iter().all(|s| s.records.is_empty()) {
        let _ = writeln!(
            out,
            "(no SRV records for {domain}: servers fall back to its A/AAAA records)"
        );
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::{DnsRecordCheck, DnsServiceCheck};
    use crate::testing::{admin, run};
    use crate::{Command, parse};

    #[test]
    fn parses_dns_commands() {
        assert_eq!(parse("dns"), Ok(Command::Dns(DnsCommand::Show)));
        assert_eq!(
            parse("dns nameserver add 127.0.0.53"),
            Ok(Command::Dns(DnsCommand::Nameserver {
                add: true,
                address: "127.0.0.53:53".into()
            }))
        );
        assert_eq!(
            parse("dns check B.example"),
            Ok(Command::Dns(DnsCommand::Check {
                domain: "b.example".into()
            }))
        );
        let failure = |line: &str| Reply::from(parse(line).expect_err(line)).text;
        assert!(failure("dns nameserver add ns.example").contains("is not an IP address"));
        assert_eq!(failure("dns check"), "FAILURE: dns check: missing <domain>");
    }

    #[test]
    fn nameservers_are_stored_and_check_needs_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        assert_eq!(run(&admin, "dns").text, "Nameservers: system (/etc/resolv.conf)");
        assert_eq!(run(&admin, "dns nameserver add 127.0.0.53:5353").text, "SUCCESS");
        assert_eq!(
            run(&admin, "dns nameserver add 127.0.0.53:5353").text,
            "FAILURE: 127.0.0.53:5353 is already a nameserver"
        );
        assert_eq!(run(&admin, "dns").text, "Nameservers: 127.0.0.53:5353");
        assert_eq!(run(&admin, "dns nameserver del 127.0.0.53:5353").text, "SUCCESS");
        assert!(!run(&admin, "dns check b.example").ok);
    }

    #[test]
    fn check_report_text() {
        let report = DnsCheckReport {
            resolver: "127.0.0.53:53".into(),
            services: vec![
                DnsServiceCheck {
                    name: "_xmpp-server._tcp.b.example".into(),
                    error: None,
                    records: vec![DnsRecordCheck {
                        priority: 0,
                        weight: 5,
                        port: 5269,
                        target: "xmpp.b.example".into(),
                        addresses: vec![
                            ("127.0.0.11".into(), Ok(())),
                            ("127.0.0.12".into(), Err("refused".into())),
                        ],
                        error: None,
                    }],
                },
                DnsServiceCheck {
                    name: "_xmpp-client._tcp.b.example".into(),
                    error: None,
                    records: vec![],
                },
            ],
        };
        let text = render_check("b.example", &report);
        assert!(
            text.contains("priority 0 weight 5 port 5269 target xmpp.b.example"),
            "{text}"
        );
        assert!(text.contains("127.0.0.11:5269 answers"));
        assert!(text.contains("127.0.0.12:5269 does not answer: refused"));
        assert!(text.contains("_xmpp-client._tcp.b.example:\n  no SRV records"));
    }
}
