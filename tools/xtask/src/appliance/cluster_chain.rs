//! Three appliance VMs form a cluster through their serial consoles and pass a message across
//! it. Each VM has its usual user-mode NIC (`a`, the XMPP ports forwarded to 127.0.0.1) and a
//! second NIC (`b`) on a private hub ([`super::hub`]): 192.168.77.1-3, where the cluster port
//! runs. The commands are the CMS guide's, typed on the consoles.
//!
//! The service certificate (also the cluster trust bundle, as in the guide's own example) is
//! put on each box's data partition before its first boot, standing in for the upload an
//! administrator would do: the image has no file transfer yet (SFTP is issue 14).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::build::Manifest;
use super::data_damage::data_partition;
use super::hub::Hub;
use super::scenarios::{
    FAST_CMDLINE, Report, USER_PASSWORD, add_user, command_expect, set_first_password, slixmpp_login, wait_for_output,
    wait_ready,
};
use super::vm::{BootPath, Vm, fresh_disk};
use crate::util::TaskResult;

const NODES: u8 = 3;
const HOST: &str = "switchboard";
const MESSAGE_SCRIPT: &str = include_str!("xmpp_message.py");
const BOB_PASSWORD: &str = "bob-pw-56789";

fn node_ip(id: u8) -> String {
    format!("192.168.77.{id}")
}

