//! The logger installed as the process's `log` logger, as xmppd installs it: the facade's
//! global maximum follows run-time level changes, and secrets logged through the documented
//! patterns never reach the console, the ring buffer or a follower.
//!
//! One test function: a process has one global logger.

use sb_logging::{Console, FollowEvent, LogConfig, REDACTED, Redacted};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// A secret kept the way sb_store::Secret keeps one.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

#[derive(Debug)]
#[allow(dead_code)]
struct CallBridge {
    name: String,
    secret: Secret,
}

const SECRET: &str = "kvgP1SRzWVabhiPVAb1x9Q";

#[test]
fn installed_logger_levels_and_redaction() {
    let capture = Capture::default();
    let config = LogConfig::default()
        .with_spec("info")
        .unwrap()
        .with_console(Console::Writer(Box::new(capture.clone())));
    let log = sb_logging::install(config).expect("first logger of this process");
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    assert!(sb_logging::install(LogConfig::default()).is_err());

    log::debug!("invisible at info");
    log::info!("visible at info");
    log.set_level(Some("installed"), log::LevelFilter::Trace).unwrap();
    assert_eq!(log::max_level(), log::LevelFilter::Trace);
    log::trace!("visible at trace");
    log.set_level(Some("installed"), log::LevelFilter::Warn).unwrap();
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    log::info!("invisible again");
    let lines = log.recent(100);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("INFO  installed: visible at info"), "{lines:?}");
    assert!(lines[1].ends_with("TRACE installed: visible at trace"), "{lines:?}");

    // Every documented pattern, at the most verbose level, with a follower attached.
    log.set_level(None, log::LevelFilter::Trace).unwrap();
    log.set_level(Some("installed"), log::LevelFilter::Trace).unwrap();
    let mut follower = log.follow(0);
    let bridge = CallBridge {
        name: "cb1".to_owned(),
        secret: Secret(SECRET.to_owned()),
    };
    let raw: &str = &bridge.secret.0;
    log::trace!("component {} authenticated with secret {}", bridge.name, Redacted(raw));
    log::debug!("configuration: {bridge:?}");
    log::info!("configuration: {bridge:#?}");
    log::warn!("handshake of {} failed (secret {:?})", bridge.name, Redacted(raw));
    log::error!("handshake text: {} bytes", raw.len());
    // sled at trace prints stored values; its ceiling keeps those lines out even when asked.
    log::trace!(target: "sled::pagecache", "linking pid 7 with Set({raw})");
    log::debug!(target: "sled::tree", "read unexpected page: {raw}");

    let console = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let recent = log.recent(1000).join("\n");
    let mut followed = Vec::new();
    while let FollowEvent::Line(line) = follower.recv_timeout(Duration::from_millis(0)) {
        followed.push(line);
    }
    let followed = followed.join("\n");
    for (what, text) in [("console", &console), ("ring buffer", &recent), ("follower", &followed)] {
        assert!(
            text.contains("component cb1 authenticated with secret <redacted>"),
            "{what}: {text}"
        );
        assert!(text.contains("name: \"cb1\""), "{what}: {text}");
        assert!(
            text.contains("handshake of cb1 failed (secret <redacted>)"),
            "{what}: {text}"
        );
        assert!(!text.contains(SECRET), "{what} leaked the secret: {text}");
        assert!(!text.contains("linking pid"), "{what}: {text}");
    }
}
