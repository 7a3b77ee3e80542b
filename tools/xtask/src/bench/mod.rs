//! `cargo xtask bench`: the load generator against a fresh xmppd and, in the same run, against
//! Prosody and ejabberd configured here; then one comparison table. On xmppd a Call Bridge
//! scenario follows: one XEP-0114 component exchanging messages with the users.
//!
//! Servers run one after the other (never concurrently), each on its own loopback address,
//! so they do not compete for the two cores while being measured.

mod cluster;
mod servers;

use crate::deps;
use crate::util::{Args, TaskResult, banner, cargo_build, cargo_build_profile, format_elapsed};
use servers::{Peer, Target};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const HELP: &str = "\
usage: cargo xtask bench [options]

Starts xmppd in a temporary directory with generated users, runs the load generator
(tools/loadgen) against it, then does the same for each peer, and prints a comparison.

On xmppd, a Call Bridge scenario follows the clients' one: Call Bridge cb1 (registered with
`mmp xmpp callbridge add-secret`, its listener on a free port set with `mmp xmpp callbridge
port`) connects over TLS on the socket, the --clients users log in, and messages go both
ways: throughput per direction (--throughput-secs each, one direction after the other),
then --rate msg/s (half each way, both at once) for the latency p50/p99 per direction.

  --peer prosody|ejabberd   also bench this Debian-packaged server (repeatable)
  --peers all               both peers
  --clients N               clients that log in and exchange messages in pairs (default 1000)
  --idle M                  idle authenticated TLS sessions for the memory figure (default 10000)
  --rate R                  aggregate messages/s of the latency phase (default 1000)
  --duration S              seconds of the latency phase (default 10)
  --throughput-secs S       seconds of the unthrottled throughput phase (default 10; 0 skips)
  --concurrency C           logins in flight at once (default 64)
  --source-ips LIST         client source addresses, e.g. 127.0.1.1-250 (default)
  --skip-xmppd              bench only the peers
  --component-only          on xmppd, only the Call Bridge scenario (no idle sessions, no pairs)
  --no-component            skip the Call Bridge scenario
  --component-plain         the Call Bridge over plain TCP (`xmpp callbridge plain on`) instead of TLS
  --debug                   use debug builds instead of release
  --keep                    keep the temporary directories (configs, logs, data)
  --boot [--boots N]        instead: the PVH boot's breakdown per phase under QEMU (TCG), median
                            of N boots (default 5) after a first boot; --ovmf: through the UEFI
                            firmware and the UKI instead
  --cluster                 instead: the cluster's figures (routing and logins against a single
                            node, one replicated write, failover over --kills N kills, default 20);
                            --clients sets the routing clients (default 200 there)
  --kills N                 leader kills of the failover benchmark (with --cluster)";

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub clients: usize,
    pub idle: usize,
    pub rate: u32,
    pub duration_secs: u32,
    pub throughput_secs: u32,
    pub concurrency: usize,
    pub source_ips: String,
    pub peers: Vec<Peer>,
    pub release: bool,
    pub keep: bool,
    pub skip_xmppd: bool,
    pub component: ComponentScenario,
    pub component_plain: bool,
}

/// Whether xmppd's run includes the Call Bridge scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentScenario {
    /// After the clients' scenario.
    Also,
    Only,
    Skip,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            clients: 1000,
            idle: 10_000,
            rate: 1000,
            duration_secs: 10,
            throughput_secs: 10,
            concurrency: 64,
            source_ips: "127.0.1.1-250".to_owned(),
            peers: Vec::new(),
            release: true,
            keep: false,
            skip_xmppd: false,
            component: ComponentScenario::Also,
            component_plain: false,
        }
    }
}

impl BenchOptions {
    /// Every generated account: the idle sessions and the message clients share `bench0..`
    /// (the Call Bridge scenario uses the clients' accounts only).
    pub fn user_count(&self) -> usize {
        let idle = if self.component == ComponentScenario::Only && self.peers.is_empty() {
            0
        } else {
            self.idle
        };
        self.clients.max(idle).max(2)
    }
}

/// Users are `bench{n}` with password `bench-pw-{n}` on every server.
pub const USER_PATTERN: &str = "bench{n}";
pub const PASSWORD_PATTERN: &str = "bench-pw-{n}";
/// The Call Bridge of the component scenario, `cb1.localhost`, and its secret (this bench's
/// throw-away server only).
pub const CALLBRIDGE_NAME: &str = "cb1";
pub const CALLBRIDGE_SECRET: &str = "bench-callbridge-secret";

