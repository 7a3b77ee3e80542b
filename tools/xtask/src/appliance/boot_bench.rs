//! `cargo xtask bench --boot [--boots N] [--ovmf] [--keep]`: where a boot's time goes, phase by
//! phase, from init's log timestamps on the serial console (seconds since kernel start, the
//! clock the kernel's own uptime counts) and the wall clock from QEMU's start.
//!
//! One first boot (formats /data, first-boot setup, key generation) is shown on its own; then
//! N boots of the same disk, each ended by an orderly `shutdown` from the console, give the
//! median of every phase. TCG only, like the test tier, so the figures are comparable.
//!
//! PVH (the kernel straight from QEMU) by default; `--ovmf` boots the UKI through the UEFI
//! firmware, keeping one variable store across the boots as a real box keeps its NVRAM, and
//! splits the time before the kernel into the firmware's part and the stubs' (systemd-stub,
//! then the kernel's EFI stub unpacking the kernel).

use std::time::Duration;

use super::build::{Variant, build_image};
use super::scenarios::{COMMAND_TIMEOUT, set_first_password, wait_ready};
use super::vm::{BootPath, Vm, fresh_disk};
use crate::util::{Args, TaskResult, TempDir};

const ADMIN_PASSWORD: &str = "appliance-test-pw";

/// The moments one boot reached, seconds since kernel start (`wall`: since QEMU start).
#[derive(Debug, Default, Clone)]
pub struct BootTimes {
    /// Wall clock (since QEMU start) when the firmware started the UKI (OVMF boots only).
    pub firmware: Option<f64>,
    pub init: Option<f64>,
    pub modules: Option<f64>,
    pub watchdog: Option<f64>,
    pub data: Option<f64>,
    pub xmppd_exec: Option<f64>,
    pub dhcp_lease: Option<f64>,
    pub ready: Option<f64>,
    pub wall: f64,
}

