//! QEMU harness: one appliance VM, its serial console on a unix socket (server=on,wait=on so
//! no output is lost), XMPP ports forwarded to free high ports on 127.0.0.1.
//! Software emulation (TCG) only: there is no KVM here.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::build::Manifest;
use crate::util::{TaskResult, free_port};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootPath {
    /// `-kernel vmlinux` (PVH ELF) `-initrd`: skips firmware and XZ decompression.
    Fast,
    /// OVMF → the disk's ESP → BOOTX64.EFI (the UKI): the real path.
    Ovmf,
}

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub c2s: u16,
    pub component: u16,
    pub s2s: u16,
    /// The web admin and API (guest port 443).
    pub web: u16,
    /// SSH and SFTP for admin (guest port 22).
    pub ssh: u16,
}

impl Ports {
    pub fn free() -> TaskResult<Ports> {
        let ip = Ipv4Addr::LOCALHOST.into();
        Ok(Ports {
            c2s: free_port(ip)?,
            component: free_port(ip)?,
            s2s: free_port(ip)?,
            web: free_port(ip)?,
            ssh: free_port(ip)?,
        })
    }

    fn hostfwd(&self) -> String {
        format!(
            "hostfwd=tcp:127.0.0.1:{}-:5222,hostfwd=tcp:127.0.0.1:{}-:5223,hostfwd=tcp:127.0.0.1:{}-:5269,\
             hostfwd=tcp:127.0.0.1:{}-:443,hostfwd=tcp:127.0.0.1:{}-:22",
            self.c2s, self.component, self.s2s, self.web, self.ssh
        )
    }
}

