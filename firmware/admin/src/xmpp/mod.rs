//! `xmpp ...`: the XMPP service of this node (domain, listeners, TLS identity, on/off, status).

pub mod callbridge;
pub mod cluster;
mod status;

use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::pki::{self, PkiError};
use crate::{Admin, Family, Reply};
use sb_proto::Domain;
use sb_store::{ListenTarget, TlsIdentity, XmppConfig};
use serde::{Deserialize, Serialize};

pub use callbridge::CallbridgeCommand;
pub use cluster::{ClusterCommand, ClusterLive, ClusterView, PeerHealth, PeerView};
pub use status::render_status;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XmppCommand {
    /// `xmpp`: the configuration.
    Show,
    /// `xmpp domain <domain>`
    Domain { domain: String },
    /// `xmpp listen <iface or address>...`, each in stored form ([`ListenTarget`]).
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
    /// `xmpp reset`
    Reset,
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
            syntax: "xmpp listen <iface or address>...",
            summary: "listen on these interfaces (their IPv4 addresses, as they change) or IP addresses, \
                      each with an optional :port (a, a:5222, 192.0.2.1, [v6]:port)",
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
        Usage {
            syntax: "xmpp reset",
            summary: "leave the cluster and forget this node's XMPP configuration (users, Call Bridges, domain, \
                      federation); listen addresses and certificates stay",
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
                let first = args.required("<iface or address>")?;
                let mut words = vec![first];
                words.extend(args.rest());
                let entries = normalize_listen(&words).map_err(|reason| args.invalid(reason))?;
                let addresses = entries.iter().map(ToString::to_string).collect();
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
            Some("reset") => no_arguments("xmpp reset", XmppCommand::Reset),
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
                let checked = normalize_listen(&words)
                    .map_err(|reason| format!("xmpp listen: {reason}"))
                    .and_then(|entries| check_interfaces(admin, &entries))
                    .and_then(|addresses| check_component_port(admin, addresses));
                match checked {
                    Ok(addresses) => update(admin, "xmpp listen", move |config| config.listen = addresses),
                    Err(reason) => Reply::failure(reason),
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
            XmppCommand::Reset => reset(admin),
        }
    }
}

/// `xmpp reset`: leave the cluster (the daemon does it cleanly when a quorum answers, so no
/// ghost peer stays behind: CSCvi67717), then forget the shared state and this node's service
/// and cluster settings. The machine's own settings (listen addresses, certificates, hostname,
/// the trust bundle) stay, so the node can be configured or join again at once.
fn reset(admin: &Admin) -> Reply {
    let mut notes = Vec::new();
    match admin.live().and_then(|live| live.cluster()) {
        Some(cluster) => match cluster.leave() {
            Ok(lines) => notes.extend(lines),
            Err(reason) => return Reply::failure(format!("xmpp reset: {reason}")),
        },
        None => {
            // No daemon: forget the cluster identity on disk, so a later join is a new node
            // that replaces the old entry.
            let raft = admin.dir().join("raft");
            if raft.exists() {
                if let Err(err) = std::fs::remove_dir_all(&raft) {
                    return Reply::failure(format!("xmpp reset: cannot remove {}: {err}", raft.display()));
                }
                notes.push("forgot this node's cluster identity".to_owned());
            }
        }
    }
    if let Err(err) = admin.store().clear_shared() {
        return Reply::failure(format!("xmpp reset: {err}"));
    }
    let reply = update_node(admin, "xmpp reset", |node| {
        node.enabled = false;
        node.cluster.enabled = false;
    });
    if !reply.ok || notes.is_empty() {
        return reply;
    }
    Reply {
        ok: true,
        text: format!("{}\nSUCCESS", notes.join("\n")),
    }
}

pub(crate) fn update_node(admin: &Admin, command: &str, change: impl FnOnce(&mut sb_store::NodeConfig)) -> Reply {
    let mut node = match admin.store().node_config() {
        Ok(node) => node,
        Err(err) => return Reply::failure(format!("{command}: {err}")),
    };
    change(&mut node);
    match admin.set_node_config(&node) {
        Ok(()) => Reply::success(),
        Err(err) => crate::write_failure(command, err),
    }
}

/// Write the change; the daemon picks it up from the change feed before this returns.
fn update(admin: &Admin, command: &str, change: impl FnOnce(&mut XmppConfig)) -> Reply {
    match admin.update_xmpp_config(change) {
        Ok(_) => Reply::success(),
        Err(err) => crate::write_failure(command, err),
    }
}

/// The clients' port of a new listen list must not be the Call Bridge port, which binds the
/// same addresses (the reverse of `xmpp callbridge port`'s check).
fn check_component_port(admin: &Admin, addresses: Vec<String>) -> Result<Vec<String>, String> {
    let mut candidate = admin
        .store()
        .xmpp_config()
        .map_err(|err| format!("xmpp listen: {err}"))?;
    candidate.listen = addresses;
    match callbridge::port_conflict(&candidate, candidate.component_port) {
        Some(reason) => Err(format!(
            "xmpp listen: {reason} (move the Call Bridges with xmpp callbridge port <port>)"
        )),
        None => Ok(candidate.listen),
    }
}

fn normalize_domain(domain: &str) -> Result<String, String> {
    match Domain::parse(domain) {
        Ok(domain) => Ok(domain.into_string()),
        Err(err) => Err(format!("invalid domain '{domain}': {err}")),
    }
}

