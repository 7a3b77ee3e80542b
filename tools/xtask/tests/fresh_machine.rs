//! `cargo xtask image` and `qemu` on a machine without the musl target: the install step runs
//! before the first build, or the command stops naming what to run.
//!
//! The real toolchain is never touched: xtask runs with a PATH of stand-ins (rustup without
//! the musl target, dpkg-query, cargo) that write down what they were asked, in order.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MUSL_INSTALL: &str = "rustup target add x86_64-unknown-linux-musl";

struct FreshMachine {
    dir: PathBuf,
}

impl FreshMachine {
    /// `target_add_works`: whether `rustup target add` succeeds (a machine offline fails it).
    fn new(name: &str, target_add_works: bool) -> FreshMachine {
        let dir = std::env::temp_dir().join(format!("xtask-fresh-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).expect("creating the stand-ins' folder");
        let log = dir.join("calls.log");
        let log = log.display();
        let add_exit = if target_add_works { 0 } else { 1 };
        stand_in(
            &dir,
            "rustup",
            &format!(
                "printf '%s\\n' \"rustup $*\" >> {log}\n\
                 case \"$1 $2\" in\n\
                 \x20 'target list') echo x86_64-unknown-linux-gnu ;;\n\
                 \x20 'target add') [ {add_exit} = 0 ] || echo 'error: could not download' >&2; exit {add_exit} ;;\n\
                 esac"
            ),
        );
        // Every package asked about is installed: this machine lacks only the Rust target. One log
        // line per package: the format argument holds a newline of its own.
        stand_in(
            &dir,
            "dpkg-query",
            &format!(
                "for p in \"$@\"; do case \"$p\" in -*) ;; *)\n\
                 \x20 printf 'dpkg-query %s\\n' \"$p\" >> {log}; printf '%s\\tii \\n' \"$p\" ;; esac; done"
            ),
        );
        // The build itself is not what is tested: record it and stop there.
        stand_in(
            &dir,
            "cargo",
            &format!("printf '%s\\n' \"cargo $*\" >> {log}\nexit 101"),
        );
        FreshMachine { dir }
    }

    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("PATH", self.dir.join("bin"))
            .env("CARGO", self.dir.join("bin/cargo"))
            .env("CARGO_TARGET_DIR", self.dir.join("target"))
            .output()
            .expect("running xtask")
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for FreshMachine {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn stand_in(dir: &Path, name: &str, body: &str) {
    let path = dir.join("bin").join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writing a stand-in");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod a stand-in");
}

fn position(calls: &[String], prefix: &str) -> Option<usize> {
    calls.iter().position(|call| call.starts_with(prefix))
}

fn adds_the_target_before_the_first_build(command: &str) -> Vec<String> {
    let machine = FreshMachine::new(command, true);
    let output = machine.xtask(&[command]);
    let calls = machine.calls();
    let added = position(&calls, MUSL_INSTALL).unwrap_or_else(|| panic!("no `{MUSL_INSTALL}` in {calls:?}"));
    let built = position(&calls, "cargo build").unwrap_or_else(|| panic!("no build in {calls:?}"));
    assert!(added < built, "the target was added after the build: {calls:?}");
    assert!(
        !output.status.success(),
        "the stand-in build fails, so must xtask {command}"
    );
    calls
}

#[test]
fn image_adds_the_musl_target_before_building() {
    adds_the_target_before_the_first_build("image");
}

#[test]
fn qemu_adds_the_musl_target_and_checks_for_qemu_and_ovmf_before_building() {
    let calls = adds_the_target_before_the_first_build("qemu");
    let built = position(&calls, "cargo build").unwrap_or_default();
    for package in ["qemu-system-x86", "ovmf", "musl-tools", "systemd-boot-efi"] {
        let checked = position(&calls, &format!("dpkg-query {package}"));
        assert!(
            checked.is_some_and(|at| at < built),
            "{package} not checked before the build: {calls:?}"
        );
    }
}

#[test]
fn without_a_way_to_add_the_target_image_stops_and_names_the_command() {
    let machine = FreshMachine::new("offline", false);
    let output = machine.xtask(&["image"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(MUSL_INSTALL),
        "the message does not name `{MUSL_INSTALL}`: {stderr}"
    );
    let calls = machine.calls();
    assert_eq!(
        position(&calls, "cargo build"),
        None,
        "built without the target: {calls:?}"
    );
}
