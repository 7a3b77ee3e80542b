//! `xmpp callbridge port <port>|off` and `xmpp callbridge plain on|off`: where Call Bridges
//! connect, and whether a loopback listener may skip TLS. The daemon re-reads the
//! configuration on every change, so the listener moves (or switches between TLS and plain
//! TCP, keeping its socket) without a restart; established bridges stay connected.

use crate::command::{Args, ParseError};
use crate::{Admin, Reply};
use sb_store::{ListenHost, ListenTarget, XmppConfig};

/// The clients' port of a listen entry that names none (xmppd's default).
const DEFAULT_C2S_PORT: u16 = 5222;

/// `<port>` (1-65535) or `off`, which is stored as port 0.
pub(super) fn parse_port(words: &[String]) -> Result<u16, ParseError> {
    let mut args = Args::new("xmpp callbridge port", words);
    let word = args.required("<port>|off")?;
    let port = if word == "off" {
        0
    } else {
        word.parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| args.invalid(format!("invalid port '{word}': expected 1-65535 or off")))?
    };
    args.end()?;
    Ok(port)
}

/// `on` or `off`.
pub(super) fn parse_plain(words: &[String]) -> Result<bool, ParseError> {
    let mut args = Args::new("xmpp callbridge plain", words);
    let word = args.required("on|off")?;
    let on = match word {
        "on" => true,
        "off" => false,
        other => return Err(args.invalid(format!("expected on or off, not '{other}'"))),
    };
    args.end()?;
    Ok(on)
}

pub(super) fn set_port(admin: &Admin, port: u16) -> Reply {
    // Checked before the update, so a refused port writes nothing.
    let refused = match admin.store().xmpp_config() {
        Ok(config) => port_conflict(&config, port),
        Err(err) => return Reply::failure(format!("xmpp callbridge port: {err}")),
    };
    let stored = match refused {
        Some(_) => admin.store().xmpp_config().map_err(sb_store::WriteError::from),
        None => admin.update_xmpp_config(|config| config.component_port = port),
    };
    match (stored, refused) {
        (Err(err), _) => Reply::failure(format!("xmpp callbridge port: {err}")),
        (Ok(_), Some(reason)) => Reply::failure(format!("xmpp callbridge port: {reason}")),
        (Ok(config), None) => {
            log::info!("Call Bridge port set to {}", listener_summary(&config));
            Reply::output(format!("Call Bridge port: {}\nSUCCESS", listener_summary(&config)))
        }
    }
}

pub(super) fn set_plain(admin: &Admin, on: bool) -> Reply {
    match admin.update_xmpp_config(|config| config.component_plain = on) {
        Err(err) => Reply::failure(format!("xmpp callbridge plain: {err}")),
        Ok(config) => {
            log::info!("Call Bridge listener: {}", listener_summary(&config));
            let pending = if on && config.component_port == 0 {
                "; plain TCP applies to loopback addresses once a port is set (xmpp callbridge port <port>)"
            } else {
                ""
            };
            Reply::output(format!(
                "Call Bridge port: {}{pending}\nSUCCESS",
                listener_summary(&config)
            ))
        }
    }
}

/// Why `port` cannot be the Call Bridge port: it is the clients' port of a listen entry
/// (both would bind the same address). Port 0 (off) never conflicts.
pub fn port_conflict(config: &XmppConfig, port: u16) -> Option<String> {
    if port == 0 {
        return None;
    }
    if config.listen.is_empty() && port == DEFAULT_C2S_PORT {
        return Some(format!(
            "port {port} is the clients' default port; Call Bridges need a port of their own"
        ));
    }
    config.listen.iter().find(|entry| c2s_port(entry) == port).map(|entry| {
        format!("port {port} is the clients' port of listen address {entry}; Call Bridges need a port of their own")
    })
}

/// The port, TLS or plain TCP, and where plain TCP cannot apply: one line for `xmpp status`
/// and the commands' replies.
pub fn listener_summary(config: &XmppConfig) -> String {
    let port = config.component_port;
    if port == 0 {
        return "off".to_owned();
    }
    if !config.component_plain {
        return format!("{port}, TLS");
    }
    let (loopback, other): (Vec<&String>, Vec<&String>) =
        config.listen.iter().partition(|entry| is_loopback_entry(entry));
    let hosts = |entries: &[&String]| entries.iter().map(|e| host_of(e)).collect::<Vec<_>>().join(", ");
    match (loopback.is_empty(), other.is_empty()) {
        (false, true) => format!("{port}, plain TCP (loopback addresses only)"),
        (false, false) => format!(
            "{port}, plain TCP on {}; TLS on {} (plain TCP applies to loopback addresses only)",
            hosts(&loopback),
            hosts(&other)
        ),
        (true, _) => format!(
            "{port}, TLS (plain TCP is on, but it applies to loopback listen addresses only and none is configured)"
        ),
    }
}

/// A stored listen entry; entries were validated when set, so one that no longer parses
/// is simply left out of these summaries.
fn entry(text: &str) -> Option<ListenTarget> {
    ListenTarget::parse(text).ok()
}

