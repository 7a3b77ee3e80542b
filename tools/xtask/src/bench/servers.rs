//! Starting the servers under test, each in its own temporary directory on its own loopback
//! address: xmppd (users made with `mmp`), and the Debian-packaged Prosody and ejabberd with
//! configurations written here (nothing system-wide is read or touched).

use super::{BenchOptions, CALLBRIDGE_NAME, CALLBRIDGE_SECRET, PASSWORD_PATTERN, USER_PATTERN};
use crate::util::{ServerProcess, TaskResult, TempDir, descendants, free_port, is_root, process_name, run_status};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DOMAIN: &str = "localhost";
const XMPPD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 31);
const PROSODY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 32);
const EJABBERD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 33);
/// PBKDF2 rounds for the peers' stored credentials: ejabberd's default and RFC 7677's
/// minimum, so no server is slowed by a different work factor.
const SCRAM_ITERATIONS: u32 = 4096;
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Users per ejabberd import file, and the longest one import may take (ejabberd hashes
/// about a hundred passwords a second here).
const IMPORT_CHUNK: usize = 1000;
const IMPORT_LIMIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Prosody,
    Ejabberd,
}

impl Peer {
    pub fn from_name(name: &str) -> Option<Peer> {
        match name {
            "prosody" => Some(Peer::Prosody),
            "ejabberd" => Some(Peer::Ejabberd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Peer::Prosody => "prosody",
            Peer::Ejabberd => "ejabberd",
        }
    }

    pub fn debian_package(self) -> &'static str {
        self.name()
    }
}

/// A running server under test.
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub domain: String,
    /// The process whose VmRSS is the server's memory (beam.smp for ejabberd).
    pub rss_pid: Option<u32>,
    /// Where Call Bridge `CALLBRIDGE_NAME` connects (xmppd only).
    pub callbridge: Option<CallbridgeEndpoint>,
    process: ServerProcess,
    /// Command that asks the server to shut down cleanly before signals are used.
    graceful_stop: Option<Command>,
    dir: TempDir,
}

impl Target {
    pub fn stop(&mut self) -> String {
        if let Some(mut command) = self.graceful_stop.take() {
            run_bounded(&mut command, Duration::from_secs(30));
            self.process.wait_exit(STOP_GRACE);
        }
        format!("stopped ({})", self.process.stop(STOP_GRACE))
    }

    pub fn keep(&mut self) {
        self.dir.keep();
    }
}

/// xmppd's component listener as the bench configured it.
#[derive(Clone, Copy, Debug)]
pub struct CallbridgeEndpoint {
    pub port: u16,
    /// Plain TCP (loopback) instead of TLS on the socket.
    pub plain: bool,
}

/// Run a command, killing it if it outlives `limit`.
fn run_bounded(command: &mut Command, limit: Duration) {
    let Ok(mut child) = command.stdin(Stdio::null()).stdout(Stdio::null()).spawn() else {
        return;
    };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Run a command with inherited output, killing it if it outlives `limit`.
fn run_limited(command: &mut Command, limit: Duration, what: &str) -> TaskResult {
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| format!("{what}: cannot start: {err}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} failed ({status})")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {}s", limit.as_secs()));
            }
            Err(err) => return Err(format!("{what}: {err}")),
        }
    }
}

/// `sh -c 'ulimit -n <hard>; exec PROGRAM ARGS'`: 10,000 sessions need more descriptors than
/// the usual soft limit of 1024. `exec` keeps the pid, so it is the server's pid.
fn with_raised_fd_limit(program: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -H -n)\" 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(program);
    command
}

fn user_name(index: usize) -> String {
    USER_PATTERN.replace("{n}", &index.to_string())
}

fn user_password(index: usize) -> String {
    PASSWORD_PATTERN.replace("{n}", &index.to_string())
}

