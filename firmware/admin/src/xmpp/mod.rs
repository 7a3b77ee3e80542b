//! `xmpp ...`: the XMPP service of this node (domain, listeners, TLS identity, on/off, status).

pub mod callbridge;
mod status;

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::pki::{self, PkiError};
use crate::{Admin, Family, Reply};
use sb_proto::Jid;
use sb_store::{TlsIdentity, XmppConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use callbridge::CallbridgeCommand;
pub use status::render_status;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XmppCommand {
    /// `xmpp`: the configuration.
    Show,
    /// `xmpp domain <domain>`
    Domain { domain: String },
    /// `xmpp listen <address>...`, normalized ([`ListenAddress`]).
    Listen { addresses: Vec<String> },
    /// `xmpp certs <key> <crt> [<bundle>]`: file names in the certificate folder.
    Certs {
        key: String,
        cert: String,
        bundle: Option<String>,
    },
    /// `xmpp enable`
    Enable,
    /// `xmpp disable`
    Disable,
    /// `xmpp status`
    Status,
}

impl Family for XmppCommand {
    const PREFIX: &'static [&'static str] = &["xmpp"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "xmpp",
            summary: "show the XMPP configuration",
        },
        Usage {
            syntax: "xmpp domain <domain>",
            summary: "set the XMPP domain served",
        },
        Usage {
            syntax: "xmpp listen <address>...",
            summary: "listen on these IPv4/IPv6 addresses, each with an optional :port ([v6]:port)",
        },
        Usage {
            syntax: "xmpp certs <key> <crt> [<bundle>]",
            summary: "set the TLS identity (bundle: intermediates then root, root last)",
        },
        Usage {
            syntax: "xmpp enable",
            summary: "start the XMPP service on this node",
        },
        Usage {
            syntax: "xmpp disable",
            summary: "stop the XMPP service on this node",
        },
        Usage {
            syntax: "xmpp status",
            summary: "service state, listeners, certificate, connected clients and Call Bridges, faults",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        let no_arguments = |command: &'static str, result: XmppCommand| Args::new(command, rest).end().map(|()| result);
        match words.first().map(String::as_str) {
            None => Ok(XmppCommand::Show),
            Some("domain") => {
                let mut args = Args::new("xmpp domain", rest);
                let domain = args.required("<domain>")?;
                let domain = normalize_domain(domain).map_err(|reason| args.invalid(reason))?;
                args.end()?;
                Ok(XmppCommand::Domain { domain })
            }
            Some("listen") => {
                let mut args = Args::new("xmpp listen", rest);
                let first = args.required("<address>")?;
                let mut words = vec![first];
                words.extend(args.rest());
                let addresses = normalize_listen(&words).map_err(|reason| args.invalid(reason))?;
                Ok(XmppCommand::Listen { addresses })
            }
            Some("certs") => {
                let mut args = Args::new("xmpp certs", rest);
                let key = args.required("<key>")?.to_owned();
                let cert = args.required("<crt>")?.to_owned();
                let bundle = args.optional().map(str::to_owned);
                for name in [Some(&key), Some(&cert), bundle.as_ref()].into_iter().flatten() {
                    pki::cert_file(std::path::Path::new(""), name).map_err(|e| args.invalid(e))?;
                }
                args.end()?;
                Ok(XmppCommand::Certs { key, cert, bundle })
            }
            Some("enable") => no_arguments("xmpp enable", XmppCommand::Enable),
            Some("disable") => no_arguments("xmpp disable", XmppCommand::Disable),
            Some("status") => no_arguments("xmpp status", XmppCommand::Status),
            Some(_) => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            XmppCommand::Show => match admin.store().xmpp_config() {
                Ok(config) => Reply::output(render_config(&config)),
                Err(err) => Reply::failure(format!("cannot read the configuration: {err}")),
            },
            XmppCommand::Domain { domain } => match normalize_domain(&domain) {
                Ok(domain) => update(admin, "xmpp domain", move |config| config.domain = domain),
                Err(reason) => Reply::failure(format!("xmpp domain: {reason}")),
            },
            XmppCommand::Listen { addresses } => {
                let words: Vec<&str> = addresses.iter().map(String::as_str).collect();
                match normalize_listen(&words) {
                    Ok(addresses) => update(admin, "xmpp listen", move |config| config.listen = addresses),
                    Err(reason) => Reply::failure(format!("xmpp listen: {reason}")),
                }
            }
            XmppCommand::Certs { key, cert, bundle } => match check_identity(admin, &key, &cert, bundle.as_deref()) {
                Ok(()) => update(admin, "xmpp certs", move |config| {
                    config.tls = Some(TlsIdentity { key, cert, bundle });
                }),
                Err(err) => Reply::failure(err),
            },
            XmppCommand::Enable => update(admin, "xmpp enable", |config| config.enabled = true),
            XmppCommand::Disable => update(admin, "xmpp disable", |config| config.enabled = false),
            XmppCommand::Status => status::apply(admin),
        }
    }
}

