//! `/status` and the API's `GET status`: node, firmware, uptime, the XMPP service, sessions,
//! Call Bridges (and recent authentication faults), federation links, the cluster.

use crate::auth::LoggedIn;
use crate::html::{escape, table};
use crate::{AppState, pages::html};
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// Everything the status page shows, as JSON (the API's answer).
pub async fn snapshot(state: &Arc<AppState>) -> Value {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || collect(&state))
        .await
        .unwrap_or_else(|err| json!({ "error": format!("status collection failed: {err}") }))
}

fn collect(state: &AppState) -> Value {
    let admin = &state.admin;
    let config = admin.store().xmpp_config().unwrap_or_default();
    let live = admin.live_status();
    let federation = admin.federation_status().unwrap_or_default();
    let live_or_default = live.clone().unwrap_or_default();
    json!({
        "node": admin.hostname(),
        "firmware_version": env!("CARGO_PKG_VERSION"),
        "system_uptime_secs": system_uptime_secs(),
        "daemon_uptime_secs": state.started.elapsed().as_secs(),
        "xmpp": {
            "enabled": config.enabled,
            "running": live_or_default.running,
            "domain": config.domain,
            "component_port": config.component_port,
            "listeners": live_or_default.listeners,
        },
        "daemon_running": live.is_some(),
        "sessions": live_or_default.sessions,
        "callbridges": live_or_default.callbridges,
        "callbridge_auth_failures": live_or_default.component_auth_failures,
        "federation": {
            "running": federation.running,
            "listeners": federation.listeners,
            "links": federation.links,
        },
        "cluster": live_or_default.cluster,
        "cluster_error": live_or_default.cluster_error,
    })
}

fn system_uptime_secs() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map(|secs| secs as u64)
        .unwrap_or(0)
}

fn duration(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    if days > 0 {
        format!("{days} d {hours} h {minutes} min")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else {
        format!("{minutes} min {} s", secs % 60)
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn ago(unix: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match unix.as_u64() {
        Some(at) if at > 0 => format!("{} ago", duration(now.saturating_sub(at))),
        _ => String::new(),
    }
}

fn rows(list: &Value, cells: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| items.iter().map(cells).collect())
        .unwrap_or_default()
}

pub async fn page(session: LoggedIn, State(state): State<Arc<AppState>>) -> Response {
    let s = snapshot(&state).await;
    let xmpp = &s["xmpp"];
    let service = match (xmpp["enabled"].as_bool(), xmpp["running"].as_bool()) {
        (_, Some(true)) => "<span class=\"good\">running</span>",
        (Some(true), _) => "<span class=\"bad\">enabled, not running</span>",
        _ => "<span class=\"bad\">disabled</span>",
    };
    let listeners: Vec<String> = xmpp["listeners"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| {
                    let address = l["address"].as_str().unwrap_or_default();
                    let port = xmpp["component_port"].as_u64().unwrap_or(0);
                    let service = if port != 0
                        && address
                            .split(' ')
                            .next()
                            .is_some_and(|a| a.ends_with(&format!(":{port}")))
                    {
                        "Call Bridges"
                    } else {
                        "clients"
                    };
                    let service = format!("<span class=\"service\">{service}</span>");
                    match l["error"].as_str() {
                        Some(error) => format!("{} {service} (NOT listening: {})", escape(address), escape(error)),
                        None => format!("{} {service}", escape(address)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut body = format!(
        "<section><dl class=\"facts\" id=\"node\">\
         <dt>Node</dt><dd id=\"node-name\">{node}</dd>\
         <dt>Firmware</dt><dd>{version}</dd>\
         <dt>Uptime</dt><dd>{uptime} (daemon {daemon})</dd>\
         <dt>XMPP service</dt><dd id=\"xmpp-state\">{service}</dd>\
         <dt>Domain</dt><dd>{domain}</dd>\
         <dt>Listening</dt><dd>{listeners}</dd></dl></section>",
        node = text(&s["node"]),
        version = text(&s["firmware_version"]),
        uptime = duration(s["system_uptime_secs"].as_u64().unwrap_or(0)),
        daemon = duration(s["daemon_uptime_secs"].as_u64().unwrap_or(0)),
        domain = text(&xmpp["domain"]),
        listeners = if listeners.is_empty() {
            "(none)".to_owned()
        } else {
            listeners.join("<br>")
        },
    );
    body.push_str("<h2>Sessions</h2>");
    body.push_str(&table(
        "sessions",
        &["JID", "From", "Since", "TLS"],
        &rows(&s["sessions"], |x| {
            vec![
                text(&x["jid"]),
                text(&x["peer"]),
                ago(&x["since_unix"]),
                text(&x["tls"]),
            ]
        }),
    ));
    body.push_str("<h2>Call Bridges connected</h2>");
    body.push_str(&table(
        "callbridges-connected",
        &["Name", "From", "Since", "TLS"],
        &rows(&s["callbridges"], |x| {
            vec![
                text(&x["name"]),
                text(&x["peer"]),
                ago(&x["since_unix"]),
                text(&x["tls"]),
            ]
        }),
    ));
    body.push_str("<h3>Recent Call Bridge authentication faults</h3>");
    body.push_str(&table(
        "callbridge-faults",
        &["Name", "From", "Reason", "Count", "Last"],
        &rows(&s["callbridge_auth_failures"], |x| {
            vec![
                text(&x["name"]),
                text(&x["peer"]),
                text(&x["reason"]).replace('_', " "),
                text(&x["count"]),
                ago(&x["at_unix"]),
            ]
        }),
    ));
    body.push_str("<h2>Federation links</h2>");
    body.push_str(&table(
        "federation-links",
        &["Peer", "Direction", "State", "TLS", "Authentication", "Since"],
        &rows(&s["federation"]["links"], |x| {
            vec![
                text(&x["peer_domain"]),
                text(&x["direction"]),
                text(&x["state"]),
                if x["tls"].is_null() {
                    "plain TCP".to_owned()
                } else {
                    text(&x["tls"])
                },
                text(&x["auth"]),
                ago(&x["since_unix"]),
            ]
        }),
    ));
    body.push_str("<h2>Cluster</h2>");
    let cluster = &s["cluster"];
    if cluster.is_null() {
        let note = match s["cluster_error"].as_str() {
            Some(error) => format!("Not running: {}", escape(error)),
            None => "This node is not in a cluster.".to_owned(),
        };
        body.push_str(&format!("<p id=\"cluster\">{note}</p>"));
    } else {
        body.push_str(&format!(
            "<p id=\"cluster\">{} (term {}), quorum: {}</p>",
            text(&cluster["state"]),
            text(&cluster["term"]),
            text(&cluster["quorum"])
        ));
        body.push_str(&table(
            "cluster-peers",
            &["Address", "Node", "Leader", "Health"],
            &rows(&cluster["members"], |x| {
                vec![
                    text(&x["address"]),
                    text(&x["node_id"]),
                    if x["leader"].as_bool() == Some(true) {
                        "leader".to_owned()
                    } else {
                        String::new()
                    },
                    text(&x["health"]),
                ]
            }),
        ));
    }
    html(crate::html::page("Status", "/status", &session.csrf, &body))
}