pub fn start_xmppd(options: &BenchOptions, bin: &Path) -> TaskResult<Target> {
    let dir = TempDir::new("bench-xmppd")?;
    let port = free_port(IpAddr::V4(XMPPD_IP))?;
    let addr = SocketAddr::new(IpAddr::V4(XMPPD_IP), port);
    let data = dir.path().join("data");
    fs::create_dir_all(&data).map_err(|err| format!("cannot create {}: {err}", data.display()))?;
    let mmp = bin.join("mmp");
    let listen = addr.to_string();
    // The Call Bridge listener on a port of its own, set the way an administrator does.
    let mut component_port = free_port(IpAddr::V4(XMPPD_IP))?;
    while component_port == port {
        component_port = free_port(IpAddr::V4(XMPPD_IP))?;
    }
    let component_port_text = component_port.to_string();
    let plain = if options.component_plain { "on" } else { "off" };
    for words in [
        vec!["xmpp", "domain", DOMAIN],
        vec!["xmpp", "listen", &listen],
        vec!["xmpp", "callbridge", "port", &component_port_text],
        vec!["xmpp", "callbridge", "plain", plain],
        vec!["xmpp", "enable"],
    ] {
        crate::util::run_output(
            Command::new(&mmp).arg("-d").arg(&data).args(&words),
            &format!("mmp {}", words.join(" ")),
        )?;
    }
    let users = options.user_count();
    println!("xmppd: creating {users} users with mmp");
    let mut batch = String::new();
    for index in 0..users {
        let password = user_password(index);
        let _ = writeln!(batch, "user add {}\n{password}\n{password}", user_name(index));
    }
    let replies = run_with_input(Command::new(&mmp).arg("-d").arg(&data), &batch, "mmp user add (batch)")?;
    let failures: Vec<&str> = replies.lines().filter(|line| line.starts_with("FAILURE")).collect();
    if let Some(first) = failures.first() {
        return Err(format!("mmp: {} user(s) not created; first: {first}", failures.len()));
    }
    let added = run_with_input(
        Command::new(&mmp)
            .arg("-d")
            .arg(&data)
            .args(["xmpp", "callbridge", "add-secret", CALLBRIDGE_NAME]),
        &format!("{CALLBRIDGE_SECRET}\n"),
        "mmp xmpp callbridge add-secret",
    )?;
    if !added.contains("SUCCESS") {
        return Err(format!(
            "mmp xmpp callbridge add-secret {CALLBRIDGE_NAME}: {}",
            added.trim()
        ));
    }

    let mut command = with_raised_fd_limit(&bin.join("xmppd"));
    command.arg("-d").arg(&data).args(["--log-level", "warn"]);
    let mut process = ServerProcess::spawn("xmppd", command, &dir.path().join("xmppd.log"))?;
    process.wait_for_port(addr, START_TIMEOUT)?;
    Ok(Target {
        name: "xmppd".to_owned(),
        addr,
        domain: DOMAIN.to_owned(),
        rss_pid: process.pid(),
        callbridge: Some(CallbridgeEndpoint {
            port: component_port,
            plain: options.component_plain,
        }),
        process,
        graceful_stop: None,
        dir,
    })
}

/// `loadgen` makes the SCRAM credentials a peer stores.
pub fn start_peer(peer: Peer, options: &BenchOptions, loadgen: &Path) -> TaskResult<Target> {
    match peer {
        Peer::Prosody => start_prosody(options, loadgen),
        Peer::Ejabberd => start_ejabberd(options),
    }
}

/// Feed `input` to a command's standard input and return its standard output.
fn run_with_input(command: &mut Command, input: &str, what: &str) -> TaskResult<String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| format!("{what}: cannot start: {err}"))?;
    let mut stdin = child.stdin.take().ok_or_else(|| format!("{what}: no stdin"))?;
    let input = input.to_owned();
    // A writer thread, so a child that answers while reading cannot deadlock on full pipes.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let output = child
        .wait_with_output()
        .map_err(|err| format!("{what}: waiting: {err}"))?;
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let tail: Vec<&str> = stdout.lines().rev().take(5).collect();
        Err(format!("{what} failed ({}): {}", output.status, tail.join(" | ")))
    }
}

