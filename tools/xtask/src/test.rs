//! `cargo xtask test`: install what is missing, then every tier in order, each with a banner
//! and its elapsed time, and a final `N passed, N failed` line.

use crate::util::{Args, TaskResult, banner, cargo, cargo_build, format_elapsed, run_status, workspace_root};
use crate::{appliance, bench, deps, fuzz};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const HELP: &str = "\
usage: cargo xtask test [--tier NAME]... [--list] [--fail-fast] [--no-install] [-- APPLIANCE-ARGS...]

Tiers, in order (--tier may repeat; default: all):
  fmt        cargo fmt --all --check
  clippy     cargo clippy --workspace --all-targets -- -D warnings
  unit       cargo test --workspace (unit tests and host integration tests)
  fuzz       every cargo-fuzz target for 20 s (nightly; skipped with the reason without it)
  interop    slixmpp clients, components and raw-socket attacks against a real xmppd (tools/interop)
  federation s2s with Prosody and ejabberd in a network namespace (tools/interop-federation)
  browser    the web admin in headless Chromium through Selenium (tools/browser); screenshots
             in target/test-output/browser
  bench      load generator smoke run against xmppd: clients in pairs and a Call Bridge,
             tiny numbers (no thresholds)
  appliance  the image booted in QEMU (tools/xtask/src/appliance)

Before the tiers, missing Debian packages and the musl target are installed, and for the
fuzz tier the nightly toolchain and cargo-fuzz (skip with --no-install). Every selected tier runs even after a failure unless --fail-fast.
Arguments after `--` go to the appliance tier.";

struct Tier {
    name: &'static str,
    what: &'static str,
    run: fn(&[String]) -> TaskResult,
}

const TIERS: &[Tier] = &[
    Tier {
        name: "fmt",
        what: "cargo fmt --all --check",
        run: fmt_tier,
    },
    Tier {
        name: "clippy",
        what: "cargo clippy --workspace --all-targets -- -D warnings",
        run: clippy_tier,
    },
    Tier {
        name: "unit",
        what: "cargo test --workspace (unit + host integration)",
        run: unit_tier,
    },
    Tier {
        name: "fuzz",
        what: "a short run of every fuzz target",
        run: fuzz_tier,
    },
    Tier {
        name: "interop",
        what: "slixmpp interop and hostile input against xmppd",
        run: interop_tier,
    },
    Tier {
        name: "federation",
        what: "s2s interop with Prosody and ejabberd in a network namespace",
        run: federation_tier,
    },
    Tier {
        name: "browser",
        what: "the web admin in headless Chromium (Selenium)",
        run: browser_tier,
    },
    Tier {
        name: "bench",
        what: "load generator smoke run against xmppd",
        run: bench_tier,
    },
    Tier {
        name: "appliance",
        what: "appliance image in QEMU",
        run: appliance::test_tier,
    },
];

fn tier_by_name(name: &str) -> Option<&'static Tier> {
    let canonical = match name {
        "test" | "tests" | "host" | "integration" => "unit",
        "qemu" | "image" => "appliance",
        "lint" => "clippy",
        other => other,
    };
    TIERS.iter().find(|tier| tier.name == canonical)
}

pub fn test(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut selected: Vec<&'static Tier> = Vec::new();
    let mut fail_fast = false;
    let mut install = true;
    let mut appliance_args = Vec::new();
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--tier" => {
                let name = args.value("--tier")?;
                for part in name.split(',') {
                    let tier = tier_by_name(part).ok_or_else(|| format!("unknown tier '{part}'\n{HELP}"))?;
                    if !selected.iter().any(|t| t.name == tier.name) {
                        selected.push(tier);
                    }
                }
            }
            "--list" => {
                for tier in TIERS {
                    println!("{:<10} {}", tier.name, tier.what);
                }
                return Ok(());
            }
            "--fail-fast" => fail_fast = true,
            "--no-install" => install = false,
            "--" => appliance_args = args.rest(),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'\n{HELP}")),
        }
    }
    if selected.is_empty() {
        selected = TIERS.iter().collect();
    } else {
        // Whatever order they were named in, tiers run in their natural order.
        selected.sort_by_key(|tier| TIERS.iter().position(|t| t.name == tier.name));
    }

    let started = Instant::now();
    let mut results: Vec<(&str, Result<(), String>, std::time::Duration)> = Vec::new();
    if install {
        banner("deps: install missing Debian packages and the musl target");
        let begun = Instant::now();
        let outcome = deps::ensure_packages(&deps::test_packages()).and_then(|()| deps::ensure_musl_target());
        if selected.iter().any(|tier| tier.name == "fuzz")
            && let Err(err) = fuzz::ensure_toolchain()
        {
            // Not a deps failure: the fuzz tier reports itself skipped.
            println!("note: cannot install the fuzz toolchain: {err}");
        }
        report_step("deps", &outcome, begun);
        let failed = outcome.is_err();
        results.push(("deps", outcome, begun.elapsed()));
        if failed && fail_fast {
            return summarize(&results, started);
        }
    }
    for (index, tier) in selected.iter().enumerate() {
        banner(&format!(
            "tier {}/{}: {}: {}",
            index + 1,
            selected.len(),
            tier.name,
            tier.what
        ));
        let begun = Instant::now();
        let outcome = (tier.run)(&appliance_args);
        report_step(tier.name, &outcome, begun);
        let failed = outcome.is_err();
        results.push((tier.name, outcome, begun.elapsed()));
        if failed && fail_fast {
            break;
        }
    }
    summarize(&results, started)
}

