//! XMPP load generator: logins, message throughput, latency, per-session memory.
//!
//! Works against any standard server given its address, domain and accounts. Phases, in
//! order (each can be switched off):
//! 1. idle: M sessions log in over STARTTLS + SCRAM and stay idle; the server's RSS before
//!    and after gives the memory per idle session (needs `--pid`);
//! 2. logins: N clients log in, reusing the SaltedPassword of an earlier login as real
//!    clients do (a cold round first when there is none);
//! 3. throughput: the N clients, in pairs, send as fast as the server delivers, each with a
//!    bounded number of messages in flight;
//! 4. rate: the same pairs at a fixed aggregate rate, for latency p50/p99.
//!
//! With `--peer-host IP`, the pairs span two servers (peer.rs): client 2k on the server under
//! test, client 2k+1 on a peer server of another domain, so messages cross the s2s link and
//! are measured per direction.
//!
//! With `--component NAME`, phases 3 and 4 are Call Bridge phases instead (component.rs): one
//! XEP-0114 component `NAME.DOMAIN` sends to all N clients and they send to it, measured
//! per direction.
//!
//! A human table goes to standard output, then one line `RESULT {json}` with flat keys.

mod component;
mod conn;
mod cpu;
mod creds;
mod load;
mod peer;
mod stats;
mod tls;

use cpu::CpuSample;
use load::{IdleSessions, Pairs, Pattern, Run};
use sb_proto::sasl::ScramHash;
use serde_json::{Map, Value, json};
use stats::{Clock, LoginReport, PhaseSummary};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const USAGE: &str = "\
usage: loadgen --host IP [options]
       loadgen scram-creds --hash SHA-256|SHA-1 --iterations I --users PAT --password PAT --count N [--first K]

  --host IP               server address (required)
  --port P                client port (5222)
  --domain D              XMPP domain (localhost)
  --users PAT             user name pattern, {n} is the index (bench{n})
  --password PAT          password pattern (bench-pw-{n})
  --first K               index of the first user (0)
  --clients N             message clients, in pairs 2k<->2k+1 (100; 0 skips logins and messages)
  --idle M                idle sessions held for the memory figure (0)
  --pid PID               server process: VmRSS read for the idle phase, CPU time per login/message
  --settle S              seconds to let the server settle after the idle logins, before
                          reading its RSS and again after closing them (2)
  --throughput-secs S     unthrottled message phase (10; 0 skips)
  --window W              messages in flight per sender in the throughput phase (16)
  --rate R                aggregate messages/s of the latency phase (1000; 0 skips)
  --duration S            seconds of the latency phase (10)
  --concurrency C         logins in flight at once (64)
  --source-ips LIST       source addresses, round robin: 127.0.1.1-250 or a,b,c
  --timeout S             limit for one login (30)
  --resource R            resource requested at bind (loadgen)
  --label NAME            name of the server in the output

Cross-server pairs (client 2k on the server above, client 2k+1 on the peer: messages cross
the server-to-server link, measured per direction; one login round):
  --peer-host IP          the peer server's address
  --peer-port P           its client port (5222)
  --peer-domain D         its XMPP domain (required with --peer-host)
  --peer-users PAT        user name pattern there (as --users)
  --peer-password PAT     password pattern there (as --password)
  --peer-window W         messages in flight per direction in the throughput phase (128;
                          each direction shares one s2s link, whose queue is bounded)
  The throughput phase runs --throughput-secs per direction, one after the other; the rate
  phase runs both directions at once, half of --rate each way.

Call Bridge mode (the clients exchange messages with one XEP-0114 component, not in pairs):
  --component NAME        the component's name; its address is NAME.DOMAIN
  --component-secret S    its shared secret (required with --component)
  --component-port P      the server's component port (5223)
  --component-plain       plain TCP to that port instead of TLS (servers allow it on loopback only)
  --component-window W    messages in flight in the throughput phase (1024)
  The throughput phase runs --throughput-secs per direction, one after the other; the rate
  phase runs both directions at once, half of --rate each way.";

/// `--peer-...`: cross-server pairs.
struct PeerOptions {
    host: IpAddr,
    port: u16,
    domain: String,
    users: Option<Pattern>,
    passwords: Option<Pattern>,
    window: usize,
}

/// `--component ...`: a Call Bridge run.
struct ComponentOptions {
    name: String,
    secret: String,
    port: u16,
    plain: bool,
    window: usize,
}

struct Options {
    host: IpAddr,
    port: u16,
    domain: String,
    users: Pattern,
    passwords: Pattern,
    first: usize,
    clients: usize,
    idle: usize,
    pid: Option<u32>,
    settle_secs: f64,
    throughput_secs: f64,
    window: usize,
    rate: f64,
    duration_secs: f64,
    concurrency: usize,
    sources: Vec<IpAddr>,
    timeout_secs: f64,
    resource: String,
    label: String,
    component: Option<ComponentOptions>,
    peer: Option<PeerOptions>,
}

