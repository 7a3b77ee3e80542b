//! A/B upgrades through OVMF (issue 14): one VM, one disk and one OVMF variable store for the
//! whole chain (copied once, so BootOrder/BootNext survive every reboot as on real hardware):
//! a good upgrade commits and sticks across a reboot; `upgrade rollback` returns to the first
//! slot the same way (trial, then commit); an image whose kernel panics and one
//! whose xmppd never gets ready both fall back by themselves; a power cut while the inactive
//! slot is written leaves the box on the old slot. The images reach the VM's file area the
//! way an upload would leave them: written into the data partition (debugfs) before boot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::build::{self, Manifest};
use super::scenarios::{Report, command_expect, enable_ssh, login, set_first_password, ssh_exec, wait_ready};
use super::vm::{BootPath, Vm, fresh_disk};
use crate::util::{TaskResult, cargo, run_output};

const HOST: &str = "switchboard";
/// Write + reboot + OVMF + boot to ready, under TCG.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(300);
/// The never-ready image's trial time (its command line); the default is 300 s.
const UNREADY_TRIAL_S: u32 = 15;

struct TestImage {
    file: &'static str,
    version: &'static str,
    cmdline_append: String,
}

fn test_images() -> Vec<TestImage> {
    vec![
        TestImage {
            file: "good.sbu",
            version: "upgrade-test-good",
            cmdline_append: String::new(),
        },
        // No init in the initramfs under that name, no root= either: the kernel panics, and
        // `panic=5` (the board's) reboots it.
        TestImage {
            file: "panic.sbu",
            version: "upgrade-test-panic",
            cmdline_append: "rdinit=/nonexistent".into(),
        },
        // PID 1 keeps xmppd stopped (the recovery option): never ready, never healthy.
        TestImage {
            file: "unready.sbu",
            version: "upgrade-test-unready",
            cmdline_append: format!("switchboard.recovery switchboard.upgrade_trial_s={UNREADY_TRIAL_S}"),
        },
    ]
}

/// One more signed image from the built kernel and initramfs (`sb-image bundle`).
fn build_test_image(manifest: &Manifest, image: &TestImage, out: &Path) -> TaskResult {
    let mut command = cargo();
    command
        .args(["run", "--quiet", "-p", "sb-image", "--", "bundle", "--board"])
        .arg(build::board_file("qemu-q35")?)
        .arg("--vmlinuz")
        .arg(manifest.path("vmlinuz")?)
        .arg("--initramfs")
        .arg(manifest.path("initramfs")?)
        .args(["--version", image.version, "--cmdline-append", &image.cmdline_append])
        .arg("--out")
        .arg(out);
    run_output(&mut command, "sb-image bundle").map(|_| ())
}

