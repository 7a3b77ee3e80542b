//! `xmpp cluster ...`: this node's part in a cluster, in the words a CMS administrator types.
//!
//! Trust, enable and disable are this node's settings (its `NodeConfig`): the daemon follows
//! them from the change feed and opens or closes the cluster port. Initialize, join, remove
//! and status talk to the running cluster through [`ClusterLive`], which the daemon provides.

use super::update_node;
use crate::command::{Args, ParseError, Usage, unknown_subcommand};
use crate::pki;
use crate::{Admin, Family, Reply};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The cluster port a `join` address without one means (SPEC: 5270).
const DEFAULT_PORT: u16 = sb_store::DEFAULT_CLUSTER_PORT;

/// The running cluster, as the admin layer drives it. Calls block (the admin runs on a
/// blocking thread) and are bounded by the daemon.
pub trait ClusterLive: Send + Sync {
    /// `None` while the cluster is off on this node (`xmpp cluster disable`).
    fn view(&self) -> Option<ClusterView>;
    /// Why the cluster could not start, if it could not (shown by `enable` and `status`).
    fn start_error(&self) -> Option<String>;
    fn initialize(&self) -> Result<(), String>;
    /// Join the cluster of the member at `addr` (`host:port`). The lines returned say what
    /// changed on this node (a different domain taken from the cluster).
    fn join(&self, addr: &str, force: bool) -> Result<Vec<String>, String>;
    fn remove(&self, member: &str) -> Result<(), String>;
    /// `xmpp reset`: leave the cluster (cleanly if a quorum answers), stop it and forget this
    /// node's cluster identity. The lines returned say what happened.
    fn leave(&self) -> Result<Vec<String>, String>;
}

/// `xmpp cluster status`, as data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `LEADER`, `FOLLOWER`, `CANDIDATE`, or `LEARNER` (not a member yet).
    pub state: String,
    pub node_id: String,
    /// This node's cluster address.
    pub address: String,
    pub term: u64,
    pub last_state_change_unix: u64,
    /// A leader backed by a majority answers: writes can succeed.
    pub quorum: bool,
    pub members: Vec<PeerView>,
    /// Peers refused at the TLS level, newest last.
    pub refused: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub address: String,
    pub node_id: String,
    pub leader: bool,
    pub me: bool,
    pub voter: bool,
    pub last_contact_unix: Option<u64>,
    pub health: PeerHealth,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerHealth {
    /// This node.
    Me,
    Reachable,
    /// No answer since `since_unix` (`None`: never answered).
    Unreachable {
        since_unix: Option<u64>,
        reason: String,
    },
    /// Not probed yet.
    #[default]
    Unknown,
}

impl PeerView {
    pub fn reachable(&self) -> bool {
        matches!(self.health, PeerHealth::Me | PeerHealth::Reachable)
    }
}