fn main() -> ExitCode {
    if let Err(err) = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn)
        .init()
    {
        eprintln!("loadgen: logger: {err}");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("scram-creds") {
        return match parse_creds(&args[1..]).and_then(|options| creds::run(&options)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("loadgen scram-creds: {err}");
                ExitCode::from(2)
            }
        };
    }
    let options = match parse_options(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("loadgen: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}

struct Flags<'a> {
    args: &'a [String],
    position: usize,
}

impl<'a> Flags<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let arg = self.args.get(self.position)?;
        self.position += 1;
        Some(arg)
    }

    fn value(&mut self, flag: &str) -> Result<&'a str, String> {
        self.next().ok_or_else(|| format!("{flag} needs a value"))
    }

    fn parse<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let text = self.value(flag)?;
        text.parse().map_err(|_| format!("{flag}: invalid value '{text}'"))
    }
}

fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let mut flags = Flags { args, position: 0 };
    let mut host = None;
    let mut options = Options {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 5222,
        domain: "localhost".to_owned(),
        users: Pattern("bench{n}".to_owned()),
        passwords: Pattern("bench-pw-{n}".to_owned()),
        first: 0,
        clients: 100,
        idle: 0,
        pid: None,
        settle_secs: 2.0,
        throughput_secs: 10.0,
        window: 16,
        rate: 1000.0,
        duration_secs: 10.0,
        concurrency: 64,
        sources: Vec::new(),
        timeout_secs: 30.0,
        resource: "loadgen".to_owned(),
        label: String::new(),
        component: None,
        peer: None,
    };
    let mut peer_host = None;
    let mut peer = PeerOptions {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 5222,
        domain: String::new(),
        users: None,
        passwords: None,
        window: 128,
    };
    let mut peer_flag = None;
    let mut component_name = None;
    let mut component = ComponentOptions {
        name: String::new(),
        secret: String::new(),
        port: 5223,
        plain: false,
        window: 1024,
    };
    let mut component_secret = None;
    while let Some(flag) = flags.next() {
        match flag {
            "-h" | "--help" => return Ok(None),
            "--host" => host = Some(flags.parse::<IpAddr>(flag)?),
            "--port" => options.port = flags.parse(flag)?,
            "--domain" => options.domain = flags.value(flag)?.to_owned(),
            "--users" => options.users = Pattern(flags.value(flag)?.to_owned()),
            "--password" => options.passwords = Pattern(flags.value(flag)?.to_owned()),
            "--first" => options.first = flags.parse(flag)?,
            "--clients" => options.clients = flags.parse(flag)?,
            "--idle" => options.idle = flags.parse(flag)?,
            "--pid" => options.pid = Some(flags.parse(flag)?),
            "--settle" => options.settle_secs = flags.parse(flag)?,
            "--throughput-secs" => options.throughput_secs = flags.parse(flag)?,
            "--window" => options.window = flags.parse(flag)?,
            "--rate" => options.rate = flags.parse(flag)?,
            "--duration" => options.duration_secs = flags.parse(flag)?,
            "--concurrency" => options.concurrency = flags.parse(flag)?,
            "--source-ips" => options.sources = parse_sources(flags.value(flag)?)?,
            "--timeout" => options.timeout_secs = flags.parse(flag)?,
            "--resource" => options.resource = flags.value(flag)?.to_owned(),
            "--label" => options.label = flags.value(flag)?.to_owned(),
            "--component" => component_name = Some(flags.value(flag)?.to_owned()),
            "--component-secret" => component_secret = Some(flags.value(flag)?.to_owned()),
            "--component-port" => component.port = flags.parse(flag)?,
            "--component-plain" => component.plain = true,
            "--component-window" => component.window = flags.parse(flag)?,
            "--peer-host" => peer_host = Some(flags.parse::<IpAddr>(flag)?),
            "--peer-port" => {
                peer.port = flags.parse(flag)?;
                peer_flag = Some(flag);
            }
            "--peer-domain" => {
                peer.domain = flags.value(flag)?.to_owned();
                peer_flag = Some(flag);
            }
            "--peer-users" => {
                peer.users = Some(Pattern(flags.value(flag)?.to_owned()));
                peer_flag = Some(flag);
            }
            "--peer-password" => {
                peer.passwords = Some(Pattern(flags.value(flag)?.to_owned()));
                peer_flag = Some(flag);
            }
            "--peer-window" => {
                peer.window = flags.parse(flag)?;
                peer_flag = Some(flag);
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    options.host = host.ok_or("--host is required")?;
    match (component_name, component_secret) {
        (Some(name), Some(secret)) => {
            if name.is_empty() || name.contains(['.', '@', '/']) {
                return Err(format!(
                    "--component: '{name}' is not a name (the address is NAME.DOMAIN)"
                ));
            }
            if component.window == 0 {
                return Err("--component-window must be at least 1".to_owned());
            }
            options.component = Some(ComponentOptions {
                name,
                secret,
                ..component
            });
        }
        (Some(_), None) => return Err("--component needs --component-secret".to_owned()),
        (None, Some(_)) => return Err("--component-secret is only used with --component".to_owned()),
        (None, None) => {}
    }
    match (peer_host, peer_flag) {
        (Some(host), _) => {
            if peer.domain.is_empty() {
                return Err("--peer-host needs --peer-domain".to_owned());
            }
            if peer.window == 0 {
                return Err("--peer-window must be at least 1".to_owned());
            }
            if options.component.is_some() {
                return Err("--peer-host and --component are separate modes".to_owned());
            }
            options.peer = Some(PeerOptions { host, ..peer });
        }
        (None, Some(flag)) => return Err(format!("{flag} is only used with --peer-host")),
        (None, None) => {}
    }
    if options.label.is_empty() {
        options.label = match &options.peer {
            Some(peer) => format!("{}:{} <-> {}:{}", options.host, options.port, peer.host, peer.port),
            None => format!("{}:{}", options.host, options.port),
        };
    }
    for (name, value) in [
        ("--settle", options.settle_secs),
        ("--throughput-secs", options.throughput_secs),
        ("--rate", options.rate),
        ("--duration", options.duration_secs),
        ("--timeout", options.timeout_secs),
    ] {
        // Bounded durations everywhere: a day is far beyond any bench.
        if !(0.0..=86_400.0).contains(&value) {
            return Err(format!("{name} must be between 0 and 86400"));
        }
    }
    if options.window == 0 {
        return Err("--window must be at least 1".to_owned());
    }
    Ok(Some(options))
}

/// `127.0.1.1-250` (a range of the last octet), `a,b,c`, or one address.
fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut sources = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((first, last)) = part.split_once('-') {
            let first: Ipv4Addr = first.parse().map_err(|_| format!("bad address '{first}'"))?;
            let last: u8 = last.parse().map_err(|_| format!("bad last octet '{last}'"))?;
            let [a, b, c, start] = first.octets();
            if last < start {
                return Err(format!("empty range '{part}'"));
            }
            sources.extend((start..=last).map(|d| IpAddr::V4(Ipv4Addr::new(a, b, c, d))));
        } else {
            sources.push(part.parse().map_err(|_| format!("bad address '{part}'"))?);
        }
    }
    if sources.is_empty() {
        return Err("--source-ips lists no address".to_owned());
    }
    Ok(sources)
}