/// Byte offset of the data partition (GPT entry 4) in the disk image.
fn data_offset(disk: &Path) -> TaskResult<u64> {
    let output = Command::new("sgdisk")
        .arg("-i")
        .arg("4")
        .arg(disk)
        .output()
        .map_err(|e| format!("sgdisk (package gdisk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let sector: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("sgdisk -i 4 printed no first sector: {text}"))?;
    Ok(sector * 512)
}

/// Puts `files` into /data/xmpp/certs (the file area) of the disk image, as an upload would.
fn seed_file_area(disk: &Path, files: &[(PathBuf, &str)]) -> TaskResult {
    let device = format!("{}?offset={}", disk.display(), data_offset(disk)?);
    let mut script = String::from("mkdir xmpp\nmkdir xmpp/certs\n");
    for (path, name) in files {
        script.push_str(&format!("write {} xmpp/certs/{name}\n", path.display()));
    }
    let output = Command::new("debugfs")
        .args(["-w", "-f", "-", &device])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().map(|mut s| s.write_all(script.as_bytes()));
            child.wait_with_output()
        })
        .map_err(|e| format!("debugfs (package e2fsprogs): {e}"))?;
    let listing = Command::new("debugfs")
        .args(["-R", "ls -l xmpp/certs", &device])
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    for (_, name) in files {
        if !listing.contains(name) {
            return Err(format!(
                "debugfs did not write {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

fn start(manifest: &Manifest, disk: &Path, work: &Path) -> TaskResult<Vm> {
    // The kernel's own `panic=5` must reboot the box (as on hardware), not QEMU exit on pvpanic.
    let extra = ["-action".to_string(), "panic=none".to_string()];
    Vm::start_with("upgrade", manifest, BootPath::Ovmf, disk, work, "", &extra)
}

/// `upgrade status` must contain every one of `want`.
fn status_has(vm: &mut Vm, want: &[&str]) -> TaskResult<String> {
    let out = command_expect(vm, HOST, "upgrade status", "Slot A")?;
    for w in want {
        if !out.contains(w) {
            return Err(format!("`upgrade status` printed {out:?}, expected {w:?}"));
        }
    }
    Ok(out)
}

/// Back at the console after an automatic reboot: ready, then the login prompt.
fn back_at_console(vm: &mut Vm) -> TaskResult {
    wait_ready(vm)?;
    login(vm, HOST)
}

/// The commit follows XMPP ready by a tick; give it a few turns of `upgrade status`.
fn status_eventually(vm: &mut Vm, want: &str) -> TaskResult<String> {
    let mut last = String::new();
    for _ in 0..20 {
        last = command_expect(vm, HOST, "upgrade status", "Slot A")?;
        if last.contains(want) {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    Err(format!("`upgrade status` never showed {want:?}; last: {last:?}"))
}

fn outcome_line(status: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with("Last outcome"))
        .unwrap_or("")
        .to_string()
}

pub(super) fn upgrade_chain(manifest: &Manifest, work: &Path, report: &mut Report) {
    let disk = work.join("upgrade-disk.img");
    let mut ok = true;
    let mut vm: Option<Vm> = None;
    // The flashed image's version (slot A), read from the first `upgrade status`.
    let mut factory = String::new();
    report.step(
        &mut ok,
        "upgrade: signed test images (good, kernel panic, never ready) in the file area",
        |_| {
            // The release image, and a bare UKI: no upgrade image at all (unsigned).
            let mut files = vec![
                (manifest.path("upgrade")?, "release.sbu"),
                (manifest.path("uki")?, "bare.efi"),
            ];
            for image in test_images() {
                let out = work.join(image.file);
                build_test_image(manifest, &image, &out)?;
                files.push((out, image.file));
            }
            fresh_disk(manifest, &disk)?;
            seed_file_area(&disk, &files)
        },
    );
    report.step(&mut ok, "upgrade: first boot from slot A; both slots shown", |_| {
        let mut v = start(manifest, &disk, work)?;
        wait_ready(&mut v)?;
        set_first_password(&mut v)?;
        let status = status_has(&mut v, &["(running, default)", "Slot B: (empty)"])?;
        factory = status
            .lines()
            .find_map(|l| l.strip_prefix("Slot A: ")?.strip_suffix(" (running, default)"))
            .ok_or_else(|| format!("no running slot A in {status:?}"))?
            .trim()
            .to_string();
        vm = Some(v);
        Ok(())
    });
    report.check(&mut ok, "upgrade: an unsigned file is refused with the reason", |r| {
        let v = vm.as_mut().ok_or("no VM")?;
        let out = command_expect(
            v,
            HOST,
            "upgrade bare.efi",
            "FAILURE: bare.efi: not a Switchboard upgrade image",
        )?;
        r.figure(format!("upgrade unsigned file (a bare UKI): {}", out.trim()));
        Ok(())
    });
    report.step(
        &mut ok,
        "upgrade: a good image commits once healthy and sticks across a reboot",
        |r| {
            let v = vm.as_mut().ok_or("no VM")?;
            let begun = Instant::now();
            command_expect(v, HOST, "upgrade good.sbu", "SUCCESS")?;
            back_at_console(v)?;
            status_eventually(v, "Slot B: upgrade-test-good (running, default)")?;
            let committed = begun.elapsed().as_secs_f64();
            v.send_line("reboot")?;
            back_at_console(v)?;
            let status = status_has(v, &["Slot B: upgrade-test-good (running, default)"])?;
            r.figure(format!(
                "upgrade good image: command to committed slot B {committed:.0} s (write, reboot, OVMF, ready); \
             after a reboot still slot B: {}",
                outcome_line(&status)
            ));
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "upgrade: rollback over SSH boots the other slot and commits it when healthy",
        |r| {
            let v = vm.as_mut().ok_or("no VM")?;
            // Over SSH the command runs inside xmppd (uid 100): PID 1 takes it on the upgrade
            // socket, the one its group may write to.
            enable_ssh(v, HOST)?;
            let mut answer = (None, String::new());
            for _ in 0..20 {
                answer = ssh_exec(v.ports.ssh, "upgrade rollback")?;
                if answer.0.is_some_and(|code| code != 255) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            if answer.0 != Some(0) || !answer.1.contains("SUCCESS") {
                return Err(format!("ssh 'upgrade rollback' exited {:?}: {}", answer.0, answer.1));
            }
            let begun = Instant::now();
            back_at_console(v)?;
            let status = status_eventually(v, &format!("Slot A: {factory} (running, default)"))?;
            r.figure(format!(
                "upgrade rollback: slot A ({factory}) committed again after {:.0} s; {}",
                begun.elapsed().as_secs_f64(),
                outcome_line(&status)
            ));
            Ok(())
        },
    );
    let home = format!("Slot A: {factory} (running, default)");
    report.step(&mut ok, "upgrade: a kernel that panics rolls back by itself", |r| {
        let v = vm.as_mut().ok_or("no VM")?;
        let begun = Instant::now();
        command_expect(v, HOST, "upgrade panic.sbu", "SUCCESS")?;
        v.expect("Kernel panic", UPGRADE_TIMEOUT)?;
        back_at_console(v)?;
        let status = status_has(v, &[&home, "did not become healthy"])?;
        r.figure(format!(
            "upgrade panicking kernel: back on slot A after {:.0} s; {}",
            begun.elapsed().as_secs_f64(),
            outcome_line(&status)
        ));
        Ok(())
    });
    report.step(
        &mut ok,
        "upgrade: an xmppd that never gets ready rolls back by itself",
        |r| {
            let v = vm.as_mut().ok_or("no VM")?;
            let begun = Instant::now();
            command_expect(v, HOST, "upgrade unready.sbu", "SUCCESS")?;
            v.expect(
                &format!("not ready and healthy within {UNREADY_TRIAL_S} s: rolled back"),
                UPGRADE_TIMEOUT,
            )?;
            back_at_console(v)?;
            let status = status_has(v, &[&home, "not ready and healthy"])?;
            r.figure(format!(
                "upgrade never-ready xmppd: back on slot A after {:.0} s; {}",
                begun.elapsed().as_secs_f64(),
                outcome_line(&status)
            ));
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "upgrade: a power cut while the slot is written leaves the old slot booting",
        |r| {
            let mut v = vm.take().ok_or("no VM")?;
            v.send_line("upgrade release.sbu")?;
            v.expect("verified (version", UPGRADE_TIMEOUT)?;
            v.kill();
            let mut v = start(manifest, &disk, work)?;
            back_at_console(&mut v)?;
            let status = status_has(&mut v, &[&home, "cut short"])?;
            r.figure(format!(
                "upgrade power cut during the slot write: rebooted into slot A; {}",
                outcome_line(&status)
            ));
            vm = Some(v);
            Ok(())
        },
    );
    report.check(&mut ok, "upgrade: no rollback to a half-written slot", |r| {
        let v = vm.as_mut().ok_or("no VM")?;
        // Slot B was cut short: nothing to return to, and the command says so.
        let out = command_expect(v, HOST, "upgrade rollback", "FAILURE: slot B holds no image")?;
        r.figure(format!("upgrade rollback to the half-written slot: {}", out.trim()));
        Ok(())
    });
    if let Some(v) = vm.take() {
        v.kill();
    }
}
