//! Install what the tiers need when it is missing, so a fresh Debian machine passes.
//!
//! A machine that has everything does nothing: the packages are checked with dpkg-query and
//! the Rust target with rustup before anything is installed.

use crate::util::{Args, TaskResult, is_root, on_path, run_output, run_status};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Debian packages only the tests use: slixmpp (interop), Prosody and ejabberd (bench peers
/// and federation interop), dnsmasq (SRV records); the tiers also build and boot the image,
/// so [`test_packages`] adds [`IMAGE_PACKAGES`] and [`QEMU_PACKAGES`].
const TEST_ONLY_PACKAGES: &[&str] = &[
    "python3-slixmpp",
    "prosody",
    "ejabberd",
    "openssl",
    "dnsmasq-base",
    // ip netns for the federation tier.
    "iproute2",
    // OpenSSH's ssh, sftp and ssh-keygen, and sshpass for password logins: the SSH tests
    // (xmppd's tests/ssh.rs in the unit tier, tools/interop/ssh_workflow.py, the appliance).
    "openssh-client",
    "sshpass",
    // The browser tier: headless Chromium driven by Selenium.
    "chromium",
    "chromium-driver",
    "python3-selenium",
];

/// What `cargo xtask image` runs: musl-gcc for ring's C, the kernel's tools (apt-get download is
/// apt's own), systemd-boot's UKI stub, and the disk image tools.
pub const IMAGE_PACKAGES: &[&str] = &[
    "musl-tools",
    "systemd-boot-efi",
    "mtools",
    "gdisk",
    "fdisk",
    "e2fsprogs",
    "cpio",
    // depmod for the image's module closure, objcopy for the UKI, xz for the kernel.
    "kmod",
    "binutils",
    "xz-utils",
];

/// What `cargo xtask qemu` adds to the image's: the emulator and its UEFI firmware.
pub const QEMU_PACKAGES: &[&str] = &["qemu-system-x86", "ovmf"];

/// Every Debian package the test tiers use.
pub fn test_packages() -> Vec<&'static str> {
    [TEST_ONLY_PACKAGES, IMAGE_PACKAGES, QEMU_PACKAGES].concat()
}

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// The command that adds the musl target, named in every message about it.
pub const MUSL_INSTALL: &str = "rustup target add x86_64-unknown-linux-musl";

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn command(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut check_only = false;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--check" => check_only = true,
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask deps [--check]\n  installs missing Debian packages ({}) and the {MUSL_TARGET} \
                     Rust target;\n  --check only reports what is missing and the commands that would run",
                    test_packages().join(", ")
                );
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if check_only {
        let missing = missing_packages(&test_packages())?;
        if missing.is_empty() {
            println!("all {} Debian packages are installed", test_packages().len());
        } else {
            println!("missing Debian packages: {}", missing.join(" "));
            for line in install_plan(&missing) {
                println!("  would run: {line}");
            }
        }
        match musl_target_installed() {
            Some(true) => println!("Rust target {MUSL_TARGET} is installed"),
            Some(false) => println!("Rust target {MUSL_TARGET} is missing; would run: rustup target add {MUSL_TARGET}"),
            None => println!("rustup not found: cannot check the {MUSL_TARGET} target"),
        }
        return Ok(());
    }
    ensure_packages(&test_packages())?;
    ensure_musl_target()
}

/// Install the packages that are not installed yet; nothing at all when none is missing.
pub fn ensure_packages(packages: &[&str]) -> TaskResult {
    let missing = missing_packages(packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing missing Debian packages: {}", missing.join(" "));
    let sudo = if is_root() {
        false
    } else if on_path("sudo")
        && Command::new("sudo")
            .args(["-n", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        true
    } else {
        return Err(format!(
            "missing Debian packages and not root; run as root:\n  {}",
            install_plan(&missing).join("\n  ")
        ));
    };
    let _services_held = ServiceStartBlocker::install(sudo)?;
    let mut update = privileged(sudo, "apt-get");
    update.args(["-q", "update"]);
    run_status(&mut update, "apt-get update")?;
    let mut install = privileged(sudo, "apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "-y", "--no-install-recommends", "install"])
        .args(&missing);
    run_status(&mut install, "apt-get install")?;
    let still_missing = missing_packages(packages)?;
    if still_missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after apt-get install: {}",
            still_missing.join(" ")
        ))
    }
}

/// The commands `ensure_packages` runs, for messages and `deps --check`.
fn install_plan(missing: &[String]) -> Vec<String> {
    vec![
        format!("printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D}  (only while installing, if absent)"),
        "apt-get -q update".to_owned(),
        format!(
            "DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends install {}",
            missing.join(" ")
        ),
    ]
}

fn privileged(sudo: bool, program: &str) -> Command {
    if sudo {
        let mut command = Command::new("sudo");
        // sudo drops the environment; DEBIAN_FRONTEND must survive it.
        command.args(["env", "DEBIAN_FRONTEND=noninteractive", program]);
        command
    } else {
        Command::new(program)
    }
}