fn parse_creds(args: &[String]) -> Result<creds::CredsOptions, String> {
    let mut flags = Flags { args, position: 0 };
    let mut options = creds::CredsOptions {
        hash: ScramHash::Sha256,
        iterations: sb_proto::sasl::DEFAULT_ITERATIONS,
        users: Pattern("bench{n}".to_owned()),
        passwords: Pattern("bench-pw-{n}".to_owned()),
        first: 0,
        count: 0,
    };
    while let Some(flag) = flags.next() {
        match flag {
            "--hash" => {
                let name = flags.value(flag)?;
                options.hash = ScramHash::from_mechanism(&format!("SCRAM-{}", name.to_ascii_uppercase()))
                    .ok_or_else(|| format!("--hash: SHA-256 or SHA-1, not '{name}'"))?;
            }
            "--iterations" => options.iterations = flags.parse(flag)?,
            "--users" => options.users = Pattern(flags.value(flag)?.to_owned()),
            "--password" => options.passwords = Pattern(flags.value(flag)?.to_owned()),
            "--first" => options.first = flags.parse(flag)?,
            "--count" => options.count = flags.parse(flag)?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if options.iterations == 0 {
        return Err("--iterations must be at least 1".to_owned());
    }
    Ok(options)
}

/// 10,000 sessions need 10,000 descriptors; the soft limit is usually 1024.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::warn!("could not raise the open file limit");
            }
        }
    }
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Results {
    mechanism: Option<&'static str>,
    idle: Option<(LoginReport, Option<u64>, Option<u64>, usize)>,
    cold: Option<LoginReport>,
    logins: Option<LoginReport>,
    pairs: usize,
    throughput: Option<PhaseSummary>,
    rate: Option<PhaseSummary>,
    message_errors: u64,
    component: Option<component::ComponentReport>,
    peer: Option<peer::PeerReport>,
}

