//! Appliance tasks: `cargo xtask image` (build the flashable image), `cargo xtask qemu`
//! (boot it with the console on this terminal) and the QEMU test tier.
//!
//! The image itself is made by the image/ crate (sb-image); this module builds the static
//! binaries it packs, runs it, and drives QEMU.

mod boot_bench;
mod build;
mod cluster_chain;
mod data_damage;
mod hub;
mod scenarios;
mod upgrade_chain;
mod vm;

use std::process::Command;

use crate::util::{Args, TaskResult};
use build::{Variant, build_image, output_root};
use vm::{BootPath, Ports, fresh_disk, fresh_vars, qemu_args};

pub use boot_bench::run as boot_bench;

const DEFAULT_BOARD: &str = "qemu-q35";

pub fn image(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut board = DEFAULT_BOARD.to_string();
    let mut variant = Variant::Release;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--board" => board = args.value("--board")?,
            "--test-hooks" => variant = Variant::TestHooks,
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask image [--board qemu-q35|appliance-x86] [--test-hooks]\n  \
                     builds init, xmppd and mmp (static, musl), then the initramfs, the UKI and the GPT disk\n  \
                     image under target/appliance/<board>/ (--test-hooks: target/appliance-test, init with\n  \
                     test-only hooks, never for shipping)"
                );
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    crate::deps::ensure_image_tools(false)?;
    let manifest = build_image(&board, variant)?;
    let mib = |key: &str| manifest.size(key) as f64 / (1024.0 * 1024.0);
    println!("\nSwitchboard image for board {board}:");
    println!(
        "  disk image (flash this)  {}  ({:.0} MiB)",
        manifest.get("disk")?,
        mib("size_disk")
    );
    println!(
        "  UKI (BOOTX64.EFI)        {}  ({:.1} MiB)",
        manifest.get("uki")?,
        mib("size_uki")
    );
    println!(
        "  kernel (bzImage)         {}  ({:.1} MiB)",
        manifest.get("vmlinuz")?,
        mib("size_vmlinuz")
    );
    println!(
        "  initramfs (cpio)         {}  ({:.1} MiB)",
        manifest.get("initramfs")?,
        mib("size_initramfs")
    );
    println!("  vmlinux (PVH, fast QEMU boots)  {}", manifest.get("vmlinux")?);
    println!("  kernel modules           {}", manifest.get("modules")?);
    println!(
        "Write it to a disk with: dd if={} of=/dev/sdX bs=4M conv=fsync",
        manifest.get("disk")?
    );
    Ok(())
}

pub fn qemu(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut board = DEFAULT_BOARD.to_string();
    let mut boot = BootPath::Ovmf;
    let mut fresh = false;
    let mut ports = Ports {
        c2s: 15222,
        component: 15223,
        s2s: 15269,
        web: 15443,
        ssh: 15022,
    };
    let mut extra = String::new();
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--board" => board = args.value("--board")?,
            "--fast" => boot = BootPath::Fast,
            "--fresh" => fresh = true,
            "--port" => ports.c2s = args.number("--port")?,
            "--component-port" => ports.component = args.number("--component-port")?,
            "--s2s-port" => ports.s2s = args.number("--s2s-port")?,
            "--web-port" => ports.web = args.number("--web-port")?,
            "--ssh-port" => ports.ssh = args.number("--ssh-port")?,
            "--append" => extra = args.value("--append")?,
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask qemu [--fast] [--fresh] [--port N] [--component-port N] [--s2s-port N] [--web-port N]\n\
                     \x20                       [--ssh-port N]\n\
                     \x20                       [--append 'KERNEL ARGS'] [--board qemu-q35]\n  \
                     builds the image and boots it in QEMU (software emulation) with the serial console here.\n  \
                     --fast: -kernel/-initrd (PVH) instead of OVMF firmware + UKI; --fresh: start from the\n  \
                     pristine disk image (the VM's disk otherwise keeps its data between runs);\n  \
                     --append (fast path only): e.g. switchboard.recovery. Quit QEMU with Ctrl-A then X."
                );
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    crate::deps::ensure_image_tools(true)?;
    let manifest = build_image(&board, Variant::Release)?;
    let dir = output_root(Variant::Release).join(&board);
    let disk = dir.join("vm-disk.img");
    if fresh || !disk.exists() {
        fresh_disk(&manifest, &disk)?;
    }
    let vars = dir.join("vm-vars.fd");
    if boot == BootPath::Ovmf && (fresh || !vars.exists()) {
        fresh_vars(&vars)?;
    }
    let mut qemu = qemu_args(&manifest, boot, &disk, &vars, &ports, &extra)?;
    qemu.extend(["-serial".into(), "mon:stdio".into()]);
    println!(
        "\nBooting Switchboard ({}; software emulation, expect ~{} s to \"XMPP ready\").\n\
         Console: this terminal (first boot asks for the admin password; log in as admin).\n\
         Recovery menu: press a key when asked at boot. Quit QEMU: Ctrl-A then X.\n\
         From this host, once ready (127.0.0.1 only):\n\
         \x20 XMPP clients   127.0.0.1:{}  (domain localhost; add a user on the console: user add NAME)\n\
         \x20 Call Bridges   127.0.0.1:{}\n\
         \x20 federation     127.0.0.1:{}\n\
         \x20 web admin      https://127.0.0.1:{}/ (after webadmin listen a 443, webadmin enable)\n\
         \x20 SSH and SFTP   ssh -p {} admin@127.0.0.1 (after ssh listen a, ssh enable)\n\
         VM disk (keeps data between runs; --fresh resets it): {}\n",
        if boot == BootPath::Fast {
            "PVH kernel + initramfs"
        } else {
            "OVMF + UKI from the disk"
        },
        if boot == BootPath::Fast { 15 } else { 40 },
        ports.c2s,
        ports.component,
        ports.s2s,
        ports.web,
        ports.ssh,
        disk.display()
    );
    let status = Command::new("qemu-system-x86_64")
        .args(&qemu)
        .status()
        .map_err(|e| format!("qemu-system-x86_64 (package qemu-system-x86): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("QEMU ended with {status}"))
    }
}

/// The QEMU test tier run by `cargo xtask test`.
pub fn test_tier(args: &[String]) -> TaskResult {
    scenarios::run(args)
}
