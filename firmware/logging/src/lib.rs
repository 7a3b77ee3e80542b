//! xmppd's logger: one [`log::Log`] that writes timestamped lines to the console (stderr, the
//! appliance's serial console) and keeps the most recent ones in a bounded in-memory ring buffer
//! for the `syslog` command and the web admin; `syslog follow` subscribes to new lines.
//!
//! Logging never blocks on a reader: a follower that does not keep up loses lines (and is told
//! how many), the ring buffer forgets its oldest lines. Levels can be changed per module at run
//! time ([`LogHandle::set_level`]).
//!
//! # Secrets
//!
//! Secrets (passwords, SCRAM keys, component secrets, dialback secrets) never reach a log line.
//! The patterns that guarantee it:
//! - keep a secret in a type whose `Debug` and `Display` print [`REDACTED`] (`sb_store::Secret`
//!   does), so logging a whole command or configuration value is safe;
//! - a secret that is only a `&str` or bytes at hand is logged, if at all, as
//!   [`Redacted`]`(&secret)`;
//! - never log a peer's raw input where it may carry credentials (SASL payloads, `<handshake/>`
//!   text, admin socket requests); log its length or kind instead.
//!
//! Dependencies that log stored values have a [`Ceiling`]: sled prints the pages it writes at
//! debug and trace, and those hold the component secrets, so it never logs above `info`.
//!
//! # Installing
//!
//! ```no_run
//! let config = sb_logging::LogConfig::default().with_spec("info,sb_server=debug").unwrap();
//! let log = sb_logging::install(config).expect("a logger was already installed");
//! log::info!("started");
//! assert!(log.recent(10).iter().any(|line| line.ends_with("started")));
//! ```

mod follow;
mod format;
mod levels;
mod redact;
mod ring;

pub use follow::{FollowEvent, Follower};
pub use levels::{Ceiling, DEFAULT_CEILINGS, LevelError, ModuleLevel, parse_level, parse_module, parse_spec};
pub use redact::{REDACTED, Redacted};

use levels::Levels;
use log::{LevelFilter, Log, Metadata, Record};
use ring::Ring;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// Where console lines go.
pub enum Console {
    /// Standard error: the serial console on the appliance, the terminal or the test log on a
    /// host.
    Stderr,
    /// Nowhere: only the ring buffer and followers get lines.
    Off,
    /// Any writer, e.g. a file or a test's capture.
    Writer(Box<dyn Write + Send>),
}

/// How the logger starts. [`LogConfig::default`] is the appliance's: `info`, console on stderr,
/// 2,000 lines / 512 KiB of history, lines cut at 4 KiB.
pub struct LogConfig {
    pub default_level: LevelFilter,
    pub module_levels: Vec<(String, LevelFilter)>,
    pub ceilings: Vec<Ceiling>,
    pub console: Console,
    /// Lines the ring buffer keeps...
    pub history_lines: usize,
    /// ...and the bytes they may take together.
    pub history_bytes: usize,
    /// A longer line is cut (at a character boundary) in the ring buffer and for followers; the
    /// console gets it whole.
    pub max_line_bytes: usize,
    /// Lines a follower may have waiting before it starts losing them.
    pub follower_queue: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            default_level: LevelFilter::Info,
            // Chatty at info and below, and not what an operator debugging XMPP wants to see.
            module_levels: ["rustls", "sled", "tokio_rustls"]
                .iter()
                .map(|module| ((*module).to_owned(), LevelFilter::Warn))
                // openraft logs every failed call to an unreachable member at ERROR, several
                // times a second for as long as the member is down, which would flush the
                // history ring; sb_cluster shows member health itself (`xmpp cluster status`).
                // `--log-level openraft=debug` brings it back.
                .chain(std::iter::once(("openraft".to_owned(), LevelFilter::Off)))
                .collect(),
            ceilings: DEFAULT_CEILINGS.to_vec(),
            console: Console::Stderr,
            history_lines: 2000,
            history_bytes: 512 * 1024,
            max_line_bytes: 4096,
            follower_queue: 1024,
        }
    }
}

impl LogConfig {
    /// Apply a `RUST_LOG`-style spec on top: `info`, or `warn,sb_server=debug,sb_server::c2s=trace`.
    pub fn with_spec(mut self, spec: &str) -> Result<LogConfig, LevelError> {
        for ModuleLevel { module, level } in parse_spec(spec)? {
            match module {
                None => self.default_level = level,
                Some(module) => {
                    self.module_levels.retain(|(known, _)| *known != module);
                    self.module_levels.push((module, level));
                }
            }
        }
        Ok(self)
    }

    pub fn with_console(mut self, console: Console) -> LogConfig {
        self.console = console;
        self
    }
}

