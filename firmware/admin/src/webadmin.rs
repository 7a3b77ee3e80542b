//! `webadmin ...`: this node's HTTPS web admin and JSON API (CMS's command names). The
//! settings are node-local ([`sb_store::WebAdminConfig`]); the daemon's web module follows the
//! change feed and rebinds through the listener module, as every other service does.

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::xmpp::{check_identity, update_node};
use crate::{Admin, Family, Reply, pki};
use sb_store::{TlsIdentity, WebAdminConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebadminCommand {
    /// `webadmin listen <iface or address> <port>`
    Listen { address: String, port: u16 },
    /// `webadmin certs <key> <crt> [<bundle>]`
    Certs {
        key: String,
        cert: String,
        bundle: Option<String>,
    },
    /// `webadmin enable`
    Enable,
    /// `webadmin disable`
    Disable,
    /// `webadmin status`
    Status,
}

impl Family for WebadminCommand {
    const PREFIX: &'static [&'static str] = &["webadmin"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "webadmin listen <iface or address> <port>",
            summary: "serve the HTTPS web admin and API on this interface or address and port",
        },
        Usage {
            syntax: "webadmin certs <key> <crt> [<bundle>]",
            summary: "the web admin's TLS identity (default: the xmpp certs identity)",
        },
        Usage {
            syntax: "webadmin enable",
            summary: "start the web admin and API",
        },
        Usage {
            syntax: "webadmin disable",
            summary: "stop the web admin and API",
        },
        Usage {
            syntax: "webadmin status",
            summary: "the web admin's settings and where it listens",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        match words.first().map(String::as_str) {
            Some("listen") => {
                let mut args = Args::new("webadmin listen", rest);
                let address = args.required("<iface or address>")?;
                let port = args.required("<port>")?;
                let target = args.listen_address(address)?;
                let port = args.port(port)?;
                args.end()?;
                Ok(WebadminCommand::Listen {
                    address: target.to_string(),
                    port,
                })
            }
            Some("certs") => {
                let mut args = Args::new("webadmin certs", rest);
                let key = args.required("<key>")?.to_owned();
                let cert = args.required("<crt>")?.to_owned();
                let bundle = args.optional().map(str::to_owned);
                for name in [Some(&key), Some(&cert), bundle.as_ref()].into_iter().flatten() {
                    pki::cert_file(std::path::Path::new(""), name).map_err(|e| args.invalid(e))?;
                }
                args.end()?;
                Ok(WebadminCommand::Certs { key, cert, bundle })
            }
            Some("enable") => no_arguments("webadmin enable", rest, WebadminCommand::Enable),
            Some("disable") => no_arguments("webadmin disable", rest, WebadminCommand::Disable),
            Some("status") => no_arguments("webadmin status", rest, WebadminCommand::Status),
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            WebadminCommand::Listen { address, port } => {
                let address = match admin.appliance().stored_listen_address(&address) {
                    Ok(address) => address,
                    Err(reason) => return Reply::failure(format!("webadmin listen: {reason}")),
                };
                update_node(admin, "webadmin listen", |node| {
                    node.web.listen = address;
                    node.web.port = port;
                })
            }
            WebadminCommand::Certs { key, cert, bundle } => match check_identity(admin, &key, &cert, bundle.as_deref())
            {
                Ok(()) => update_node(admin, "webadmin certs", |node| {
                    node.web.tls = Some(TlsIdentity { key, cert, bundle });
                }),
                Err(err) => Reply::failure(err),
            },
            WebadminCommand::Enable => update_node(admin, "webadmin enable", |node| node.web.enabled = true),
            WebadminCommand::Disable => update_node(admin, "webadmin disable", |node| node.web.enabled = false),
            WebadminCommand::Status => status(admin),
        }
    }
}

fn no_arguments(command: &'static str, rest: &[String], value: WebadminCommand) -> Result<WebadminCommand, ParseError> {
    Args::new(command, rest).end()?;
    Ok(value)
}

