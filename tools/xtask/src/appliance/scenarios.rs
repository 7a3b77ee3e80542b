//! The appliance test tier: the image built with test hooks, booted under QEMU (TCG), driven
//! through its serial console and the forwarded XMPP port.
//!
//! Steps on one VM build on each other (a reboot must find what the step before wrote), so
//! after a failure the rest of that VM's chain is skipped, not run against a broken box.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::build::{self, Manifest, Variant, build_image};
use super::data_damage;
use super::vm::{BootPath, Vm, fresh_disk, parse_ready_line};
use crate::util::{Args, TaskResult, TempDir};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const ADMIN_PASSWORD: &str = "appliance-test-pw";
pub(super) const USER_PASSWORD: &str = "alice-pw-1234";
const LOGIN_SCRIPT: &str = include_str!("xmpp_login.py");
const WEB_API_SCRIPT: &str = include_str!("web_api.py");
/// Short watchdog timeout so the reset test takes seconds, not a minute.
pub(super) const FAST_CMDLINE: &str = "switchboard.watchdog_timeout=10";
/// Console idle logout for the VM that tests it (the default is 15 minutes).
const CONSOLE_IDLE_S: u32 = 15;

#[derive(Default)]
pub(super) struct Report {
    passed: Vec<String>,
    failed: Vec<(String, String)>,
    skipped: Vec<String>,
    figures: Vec<String>,
}

impl Report {
    /// Runs `step` unless an earlier step of the same chain failed; its failure stops the chain.
    pub(super) fn step(&mut self, chain_ok: &mut bool, name: &str, step: impl FnOnce(&mut Report) -> TaskResult) {
        self.run_step(chain_ok, true, name, step)
    }

    /// A step whose failure leaves the VM usable for the next ones (it only checks).
    pub(super) fn check(&mut self, chain_ok: &mut bool, name: &str, step: impl FnOnce(&mut Report) -> TaskResult) {
        self.run_step(chain_ok, false, name, step)
    }

    fn run_step(
        &mut self,
        chain_ok: &mut bool,
        stops_chain: bool,
        name: &str,
        step: impl FnOnce(&mut Report) -> TaskResult,
    ) {
        if !*chain_ok {
            println!("  skip  {name}");
            self.skipped.push(name.to_string());
            return;
        }
        let begun = Instant::now();
        match step(self) {
            Ok(()) => {
                println!("  ok    {name} ({:.1} s)", begun.elapsed().as_secs_f64());
                self.passed.push(name.to_string());
            }
            Err(e) => {
                println!("  FAIL  {name} ({:.1} s): {e}", begun.elapsed().as_secs_f64());
                self.failed.push((name.to_string(), e));
                if stops_chain {
                    *chain_ok = false;
                }
            }
        }
    }

    pub(super) fn figure(&mut self, text: String) {
        println!("  figure: {text}");
        self.figures.push(text);
    }
}

