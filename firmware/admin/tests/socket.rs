//! The admin socket end to end: a real unix socket, a real store on disk, the blocking client.

use sb_admin::socket::{self, Client};
use sb_admin::{Admin, Command, Reply, Secret, UserCommand, XmppCommand};
use sb_store::Store;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

async fn start(dir: PathBuf) -> tokio::task::JoinHandle<()> {
    let store = Store::open(&dir).expect("open store");
    let admin = Arc::new(Admin::new(store, dir.clone(), None));
    let listener = socket::bind(&dir).expect("bind admin socket");
    tokio::spawn(socket::serve(listener, admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_round_trip_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path().to_path_buf()).await;
    let path = socket::socket_path(dir.path());
    assert_eq!(path, dir.path().join("mmp.sock"));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    let replies = tokio::task::spawn_blocking(move || {
        let mut replies = Vec::new();
        // One request per connection...
        let domain = Command::Xmpp(XmppCommand::Domain {
            domain: "example.com".to_owned(),
        });
        replies.push(socket::request(&path, &domain).unwrap());
        // ...and many on one connection.
        let mut client = Client::connect(&path).unwrap();
        let add = Command::User(UserCommand::Add {
            name: "alice".to_owned(),
            password: Some(Secret::new("secret-pw")),
        });
        replies.push(client.request(&add).unwrap());
        replies.push(client.request(&add).unwrap());
        replies.push(client.request(&Command::User(UserCommand::List)).unwrap());
        replies.push(client.request(&sb_admin::parse("xmpp").unwrap()).unwrap());
        replies
    })
    .await
    .unwrap();
    assert_eq!(replies[0], Reply::success());
    assert_eq!(replies[1], Reply::success());
    assert_eq!(replies[2], Reply::failure("user 'alice' already exists"));
    assert_eq!(replies[3], Reply::output("alice"));
    assert!(
        replies[4].text.contains("Domain            : example.com"),
        "{}",
        replies[4].text
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_failure_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path().to_path_buf()).await;
    let path = socket::socket_path(dir.path());
    let answers = tokio::task::spawn_blocking(move || {
        let stream = UnixStream::connect(&path).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut answers = Vec::new();
        for request in [
            "not json\n",
            "{\"xmpp\":{\"frobnicate\":{}}}\n",
            "\n",
            "\"help\"\n",
            "{\"help\":\"all\"}\n",
        ] {
            writer.write_all(request.as_bytes()).unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            answers.push(serde_json::from_str::<Reply>(&line).unwrap());
        }
        // An oversized line is refused and the connection closed.
        let huge = vec![b'x'; socket::MAX_REQUEST_BYTES + 10];
        writer.write_all(&huge).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        answers.push(serde_json::from_str::<Reply>(&line).unwrap());
        let mut rest = String::new();
        let closed = reader.read_line(&mut rest).map(|n| n == 0).unwrap_or(true);
        (answers, closed)
    })
    .await
    .unwrap();
    let (answers, closed) = answers;
    for answer in &answers[..4] {
        assert!(!answer.ok);
        assert!(answer.text.starts_with("FAILURE: bad request: "), "{}", answer.text);
    }
    assert!(answers[4].ok);
    assert!(answers[4].text.contains("xmpp status"));
    assert_eq!(answers[5], Reply::failure("request longer than 65536 bytes"));
    assert!(closed);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_replaces_a_stale_socket_but_not_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket::socket_path(dir.path());
    // A socket file nobody listens on, as a killed daemon leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let client_err = tokio::task::spawn_blocking({
        let path = path.clone();
        move || socket::request(&path, &Command::User(UserCommand::List)).unwrap_err()
    })
    .await
    .unwrap();
    assert!(client_err.is_not_running(), "{client_err}");

    let server = start(dir.path().to_path_buf()).await;
    let second = socket::bind(dir.path()).unwrap_err();
    assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
    let reply = tokio::task::spawn_blocking(move || socket::request(&path, &Command::User(UserCommand::List)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, Reply::output("(no users)"));
    server.abort();
}

/// A daemon whose only live part is its logger.
struct LoggingNode {
    log: std::sync::Mutex<Option<sb_logging::LogHandle>>,
}

