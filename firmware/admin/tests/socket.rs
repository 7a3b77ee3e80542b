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
            password: Some(Secret::new("secret")),
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