async fn run(options: Options) -> Result<bool, String> {
    let tls = tls::client_config().map_err(|err| format!("TLS configuration: {err}"))?;
    let run = Arc::new(Run {
        target: conn::LoginTarget {
            addr: SocketAddr::new(options.host, options.port),
            domain: options.domain.clone(),
            tls: tokio_rustls::TlsConnector::from(Arc::clone(&tls)),
            timeout: Duration::from_secs_f64(options.timeout_secs),
            resource: options.resource.clone(),
        },
        users: options.users.clone(),
        passwords: options.passwords.clone(),
        sources: options.sources.clone(),
        concurrency: options.concurrency,
        clock: Clock::new(),
        salted: Mutex::new(Default::default()),
        peer: options.peer.as_ref().map(|peer| peer::PeerAccounts {
            target: conn::LoginTarget {
                addr: SocketAddr::new(peer.host, peer.port),
                domain: peer.domain.clone(),
                tls: tokio_rustls::TlsConnector::from(Arc::clone(&tls)),
                timeout: Duration::from_secs_f64(options.timeout_secs),
                resource: options.resource.clone(),
            },
            users: peer.users.clone().unwrap_or_else(|| options.users.clone()),
            passwords: peer.passwords.clone().unwrap_or_else(|| options.passwords.clone()),
        }),
    });
    println!(
        "loadgen: {} at {}:{} (domain {}), users {} from {}",
        options.label, options.host, options.port, options.domain, options.users.0, options.first
    );
    let mut results = Results::default();

    if options.idle > 0 {
        let before = options.pid.and_then(rss_kib);
        let indices: Vec<usize> = (options.first..options.first + options.idle).collect();
        let cpu = CpuSample::now(options.pid);
        let (sessions, mut report) = load::login_batch(&run, indices).await;
        report.cpu = cpu.elapsed(options.pid);
        print_login("idle logins", &report);
        results.mechanism = results.mechanism.or(report.mechanism);
        let held = IdleSessions::hold(sessions);
        tokio::time::sleep(Duration::from_secs_f64(options.settle_secs)).await;
        let after = options.pid.and_then(rss_kib);
        let count = held.len();
        print_idle(count, before, after);
        results.idle = Some((report, before, after, count));
        held.close().await;
        // Let the server finish tearing those sessions down before the next measurement.
        tokio::time::sleep(Duration::from_secs_f64(options.settle_secs)).await;
    }

    if let Some(bridge) = options.component.as_ref().filter(|_| options.clients > 0) {
        results.component = Some(run_component(&options, bridge, &run, &mut results).await?);
    } else if let Some(peer) = options.peer.as_ref().filter(|_| options.clients > 0) {
        results.peer = Some(run_cross(&options, peer, &run, &mut results).await);
    } else if options.clients > 0 {
        let indices: Vec<usize> = (options.first..options.first + options.clients).collect();
        if indices
            .iter()
            .any(|&i| !run.salted.lock().is_ok_and(|c| c.contains_key(&i)))
        {
            // Nothing cached yet: a cold round computes the SaltedPasswords (PBKDF2 on this
            // side), then the measured round logs in the way a returning client does.
            let cpu = CpuSample::now(options.pid);
            let (sessions, mut report) = load::login_batch(&run, indices.clone()).await;
            report.cpu = cpu.elapsed(options.pid);
            print_login("cold logins", &report);
            results.mechanism = results.mechanism.or(report.mechanism);
            IdleSessions::hold(sessions).close().await;
            results.cold = Some(report);
        }
        let cpu = CpuSample::now(options.pid);
        let (sessions, mut report) = load::login_batch(&run, indices).await;
        report.cpu = cpu.elapsed(options.pid);
        print_login("logins", &report);
        results.mechanism = results.mechanism.or(report.mechanism);
        results.logins = Some(report);
        let clients = Pairs::start(sessions, run.clock);
        results.pairs = clients.pairs();
        if options.throughput_secs > 0.0 && results.pairs > 0 {
            let cpu = CpuSample::now(options.pid);
            let mut summary = clients.throughput(options.throughput_secs, options.window).await;
            summary.cpu = cpu.elapsed(options.pid);
            print_phase("throughput", &summary);
            results.throughput = Some(summary);
        }
        if options.rate > 0.0 && options.duration_secs > 0.0 && results.pairs > 0 {
            let cpu = CpuSample::now(options.pid);
            let mut summary = clients.fixed_rate(options.rate, options.duration_secs).await;
            summary.cpu = cpu.elapsed(options.pid);
            print_phase(&format!("rate {}/s", options.rate), &summary);
            results.rate = Some(summary);
        }
        results.message_errors = clients.shared.errors.load(std::sync::atomic::Ordering::Relaxed);
        clients.close().await;
    }

    let json = result_json(&options, &results);
    print_summary(&options, &results);
    println!("RESULT {json}");
    Ok(healthy(&options, &results))
}