/// QEMU arguments shared by the test harness and `cargo xtask qemu`.
pub fn qemu_args(
    manifest: &Manifest,
    boot: BootPath,
    disk: &Path,
    vars: &Path,
    ports: &Ports,
    extra_cmdline: &str,
) -> TaskResult<Vec<String>> {
    let mut args: Vec<String> = [
        "-M",
        "q35",
        "-m",
        "256",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        // The board's watchdog; on expiry the machine resets like real hardware.
        "-device",
        "i6300esb",
        "-action",
        "watchdog=reset",
        // A guest kernel panic ends QEMU with a failure instead of hanging a test.
        "-device",
        "pvpanic",
        "-action",
        "panic=exit-failure",
        // An entropy source, as real boards have RDRAND: without one the guest kernel's
        // random pool is seeded only from interrupt jitter, and every getrandom() made while
        // it starts (TLS keys in xmppd, the DHCP transaction id) waits about half a second.
        "-device",
        "virtio-rng-pci",
    ]
    .map(String::from)
    .to_vec();
    args.push("-netdev".into());
    args.push(format!("user,id=n0,{}", ports.hostfwd()));
    // romfile= : no iPXE option ROM (seconds of emulated firmware for nothing).
    args.push("-device".into());
    args.push("virtio-net-pci,netdev=n0,romfile=".into());
    args.push("-drive".into());
    args.push(format!(
        "file={},if=none,id=d0,format=raw,cache=writeback",
        disk.display()
    ));
    args.push("-device".into());
    // Firmware boots the disk first (no PXE attempts); -kernel boots need no boot order.
    args.push(format!(
        "virtio-blk-pci,drive=d0{}",
        if boot == BootPath::Ovmf { ",bootindex=0" } else { "" }
    ));
    match boot {
        BootPath::Fast => {
            let cmdline = format!("{} {extra_cmdline}", manifest.get("cmdline")?);
            args.extend([
                "-kernel".into(),
                manifest.get("vmlinux")?.into(),
                "-initrd".into(),
                manifest.get("initramfs")?.into(),
                "-append".into(),
                cmdline.trim().into(),
            ]);
        }
        BootPath::Ovmf => {
            args.push("-drive".into());
            args.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"));
            args.push("-drive".into());
            args.push(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
        }
    }
    Ok(args)
}

/// A sparse copy of the pristine disk image, so every test starts from a flashed box.
pub fn fresh_disk(manifest: &Manifest, to: &Path) -> TaskResult {
    let from = manifest.path("disk")?;
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(&from)
        .arg(to)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !status.success() {
        return Err(format!("copying {} failed", from.display()));
    }
    Ok(())
}

/// OVMF keeps boot entries in its variable store: a fresh copy for every new VM.
pub fn fresh_vars(to: &Path) -> TaskResult {
    std::fs::copy(OVMF_VARS, to)
        .map(|_| ())
        .map_err(|e| format!("copying {OVMF_VARS} (package ovmf): {e}"))
}

pub struct Vm {
    pub name: String,
    child: Child,
    console: UnixStream,
    output: Arc<Mutex<Vec<u8>>>,
    cursor: usize,
    pub ports: Ports,
    pub started: Instant,
    pub log_path: PathBuf,
}

impl Vm {
    pub fn start(
        name: &str,
        manifest: &Manifest,
        boot: BootPath,
        disk: &Path,
        work: &Path,
        extra_cmdline: &str,
    ) -> TaskResult<Vm> {
        Vm::start_with(name, manifest, boot, disk, work, extra_cmdline, &[])
    }

    /// [`Vm::start`] with more QEMU arguments (a second NIC).
    pub fn start_with(
        name: &str,
        manifest: &Manifest,
        boot: BootPath,
        disk: &Path,
        work: &Path,
        extra_cmdline: &str,
        extra_qemu: &[String],
    ) -> TaskResult<Vm> {
        let ports = Ports::free()?;
        // One variable store per VM name and work dir: a restarted VM (after a power cut)
        // finds the boot entries it left, as a real box does.
        let vars = work.join(format!("{name}-vars.fd"));
        if boot == BootPath::Ovmf && !vars.exists() {
            fresh_vars(&vars)?;
        }
        let socket = work.join(format!("{name}-console.sock"));
        let _ = std::fs::remove_file(&socket);
        let mut args = qemu_args(manifest, boot, disk, &vars, &ports, extra_cmdline)?;
        args.extend(extra_qemu.iter().cloned());
        args.push("-chardev".into());
        args.push(format!("socket,id=con,path={},server=on,wait=on", socket.display()));
        args.push("-serial".into());
        args.push("chardev:con".into());
        let log_path = work.join(format!("{name}-console.log"));
        let qemu_log = std::fs::File::create(work.join(format!("{name}-qemu.log"))).map_err(|e| e.to_string())?;
        let child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(qemu_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(qemu_log)
            .spawn()
            .map_err(|e| format!("starting qemu-system-x86_64 (package qemu-system-x86): {e}"))?;
        let started = Instant::now();
        // QEMU creates the socket and waits for us before it runs the guest.
        let console = loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(_) if started.elapsed() < Duration::from_secs(20) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("{name}: the QEMU console socket never opened: {e}")),
            }
        };
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = console.try_clone().map_err(|e| e.to_string())?;
        let sink = Arc::clone(&output);
        let mut log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let echo = std::env::var_os("SB_QEMU_ECHO").is_some();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = log.write_all(&buf[..n]);
                if echo {
                    let _ = std::io::stdout().write_all(&buf[..n]);
                }
                if let Ok(mut out) = sink.lock() {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        });
        Ok(Vm {
            name: name.to_string(),
            child,
            console,
            output,
            cursor: 0,
            ports,
            started,
            log_path,
        })
    }

    /// Waits for `needle` after the cursor; returns what came before it and moves past it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> TaskResult<String> {
        self.expect_any(&[needle], timeout).map(|(_, text)| text)
    }

    /// Waits for the first of `needles`; returns its index and the text before it.
    pub fn expect_any(&mut self, needles: &[&str], timeout: Duration) -> TaskResult<(usize, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let out = self.output.lock().map_err(|_| "console reader died".to_string())?;
                let rest = &out[self.cursor.min(out.len())..];
                let found = needles
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| find_bytes(rest, n.as_bytes()).map(|at| (at, i, n.len())))
                    .min();
                if let Some((at, index, len)) = found {
                    let before = String::from_utf8_lossy(&rest[..at]).into_owned();
                    self.cursor += at + len;
                    return Ok((index, before));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{}: QEMU exited ({status}) while waiting for {needles:?}; see {}",
                    self.name,
                    self.log_path.display()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: no {needles:?} within {} s; console log: {}",
                    self.name,
                    timeout.as_secs(),
                    self.log_path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn send(&mut self, text: &str) -> TaskResult {
        self.console
            .write_all(text.as_bytes())
            .map_err(|e| format!("{}: console write: {e}", self.name))
    }

    pub fn send_line(&mut self, line: &str) -> TaskResult {
        self.send(&format!("{line}\n"))
    }

    /// Sends a command at the MMP prompt and returns its output (up to the next prompt).
    pub fn command(&mut self, line: &str, prompt: &str, timeout: Duration) -> TaskResult<String> {
        self.send_line(line)?;
        let text = self.expect(prompt, timeout)?;
        // Drop the echoed command line.
        Ok(text
            .split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default())
    }

    /// Power cut: SIGKILL to QEMU, nothing flushed by the guest.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> TaskResult<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: QEMU still running after {} s",
                    self.name,
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Figures the init prints on its ready line: (kernel s, userspace s).
pub fn parse_ready_line(line: &str) -> Option<(f64, f64)> {
    let number_after = |key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((number_after("(kernel ")?, number_after("userspace ")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_figures() {
        let line = "switchboard: XMPP ready on 10.0.2.15:5222 (kernel 4.93 s, userspace 4.07 s, total 9.01 s)";
        assert_eq!(parse_ready_line(line), Some((4.93, 4.07)));
        assert_eq!(parse_ready_line("nothing"), None);
    }

    #[test]
    fn hostfwd_binds_loopback_only() {
        let ports = Ports {
            c2s: 1,
            component: 2,
            s2s: 3,
            web: 4,
            ssh: 5,
        };
        let text = ports.hostfwd();
        assert_eq!(text.matches("tcp:127.0.0.1:").count(), 5);
        assert!(text.contains("127.0.0.1:4-:443"));
        assert!(text.contains("127.0.0.1:5-:22"));
        assert!(text.contains("127.0.0.1:1-:5222"));
    }
}