fn status(admin: &Admin) -> Reply {
    let config = match admin.store().xmpp_config() {
        Ok(config) => config,
        Err(err) => return Reply::failure(format!("webadmin status: {err}")),
    };
    let listening = match admin.live() {
        None => vec!["(xmppd is not running)".to_owned()],
        Some(live) => {
            let web = live.status().web;
            if web.is_empty() {
                vec!["(none)".to_owned()]
            } else {
                web.into_iter()
                    .map(|l| match (l.error, l.waiting) {
                        (Some(error), _) => format!("NOT listening on {}: {error}", l.address),
                        (None, Some(waiting)) => format!("{} waits: {waiting}", l.address),
                        (None, None) => format!("https://{}/", l.address),
                    })
                    .collect()
            }
        }
    };
    let password = if crate::admin_password::is_set(admin.appliance(), admin.dir()) {
        "set"
    } else {
        "NOT SET (admin passwd): nobody can log in"
    };
    Reply::output(render(&config.web, &config.tls, &listening, password))
}

fn render(web: &WebAdminConfig, xmpp_tls: &Option<TlsIdentity>, listening: &[String], password: &str) -> String {
    let (identity, from) = match (&web.tls, xmpp_tls) {
        (Some(tls), _) => (Some(tls), ""),
        (None, Some(tls)) => (Some(tls), " (xmpp certs)"),
        (None, None) => (None, ""),
    };
    let none = || "(none)".to_owned();
    let rows: [(&str, String); 8] = [
        ("Enabled", web.enabled.to_string()),
        ("Interface", web.listen.clone()),
        ("Port", web.port.to_string()),
        (
            "Key file",
            identity.map(|t| format!("{}{from}", t.key)).unwrap_or_else(none),
        ),
        (
            "Certificate file",
            identity.map(|t| format!("{}{from}", t.cert)).unwrap_or_else(none),
        ),
        (
            "CA Bundle file",
            identity.and_then(|t| t.bundle.clone()).unwrap_or_else(none),
        ),
        ("Admin password", password.to_owned()),
        ("Listening", listening.join("\n                   ")),
    ];
    rows.iter()
        .map(|(name, value)| format!("{name:<19}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, run};
    use crate::{Command, parse};

    fn fail(line: &str) -> String {
        Reply::from(parse(line).expect_err(line)).text
    }

    #[test]
    fn webadmin_commands_parse_and_refuse_bad_input() {
        assert_eq!(
            parse("webadmin listen 127.0.0.1 8443"),
            Ok(Command::Webadmin(WebadminCommand::Listen {
                address: "127.0.0.1".into(),
                port: 8443
            }))
        );
        assert_eq!(
            fail("webadmin listen 127.0.0.1"),
            "FAILURE: webadmin listen: missing <port>"
        );
        assert_eq!(
            fail("webadmin listen 127.0.0.1 http"),
            "FAILURE: webadmin listen: 'http' is not a port (0-65535)"
        );
        assert!(fail("webadmin listen 127.0.0.1:80 443").contains("own word"));
        assert!(fail("webadmin certs ../x.key x.crt").starts_with("FAILURE: webadmin certs: "));
        assert_eq!(
            fail("webadmin enable now"),
            "FAILURE: webadmin enable: unexpected argument 'now'"
        );
        assert_eq!(fail("webadmin frob"), "FAILURE: unknown command 'webadmin frob'");
    }

    #[test]
    fn settings_are_stored_on_this_node_and_shown_by_status() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        assert!(run(&admin, "webadmin listen 127.0.0.2 18443").ok);
        assert!(run(&admin, "webadmin enable").ok);
        let web = admin.store().node_config().unwrap().web;
        assert_eq!((web.enabled, web.listen.as_str(), web.port), (true, "127.0.0.2", 18443));
        let text = run(&admin, "webadmin status").text;
        assert!(text.contains("Enabled            : true"), "{text}");
        assert!(text.contains("Port               : 18443"), "{text}");
        assert!(text.contains("Admin password     : NOT SET"), "{text}");
        assert!(run(&admin, "webadmin disable").ok);
        assert!(!admin.store().node_config().unwrap().web.enabled);
        // A certificate that is not there is refused and changes nothing.
        let reply = run(&admin, "webadmin certs none.key none.crt");
        assert!(!reply.ok, "{}", reply.text);
        assert_eq!(admin.store().node_config().unwrap().web.tls, None);
    }
}