/// The Call Bridge connects first (no point logging in users for a refused component), then
/// the users log in once and both exchange messages.
async fn run_component(
    options: &Options,
    bridge: &ComponentOptions,
    run: &Arc<Run>,
    results: &mut Results,
) -> Result<component::ComponentReport, String> {
    let target = component::ComponentTarget {
        addr: SocketAddr::new(options.host, bridge.port),
        domain: options.domain.clone(),
        jid: format!("{}.{}", bridge.name, options.domain),
        secret: bridge.secret.clone(),
        tls: (!bridge.plain).then(|| run.target.tls.clone()),
        timeout: Duration::from_secs_f64(options.timeout_secs),
    };
    let conn = component::connect(&target)
        .await
        .map_err(|err| format!("Call Bridge {} at {}: {err}", target.jid, target.addr))?;
    println!(
        "  Call Bridge {} connected to {} ({})",
        target.jid,
        target.addr,
        if bridge.plain { "plain TCP" } else { "TLS" }
    );
    let indices: Vec<usize> = (options.first..options.first + options.clients).collect();
    let (sessions, report) = load::login_batch(run, indices).await;
    print_login("logins", &report);
    results.mechanism = results.mechanism.or(report.mechanism);
    results.cold = Some(report);
    let plan = component::ComponentPlan {
        window: bridge.window,
        throughput_secs: options.throughput_secs,
        rate: options.rate,
        duration_secs: options.duration_secs,
    };
    let report = component::exchange(conn, &target.jid, sessions, run.clock, &plan).await;
    if let Some(phase) = &report.throughput {
        print_phase("throughput bridge->users", &phase.to_users);
        print_phase("throughput users->bridge", &phase.from_users);
    }
    if let Some(phase) = &report.rate {
        let each_way = options.rate / 2.0;
        print_phase(&format!("rate {each_way}/s bridge->users"), &phase.to_users);
        print_phase(&format!("rate {each_way}/s users->bridge"), &phase.from_users);
    }
    results.message_errors += report.errors;
    Ok(report)
}

/// Cross-server pairs: one login round (the peer's logins are not what is measured), then
/// the message phases per direction.
async fn run_cross(options: &Options, peer: &PeerOptions, run: &Arc<Run>, results: &mut Results) -> peer::PeerReport {
    let indices: Vec<usize> = (options.first..options.first + options.clients).collect();
    let (sessions, report) = load::login_batch(run, indices).await;
    print_login("logins (both servers)", &report);
    results.mechanism = results.mechanism.or(report.mechanism);
    results.cold = Some(report);
    let pairs = peer::CrossPairs::start(sessions, run.clock);
    let mut report = peer::PeerReport {
        pairs: pairs.pairs(),
        ..peer::PeerReport::default()
    };
    results.pairs = report.pairs;
    println!(
        "  {} pairs across to {} ({}:{})",
        report.pairs, peer.domain, peer.host, peer.port
    );
    if options.throughput_secs > 0.0 && report.pairs > 0 {
        let phase = pairs.throughput(options.throughput_secs, peer.window).await;
        print_phase("throughput to peer", &phase.to_peer);
        print_phase("throughput from peer", &phase.from_peer);
        report.throughput = Some(phase);
    }
    if options.rate > 0.0 && options.duration_secs > 0.0 && report.pairs > 0 {
        let phase = pairs.fixed_rate(options.rate, options.duration_secs).await;
        let each_way = options.rate / 2.0;
        print_phase(&format!("rate {each_way}/s to peer"), &phase.to_peer);
        print_phase(&format!("rate {each_way}/s from peer"), &phase.from_peer);
        report.rate = Some(phase);
    }
    report.errors = pairs.errors();
    results.message_errors += report.errors;
    pairs.close().await;
    report
}

/// No login failed, and messages flowed when a message phase ran.
fn healthy(options: &Options, results: &Results) -> bool {
    let logins_ok = [
        results.idle.as_ref().map(|i| &i.0),
        results.cold.as_ref(),
        results.logins.as_ref(),
    ]
    .into_iter()
    .flatten()
    .all(|report| report.failed() == 0);
    let messages_ok = [&results.throughput, &results.rate]
        .into_iter()
        .flatten()
        .all(|phase| phase.delivered > 0);
    let bridge_ok = match &results.component {
        None => true,
        Some(report) => {
            report.users > 0
                && [&report.throughput, &report.rate]
                    .into_iter()
                    .flatten()
                    .all(|phase| phase.to_users.delivered > 0 && phase.from_users.delivered > 0)
        }
    };
    let peer_ok = match &results.peer {
        None => true,
        Some(report) => [&report.throughput, &report.rate]
            .into_iter()
            .flatten()
            .all(|phase| phase.to_peer.delivered > 0 && phase.from_peer.delivered > 0),
    };
    let pairs_ok = options.component.is_some() || options.clients < 2 || results.pairs > 0;
    logins_ok && messages_ok && pairs_ok && bridge_ok && peer_ok
}