impl std::fmt::Display for PeerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerHealth::Me => Ok(()),
            PeerHealth::Reachable => f.write_str("reachable"),
            PeerHealth::Unreachable {
                since_unix: Some(since),
                reason,
            } => write!(f, "unreachable since {}: {reason}", cms_time(*since)),
            PeerHealth::Unreachable {
                since_unix: None,
                reason,
            } => write!(f, "never reached: {reason}"),
            PeerHealth::Unknown => f.write_str("not probed yet"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterCommand {
    Trust { bundle: String },
    Enable,
    Disable,
    Initialize,
    Join { address: String, force: bool },
    Remove { member: String },
    Status,
}

impl Family for ClusterCommand {
    const PREFIX: &'static [&'static str] = &["xmpp", "cluster"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "xmpp cluster trust <bundle>",
            summary: "certificates trusted for node-to-node TLS (a file in the certificate folder)",
        },
        Usage {
            syntax: "xmpp cluster enable|disable",
            summary: "cluster mode on/off for this node (the cluster port, 5270)",
        },
        Usage {
            syntax: "xmpp cluster initialize",
            summary: "make a one-node cluster of this node, with its users and settings",
        },
        Usage {
            syntax: "xmpp cluster join <address>[:<port>] [force]",
            summary: "join the cluster of that member; force discards this node's own users and Call Bridges",
        },
        Usage {
            syntax: "xmpp cluster remove <address or node id>",
            summary: "take a (dead) member out of the cluster",
        },
        Usage {
            syntax: "xmpp cluster status",
            summary: "state, peers with their health, term, key/certificate/trust files",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let rest = words.get(1..).unwrap_or_default();
        let no_arguments =
            |command: &'static str, result: ClusterCommand| Args::new(command, rest).end().map(|()| result);
        match words.first().map(String::as_str) {
            Some("trust") => {
                let mut args = Args::new("xmpp cluster trust", rest);
                let bundle = args.required("<bundle>")?.to_owned();
                pki::cert_file(std::path::Path::new(""), &bundle).map_err(|e| args.invalid(e))?;
                args.end()?;
                Ok(ClusterCommand::Trust { bundle })
            }
            Some("enable") => no_arguments("xmpp cluster enable", ClusterCommand::Enable),
            Some("disable") => no_arguments("xmpp cluster disable", ClusterCommand::Disable),
            Some("initialize") => no_arguments("xmpp cluster initialize", ClusterCommand::Initialize),
            Some("join") => {
                let mut args = Args::new("xmpp cluster join", rest);
                let address = args.required("<address>[:<port>]")?;
                let address = with_default_port(address).map_err(|reason| args.invalid(reason))?;
                let force = match args.optional() {
                    None => false,
                    Some("force") => true,
                    Some(other) => return Err(args.invalid(format!("expected 'force', found '{other}'"))),
                };
                args.end()?;
                Ok(ClusterCommand::Join { address, force })
            }
            Some("remove") => {
                let mut args = Args::new("xmpp cluster remove", rest);
                let member = args.required("<address or node id>")?.to_owned();
                args.end()?;
                Ok(ClusterCommand::Remove { member })
            }
            Some("status") => no_arguments("xmpp cluster status", ClusterCommand::Status),
            _ => Err(unknown_subcommand(Self::PREFIX, words)),
        }
    }

    fn apply(self, admin: &Admin) -> Reply {
        match self {
            ClusterCommand::Trust { bundle } => trust(admin, bundle),
            ClusterCommand::Enable => enable(admin),
            ClusterCommand::Disable => set_enabled(admin, "xmpp cluster disable", false),
            ClusterCommand::Initialize => with_cluster(admin, "xmpp cluster initialize", |cluster| {
                cluster.initialize().map(|()| Vec::new())
            }),
            ClusterCommand::Join { address, force } => {
                with_cluster(admin, "xmpp cluster join", |cluster| cluster.join(&address, force))
            }
            ClusterCommand::Remove { member } => with_cluster(admin, "xmpp cluster remove", |cluster| {
                cluster.remove(&member).map(|()| Vec::new())
            }),
            ClusterCommand::Status => status(admin),
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → `host:port` (`[v6]:port`).
fn with_default_port(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty address".to_owned());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid address '{text}'"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("invalid IPv6 address '{host}'"))?;
        let port = match after {
            "" => DEFAULT_PORT,
            after => parse_port(after.strip_prefix(':').unwrap_or(after), text)?,
        };
        return Ok(format!("[{host}]:{port}"));
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(format!("[{text}]:{DEFAULT_PORT}"));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Ok(format!("{host}:{}", parse_port(port, text)?)),
        Some(_) => Err(format!("invalid address '{text}'")),
        None => Ok(format!("{text}:{DEFAULT_PORT}")),
    }
}

fn parse_port(port: &str, text: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port in '{text}'")),
        Ok(port) => Ok(port),
    }
}

fn trust(admin: &Admin, bundle: String) -> Reply {
    let checked = pki::cert_file(&admin.certs_dir(), &bundle).and_then(|path| pki::inspect(&path));
    if let Err(err) = checked {
        return Reply::failure(format!("xmpp cluster trust: {err}"));
    }
    update_node(admin, "xmpp cluster trust", |node| node.cluster.trust = Some(bundle))
}