/// Write through the store, then let the daemon pick the change up.
fn update(admin: &Admin, command: &str, change: impl FnOnce(&mut XmppConfig)) -> Reply {
    match admin.store().update_xmpp_config(change) {
        Ok(_) => {
            admin.notify_config_changed();
            Reply::success()
        }
        Err(err) => Reply::failure(format!("{command}: {err}")),
    }
}

fn normalize_domain(domain: &str) -> Result<String, String> {
    match Jid::from_parts(None, domain, None) {
        Ok(jid) => Ok(jid.domain().to_owned()),
        Err(err) => Err(format!("invalid domain '{domain}': {err}")),
    }
}

fn normalize_listen(words: &[&str]) -> Result<Vec<String>, String> {
    let mut addresses: Vec<String> = Vec::with_capacity(words.len());
    for word in words {
        let address = ListenAddress::parse(word)?.to_string();
        if addresses.contains(&address) {
            return Err(format!("address '{word}' given twice"));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

/// Refuse an identity the daemon could not serve, with the reason.
fn check_identity(admin: &Admin, key: &str, cert: &str, bundle: Option<&str>) -> Result<(), PkiError> {
    let dir = admin.certs_dir();
    let key_path = pki::cert_file(&dir, key)?;
    let cert_path = pki::cert_file(&dir, cert)?;
    let summary = pki::inspect(&cert_path)?;
    if summary.not_after < time::OffsetDateTime::now_utc() {
        return Err(PkiError::Expired {
            subject: summary.subject,
            date: pki::format_time(summary.not_after),
        });
    }
    pki::key_matches(&key_path, &cert_path)?;
    if let Some(bundle) = bundle {
        pki::chain_ok(&cert_path, &pki::cert_file(&dir, bundle)?)?;
    }
    Ok(())
}

/// An address to listen on, as `xmpp listen` takes it: an IPv4 or IPv6 address with an
/// optional port (`192.0.2.1`, `192.0.2.1:5222`, `::1`, `[::1]`, `[::1]:5222`). Without a port,
/// each service listens on its own default port. The stored form is this type's `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenAddress {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl ListenAddress {
    pub fn parse(text: &str) -> Result<ListenAddress, String> {
        let address = if let Ok(ip) = text.parse::<IpAddr>() {
            ListenAddress { ip, port: None }
        } else if let Ok(socket) = text.parse::<SocketAddr>() {
            if socket.port() == 0 {
                return Err(format!("invalid address '{text}': port 0"));
            }
            ListenAddress {
                ip: socket.ip(),
                port: Some(socket.port()),
            }
        } else if let Some(Ok(ip)) = text
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .map(str::parse::<std::net::Ipv6Addr>)
        {
            ListenAddress {
                ip: IpAddr::V6(ip),
                port: None,
            }
        } else {
            return Err(format!(
                "invalid address '{text}': expected an IPv4 or IPv6 address with an optional :port"
            ));
        };
        Ok(address)
    }

    /// Where a service with this default port binds.
    pub fn socket_addr(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(default_port))
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => write!(f, "{ip}"),
            (ip, Some(port)) => write!(f, "{}", SocketAddr::new(ip, port)),
        }
    }
}