pub fn bench(args: &[String]) -> TaskResult {
    // The boot breakdown has options of its own and needs no servers.
    if args.iter().any(|a| a == "--boot") {
        return crate::appliance::boot_bench(args);
    }
    let mut options = BenchOptions::default();
    let mut clustered = false;
    let mut clients_given = false;
    let mut kills = 20;
    let mut args = Args::new(args);
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--peer" => {
                let name = args.value("--peer")?;
                let peer =
                    Peer::from_name(&name).ok_or_else(|| format!("unknown peer '{name}' (prosody, ejabberd)"))?;
                if !options.peers.contains(&peer) {
                    options.peers.push(peer);
                }
            }
            "--peers" => {
                let which = args.value("--peers")?;
                if which != "all" {
                    return Err(format!("--peers takes 'all', not '{which}'"));
                }
                options.peers = vec![Peer::Prosody, Peer::Ejabberd];
            }
            "--clients" => {
                options.clients = args.number("--clients")?;
                clients_given = true;
            }
            "--cluster" => clustered = true,
            "--kills" => kills = args.number("--kills")?,
            "--idle" => options.idle = args.number("--idle")?,
            "--rate" => options.rate = args.number("--rate")?,
            "--duration" => options.duration_secs = args.number("--duration")?,
            "--throughput-secs" => options.throughput_secs = args.number("--throughput-secs")?,
            "--concurrency" => options.concurrency = args.number("--concurrency")?,
            "--source-ips" => options.source_ips = args.value("--source-ips")?,
            "--debug" => options.release = false,
            "--keep" => options.keep = true,
            "--skip-xmppd" => options.skip_xmppd = true,
            "--component-only" => options.component = ComponentScenario::Only,
            "--no-component" => options.component = ComponentScenario::Skip,
            "--component-plain" => options.component_plain = true,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'\n{HELP}")),
        }
    }
    if clustered {
        return cluster::run(&cluster::ClusterBench {
            clients: if clients_given { options.clients } else { 200 },
            kills,
            writes: 300,
            release: options.release,
        });
    }
    if options.clients < 2 || options.clients % 2 != 0 {
        return Err("--clients must be an even number of at least 2 (clients talk in pairs)".into());
    }
    let outcome = run_bench(&options)?;
    print_comparison(&options, &outcome.results);
    print_callbridge(&options, outcome.callbridge.as_ref());
    outcome.into_result().map(|_| ())
}

/// The `bench` tier of `cargo xtask test`: tiny numbers against xmppd only, clients and the
/// Call Bridge scenario, to prove the tool chain works end to end. No thresholds; it fails
/// only if logins fail or nothing arrives.
pub fn smoke() -> TaskResult {
    let options = BenchOptions {
        clients: 4,
        idle: 10,
        rate: 20,
        duration_secs: 2,
        throughput_secs: 1,
        concurrency: 4,
        source_ips: "127.0.1.1-4".to_owned(),
        peers: Vec::new(),
        release: false,
        keep: false,
        skip_xmppd: false,
        component: ComponentScenario::Also,
        component_plain: false,
    };
    let mut outcome = run_bench(&options)?;
    print_comparison(&options, &outcome.results);
    print_callbridge(&options, outcome.callbridge.as_ref());
    let callbridge = outcome.callbridge.take();
    let results = outcome.into_result()?;
    let result = results.first().ok_or("no result")?;
    check_delivered(result, &["rate_delivered"])?;
    let callbridge = callbridge.ok_or("no Call Bridge result")?;
    check_delivered(
        &callbridge,
        &[
            "c2u_throughput_delivered",
            "u2c_throughput_delivered",
            "c2u_rate_delivered",
            "u2c_rate_delivered",
        ],
    )
}

/// No failed login, and something delivered in each of these phases.
fn check_delivered(result: &BenchResult, keys: &[&str]) -> TaskResult {
    let failed_logins = result.number("logins_failed").unwrap_or(f64::NAN);
    if failed_logins != 0.0 {
        return Err(format!("{}: {failed_logins} logins failed", result.server));
    }
    for key in keys {
        if result.number(key).unwrap_or(0.0) <= 0.0 {
            return Err(format!("{}: no message delivered ({key})", result.server));
        }
    }
    Ok(())
}

/// One server's figures: the flat JSON object loadgen prints after `RESULT `.
pub struct BenchResult {
    pub server: String,
    pub json: String,
}

impl BenchResult {
    pub fn number(&self, key: &str) -> Option<f64> {
        json_number(&self.json, key)
    }

    pub fn text(&self, key: &str) -> Option<String> {
        json_string(&self.json, key)
    }
}

