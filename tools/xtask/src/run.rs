//! `cargo xtask run`: the daemon on this host, data in ./var, the embedded default config.

use crate::util::{Args, TaskResult, cargo_build, workspace_root};
use std::os::unix::process::CommandExt;
use std::process::Command;

const HELP: &str = "\
usage: cargo xtask run [--release] [-- XMPPD-ARGS...]

Builds xmppd and mmp, then runs `xmppd -d var` in the foreground (Ctrl-C stops it).
On an empty ./var xmppd applies its default: domain localhost, listening on 127.0.0.1:5222,
a self-signed certificate made on first start. Arguments after `--` go to xmppd
(e.g. `-- --log-level debug`).";

pub fn run(args: &[String]) -> TaskResult {
    let mut args = Args::new(args);
    let mut release = false;
    let mut xmppd_args = Vec::new();
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--release" => release = true,
            "--" => xmppd_args = args.rest(),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown option '{other}'\n{HELP}")),
        }
    }
    // mmp on its own first: built together with xmppd its dependencies get the union of both
    // feature sets, and the `cargo run -p mmp` printed below would then rebuild them (a minute
    // and more) before its first answer.
    cargo_build(&["mmp"], release)?;
    let bin = cargo_build(&["xmppd"], release)?;
    let root = workspace_root();
    let var = root.join("var");
    std::fs::create_dir_all(&var).map_err(|err| format!("cannot create {}: {err}", var.display()))?;
    let profile = if release { " --release" } else { "" };
    println!(
        "Switchboard: starting xmppd with its data in {dir}\n\
         Add a user (in another terminal, from {root}):\n    \
         cargo run -q{profile} -p mmp -- -d var user add alice\n\
         Other settings: cargo run -q{profile} -p mmp -- -d var help\n",
        dir = var.display(),
        root = root.display(),
    );
    // exec: xmppd takes over this process, so Ctrl-C and SIGTERM reach it directly and its
    // exit status is the command's.
    let err = Command::new(bin.join("xmppd"))
        .current_dir(&root)
        .arg("-d")
        .arg("var")
        .args(&xmppd_args)
        .exec();
    Err(format!("cannot start {}: {err}", bin.join("xmppd").display()))
}