/// Only loopback IP addresses may serve plain TCP; an interface entry keeps TLS in this
/// summary, as its addresses are the machine's network addresses.
fn is_loopback_entry(text: &str) -> bool {
    entry(text).is_some_and(|target| matches!(target.host, ListenHost::Address(ip) if ip.is_loopback()))
}

/// The clients' port of a listen entry: its explicit `:port`, else the default.
fn c2s_port(text: &str) -> u16 {
    entry(text).and_then(|target| target.port).unwrap_or(DEFAULT_C2S_PORT)
}

/// Where the component listener of an entry binds, without the clients' port.
fn host_of(text: &str) -> String {
    match entry(text).map(|target| target.host) {
        Some(ListenHost::Address(ip)) => ip.to_string(),
        Some(ListenHost::Interface(name)) => name,
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{admin_with_node, run};

    fn config(listen: &[&str], port: u16, plain: bool) -> XmppConfig {
        XmppConfig {
            listen: listen.iter().map(|s| s.to_string()).collect(),
            component_port: port,
            component_plain: plain,
            ..XmppConfig::default()
        }
    }

    #[test]
    fn a_client_port_is_not_a_call_bridge_port() {
        let listen = config(
            &["127.0.0.1", "192.0.2.7:15222", "[::1]:5300", "eth0:5400"],
            5223,
            false,
        );
        assert!(port_conflict(&listen, 5223).is_none());
        assert!(port_conflict(&listen, 0).is_none());
        for (port, entry) in [
            (5222, "127.0.0.1"),
            (15222, "192.0.2.7:15222"),
            (5300, "[::1]:5300"),
            (5400, "eth0:5400"),
        ] {
            let reason = port_conflict(&listen, port).unwrap();
            assert!(reason.contains(&format!("listen address {entry};")), "{reason}");
        }
        // Every listen entry names its port: 5222 is free.
        assert!(port_conflict(&config(&["127.0.0.1:15222"], 5223, false), 5222).is_none());
        // Nothing configured yet: the clients will take the default port.
        assert!(
            port_conflict(&config(&[], 5223, false), 5222)
                .unwrap()
                .contains("default port")
        );
    }

    #[test]
    fn the_summary_says_where_plain_tcp_applies() {
        assert_eq!(listener_summary(&config(&["127.0.0.1"], 0, true)), "off");
        assert_eq!(listener_summary(&config(&["127.0.0.1"], 5223, false)), "5223, TLS");
        assert_eq!(
            listener_summary(&config(&["127.0.0.1", "[::1]:5300"], 15223, true)),
            "15223, plain TCP (loopback addresses only)"
        );
        assert_eq!(
            listener_summary(&config(&["127.0.0.1:15222", "192.0.2.7", "eth0:5222"], 5223, true)),
            "5223, plain TCP on 127.0.0.1; TLS on 192.0.2.7, eth0 (plain TCP applies to loopback addresses only)"
        );
        assert!(
            listener_summary(&config(&["192.0.2.7"], 5223, true))
                .starts_with("5223, TLS (plain TCP is on, but it applies to loopback listen addresses only")
        );
    }

    #[test]
    fn port_and_plain_are_stored_announced_or_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, node) = admin_with_node(dir.path());
        assert_eq!(run(&admin, "xmpp listen 127.0.0.5 192.0.2.7:15222").text, "SUCCESS");
        let changes = node.config_changes();

        assert_eq!(
            run(&admin, "xmpp callbridge port 15223").text,
            "Call Bridge port: 15223, TLS\nSUCCESS"
        );
        assert_eq!(admin.store().xmpp_config().unwrap().component_port, 15223);
        assert_eq!(node.config_changes(), changes + 1);

        let reply = run(&admin, "xmpp callbridge plain on");
        assert!(reply.ok);
        assert_eq!(
            reply.text,
            "Call Bridge port: 15223, plain TCP on 127.0.0.5; TLS on 192.0.2.7 (plain TCP applies to loopback \
             addresses only)\nSUCCESS"
        );
        assert!(admin.store().xmpp_config().unwrap().component_plain);
        assert_eq!(node.config_changes(), changes + 2);

        for port in ["5222", "15222"] {
            let reply = run(&admin, &format!("xmpp callbridge port {port}"));
            assert!(!reply.ok);
            assert!(
                reply.text.starts_with(&format!(
                    "FAILURE: xmpp callbridge port: port {port} is the clients' port"
                )),
                "{}",
                reply.text
            );
        }
        assert_eq!(admin.store().xmpp_config().unwrap().component_port, 15223);
        assert_eq!(node.config_changes(), changes + 2);

        assert_eq!(
            run(&admin, "xmpp callbridge port off").text,
            "Call Bridge port: off\nSUCCESS"
        );
        assert_eq!(admin.store().xmpp_config().unwrap().component_port, 0);
        assert_eq!(
            run(&admin, "xmpp callbridge plain on").text,
            "Call Bridge port: off; plain TCP applies to loopback addresses once a port is set (xmpp callbridge \
             port <port>)\nSUCCESS"
        );
        assert_eq!(
            run(&admin, "xmpp callbridge plain off").text,
            "Call Bridge port: off\nSUCCESS"
        );
        assert!(!admin.store().xmpp_config().unwrap().component_plain);
    }
}