fn print_login(what: &str, report: &LoginReport) {
    println!(
        "  {what}: {}/{} in {:.2}s = {:.0}/s ({} with a cached SaltedPassword){}",
        report.succeeded,
        report.attempted,
        report.secs,
        report.per_s(),
        report.warm,
        report.mechanism.map(|m| format!(", {m}")).unwrap_or_default()
    );
    for (error, count) in &report.errors {
        println!("    failed {count}x: {error}");
    }
    if let Some(cpu) = report.cpu.describe(report.succeeded, "login") {
        println!("    {cpu}");
    }
}

fn print_idle(count: usize, before: Option<u64>, after: Option<u64>) {
    match (before, after) {
        (Some(before), Some(after)) if count > 0 => println!(
            "  idle memory: RSS {before} KiB -> {after} KiB with {count} sessions = {:.1} KiB per session",
            after.saturating_sub(before) as f64 / count as f64
        ),
        _ => println!("  idle memory: not measured (no --pid, or no session)"),
    }
}

fn print_phase(what: &str, summary: &PhaseSummary) {
    println!(
        "  {what}: sent {} delivered {} lost {} in {:.2}s = {:.0} msg/s, latency p50 {} p99 {}",
        summary.sent,
        summary.delivered,
        summary.lost,
        summary.secs,
        summary.delivered_per_s,
        ms(summary.p50_ms),
        ms(summary.p99_ms)
    );
    if let Some(cpu) = summary.cpu.describe(summary.delivered as usize, "message") {
        println!("    {cpu}");
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"))
}

fn print_summary(options: &Options, results: &Results) {
    println!(
        "\n{} (SASL {})",
        options.label,
        results.mechanism.unwrap_or("none succeeded")
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>8} {:>11} {:>10} {:>10} {:>8}",
        "phase", "count", "failed", "secs", "per sec", "p50 ms", "p99 ms", "lost"
    );
    let login_row = |name: &str, report: &LoginReport| {
        println!(
            "  {:<22} {:>9} {:>9} {:>8.2} {:>11.0} {:>10} {:>10} {:>8}",
            name,
            report.succeeded,
            report.failed(),
            report.secs,
            report.per_s(),
            "",
            "",
            ""
        );
    };
    if let Some((report, ..)) = &results.idle {
        login_row("idle logins (cold)", report);
    }
    if let Some(report) = &results.cold {
        login_row("logins (cold)", report);
    }
    if let Some(report) = &results.logins {
        login_row("logins (cached PBKDF2)", report);
    }
    let phase_row = |name: &str, summary: &PhaseSummary| {
        let p = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        println!(
            "  {:<22} {:>9} {:>9} {:>8.2} {:>11.0} {:>10} {:>10} {:>8}",
            name,
            summary.delivered,
            "",
            summary.secs,
            summary.delivered_per_s,
            p(summary.p50_ms),
            p(summary.p99_ms),
            summary.lost
        );
    };
    if let Some(summary) = &results.throughput {
        phase_row("messages (max)", summary);
    }
    if let Some(summary) = &results.rate {
        phase_row(&format!("messages @{}/s", options.rate), summary);
    }
    if let Some(report) = &results.component {
        if let Some(phase) = &report.throughput {
            phase_row("bridge->users (max)", &phase.to_users);
            phase_row("users->bridge (max)", &phase.from_users);
        }
        if let Some(phase) = &report.rate {
            let each_way = options.rate / 2.0;
            phase_row(&format!("bridge->users @{each_way}/s"), &phase.to_users);
            phase_row(&format!("users->bridge @{each_way}/s"), &phase.from_users);
        }
    }
    if let Some(report) = &results.peer {
        if let Some(phase) = &report.throughput {
            phase_row("to peer (max)", &phase.to_peer);
            phase_row("from peer (max)", &phase.from_peer);
        }
        if let Some(phase) = &report.rate {
            let each_way = options.rate / 2.0;
            phase_row(&format!("to peer @{each_way}/s"), &phase.to_peer);
            phase_row(&format!("from peer @{each_way}/s"), &phase.from_peer);
        }
    }
    if let Some((_, before, after, count)) = &results.idle {
        print_idle(*count, *before, *after);
    }
    if results.message_errors > 0 {
        println!("  message errors received: {}", results.message_errors);
    }
}

