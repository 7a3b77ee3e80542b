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
    let fresh = std::fs::read_dir(&var)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(true);
    std::fs::create_dir_all(&var).map_err(|err| format!("cannot create {}: {err}", var.display()))?;
    if fresh {
        enable_web_admin(&bin, &root)?;
    }
    let profile = if release { " --release" } else { "" };
    println!(
        "Switchboard: starting xmppd with its data in {dir}\n\
         Add a user (in another terminal, from {root}):\n    \
         cargo run -q{profile} -p mmp -- -d var user add alice\n\
         Web admin: set the admin password first:\n    \
         cargo run -q{profile} -p mmp -- -d var admin passwd\n\
         then open the https:// address xmppd prints below and log in as admin\n\
         (the certificate is self-signed: accept it in the browser).\n\
         SSH and SFTP as admin, same password: the ssh command xmppd prints below.\n\
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

/// The web admin port a fresh ./var gets, when free.
const WEB_PORT: u16 = 8443;
/// The SSH port a fresh ./var gets, when free (22 needs root and is the host's own).
const SSH_PORT: u16 = 2222;

/// A fresh ./var gets the web admin on 127.0.0.1: port 8443, and SSH on port 2222, or any free
/// port when that is taken (xmppd prints the addresses). Later runs keep whatever was
/// configured since.
fn enable_web_admin(bin: &std::path::Path, root: &std::path::Path) -> TaskResult {
    let free_or_any = |port: u16| match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => 0,
    };
    let (port, ssh_port) = (free_or_any(WEB_PORT), free_or_any(SSH_PORT));
    for line in [
        format!("webadmin listen 127.0.0.1 {port}"),
        "webadmin enable".to_owned(),
        format!("ssh listen 127.0.0.1 {ssh_port}"),
        "ssh enable".to_owned(),
    ] {
        let status = Command::new(bin.join("mmp"))
            .current_dir(root)
            .args(["-d", "var"])
            .args(line.split(' '))
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|err| format!("cannot run mmp: {err}"))?;
        if !status.success() {
            return Err(format!("mmp -d var {line} failed"));
        }
    }
    Ok(())
}