fn enable(admin: &Admin) -> Reply {
    let node = match admin.store().node_config() {
        Ok(node) => node,
        Err(err) => return Reply::failure(format!("xmpp cluster enable: {err}")),
    };
    if node.tls.is_none() {
        return Reply::failure("xmpp cluster enable: no certificate configured (xmpp certs <key> <crt> [<bundle>])");
    }
    if node.cluster.trust.is_none() {
        return Reply::failure("xmpp cluster enable: no trust bundle configured (xmpp cluster trust <bundle>)");
    }
    let reply = set_enabled(admin, "xmpp cluster enable", true);
    if !reply.ok {
        return reply;
    }
    // The daemon opened the cluster port while the change was reconciled; if it could not,
    // say why and leave the setting off, so a restart does not fail the same way silently.
    match admin
        .live()
        .and_then(|live| live.cluster())
        .and_then(|c| c.start_error())
    {
        Some(reason) => {
            let _ = set_enabled(admin, "xmpp cluster enable", false);
            Reply::failure(format!("xmpp cluster enable: {reason}"))
        }
        None => reply,
    }
}

fn set_enabled(admin: &Admin, command: &str, enabled: bool) -> Reply {
    update_node(admin, command, |node| node.cluster.enabled = enabled)
}

fn with_cluster(
    admin: &Admin,
    command: &str,
    call: impl FnOnce(&dyn ClusterLive) -> Result<Vec<String>, String>,
) -> Reply {
    let Some(live) = admin.live() else {
        return Reply::failure(format!("{command}: the daemon is not running"));
    };
    let Some(cluster) = live.cluster() else {
        return Reply::failure(format!("{command}: this daemon has no cluster support"));
    };
    if cluster.view().is_none() {
        return Reply::failure(match cluster.start_error() {
            Some(reason) => format!("{command}: the cluster is not running: {reason}"),
            None => format!("{command}: cluster mode is off on this node (xmpp cluster enable)"),
        });
    }
    match call(cluster.as_ref()) {
        Ok(notes) if notes.is_empty() => Reply::success(),
        Ok(notes) => Reply {
            ok: true,
            text: format!("{}\nSUCCESS", notes.join("\n")),
        },
        Err(reason) => Reply::failure(format!("{command}: {reason}")),
    }
}

fn status(admin: &Admin) -> Reply {
    let node = match admin.store().node_config() {
        Ok(node) => node,
        Err(err) => return Reply::failure(format!("xmpp cluster status: {err}")),
    };
    let cluster = admin.live().and_then(|live| live.cluster());
    let view = cluster.as_ref().and_then(|c| c.view());
    let start_error = cluster.as_ref().and_then(|c| c.start_error());
    Reply::output(render_cluster_status(&node, view.as_ref(), start_error.as_deref()))
}