/// Install the logger for the whole process (once) and return the handle the admin layer uses.
/// Lines logged before this are lost; install it first thing in `main`.
pub fn install(config: LogConfig) -> Result<LogHandle, log::SetLoggerError> {
    let (logger, handle) = Logger::new(config);
    log::set_boxed_logger(Box::new(logger))?;
    handle.shared.installed.store(true, Ordering::Release);
    handle.update_max_level();
    Ok(handle)
}

/// The [`log::Log`] implementation. [`install`] makes it the process's logger; tests may use one
/// directly, without installing it.
pub struct Logger {
    shared: Arc<Shared>,
}

/// Query and control a logger: recent lines, followers, levels. Cheap to clone.
#[derive(Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

struct Shared {
    levels: RwLock<Levels>,
    /// Lock order: `ring`, then `followers` (see [`Shared::publish`] and [`LogHandle::follow`]).
    ring: Mutex<Ring>,
    followers: Mutex<follow::Followers>,
    console: Mutex<Option<Box<dyn Write + Send>>>,
    max_line_bytes: usize,
    follower_queue: usize,
    /// Set once installed: only then does this logger own `log::set_max_level`.
    installed: AtomicBool,
}

/// A poisoned lock only means another thread panicked while logging; the data (lines) is still
/// usable, and a logger must never turn one panic into many.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Logger {
    /// A logger and its handle, not installed. A configured module level above its ceiling is
    /// capped rather than refused: the daemon must start.
    pub fn new(config: LogConfig) -> (Logger, LogHandle) {
        let mut levels = Levels::new(config.default_level, config.ceilings);
        for (module, level) in config.module_levels {
            levels.set_capped(&module, level);
        }
        let console: Option<Box<dyn Write + Send>> = match config.console {
            Console::Stderr => Some(Box::new(std::io::stderr())),
            Console::Off => None,
            Console::Writer(writer) => Some(writer),
        };
        let shared = Arc::new(Shared {
            levels: RwLock::new(levels),
            ring: Mutex::new(Ring::new(config.history_lines, config.history_bytes)),
            followers: Mutex::new(follow::Followers::default()),
            console: Mutex::new(console),
            max_line_bytes: config.max_line_bytes.max(64),
            follower_queue: config.follower_queue.max(1),
            installed: AtomicBool::new(false),
        });
        (
            Logger {
                shared: Arc::clone(&shared),
            },
            LogHandle { shared },
        )
    }

    pub fn handle(&self) -> LogHandle {
        LogHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.shared.enabled(metadata.target(), metadata.level())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format::line(time::OffsetDateTime::now_utc(), record);
        {
            let mut console = lock(&self.shared.console);
            if let Some(console) = console.as_mut() {
                // Nowhere to report a console error to: the line is still in the ring buffer.
                let _ = writeln!(console, "{line}");
            }
        }
        self.shared.publish(&line);
    }

    fn flush(&self) {
        if let Some(console) = lock(&self.shared.console).as_mut() {
            let _ = console.flush();
        }
    }
}

impl Shared {
    fn enabled(&self, target: &str, level: log::Level) -> bool {
        let levels = self.levels.read().unwrap_or_else(PoisonError::into_inner);
        level <= levels.effective(target)
    }

    fn publish(&self, line: &str) {
        let line: Arc<str> = Arc::from(format::truncated(line, self.max_line_bytes));
        let mut ring = lock(&self.ring);
        ring.push(Arc::clone(&line));
        let mut followers = lock(&self.followers);
        followers.send(&line);
    }
}