/// A self-signed certificate for `localhost` (the appliance's default domain), made once.
fn make_certificate(dir: &Path) -> TaskResult {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-days",
            "30",
        ])
        // A leaf, as `pki selfsigned` makes: openssl's default CA:TRUE is refused as an end
        // entity by the peers' verifier.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=critical,digitalSignature"])
        .arg("-keyout")
        .arg(dir.join("cluster.key"))
        .arg("-out")
        .arg(dir.join("cluster.crt"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("openssl (package openssl): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("openssl could not make the certificate".into())
    }
}

/// The data partition formatted on the host with `seed` as its content (xmpp/certs/...): init
/// mounts it as existing data (it only ever formats an all-zero partition).
fn seed_data_partition(disk: &Path, seed: &Path) -> TaskResult {
    let (start, size) = data_partition(disk)?;
    let output = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "data", "-d"])
        .arg(seed)
        .arg("-E")
        .arg(format!("offset={start}"))
        .arg(disk)
        .arg(format!("{}k", size / 1024))
        .output()
        .map_err(|e| format!("mke2fs (package e2fsprogs): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("mke2fs: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

fn message(from_port: u16, from: &str, from_password: &str, to_port: u16, to: &str, to_password: &str) -> TaskResult {
    let output = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(MESSAGE_SCRIPT)
        .args([
            from,
            from_password,
            &from_port.to_string(),
            to,
            to_password,
            &to_port.to_string(),
        ])
        .output()
        .map_err(|e| format!("python3 (packages python3, python3-slixmpp): {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.contains("DELIVERED") {
        Ok(())
    } else {
        Err(format!(
            "message {from} -> {to}: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ))
    }
}

fn need(vms: &mut [Vm], index: usize) -> TaskResult<&mut Vm> {
    vms.get_mut(index)
        .ok_or_else(|| format!("VM {} did not start", index + 1))
}

pub fn cluster_chain(manifest: &Manifest, work: &Path, report: &mut Report) {
    let mut ok = true;
    let mut vms: Vec<Vm> = Vec::new();
    let mut hub: Option<Hub> = None;
    let seed: PathBuf = work.join("cluster-seed");
    report.step(
        &mut ok,
        "cluster: three VMs on a private network boot to XMPP ready",
        |r| {
            make_certificate(&seed.join("xmpp/certs"))?;
            let network = Hub::start()?;
            for id in 1..=NODES {
                let disk = work.join(format!("cluster{id}-disk.img"));
                fresh_disk(manifest, &disk)?;
                seed_data_partition(&disk, &seed)?;
                let name = format!("cluster{id}");
                vms.push(Vm::start_with(
                    &name,
                    manifest,
                    BootPath::Fast,
                    &disk,
                    work,
                    FAST_CMDLINE,
                    &network.nic_args(id),
                )?);
            }
            let mut slowest: f64 = 0.0;
            for vm in vms.iter_mut() {
                let (_, _, wall) = wait_ready(vm)?;
                slowest = slowest.max(wall);
                set_first_password(vm)?;
            }
            r.figure(format!(
                "cluster: three VMs booted side by side, the last ready {slowest:.1} s after its QEMU start"
            ));
            hub = Some(network);
            Ok(())
        },
    );
    report.step(
        &mut ok,
        "cluster: each node on the private network (ipv4 b, xmpp listen b a)",
        |_| {
            for (index, vm) in vms.iter_mut().enumerate() {
                let ip = node_ip(index as u8 + 1);
                command_expect(vm, HOST, &format!("ipv4 b add {ip}/24"), "SUCCESS")?;
                wait_for_output(vm, HOST, "iface b", &format!("{ip}/24"))?;
                command_expect(vm, HOST, "xmpp listen b a", "SUCCESS")?;
            }
            Ok(())
        },
    );
    report.step(&mut ok, "cluster: node 1 initialises with the CMS commands", |_| {
        let vm = need(&mut vms, 0)?;
        for line in [
            "xmpp certs cluster.key cluster.crt",
            "xmpp cluster trust cluster.crt",
            "xmpp disable",
            "xmpp cluster enable",
            "xmpp cluster initialize",
            "xmpp enable",
        ] {
            command_expect(vm, HOST, line, "SUCCESS")?;
        }
        add_user(vm, HOST, "alice", USER_PASSWORD)
    });
    report.step(&mut ok, "cluster: nodes 2 and 3 join with the CMS commands", |_| {
        for index in 1..NODES as usize {
            let vm = need(&mut vms, index)?;
            for line in [
                "xmpp certs cluster.key cluster.crt",
                "xmpp cluster trust cluster.crt",
                "xmpp disable",
                "xmpp cluster enable",
                "xmpp enable",
            ] {
                command_expect(vm, HOST, line, "SUCCESS")?;
            }
            command_expect(vm, HOST, &format!("xmpp cluster join {}", node_ip(1)), "SUCCESS")?;
        }
        Ok(())
    });
    report.check(
        &mut ok,
        "cluster: every console shows three peers and one leader",
        |_| {
            for index in 0..NODES as usize {
                let vm = need(&mut vms, index)?;
                let status = wait_for_output(vm, HOST, "xmpp cluster status", "192.168.77.3:5270")?;
                let peers = status.lines().filter(|l| l.starts_with("192.168.77.")).count();
                let leaders = status.matches("(Leader)").count();
                if peers != 3 || leaders != 1 {
                    return Err(format!(
                        "node {}: {peers} peers, {leaders} leaders:\n{status}",
                        index + 1
                    ));
                }
            }
            Ok(())
        },
    );
    report.check(&mut ok, "cluster: a user added on node 3 logs in on node 1", |_| {
        let vm = need(&mut vms, 2)?;
        add_user(vm, HOST, "bob", BOB_PASSWORD)?;
        let port = need(&mut vms, 0)?.ports.c2s;
        slixmpp_login(port, "bob@localhost", BOB_PASSWORD)
    });
    report.check(
        &mut ok,
        "cluster: a message from node 1 reaches a user on node 3",
        |_| {
            let from = need(&mut vms, 0)?.ports.c2s;
            let to = need(&mut vms, 2)?.ports.c2s;
            message(
                from,
                "alice@localhost",
                USER_PASSWORD,
                to,
                "bob@localhost",
                BOB_PASSWORD,
            )
        },
    );
    for vm in vms.drain(..) {
        vm.kill();
    }
    drop(hub);
}
