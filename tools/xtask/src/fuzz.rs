//! `cargo xtask test --tier fuzz`: a short run of every cargo-fuzz target, so a harness that
//! no longer builds or a crash the seeds already reach is caught on every test run. The long
//! runs (`cargo +nightly fuzz run <target>` for minutes) stay a manual step.
//!
//! The targets need nightly and cargo-fuzz; the deps step installs both when missing (like
//! the musl target). If they are still missing the tier is skipped with the reason, never
//! failed for it.

use crate::util::{TaskResult, is_cargo_run_variable, on_path, run_output, run_status, workspace_root};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// (crate folder holding the fuzz crate `fuzz/`, target): sb-proto's framer and JID targets,
/// and the state machines above it (fuzz/ at the root).
pub const TARGETS: &[(&str, &str)] = &[
    ("firmware/proto", "framer"),
    ("firmware/proto", "jid"),
    (".", "component"),
    (".", "dialback"),
    (".", "sasl"),
    (".", "admin"),
];

/// Fuzzing time per target: six targets stay well under three minutes with warm builds.
const SECONDS_PER_TARGET: u32 = 20;

const NIGHTLY: &str = "nightly";

/// Why the fuzz targets cannot run here, if they cannot.
pub fn toolchain_missing() -> Option<String> {
    if !on_path("rustup") {
        return Some("rustup not found, so no nightly toolchain".to_owned());
    }
    match nightly_installed() {
        Ok(true) => {}
        Ok(false) => return Some("the nightly toolchain is not installed".to_owned()),
        Err(err) => return Some(err),
    }
    if !on_path("cargo-fuzz") {
        return Some("cargo-fuzz is not installed".to_owned());
    }
    None
}

fn nightly_installed() -> Result<bool, String> {
    let listing = run_output(
        Command::new("rustup").args(["toolchain", "list"]),
        "rustup toolchain list",
    )?;
    Ok(listing.lines().any(|line| line.starts_with(NIGHTLY)))
}

/// Install nightly (minimal profile) and cargo-fuzz when missing.
pub fn ensure_toolchain() -> TaskResult {
    if !on_path("rustup") {
        return Err("rustup not found: cannot install the nightly toolchain".to_owned());
    }
    if !nightly_installed()? {
        println!("installing the {NIGHTLY} toolchain (fuzz targets)");
        run_status(
            Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]),
            "rustup toolchain install nightly",
        )?;
    }
    if !on_path("cargo-fuzz") {
        println!("installing cargo-fuzz");
        run_status(
            Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
            "cargo install cargo-fuzz",
        )?;
    }
    Ok(())
}

/// `cargo +nightly` through rustup's proxy, without the variables `cargo run` gave xtask
/// (the toolchain it pinned among them).
fn nightly_cargo(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.arg(format!("+{NIGHTLY}")).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && (is_cargo_run_variable(key) || matches!(key, "RUSTUP_TOOLCHAIN" | "CARGO" | "RUSTC"))
        {
            command.env_remove(key);
        }
    }
    command
}

pub fn smoke() -> TaskResult {
    if let Some(reason) = toolchain_missing() {
        println!(
            "SKIPPED fuzz smoke: {reason} (the deps step installs nightly and cargo-fuzz unless \
             --no-install is given, and says why when it cannot)"
        );
        return Ok(());
    }
    let root = workspace_root();
    for (crate_dir, target) in TARGETS {
        let dir = root.join(crate_dir);
        // A scratch corpus, so a test run never writes into the repository; the committed
        // seeds are read only.
        let corpus = root.join("target/fuzz-smoke").join(target);
        std::fs::create_dir_all(&corpus).map_err(|err| format!("{}: {err}", corpus.display()))?;
        let mut command = nightly_cargo(&dir);
        command.args(["fuzz", "run", target]).arg(&corpus);
        let seeds = dir.join("fuzz/seeds").join(target);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.args([
            "--",
            &format!("-max_total_time={SECONDS_PER_TARGET}"),
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ]);
        let started = Instant::now();
        println!("fuzz smoke: {target} for {SECONDS_PER_TARGET} s");
        run_status(&mut command, &format!("fuzz target {target}"))?;
        println!("fuzz smoke: {target} ok ({} s)", started.elapsed().as_secs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_fuzz_crate_and_a_source() {
        let root = workspace_root();
        for (crate_dir, target) in TARGETS {
            let manifest = std::fs::read_to_string(root.join(crate_dir).join("fuzz/Cargo.toml"))
                .unwrap_or_else(|err| panic!("{crate_dir}/fuzz/Cargo.toml: {err}"));
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} in {crate_dir}"
            );
            assert!(
                root.join(crate_dir)
                    .join("fuzz/fuzz_targets")
                    .join(format!("{target}.rs"))
                    .is_file()
            );
        }
    }

    #[test]
    fn smoke_time_stays_under_three_minutes() {
        assert!(TARGETS.len() as u32 * SECONDS_PER_TARGET < 180);
    }
}
