//! The single entry point: run, test, image, qemu, bench.
//!
//! Plain std on purpose: this is the first thing a fresh machine compiles, so it must build
//! in seconds and cannot depend on anything the rest of the workspace may break.

mod appliance;
mod bench;
mod deps;
mod fuzz;
mod run;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run [--release] [-- XMPPD-ARGS...]
        build and start xmppd with its data in ./var (default: domain localhost on 127.0.0.1:5222)
  test [--tier NAME]... [--list] [--fail-fast] [--no-install] [-- APPLIANCE-ARGS...]
        install what the tests need when missing, then run every tier
  bench [--peer prosody|ejabberd]... [--peers all] [--clients N] [--idle M] [--rate R]
        [--duration S] [--throughput-secs S] [--debug] [--keep]
        load-test xmppd (and the peers) in one run and print a comparison table
  deps [--check]
        install the Debian packages and the Rust target the tiers need (--check: only report)
  image [ARGS...]   build the appliance disk image
  qemu [ARGS...]    boot the appliance image in QEMU

`cargo xtask <command> --help` prints a command's options.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    let outcome = match command.as_str() {
        "run" => run::run(&rest),
        "test" => test::test(&rest),
        "bench" => bench::bench(&rest),
        "deps" => deps::command(&rest),
        "image" => appliance::image(&rest),
        "qemu" => appliance::qemu(&rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // An empty message means the command already said everything (the test summary
            // must stay the last line of its output).
            if !message.is_empty() {
                eprintln!("xtask {command}: {message}");
            }
            ExitCode::FAILURE
        }
    }
}
