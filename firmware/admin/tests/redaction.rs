//! Secrets never reach a log line: xmppd's logger installed at trace for everything, then every
//! command that carries or makes a secret, run directly and through the admin socket. One test
//! function, because a process has one global logger.

use sb_admin::socket;
use sb_admin::{Admin, Command, Secret};
use sb_store::Store;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn with_secret(line: &str, secret: &str) -> Command {
    sb_admin::parse(line).unwrap().with_secret(Secret::new(secret))
}

#[test]
fn no_secret_reaches_the_log_at_trace_level() {
    let capture = Capture::default();
    let config = sb_logging::LogConfig::default()
        .with_spec("trace,rustls=trace,sled=trace")
        .unwrap()
        .with_console(sb_logging::Console::Writer(Box::new(capture.clone())));
    let log = sb_logging::install(config).unwrap();
    assert_eq!(log::max_level(), log::LevelFilter::Trace);

    let dir = tempfile::tempdir().unwrap();
    let typed_secret = "Typed-Secret-0f-The-Bridge";
    let password = "Pa55word-Of-Alice";
    let new_password = "N3w-Pa55word-Of-Alice";
    let socket_password = "Pa55word-Of-Bob-0n-The-Socket";
    let socket_secret = "Secret-0f-cb3-0n-The-Socket";
    let mut generated = Vec::new();
    {
        let store = Store::open(dir.path()).unwrap();
        let admin = Admin::new(store, dir.path().to_path_buf(), None);
        assert!(admin.execute(sb_admin::parse("xmpp domain example.com").unwrap()).ok);
        let reply = admin.execute(sb_admin::parse("xmpp callbridge add cb1").unwrap());
        assert!(reply.ok, "{}", reply.text);
        generated.push(secret_of(&reply.text));
        let reply = admin.execute(with_secret("xmpp callbridge add-secret cb2", typed_secret));
        assert!(reply.ok, "{}", reply.text);
        // Refusals are logged too: with the secret in the command, the reply must not quote it.
        let reply = admin.execute(with_secret("xmpp callbridge add-secret cb2", "a-different-secret"));
        assert!(!reply.ok);
        let reply = admin.execute(sb_admin::parse("xmpp callbridge list").unwrap());
        assert!(reply.text.contains(typed_secret));
        assert!(admin.execute(with_secret("user add alice", password)).ok);
        assert!(!admin.execute(with_secret("user add alice", password)).ok);
        assert!(admin.execute(with_secret("user passwd alice", new_password)).ok);
    }

    // The same through the admin socket, where commands travel as JSON with their secrets.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let admin = Arc::new(Admin::new(store, dir.path().to_path_buf(), None));
    let listener = {
        let _context = runtime.enter();
        socket::bind(dir.path()).unwrap()
    };
    let server = runtime.spawn(socket::serve(listener, admin));
    let path = socket::socket_path(dir.path());
    let mut client = socket::Client::connect(&path).unwrap();
    let reply = client
        .request(&sb_admin::parse("xmpp callbridge add cb4").unwrap())
        .unwrap();
    assert!(reply.ok, "{}", reply.text);
    generated.push(secret_of(&reply.text));
    assert!(
        client
            .request(&with_secret("xmpp callbridge add-secret cb3", socket_secret))
            .unwrap()
            .ok
    );
    assert!(
        client
            .request(&with_secret("user add bob", socket_password))
            .unwrap()
            .ok
    );
    // A malformed request quoting a secret: the parse error goes back to the client only.
    let reply = {
        use std::io::{BufRead, BufReader};
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let mut writer = stream.try_clone().unwrap();
        writer
            .write_all(format!("{{\"user\":{{\"add\":{{\"password\":\"{socket_password}\"}}}}}}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    };
    assert!(reply.contains("bad request"), "{reply}");
    server.abort();
    drop(runtime);

    let console = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let recent = log.recent(100_000).join("\n");
    // The log was really captured at trace: the commands are there, their secrets are not.
    for text in [&console, &recent] {
        assert!(text.contains("admin command: Callbridge(AddSecret { name: \"cb2\", secret: Some(<redacted>) })"));
        assert!(text.contains("admin command: User(Add { name: \"alice\", password: Some(<redacted>) })"));
        assert!(text.contains("callbridge cb1 added with a generated secret"));
        let mut secrets = vec![
            typed_secret,
            password,
            new_password,
            socket_password,
            socket_secret,
            "a-different-secret",
        ];
        secrets.extend(generated.iter().map(String::as_str));
        for secret in secrets {
            assert!(!text.contains(secret), "a secret reached the log: {secret}");
            // sled prints stored values as `Debug` of their bytes: `[75, 118, ...]`.
            let as_bytes = secret.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
            assert!(!text.contains(&as_bytes), "a secret reached the log as bytes: {secret}");
        }
    }
}

fn secret_of(add_reply: &str) -> String {
    add_reply
        .lines()
        .find_map(|line| line.strip_prefix("Secret     : "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no secret in {add_reply}"))
}