impl LogHandle {
    /// The last `n` lines, oldest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        lock(&self.shared.ring).last(n).map(|line| line.to_string()).collect()
    }

    /// Subscribe to new lines, starting with the last `history` ones; no line is missed or
    /// repeated between the two.
    pub fn follow(&self, history: usize) -> Follower {
        let ring = lock(&self.shared.ring);
        let backlog = ring.last(history).cloned().collect();
        let mut followers = lock(&self.shared.followers);
        followers.subscribe(backlog, self.shared.follower_queue)
    }

    /// Followers still subscribed (a follower that went away is noticed at the next line).
    pub fn follower_count(&self) -> usize {
        lock(&self.shared.followers).len()
    }

    /// Set the level of `module` and everything below it (`sb_server` covers `sb_server::c2s`),
    /// or the default level with `None`. Refused above a module's [`Ceiling`].
    pub fn set_level(&self, module: Option<&str>, level: LevelFilter) -> Result<(), LevelError> {
        {
            let mut levels = self.shared.levels.write().unwrap_or_else(PoisonError::into_inner);
            levels.set(module, level)?;
        }
        self.update_max_level();
        Ok(())
    }

    /// The default level first (module `None`), then every module's, sorted by module.
    pub fn levels(&self) -> Vec<ModuleLevel> {
        self.shared.levels.read().unwrap_or_else(PoisonError::into_inner).list()
    }

    pub fn ceilings(&self) -> Vec<Ceiling> {
        self.shared
            .levels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .ceilings()
            .to_vec()
    }

    /// The level a record from `target` (a module path) must reach to be logged.
    pub fn effective_level(&self, target: &str) -> LevelFilter {
        self.shared
            .levels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .effective(target)
    }

    /// The `log` facade filters on one global maximum before calling us: keep it at the most
    /// verbose level any module has, so a raised level takes effect and nothing else is paid for.
    fn update_max_level(&self) {
        if self.shared.installed.load(Ordering::Acquire) {
            let max = self.shared.levels.read().unwrap_or_else(PoisonError::into_inner).max();
            log::set_max_level(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    /// A `Write` whose bytes the test can read back.
    #[derive(Clone, Default)]
    pub(crate) struct Capture(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&lock(&self.0)).into_owned()
        }
    }

    fn logger(config: LogConfig) -> (Logger, LogHandle, Capture) {
        let capture = Capture::default();
        let config = config.with_console(Console::Writer(Box::new(capture.clone())));
        let (logger, handle) = Logger::new(config);
        (logger, handle, capture)
    }

    fn emit(logger: &Logger, level: Level, target: &str, message: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .target(target)
                .module_path(Some(target))
                .args(format_args!("{message}"))
                .build(),
        );
    }

    #[test]
    fn lines_reach_the_console_and_the_ring_buffer_with_timestamp_level_and_module() {
        let (logger, handle, capture) = logger(LogConfig::default());
        emit(&logger, Level::Info, "sb_server::c2s", "alice@example.com/phone bound");
        emit(&logger, Level::Debug, "sb_server::c2s", "not at info");
        let lines = handle.recent(10);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(
            line.ends_with(" INFO  sb_server::c2s: alice@example.com/phone bound"),
            "{line}"
        );
        // 2025-02-08 07:33:20.123Z
        let stamp = &line[..24];
        assert_eq!(stamp.len(), 24);
        assert_eq!(&stamp[4..5], "-");
        assert_eq!(&stamp[10..11], " ");
        assert_eq!(&stamp[19..20], ".");
        assert!(stamp.ends_with('Z'), "{stamp}");
        assert_eq!(capture.text(), format!("{line}\n"));
    }

    #[test]
    fn recent_returns_the_newest_lines_oldest_first() {
        let config = LogConfig {
            history_lines: 3,
            ..LogConfig::default()
        };
        let (logger, handle, _) = logger(config);
        for i in 0..5 {
            emit(&logger, Level::Warn, "t", &format!("line {i}"));
        }
        let lines = handle.recent(10);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].ends_with("line 2") && lines[2].ends_with("line 4"),
            "{lines:?}"
        );
        let last = handle.recent(1);
        assert!(last[0].ends_with("line 4"));
        assert!(handle.recent(0).is_empty());
    }

    #[test]
    fn the_ring_buffer_is_bounded_in_bytes_and_long_lines_are_cut() {
        let config = LogConfig {
            history_lines: 1000,
            history_bytes: 1000,
            max_line_bytes: 200,
            ..LogConfig::default()
        };
        let (logger, handle, capture) = logger(config);
        let long = "é".repeat(500);
        for _ in 0..20 {
            emit(&logger, Level::Error, "t", &long);
        }
        let lines = handle.recent(1000);
        let bytes: usize = lines.iter().map(String::len).sum();
        assert!(bytes <= 1000, "{bytes}");
        assert!(!lines.is_empty());
        for line in &lines {
            assert!(line.len() <= 200, "{}", line.len());
            assert!(line.ends_with(format::TRUNCATED), "{line}");
        }
        // The console gets the whole line.
        assert!(capture.text().lines().all(|line| line.contains(&long)));
    }

    #[test]
    fn levels_apply_per_module_prefix_at_run_time() {
        let (logger, handle, _) = logger(LogConfig::default().with_spec("warn").unwrap());
        emit(&logger, Level::Info, "sb_server::c2s", "a");
        handle.set_level(Some("sb_server"), LevelFilter::Debug).unwrap();
        emit(&logger, Level::Debug, "sb_server::c2s", "b");
        emit(&logger, Level::Debug, "sb_server", "c");
        emit(&logger, Level::Debug, "sb_serverx", "d");
        emit(&logger, Level::Trace, "sb_server::c2s", "e");
        handle.set_level(Some("sb_server::c2s"), LevelFilter::Off).unwrap();
        emit(&logger, Level::Error, "sb_server::c2s", "f");
        emit(&logger, Level::Debug, "sb_server::router", "g");
        handle.set_level(None, LevelFilter::Trace).unwrap();
        emit(&logger, Level::Trace, "other", "h");
        let messages: Vec<String> = handle
            .recent(100)
            .iter()
            .map(|line| line.rsplit(": ").next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(messages, ["b", "c", "g", "h"]);
        assert_eq!(
            handle.levels(),
            vec![
                ModuleLevel {
                    module: None,
                    level: LevelFilter::Trace
                },
                ModuleLevel {
                    module: Some("openraft".to_owned()),
                    level: LevelFilter::Off
                },
                ModuleLevel {
                    module: Some("rustls".to_owned()),
                    level: LevelFilter::Warn
                },
                ModuleLevel {
                    module: Some("sb_server".to_owned()),
                    level: LevelFilter::Debug
                },
                ModuleLevel {
                    module: Some("sb_server::c2s".to_owned()),
                    level: LevelFilter::Off
                },
                ModuleLevel {
                    module: Some("sled".to_owned()),
                    level: LevelFilter::Warn
                },
                ModuleLevel {
                    module: Some("tokio_rustls".to_owned()),
                    level: LevelFilter::Warn
                },
            ]
        );
    }

    #[test]
    fn a_ceiling_caps_a_module_that_logs_stored_values() {
        let (logger, handle, _) = logger(LogConfig::default().with_spec("trace,sled=trace").unwrap());
        emit(
            &logger,
            Level::Trace,
            "sled::pagecache",
            "linking pid 7 with Set(secret)",
        );
        emit(&logger, Level::Debug, "sled::tree", "debug detail");
        emit(&logger, Level::Info, "sled::config", "info stays");
        let lines = handle.recent(10);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].ends_with("info stays"));
        assert_eq!(handle.effective_level("sled::tree"), LevelFilter::Info);
        let err = handle.set_level(Some("sled::tree"), LevelFilter::Debug).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sled::tree cannot log above info: sled writes stored values, secrets among them, into its debug and \
             trace lines"
        );
        handle.set_level(Some("sled"), LevelFilter::Warn).unwrap();
        assert_eq!(handle.effective_level("sled::tree"), LevelFilter::Warn);
    }

    #[test]
    fn followers_get_history_then_new_lines() {
        let (logger, handle, _) = logger(LogConfig::default());
        emit(&logger, Level::Info, "t", "old 1");
        emit(&logger, Level::Info, "t", "old 2");
        let mut follower = handle.follow(1);
        assert_eq!(handle.follower_count(), 1);
        emit(&logger, Level::Info, "t", "new 1");
        let mut got = Vec::new();
        while let Some(line) = follower.try_recv() {
            got.push(line.rsplit(": ").next().unwrap_or_default().to_owned());
        }
        assert_eq!(got, ["old 2", "new 1"]);
        assert_eq!(
            follower.recv_timeout(std::time::Duration::from_millis(1)),
            FollowEvent::Timeout
        );
        drop(follower);
        // Noticed at the next line.
        emit(&logger, Level::Info, "t", "after");
        assert_eq!(handle.follower_count(), 0);
    }

    #[test]
    fn a_slow_follower_loses_lines_and_is_told_how_many() {
        let config = LogConfig {
            follower_queue: 2,
            ..LogConfig::default()
        };
        let (logger, handle, _) = logger(config);
        let mut slow = handle.follow(0);
        let mut fast = handle.follow(0);
        let mut fast_got = 0;
        for i in 0..10 {
            emit(&logger, Level::Info, "t", &format!("line {i}"));
            while fast.try_recv().is_some() {
                fast_got += 1;
            }
        }
        assert_eq!(fast_got, 10);
        // Logging went on although nobody read `slow`: it kept the first two lines.
        let first: Vec<String> = std::iter::from_fn(|| slow.try_recv()).collect();
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first[1].ends_with("line 1"));
        emit(&logger, Level::Info, "t", "line 10");
        let next: Vec<String> = std::iter::from_fn(|| slow.try_recv()).collect();
        assert_eq!(next.len(), 2, "{next:?}");
        assert_eq!(next[0], "-- 8 lines dropped: this follower did not keep up --");
        assert!(next[1].ends_with("line 10"));
        assert_eq!(handle.recent(100).len(), 11);
    }

    #[test]
    fn a_follower_of_a_dropped_logger_is_told_the_log_closed() {
        let (logger, handle, _) = logger(LogConfig::default());
        let mut follower = handle.follow(0);
        drop(handle);
        drop(logger);
        assert_eq!(
            follower.recv_timeout(std::time::Duration::from_secs(5)),
            FollowEvent::Closed
        );
        assert_eq!(follower.try_recv(), None);
    }
}