fn result_json(options: &Options, results: &Results) -> Value {
    let mut map = Map::new();
    let mut put = |key: &str, value: Value| {
        map.insert(key.to_owned(), value);
    };
    put("label", json!(options.label));
    put("host", json!(options.host.to_string()));
    put("port", json!(options.port));
    put("domain", json!(options.domain));
    put("mechanism", json!(results.mechanism));
    put("clients", json!(options.clients));
    put("pairs", json!(results.pairs));
    let mut failed = 0;
    if let Some((report, before, after, count)) = &results.idle {
        failed += report.failed();
        put("idle_sessions", json!(count));
        put("idle_logins_per_s", json!(report.per_s()));
        put("idle_login_failed", json!(report.failed()));
        put(
            "idle_logins_server_cpu_ms",
            json!(report.cpu.server_ms_per(report.succeeded)),
        );
        put(
            "idle_logins_loadgen_cpu_ms",
            json!(report.cpu.own_ms_per(report.succeeded)),
        );
        put("idle_rss_before_kib", json!(before));
        put("idle_rss_after_kib", json!(after));
        let per_session = match (before, after) {
            (Some(before), Some(after)) if *count > 0 => Some(after.saturating_sub(*before) as f64 / *count as f64),
            _ => None,
        };
        put("idle_kib_per_session", json!(per_session));
    }
    if let Some(report) = &results.cold {
        failed += report.failed();
        put("logins_cold_per_s", json!(report.per_s()));
        put(
            "logins_cold_server_cpu_ms",
            json!(report.cpu.server_ms_per(report.succeeded)),
        );
        put(
            "logins_cold_loadgen_cpu_ms",
            json!(report.cpu.own_ms_per(report.succeeded)),
        );
    }
    if let Some(report) = &results.logins {
        failed += report.failed();
        put(
            "logins_server_cpu_ms",
            json!(report.cpu.server_ms_per(report.succeeded)),
        );
        put("logins_loadgen_cpu_ms", json!(report.cpu.own_ms_per(report.succeeded)));
        put("logins", json!(report.succeeded));
        put("logins_secs", json!(report.secs));
        put("logins_per_s", json!(report.per_s()));
        put("logins_warm", json!(report.warm));
    }
    put("logins_failed", json!(failed));
    put("message_errors", json!(results.message_errors));
    if results.rate.is_some() {
        put("rate_target", json!(options.rate));
    }
    for (prefix, summary) in [("throughput", &results.throughput), ("rate", &results.rate)] {
        if let Some(summary) = summary {
            put_phase(&mut map, prefix, summary);
        }
    }
    if let (Some(bridge), Some(report)) = (&options.component, &results.component) {
        map.insert(
            "component".to_owned(),
            json!(format!("{}.{}", bridge.name, options.domain)),
        );
        map.insert("component_tls".to_owned(), json!(!bridge.plain));
        map.insert("component_users".to_owned(), json!(report.users));
        if let Some(phase) = &report.throughput {
            put_phase(&mut map, "c2u_throughput", &phase.to_users);
            put_phase(&mut map, "u2c_throughput", &phase.from_users);
        }
        if let Some(phase) = &report.rate {
            map.insert("component_rate_each_way".to_owned(), json!(options.rate / 2.0));
            put_phase(&mut map, "c2u_rate", &phase.to_users);
            put_phase(&mut map, "u2c_rate", &phase.from_users);
        }
    }
    if let (Some(peer), Some(report)) = (&options.peer, &results.peer) {
        map.insert("peer_host".to_owned(), json!(peer.host.to_string()));
        map.insert("peer_port".to_owned(), json!(peer.port));
        map.insert("peer_domain".to_owned(), json!(peer.domain));
        if let Some(phase) = &report.throughput {
            put_phase(&mut map, "to_peer_throughput", &phase.to_peer);
            put_phase(&mut map, "from_peer_throughput", &phase.from_peer);
        }
        if let Some(phase) = &report.rate {
            map.insert("peer_rate_each_way".to_owned(), json!(options.rate / 2.0));
            put_phase(&mut map, "to_peer_rate", &phase.to_peer);
            put_phase(&mut map, "from_peer_rate", &phase.from_peer);
        }
    }
    Value::Object(map)
}