/// The `xmpp cluster status` text (SPEC format: `<address>:<port>` first on each peer line,
/// then `(Leader)` and `(me)`, then health).
pub fn render_cluster_status(
    node: &sb_store::NodeConfig,
    view: Option<&ClusterView>,
    start_error: Option<&str>,
) -> String {
    let mut out = String::new();
    let none = || "(none)".to_owned();
    match view {
        None => {
            let _ = writeln!(out, "State: DISABLED");
            if node.cluster.enabled {
                let reason = start_error.unwrap_or("the daemon is not running");
                let _ = writeln!(out, "Cluster mode is on but not running: {reason}");
            }
        }
        Some(view) => {
            let _ = writeln!(out, "State: {}", view.state);
            let _ = writeln!(out, "List of peers");
            if view.members.is_empty() {
                let _ = writeln!(
                    out,
                    "(none: not a member yet; xmpp cluster initialize, or xmpp cluster join <member>)"
                );
            }
            for peer in &view.members {
                let mut line = peer.address.clone();
                if peer.leader {
                    line.push_str(" (Leader)");
                }
                if peer.me {
                    line.push_str(" (me)");
                }
                if !peer.voter {
                    line.push_str(" (joining)");
                }
                if !peer.me {
                    let contact = peer
                        .last_contact_unix
                        .map(cms_time)
                        .unwrap_or_else(|| "never".to_owned());
                    let _ = write!(line, " last contact {contact}, {}", peer.health);
                }
                let _ = writeln!(out, "{line}");
            }
            if view.members.len() == 2 || (view.members.len() > 2 && view.members.len() % 2 == 0) {
                let _ = writeln!(
                    out,
                    "Warning: {} members: an even count tolerates no more failures than one member fewer",
                    view.members.len()
                );
            }
            let _ = writeln!(out, "Last state change: {}", cms_time(view.last_state_change_unix));
            let _ = writeln!(out, "Term: {}", view.term);
            let _ = writeln!(out, "Node id: {}", view.node_id);
            let _ = writeln!(out, "Cluster address: {}", view.address);
            if !view.members.is_empty() && !view.quorum {
                let _ = writeln!(out, "Quorum: NO (writes are refused)");
            }
        }
    }
    let tls = node.tls.as_ref();
    let _ = writeln!(
        out,
        "Key file           : {}",
        tls.map(|t| t.key.clone()).unwrap_or_else(none)
    );
    let _ = writeln!(
        out,
        "Certificate file   : {}",
        tls.map(|t| t.cert.clone()).unwrap_or_else(none)
    );
    let _ = write!(
        out,
        "Trust bundle       : {}",
        node.cluster.trust.clone().unwrap_or_else(none)
    );
    out
}

