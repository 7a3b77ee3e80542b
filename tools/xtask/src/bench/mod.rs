//! `cargo xtask bench`: the load generator against a fresh xmppd and, in the same run, against
//! Prosody and ejabberd configured here; then one comparison table.
//!
//! Servers run one after the other (never concurrently), each on its own loopback address,
//! so they do not compete for the two cores while being measured.

mod servers;

use crate::deps;
use crate::util::{Args, TaskResult, banner, cargo_build, format_elapsed};
use servers::{Peer, Target};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const HELP: &str = "\
usage: cargo xtask bench [options]

Starts xmppd in a temporary directory with generated users, runs the load generator
(tools/loadgen) against it, then does the same for each peer, and prints a comparison.

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
  --debug                   use debug builds instead of release
  --keep                    keep the temporary directories (configs, logs, data)";

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
        }
    }
}

impl BenchOptions {
    /// Every generated account: the idle sessions and the message clients share `bench0..`.
    pub fn user_count(&self) -> usize {
        self.clients.max(self.idle).max(2)
    }
}

/// Users are `bench{n}` with password `bench-pw-{n}` on every server.
pub const USER_PATTERN: &str = "bench{n}";
pub const PASSWORD_PATTERN: &str = "bench-pw-{n}";

pub fn bench(args: &[String]) -> TaskResult {
    let mut options = BenchOptions::default();
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
            "--clients" => options.clients = args.number("--clients")?,
            "--idle" => options.idle = args.number("--idle")?,
            "--rate" => options.rate = args.number("--rate")?,
            "--duration" => options.duration_secs = args.number("--duration")?,
            "--throughput-secs" => options.throughput_secs = args.number("--throughput-secs")?,
            "--concurrency" => options.concurrency = args.number("--concurrency")?,
            "--source-ips" => options.source_ips = args.value("--source-ips")?,
            "--debug" => options.release = false,
            "--keep" => options.keep = true,
            "--skip-xmppd" => options.skip_xmppd = true,
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'\n{HELP}")),
        }
    }
    if options.clients < 2 || options.clients % 2 != 0 {
        return Err("--clients must be an even number of at least 2 (clients talk in pairs)".into());
    }
    let outcome = run_bench(&options)?;
    print_comparison(&options, &outcome.results);
    outcome.into_result().map(|_| ())
}

/// The `bench` tier of `cargo xtask test`: tiny numbers against xmppd only, to prove the tool
/// chain works end to end. No thresholds; it fails only if logins fail or nothing arrives.
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
    };
    let outcome = run_bench(&options)?;
    print_comparison(&options, &outcome.results);
    let results = outcome.into_result()?;
    let result = results.first().ok_or("no result")?;
    let failed_logins = result.number("logins_failed").unwrap_or(f64::NAN);
    let delivered = result.number("rate_delivered").unwrap_or(0.0);
    if failed_logins != 0.0 {
        return Err(format!("{failed_logins} logins failed"));
    }
    if delivered <= 0.0 {
        return Err("no message was delivered".into());
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
    let packages: &[&str] = if options.skip_xmppd {
        &["loadgen"]
    } else {
        &["xmppd", "mmp", "loadgen"]
    };
    let bin = cargo_build(packages, options.release)?;
    let mut outcome = BenchOutcome {
        results: Vec::new(),
        failures: Vec::new(),
    };
    let mut targets = if options.skip_xmppd { Vec::new() } else { vec![None] };
    targets.extend(options.peers.iter().copied().map(Some));
    for peer in targets {
        let name = peer.map_or("xmppd", |p| p.name());
        banner(&format!("bench: {name}"));
        match bench_one(options, &bin, peer) {
            Ok(result) => outcome.results.push(result),
            Err(err) => {
                println!("bench: {name} FAILED: {err}");
                outcome.failures.push((name.to_owned(), err));
            }
        }
    }
    Ok(outcome)
}

fn bench_one(options: &BenchOptions, bin: &Path, peer: Option<Peer>) -> TaskResult<BenchResult> {
    let name = peer.map_or("xmppd", |p| p.name());
    let begun = Instant::now();
    let mut target = match peer {
        None => servers::start_xmppd(options, bin)?,
        Some(peer) => servers::start_peer(peer, options, bin)?,
    };
    println!(
        "{name} ready on {} after {}",
        target.addr,
        format_elapsed(begun.elapsed())
    );
    let outcome = run_loadgen(options, &bin.join("loadgen"), &target);
    let stopped = target.stop();
    println!("{name}: {stopped}");
    if options.keep {
        target.keep();
    }
    outcome
}

fn run_loadgen(options: &BenchOptions, loadgen: &Path, target: &Target) -> TaskResult<BenchResult> {
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
        .arg(&target.name)
        .arg("--clients")
        .arg(options.clients.to_string())
        .arg("--idle")
        .arg(options.idle.to_string())
        .arg("--rate")
        .arg(options.rate.to_string())
        .arg("--duration")
        .arg(options.duration_secs.to_string())
        .arg("--throughput-secs")
        .arg(options.throughput_secs.to_string())
        .arg("--concurrency")
        .arg(options.concurrency.to_string())
        .arg("--source-ips")
        .arg(&options.source_ips)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(pid) = target.rss_pid {
        command.arg("--pid").arg(pid.to_string());
    }
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
    let json = json.ok_or_else(|| format!("loadgen against {} printed no result ({status})", target.name))?;
    if !status.success() {
        println!("loadgen against {} reported problems ({status})", target.name);
    }
    Ok(BenchResult {
        server: target.name.clone(),
        json,
    })
}

fn print_comparison(options: &BenchOptions, results: &[BenchResult]) {
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
        "msgs/s max",
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
            number("throughput_delivered_per_s", 0),
            number("rate_p50_ms", 2),
            number("rate_p99_ms", 2),
            number("rate_lost", 0),
        ]);
    }
    print_table(&rows);
    println!(
        "  idle logins/s: the idle sessions logging in (first login: the client runs PBKDF2); \
         logins/s: the clients logging in again with their cached SaltedPassword; msgs/s max: \
         unthrottled, a bounded window in flight per sender; p50/p99/lost: at {} msg/s",
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
    }
    for result in results {
        println!("RESULT {}", result.json);
    }
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
    }
}
