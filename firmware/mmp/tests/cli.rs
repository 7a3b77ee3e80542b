//! The real `mmp` binary on a temporary data dir: one-shot, batch, secrets from a pipe, exit
//! codes, certificates, and the path through a daemon's admin socket.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn mmp(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .arg("-d")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mmp");
    let mut input = child.stdin.take().expect("stdin");
    // mmp may exit without reading everything (a usage error): a broken pipe is fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let output = child.wait_with_output().expect("wait for mmp");
    Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

#[test]
fn one_shot_changes_and_shows_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run = mmp(dir.path(), &["xmpp", "domain", "example.com"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"), "{}", run.stderr);
    let run = mmp(dir.path(), &["xmpp", "listen", "127.0.0.1", "[::1]:5300"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let run = mmp(dir.path(), &["xmpp"], "");
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("Domain            : example.com\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Listen            : 127.0.0.1 [::1]:5300\n"),
        "{}",
        run.stdout
    );
    let run = mmp(dir.path(), &["xmpp", "status"], "");
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("not running (no daemon)"), "{}", run.stdout);
    let run = mmp(dir.path(), &["help"], "");
    assert_eq!(run.code, 0);
    assert!(run.stdout.lines().any(|line| line.starts_with("user passwd <name>")));
}

#[test]
fn usage_errors_and_failures_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let run = mmp(dir.path(), &["xmp", "domain", "x"], "");
    assert_eq!((run.code, run.stdout.as_str()), (2, "FAILURE: unknown command 'xmp'\n"));
    let run = mmp(dir.path(), &["xmpp", "domain"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (2, "FAILURE: xmpp domain: missing <domain>\n")
    );
    let run = mmp(dir.path(), &["user", "del", "nobody"], "");
    assert_eq!((run.code, run.stdout.as_str()), (1, "FAILURE: no such user 'nobody'\n"));

    let no_dir = Command::new(env!("CARGO_BIN_EXE_mmp")).arg("xmpp").output().unwrap();
    assert_eq!(no_dir.status.code(), Some(2));
    assert!(no_dir.stdout.is_empty());
    assert!(String::from_utf8_lossy(&no_dir.stderr).contains("missing -d DIR"));
    let bad_option = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .args(["-x", "-d"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad_option.status.code(), Some(2));
    let missing = mmp(&dir.path().join("nope"), &["xmpp"], "");
    assert_eq!(missing.code, 1);
    assert!(missing.stdout.starts_with("FAILURE: "), "{}", missing.stdout);
    assert!(missing.stdout.contains("is not a directory"));
}

#[test]
fn users_with_passwords_from_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let run = mmp(dir.path(), &["user", "add", "alice"], "s3cret-pw\ns3cret-pw\n");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"), "{}", run.stderr);
    let run = mmp(dir.path(), &["user", "add", "Alice"], "xxxxxxxx\nxxxxxxxx\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: user 'alice' already exists\n")
    );
    let run = mmp(dir.path(), &["user", "add", "bob"], "one\ntwo\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: passwords do not match\n")
    );
    let run = mmp(dir.path(), &["user", "add", "bob"], "only-once\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: no password given on standard input\n")
    );
    let run = mmp(
        dir.path(),
        &["user", "add", "bob"],
        "pw with spaces \r\npw with spaces \r\n",
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let run = mmp(dir.path(), &["user", "list"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "alice\nbob\n"));
    let run = mmp(dir.path(), &["user", "passwd", "bob"], "new-password\nnew-password\n");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let run = mmp(dir.path(), &["user", "passwd", "carol"], "new-password\nnew-password\n");
    assert_eq!((run.code, run.stdout.as_str()), (1, "FAILURE: no such user 'carol'\n"));
    let run = mmp(dir.path(), &["user", "del", "alice"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let run = mmp(dir.path(), &["user", "list"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "bob\n"));
    // No password ever reaches the output or the log.
    for secret in ["s3cret", "pw with spaces", "new"] {
        assert!(!run.stderr.contains(secret));
    }
}

#[test]
fn batch_reads_commands_and_their_passwords_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let script = "\
# a comment, then a blank line

xmpp domain example.com
user add alice
pw-alice
pw-alice
user add bob
pw-bob-1
pw-bob-1
user list
";
    let run = mmp(dir.path(), &[], script);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "SUCCESS\nSUCCESS\nSUCCESS\nalice\nbob\n");
    assert!(!run.stderr.contains("pw-alice"));

    let script = "\
user add alice
aaaaaaaa
aaaaaaaa
xmp
user add carol
carol-c1
carol-c2
user del bob
user list
";
    let run = mmp(dir.path(), &[], script);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        "FAILURE: user 'alice' already exists\n\
         FAILURE: unknown command 'xmp'\n\
         FAILURE: passwords do not match\n\
         SUCCESS\n\
         alice\n"
    );
}