impl LoggingNode {
    fn new(log: &sb_logging::LogHandle) -> Arc<LoggingNode> {
        Arc::new(LoggingNode {
            log: std::sync::Mutex::new(Some(log.clone())),
        })
    }
}

impl sb_admin::LiveNode for LoggingNode {
    fn status(&self) -> sb_admin::LiveStatus {
        sb_admin::LiveStatus::default()
    }
    fn wait_reconciled(&self, _seq: u64) {}
    fn log_handle(&self) -> Option<sb_logging::LogHandle> {
        self.log.lock().unwrap().clone()
    }
}

fn emit(logger: &sb_logging::Logger, message: &str) {
    use log::Log;
    logger.log(
        &log::Record::builder()
            .level(log::Level::Info)
            .target("test")
            .args(format_args!("{message}"))
            .build(),
    );
}

/// Waits for a condition that another thread brings about; bounded, no time threshold.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_follow_streams_lines_until_the_client_stops() {
    let dir = tempfile::tempdir().unwrap();
    let config = sb_logging::LogConfig::default().with_console(sb_logging::Console::Off);
    let (logger, log) = sb_logging::Logger::new(config);
    emit(&logger, "before 1");
    emit(&logger, "before 2");
    let store = Store::open(dir.path()).unwrap();
    let node: Arc<dyn sb_admin::LiveNode> = LoggingNode::new(&log);
    let admin = Arc::new(Admin::new(store, dir.path().to_path_buf(), Some(node)));
    let listener = socket::bind(dir.path()).unwrap();
    let server = tokio::spawn(socket::serve(listener, admin));
    let path = socket::socket_path(dir.path());

    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let follower = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let mut seen = 0;
            socket::follow(&path, &sb_admin::parse("syslog follow").unwrap(), |line| {
                seen += 1;
                let _ = lines_tx.send(line.to_owned());
                seen < 4
            })
        }
    });
    eventually("the follower subscribes", || log.follower_count() == 1).await;
    // Ordinary requests are served meanwhile.
    let reply = tokio::task::spawn_blocking({
        let path = path.clone();
        move || socket::request(&path, &sb_admin::parse("syslog 1").unwrap())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(reply.text.ends_with("INFO  test: before 2"), "{}", reply.text);
    emit(&logger, "after 1");
    emit(&logger, "after 2");
    emit(&logger, "after 3");
    assert_eq!(
        follower.await.unwrap().unwrap(),
        None,
        "the client stopped, not the daemon"
    );
    let lines: Vec<String> = lines_rx.try_iter().collect();
    let messages: Vec<&str> = lines.iter().map(|line| line.rsplit(": ").next().unwrap()).collect();
    assert_eq!(messages, ["before 1", "before 2", "after 1", "after 2"]);
    // The daemon notices the client left: its follower goes away.
    eventually("the daemon drops the follower", || {
        emit(&logger, "more");
        log.follower_count() == 0
    })
    .await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_follow_fails_clearly_without_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path().to_path_buf()).await;
    let path = socket::socket_path(dir.path());
    let result = tokio::task::spawn_blocking(move || {
        socket::follow(&path, &sb_admin::parse("syslog follow").unwrap(), |_| true)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(result, Some(Reply::failure("the daemon is not running")));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_are_limited_and_the_daemon_can_end_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let config = sb_logging::LogConfig::default().with_console(sb_logging::Console::Off);
    let (logger, log) = sb_logging::Logger::new(config);
    let store = Store::open(dir.path()).unwrap();
    let node = LoggingNode::new(&log);
    let live: Arc<dyn sb_admin::LiveNode> = node.clone();
    let admin = Arc::new(Admin::new(store, dir.path().to_path_buf(), Some(live)));
    let listener = socket::bind(dir.path()).unwrap();
    let server = tokio::spawn(socket::serve(listener, admin));
    let path = socket::socket_path(dir.path());

    let mut followers = Vec::new();
    for _ in 0..socket::MAX_STREAMS {
        let path = path.clone();
        followers.push(tokio::task::spawn_blocking(move || {
            socket::follow(&path, &sb_admin::parse("syslog follow").unwrap(), |_| true)
        }));
    }
    eventually("every follower subscribes", || {
        log.follower_count() == socket::MAX_STREAMS
    })
    .await;
    let refused = tokio::task::spawn_blocking({
        let path = path.clone();
        move || socket::follow(&path, &sb_admin::parse("syslog follow").unwrap(), |_| true)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        refused,
        Some(Reply::failure("4 log followers are connected already: stop one first"))
    );
    // The logger goes away (the daemon shutting down): every stream ends with a reply.
    node.log.lock().unwrap().take();
    drop(log);
    drop(logger);
    for follower in followers {
        assert_eq!(follower.await.unwrap().unwrap(), Some(Reply::output("the log closed")));
    }
    server.abort();
}

/// Runs a one-request client as another user (python3, since a forked copy of this
/// multi-threaded test process may not allocate) and returns the line it read. A refused
/// peer may find the socket closed before its request is written (EPIPE): the refusal line
/// is still there to read.
fn request_as(uid: u32, path: &std::path::Path, command: &Command) -> String {
    let request = serde_json::to_string(command).unwrap();
    let script = "import socket,sys\n\
                  s=socket.socket(socket.AF_UNIX)\n\
                  s.settimeout(30)\n\
                  s.connect(sys.argv[1])\n\
                  try: s.sendall(sys.argv[2].encode()+b'\\n')\n\
                  except (BrokenPipeError, ConnectionResetError): pass\n\
                  data=b''\n\
                  while not data.endswith(b'\\n'):\n\
                  \x20   chunk=s.recv(4096)\n\
                  \x20   if not chunk: break\n\
                  \x20   data+=chunk\n\
                  print(data.decode().strip())\n";
    use std::os::unix::process::CommandExt;
    let output = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .arg(request)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "client as uid {uid}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_user_is_refused_even_with_loose_modes() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path().to_path_buf()).await;
    let path = socket::socket_path(dir.path());
    // As if someone had loosened the modes: only SO_PEERCRED stands in the way now.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let list = Command::User(UserCommand::List);
    let answers = tokio::task::spawn_blocking({
        let path = path.clone();
        move || (request_as(65534, &path, &list), request_as(0, &path, &list))
    })
    .await
    .unwrap();
    let nobody: Reply = serde_json::from_str(&answers.0).unwrap();
    assert!(!nobody.ok, "{nobody:?}");
    assert!(nobody.text.contains("may not use the admin socket"), "{}", nobody.text);
    let root: Reply = serde_json::from_str(&answers.1).unwrap();
    assert_eq!(root, Reply::output("(no users)"));
    server.abort();
}

#[test]
fn only_root_and_the_daemons_user_are_allowed() {
    assert!(socket::peer_allowed(0, 100));
    assert!(socket::peer_allowed(100, 100));
    assert!(!socket::peer_allowed(65534, 100));
    assert!(!socket::peer_allowed(101, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_owner_only_whatever_the_umask_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admin = Arc::new(Admin::new(store, dir.path().to_path_buf(), None));
    // A permissive umask at bind time: the file must still never be wider than 0600.
    let previous = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let listener = socket::bind(dir.path());
    nix::sys::stat::umask(previous);
    let listener = listener.unwrap();
    let path = socket::socket_path(dir.path());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let limits = socket::SocketLimits {
        idle_timeout: std::time::Duration::from_millis(500),
    };
    let server = tokio::spawn(socket::serve_with(listener, admin, limits));
    let (idle_closed, busy_served) = tokio::task::spawn_blocking(move || {
        // Connects and says nothing: the daemon hangs up (read returns end of file).
        let mut idle = UnixStream::connect(&path).unwrap();
        idle.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        let idle_closed = matches!(std::io::Read::read(&mut idle, &mut buf), Ok(0));
        // A client that keeps asking is served.
        let mut client = Client::connect(&path).unwrap();
        let busy_served = (0..3).all(|_| client.request(&Command::User(UserCommand::List)).is_ok());
        (idle_closed, busy_served)
    })
    .await
    .unwrap();
    assert!(idle_closed, "an idle connection was not closed");
    assert!(busy_served);
    server.abort();
}
