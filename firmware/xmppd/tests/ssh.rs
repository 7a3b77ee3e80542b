//! The SSH server wired into the real daemon, driven by OpenSSH's own `ssh` and `sftp` (and
//! `sshpass` for password logins): the admin password and its failure limiter, public-key
//! login, exit status of one-shot commands, the MMP prompt's unechoed secrets, and SFTP that
//! cannot leave the file area or grow a file past the limit.

mod common;

use common::{Daemon, FORK_LOCK, PATIENCE};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "ssh admin password";
/// The daemon's SFTP size limit in these tests (`--ssh-max-file-bytes`).
const MAX_FILE_BYTES: usize = 64 * 1024;

/// A daemon with SSH enabled on its loopback address, an ephemeral port, and the admin password set.
fn daemon() -> (Daemon, SocketAddr) {
    let max = MAX_FILE_BYTES.to_string();
    let daemon = Daemon::start(&[], &["--ssh-max-file-bytes", &max], |config| {
        let ip = config.listen[0].rsplit_once(':').unwrap().0.to_owned();
        config.ssh = sb_store::SshConfig {
            enabled: true,
            listen: ip,
            port: 0,
            authorized_keys: vec![],
        };
    });
    sb_appliance::password::file::set(&daemon.dir.path().join("admin-password"), ADMIN_PASSWORD).unwrap();
    let addr = ssh_addr(&daemon);
    (daemon, addr)
}