/// Figures of the servers that worked, and (server, reason) for those that did not: one
/// peer failing to start does not throw away the others' measurements.
struct BenchOutcome {
    results: Vec<BenchResult>,
    /// xmppd's Call Bridge scenario.
    callbridge: Option<BenchResult>,
    failures: Vec<(String, String)>,
}

impl BenchOutcome {
    fn into_result(self) -> TaskResult<Vec<BenchResult>> {
        if self.failures.is_empty() {
            return Ok(self.results);
        }
        let reasons: Vec<String> = self
            .failures
            .iter()
            .map(|(server, reason)| format!("{server}: {}", reason.lines().next().unwrap_or_default()))
            .collect();
        Err(format!("bench failed for {}", reasons.join("; ")))
    }
}

fn run_bench(options: &BenchOptions) -> TaskResult<BenchOutcome> {
    let mut wanted: Vec<&str> = options.peers.iter().map(|peer| peer.debian_package()).collect();
    if !wanted.is_empty() {
        wanted.push("openssl");
        deps::ensure_packages(&wanted)?;
    }
    let bin = if options.skip_xmppd {
        PathBuf::new()
    } else {
        cargo_build(&["xmppd", "mmp"], options.release)?
    };
    // The load generator never ships: its 'tools' profile trades size for speed, so it takes
    // less of the CPU it shares with the server under test. xmppd is measured as it ships.
    let loadgen = cargo_build_profile(&["loadgen"], if options.release { "tools" } else { "dev" })?.join("loadgen");
    let mut outcome = BenchOutcome {
        results: Vec::new(),
        callbridge: None,
        failures: Vec::new(),
    };
    let mut targets = if options.skip_xmppd { Vec::new() } else { vec![None] };
    targets.extend(options.peers.iter().copied().map(Some));
    for peer in targets {
        let name = peer.map_or("xmppd", |p| p.name());
        banner(&format!("bench: {name}"));
        if let Err(err) = bench_one(options, &bin, &loadgen, peer, &mut outcome) {
            println!("bench: {name} FAILED: {err}");
            outcome.failures.push((name.to_owned(), err));
        }
    }
    Ok(outcome)
}

/// Start one server, run its scenarios (a failing scenario is recorded and the next one
/// still runs), stop it.
fn bench_one(
    options: &BenchOptions,
    bin: &Path,
    loadgen: &Path,
    peer: Option<Peer>,
    outcome: &mut BenchOutcome,
) -> TaskResult {
    let name = peer.map_or("xmppd", |p| p.name());
    let begun = Instant::now();
    let mut target = match peer {
        None => servers::start_xmppd(options, bin)?,
        Some(peer) => servers::start_peer(peer, options, loadgen)?,
    };
    println!(
        "{name} ready on {} after {}",
        target.addr,
        format_elapsed(begun.elapsed())
    );
    if peer.is_some() || options.component != ComponentScenario::Only {
        match run_loadgen(options, loadgen, &target) {
            Ok(result) => outcome.results.push(result),
            Err(err) => outcome.failures.push((name.to_owned(), err)),
        }
    }
    if let Some(endpoint) = target
        .callbridge
        .filter(|_| options.component != ComponentScenario::Skip)
    {
        banner(&format!("bench: {name} with Call Bridge {CALLBRIDGE_NAME}"));
        match run_loadgen_callbridge(options, loadgen, &target, endpoint) {
            Ok(result) => outcome.callbridge = Some(result),
            Err(err) => outcome.failures.push((format!("{name} Call Bridge"), err)),
        }
    }
    let stopped = target.stop();
    println!("{name}: {stopped}");
    if options.keep {
        target.keep();
    }
    Ok(())
}

/// The arguments every scenario shares: server, users, phases.
fn loadgen_command(options: &BenchOptions, loadgen: &Path, target: &Target, label: &str) -> Command {
    let mut command = Command::new(loadgen);
    command
        .arg("--host")
        .arg(target.addr.ip().to_string())
        .arg("--port")
        .arg(target.addr.port().to_string())
        .arg("--domain")
        .arg(&target.domain)
        .arg("--users")
        .arg(USER_PATTERN)
        .arg("--password")
        .arg(PASSWORD_PATTERN)
        .arg("--label")
        .arg(label)
        .arg("--clients")
        .arg(options.clients.to_string())
        .arg("--rate")
        .arg(options.rate.to_string())
        .arg("--duration")
        .arg(options.duration_secs.to_string())
        .arg("--throughput-secs")
        .arg(options.throughput_secs.to_string())
        .arg("--concurrency")
        .arg(options.concurrency.to_string())
        .arg("--source-ips")
        .arg(&options.source_ips);
    command
}