/// The phases of the table: (name, from, to) over [`BootTimes`].
type Phase = (&'static str, fn(&BootTimes) -> Option<f64>);

const PHASES: [Phase; 11] = [
    ("QEMU start -> UKI started (firmware)", |t| t.firmware),
    ("UKI started -> kernel start (stubs)", |t| {
        Some(t.wall - t.ready? - t.firmware?)
    }),
    ("QEMU start -> kernel start", |t| Some(t.wall - t.ready?)),
    ("kernel start -> PID 1 start", |t| t.init),
    ("PID 1 start -> modules loaded", |t| Some(t.modules? - t.init?)),
    ("modules -> watchdog open", |t| Some(t.watchdog? - t.modules?)),
    ("watchdog -> /data mounted (fsck)", |t| Some(t.data? - t.watchdog?)),
    ("/data -> xmppd exec (network, setup)", |t| {
        Some(t.xmppd_exec? - t.data?)
    }),
    ("xmppd exec -> 5222 accepting", |t| Some(t.ready? - t.xmppd_exec?)),
    ("userspace (PID 1 start -> ready)", |t| Some(t.ready? - t.init?)),
    ("QEMU start -> XMPP ready (wall)", |t| Some(t.wall)),
];

/// `[    1.234] init: INFO ...` → 1.234.
fn stamp(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split(']').next()?.trim().parse().ok()
}

/// The moments found in one boot's console text (up to and including the ready line).
pub fn parse_boot(console: &str, wall: f64) -> BootTimes {
    let mut times = BootTimes {
        wall,
        ..BootTimes::default()
    };
    for line in console.lines() {
        let first = |slot: &mut Option<f64>, value: Option<f64>| {
            if slot.is_none() {
                *slot = value;
            }
        };
        if line.contains("Switchboard init") && line.contains(" s after kernel start") {
            let number = line
                .split(" s after kernel start")
                .next()
                .and_then(|head| head.rsplit('(').next())
                .and_then(|n| n.trim().parse().ok());
            first(&mut times.init, number);
        } else if line.contains("kernel modules for board") {
            first(&mut times.modules, stamp(line));
        } else if line.contains("init: INFO watchdog ") || line.contains("no hardware watchdog") {
            first(&mut times.watchdog, stamp(line));
        } else if line.contains("mounted on /data") || line.contains("/data unavailable") {
            first(&mut times.data, stamp(line));
        } else if line.contains("xmppd started (pid") {
            first(&mut times.xmppd_exec, stamp(line));
        } else if line.contains("dhcp: INFO dhcp: ") && line.contains(" is ") {
            first(&mut times.dhcp_lease, stamp(line));
        } else if line.contains("switchboard: XMPP ready") {
            let total = line
                .split("total ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            first(&mut times.ready, total);
        }
    }
    times
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Some(values[values.len() / 2])
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// The table: one column per boot, then the median.
pub fn table(first: &BootTimes, boots: &[BootTimes]) -> String {
    let mut text = format!("{:<40} {:>8}", "phase (s)", "first");
    for n in 1..=boots.len() {
        text.push_str(&format!(" {:>6}", format!("#{n}")));
    }
    text.push_str(&format!(" {:>7}\n", "median"));
    for (name, value) in PHASES {
        text.push_str(&format!("{name:<40} {:>8}", show(value(first))));
        for boot in boots {
            text.push_str(&format!(" {:>6}", show(value(boot))));
        }
        let all: Vec<f64> = boots.iter().filter_map(value).collect();
        text.push_str(&format!(" {:>7}\n", show(median(all))));
    }
    let leases: Vec<f64> = boots.iter().filter_map(|t| Some(t.dhcp_lease? - t.init?)).collect();
    text.push_str(&format!(
        "{:<40} {:>8} (median; in parallel with the phases above)\n",
        "PID 1 start -> DHCP lease",
        show(median(leases))
    ));
    text
}

/// What OVMF's boot manager prints as it hands over to the UKI.
const FIRMWARE_HANDOVER: &str = "BdsDxe: starting";

fn one_boot(vm: &mut Vm, boot: BootPath) -> TaskResult<BootTimes> {
    let firmware = match boot {
        BootPath::Ovmf => {
            vm.expect(FIRMWARE_HANDOVER, COMMAND_TIMEOUT)?;
            Some(vm.started.elapsed().as_secs_f64())
        }
        BootPath::Fast => None,
    };
    let (_, _, wall) = wait_ready(vm)?;
    let console = std::fs::read_to_string(&vm.log_path).map_err(|e| e.to_string())?;
    Ok(BootTimes {
        firmware,
        ..parse_boot(&console, wall)
    })
}

/// Logs in on the console and powers off in order, so the next boot is an ordinary one.
fn shutdown(vm: &mut Vm) -> TaskResult {
    vm.expect("switchboard login: ", COMMAND_TIMEOUT)?;
    vm.send_line("admin")?;
    vm.expect("Password: ", COMMAND_TIMEOUT)?;
    vm.send_line(ADMIN_PASSWORD)?;
    vm.expect("switchboard> ", COMMAND_TIMEOUT)?;
    vm.send_line("shutdown")?;
    vm.wait_exit(Duration::from_secs(60)).map(|_| ())
}

pub fn run(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut boots = 5;
    let mut keep = false;
    let mut boot = BootPath::Fast;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--boots" => boots = args.number("--boots")?,
            "--keep" => keep = true,
            "--ovmf" => boot = BootPath::Ovmf,
            "--boot" => {}
            other => return Err(format!("unknown bench --boot option '{other}'")),
        }
    }
    let manifest = build_image("qemu-q35", Variant::TestHooks)?;
    let mut work = TempDir::new("boot-bench")?;
    if keep {
        work.keep();
    }
    let disk = work.path().join("disk.img");
    fresh_disk(&manifest, &disk)?;
    // One name for every VM: an OVMF VM then finds the variable store (boot entries) the
    // previous boot left, as a box does; each boot's console log replaces the last one's.
    let name = "boot";
    println!("first boot (formats /data, first-boot setup)...");
    let mut vm = Vm::start(name, &manifest, boot, &disk, work.path(), "")?;
    let first = one_boot(&mut vm, boot)?;
    set_first_password(&mut vm)?;
    vm.send_line("shutdown")?;
    vm.wait_exit(Duration::from_secs(60))?;
    let mut measured = Vec::new();
    for n in 1..=boots {
        println!("boot {n} of {boots}...");
        let mut vm = Vm::start(name, &manifest, boot, &disk, work.path(), "")?;
        measured.push(one_boot(&mut vm, boot)?);
        shutdown(&mut vm)?;
    }
    let path = match boot {
        BootPath::Fast => "PVH",
        BootPath::Ovmf => "OVMF (UEFI, UKI from the disk)",
    };
    println!("\n{path} boot breakdown under TCG (init's timestamps on the serial console):\n");
    print!("{}", table(&first, &measured));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "[    1.020] init: INFO Switchboard init 0.1.0 starting (1.02 s after kernel start)\n\
[    1.300] init: INFO loaded 9 kernel modules for board qemu-q35\n\
[    1.310] init: INFO watchdog /dev/watchdog: timeout 30 s, petting every 10000 ms\n\
[    1.500] init: INFO /dev/vda4 mounted on /data\n\
[    1.600] init: INFO xmppd started (pid 80)\n\
[    1.700] dhcp: INFO dhcp: eth0 is 10.0.2.15/24, router Some(10.0.2.2), lease Some(86400) s\n\
switchboard: XMPP ready on 10.0.2.15:5222 (kernel 1.02 s, userspace 1.38 s, total 2.40 s)\n";

    #[test]
    fn phases_come_from_the_console_timestamps() {
        let t = parse_boot(CONSOLE, 3.0);
        assert_eq!(t.init, Some(1.02));
        assert_eq!(t.modules, Some(1.3));
        assert_eq!(t.watchdog, Some(1.31));
        assert_eq!(t.data, Some(1.5));
        assert_eq!(t.xmppd_exec, Some(1.6));
        assert_eq!(t.dhcp_lease, Some(1.7));
        assert_eq!(t.ready, Some(2.4));
        let text = table(&t, &[t.clone(), t.clone()]);
        assert!(text.contains("QEMU start -> kernel start"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("userspace") && l.ends_with("1.38")),
            "{text}"
        );
    }

    #[test]
    fn a_missing_marker_shows_a_dash_not_a_number() {
        let t = parse_boot(
            "switchboard: XMPP ready on x (kernel 1 s, userspace 1 s, total 2.00 s)\n",
            2.5,
        );
        assert!(table(&t, std::slice::from_ref(&t)).contains("PID 1 start -> modules loaded"));
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    }
}
