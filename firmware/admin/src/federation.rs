//! `federation ...`: server-to-server federation settings (Expressway-E style) and the live
//! links. Settings are meant to be shared across a cluster (every node needs the same dialback
//! secret); on today's single node they are written through the local [`sb_store::ConfigWriter`].
//!
//! Defaults for a fresh node: disabled; once enabled, privacy mode `allow` with an empty list,
//! so nobody federates until the administrator lists partners (or adds static routes).

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::{Admin, Family, Reply, Secret, SecretPrompt};
use sb_proto::Domain;
use sb_store::{ConfigChange, FederationConfig, PrivacyList, PrivacyMode, SecurityMode, WriteError};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// What the running daemon's federation subsystem offers the admin layer. Plain calls from
/// the admin's blocking thread; the daemon does the work on its runtime.
pub trait FederationLive: Send + Sync {
    fn status(&self) -> FederationLiveStatus;
    /// SRV records of `domain` for the client, component and server services, the addresses
    /// their targets resolve to, and whether each answers a TCP connection.
    fn dns_check(&self, domain: &str) -> DnsCheckReport;
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationLiveStatus {
    /// Federation runs (enabled, secret set, XMPP enabled).
    pub running: bool,
    /// `ip:port` bound, or `ip:port (error)`.
    pub listeners: Vec<String>,
    pub links: Vec<FederationLink>,
    /// What the resolver uses: `system (/etc/resolv.conf)` or the configured nameservers.
    pub resolver: String,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationLink {
    pub peer_domain: String,
    pub local_domains: Vec<String>,
    /// `ip:port` of the peer.
    pub address: String,
    /// `incoming` / `outgoing`.
    pub direction: String,
    /// `connecting`, `authenticating`, `up`.
    pub state: String,
    /// Protocol and cipher, `None` for plain TCP.
    pub tls: Option<String>,
    /// `dialback`, `SASL EXTERNAL`, or empty before authentication.
    pub auth: String,
    pub since_unix: u64,
    pub idle_secs: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsCheckReport {
    pub resolver: String,
    pub services: Vec<DnsServiceCheck>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsServiceCheck {
    /// `_xmpp-server._tcp.example.com`.
    pub name: String,
    /// Why the lookup failed, if it did.
    pub error: Option<String>,
    pub records: Vec<DnsRecordCheck>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsRecordCheck {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
    /// `ip` → `answers` / the connection error.
    pub addresses: Vec<(String, Result<(), String>)>,
    /// Why the target did not resolve.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationCommand {
    /// `federation status` (also `federation`).
    Status,
    Enable,
    Disable,
    /// `federation dialback-secret [<secret>|generate]`; `None` generates one, unless `ask`:
    /// then the front end prompts for it unechoed (a secret in argv ends up in the history).
    DialbackSecret {
        secret: Option<Secret>,
        #[serde(default)]
        ask: bool,
    },
    Security {
        mode: SecurityMode,
    },
    ClientCerts {
        on: bool,
    },
    Privacy {
        mode: PrivacyMode,
    },
    /// `federation allow|deny add|del <domain>`.
    List {
        deny: bool,
        add: bool,
        domain: String,
    },
    /// `federation route add|del <domain> <host[:port]>`.
    Route {
        add: bool,
        domain: String,
        target: String,
    },
    /// `federation trust <bundle>|none`: extra roots for peer certificates.
    Trust {
        bundle: Option<String>,
    },
    /// `federation verify on|off`: verify outgoing peers' certificate chains.
    Verify {
        on: bool,
    },
    /// `federation verify-exempt add|del <domain>`: one domain's outgoing opt-out.
    VerifyExempt {
        add: bool,
        domain: String,
    },
    /// `federation allow-internal on|off`: let DNS lead to internal addresses.
    AllowInternal {
        on: bool,
    },
}

impl Family for FederationCommand {
    const PREFIX: &'static [&'static str] = &["federation"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "federation enable",
            summary: "federate with other XMPP domains (port 5269; privacy allow with an empty list by default)",
        },
        Usage {
            syntax: "federation disable",
            summary: "stop federation and close every server-to-server link",
        },
        Usage {
            syntax: "federation dialback-secret [<secret>|generate]",
            summary: "the Server Dialback secret, the same on every node (asked for, unechoed, when not given)",
        },
        Usage {
            syntax: "federation security tls-required|tls-optional|no-tls",
            summary: "TLS on server-to-server links (dialback is used in every mode)",
        },
        Usage {
            syntax: "federation client-certs on|off",
            summary: "require a peer certificate chain trusted by the system roots or the trust bundle",
        },
        Usage {
            syntax: "federation privacy off|allow|deny",
            summary: "which domains may federate: all, the allow list, all but the deny list",
        },
        Usage {
            syntax: "federation allow add|del <domain>",
            summary: "edit the allow list (exact domains)",
        },
        Usage {
            syntax: "federation deny add|del <domain>",
            summary: "edit the deny list (exact domains)",
        },
        Usage {
            syntax: "federation route add|del <domain> <host[:port]>",
            summary: "static route for a domain (equal priority, no DNS fallback, allowed automatically)",
        },
        Usage {
            syntax: "federation trust <bundle>|none",
            summary: "extra trusted roots for peer certificates (a file in the certificate folder)",
        },
        Usage {
            syntax: "federation verify on|off",
            summary: "verify the certificate chain of servers we connect to (on by default; off is shown as a warning)",
        },
        Usage {
            syntax: "federation verify-exempt add|del <domain>",
            summary: "do not verify one domain's certificate chain on outgoing links (shown as a warning)",
        },
        Usage {
            syntax: "federation allow-internal on|off",
            summary: "let DNS lead server-to-server links to loopback/private/link-local addresses (off by default)",
        },
        Usage {
            syntax: "federation status",
            summary: "settings and every federated link (peer, address, direction, TLS, authentication, since, idle)",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        let Some(sub) = words.first().map(String::as_str) else {
            return Ok(FederationCommand::Status);
        };
        match sub {
            "status" => {
                Args::new("federation status", rest).end()?;
                Ok(FederationCommand::Status)
            }
            "enable" => {
                Args::new("federation enable", rest).end()?;
                Ok(FederationCommand::Enable)
            }
            "disable" => {
                Args::new("federation disable", rest).end()?;
                Ok(FederationCommand::Disable)
            }
            "dialback-secret" => {
                let mut args = Args::new("federation dialback-secret", rest);
                let Some(value) = args.optional() else {
                    return Ok(FederationCommand::DialbackSecret {
                        secret: None,
                        ask: true,
                    });
                };
                args.end()?;
                if value == "generate" {
                    return Ok(FederationCommand::DialbackSecret {
                        secret: None,
                        ask: false,
                    });
                }
                check_secret(value).map_err(|reason| ParseError::Invalid {
                    command: "federation dialback-secret",
                    reason,
                })?;
                Ok(FederationCommand::DialbackSecret {
                    secret: Some(Secret::new(value)),
                    ask: false,
                })
            }
            "security" => {
                let mut args = Args::new("federation security", rest);
                let value = args.required("tls-required|tls-optional|no-tls")?;
                let mode = SecurityMode::from_name(value)
                    .ok_or_else(|| args.invalid(format!("'{value}': expected tls-required, tls-optional or no-tls")))?;
                args.end()?;
                Ok(FederationCommand::Security { mode })
            }
            "client-certs" => {
                let on = parse_on_off(Args::new("federation client-certs", rest))?;
                Ok(FederationCommand::ClientCerts { on })
            }
            "verify" => {
                let on = parse_on_off(Args::new("federation verify", rest))?;
                Ok(FederationCommand::Verify { on })
            }
            "allow-internal" => {
                let on = parse_on_off(Args::new("federation allow-internal", rest))?;
                Ok(FederationCommand::AllowInternal { on })
            }
            "verify-exempt" => {
                let mut args = Args::new("federation verify-exempt", rest);
                let add = parse_add_del(&mut args)?;
                let domain = normalize_domain(args.required("<domain>")?).map_err(|r| args.invalid(r))?;
                args.end()?;
                Ok(FederationCommand::VerifyExempt { add, domain })
            }
            "privacy" => {
                let mut args = Args::new("federation privacy", rest);
                let value = args.required("off|allow|deny")?;
                let mode = PrivacyMode::from_name(value)
                    .ok_or_else(|| args.invalid(format!("'{value}': expected off, allow or deny")))?;
                args.end()?;
                Ok(FederationCommand::Privacy { mode })
            }
            "allow" | "deny" => {
                let command = if sub == "allow" {
                    "federation allow"
                } else {
                    "federation deny"
                };
                let mut args = Args::new(command, rest);
                let add = parse_add_del(&mut args)?;
                let domain = normalize_domain(args.required("<domain>")?).map_err(|r| args.invalid(r))?;
                args.end()?;
                Ok(FederationCommand::List {
                    deny: sub == "deny",
                    add,
                    domain,
                })
            }
            "route" => {
                let mut args = Args::new("federation route", rest);
                let add = parse_add_del(&mut args)?;
                let domain = normalize_domain(args.required("<domain>")?).map_err(|r| args.invalid(r))?;
                let target = args.required("<host[:port]>")?;
                check_route_target(target).map_err(|r| args.invalid(r))?;
                args.end()?;
                Ok(FederationCommand::Route {
                    add,
                    domain,
                    target: target.to_ascii_lowercase(),
                })
            }
            "trust" => {
                let mut args = Args::new("federation trust", rest);
                let value = args.required("<bundle>|none")?;
                args.end()?;
                Ok(FederationCommand::Trust {
                    bundle: (value != "none").then(|| value.to_owned()),
                })
            }
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            FederationCommand::Status => status(admin),
            FederationCommand::Enable => {
                // A node enabled alone needs a secret; a cluster replaces it with the shared
                // one (`federation dialback-secret`). Generated here, before the change is
                // built, and stored only if none is set yet.
                let change = ConfigChange::EnableFederation {
                    dialback_secret_if_unset: generate_secret().ok(),
                };
                let result = admin.write(change);
                if let Ok(sb_store::Written {
                    applied: sb_store::Applied::FederationEnabled { secret_stored: true },
                    ..
                }) = &result
                {
                    log::info!("federation: generated a dialback secret on enable");
                }
                changed(result)
            }
            FederationCommand::Disable => changed(admin.write(ConfigChange::DisableFederation)),
            FederationCommand::DialbackSecret { secret, ask } => {
                let (secret, generated) = match secret {
                    Some(secret) => (secret, false),
                    None if ask => return Reply::failure("federation dialback-secret: no secret given"),
                    None => match generate_secret() {
                        Ok(secret) => (secret, true),
                        Err(reason) => return Reply::failure(format!("federation dialback-secret: {reason}")),
                    },
                };
                if let Err(reason) = check_secret(secret.expose()) {
                    return Reply::failure(format!("federation dialback-secret: {reason}"));
                }
                let shown = secret.expose().to_owned();
                let reply = changed(admin.write(ConfigChange::SetDialbackSecret(secret)));
                if reply.ok && generated {
                    // Printed for the operator to set on the other nodes; never logged.
                    return Reply::output(format!("Dialback secret: {shown}\nSUCCESS"));
                }
                reply
            }
            FederationCommand::Security { mode } => changed(admin.write(ConfigChange::SetFederationSecurity(mode))),
            FederationCommand::ClientCerts { on } => changed(admin.write(ConfigChange::SetFederationClientCerts(on))),
            FederationCommand::Verify { on } => changed(admin.write(ConfigChange::SetFederationVerify(on))),
            FederationCommand::VerifyExempt { add, domain } => {
                changed(admin.write(ConfigChange::EditUnverifiedDomain { domain, add }))
            }
            FederationCommand::AllowInternal { on } => {
                changed(admin.write(ConfigChange::SetFederationAllowInternal(on)))
            }
            FederationCommand::Privacy { mode } => changed(admin.write(ConfigChange::SetFederationPrivacy(mode))),
            FederationCommand::List { deny, add, domain } => edit_list(admin, deny, add, &domain),
            FederationCommand::Route { add, domain, target } => edit_route(admin, add, &domain, &target),
            FederationCommand::Trust { bundle } => {
                if let Some(name) = &bundle {
                    match crate::pki::cert_file(&admin.certs_dir(), name).and_then(|p| crate::pki::inspect_all(&p)) {
                        Ok(certs) if !certs.is_empty() => {}
                        Ok(_) => return Reply::failure(format!("federation trust: {name} holds no certificate")),
                        Err(e) => return Reply::failure(format!("federation trust: {e}")),
                    }
                }
                changed(admin.write(ConfigChange::SetFederationTrust(bundle)))
            }
        }
    }

    fn secret_prompt(&self) -> Option<SecretPrompt> {
        match self {
            FederationCommand::DialbackSecret {
                secret: None,
                ask: true,
            } => Some(DIALBACK_SECRET_PROMPT),
            _ => None,
        }
    }

    fn with_secret(self, secret: Secret) -> Self {
        match self {
            FederationCommand::DialbackSecret { .. } => FederationCommand::DialbackSecret {
                secret: Some(secret),
                ask: false,
            },
            other => other,
        }
    }
}

const DIALBACK_SECRET_PROMPT: SecretPrompt = SecretPrompt {
    prompt: "Enter dialback secret",
    confirm: Some("Confirm dialback secret"),
};

fn parse_add_del(args: &mut Args<'_>) -> Result<bool, ParseError> {
    match args.required("add|del")? {
        "add" => Ok(true),
        "del" => Ok(false),
        other => Err(args.invalid(format!("'{other}': expected add or del"))),
    }
}

fn check_secret(secret: &str) -> Result<(), String> {
    if secret.len() < 16 {
        return Err("the secret must be at least 16 characters".to_owned());
    }
    if secret.len() > 1024 {
        return Err("the secret must be at most 1024 characters".to_owned());
    }
    if secret.chars().any(char::is_whitespace) {
        return Err("the secret must not contain white space".to_owned());
    }
    Ok(())
}

/// 32 random bytes as 64 hex characters.
fn generate_secret() -> Result<Secret, String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no system randomness available".to_owned())?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// The normalized domain, or why it is not one.
pub(crate) fn normalize_domain(domain: &str) -> Result<String, String> {
    let trimmed = domain.trim().trim_end_matches('.');
    match Domain::parse(trimmed) {
        Ok(parsed) => Ok(parsed.into_string()),
        Err(_) => Err(format!("'{domain}' is not a domain")),
    }
}

/// `host`, `host:port`, `ip`, `ip:port`, `[v6]:port`.
fn check_route_target(target: &str) -> Result<(), String> {
    if target.parse::<std::net::SocketAddr>().is_ok() || target.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (target, None),
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("'{port}' is not a port")),
        }
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("'{target}' is not host[:port]"))
    }
}