pub fn run(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut keep = false;
    let mut only: Option<String> = None;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--keep" => keep = true,
            "--only" => only = Some(args.value("--only")?),
            "-h" | "--help" => {
                println!(
                    "appliance tier options (after `cargo xtask test --tier appliance --`):\n  \
                     --keep          keep the work directory (console logs, disks)\n  \
                     --only fast|ovmf|upgrade|cluster  run one VM chain\n  \
                     SB_QEMU_ECHO=1  copy the guest console to stdout\n  \
                     SB_IMAGE_XMPPD, SB_IMAGE_MMP  pack these static binaries instead of building xmppd/mmp"
                );
                return Ok(());
            }
            other => return Err(format!("unknown appliance tier option '{other}'")),
        }
    }
    let manifest = build_image("qemu-q35", Variant::TestHooks)?;
    let mut work = TempDir::new("appliance")?;
    if keep {
        work.keep();
    }
    let mut report = Report::default();
    report.figure(format!(
        "sizes: kernel bzImage {:.1} MiB, initramfs {:.1} MiB (cpio, uncompressed), UKI {:.1} MiB, disk {} MiB",
        mib(manifest.size("size_vmlinuz")),
        mib(manifest.size("size_initramfs")),
        mib(manifest.size("size_uki")),
        manifest.size("size_disk") >> 20
    ));
    let started = Instant::now();
    let mut image_ok = true;
    report.step(&mut image_ok, "image: the same inputs give the same bytes", |_| {
        let again = build::run_image_tool(
            &build::board_file("qemu-q35")?,
            &build::output_root(Variant::TestHooks).join("bin"),
            &work.path().join("rebuild"),
        )?;
        for key in ["initramfs", "uki", "disk"] {
            if !build::same_bytes(&manifest.path(key)?, &again.path(key)?)? {
                return Err(format!("the rebuilt {key} differs from the first build"));
            }
        }
        Ok(())
    });
    if only.as_deref().is_none_or(|o| o == "fast") {
        println!("VM 1: fast boot path (PVH vmlinux + initramfs), console on a unix socket");
        fast_chain(&manifest, work.path(), &mut report);
    }
    if only.as_deref().is_none_or(|o| o == "ovmf") {
        println!("VM 2: OVMF firmware, UKI from the disk's ESP");
        ovmf_chain(&manifest, work.path(), &mut report);
    }
    if only.as_deref().is_none_or(|o| o == "upgrade") {
        println!("VM 6: A/B upgrades through OVMF, one variable store for the whole chain");
        super::upgrade_chain::upgrade_chain(&manifest, work.path(), &mut report);
    }
    if only.as_deref().is_none_or(|o| o == "cluster") {
        println!("VMs 3-5: a three-node cluster on a private VM network");
        super::cluster_chain::cluster_chain(&manifest, work.path(), &mut report);
    }
    println!("\nappliance figures:");
    for f in &report.figures {
        println!("  {f}");
    }
    println!("appliance tier took {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "{} passed, {} failed, {} skipped",
        report.passed.len(),
        report.failed.len(),
        report.skipped.len()
    );
    if !report.failed.is_empty() {
        if !keep {
            work.keep();
        }
        let names: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!("appliance steps failed: {}", names.join(", ")));
    }
    if !report.skipped.is_empty() {
        return Err(format!("appliance steps skipped: {}", report.skipped.join(", ")));
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Waits for init's ready line; returns (kernel s, userspace s, wall s since QEMU start).
pub(super) fn wait_ready(vm: &mut Vm) -> TaskResult<(f64, f64, f64)> {
    vm.expect("switchboard: XMPP ready", BOOT_TIMEOUT)?;
    let line = vm.expect("\n", Duration::from_secs(5))?;
    let wall = vm.started.elapsed().as_secs_f64();
    let (kernel, user) = parse_ready_line(&format!("XMPP ready{line}")).ok_or("unparsable ready line")?;
    Ok((kernel, user, wall))
}

pub(super) fn set_first_password(vm: &mut Vm) -> TaskResult {
    vm.expect("First boot: choose the admin password", COMMAND_TIMEOUT)?;
    vm.expect("New admin password: ", COMMAND_TIMEOUT)?;
    vm.send_line(ADMIN_PASSWORD)?;
    vm.expect("Repeat the password: ", COMMAND_TIMEOUT)?;
    vm.send_line(ADMIN_PASSWORD)?;
    vm.expect("SUCCESS", COMMAND_TIMEOUT)?;
    // The console logs the admin straight in after the first-boot password.
    vm.expect(&prompt("switchboard"), COMMAND_TIMEOUT)?;
    Ok(())
}

pub(super) fn login(vm: &mut Vm, host: &str) -> TaskResult {
    vm.expect(&format!("{host} login: "), COMMAND_TIMEOUT)?;
    vm.send_line("admin")?;
    vm.expect("Password: ", COMMAND_TIMEOUT)?;
    vm.send_line(ADMIN_PASSWORD)?;
    vm.expect(&format!("{host}> "), COMMAND_TIMEOUT)?;
    Ok(())
}

fn prompt(host: &str) -> String {
    format!("{host}> ")
}

/// A command whose output must contain `want`.
pub(super) fn command_expect(vm: &mut Vm, host: &str, line: &str, want: &str) -> TaskResult<String> {
    let out = vm.command(line, &prompt(host), COMMAND_TIMEOUT)?;
    if out.contains(want) {
        Ok(out)
    } else {
        Err(format!("`{line}` printed {out:?}, expected {want:?}"))
    }
}

/// `user add NAME`: mmp prompts for the password twice on the terminal.
pub(super) fn add_user(vm: &mut Vm, host: &str, name: &str, password: &str) -> TaskResult {
    vm.send_line(&format!("user add {name}"))?;
    for _ in 0..3 {
        let (which, text) = vm.expect_any(&["assword", "SUCCESS", "FAILURE"], COMMAND_TIMEOUT)?;
        match which {
            0 => {
                vm.expect(":", Duration::from_secs(5))?;
                vm.send_line(password)?;
            }
            1 => {
                vm.expect(&prompt(host), COMMAND_TIMEOUT)?;
                return Ok(());
            }
            _ => {
                let why = vm.expect("\n", Duration::from_secs(5))?;
                return Err(format!("user add {name}: FAILURE{why} ({text:?})"));
            }
        }
    }
    Err(format!("user add {name}: more prompts than expected"))
}

/// An XMPP stream header through the forwarded port gets a stream header back.
fn stream_answer(port: u16) -> TaskResult<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        )
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if text.contains("</stream:features>") || text.contains("<stream:features/>") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    if text.contains("<stream:stream") {
        Ok(text)
    } else {
        Err(format!("no stream header in answer {text:?}"))
    }
}