/// `{prefix}_delivered_per_s`, `{prefix}_p99_ms`, ... of one phase (one direction).
fn put_phase(map: &mut Map<String, Value>, prefix: &str, summary: &PhaseSummary) {
    for (key, value) in [
        ("secs", json!(summary.secs)),
        ("sent", json!(summary.sent)),
        ("delivered", json!(summary.delivered)),
        ("lost", json!(summary.lost)),
        ("delivered_per_s", json!(summary.delivered_per_s)),
        ("p50_ms", json!(summary.p50_ms)),
        ("p99_ms", json!(summary.p99_ms)),
        (
            "server_cpu_us_per_msg",
            json!(
                summary
                    .cpu
                    .server_ms_per(summary.delivered as usize)
                    .map(|ms| ms * 1000.0)
            ),
        ),
    ] {
        map.insert(format!("{prefix}_{key}"), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn source_lists_and_ranges() {
        let sources = parse_sources("127.0.1.1-3").unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[2], "127.0.1.3".parse::<IpAddr>().unwrap());
        assert_eq!(parse_sources("127.0.0.5,127.0.0.6").unwrap().len(), 2);
        assert!(parse_sources("127.0.1.5-3").is_err());
        assert!(parse_sources("").is_err());
        assert!(parse_sources("nonsense").is_err());
    }

    #[test]
    fn options_need_a_host_and_parse_numbers() {
        assert!(parse_options(&strings(&["--clients", "4"])).is_err());
        let options = parse_options(&strings(&["--host", "127.0.0.5", "--clients", "4", "--rate", "2.5"]))
            .unwrap()
            .unwrap();
        assert_eq!(options.clients, 4);
        assert_eq!(options.rate, 2.5);
        assert_eq!(options.label, "127.0.0.5:5222");
        assert!(parse_options(&strings(&["--host", "127.0.0.5", "--duration", "-1"])).is_err());
        assert!(parse_options(&strings(&["--host", "127.0.0.5", "--bogus"])).is_err());
    }

    #[test]
    fn component_options_need_a_name_and_a_secret() {
        let options = parse_options(&strings(&[
            "--host",
            "127.0.0.5",
            "--component",
            "cb1",
            "--component-secret",
            "s3cret",
            "--component-port",
            "15223",
            "--component-plain",
        ]))
        .unwrap()
        .unwrap();
        let bridge = options.component.unwrap();
        assert_eq!((bridge.name.as_str(), bridge.secret.as_str()), ("cb1", "s3cret"));
        assert_eq!((bridge.port, bridge.plain, bridge.window), (15223, true, 1024));
        let without_component = parse_options(&strings(&["--host", "127.0.0.5"])).unwrap().unwrap();
        assert!(without_component.component.is_none());
        for bad in [
            &["--component", "cb1"][..],
            &["--component-secret", "x"],
            &["--component", "cb1.localhost", "--component-secret", "x"],
            &[
                "--component",
                "cb1",
                "--component-secret",
                "x",
                "--component-window",
                "0",
            ],
            &[
                "--component",
                "cb1",
                "--component-secret",
                "x",
                "--component-port",
                "70000",
            ],
        ] {
            let mut args = strings(&["--host", "127.0.0.5"]);
            args.extend(strings(bad));
            assert!(parse_options(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn peer_options_need_a_domain_and_default_to_our_patterns() {
        let options = parse_options(&strings(&[
            "--host",
            "127.0.0.10",
            "--peer-host",
            "127.0.0.11",
            "--peer-domain",
            "b.example",
            "--peer-port",
            "15222",
        ]))
        .unwrap()
        .unwrap();
        let peer = options.peer.unwrap();
        assert_eq!(peer.host, "127.0.0.11".parse::<IpAddr>().unwrap());
        assert_eq!(
            (peer.port, peer.domain.as_str(), peer.window),
            (15222, "b.example", 128)
        );
        assert!(peer.users.is_none() && peer.passwords.is_none());
        assert_eq!(options.label, "127.0.0.10:5222 <-> 127.0.0.11:15222");
        for bad in [
            &["--peer-host", "127.0.0.11"][..],
            &["--peer-domain", "b.example"],
            &["--peer-host", "nowhere", "--peer-domain", "b.example"],
            &[
                "--peer-host",
                "127.0.0.11",
                "--peer-domain",
                "b.example",
                "--peer-window",
                "0",
            ],
            &[
                "--peer-host",
                "127.0.0.11",
                "--peer-domain",
                "b.example",
                "--component",
                "cb1",
                "--component-secret",
                "x",
            ],
        ] {
            let mut args = strings(&["--host", "127.0.0.10"]);
            args.extend(strings(bad));
            assert!(parse_options(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_vm_rss() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn creds_options_accept_both_hashes() {
        let options = parse_creds(&strings(&["--hash", "sha-1", "--count", "3"])).unwrap();
        assert_eq!(options.hash, ScramHash::Sha1);
        assert_eq!(options.count, 3);
        assert!(parse_creds(&strings(&["--hash", "md5"])).is_err());
    }
}