/// The reply to a federation change; the daemon reacts to it from the store's change feed.
fn changed(result: Result<sb_store::Written, WriteError>) -> Reply {
    match result {
        Ok(_) => Reply::success(),
        // The store's own refusal (already on a list, no such route) is the whole message.
        Err(WriteError::Store(e @ sb_store::StoreError::Rejected(_))) => Reply::failure(e),
        Err(e) => crate::write_failure("federation", e),
    }
}

/// `on` or `off`, and nothing after it.
fn parse_on_off(mut args: Args<'_>) -> Result<bool, ParseError> {
    let on = match args.required("on|off")? {
        "on" => true,
        "off" => false,
        other => return Err(args.invalid(format!("'{other}': expected on or off"))),
    };
    args.end()?;
    Ok(on)
}

fn edit_list(admin: &Admin, deny: bool, add: bool, domain: &str) -> Reply {
    let list = if deny { PrivacyList::Deny } else { PrivacyList::Allow };
    changed(admin.write(ConfigChange::EditPrivacyList {
        list,
        domain: domain.to_owned(),
        add,
    }))
}

fn edit_route(admin: &Admin, add: bool, domain: &str, target: &str) -> Reply {
    changed(admin.write(ConfigChange::EditRoute {
        domain: domain.to_owned(),
        target: target.to_owned(),
        add,
    }))
}