impl std::str::FromStr for ListenAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ListenAddress::parse(text)
    }
}

/// The `xmpp` listing.
pub fn render_config(config: &XmppConfig) -> String {
    let none = || "(none)".to_owned();
    let tls = config.tls.as_ref();
    let rows: [(&str, String); 9] = [
        ("Enabled", config.enabled.to_string()),
        (
            "Domain",
            if config.domain.is_empty() {
                none()
            } else {
                config.domain.clone()
            },
        ),
        (
            "Listen",
            if config.listen.is_empty() {
                none()
            } else {
                config.listen.join(" ")
            },
        ),
        ("Key file", tls.map(|t| t.key.clone()).unwrap_or_else(none)),
        ("Certificate file", tls.map(|t| t.cert.clone()).unwrap_or_else(none)),
        (
            "CA bundle file",
            tls.and_then(|t| t.bundle.clone()).unwrap_or_else(none),
        ),
        ("STARTTLS required", config.starttls_required.to_string()),
        ("Offline limit", config.offline_limit.to_string()),
        ("Max stanza bytes", config.max_stanza_bytes.to_string()),
    ];
    rows.iter()
        .map(|(label, value)| format!("{label:<18}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, admin_with_node, run};
    use crate::{Command, parse};

    fn xmpp(line: &str) -> XmppCommand {
        match parse(line) {
            Ok(Command::Xmpp(command)) => command,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn failure(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    #[test]
    fn parses_every_xmpp_command() {
        assert_eq!(xmpp("xmpp"), XmppCommand::Show);
        assert_eq!(
            xmpp("xmpp domain Example.COM"),
            XmppCommand::Domain {
                domain: "example.com".to_owned()
            }
        );
        assert_eq!(
            xmpp("xmpp listen 127.0.0.1 127.0.0.2:5300 ::1 [::2] [::3]:5222"),
            XmppCommand::Listen {
                addresses: ["127.0.0.1", "127.0.0.2:5300", "::1", "::2", "[::3]:5222"]
                    .map(str::to_owned)
                    .to_vec()
            }
        );
        assert_eq!(
            xmpp("xmpp certs a.key a.crt"),
            XmppCommand::Certs {
                key: "a.key".to_owned(),
                cert: "a.crt".to_owned(),
                bundle: None
            }
        );
        assert_eq!(
            xmpp("xmpp certs a.key a.crt ca-bundle.pem"),
            XmppCommand::Certs {
                key: "a.key".to_owned(),
                cert: "a.crt".to_owned(),
                bundle: Some("ca-bundle.pem".to_owned())
            }
        );
        assert_eq!(xmpp("xmpp enable"), XmppCommand::Enable);
        assert_eq!(xmpp("xmpp disable"), XmppCommand::Disable);
        assert_eq!(xmpp("xmpp status"), XmppCommand::Status);
    }

    #[test]
    fn xmpp_parse_errors_name_the_problem() {
        assert_eq!(failure("xmpp domian x"), "FAILURE: unknown command 'xmpp domian'");
        assert_eq!(failure("xmpp domain"), "FAILURE: xmpp domain: missing <domain>");
        assert_eq!(
            failure("xmpp domain a.example b.example"),
            "FAILURE: xmpp domain: unexpected argument 'b.example'"
        );
        assert!(failure("xmpp domain bad@domain").starts_with("FAILURE: xmpp domain: invalid domain 'bad@domain'"));
        assert_eq!(failure("xmpp listen"), "FAILURE: xmpp listen: missing <address>");
        assert_eq!(
            failure("xmpp listen 127.0.0.1 eth0"),
            "FAILURE: xmpp listen: invalid address 'eth0': expected an IPv4 or IPv6 address with an optional :port"
        );
        assert_eq!(
            failure("xmpp listen 127.0.0.1:0"),
            "FAILURE: xmpp listen: invalid address '127.0.0.1:0': port 0"
        );
        assert!(failure("xmpp listen 127.0.0.1:70000").contains("invalid address '127.0.0.1:70000'"));
        assert!(failure("xmpp listen [::1:5222").contains("invalid address '[::1:5222'"));
        assert!(failure("xmpp listen 300.1.1.1").contains("invalid address '300.1.1.1'"));
        assert_eq!(
            failure("xmpp listen 127.0.0.1 127.0.0.1"),
            "FAILURE: xmpp listen: address '127.0.0.1' given twice"
        );
        assert_eq!(failure("xmpp certs"), "FAILURE: xmpp certs: missing <key>");
        assert_eq!(failure("xmpp certs a.key"), "FAILURE: xmpp certs: missing <crt>");
        assert_eq!(
            failure("xmpp certs a.key a.crt b.pem c"),
            "FAILURE: xmpp certs: unexpected argument 'c'"
        );
        assert_eq!(
            failure("xmpp certs ../a.key a.crt"),
            "FAILURE: xmpp certs: invalid file name '../a.key': expected a plain name inside the certificate folder"
        );
        assert_eq!(
            failure("xmpp enable now"),
            "FAILURE: xmpp enable: unexpected argument 'now'"
        );
        assert_eq!(
            failure("xmpp disable x"),
            "FAILURE: xmpp disable: unexpected argument 'x'"
        );
        assert_eq!(
            failure("xmpp status x"),
            "FAILURE: xmpp status: unexpected argument 'x'"
        );
    }

    #[test]
    fn listen_addresses_normalize_and_resolve_ports() {
        let v6 = ListenAddress::parse("[::1]:5300").unwrap();
        assert_eq!(v6.to_string(), "[::1]:5300");
        assert_eq!(v6.socket_addr(5222).port(), 5300);
        let bare = ListenAddress::parse("[::1]").unwrap();
        assert_eq!(bare.to_string(), "::1");
        assert_eq!(bare.socket_addr(5222).to_string(), "[::1]:5222");
        assert_eq!(
            ListenAddress::parse("127.0.0.7").unwrap().socket_addr(5223).to_string(),
            "127.0.0.7:5223"
        );
        // "::1:5222" is itself a valid IPv6 address, not ::1 port 5222: brackets are needed.
        assert_eq!(ListenAddress::parse("::1:5222").unwrap().port, None);
    }

    #[test]
    fn config_changes_are_stored_and_announced() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "xmpp domain chat.example").text, "SUCCESS");
        assert_eq!(run(&admin, "xmpp listen 127.0.0.5 [::1]:5300").text, "SUCCESS");
        assert_eq!(run(&admin, "xmpp disable").text, "SUCCESS");
        let config = admin.store().xmpp_config().unwrap();
        assert_eq!(config.domain, "chat.example");
        assert_eq!(config.listen, vec!["127.0.0.5".to_owned(), "[::1]:5300".to_owned()]);
        assert!(!config.enabled);
        assert_eq!(run(&admin, "xmpp enable").text, "SUCCESS");
        assert!(admin.store().xmpp_config().unwrap().enabled);
        assert_eq!(node.config_changes(), 4);
        // A refused change neither writes nor announces.
        let reply = admin.execute(Command::Xmpp(XmppCommand::Domain {
            domain: "not a domain".to_owned(),
        }));
        assert!(!reply.ok);
        assert!(
            reply
                .text
                .starts_with("FAILURE: xmpp domain: invalid domain 'not a domain'"),
            "{}",
            reply.text
        );
        let reply = admin.execute(Command::Xmpp(XmppCommand::Listen {
            addresses: vec!["eth0".to_owned()],
        }));
        assert!(!reply.ok);
        assert_eq!(admin.store().xmpp_config().unwrap().domain, "chat.example");
        assert_eq!(node.config_changes(), 4);
    }

    #[test]
    fn xmpp_shows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        admin
            .store()
            .update_xmpp_config(|config| {
                config.domain = "example.com".to_owned();
                config.listen = vec!["127.0.0.1".to_owned(), "[::1]:5222".to_owned()];
                config.enabled = true;
                config.tls = Some(TlsIdentity {
                    key: "server.key".to_owned(),
                    cert: "server.crt".to_owned(),
                    bundle: None,
                });
                config.starttls_required = true;
                config.offline_limit = 100;
                config.max_stanza_bytes = 262144;
            })
            .unwrap();
        let reply = run(&admin, "xmpp");
        assert!(reply.ok);
        assert_eq!(
            reply.text,
            "\
Enabled           : true
Domain            : example.com
Listen            : 127.0.0.1 [::1]:5222
Key file          : server.key
Certificate file  : server.crt
CA bundle file    : (none)
STARTTLS required : true
Offline limit     : 100
Max stanza bytes  : 262144"
        );
    }

    #[test]
    fn certs_accepts_a_matching_pair_and_a_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "pki selfsigned server CN:example.com").text, "SUCCESS");
        assert_eq!(run(&admin, "xmpp certs server.key server.crt").text, "SUCCESS");
        let tls = admin.store().xmpp_config().unwrap().tls.unwrap();
        assert_eq!(
            (tls.key.as_str(), tls.cert.as_str(), tls.bundle),
            ("server.key", "server.crt", None)
        );
        assert_eq!(node.config_changes(), 1);

        let chain = crate::pki::test_chain::Chain::write(&admin.certs_dir());
        let reply = run(
            &admin,
            &format!("xmpp certs {} {} {}", chain.leaf_key, chain.leaf_crt, chain.bundle),
        );
        assert_eq!(reply.text, "SUCCESS");
        assert_eq!(
            admin.store().xmpp_config().unwrap().tls.unwrap().bundle.as_deref(),
            Some(chain.bundle.as_str())
        );
    }

    #[test]
    fn certs_refuses_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "pki selfsigned one CN:localhost").text, "SUCCESS");
        assert_eq!(run(&admin, "pki selfsigned two CN:localhost").text, "SUCCESS");
        assert_eq!(
            run(&admin, "xmpp certs one.key two.crt").text,
            "FAILURE: key one.key does not match certificate two.crt"
        );
        assert_eq!(
            run(&admin, "xmpp certs missing.key one.crt").text,
            "FAILURE: no such file: missing.key"
        );
        assert_eq!(
            run(&admin, "xmpp certs one.key missing.crt").text,
            "FAILURE: no such file: missing.crt"
        );
        assert_eq!(
            run(&admin, "xmpp certs one.crt one.crt").text,
            "FAILURE: one.crt: not a usable private key: no items found"
                .replace("no items found", &key_error_text(&admin, "one.crt"))
        );
        let chain = crate::pki::test_chain::Chain::write(&admin.certs_dir());
        let reply = run(&admin, &format!("xmpp certs one.key one.crt {}", chain.bundle));
        assert!(
            reply
                .text
                .starts_with("FAILURE: chain incomplete: no certificate for issuer 'CN=localhost'"),
            "{}",
            reply.text
        );
        assert_eq!(admin.store().xmpp_config().unwrap().tls, None);
        assert_eq!(node.config_changes(), 0);
    }

    /// What rustls-pki-types says about a PEM file without a key, so the test does not pin
    /// another crate's wording.
    fn key_error_text(admin: &Admin, file: &str) -> String {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let bytes = std::fs::read(admin.certs_dir().join(file)).unwrap();
        PrivateKeyDer::from_pem_slice(&bytes).unwrap_err().to_string()
    }
}