#[test]
fn selfsigned_certificates_are_accepted_and_a_foreign_key_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = mmp(dir.path(), &["xmpp", "domain", "example.com"], "");
    assert_eq!(run.code, 0);
    let run = mmp(dir.path(), &["pki", "selfsigned", "server"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"), "{}", run.stderr);
    let run = mmp(
        dir.path(),
        &[
            "pki",
            "selfsigned",
            "other",
            "CN:other.example",
            "subjectAltName:other.example,127.0.0.1",
        ],
        "",
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let certs = dir.path().join("certs");
    assert!(certs.join("server.key").is_file() && certs.join("server.crt").is_file());

    let run = mmp(dir.path(), &["xmpp", "certs", "other.key", "server.crt"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: key other.key does not match certificate server.crt\n")
    );
    let run = mmp(
        dir.path(),
        &["xmpp", "certs", "server.key", "server.crt", "missing.pem"],
        "",
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: no such file: missing.pem\n")
    );
    let run = mmp(dir.path(), &["xmpp", "certs", "server.key", "server.crt"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let run = mmp(dir.path(), &["xmpp", "status"], "");
    assert!(
        run.stdout.contains("  Subject         : CN=example.com\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  SANs            : example.com\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Faults: none"), "{}", run.stdout);
    let run = mmp(dir.path(), &["xmpp"], "");
    assert!(
        run.stdout.contains("Key file          : server.key\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_running_daemon_is_reached_through_its_socket() {
    use sb_admin::{Admin, socket};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The store stays open (and locked) in this process, as xmppd holds it: mmp can only
    // succeed through the socket.
    let store = sb_store::Store::open(dir.path()).unwrap();
    let admin = Arc::new(Admin::new(store.clone(), dir.path().to_path_buf(), None));
    let listener = {
        let _context = runtime.enter();
        socket::bind(dir.path()).unwrap()
    };
    let server = runtime.spawn(socket::serve(listener, admin));
    let run = mmp(dir.path(), &["user", "add", "dave"], "dave-password\ndave-password\n");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"), "{}", run.stderr);
    let run = mmp(dir.path(), &[], "user list\nxmpp domain example.org\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "dave\nSUCCESS\n"),
        "{}",
        run.stderr
    );
    assert_eq!(store.xmpp_config().unwrap().domain, "example.org");

    // The daemon is gone but its store is still locked (hung, or starting): a clear FAILURE.
    server.abort();
    drop(runtime);
    let run = mmp(dir.path(), &["user", "list"], "");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.starts_with("FAILURE: the store in "), "{}", run.stdout);
    assert!(run.stdout.contains("no daemon answers on"), "{}", run.stdout);
    drop(store);
}

#[test]
fn callbridges_with_generated_and_piped_secrets() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(mmp(dir.path(), &["xmpp", "domain", "tptac9.com"], "").code, 0);
    let run = mmp(dir.path(), &["xmpp", "callbridge", "add", "cb1"], "");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[..3], ["***", "Callbridge : cb1", "Domain     : tptac9.com"]);
    let generated = lines[3].strip_prefix("Secret     : ").unwrap().to_owned();
    assert_eq!(lines[4..], ["SUCCESS"]);

    let run = mmp(
        dir.path(),
        &["xmpp", "callbridge", "add-secret", "cb2"],
        "kvgP1SRzWVabhiPVAb1\n",
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"), "{}", run.stderr);
    let run = mmp(dir.path(), &["xmpp", "callbridge", "add-secret", "cb3"], "\n");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: xmpp callbridge add-secret: empty secret\n")
    );
    let run = mmp(dir.path(), &["xmpp", "callbridge", "add-secret", "cb3"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: no callbridge secret given on standard input\n")
    );
    let run = mmp(dir.path(), &["xmpp", "callbridge", "add", "cb1"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: callbridge 'cb1' already exists\n")
    );
    let run = mmp(dir.path(), &["xmpp", "callbridge", "del", "cb1"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    let run = mmp(dir.path(), &["xmpp", "callbridge", "list"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (
            0,
            "***\nCallbridge : cb2\nDomain     : tptac9.com\nSecret     : kvgP1SRzWVabhiPVAb1\n"
        )
    );
    assert!(!run.stderr.contains(&generated) && !run.stderr.contains("kvgP1SRzWVabhiPVAb1"));
    // Log commands need the daemon.
    let run = mmp(dir.path(), &["syslog", "follow"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: the daemon is not running\n")
    );
    let run = mmp(dir.path(), &["log", "level", "debug"], "");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (1, "FAILURE: the daemon is not running\n")
    );
}

/// A daemon whose only live part is its logger.
struct LoggingNode(sb_logging::LogHandle);

impl sb_admin::LiveNode for LoggingNode {
    fn status(&self) -> sb_admin::LiveStatus {
        sb_admin::LiveStatus::default()
    }
    fn wait_reconciled(&self, _seq: u64) {}
    fn log_handle(&self) -> Option<sb_logging::LogHandle> {
        Some(self.0.clone())
    }
}

#[test]
fn syslog_follow_prints_new_lines_until_interrupted() {
    use sb_admin::{Admin, socket};
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = sb_logging::LogConfig::default().with_console(sb_logging::Console::Off);
    let (logger, log) = sb_logging::Logger::new(config);
    let emit = |message: &str| {
        use log::Log;
        logger.log(
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("xmppd")
                .args(format_args!("{message}"))
                .build(),
        );
    };
    emit("history line");
    let store = sb_store::Store::open(dir.path()).unwrap();
    let node: Arc<dyn sb_admin::LiveNode> = Arc::new(LoggingNode(log.clone()));
    let admin = Arc::new(Admin::new(store, dir.path().to_path_buf(), Some(node)));
    let listener = {
        let _context = runtime.enter();
        socket::bind(dir.path()).unwrap()
    };
    let server = runtime.spawn(socket::serve(listener, admin));

    let run = mmp(dir.path(), &["syslog", "5"], "");
    assert_eq!(run.code, 0);
    assert!(run.stdout.ends_with("WARN  xmppd: history line\n"), "{}", run.stdout);
    let run = mmp(dir.path(), &["log", "level", "sb_server", "trace"], "");
    assert_eq!((run.code, run.stdout.as_str()), (0, "SUCCESS\n"));
    assert_eq!(log.effective_level("sb_server::c2s"), log::LevelFilter::Trace);

    let mut child = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .arg("-d")
        .arg(dir.path())
        .args(["syslog", "follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.ends_with("WARN  xmppd: history line\n"), "{line}");
    // The follower is subscribed once the history arrived: new lines follow.
    emit("live line 1");
    emit("live line 2");
    for expected in ["live line 1", "live line 2"] {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert!(line.ends_with(&format!("WARN  xmppd: {expected}\n")), "{line}");
    }
    // Ctrl-C ends mmp; the daemon then lets go of the follower.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut released = false;
    for _ in 0..3000 {
        emit("after the follower left");
        if log.follower_count() == 0 {
            released = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(released, "the daemon kept following for a client that is gone");
    server.abort();
    drop(runtime);
}