/// A time as CMS prints it in `xmpp cluster status` (`2017-Aug-13 11:37:05`, UTC).
fn cms_time(unix: u64) -> String {
    let format = time::macros::format_description!("[year]-[month repr:short]-[day] [hour]:[minute]:[second]");
    i64::try_from(unix)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// The cluster's faults for `xmpp status`.
pub fn cluster_faults(view: &ClusterView) -> Vec<String> {
    let mut faults = Vec::new();
    if view.members.is_empty() {
        return faults;
    }
    if !view.quorum {
        faults.push("cluster: no quorum (writes are refused)".to_owned());
    }
    for peer in view.members.iter().filter(|p| !p.me && !p.reachable()) {
        faults.push(format!("cluster: peer {} {}", peer.address, peer.health));
    }
    for refused in &view.refused {
        faults.push(format!("cluster: certificate not trusted: {refused}"));
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin, run};
    use crate::{Command, parse};

    fn cluster(line: &str) -> ClusterCommand {
        match parse(line) {
            Ok(Command::Cluster(command)) => command,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn parses_the_cms_command_lines() {
        assert_eq!(
            cluster("xmpp cluster trust cluster-bundle.crt"),
            ClusterCommand::Trust {
                bundle: "cluster-bundle.crt".into()
            }
        );
        assert_eq!(cluster("xmpp cluster enable"), ClusterCommand::Enable);
        assert_eq!(cluster("xmpp cluster disable"), ClusterCommand::Disable);
        assert_eq!(cluster("xmpp cluster initialize"), ClusterCommand::Initialize);
        assert_eq!(
            cluster("xmpp cluster join 10.106.81.30"),
            ClusterCommand::Join {
                address: "10.106.81.30:5270".into(),
                force: false
            }
        );
        assert_eq!(
            cluster("xmpp cluster join node1.example.com:15270 force"),
            ClusterCommand::Join {
                address: "node1.example.com:15270".into(),
                force: true
            }
        );
        assert_eq!(
            cluster("xmpp cluster join fd00::1"),
            ClusterCommand::Join {
                address: "[fd00::1]:5270".into(),
                force: false
            }
        );
        assert_eq!(
            cluster("xmpp cluster remove 10.106.81.32:5270"),
            ClusterCommand::Remove {
                member: "10.106.81.32:5270".into()
            }
        );
        assert_eq!(cluster("xmpp cluster status"), ClusterCommand::Status);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let text = |line: &str| Reply::from(parse(line).expect_err(line)).text;
        assert!(
            text("xmpp cluster join").contains("missing <address>"),
            "{}",
            text("xmpp cluster join")
        );
        assert!(text("xmpp cluster join a:0").contains("invalid port"));
        assert!(text("xmpp cluster join a:5270 now").contains("expected 'force'"));
        assert!(text("xmpp cluster frobnicate").contains("unknown command 'xmpp cluster frobnicate'"));
        assert!(text("xmpp cluster trust ../etc/passwd").contains("xmpp cluster trust"));
    }

    #[test]
    fn without_a_daemon_the_settings_are_kept_and_the_rest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin(dir.path());
        let reply = run(&admin, "xmpp cluster enable");
        assert!(!reply.ok);
        assert!(reply.text.contains("no certificate configured"), "{}", reply.text);
        let reply = run(&admin, "xmpp cluster trust missing.pem");
        assert!(!reply.ok && reply.text.contains("missing.pem"), "{}", reply.text);
        let reply = run(&admin, "xmpp cluster initialize");
        assert_eq!(
            reply.text,
            "FAILURE: xmpp cluster initialize: the daemon is not running"
        );
        let reply = run(&admin, "xmpp cluster status");
        assert!(reply.ok);
        assert!(reply.text.starts_with("State: DISABLED"), "{}", reply.text);
        assert!(reply.text.contains("Trust bundle       : (none)"), "{}", reply.text);
    }

    #[test]
    fn status_lists_peers_in_the_spec_format() {
        let node = sb_store::NodeConfig {
            tls: Some(sb_store::TlsIdentity {
                key: "abhiall.key".into(),
                cert: "abhiall.cer".into(),
                bundle: None,
            }),
            cluster: sb_store::ClusterNodeConfig {
                enabled: true,
                trust: Some("abhiall.cer".into()),
                port: 5270,
            },
            ..sb_store::NodeConfig::default()
        };
        let peer = |address: &str, leader: bool, me: bool, reachable: bool| PeerView {
            address: address.into(),
            node_id: "1".into(),
            leader,
            me,
            voter: true,
            last_contact_unix: (!me).then_some(1_502_624_225),
            health: match (me, reachable) {
                (true, _) => PeerHealth::Me,
                (false, true) => PeerHealth::Reachable,
                (false, false) => PeerHealth::Unreachable {
                    since_unix: Some(1_502_624_225),
                    reason: "timed out (connect)".into(),
                },
            },
        };
        let view = ClusterView {
            state: "FOLLOWER".into(),
            node_id: "00000000000000aa".into(),
            address: "10.106.81.31:5270".into(),
            term: 3,
            last_state_change_unix: 1_502_624_225,
            quorum: true,
            members: vec![
                peer("10.106.81.30:5270", true, false, true),
                peer("10.106.81.31:5270", false, true, true),
                peer("10.106.81.32:5270", false, false, false),
            ],
            refused: Vec::new(),
        };
        let text = render_cluster_status(&node, Some(&view), None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "State: FOLLOWER");
        assert_eq!(lines[1], "List of peers");
        assert!(
            lines[2].starts_with("10.106.81.30:5270 (Leader) last contact "),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], "10.106.81.31:5270 (me)");
        assert!(lines[4].starts_with("10.106.81.32:5270 last contact"), "{}", lines[4]);
        assert_eq!(text.matches("(Leader)").count(), 1);
        assert!(text.contains("Last state change: 2017-Aug-13 11:37:05"), "{text}");
        assert!(text.contains("Term: 3"));
        assert!(text.ends_with("Trust bundle       : abhiall.cer"), "{text}");
        assert_eq!(
            cluster_faults(&view),
            vec![
                "cluster: peer 10.106.81.32:5270 unreachable since 2017-Aug-13 11:37:05: timed out (connect)"
                    .to_owned()
            ]
        );
    }
}