fn status(admin: &Admin) -> Reply {
    let config = match admin.store().federation_config() {
        Ok(config) => config,
        Err(e) => return Reply::failure(format!("cannot read the federation settings: {e}")),
    };
    let live = admin.live().and_then(|live| live.federation()).map(|f| f.status());
    Reply::output(render_status(&config, live.as_ref(), unix_now()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn row(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "{name:<18}: {value}");
}

fn join_or_none(list: &[String]) -> String {
    if list.is_empty() {
        "(none)".to_owned()
    } else {
        list.join(", ")
    }
}

fn format_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Settings that weaken federation security: shown by `federation status` (and counted in
/// `xmpp status`) so an opt-out does not go unnoticed.
pub fn security_warnings(config: &FederationConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if !config.verify_outgoing {
        warnings.push(
            "outgoing certificates are NOT verified (federation verify off): a man in the middle can pose as any peer"
                .to_owned(),
        );
    }
    if !config.unverified.is_empty() {
        warnings.push(format!(
            "outgoing certificates of {} are NOT verified (federation verify-exempt)",
            config.unverified.join(", ")
        ));
    }
    if config.allow_internal {
        warnings.push(
            "DNS may lead server-to-server links to internal addresses (federation allow-internal on)".to_owned(),
        );
    }
    warnings
}

/// The `federation status` text.
pub fn render_status(config: &FederationConfig, live: Option<&FederationLiveStatus>, now_unix: u64) -> String {
    let mut out = String::new();
    let state = match (config.enabled, live) {
        (false, _) => "disabled".to_owned(),
        (true, None) => "enabled, not running (no daemon)".to_owned(),
        (true, Some(live)) if live.running => "enabled, running".to_owned(),
        (true, Some(_)) => "enabled, NOT running".to_owned(),
    };
    row(&mut out, "Federation", &state);
    row(
        &mut out,
        "Dialback secret",
        if config.dialback_secret.is_some() {
            "set"
        } else {
            "NOT SET"
        },
    );
    row(&mut out, "Security", config.security.as_str());
    row(&mut out, "Client certs", if config.client_certs { "on" } else { "off" });
    row(&mut out, "Privacy", config.privacy.as_str());
    row(&mut out, "Allow list", &join_or_none(&config.allow));
    row(&mut out, "Deny list", &join_or_none(&config.deny));
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|(domain, targets)| format!("{domain} -> {}", targets.join(" ")))
        .collect();
    row(&mut out, "Static routes", &join_or_none(&routes));
    row(
        &mut out,
        "Trust bundle",
        config.trust_bundle.as_deref().unwrap_or("(none; system roots only)"),
    );
    row(
        &mut out,
        "Verify outgoing",
        if config.verify_outgoing {
            "on (system roots and the trust bundle)"
        } else {
            "OFF"
        },
    );
    row(&mut out, "Verify exempt", &join_or_none(&config.unverified));
    row(
        &mut out,
        "Internal targets",
        if config.allow_internal { "ALLOWED" } else { "refused" },
    );
    for warning in security_warnings(config) {
        row(&mut out, "Warning", &warning);
    }
    if let Some(live) = live {
        row(&mut out, "Listeners", &join_or_none(&live.listeners));
        row(&mut out, "Resolver", &live.resolver);
        for problem in &live.problems {
            row(&mut out, "Fault", problem);
        }
        let _ = writeln!(out, "Links             : {}", live.links.len());
        for link in &live.links {
            let since = now_unix.saturating_sub(link.since_unix);
            let _ = writeln!(
                out,
                "  {} {} {} [{}] tls: {} auth: {} since: {} ago idle: {}{}",
                link.direction,
                link.peer_domain,
                link.address,
                link.state,
                link.tls.as_deref().unwrap_or("no"),
                if link.auth.is_empty() { "-" } else { &link.auth },
                format_duration(since),
                format_duration(link.idle_secs),
                if link.local_domains.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", link.local_domains.join(", "))
                },
            );
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, run};
    use crate::{Command, parse};

    /// Issue 13: every security opt-out shows in `federation status` as a warning.
    #[test]
    fn security_opt_outs_are_warnings_in_status() {
        let safe = FederationConfig::default();
        assert!(security_warnings(&safe).is_empty());
        let text = render_status(&safe, None, 0);
        assert!(
            text.contains("Verify outgoing   : on") && !text.contains("Warning"),
            "{text}"
        );
        let weakened = FederationConfig {
            verify_outgoing: false,
            unverified: vec!["b.example".into()],
            allow_internal: true,
            ..FederationConfig::default()
        };
        assert_eq!(security_warnings(&weakened).len(), 3);
        let text = render_status(&weakened, None, 0);
        assert!(text.contains("Verify outgoing   : OFF"), "{text}");
        assert!(text.contains("b.example are NOT verified"), "{text}");
        assert!(text.contains("Internal targets  : ALLOWED"), "{text}");
        assert_eq!(text.matches("Warning").count(), 3, "{text}");
    }

    #[test]
    fn parses_every_federation_command() {
        let p = |line: &str| match parse(line) {
            Ok(Command::Federation(c)) => c,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(p("federation"), FederationCommand::Status);
        assert_eq!(p("federation status"), FederationCommand::Status);
        assert_eq!(p("federation enable"), FederationCommand::Enable);
        assert_eq!(
            p("federation dialback-secret generate"),
            FederationCommand::DialbackSecret {
                secret: None,
                ask: false
            }
        );
        assert_eq!(
            p("federation security no-tls"),
            FederationCommand::Security {
                mode: SecurityMode::NoTls
            }
        );
        assert_eq!(
            p("federation client-certs on"),
            FederationCommand::ClientCerts { on: true }
        );
        assert_eq!(
            p("federation privacy deny"),
            FederationCommand::Privacy {
                mode: PrivacyMode::Deny
            }
        );
        assert_eq!(
            p("federation allow add B.Example"),
            FederationCommand::List {
                deny: false,
                add: true,
                domain: "b.example".into()
            }
        );
        assert_eq!(
            p("federation route add b.example 127.0.0.2:5269"),
            FederationCommand::Route {
                add: true,
                domain: "b.example".into(),
                target: "127.0.0.2:5269".into()
            }
        );
        assert_eq!(p("federation verify off"), FederationCommand::Verify { on: false });
        assert_eq!(
            p("federation verify-exempt add B.Example"),
            FederationCommand::VerifyExempt {
                add: true,
                domain: "b.example".into()
            }
        );
        assert_eq!(
            p("federation allow-internal on"),
            FederationCommand::AllowInternal { on: true }
        );
        assert!(parse("federation allow-internal maybe").is_err());
        let secret = p("federation dialback-secret s3cr3tf0rd14lb4ck");
        assert!(!format!("{secret:?}").contains("s3cr3t"), "secrets never print");
    }

    /// Issue 13: without an argument the secret is asked for (unechoed by the front end), not
    /// taken from argv; the length rule applies to the typed secret too.
    #[test]
    fn dialback_secret_without_an_argument_is_prompted_for() {
        let command = parse("federation dialback-secret").unwrap();
        assert_eq!(command.secret_prompt(), Some("Enter dialback secret"));
        assert_eq!(command.secret_confirm_prompt(), Some("Confirm dialback secret"));
        let filled = command.with_secret(Secret::new("s3cr3tf0rd14lb4ck-typed"));
        assert_eq!(filled.secret_prompt(), None);
        assert_eq!(
            parse("federation dialback-secret s3cr3tf0rd14lb4ck")
                .unwrap()
                .secret_prompt(),
            None
        );
        assert_eq!(
            parse("federation dialback-secret generate").unwrap().secret_prompt(),
            None
        );

        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        let typed = parse("federation dialback-secret")
            .unwrap()
            .with_secret(Secret::new("s3cr3tf0rd14lb4ck-typed"));
        assert!(admin.execute(typed).ok);
        assert_eq!(
            admin
                .store()
                .federation_config()
                .unwrap()
                .dialback_secret
                .map(|s| s.expose().to_owned())
                .as_deref(),
            Some("s3cr3tf0rd14lb4ck-typed")
        );
        let short = parse("federation dialback-secret")
            .unwrap()
            .with_secret(Secret::new("short"));
        assert_eq!(
            admin.execute(short).text,
            "FAILURE: federation dialback-secret: the secret must be at least 16 characters"
        );
        // Never prompted (a front end that ignored the request): refused, nothing generated.
        let unfilled = parse("federation dialback-secret").unwrap();
        assert!(!admin.execute(unfilled).ok);
    }

    #[test]
    fn federation_parse_errors_name_the_problem() {
        let failure = |line: &str| Reply::from(parse(line).expect_err(line)).text;
        assert_eq!(
            failure("federation security tls"),
            "FAILURE: federation security: 'tls': expected tls-required, tls-optional or no-tls"
        );
        assert_eq!(
            failure("federation allow add"),
            "FAILURE: federation allow: missing <domain>"
        );
        assert_eq!(
            failure("federation allow put b.example"),
            "FAILURE: federation allow: 'put': expected add or del"
        );
        assert_eq!(
            failure("federation dialback-secret short"),
            "FAILURE: federation dialback-secret: the secret must be at least 16 characters"
        );
        assert!(failure("federation route add b.example bad:port").contains("is not a port"));
        assert!(failure("federation allow add a@b").contains("is not a domain"));
        assert_eq!(failure("federation frob"), "FAILURE: unknown command 'federation frob'");
    }

    #[test]
    fn settings_are_stored_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        let text = run(&admin, "federation status").text;
        assert!(text.contains("Federation        : disabled"), "{text}");
        assert!(text.contains("Privacy           : allow"), "{text}");
        assert!(text.contains("Allow list        : (none)"), "{text}");
        assert_eq!(run(&admin, "federation enable").text, "SUCCESS");
        let config = admin.store().federation_config().unwrap();
        assert!(
            config.enabled && config.dialback_secret.is_some(),
            "enable generates a secret"
        );
        let reply = run(&admin, "federation dialback-secret generate");
        assert!(reply.ok && reply.text.starts_with("Dialback secret: ") && reply.text.ends_with("SUCCESS"));
        assert_eq!(run(&admin, "federation allow add b.example").text, "SUCCESS");
        assert_eq!(
            run(&admin, "federation allow add b.example").text,
            "FAILURE: b.example is already on the allow list"
        );
        assert_eq!(run(&admin, "federation deny add evil.example").text, "SUCCESS");
        assert_eq!(
            run(&admin, "federation route add c.example 127.0.0.3:5269").text,
            "SUCCESS"
        );
        assert_eq!(run(&admin, "federation route add c.example 127.0.0.4").text, "SUCCESS");
        assert_eq!(
            run(&admin, "federation route del c.example 127.0.0.3:5269").text,
            "SUCCESS"
        );
        assert_eq!(
            run(&admin, "federation route del c.example 127.0.0.9").text,
            "FAILURE: c.example has no route to 127.0.0.9"
        );
        assert_eq!(run(&admin, "federation security tls-optional").text, "SUCCESS");
        assert_eq!(run(&admin, "federation client-certs on").text, "SUCCESS");
        assert_eq!(run(&admin, "federation privacy deny").text, "SUCCESS");
        let text = run(&admin, "federation status").text;
        assert!(text.contains("enabled, not running (no daemon)"), "{text}");
        assert!(text.contains("Allow list        : b.example"), "{text}");
        assert!(text.contains("Deny list         : evil.example"), "{text}");
        assert!(text.contains("c.example -> 127.0.0.4"), "{text}");
        assert!(text.contains("Security          : tls-optional"), "{text}");
        assert!(text.contains("Client certs      : on"), "{text}");
        assert!(
            !text.contains(
                admin
                    .store()
                    .federation_config()
                    .unwrap()
                    .dialback_secret
                    .unwrap()
                    .expose()
            )
        );
        assert_eq!(run(&admin, "federation allow del b.example").text, "SUCCESS");
        assert_eq!(run(&admin, "federation disable").text, "SUCCESS");
        assert!(!admin.store().federation_config().unwrap().enabled);
        assert!(
            !run(&admin, "federation trust missing.pem").ok,
            "a bundle that does not exist is refused"
        );
    }

    #[test]
    fn status_lists_live_links() {
        let live = FederationLiveStatus {
            running: true,
            listeners: vec!["127.0.0.1:5269".into()],
            links: vec![FederationLink {
                peer_domain: "b.example".into(),
                local_domains: vec!["a.example".into()],
                address: "127.0.0.2:5269".into(),
                direction: "outgoing".into(),
                state: "up".into(),
                tls: Some("TLSv1_3".into()),
                auth: "dialback".into(),
                since_unix: 1000,
                idle_secs: 75,
            }],
            resolver: "127.0.0.53:5353".into(),
            problems: vec![],
        };
        let text = render_status(
            &FederationConfig {
                enabled: true,
                ..FederationConfig::default()
            },
            Some(&live),
            1000 + 3700,
        );
        assert!(
            text.contains("outgoing b.example 127.0.0.2:5269 [up] tls: TLSv1_3 auth: dialback since: 1h01m ago idle: 1m15s (a.example)"),
            "{text}"
        );
        assert!(text.contains("Dialback secret   : NOT SET"));
    }
}