/// The Call Bridge scenario: no idle sessions; the users exchange messages with cb1.
fn run_loadgen_callbridge(
    options: &BenchOptions,
    loadgen: &Path,
    target: &Target,
    endpoint: servers::CallbridgeEndpoint,
) -> TaskResult<BenchResult> {
    let label = format!("{} Call Bridge", target.name);
    let mut command = loadgen_command(options, loadgen, target, &label);
    command
        .args([
            "--idle",
            "0",
            "--component",
            CALLBRIDGE_NAME,
            "--component-secret",
            CALLBRIDGE_SECRET,
        ])
        .arg("--component-port")
        .arg(endpoint.port.to_string());
    if endpoint.plain {
        command.arg("--component-plain");
    }
    collect_result(command, loadgen, &label)
}

fn run_loadgen(options: &BenchOptions, loadgen: &Path, target: &Target) -> TaskResult<BenchResult> {
    let mut command = loadgen_command(options, loadgen, target, &target.name);
    command.arg("--idle").arg(options.idle.to_string());
    if let Some(pid) = target.rss_pid {
        command.arg("--pid").arg(pid.to_string());
    }
    collect_result(command, loadgen, &target.name)
}

/// Run loadgen, echo its report, and keep its `RESULT` line.
fn collect_result(mut command: Command, loadgen: &Path, label: &str) -> TaskResult<BenchResult> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", loadgen.display()))?;
    let mut json = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match line.strip_prefix("RESULT ") {
                Some(result) => json = Some(result.to_owned()),
                None => println!("{line}"),
            }
        }
    }
    let status = child.wait().map_err(|err| format!("waiting for loadgen: {err}"))?;
    let json = json.ok_or_else(|| format!("loadgen against {label} printed no result ({status})"))?;
    if !status.success() {
        println!("loadgen against {label} reported problems ({status})");
    }
    Ok(BenchResult {
        server: label.to_owned(),
        json,
    })
}

