//! `GET /metrics`: Prometheus text format (version 0.0.4), HTTP Basic as `admin` like the API.
//! Names follow Prometheus conventions: a `switchboard_` prefix, base units (`_bytes`,
//! `_seconds`), `_total` on counters, the standard `process_` names.

use crate::AppState;
use crate::auth::{BasicAuth, LoginOutcome};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

/// The web admin's own counters.
#[derive(Default)]
pub struct WebCounters {
    logins_accepted: AtomicU64,
    logins_refused: AtomicU64,
    logins_limited: AtomicU64,
}

impl WebCounters {
    pub fn login(&self, outcome: LoginOutcome) {
        let counter = match outcome {
            LoginOutcome::Accepted => &self.logins_accepted,
            LoginOutcome::Refused => &self.logins_refused,
            LoginOutcome::Limited => &self.logins_limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Prometheus text, one family at a time.
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.text, "{name} {value}");
            } else {
                let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
            }
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help, &[("", value)]);
    }
}

async fn metrics(_auth: BasicAuth, State(state): State<Arc<AppState>>) -> Response {
    let collected = {
        let state = Arc::clone(&state);
        tokio::task::spawn_blocking(move || render(&state)).await
    };
    let text = collected.unwrap_or_else(|err| format!("# metrics collection failed: {err}\n"));
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The exposition text, read from the running daemon, the store's folder and `/proc`.
pub fn render(state: &AppState) -> String {
    let mut out = Exposition { text: String::new() };
    let live = state.admin.live_status().unwrap_or_default();
    out.one(
        "switchboard_xmpp_up",
        "gauge",
        "1 when the XMPP service accepts connections on this node.",
        f64::from(u8::from(live.running)),
    );
    out.one(
        "switchboard_sessions",
        "gauge",
        "Client sessions bound on this node.",
        live.sessions.len() as f64,
    );
    out.one(
        "switchboard_callbridges_connected",
        "gauge",
        "Call Bridges connected and authenticated.",
        live.callbridges.len() as f64,
    );
    let failures: u64 = live
        .component_auth_failures
        .iter()
        .map(|f| u64::from(f.count.max(1)))
        .sum();
    out.one(
        "switchboard_callbridge_auth_failures_recent",
        "gauge",
        "Refused Call Bridge handshakes the daemon still remembers (bounded, newest kept).",
        failures as f64,
    );
    let counters = sb_server::counters::snapshot();
    out.family(
        "switchboard_logins_total",
        "counter",
        "Client logins (SASL) by result.",
        &[
            ("result=\"success\"", counters.logins as f64),
            ("result=\"failure\"", counters.login_failures as f64),
        ],
    );
    out.one(
        "switchboard_stanzas_routed_total",
        "counter",
        "Stanzas that went through the router.",
        counters.stanzas_routed as f64,
    );
    out.one(
        "switchboard_queue_drops_total",
        "counter",
        "Stanzas refused because the receiving session's queue or memory budget was full.",
        counters.queue_drops as f64,
    );
    let federation = state.admin.federation_status().unwrap_or_default();
    let links = |direction: &str| federation.links.iter().filter(|l| l.direction == direction).count() as f64;
    out.family(
        "switchboard_federation_links",
        "gauge",
        "Server-to-server links by direction.",
        &[
            ("direction=\"incoming\"", links("incoming")),
            ("direction=\"outgoing\"", links("outgoing")),
        ],
    );
    let web = &state.counters;
    out.family(
        "switchboard_web_logins_total",
        "counter",
        "Web admin and API logins by result.",
        &[
            (
                "result=\"accepted\"",
                web.logins_accepted.load(Ordering::Relaxed) as f64,
            ),
            ("result=\"refused\"", web.logins_refused.load(Ordering::Relaxed) as f64),
            ("result=\"limited\"", web.logins_limited.load(Ordering::Relaxed) as f64),
        ],
    );
    out.one(
        "switchboard_web_sessions",
        "gauge",
        "Web admin login sessions.",
        state.sessions.count() as f64,
    );
    out.one(
        "switchboard_store_size_bytes",
        "gauge",
        "Bytes of the files in the data folder (store, cluster log, certificates).",
        folder_bytes(state.admin.dir(), 4) as f64,
    );
    if let Some(cluster) = &live.cluster {
        out.one(
            "switchboard_cluster_term",
            "gauge",
            "The cluster's Raft term.",
            cluster.term as f64,
        );
        out.one(
            "switchboard_cluster_leader",
            "gauge",
            "1 when this node is the cluster's leader.",
            f64::from(u8::from(cluster.state == "LEADER")),
        );
        out.one(
            "switchboard_cluster_quorum",
            "gauge",
            "1 when a leader backed by a majority answers.",
            f64::from(u8::from(cluster.quorum)),
        );
        let healthy = cluster
            .members
            .iter()
            .filter(|peer| matches!(peer.health, sb_admin::PeerHealth::Me | sb_admin::PeerHealth::Reachable))
            .count();
        out.one(
            "switchboard_cluster_peers_healthy",
            "gauge",
            "Cluster members that answer.",
            healthy as f64,
        );
    }
    if let Some(rss) = resident_bytes() {
        out.one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss as f64,
        );
    }
    if let Some(cpu) = cpu_seconds() {
        out.one(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu,
        );
    }
    out.text
}

/// Bytes of the regular files under `dir`, `depth` levels down at most.
fn folder_bytes(dir: &Path, depth: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(meta) if meta.is_dir() && depth > 0 => folder_bytes(&entry.path(), depth - 1),
            _ => 0,
        })
        .sum()
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// utime + stime from `/proc/self/stat`, in USER_HZ ticks, which Linux fixes at 100 for
/// everything it reports in `/proc`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc() {
        assert!(resident_bytes().is_some_and(|rss| rss > 0));
        assert!(cpu_seconds().is_some_and(|cpu| cpu >= 0.0));
    }

    #[test]
    fn families_have_help_type_and_samples() {
        let mut out = Exposition { text: String::new() };
        out.family("x_total", "counter", "Things.", &[("a=\"b\"", 2.0)]);
        assert_eq!(
            out.text,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"b\"} 2\n"
        );
    }
}