/// A self-signed ECDSA P-256 certificate for the domain (what xmppd makes for itself too).
fn self_signed_cert(dir: &Path, domain: &str) -> TaskResult<(PathBuf, PathBuf)> {
    let key = dir.join(format!("{domain}.key"));
    let cert = dir.join(format!("{domain}.crt"));
    run_status(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "30", "-subj"])
            .arg(format!("/CN={domain}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{domain}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "openssl req (self-signed certificate)",
    )?;
    Ok((key, cert))
}

fn lua_string(text: &str) -> String {
    format!("{text:?}")
}

fn start_prosody(options: &BenchOptions, loadgen: &Path) -> TaskResult<Target> {
    let dir = TempDir::new("bench-prosody")?;
    let base = dir.path().to_path_buf();
    let port = free_port(IpAddr::V4(PROSODY_IP))?;
    let addr = SocketAddr::new(IpAddr::V4(PROSODY_IP), port);
    let certs = base.join("certs");
    let data = base.join("data");
    let accounts = data.join(DOMAIN).join("accounts");
    fs::create_dir_all(&certs).map_err(|err| format!("cannot create {}: {err}", certs.display()))?;
    fs::create_dir_all(&accounts).map_err(|err| format!("cannot create {}: {err}", accounts.display()))?;
    let (key, cert) = self_signed_cert(&certs, DOMAIN)?;

    // prosodyctl register costs a process start per user (too slow for 10,000), so write the
    // account files it would write: internal_hashed's SCRAM-SHA-256 fields, computed by loadgen.
    let users = options.user_count();
    println!("prosody: writing {users} accounts (SCRAM-SHA-256, {SCRAM_ITERATIONS} iterations)");
    let creds = crate::util::run_output(
        Command::new(loadgen)
            .args(["scram-creds", "--hash", "SHA-256", "--iterations"])
            .arg(SCRAM_ITERATIONS.to_string())
            .args(["--users", USER_PATTERN, "--password", PASSWORD_PATTERN, "--count"])
            .arg(users.to_string()),
        "loadgen scram-creds",
    )?;
    let mut written = 0;
    for line in creds.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, salt, iterations, stored_key, server_key] = fields[..] else {
            return Err(format!("loadgen scram-creds: unexpected line '{line}'"));
        };
        let account = format!(
            "return {{\n\t[\"iteration_count\"] = {iterations};\n\t[\"salt\"] = {};\n\t[\"server_key\"] = {};\n\t[\"stored_key\"] = {};\n}};\n",
            lua_string(salt),
            lua_string(server_key),
            lua_string(stored_key)
        );
        let path = accounts.join(format!("{name}.dat"));
        fs::write(&path, account).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        written += 1;
    }
    if written != users {
        return Err(format!("loadgen scram-creds gave {written} accounts, expected {users}"));
    }

    let config = base.join("prosody.cfg.lua");
    let log = base.join("prosody.log");
    let text = format!(
        r#"-- Written by cargo xtask bench; used only for this run.
pidfile = {pidfile}
data_path = {data}
run_as_root = {root}
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = {log} }} }}
interfaces = {{ {ip} }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
modules_disabled = {{ "s2s"; "s2s_auth_certs"; "offline" }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }}
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = {SCRAM_ITERATIONS}
c2s_require_encryption = true
-- The listen backlog xmppd gets from tokio (ejabberd's is set to the same).
network_settings = {{ tcp_backlog = 1024 }}
allow_registration = false
storage = "internal"
certificates = {certs}
ssl = {{ key = {key}, certificate = {cert} }}

VirtualHost "{DOMAIN}"
"#,
        pidfile = lua_string(&base.join("prosody.pid").display().to_string()),
        data = lua_string(&data.display().to_string()),
        root = is_root(),
        log = lua_string(&log.display().to_string()),
        ip = lua_string(&PROSODY_IP.to_string()),
        certs = lua_string(&certs.display().to_string()),
        key = lua_string(&key.display().to_string()),
        cert = lua_string(&cert.display().to_string()),
    );
    fs::write(&config, text).map_err(|err| format!("cannot write {}: {err}", config.display()))?;

    let mut command = with_raised_fd_limit(Path::new("prosody"));
    command.arg("-F").arg("--config").arg(&config);
    let mut process = ServerProcess::spawn("prosody", command, &base.join("prosody.out"))?;
    if let Err(err) = process.wait_for_port(addr, START_TIMEOUT) {
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        return Err(format!("{err}\nprosody.log:\n{log_text}"));
    }
    Ok(Target {
        name: "prosody".to_owned(),
        addr,
        domain: DOMAIN.to_owned(),
        rss_pid: process.pid(),
        callbridge: None,
        process,
        graceful_stop: None,
        dir,
    })
}