fn print_comparison(options: &BenchOptions, results: &[BenchResult]) {
    if results.is_empty() {
        // --component-only: the Call Bridge table follows on its own.
        return;
    }
    banner("bench: comparison");
    println!(
        "{} clients in pairs, {} idle sessions, throughput phase {}s, latency phase {} msg/s for {}s",
        options.clients, options.idle, options.throughput_secs, options.rate, options.duration_secs
    );
    let header = [
        "server",
        "SASL",
        "idle",
        "KiB/idle",
        "idle logins/s",
        "logins/s",
        "srv ms/login",
        "msgs/s max",
        "srv us/msg",
        "p50 ms",
        "p99 ms",
        "lost",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for result in results {
        let number = |key: &str, decimals: usize| {
            result
                .number(key)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
        };
        rows.push(vec![
            result.server.clone(),
            result.text("mechanism").unwrap_or_else(|| "-".to_owned()),
            number("idle_sessions", 0),
            number("idle_kib_per_session", 1),
            number("idle_logins_per_s", 0),
            number("logins_per_s", 0),
            number("logins_server_cpu_ms", 3),
            number("throughput_delivered_per_s", 0),
            number("throughput_server_cpu_us_per_msg", 1),
            number("rate_p50_ms", 2),
            number("rate_p99_ms", 2),
            number("rate_lost", 0),
        ]);
    }
    print_table(&rows);
    println!(
        "  idle logins/s: the idle sessions logging in (first login: the client runs PBKDF2); \
         logins/s: the clients logging in again with their cached SaltedPassword; msgs/s max: \
         unthrottled, a bounded window in flight per sender; srv ms/login, srv us/msg: the \
         server's CPU time (user + system, all threads) per login and per delivered message, which \
         does not depend on how the two cores were shared with the load generator; p50/p99/lost: \
         at {} msg/s",
        options.rate
    );
    if let Some(ours) = results.first().filter(|r| r.server == "xmppd") {
        for (key, what) in [
            ("idle_logins_per_s", "logins/s (idle sessions, cold)"),
            ("logins_per_s", "logins/s"),
            ("throughput_delivered_per_s", "messages/s"),
        ] {
            let best_peer = results[1..]
                .iter()
                .filter_map(|r| r.number(key).map(|v| (v, &r.server)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let (Some(mine), Some((theirs, peer))) = (ours.number(key), best_peer)
                && theirs > 0.0
            {
                println!("xmppd {what}: {:.2}x the best peer ({peer})", mine / theirs);
            }
        }
        for (key, what) in [
            (
                "idle_logins_server_cpu_ms",
                "server CPU per first login (idle sessions)",
            ),
            ("logins_server_cpu_ms", "server CPU per login"),
            ("throughput_server_cpu_us_per_msg", "server CPU per message"),
        ] {
            let leanest_peer = results[1..]
                .iter()
                .filter_map(|r| r.number(key).map(|v| (v, &r.server)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let (Some(mine), Some((theirs, peer))) = (ours.number(key), leanest_peer)
                && mine > 0.0
            {
                println!(
                    "xmppd {what}: {mine:.3} against {theirs:.3} for the leanest peer ({peer}): {:.2}x the work per \
                     CPU-second",
                    theirs / mine
                );
            }
        }
    }
    for result in results {
        println!("RESULT {}", result.json);
    }
}

/// The Call Bridge scenario's figures, one row per direction.
fn print_callbridge(options: &BenchOptions, result: Option<&BenchResult>) {
    let Some(result) = result else { return };
    banner("bench: Call Bridge (XEP-0114 component)");
    let transport = match json_raw_value(&result.json, "component_tls") {
        Some("false") => "plain TCP",
        _ => "TLS",
    };
    println!(
        "{}.localhost over {transport}, {} users; throughput phase {}s per direction, latency phase {} msg/s \
         ({} each way, both at once) for {}s",
        CALLBRIDGE_NAME,
        options.clients,
        options.throughput_secs,
        options.rate,
        f64::from(options.rate) / 2.0,
        options.duration_secs
    );
    let header = ["direction", "msgs/s max", "msgs/s", "p50 ms", "p99 ms", "lost"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (name, prefix) in [("bridge -> users", "c2u"), ("users -> bridge", "u2c")] {
        let number = |key: &str, decimals: usize| {
            result
                .number(&format!("{prefix}_{key}"))
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
        };
        rows.push(vec![
            name.to_owned(),
            number("throughput_delivered_per_s", 0),
            number("rate_delivered_per_s", 0),
            number("rate_p50_ms", 2),
            number("rate_p99_ms", 2),
            number("rate_lost", 0),
        ]);
    }
    print_table(&rows);
    println!(
        "  msgs/s max: one direction at a time, a bounded window in flight; msgs/s, p50/p99, lost: \
         at {} msg/s each way",
        f64::from(options.rate) / 2.0
    );
    println!("RESULT {}", result.json);
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(String::len).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        println!("  {}", cells.join("  "));
    }
}

/// `"key":123.4` in a flat JSON object (loadgen's result line has unique flat keys).
fn json_number(json: &str, key: &str) -> Option<f64> {
    let raw = json_raw_value(json, key)?;
    raw.parse().ok()
}

fn json_string(json: &str, key: &str) -> Option<String> {
    let raw = json_raw_value(json, key)?;
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

fn json_raw_value<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    let rest = json[start..].trim_start();
    let end = if rest.starts_with('"') {
        // The closing quote is the first one not escaped by a backslash.
        let bytes = rest.as_bytes();
        let mut index = 1;
        while index < bytes.len() && (bytes[index] != b'"' || bytes[index - 1] == b'\\') {
            index += 1;
        }
        (index + 1).min(rest.len())
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"label":"xmppd","mechanism":"SCRAM-SHA-256","logins_per_s":1234.5,"rate_lost":0,"idle_kib_per_session":null,"note":"a \"q\" b"}"#;

    #[test]
    fn reads_numbers_and_strings_from_the_result_line() {
        assert_eq!(json_number(SAMPLE, "logins_per_s"), Some(1234.5));
        assert_eq!(json_number(SAMPLE, "rate_lost"), Some(0.0));
        assert_eq!(json_number(SAMPLE, "idle_kib_per_session"), None);
        assert_eq!(json_number(SAMPLE, "absent"), None);
        assert_eq!(json_string(SAMPLE, "mechanism").as_deref(), Some("SCRAM-SHA-256"));
        assert_eq!(json_string(SAMPLE, "note").as_deref(), Some("a \"q\" b"));
    }

    #[test]
    fn user_count_covers_clients_and_idle_sessions() {
        let options = BenchOptions {
            clients: 100,
            idle: 10,
            ..BenchOptions::default()
        };
        assert_eq!(options.user_count(), 100);
        let options = BenchOptions {
            clients: 100,
            idle: 5000,
            ..BenchOptions::default()
        };
        assert_eq!(options.user_count(), 5000);
        let options = BenchOptions {
            clients: 100,
            idle: 5000,
            component: ComponentScenario::Only,
            ..BenchOptions::default()
        };
        assert_eq!(options.user_count(), 100);
    }
}