fn report_step(name: &str, outcome: &TaskResult, begun: Instant) {
    match outcome {
        Ok(()) => println!("-- {name}: ok ({})", format_elapsed(begun.elapsed())),
        Err(err) => println!("-- {name}: FAILED ({}): {err}", format_elapsed(begun.elapsed())),
    }
}

fn summarize(results: &[(&str, TaskResult, std::time::Duration)], started: Instant) -> TaskResult {
    banner(&format!("summary ({} in all)", format_elapsed(started.elapsed())));
    for (name, outcome, elapsed) in results {
        let (verdict, detail) = match outcome {
            Ok(()) => ("ok", String::new()),
            Err(err) => ("FAILED", format!("  {}", err.lines().next().unwrap_or_default())),
        };
        println!("  {name:<10} {verdict:<7} {:>8}{detail}", format_elapsed(*elapsed));
    }
    let failed = results.iter().filter(|(_, outcome, _)| outcome.is_err()).count();
    let passed = results.len() - failed;
    println!("tiers: {passed} passed, {failed} failed");
    if failed == 0 { Ok(()) } else { Err(String::new()) }
}

fn fmt_tier(_: &[String]) -> TaskResult {
    run_status(cargo().args(["fmt", "--all", "--check"]), "cargo fmt --check")
}

fn clippy_tier(_: &[String]) -> TaskResult {
    run_status(
        cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        "cargo clippy",
    )
}

fn unit_tier(_: &[String]) -> TaskResult {
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    run_status(
        cargo().args(["test", "--workspace", "--no-fail-fast"]),
        "cargo test --workspace",
    )
}

fn fuzz_tier(_: &[String]) -> TaskResult {
    fuzz::smoke()
}

/// Debian's python3 first: python3-slixmpp is installed for it, not for a pyenv or venv
/// interpreter that may come first on PATH.
pub fn python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

fn interop_tier(_: &[String]) -> TaskResult {
    let bin = cargo_build(&["xmppd", "mmp"], false)?;
    // Clients (run.py) and Call Bridge components (component_interop.py): same daemon
    // binaries, each script starting its own xmppd on its own loopback address.
    for (script, what) in [
        ("tools/interop/run.py", "client interop tests"),
        ("tools/interop/component_interop.py", "component interop tests"),
        ("tools/interop/namespace_attack.py", "namespace attack tests"),
        ("tools/interop/log_forging.py", "log forging tests"),
        ("tools/interop/connection_flood.py", "connection flood tests"),
        ("tools/interop/credential_guessing.py", "credential guessing tests"),
        ("tools/interop/storage_quota.py", "storage quota tests"),
        ("tools/interop/offline_delivery.py", "offline delivery tests"),
        ("tools/interop/slow_reader.py", "slow reader and pipelining tests"),
        (
            "tools/interop/cluster_formation.py",
            "cluster formation and failure tests",
        ),
        (
            "tools/interop/cluster_federation.py",
            "federation from a cluster (dialback verified by another node)",
        ),
        ("tools/interop/cluster_routing.py", "cluster routing tests"),
        (
            "tools/interop/ssh_workflow.py",
            "the seed's certificate workflow over SSH and SFTP",
        ),
    ] {
        run_status(
            Command::new(python())
                .arg(workspace_root().join(script))
                .arg("--xmppd")
                .arg(bin.join("xmppd"))
                .arg("--mmp")
                .arg(bin.join("mmp")),
            what,
        )?;
    }
    Ok(())
}

/// Prosody and ejabberd as federation peers in a network namespace with dnsmasq.
fn federation_tier(_: &[String]) -> TaskResult {
    run_status(
        Command::new("sh").arg(workspace_root().join("tools/interop-federation/run.sh")),
        "federation interop tests",
    )
}

/// Where the browser tier leaves its screenshots and the daemon's log.
const BROWSER_OUTPUT: &str = "target/test-output/browser";

/// `tools/browser/webadmin.py` against a real xmppd: every page, a screenshot of each.
fn browser_tier(_: &[String]) -> TaskResult {
    let bin = cargo_build(&["xmppd", "mmp"], false)?;
    let out = workspace_root().join(BROWSER_OUTPUT);
    run_status(
        Command::new(python())
            .arg(workspace_root().join("tools/browser/webadmin.py"))
            .arg("--xmppd")
            .arg(bin.join("xmppd"))
            .arg("--mmp")
            .arg(bin.join("mmp"))
            .arg("--out")
            .arg(&out),
        "web admin browser tests",
    )
}

fn bench_tier(_: &[String]) -> TaskResult {
    bench::smoke()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_names_and_aliases_resolve() {
        assert_eq!(tier_by_name("interop").map(|t| t.name), Some("interop"));
        assert_eq!(tier_by_name("tests").map(|t| t.name), Some("unit"));
        assert_eq!(tier_by_name("qemu").map(|t| t.name), Some("appliance"));
        assert!(tier_by_name("nonsense").is_none());
    }

    #[test]
    fn tiers_are_in_the_documented_order() {
        let names: Vec<&str> = TIERS.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "clippy",
                "unit",
                "fuzz",
                "interop",
                "federation",
                "browser",
                "bench",
                "appliance"
            ]
        );
    }

    #[test]
    fn summary_counts_failures_and_fails_the_command() {
        let results = vec![
            ("fmt", Ok(()), std::time::Duration::from_secs(1)),
            ("unit", Err("boom".to_owned()), std::time::Duration::from_secs(2)),
        ];
        assert!(summarize(&results, Instant::now()).is_err());
        let all_ok = vec![("fmt", Ok(()), std::time::Duration::from_secs(1))];
        assert!(summarize(&all_ok, Instant::now()).is_ok());
    }
}