/// The packages from `packages` that dpkg does not list as installed.
pub fn missing_packages(packages: &[&str]) -> TaskResult<Vec<String>> {
    if !on_path("dpkg-query") {
        return Err(format!(
            "dpkg-query not found: this is not a Debian system; install the equivalents of {} yourself",
            packages.join(" ")
        ));
    }
    // dpkg-query exits 1 when some name is unknown to dpkg; the output still lists the rest.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${db:Status-Abbrev}\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run dpkg-query: {err}"))?;
    Ok(missing_from_dpkg_listing(
        packages,
        &String::from_utf8_lossy(&output.stdout),
    ))
}

/// `ii` (desired install, status installed) is the only state in which a package is usable;
/// `rc` (removed, config left), `iU` (unpacked) and absent names all count as missing.
fn missing_from_dpkg_listing(packages: &[&str], listing: &str) -> Vec<String> {
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim_end() == "ii")
        // Multi-arch packages are listed as `name:amd64`.
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    packages
        .iter()
        .filter(|package| !installed.contains(package))
        .map(|package| package.to_string())
        .collect()
}

/// While alive, a policy-rc.d that forbids maintainer scripts to start services: installing
/// prosody or ejabberd must not leave system daemons on 5222 that collide with the tests.
struct ServiceStartBlocker {
    created: bool,
    sudo: bool,
}

impl ServiceStartBlocker {
    fn install(sudo: bool) -> TaskResult<ServiceStartBlocker> {
        if Path::new(POLICY_RC_D).exists() {
            // The administrator's own policy stays in charge.
            return Ok(ServiceStartBlocker { created: false, sudo });
        }
        let script = "#!/bin/sh\n# written by cargo xtask while installing test packages\nexit 101\n";
        if sudo {
            let mut command = Command::new("sudo");
            command.args([
                "sh",
                "-c",
                &format!("printf '%s' '{script}' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}"),
            ]);
            run_status(&mut command, "writing policy-rc.d")?;
        } else {
            fs::write(POLICY_RC_D, script).map_err(|err| format!("cannot write {POLICY_RC_D}: {err}"))?;
            fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755))
                .map_err(|err| format!("cannot chmod {POLICY_RC_D}: {err}"))?;
        }
        Ok(ServiceStartBlocker { created: true, sudo })
    }
}

impl Drop for ServiceStartBlocker {
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        if self.sudo {
            let _ = Command::new("sudo").args(["rm", "-f", POLICY_RC_D]).status();
        } else {
            let _ = fs::remove_file(POLICY_RC_D);
        }
    }
}

/// `Some(installed)`, or `None` when rustup is not there to ask.
fn musl_target_installed() -> Option<bool> {
    if !on_path("rustup") {
        return None;
    }
    let listing = run_output(
        Command::new("rustup").args(["target", "list", "--installed"]),
        "rustup target list",
    )
    .ok()?;
    Some(listing.lines().any(|line| line.trim() == MUSL_TARGET))
}

/// Without rustup, the toolchain has the target when its sysroot holds the target's std.
fn sysroot_has_musl() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    run_output(
        Command::new(rustc).args(["--print", "sysroot"]),
        "rustc --print sysroot",
    )
    .map(|sysroot| Path::new(sysroot.trim()).join("lib/rustlib").join(MUSL_TARGET).is_dir())
    .unwrap_or(false)
}

pub fn ensure_musl_target() -> TaskResult {
    match musl_target_installed() {
        Some(true) => Ok(()),
        Some(false) => {
            println!("adding the Rust target {MUSL_TARGET}: {MUSL_INSTALL}");
            run_status(
                Command::new("rustup").args(["target", "add", MUSL_TARGET]),
                "rustup target add",
            )
            .map_err(|err| format!("{err}\nthe image needs the {MUSL_TARGET} target; add it with:\n  {MUSL_INSTALL}"))
        }
        None if sysroot_has_musl() => Ok(()),
        None => Err(format!(
            "the Rust target {MUSL_TARGET} is missing and rustup is not here to add it; install it \
             with your toolchain's installer, or install rustup (https://rustup.rs) and run:\n  {MUSL_INSTALL}"
        )),
    }
}

/// Before `cargo xtask image` (and `qemu`, which builds the image) builds anything: the musl
/// target and the image tools, installed when missing the way `cargo xtask test` installs
/// them, or a message that names the exact commands to run.
pub fn ensure_image_tools(with_qemu: bool) -> TaskResult {
    let mut packages = IMAGE_PACKAGES.to_vec();
    if with_qemu {
        packages.extend_from_slice(QEMU_PACKAGES);
    }
    ensure_packages(&packages)?;
    ensure_musl_target()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_installed_packages_count() {
        let listing = "prosody\tii \nejabberd\trc \nzstd\tiU \nlibc6:amd64\tii \n";
        let missing = missing_from_dpkg_listing(&["prosody", "ejabberd", "zstd", "libc6", "cpio"], listing);
        assert_eq!(missing, vec!["ejabberd", "zstd", "cpio"]);
    }

    #[test]
    fn nothing_missing_when_all_listed_installed() {
        let listing = "a\tii \nb\tii \n";
        assert!(missing_from_dpkg_listing(&["a", "b"], listing).is_empty());
    }

    #[test]
    fn real_dpkg_query_reports_an_unknown_package_as_missing() {
        if !on_path("dpkg-query") {
            return;
        }
        let missing = missing_packages(&["switchboard-no-such-package"]).unwrap();
        assert_eq!(missing, vec!["switchboard-no-such-package"]);
    }
}