pub(super) fn slixmpp_login(port: u16, jid: &str, password: &str) -> TaskResult {
    let output = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(LOGIN_SCRIPT)
        .args([jid, password, &port.to_string()])
        .output()
        .map_err(|e| format!("python3 (packages python3, python3-slixmpp): {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.contains("LOGGED IN") {
        Ok(())
    } else {
        Err(format!(
            "slixmpp login of {jid} failed: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ))
    }
}

/// The web API through the forwarded port (see web_api.py).
fn web_api(port: u16, admin_password: &str, expected_user: &str) -> TaskResult {
    let output = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(WEB_API_SCRIPT)
        .args([&port.to_string(), admin_password, expected_user])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.contains("WEB API OK") {
        Ok(())
    } else {
        Err(format!(
            "web API through port {port}: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `sshpass -p PASSWORD ssh|sftp` with options for a throwaway VM: password login only, no
/// host key kept, to 127.0.0.1:`port`.
fn ssh_client(program: &str, port: u16) -> Command {
    let mut command = Command::new("sshpass");
    command.args(["-p", ADMIN_PASSWORD, program]);
    command.args([
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "ConnectTimeout=30",
        "-o",
    ]);
    command.arg(format!("Port={port}"));
    command.stdin(std::process::Stdio::null());
    command
}

/// `ssh admin@node LINE`: its exit status and everything it printed.
pub(super) fn ssh_exec(port: u16, line: &str) -> TaskResult<(Option<i32>, String)> {
    let output = ssh_client("ssh", port)
        .args(["admin@127.0.0.1", line])
        .output()
        .map_err(|e| format!("sshpass/ssh (packages sshpass, openssh-client): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code(), text))
}

/// On the console: SSH on the first interface's port 22, enabled, with its host key made.
/// The listener binds once the change reached xmppd; callers retry their first connection.
pub(super) fn enable_ssh(vm: &mut Vm, host: &str) -> TaskResult {
    command_expect(vm, host, "ssh listen a 22", "SUCCESS")?;
    command_expect(vm, host, "ssh enable", "SUCCESS")?;
    wait_for_output(vm, host, "ssh status", "SHA256:")?;
    Ok(())
}

/// OpenSSH against the appliance through the forwarded port: `xmpp status` exits 0 and a bad
/// command 1, SFTP puts a file into the file area and gets it back, `pki list` names it.
fn ssh_and_sftp(port: u16, work: &std::path::Path) -> TaskResult {
    let exec = |line: &str| ssh_exec(port, line);
    // The listener binds once the change reached xmppd: a few bounded tries.
    let mut last = (None, String::new());
    for _ in 0..20 {
        last = exec("xmpp status")?;
        if last.0 == Some(0) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if last.0 != Some(0) {
        return Err(format!("ssh 'xmpp status' exited {:?}: {}", last.0, last.1));
    }
    let (code, text) = exec("xmpp frobnicate")?;
    if code != Some(1) || !text.contains("FAILURE") {
        return Err(format!("ssh 'xmpp frobnicate' exited {code:?}: {text}"));
    }
    let upload = work.join("ssh-upload.crt");
    let contents = "uploaded over sftp\n";
    std::fs::write(&upload, contents).map_err(|e| e.to_string())?;
    let batch = work.join("ssh-batch");
    std::fs::write(&batch, "put ssh-upload.crt\nget ssh-upload.crt ssh-download.crt\n").map_err(|e| e.to_string())?;
    let output = ssh_client("sftp", port)
        .current_dir(work)
        .args(["-o", "BatchMode=no", "-b"])
        .arg(&batch)
        .arg("admin@127.0.0.1")
        .output()
        .map_err(|e| format!("sftp: {e}"))?;
    let downloaded = std::fs::read_to_string(work.join("ssh-download.crt")).unwrap_or_default();
    if !output.status.success() || downloaded != contents {
        return Err(format!(
            "sftp put/get: {} {} (got back {downloaded:?})",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let (code, text) = exec("pki list")?;
    let named = text.starts_with("User supplied certificates and keys:") && text.lines().any(|l| l == "ssh-upload.crt");
    if code != Some(0) || !named {
        return Err(format!("pki list over ssh exited {code:?}: {text}"));
    }
    Ok(())
}

/// Repeats `line` (bounded) until its output contains `want`.
pub(super) fn wait_for_output(vm: &mut Vm, host: &str, line: &str, want: &str) -> TaskResult<String> {
    let mut last = String::new();
    for _ in 0..30 {
        last = vm.command(line, &prompt(host), COMMAND_TIMEOUT)?;
        if last.contains(want) {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(format!("`{line}` never showed {want:?}; last output {last:?}"))
}

/// An orderly power-off from the console, so the disk image is consistent before the test
/// edits it.
fn power_off(vm: &mut Vm) -> TaskResult {
    vm.send_line("shutdown")?;
    vm.expect("powering off", COMMAND_TIMEOUT)?;
    vm.wait_exit(COMMAND_TIMEOUT).map(|_| ())
}

fn need(vm: &mut Option<Vm>) -> TaskResult<&mut Vm> {
    vm.as_mut().ok_or_else(|| "no VM".to_string())
}

fn health_value(health: &str, key: &str) -> Option<String> {
    health
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn fast_chain(manifest: &Manifest, work: &std::path::Path, report: &mut Report) {
    let disk = work.join("fast-disk.img");
    let mut ok = true;
    let mut vm: Option<Vm> = None;
    let mut host = "switchboard".to_string();
    report.step(&mut ok, "fast: boot to XMPP ready", |r| {
        fresh_disk(manifest, &disk)?;
        let mut v = Vm::start("fast", manifest, BootPath::Fast, &disk, work, FAST_CMDLINE)?;
        let (kernel, user, wall) = wait_ready(&mut v)?;
        r.figure(format!(
            "fast path (PVH) first boot to XMPP ready: kernel {kernel:.2} s + userspace {user:.2} s; {wall:.1} s from QEMU start"
        ));
        vm = Some(v);
        Ok(())
    });
    report.step(&mut ok, "fast: XMPP stream through the forwarded port", |_| {
        let port = need(&mut vm)?.ports.c2s;
        let answer = stream_answer(port)?;
        if !answer.contains("starttls") {
            println!("        (note: no <starttls/> offered in {answer:?})");
        }
        Ok(())
    });
    report.step(&mut ok, "fast: first-boot admin password on the console", |_| {
        set_first_password(need(&mut vm)?)
    });
    report.step(&mut ok, "fast: health (watchdog petting, data mounted)", |r| {
        let v = need(&mut vm)?;
        let health = command_expect(v, &host, "health", "Watchdog")?;
        let watchdog = health_value(&health, "Watchdog").unwrap_or_default();
        if !watchdog.starts_with("petting") {
            return Err(format!("watchdog state {watchdog:?}"));
        }
        if health_value(&health, "Data partition").is_none_or(|d| d.contains("NOT")) {
            return Err(format!("data partition not mounted: {health:?}"));
        }
        if let Some(memory) = health_value(&health, "Memory") {
            r.figure(format!(
                "guest memory at idle (256 MiB VM, MemTotal - MemAvailable): {memory}"
            ));
        }
        Ok(())
    });
    report.check(
        &mut ok,
        "fast: ipv4 static address applied, then removed (DHCP again)",
        |_| {
            let v = need(&mut vm)?;
            command_expect(v, &host, "ipv4 a add 10.0.2.50/24 10.0.2.2", "SUCCESS")?;
            wait_for_output(v, &host, "iface a", "10.0.2.50/24")?;
            command_expect(v, &host, "ipv4 a del 10.0.2.50/24", "SUCCESS")?;
            // Back on DHCP: QEMU's user network hands out 10.0.2.15 again.
            wait_for_output(v, &host, "iface a", "10.0.2.15/24")?;
            stream_answer(v.ports.c2s).map(|_| ())
        },
    );
    report.check(&mut ok, "fast: xmpp status through mmp", |_| {
        let v = need(&mut vm)?;
        let out = v.command("xmpp status", &prompt(&host), COMMAND_TIMEOUT)?;
        if out.trim().is_empty() || out.contains("FAILURE: mmp") {
            return Err(format!("xmpp status printed {out:?}"));
        }
        Ok(())
    });
    report.check(&mut ok, "fast: slixmpp logs in through the forwarded port", |_| {
        let v = need(&mut vm)?;
        add_user(v, &host, "alice", USER_PASSWORD)?;
        slixmpp_login(v.ports.c2s, "alice@localhost", USER_PASSWORD)
    });
    report.check(
        &mut ok,
        "fast: the web admin's API answers through a forwarded port",
        |_| {
            let v = need(&mut vm)?;
            command_expect(v, &host, "webadmin listen a 443", "SUCCESS")?;
            command_expect(v, &host, "webadmin enable", "SUCCESS")?;
            wait_for_output(v, &host, "webadmin status", "https://")?;
            web_api(v.ports.web, ADMIN_PASSWORD, "alice")
        },
    );
    report.check(
        &mut ok,
        "fast: ssh runs commands and sftp moves files through a forwarded port",
        |_| {
            let v = need(&mut vm)?;
            // The host key is made when SSH first starts, as xmppd (uid 100) in its data folder.
            enable_ssh(v, &host)?;
            ssh_and_sftp(v.ports.ssh, work)
        },
    );
    // Left on `a` for the rest of the chain: after the reboots below, xmppd starts before the
    // DHCP lease and must bind once it arrives (init's ready probe needs that).
    report.check(
        &mut ok,
        "fast: xmpp listen a follows the interface's address (DHCP, static, DHCP again)",
        |_| {
            let v = need(&mut vm)?;
            command_expect(
                v,
                &host,
                "xmpp listen z",
                "FAILURE: no interface 'z' on this board (interfaces: a, b)",
            )?;
            command_expect(v, &host, "xmpp listen a", "SUCCESS")?;
            wait_for_output(v, &host, "xmpp status", "10.0.2.15:5222 on a (listening)")?;
            slixmpp_login(v.ports.c2s, "alice@localhost", USER_PASSWORD)?;
            command_expect(v, &host, "ipv4 a add 10.0.2.50/24 10.0.2.2", "SUCCESS")?;
            wait_for_output(v, &host, "xmpp status", "10.0.2.50:5222 on a (listening)")?;
            command_expect(v, &host, "ipv4 a del 10.0.2.50/24", "SUCCESS")?;
            wait_for_output(v, &host, "xmpp status", "10.0.2.15:5222 on a (listening)")?;
            slixmpp_login(v.ports.c2s, "alice@localhost", USER_PASSWORD)
        },
    );
    let mut domain_set = false;
    report.step(&mut ok, "fast: appliance setting (hostname) survives a reboot", |_| {
        let v = need(&mut vm)?;
        v.send_line("hostname node1")?;
        v.expect("SUCCESS", COMMAND_TIMEOUT)?;
        host = "node1".into();
        v.expect(&prompt(&host), COMMAND_TIMEOUT)?;
        domain_set = command_expect(v, &host, "xmpp domain example.test", "SUCCESS").is_ok();
        v.send_line("reboot")?;
        wait_ready(v)?;
        login(v, &host)?;
        command_expect(v, &host, "hostname", "node1").map(|_| ())
    });
    report.check(&mut ok, "fast: XMPP setting (xmpp domain) survives a reboot", |_| {
        if !domain_set {
            return Err("`xmpp domain example.test` did not print SUCCESS before the reboot".into());
        }
        command_expect(need(&mut vm)?, &host, "xmpp status", "example.test").map(|_| ())
    });
    report.check(
        &mut ok,
        "fast: xmppd runs as its own user with only CAP_NET_BIND_SERVICE; data folder owner-only",
        |_| {
            let v = need(&mut vm)?;
            let out = v.command("test xmppd-credentials", &prompt(&host), COMMAND_TIMEOUT)?;
            for want in [
                "Uid: 100 100 100 100",
                "Gid: 100 100 100 100",
                "CapEff: 0000000000000400",
                "CapPrm: 0000000000000400",
                "data folder: owner-only, owned by the xmppd user",
            ] {
                if !out.contains(want) {
                    return Err(format!("expected {want:?} in {out:?}"));
                }
            }
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "fast: a damaged store holds xmppd (no restart loop, no reset); recovery restores the last-good copy",
        |r| {
            let v = need(&mut vm)?;
            command_expect(v, &host, "test corrupt-store", "SUCCESS")?;
            let held = wait_for_output(v, &host, "health", "held: store damaged")?;
            let restarts = health_value(&held, "xmppd restarts").unwrap_or_default();
            // Longer than the old way took to give up (5 quick failures) plus the 10 s watchdog.
            let waited = Duration::from_secs(30);
            std::thread::sleep(waited);
            let health = v.command("health", &prompt(&host), COMMAND_TIMEOUT)?;
            let state = health_value(&health, "xmppd ").unwrap_or_default();
            let watchdog = health_value(&health, "Watchdog").unwrap_or_default();
            if !state.contains("held: store damaged") || !watchdog.starts_with("petting") {
                return Err(format!("after {} s: {health:?}", waited.as_secs()));
            }
            if health_value(&health, "xmppd restarts").unwrap_or_default() != restarts {
                return Err(format!("xmppd was restarted while held: {health:?}"));
            }
            r.figure(format!(
                "damaged store: xmppd held with {state:?}, 0 restarts and the watchdog petted over {} s",
                waited.as_secs()
            ));
            v.send_line("recovery")?;
            v.expect("xmppd was held: store damaged", COMMAND_TIMEOUT)?;
            v.expect("recovery> ", COMMAND_TIMEOUT)?;
            v.send_line("7")?;
            v.expect("FAILURE: xmppd --check-store", COMMAND_TIMEOUT)?;
            v.expect("recovery> ", COMMAND_TIMEOUT)?;
            v.send_line("8")?;
            v.expect("SUCCESS: /data/export/xmpp-", COMMAND_TIMEOUT)?;
            v.expect("recovery> ", COMMAND_TIMEOUT)?;
            v.send_line("9")?;
            v.expect("restored the last-good copy", COMMAND_TIMEOUT)?;
            v.expect("recovery> ", COMMAND_TIMEOUT)?;
            v.send_line("6")?;
            v.expect(&prompt(&host), COMMAND_TIMEOUT)?;
            // Wait on the XMPP port, not on mmp: an mmp that finds no daemon opens the store
            // itself, and one doing so while xmppd starts takes the store's lock from it.
            let port = v.ports.c2s;
            let mut answered = stream_answer(port);
            for _ in 0..60 {
                if answered.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
                answered = stream_answer(port);
            }
            answered.map_err(|e| format!("xmppd did not come back after the restore: {e}"))?;
            // xmppd holds the store now: mmp either reaches its socket or finds the store locked.
            wait_for_output(v, &host, "user list", "alice")?;
            if domain_set {
                command_expect(v, &host, "xmpp status", "example.test")?;
            }
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "fast: stopped xmppd (SIGSTOP, test hook) is killed and restarted",
        |_| {
            let v = need(&mut vm)?;
            command_expect(v, &host, "test xmppd-sigstop", "SUCCESS")?;
            // Heartbeats stop; init kills after 10 s of silence and restarts with backoff.
            for _ in 0..30 {
                std::thread::sleep(Duration::from_secs(3));
                let health = v.command("health", &prompt(&host), COMMAND_TIMEOUT)?;
                let restarts = health_value(&health, "xmppd restarts").unwrap_or_default();
                let state = health_value(&health, "xmppd ").unwrap_or_default();
                if restarts != "0" && state.starts_with("running") {
                    let last = health_value(&health, "xmppd last exit").unwrap_or_default();
                    if !last.contains("heartbeat") {
                        return Err(format!("restarted, but the last exit says {last:?}"));
                    }
                    return Ok(());
                }
            }
            Err("xmppd was not restarted within 90 s".into())
        },
    );
    report.step(
        &mut ok,
        "fast: watchdog resets the VM when init stops petting (test hook)",
        |_| {
            let v = need(&mut vm)?;
            command_expect(v, &host, "test watchdog-stop", "SUCCESS")?;
            wait_ready(v)?;
            login(v, &host)?;
            let health = v.command("health", &prompt(&host), COMMAND_TIMEOUT)?;
            let cause = health_value(&health, "Last reset cause").unwrap_or_default();
            if cause.contains("watchdog") && cause.contains("test hook") {
                Ok(())
            } else {
                Err(format!("last reset cause {cause:?}"))
            }
        },
    );
    report.step(
        &mut ok,
        "fast: recovery menu (key at boot) factory reset wipes /data",
        |_| {
            let v = need(&mut vm)?;
            v.send_line("reboot")?;
            v.expect("Press any key within", BOOT_TIMEOUT)?;
            v.send("x")?;
            v.expect("recovery> ", COMMAND_TIMEOUT)?;
            v.send_line("1")?;
            v.expect("to confirm: ", COMMAND_TIMEOUT)?;
            v.send_line("factory reset")?;
            v.expect("SUCCESS: factory reset done", COMMAND_TIMEOUT)?;
            wait_ready(v)?;
            // A wiped /data: no admin password, default hostname, the first-boot question again.
            set_first_password(v)?;
            host = "switchboard".into();
            let health = v.command("health", &prompt(&host), COMMAND_TIMEOUT)?;
            let cause = health_value(&health, "Last reset cause").unwrap_or_default();
            if cause != "first boot" {
                return Err(format!("after the factory reset the last reset cause is {cause:?}"));
            }
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "fast: QEMU killed during configuration writes loses nothing acknowledged",
        |_| {
            let mut v = vm.take().ok_or("no VM")?;
            let mut acknowledged = Vec::new();
            for i in 0..6 {
                let name = format!("w{i}");
                add_user(&mut v, &host, &name, USER_PASSWORD)?;
                acknowledged.push(name);
            }
            // The next write is in flight when the power goes.
            v.send_line("user add w6")?;
            std::thread::sleep(Duration::from_millis(300));
            v.kill();
            let mut v = Vm::start("fast-after-kill", manifest, BootPath::Fast, &disk, work, FAST_CMDLINE)?;
            wait_ready(&mut v)?;
            login(&mut v, &host)?;
            let list = v.command("user list", &prompt(&host), COMMAND_TIMEOUT)?;
            let missing: Vec<&String> = acknowledged.iter().filter(|u| !list.contains(u.as_str())).collect();
            let health = v.command("health", &prompt(&host), COMMAND_TIMEOUT)?;
            let cause = health_value(&health, "Last reset cause").unwrap_or_default();
            vm = Some(v);
            if !missing.is_empty() {
                return Err(format!(
                    "acknowledged users missing after the power cut: {missing:?} (user list: {list:?})"
                ));
            }
            if !cause.contains("unclean") {
                return Err(format!("last reset cause after the power cut is {cause:?}"));
            }
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "fast: switchboard.recovery on the kernel command line opens the recovery menu",
        |_| {
            if let Some(v) = vm.take() {
                v.kill();
            }
            let cmdline = format!("{FAST_CMDLINE} switchboard.recovery");
            let mut v = Vm::start("fast-recovery", manifest, BootPath::Fast, &disk, work, &cmdline)?;
            v.expect("recovery> ", BOOT_TIMEOUT)?;
            // Setting the network from the menu runs the same `ipv4` command as the console.
            v.send_line("4")?;
            v.expect("Interface [", COMMAND_TIMEOUT)?;
            v.send_line("")?;
            v.expect("Address/prefix", COMMAND_TIMEOUT)?;
            v.send_line("10.0.2.60/24")?;
            v.expect("Gateway", COMMAND_TIMEOUT)?;
            v.send_line("")?;
            v.expect("SUCCESS", COMMAND_TIMEOUT)?;
            v.expect("recovery> ", COMMAND_TIMEOUT)?;
            v.send_line("6")?;
            wait_ready(&mut v)?;
            login(&mut v, &host)?;
            let stored = command_expect(&mut v, &host, "ipv4 a", "10.0.2.60/24");
            let removed = stored.and_then(|_| command_expect(&mut v, &host, "ipv4 a del 10.0.2.60/24", "SUCCESS"));
            vm = Some(v);
            removed.map(|_| ())
        },
    );
    report.step(
        &mut ok,
        "fast: a torn primary superblock on /data is rebuilt from a backup, users kept",
        |_| {
            let mut v = vm.take().ok_or("no VM")?;
            power_off(&mut v)?;
            data_damage::tear_primary_superblock(&disk)?;
            let cmdline = format!("{FAST_CMDLINE} switchboard.console_idle={CONSOLE_IDLE_S}");
            let mut v = Vm::start("fast-torn", manifest, BootPath::Fast, &disk, work, &cmdline)?;
            v.expect("trying the backup superblock", BOOT_TIMEOUT)?;
            wait_ready(&mut v)?;
            login(&mut v, &host)?;
            let kept = command_expect(&mut v, &host, "user list", "w0");
            vm = Some(v);
            kept.map(|_| ())
        },
    );
    report.step(&mut ok, "fast: an idle console session is logged out", |_| {
        let v = need(&mut vm)?;
        v.expect(
            &format!("Logged out after {CONSOLE_IDLE_S} s without a command"),
            COMMAND_TIMEOUT,
        )?;
        login(v, &host)
    });
    report.step(
        &mut ok,
        "fast: an unrecognisable /data is not formatted; the console says why and opens recovery",
        |_| {
            let mut v = vm.take().ok_or("no VM")?;
            power_off(&mut v)?;
            data_damage::scramble_filesystem(&disk)?;
            let mut v = Vm::start("fast-scrambled", manifest, BootPath::Fast, &disk, work, FAST_CMDLINE)?;
            let seen = v
                .expect("/data is not available", BOOT_TIMEOUT)
                .and_then(|_| v.expect("nothing was erased", COMMAND_TIMEOUT))
                .and_then(|_| v.expect("recovery> ", COMMAND_TIMEOUT));
            v.kill();
            seen?;
            if !data_damage::still_scrambled(&disk)? {
                return Err("the data partition was written to (formatted?) although nobody confirmed it".into());
            }
            Ok(())
        },
    );
    if let Some(v) = vm.take() {
        v.kill();
    }
}

fn ovmf_chain(manifest: &Manifest, work: &std::path::Path, report: &mut Report) {
    let disk = work.join("ovmf-disk.img");
    let mut ok = true;
    let mut vm: Option<Vm> = None;
    report.step(&mut ok, "ovmf: UKI boots from the ESP to XMPP ready", |r| {
        fresh_disk(manifest, &disk)?;
        let mut v = Vm::start("ovmf", manifest, BootPath::Ovmf, &disk, work, "")?;
        let (kernel, user, wall) = wait_ready(&mut v)?;
        r.figure(format!(
            "OVMF path (firmware + UKI) first boot to XMPP ready: kernel {kernel:.2} s + userspace {user:.2} s \
             (kernel time counts from the kernel's start); {wall:.1} s from QEMU start incl. firmware"
        ));
        vm = Some(v);
        Ok(())
    });
    report.step(&mut ok, "ovmf: XMPP stream through the forwarded port", |_| {
        let port = vm.as_ref().ok_or("no VM")?.ports.c2s;
        stream_answer(port).map(|_| ())
    });
    report.step(&mut ok, "ovmf: console first-boot password and health", |_| {
        let v = vm.as_mut().ok_or("no VM")?;
        set_first_password(v)?;
        command_expect(v, "switchboard", "health", "petting").map(|_| ())
    });
    report.step(&mut ok, "ovmf: shutdown powers off in order", |_| {
        let v = vm.as_mut().ok_or("no VM")?;
        v.send_line("shutdown")?;
        v.expect("powering off", COMMAND_TIMEOUT)?;
        let status = v.wait_exit(COMMAND_TIMEOUT)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("QEMU ended with {status}"))
        }
    });
    if let Some(v) = vm.take() {
        v.kill();
    }
}