fn start_ejabberd(options: &BenchOptions) -> TaskResult<Target> {
    if !is_root() {
        return Err("ejabberdctl runs only as root or the ejabberd user: run the ejabberd bench as root".into());
    }
    let dir = TempDir::new("bench-ejabberd")?;
    let base = dir.path().to_path_buf();
    let port = free_port(IpAddr::V4(EJABBERD_IP))?;
    let dist_port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let addr = SocketAddr::new(IpAddr::V4(EJABBERD_IP), port);
    let (key, cert) = self_signed_cert(&base, DOMAIN)?;
    // ejabberd wants key and certificate in one PEM file.
    let pem = base.join("server.pem");
    let pem_text = format!(
        "{}{}",
        fs::read_to_string(&key).map_err(|err| format!("cannot read {}: {err}", key.display()))?,
        fs::read_to_string(&cert).map_err(|err| format!("cannot read {}: {err}", cert.display()))?
    );
    fs::write(&pem, pem_text).map_err(|err| format!("cannot write {}: {err}", pem.display()))?;
    for sub in ["spool", "logs"] {
        fs::create_dir_all(base.join(sub)).map_err(|err| format!("cannot create {sub}: {err}"))?;
    }
    let users = options.user_count();
    let cache = users.max(1000) * 2;
    let config = format!(
        r#"# Written by cargo xtask bench; used only for this run.
hosts:
  - "{DOMAIN}"
loglevel: warning
log_rotate_count: 0
certfiles:
  - "{pem}"
listen:
  -
    port: {port}
    ip: "{ip}"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    backlog: 1024
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
cache_size: {cache}
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: all
  c2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
shaper_rules: {{}}
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
"#,
        pem = pem.display(),
        ip = EJABBERD_IP,
    );
    fs::write(base.join("ejabberd.yml"), config).map_err(|err| format!("cannot write ejabberd.yml: {err}"))?;
    // A node name and distribution port of our own: no epmd is started and a system ejabberd
    // node, if any, is not disturbed.
    let ctl_config = format!(
        "ERLANG_NODE=sbbench{}@localhost\nERL_DIST_PORT={dist_port}\nINET_DIST_INTERFACE=127.0.0.1\n\
         EJABBERD_BYPASS_WARNINGS=true\n",
        std::process::id()
    );
    fs::write(base.join("ejabberdctl.cfg"), ctl_config)
        .map_err(|err| format!("cannot write ejabberdctl.cfg: {err}"))?;
    fs::write(base.join("inetrc"), "").map_err(|err| format!("cannot write inetrc: {err}"))?;

    // XEP-0227 files of IMPORT_CHUNK users each: one ejabberdctl call per file, short enough
    // for a bounded wait and a progress line.
    let mut user_files = Vec::new();
    for (part, first) in (0..users).step_by(IMPORT_CHUNK).enumerate() {
        let mut piefxis = String::from(
            "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n",
        );
        for index in first..(first + IMPORT_CHUNK).min(users) {
            let _ = writeln!(
                piefxis,
                "<user name='{}' password='{}'/>",
                user_name(index),
                user_password(index)
            );
        }
        piefxis.push_str("</host>\n</server-data>\n");
        let path = base.join(format!("users-{part}.xml"));
        fs::write(&path, piefxis).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        user_files.push(path);
    }
    // ejabberd runs as its own user, which must own its files.
    run_status(
        Command::new("chown").args(["-R", "ejabberd:ejabberd"]).arg(&base),
        "chown ejabberd",
    )?;

    // Every ejabberdctl call becomes the ejabberd user with setpriv rather than letting the
    // script use su: su applies pam_limits, which puts the open-files limit back to 1024 and
    // caps the server near 1,000 sessions. HOME is the run's directory, so the Erlang cookie
    // is made there, shared by the server and the control commands, and nothing in the
    // ejabberd user's real home is touched.
    let ctl = |base: &Path, program: Command| {
        let mut command = program;
        command
            .args([
                "--reuid",
                "ejabberd",
                "--regid",
                "ejabberd",
                "--init-groups",
                "ejabberdctl",
            ])
            .arg("--config-dir")
            .arg(base)
            .arg("--logs")
            .arg(base.join("logs"))
            .arg("--spool")
            .arg(base.join("spool"))
            .env("HOME", base);
        command
    };
    let mut command = ctl(&base, with_raised_fd_limit(Path::new("setpriv")));
    command.arg("foreground");
    let mut process = ServerProcess::spawn("ejabberd", command, &base.join("ejabberd.out"))?;
    let mut stop = ctl(&base, Command::new("setpriv"));
    stop.arg("stop");
    if let Err(err) = process.wait_for_port(addr, START_TIMEOUT) {
        let log_text = fs::read_to_string(base.join("logs/ejabberd.log")).unwrap_or_default();
        run_bounded(&mut stop, Duration::from_secs(30));
        return Err(format!("{err}\nejabberd.log:\n{log_text}"));
    }
    let rss_pid = process.pid().and_then(|pid| {
        descendants(pid)
            .into_iter()
            .find(|p| process_name(*p).as_deref() == Some("beam.smp"))
    });
    println!("ejabberd: importing {users} users (ejabberdctl import_piefxis)");
    let begun = Instant::now();
    for (done, file) in user_files.iter().enumerate() {
        let mut import = ctl(&base, Command::new("setpriv"));
        // --no-timeout: the RPC default (60 s) is shorter than a big import; the wait is
        // bounded here instead.
        import.arg("--no-timeout").arg("import_piefxis").arg(file);
        if let Err(err) = run_limited(&mut import, IMPORT_LIMIT, "ejabberdctl import_piefxis") {
            run_bounded(&mut stop, Duration::from_secs(30));
            return Err(err);
        }
        println!(
            "ejabberd: {} of {users} users imported",
            ((done + 1) * IMPORT_CHUNK).min(users)
        );
    }
    println!("ejabberd: users imported in {:.1}s", begun.elapsed().as_secs_f64());
    Ok(Target {
        name: "ejabberd".to_owned(),
        addr,
        domain: DOMAIN.to_owned(),
        rss_pid,
        callbridge: None,
        process,
        graceful_stop: Some(stop),
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_are_quoted_and_escaped() {
        assert_eq!(lua_string("a\"b"), "\"a\\\"b\"");
        assert_eq!(lua_string("/tmp/x"), "\"/tmp/x\"");
    }

    #[test]
    fn user_names_follow_the_pattern() {
        assert_eq!(user_name(7), "bench7");
        assert_eq!(user_password(7), "bench-pw-7");
    }
}
