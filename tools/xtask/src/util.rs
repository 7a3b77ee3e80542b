//! Process, path and argument helpers shared by the tasks (std only).

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type TaskResult<T = ()> = Result<T, String>;

/// The workspace root, whatever directory `cargo xtask` was started from.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Where cargo puts build output: `./target`, unless the developer chose another directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// `cargo` as the toolchain that runs xtask (rustup's proxy when run outside cargo).
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(workspace_root());
    // `cargo run` gives xtask its own package's variables. Build scripts that watch one of
    // them (ring's watches CARGO_MANIFEST_DIR) would see a change and rebuild on every
    // switch between `cargo build` and `cargo xtask`, so nested cargo runs without them.
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && is_cargo_run_variable(key)
        {
            command.env_remove(key);
        }
    }
    command
}

/// Variables `cargo run` sets for the binary it runs (not the user's own CARGO_* settings).
pub fn is_cargo_run_variable(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// Run a command to completion with inherited output; `what` names it in the error.
pub fn run_status(command: &mut Command, what: &str) -> TaskResult {
    let status = command
        .status()
        .map_err(|err| format!("{what}: cannot start {:?}: {err}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Run a command and return its standard output; standard error is passed through.
pub fn run_output(command: &mut Command, what: &str) -> TaskResult<String> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("{what}: cannot start {:?}: {err}", command.get_program()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{what} failed ({})", output.status))
    }
}

/// Build binaries of the workspace and return the directory that holds them.
pub fn cargo_build(packages: &[&str], release: bool) -> TaskResult<PathBuf> {
    cargo_build_profile(packages, if release { "release" } else { "dev" })
}

/// Build with a named Cargo profile; returns the directory holding the binaries.
pub fn cargo_build_profile(packages: &[&str], profile: &str) -> TaskResult<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--profile", profile]);
    for package in packages {
        command.args(["-p", package]);
    }
    run_status(
        &mut command,
        &format!("cargo build --profile {profile} -p {}", packages.join(" -p ")),
    )?;
    // Cargo names the dev profile's directory "debug"; every other profile's is its name.
    Ok(target_dir().join(if profile == "dev" { "debug" } else { profile }))
}

pub fn banner(title: &str) {
    let line = "=".repeat(78);
    println!("\n{line}\n== {title}\n{line}");
}

pub fn format_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", elapsed.as_secs() / 60, elapsed.as_secs() % 60)
    }
}

/// The effective uid, read from /proc so xtask needs no libc binding.
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// Whether a program is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// A directory removed (with everything in it) when dropped, unless kept for inspection.
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(label: &str) -> TaskResult<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("switchboard-{label}-{}-{nanos:08x}", std::process::id()));
        fs::create_dir_all(&path).map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        Ok(TempDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            println!("kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Send a signal with the `kill` utility (std has no portable way to send anything but SIGKILL).
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every live descendant of `pid`, found through /proc (children before grandchildren).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(parent) = fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parse_parent_pid(&stat))
            {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut index = 0;
    // Bounded by the process count: every pid enters `found` at most once.
    while index < found.len() {
        let parent = found[index];
        for &(child, ppid) in &parents {
            if ppid == parent && !found.contains(&child) {
                found.push(child);
            }
        }
        index += 1;
    }
    found.remove(0);
    found
}

/// The parent pid from /proc/PID/stat; the command name may contain spaces and parentheses.
fn parse_parent_pid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The command name (`comm`) of a process.
pub fn process_name(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_owned())
}

/// A server process started by a task: stopped (with everything it spawned) when dropped,
/// so no failure path leaves a daemon behind.
pub struct ServerProcess {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Start `command` with its output appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> TaskResult<ServerProcess> {
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|err| format!("cannot open {}: {err}", log.display()))?;
        let err_file = log_file
            .try_clone()
            .map_err(|err| format!("cannot open {}: {err}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|err| format!("cannot start {name} ({:?}): {err}", command.get_program()))?;
        Ok(ServerProcess {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(err) => Some(err.to_string()),
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Wait until the server accepts TCP connections on `addr`.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> TaskResult {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before listening on {addr}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {addr} within {}s; log {}:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.log.display(),
                    self.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait up to `limit` for the process to exit by itself; `true` once it has.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the process and everything it spawned: SIGTERM, then SIGKILL for what is left
    /// after `grace`. Returns the exit status text.
    ///
    /// When the process is a wrapper (a shell running the real server), the signal goes to
    /// its descendants, deepest first, and the wrapper exits when they do: killing the
    /// wrapper first would orphan the server.
    pub fn stop(&mut self, grace: Duration) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".to_owned();
        };
        let pid = child.id();
        let family = descendants(pid);
        if let Ok(Some(status)) = child.try_wait() {
            kill_all(&descendants_alive(&family), "KILL");
            return status.to_string();
        }
        if family.is_empty() {
            send_signal(pid, "TERM");
        } else {
            for &member in family.iter().rev() {
                send_signal(member, "TERM");
            }
        }
        let deadline = Instant::now() + grace;
        let mut wrapper_signalled = family.is_empty();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    // The descendants are gone but the wrapper lingers: signal it too.
                    if !wrapper_signalled && descendants_alive(&family).is_empty() {
                        send_signal(pid, "TERM");
                        wrapper_signalled = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => {
                    let _ = child.kill();
                    break child
                        .wait()
                        .map(|s| format!("{s}, killed after {}s", grace.as_secs()))
                        .unwrap_or_else(|err| err.to_string());
                }
                Err(err) => break err.to_string(),
            }
        };
        // Whatever outlived its parent goes now.
        kill_all(&descendants_alive(&family), "KILL");
        status
    }
}

fn descendants_alive(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect()
}

fn kill_all(pids: &[u32], signal: &str) {
    for &pid in pids {
        send_signal(pid, signal);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let name = self.name.clone();
            let status = self.stop(Duration::from_secs(10));
            eprintln!("stopped {name}: {status}");
        }
    }
}

/// A TCP port that was free on `ip` a moment ago (the kernel's pick).
pub fn free_port(ip: IpAddr) -> TaskResult<u16> {
    let listener = TcpListener::bind((ip, 0)).map_err(|err| format!("cannot bind {ip}: {err}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot read the port bound on {ip}: {err}"))
}

/// Minimal argument reader: `--flag`, `--flag value`, `--flag=value`.
pub struct Args {
    items: Vec<String>,
    position: usize,
}

impl Args {
    pub fn new(items: &[String]) -> Args {
        Args {
            items: items.to_vec(),
            position: 0,
        }
    }