/// Each word in stored form; the syntax only, the interfaces are [`check_interfaces`]'.
fn normalize_listen(words: &[&str]) -> Result<Vec<ListenTarget>, String> {
    let mut entries: Vec<ListenTarget> = Vec::with_capacity(words.len());
    for word in words {
        let entry = ListenTarget::parse(word).map_err(|e| e.to_string())?;
        if entry.port == Some(0) {
            return Err(format!("invalid address '{word}': port 0"));
        }
        if entries.contains(&entry) {
            return Err(format!("address '{word}' given twice"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Interface names must exist (on the appliance: the board's, stored by their board names);
/// the result is the stored listen list. A `FAILURE` text when not.
fn check_interfaces(admin: &Admin, entries: &[ListenTarget]) -> Result<Vec<String>, String> {
    let mut stored: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = admin.appliance().stored_listen_target(entry)?.to_string();
        if stored.contains(&text) {
            return Err(format!("xmpp listen: address '{text}' given twice"));
        }
        stored.push(text);
    }
    Ok(stored)
}

/// Refuse an identity the daemon could not serve, with the reason.
pub(crate) fn check_identity(admin: &Admin, key: &str, cert: &str, bundle: Option<&str>) -> Result<(), PkiError> {
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
            xmpp("xmpp listen a eth0:5300"),
            XmppCommand::Listen {
                addresses: ["a", "eth0:5300"].map(str::to_owned).to_vec()
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
        assert_eq!(
            failure("xmpp listen"),
            "FAILURE: xmpp listen: missing <iface or address>"
        );
        assert_eq!(
            failure("xmpp listen 127.0.0.1 1eth0"),
            "FAILURE: xmpp listen: invalid address '1eth0': expected an IPv4 or IPv6 address or an interface name, \
             with an optional :port ([v6]:port)"
        );
        assert_eq!(
            failure("xmpp listen a:0"),
            "FAILURE: xmpp listen: invalid address 'a:0': port 0"
        );
        assert_eq!(
            failure("xmpp listen a a"),
            "FAILURE: xmpp listen: address 'a' given twice"
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

    /// A board that calls `lo` `a` (every test host has `lo`) and has a `b` the kernel lacks.
    fn board(dir: &std::path::Path) -> crate::ApplianceHost {
        let host = crate::ApplianceHost {
            settings_dir: dir.join("appliance"),
            run_dir: dir.join("run"),
            board_file: dir.join("board.toml"),
            data_mount: dir.to_path_buf(),
        };
        std::fs::write(
            &host.board_file,
            crate::appliance::test_board(r#"[{ name = "a", kernel = "lo" }, { name = "b", kernel = "nosuch9" }]"#),
        )
        .unwrap();
        host
    }

    #[test]
    fn listen_takes_the_boards_interface_names() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        let admin = admin.with_appliance(board(dir.path()));
        let listen = || admin.store().xmpp_config().unwrap().listen;
        assert_eq!(run(&admin, "xmpp listen a:5300 127.0.0.1 b").text, "SUCCESS");
        assert_eq!(listen(), ["a:5300", "127.0.0.1", "b"]);
        // The kernel's name is stored as the board's.
        assert_eq!(run(&admin, "xmpp listen lo").text, "SUCCESS");
        assert_eq!(listen(), ["a"]);
        assert_eq!(node.config_changes(), 2);
        assert_eq!(
            run(&admin, "xmpp listen z").text,
            "FAILURE: no interface 'z' on this board (interfaces: a, b)"
        );
        assert_eq!(
            run(&admin, "xmpp listen 127.0.0.1 eth0").text,
            "FAILURE: no interface 'eth0' on this board (interfaces: a, b)"
        );
        assert_eq!(
            run(&admin, "xmpp listen a:5222 lo:5222").text,
            "FAILURE: xmpp listen: address 'a:5222' given twice"
        );
        assert_eq!(listen(), ["a"]);
        assert_eq!(node.config_changes(), 2);
    }

    #[test]
    fn off_the_appliance_listen_takes_the_hosts_interface_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = board(dir.path());
        host.board_file = dir.path().join("no-board.toml");
        let admin = admin(dir.path()).with_appliance(host);
        assert_eq!(run(&admin, "xmpp listen lo:5300").text, "SUCCESS");
        assert_eq!(admin.store().xmpp_config().unwrap().listen, ["lo:5300"]);
        let refused = run(&admin, "xmpp listen nosuch9").text;
        assert!(
            refused.starts_with("FAILURE: no interface 'nosuch9' on this host (interfaces: "),
            "{refused}"
        );
        assert!(refused.contains("lo"), "{refused}");
    }

    #[test]
    fn config_changes_are_stored_and_announced() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        let admin = admin.with_appliance(board(dir.path()));
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
        // The clients' port may not be the Call Bridge port (5223 by default).
        let reply = run(&admin, "xmpp listen 127.0.0.5:5223");
        assert_eq!(
            reply.text,
            "FAILURE: xmpp listen: port 5223 is the clients' port of listen address 127.0.0.5:5223; Call Bridges \
             need a port of their own (move the Call Bridges with xmpp callbridge port <port>)"
        );
        assert_eq!(
            admin.store().xmpp_config().unwrap().listen,
            vec!["127.0.0.5".to_owned(), "[::1]:5300".to_owned()],
            "a refused listen list is not stored"
        );
        assert_eq!(node.config_changes(), 4);
    }

    #[test]
    fn xmpp_shows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        admin
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