/// The address the daemon's log says SSH listens on.
fn ssh_addr(daemon: &Daemon) -> SocketAddr {
    for _ in 0..400 {
        let log = daemon.log();
        if let Some(start) = log.find("ssh: listening on ") {
            let rest = &log[start + "ssh: listening on ".len()..];
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("SSH never listened:\n{}", daemon.log());
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: apt-get install openssh-client sshpass");
    Command::new(name)
}

/// Options every client run takes: no user configuration, no agent, no known_hosts.
fn common_options(addr: SocketAddr, known_hosts: Option<&Path>) -> Vec<String> {
    let mut options: Vec<String> = [
        "-F",
        "/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "IdentityAgent=none",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "NumberOfPasswordPrompts=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match known_hosts {
        Some(file) => options.extend([
            "-o".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "-o".to_owned(),
            format!("UserKnownHostsFile={}", file.display()),
        ]),
        None => options.extend([
            "-o".to_owned(),
            "StrictHostKeyChecking=no".to_owned(),
            "-o".to_owned(),
            "UserKnownHostsFile=/dev/null".to_owned(),
        ]),
    }
    options.extend(["-o".to_owned(), format!("Port={}", addr.port())]);
    options
}

fn run(mut command: Command, stdin: &[u8]) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = {
        let _no_fork = FORK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        command.spawn().expect("spawn")
    };
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let deadline = std::time::Instant::now() + PATIENCE * 3;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{command:?} hung:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ssh admin@addr <line>` with a password, from source address `from`.
fn ssh_password(addr: SocketAddr, password: &str, from: &str, line: &str) -> Output {
    let mut command = tool("sshpass");
    command.args(["-p", password, "ssh"]);
    command.args(common_options(addr, None));
    command.args([
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-b",
        from,
    ]);
    command.arg(format!("admin@{}", addr.ip())).arg(line);
    run(command, b"")
}

/// The MMP prompt through `ssh -tt` (a pty, so keys arrive raw), typing `keys`.
fn ssh_prompt(addr: SocketAddr, keys: &[u8]) -> Output {
    let mut command = tool("sshpass");
    command.args(["-p", ADMIN_PASSWORD, "ssh", "-tt"]);
    command.args(common_options(addr, None));
    command.args(["-o", "PreferredAuthentications=password"]);
    command.arg(format!("admin@{}", addr.ip()));
    run(command, keys)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn sftp(addr: SocketAddr, batch: &str, work: &Path) -> Output {
    let batch_file = work.join("batch");
    std::fs::write(&batch_file, batch).unwrap();
    let mut command = tool("sshpass");
    command.current_dir(work);
    command.args(["-p", ADMIN_PASSWORD, "sftp"]);
    command.args(common_options(addr, None));
    command.args([
        "-o",
        "BatchMode=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-b",
    ]);
    command.arg(&batch_file).arg(format!("admin@{}", addr.ip()));
    run(command, b"")
}

#[test]
fn exec_exits_0_or_1_and_wrong_passwords_are_refused_then_limited() {
    let (daemon, addr) = daemon();
    let ip = addr.ip().to_string();

    let status = ssh_password(addr, ADMIN_PASSWORD, &ip, "xmpp status");
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(text(&status).contains("switchboard.test"), "{}", text(&status));

    let failed = ssh_password(addr, ADMIN_PASSWORD, &ip, "xmpp frobnicate");
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        text(&failed).contains("FAILURE: unknown command 'xmpp frobnicate'"),
        "{}",
        text(&failed)
    );
    let refused_change = ssh_password(addr, ADMIN_PASSWORD, &ip, "pki inspect none.crt");
    assert_eq!(refused_change.status.code(), Some(1), "{}", text(&refused_change));

    // `ssh status` shows the fingerprint of the key the server presents: pin it in a
    // known_hosts file and connect with strict checking.
    let status = text(&ssh_password(addr, ADMIN_PASSWORD, &ip, "ssh status"));
    let public = std::fs::read_to_string(daemon.dir.path().join("ssh_host_ed25519_key.pub")).unwrap();
    let keygen = tool("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(daemon.dir.path().join("ssh_host_ed25519_key.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&keygen.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        status.contains(&format!("Host key           : {fingerprint} (ssh-ed25519)")),
        "{status}"
    );
    let work = tempfile::tempdir().unwrap();
    let known_hosts = work.path().join("known_hosts");
    let mut words = public.split_whitespace();
    std::fs::write(
        &known_hosts,
        format!(
            "[{}]:{} {} {}\n",
            addr.ip(),
            addr.port(),
            words.next().unwrap(),
            words.next().unwrap()
        ),
    )
    .unwrap();
    let mut pinned = tool("sshpass");
    pinned.args(["-p", ADMIN_PASSWORD, "ssh"]);
    pinned.args(common_options(addr, Some(&known_hosts)));
    pinned.args(["-o", "PreferredAuthentications=password"]);
    pinned.arg(format!("admin@{}", addr.ip())).arg("xmpp status");
    let pinned = run(pinned, b"");
    assert_eq!(pinned.status.code(), Some(0), "{}", text(&pinned));

    // From another address: wrong passwords and a wrong user are refused (ssh exits 255), and
    // after five failures even the right password is, unchecked.
    let other = "127.0.0.77";
    for attempt in 0..5 {
        let (user_password, line) = if attempt == 0 {
            ("not it", "xmpp status")
        } else {
            ("still not it", "xmpp status")
        };
        let refused = ssh_password(addr, user_password, other, line);
        assert_eq!(refused.status.code(), Some(255), "{}", text(&refused));
        assert!(text(&refused).contains("Permission denied"), "{}", text(&refused));
    }
    let limited = ssh_password(addr, ADMIN_PASSWORD, other, "xmpp status");
    assert_eq!(limited.status.code(), Some(255), "{}", text(&limited));
    assert!(
        daemon.log().contains("refused unchecked: too many failed logins"),
        "{}",
        daemon.log()
    );
    // The limit is per address: the first one still logs in.
    let still = ssh_password(addr, ADMIN_PASSWORD, &ip, "xmpp status");
    assert_eq!(still.status.code(), Some(0), "{}", text(&still));
}

#[test]
fn an_authorized_key_logs_in_and_a_deleted_one_no_longer_does() {
    let (_daemon, addr) = daemon();
    let ip = addr.ip().to_string();
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("id_ed25519");
    let made = tool("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ops@test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let key_login = |line: &str| {
        let mut command = tool("ssh");
        command.args(common_options(addr, None));
        command.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ]);
        command.arg(&key).arg(format!("admin@{}", addr.ip())).arg(line);
        run(command, b"")
    };
    let before = key_login("xmpp status");
    assert_eq!(before.status.code(), Some(255), "{}", text(&before));

    let added = ssh_password(
        addr,
        ADMIN_PASSWORD,
        &ip,
        &format!("ssh authorized-key add {}", public.trim()),
    );
    assert_eq!(added.status.code(), Some(0), "{}", text(&added));
    let listed = key_login("ssh authorized-key list");
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    assert!(text(&listed).contains(" 1  ssh-ed25519 SHA256:"), "{}", text(&listed));
    assert!(text(&listed).contains("ops@test"), "{}", text(&listed));

    let deleted = key_login("ssh authorized-key del 1");
    assert_eq!(deleted.status.code(), Some(0), "{}", text(&deleted));
    let after = key_login("xmpp status");
    assert_eq!(after.status.code(), Some(255), "{}", text(&after));
}

#[test]
fn the_prompt_edits_lines_and_never_echoes_a_secret() {
    let (daemon, addr) = daemon();
    // Keys as a terminal sends them: a typo erased with Backspace, then a command that asks for
    // a password twice, then a listing, then exit.
    let output = ssh_prompt(addr, b"user addd\x7f bob\rsecret-pw-1\rsecret-pw-1\ruser list\rexit\r");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    // The typo and its erasure, echoed as a terminal shows them.
    assert!(shown.contains("> user addd\x08 \x08 bob"), "{shown:?}");
    assert!(shown.contains("Enter password: "), "{shown}");
    assert!(!shown.contains("secret-pw-1"), "a secret was echoed:\n{shown}");
    assert!(shown.contains("SUCCESS"), "{shown}");
    assert!(shown.contains("bob"), "{shown}");
    assert!(!daemon.log().contains("secret-pw-1"), "a secret reached the log");
}

#[test]
fn syslog_follow_streams_the_log_until_ctrl_c_and_the_prompt_carries_on() {
    let (_daemon, addr) = daemon();
    // Ctrl-C typed ahead with the command still ends the follow; the next line is a command.
    let output = ssh_prompt(addr, b"syslog follow\r\x03hostname\rexit\r");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    let followed = shown.split_once("syslog follow").map_or("", |(_, rest)| rest);
    // The history it starts with: the daemon's recent lines, this session's login among them.
    assert!(followed.contains("ssh: admin from"), "{shown}");
    // russh's per-packet debug lines stay out even at debug level (the test daemon's), or
    // each line sent would log another.
    assert!(!followed.contains("russh"), "{shown}");
    let after = followed.split_once("^C").map_or("", |(_, rest)| rest);
    assert!(after.contains("> hostname"), "the prompt did not come back:\n{shown}");
    assert!(!shown.contains("FAILURE"), "{shown}");
}

#[test]
fn sftp_stays_in_the_file_area_and_under_the_size_limit() {
    let (daemon, addr) = daemon();
    let work = tempfile::tempdir().unwrap();
    let certs: PathBuf = daemon.dir.path().join("certs");
    std::os::unix::fs::symlink("/etc/passwd", certs.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink(daemon.dir.path(), certs.join("dir-link")).unwrap();

    // A round trip: put, ls, get back the same bytes.
    std::fs::write(work.path().join("server.crt"), b"not really a certificate\n").unwrap();
    let ok = sftp(addr, "put server.crt\nls\nget server.crt copy.crt\n", work.path());
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert_eq!(
        std::fs::read(certs.join("server.crt")).unwrap(),
        b"not really a certificate\n"
    );
    assert_eq!(
        std::fs::read(work.path().join("copy.crt")).unwrap(),
        b"not really a certificate\n"
    );
    assert!(
        !text(&ok).contains("passwd-link"),
        "a symbolic link was listed:\n{}",
        text(&ok)
    );

    let escapes = [
        ("get ../store.db", "outside the file area"),
        ("get /etc/passwd", "outside the file area"),
        ("get ../../../../etc/passwd", "outside the file area"),
        ("put server.crt ../planted", "outside the file area"),
        ("put server.crt /tmp/planted", "outside the file area"),
        ("get passwd-link", "symbolic links are not served"),
        ("get dir-link/admin-password", "outside the file area"),
        ("put server.crt passwd-link", "symbolic links are not served"),
        ("cd ..\nget admin-password", "outside the file area"),
        ("symlink /etc/shadow shadow", "symbolic links are not served"),
        ("mkdir sub", "no subfolders"),
    ];
    // OpenSSH's sftp prints its own words for a status code, not the server's message: the
    // reason is checked in the daemon's log, where the refusal is recorded.
    for (batch, reason) in escapes {
        let before = daemon.log().len();
        let refused = sftp(addr, &format!("{batch}\n"), work.path());
        assert_ne!(refused.status.code(), Some(0), "{batch}: {}", text(&refused));
        let logged = daemon.log()[before..].to_owned();
        assert!(logged.contains(reason), "{batch}: {}\n{logged}", text(&refused));
    }
    assert!(!daemon.dir.path().join("planted").exists());
    assert!(!Path::new("/tmp/planted").exists());
    assert_eq!(
        std::fs::read_link(certs.join("passwd-link")).unwrap(),
        Path::new("/etc/passwd"),
        "the link was replaced"
    );

    // One byte over the limit is refused with the limit in the message; the limit itself fits.
    std::fs::write(work.path().join("big.img"), vec![7u8; MAX_FILE_BYTES + 1]).unwrap();
    let before = daemon.log().len();
    let big = sftp(addr, "put big.img\n", work.path());
    assert_ne!(big.status.code(), Some(0), "{}", text(&big));
    assert!(text(&big).contains("Failure"), "{}", text(&big));
    let logged = daemon.log()[before..].to_owned();
    let reason = format!("big.img: file too large: the file area takes files up to {MAX_FILE_BYTES} bytes");
    assert!(logged.contains(&reason), "{logged}");
    std::fs::write(work.path().join("fits.img"), vec![7u8; MAX_FILE_BYTES]).unwrap();
    let fits = sftp(addr, "put fits.img\n", work.path());
    assert_eq!(fits.status.code(), Some(0), "{}", text(&fits));
    assert_eq!(
        std::fs::metadata(certs.join("fits.img")).unwrap().len(),
        MAX_FILE_BYTES as u64
    );
}