    /// The next option or word, split at `=` for `--flag=value`.
    pub fn next_flag(&mut self) -> Option<String> {
        let item = self.items.get(self.position)?.clone();
        self.position += 1;
        if item.starts_with("--")
            && let Some((flag, value)) = item.split_once('=')
        {
            self.items.insert(self.position, value.to_owned());
            return Some(flag.to_owned());
        }
        Some(item)
    }

    pub fn value(&mut self, flag: &str) -> TaskResult<String> {
        let value = self
            .items
            .get(self.position)
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        self.position += 1;
        Ok(value)
    }

    pub fn number<T: std::str::FromStr>(&mut self, flag: &str) -> TaskResult<T> {
        let text = self.value(flag)?;
        text.parse()
            .map_err(|_| format!("{flag}: '{text}' is not a valid number"))
    }

    /// Everything not read yet (after `--`).
    pub fn rest(&mut self) -> Vec<String> {
        let rest = self.items[self.position..].to_vec();
        self.position = self.items.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cargo_drops_only_the_variables_cargo_run_set() {
        assert!(is_cargo_run_variable("CARGO_MANIFEST_DIR"));
        assert!(is_cargo_run_variable("CARGO_PKG_NAME"));
        assert!(!is_cargo_run_variable("CARGO_TARGET_DIR"));
        assert!(!is_cargo_run_variable("CARGO_HOME"));
        assert!(!is_cargo_run_variable("CARGO"));
    }

    #[test]
    fn parses_effective_uid_from_proc_status() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn parses_parent_pid_even_with_odd_command_names() {
        assert_eq!(parse_parent_pid("42 (a (b) c) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_parent_pid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_parent_pid("garbage"), None);
    }

    #[test]
    fn args_read_flags_values_and_rest() {
        let items: Vec<String> = ["--tier", "interop", "--rate=5", "--", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut args = Args::new(&items);
        assert_eq!(args.next_flag().as_deref(), Some("--tier"));
        assert_eq!(args.value("--tier").unwrap(), "interop");
        assert_eq!(args.next_flag().as_deref(), Some("--rate"));
        assert_eq!(args.number::<u32>("--rate").unwrap(), 5);
        assert_eq!(args.next_flag().as_deref(), Some("--"));
        assert_eq!(args.rest(), vec!["x".to_string()]);
        assert_eq!(args.next_flag(), None);
        assert!(args.value("--missing").is_err());
    }

    #[test]
    fn descendants_of_a_real_child_include_its_grandchild() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("sh runs");
        let pid = child.id();
        let mut found = Vec::new();
        let mut names: Vec<String> = Vec::new();
        // The shell needs a moment to fork and the child to exec sleep; bounded polling, no
        // timing assertion.
        for _ in 0..250 {
            found = descendants(pid);
            names = found.iter().filter_map(|p| process_name(*p)).collect();
            if names.iter().any(|n| n == "sleep") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_all(&found, "KILL");
        let _ = child.kill();
        let _ = child.wait();
        assert!(names.iter().any(|n| n == "sleep"), "found {names:?}");
    }

    #[test]
    fn stopping_a_wrapper_stops_the_process_it_runs() {
        let dir = TempDir::new("unit-stop").unwrap();
        let mut command = Command::new("sh");
        // `; true` keeps sh alive as the parent of sleep, like a launcher script.
        command.args(["-c", "sleep 30; true"]);
        let mut server = ServerProcess::spawn("sleeper", command, &dir.path().join("log")).unwrap();
        let pid = server.pid().unwrap();
        let mut family = Vec::new();
        for _ in 0..100 {
            family = descendants(pid);
            if !family.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!family.is_empty(), "sh did not start sleep");
        let status = server.stop(Duration::from_secs(10));
        assert!(!status.contains("killed"), "needed SIGKILL: {status}");
        assert!(server.exited().is_none(), "child handle is released after stop");
        for member in family {
            let alive = process_name(member).is_some_and(|name| name == "sleep");
            assert!(!alive, "sleep {member} outlived the stop");
        }
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let path = {
            let dir = TempDir::new("unit").unwrap();
            fs::write(dir.path().join("f"), "x").unwrap();
            dir.path().to_path_buf()
        };
        assert!(!path.exists());
    }
}
